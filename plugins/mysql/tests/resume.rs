//! Resumable loads against the real MariaDB: the `fastlane` process is killed with SIGKILL at
//! points spread over a load of a 1M-row table, and each kill is followed by a run that must
//! resume it and leave the target with exactly the source's rows.
//!
//! `FASTLANE_KILL_POINTS` sets how many kill points each pipeline gets (20 by default).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use common::Db;
use serde_json::{Value, json};

const ROWS: i64 = 1_000_000;

fn points() -> usize {
    std::env::var("FASTLANE_KILL_POINTS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
}

fn source(db: &Db) {
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL, n DOUBLE)");
    db.exec(&format!(
        "INSERT INTO src SELECT seq, MD5(seq), IF(seq % 97 = 0, NULL, seq / 7) FROM seq_1_to_{ROWS}"
    ));
}

fn write_config(dir: &Path, source: Value, target: (&str, Value)) -> PathBuf {
    let config = json!({
        "replication_mode": "FULL_TABLE",
        "checkpoint_interval_secs": 0.2,
        "source": {"mysql": source},
        "target": {target.0: target.1},
        "transform": {"add_op_fields": false}
    });
    let path = dir.join("pipeline.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Runs the pipeline and kills it with SIGKILL once `loaded()` (the rows its checkpoints
/// cover) reaches `rows`; whether it was killed before it ended.
fn run_killed(cwd: &Path, config: &Path, rows: u64, loaded: &dyn Fn() -> u64) -> bool {
    fastlane_tests::run_killed_when(cwd, config, &|| loaded() >= rows)
}

/// The rows the tags in `texts` cover.
fn tag_rows<'a>(texts: impl Iterator<Item = &'a str>) -> u64 {
    texts
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .map(|t| t["n"].as_u64().unwrap_or(0))
        .sum()
}

/// The rows the tags of the `mysql` target's checkpoint table cover (none once the run has
/// committed and dropped the table).
fn staged_by_tags(db: &Db) -> u64 {
    let Some(ckpt) = db
        .tables()
        .into_iter()
        .find(|t| t.starts_with("_fastlane_ckpt"))
    else {
        return 0;
    };
    let bodies: Vec<String> = db
        .try_rows(&format!("SELECT body FROM `{ckpt}` WHERE id LIKE 't:%'"))
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.get::<String, _>(0).unwrap_or_default())
        .collect();
    tag_rows(bodies.iter().map(String::as_str))
}

/// Runs the pipeline to its end; the summary.
fn run_to_end(cwd: &Path, config: &Path) -> Value {
    fastlane_tests::run_to_end(cwd, config, &[])
}

/// Kills a load at `points()` points spread over the rows loaded (`loaded()`: the rows the
/// staging's checkpoints cover); after each kill a run must resume and `check` the target.
/// Returns the share of the table each resuming run read.
fn kill_and_resume(
    cwd: &Path,
    config: &Path,
    check: &dyn Fn(),
    loaded: &dyn Fn() -> u64,
) -> Vec<f64> {
    let started = Instant::now();
    let summary = run_to_end(cwd, config);
    let full = started.elapsed();
    assert_eq!(summary["rows_loaded"], ROWS, "{summary}");
    check();
    let n = points();
    let mut reread = Vec::new();
    for k in 1..=n {
        let rows = ROWS as u64 * k as u64 / (n as u64 + 1);
        if !run_killed(cwd, config, rows, loaded) {
            continue;
        }
        let loaded_at_kill = loaded();
        let summary = run_to_end(cwd, config);
        check();
        let ck = &summary["checkpoint"];
        if ck["resumed"] != true {
            // Killed once every row was staged, while it published: the next run finished
            // the publication (or found it done), then loaded afresh.
            assert!(
                loaded_at_kill == 0 || loaded_at_kill >= ROWS as u64,
                "a run killed with {loaded_at_kill} rows staged was not resumed: {summary}"
            );
            continue;
        }
        let read = summary["rows_extracted"].as_i64().unwrap();
        let already = ck["rows_already_loaded"].as_i64().unwrap();
        assert!(already + read >= ROWS, "{summary}");
        assert_eq!(summary["verification"]["status"], "passed", "{summary}");
        reread.push(read as f64 / ROWS as f64);
    }
    let mean = reread.iter().sum::<f64>() / reread.len().max(1) as f64;
    eprintln!(
        "{} kills (an uninterrupted load takes {:.1} s); resumed runs read {mean:.3} of the table \
         on average: {:?}",
        reread.len(),
        full.as_secs_f64(),
        reread.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    assert!(
        reread.len() >= n / 2,
        "too few kills landed mid-run: {reread:?}"
    );
    assert!(
        mean < 0.5,
        "resumed runs read {mean:.3} of the table on average"
    );
    reread
}

#[test]
fn mysql_to_mysql_killed_anywhere_resumes_to_exactly_the_source_rows() {
    let db = Db::new("resume_mm");
    source(&db);
    // No unique key on the target: a row stored twice would show in the count.
    db.exec("CREATE TABLE dst (id BIGINT, v VARCHAR(64) NOT NULL, n DOUBLE, KEY by_v (v))");
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        db.config(json!({"table": "src", "partitions": 2, "batch_size": 10000})),
        ("mysql", db.config(json!({"table": "dst"}))),
    );
    let expected = db.checksum("src", &["id", "v", "n"]);
    let loaded = || staged_by_tags(&db);
    let reread = kill_and_resume(
        tmp.path(),
        &config,
        &|| {
            assert_eq!(db.checksum("dst", &["id", "v", "n"]), expected);
            let leftovers: Vec<String> = db
                .tables()
                .into_iter()
                .filter(|t| t.starts_with("_fastlane_stage"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        },
        &loaded,
    );
    // The secondary index survived every swap.
    assert_eq!(
        db.value("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_NAME = 'dst' AND INDEX_NAME = 'by_v' AND TABLE_SCHEMA = DATABASE()"),
        "1"
    );
    assert!(!reread.is_empty());
}

#[test]
fn a_resumed_load_verified_by_checksum_passes_and_catches_a_value_changed_in_its_staging() {
    let db = Db::new("resume_checksum");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL, n DOUBLE)");
    db.exec(
        "INSERT INTO src SELECT seq, MD5(seq), IF(seq % 97 = 0, NULL, seq / 7) \
         FROM seq_1_to_300000",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(write_config(
            tmp.path(),
            db.config(json!({"table": "src", "partitions": 2, "batch_size": 5000})),
            ("mysql", db.config(json!({"table": "dst", "key": "id"}))),
        ))
        .unwrap(),
    )
    .unwrap();
    config["verify"] = json!("checksum");
    let path = tmp.path().join("checksum.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let loaded = || staged_by_tags(&db);
    let staging = || {
        db.tables()
            .into_iter()
            .find(|t| t.starts_with("_fastlane_stage"))
    };

    // Killed halfway, then resumed: the checksums of both sides agree.
    assert!(
        run_killed(tmp.path(), &path, 150_000, &loaded),
        "killed mid-run"
    );
    let summary = run_to_end(tmp.path(), &path);
    assert_eq!(summary["checkpoint"]["resumed"], true, "{summary}");
    let v = &summary["verification"];
    assert_eq!(v["status"], "passed", "{summary}");
    assert!(v["source_checksum"].is_string(), "{summary}");
    assert_eq!(v["source_checksum"], v["target_checksum"], "{summary}");
    let expected = db.checksum("src", &["id", "v", "n"]);
    assert_eq!(db.checksum("dst", &["id", "v", "n"]), expected);

    // Killed again; a value changed in the kept staging behind fastlane's back is counted
    // like any other, but its checksum fails the resumed run, which publishes nothing.
    db.exec("UPDATE src SET v = 'new' WHERE id = 7");
    assert!(
        run_killed(tmp.path(), &path, 150_000, &loaded),
        "killed mid-run"
    );
    let kept = staging().expect("the kept staging table");
    db.exec(&format!("UPDATE `{kept}` SET v = 'tampered' WHERE id = 3"));
    let out = fastlane_tests::fastlane(
        tmp.path(),
        &[
            "run",
            "--no-monitor",
            "--progress=off",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("the source's checksum is")
            && out.stderr.contains("nothing was published"),
        "{}",
        out.stderr
    );
    assert_eq!(
        db.checksum("dst", &["id", "v", "n"]),
        expected,
        "dst unchanged"
    );
    assert!(
        staging().is_none(),
        "a staging that failed verification is dropped"
    );
}

fn parquet_ids(out: &Path) -> usize {
    let mut seen = HashSet::new();
    for batch in fastlane_tests::parquet_folder(out) {
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        for id in ids.values() {
            assert!(seen.insert(*id), "id {id} was published twice");
        }
    }
    assert!(seen.iter().all(|id| (1..=ROWS).contains(id)));
    seen.len()
}

#[test]
fn mysql_to_parquet_killed_anywhere_resumes_to_exactly_the_source_rows() {
    let db = Db::new("resume_mp");
    source(&db);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        db.config(json!({"table": "src", "partitions": 2, "batch_size": 10000})),
        (
            "file",
            json!({"path": out, "format": "parquet", "max_rows_per_file": 200000}),
        ),
    );
    let loaded = || {
        let Ok(entries) = std::fs::read_dir(&out) else {
            return 0;
        };
        let mut texts = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let records = entry.path().join(".checkpoints");
            for record in std::fs::read_dir(records)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                let name = record.file_name().to_string_lossy().into_owned();
                if name.starts_with("record-")
                    && name.ends_with(".json")
                    && let Ok(text) = std::fs::read_to_string(record.path())
                    && let Ok(v) = serde_json::from_str::<Value>(&text)
                {
                    for tag in v["tags"].as_array().into_iter().flatten() {
                        texts.push(tag.as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        }
        tag_rows(texts.iter().map(String::as_str))
    };
    let reread = kill_and_resume(
        tmp.path(),
        &config,
        &|| {
            assert_eq!(parquet_ids(&out) as i64, ROWS);
        },
        &loaded,
    );
    assert!(!reread.is_empty());
}
