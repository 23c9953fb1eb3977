//! Resumable runs end to end: the `fastlane` process killed with SIGKILL in the middle of a
//! load, then run again, must leave the target with exactly the source's rows, having read
//! again only what its checkpoints did not cover.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use fastlane_tests::fastlane;
use serde_json::{Value, json};

const ROWS: i64 = 200_000;

/// A SQLite table `t` of `ROWS` rows: `id` 1..=ROWS, `v` text, `n` real.
fn source_db(dir: &Path) -> PathBuf {
    let path = dir.join("src.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n REAL NOT NULL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200000)
         INSERT INTO t SELECT i, printf('row-%d-%x', i, i * 7919), i / 7.0 FROM s;",
    )
    .unwrap();
    path
}

fn write_config(dir: &Path, db: &Path, out: &Path, extra: Value) -> PathBuf {
    let mut config = json!({
        "replication_mode": "FULL_TABLE",
        "checkpoint_interval_secs": 0.05,
        "source": {"sqlite": {"path": db, "table": "t", "batch_size": 2000, "partitions": 3}},
        "target": {"file": {"path": out, "format": "parquet", "max_rows_per_file": 50000}},
        "transform": {"add_op_fields": false}
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let path = dir.join("pipeline.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Every row of the published parquet files of `out`: id → (v, n), failing on a duplicate.
fn published(out: &Path) -> BTreeMap<i64, (String, f64)> {
    let mut rows = BTreeMap::new();
    for batch in fastlane_tests::parquet_folder(out) {
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let vs = batch.column_by_name("v").unwrap().as_string::<i32>();
        let ns = batch
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let old = rows.insert(ids.value(i), (vs.value(i).to_owned(), ns.value(i)));
            assert!(old.is_none(), "id {} is in the target twice", ids.value(i));
        }
    }
    rows
}

fn assert_exact(out: &Path) {
    let rows = published(out);
    assert_eq!(rows.len() as i64, ROWS, "rows in the target");
    for (id, (v, n)) in [(1, rows[&1].clone()), (ROWS, rows[&ROWS].clone())] {
        assert_eq!(v, format!("row-{id}-{:x}", id * 7919));
        assert!((n - id as f64 / 7.0).abs() < 1e-9);
    }
    assert_eq!(*rows.keys().next().unwrap(), 1);
    assert_eq!(*rows.keys().last().unwrap(), ROWS);
}

/// Whether `out` holds a staging folder (a run has opened the target).
fn staging_exists(out: &Path) -> bool {
    std::fs::read_dir(out).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".fastlane-staging-")
        })
    })
}

/// Runs the pipeline and kills it with SIGKILL after `after`; whether it was still running.
fn run_killed(cwd: &Path, config: &Path, after: Duration) -> bool {
    let started = Instant::now();
    fastlane_tests::run_killed_when(cwd, config, &|| started.elapsed() >= after)
}

fn run_to_end(cwd: &Path, config: &Path, extra: &[&str]) -> Value {
    fastlane_tests::run_to_end(cwd, config, extra)
}

#[test]
fn a_killed_sqlite_to_parquet_load_resumes_and_publishes_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    let config = write_config(tmp.path(), &db, &out, json!({}));

    // How long an uninterrupted run loads, from the moment its staging folder appears to its
    // end. The kills below land after a share of that, counted from the same moment, so that a
    // busy machine (a slower start: loading plugins, planning) does not move them towards the
    // start of the load.
    let first_seen = std::cell::Cell::new(None::<Instant>);
    let ended = !fastlane_tests::run_killed_when(tmp.path(), &config, &|| {
        if first_seen.get().is_none() && staging_exists(&out) {
            first_seen.set(Some(Instant::now()));
        }
        false
    });
    assert!(ended);
    let loading = first_seen.get().map_or(Duration::ZERO, |t| t.elapsed());
    let summary = run_to_end(tmp.path(), &config, &[]);
    assert_eq!(summary["rows_loaded"], ROWS);
    assert_eq!(summary["checkpoint"]["resumed"], false);
    assert_exact(&out);

    let points = 8;
    let mut reread = Vec::new();
    for k in 1..=points {
        let after = loading.mul_f64(k as f64 / (points + 1) as f64);
        let seen = std::cell::Cell::new(None::<Instant>);
        if !fastlane_tests::run_killed_when(tmp.path(), &config, &|| {
            if seen.get().is_none() && staging_exists(&out) {
                seen.set(Some(Instant::now()));
            }
            seen.get().is_some_and(|t| t.elapsed() >= after)
        }) {
            continue;
        }
        let summary = run_to_end(tmp.path(), &config, &[]);
        assert_exact(&out);
        let ck = &summary["checkpoint"];
        if ck["resumed"] == true {
            let already = ck["rows_already_loaded"].as_i64().unwrap();
            let read = summary["rows_extracted"].as_i64().unwrap();
            assert!(already + read >= ROWS, "{summary}");
            reread.push(read as f64 / ROWS as f64);
        }
        // No staging folder is left behind.
        let hidden: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".fastlane-staging"))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }
    assert!(
        reread.len() >= points / 2,
        "too few kills landed in the middle of a run: {reread:?}"
    );
    let mean = reread.iter().sum::<f64>() / reread.len() as f64;
    assert!(
        mean < 0.9,
        "resumed runs read {mean:.2} of the table on average"
    );
}

#[test]
fn a_changed_configuration_starts_afresh_and_an_explicit_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    let config = write_config(tmp.path(), &db, &out, json!({}));
    let started = Instant::now();
    run_to_end(tmp.path(), &config, &["--fresh"]);
    let full = started.elapsed();

    // Kill until a run is caught in the middle and leaves its staging.
    let mut staged = None;
    for k in 1..=5 {
        run_killed(tmp.path(), &config, full.mul_f64(k as f64 / 6.0));
        staged = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find_map(|n| n.strip_prefix(".fastlane-staging-").map(str::to_owned));
        if staged.is_some() {
            break;
        }
    }
    let run_id = staged.expect("a killed run left its staging");

    // Another row-group size: another target section.
    let changed = write_config(
        tmp.path(),
        &db,
        &out,
        json!({"target": {"file": {"path": out, "format": "parquet", "max_rows_per_file": 40000}}}),
    );
    let out_text = fastlane(
        tmp.path(),
        &[
            "run",
            "--no-monitor",
            "--progress=off",
            "--config",
            changed.to_str().unwrap(),
            "--resume",
            &run_id,
        ],
    );
    assert_eq!(out_text.code, 1, "{}", out_text.stderr);
    assert!(
        out_text.stderr.contains("other source or target settings"),
        "{}",
        out_text.stderr
    );
    // The refusal kept the staging.
    assert!(out.join(format!(".fastlane-staging-{run_id}")).exists());

    // Without --resume: a fresh run, saying why, which discards the old staging.
    let summary = run_to_end(tmp.path(), &changed, &[]);
    assert_eq!(summary["checkpoint"]["resumed"], false, "{summary}");
    assert_eq!(summary["rows_extracted"], ROWS);
    assert_exact(&out);
    assert!(!out.join(format!(".fastlane-staging-{run_id}")).exists());
}

#[test]
fn a_second_run_of_a_pipeline_is_refused_while_one_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = write_config(tmp.path(), &db, &out, json!({}));
    // The lock a loading run holds.
    let lock = File::create(out.join(".fastlane-lock-part")).unwrap();
    lock.lock().unwrap();
    let refused = fastlane(
        tmp.path(),
        &[
            "run",
            "--no-monitor",
            "--progress=off",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another run is writing"),
        "{}",
        refused.stderr
    );
    lock.unlock().unwrap();
    run_to_end(tmp.path(), &config, &[]);
    assert_exact(&out);
}

#[test]
fn resume_never_runs_without_checkpoints_and_a_query_cannot_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    let config = write_config(tmp.path(), &db, &out, json!({"resume": "never"}));
    let summary = run_to_end(tmp.path(), &config, &[]);
    assert!(summary["checkpoint"].is_null(), "{summary}");
    assert_exact(&out);

    let config = write_config(
        tmp.path(),
        &db,
        &out,
        json!({"source": {"sqlite": {"path": db, "query": "SELECT * FROM t"}}}),
    );
    let summary_path = tmp.path().join("q.json");
    let result = fastlane(
        tmp.path(),
        &[
            "run",
            "--no-monitor",
            "--progress=off",
            "--config",
            config.to_str().unwrap(),
            "--summary-json",
            summary_path.to_str().unwrap(),
        ],
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stderr.contains("cannot resume as configured"),
        "{}",
        result.stderr
    );
    assert_exact(&out);
}

#[test]
fn verification_fails_a_load_whose_target_lost_a_batch_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let plugins = fastlane_tests::test_plugin_dir(&["misbehave"]);
    let committed = tmp.path().join("committed");
    let config = |verify: &str| {
        let path = tmp.path().join(format!("lossy-{verify}.json"));
        let config = json!({
            "replication_mode": "FULL_TABLE",
            "verify": verify,
            "source": {"sqlite": {"path": db, "table": "t", "batch_size": 2000}},
            "target": {"lossy": {"lose_batch": 3, "path": committed}},
            "transform": {"add_op_fields": false}
        });
        std::fs::write(&path, config.to_string()).unwrap();
        path
    };
    let summary = tmp.path().join("summary.json");
    let run = |config: &Path| {
        fastlane(
            tmp.path(),
            &[
                "run",
                "--plugin-dir",
                plugins.path().to_str().unwrap(),
                "--no-monitor",
                "--progress=off",
                "--config",
                config.to_str().unwrap(),
                "--summary-json",
                summary.to_str().unwrap(),
            ],
        )
    };

    let out = run(&config("count"));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("the staging holds 198000 rows, but 200000 were written into it"),
        "{}",
        out.stderr
    );
    assert!(!committed.exists(), "nothing may be published");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["verification"]["status"], "failed", "{s}");
    assert_eq!(s["verification"]["source_rows"], ROWS);

    // Without verification the loss goes through unnoticed.
    let out = run(&config("off"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&committed).unwrap(), "198000");
}

#[test]
fn a_verified_load_reports_the_counts_of_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    for format in ["parquet", "csv", "jsonl"] {
        let config = write_config(
            tmp.path(),
            &db,
            &out,
            json!({"target": {"file": {"path": out, "format": format, "max_rows_per_file": 50000}}}),
        );
        let summary = run_to_end(tmp.path(), &config, &[]);
        let v = &summary["verification"];
        assert_eq!(v["status"], "passed", "{summary}");
        assert_eq!(v["source_rows"], ROWS, "{summary}");
        assert_eq!(v["target_rows"], ROWS, "{summary}");
        assert_eq!(v["read_rows"], ROWS, "{summary}");
    }
}

#[test]
fn verification_by_checksum_fails_a_load_whose_target_changed_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let plugins = fastlane_tests::test_plugin_dir(&["misbehave"]);
    let summary = tmp.path().join("summary.json");
    let run = |verify: &str| {
        let path = tmp.path().join(format!("altering-{verify}.json"));
        let config = json!({
            "replication_mode": "FULL_TABLE",
            "verify": verify,
            "source": {"sqlite": {"path": db, "table": "t", "batch_size": 2000}},
            "target": {"altering": {"alter_batch": 5}},
            "transform": {"add_op_fields": false}
        });
        std::fs::write(&path, config.to_string()).unwrap();
        fastlane(
            tmp.path(),
            &[
                "run",
                "--plugin-dir",
                plugins.path().to_str().unwrap(),
                "--no-monitor",
                "--progress=off",
                "--config",
                path.to_str().unwrap(),
                "--summary-json",
                summary.to_str().unwrap(),
            ],
        )
    };

    // The counts agree: counting cannot see a changed value.
    let out = run("count");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let out = run("checksum");
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("the staging's checksum is")
            && out.stderr.contains("but the rows written into it give"),
        "{}",
        out.stderr
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let v = &s["verification"];
    assert_eq!(v["mode"], "checksum", "{s}");
    assert_eq!(v["status"], "failed", "{s}");
    // The source's side agreed before the staging's was compared.
    assert_eq!(v["source_rows"], ROWS, "{s}");
    assert_eq!(v["target_rows"], ROWS, "{s}");
    assert!(v["source_checksum"].is_string(), "{s}");
}

#[test]
fn a_load_verified_by_checksum_agrees_end_to_end_and_after_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let db = source_db(tmp.path());
    let out = tmp.path().join("out");
    let config = write_config(tmp.path(), &db, &out, json!({"verify": "checksum"}));

    let started = Instant::now();
    let summary = run_to_end(tmp.path(), &config, &[]);
    let full = started.elapsed();
    let v = &summary["verification"];
    assert_eq!(v["mode"], "checksum", "{summary}");
    assert_eq!(v["status"], "passed", "{summary}");
    assert!(v["source_checksum"].is_string(), "{summary}");
    assert_eq!(v["source_checksum"], v["target_checksum"], "{summary}");
    let whole = v["source_checksum"].clone();
    assert_exact(&out);

    // Killed halfway and resumed: the checksums of the rows read before the kill come from the
    // kept checkpoints, the staging's from its files; the totals are the same as before.
    let mut resumed = false;
    for fraction in [0.5, 0.3, 0.7] {
        if !run_killed(tmp.path(), &config, full.mul_f64(fraction)) {
            continue;
        }
        let summary = run_to_end(tmp.path(), &config, &[]);
        let v = &summary["verification"];
        assert_eq!(v["status"], "passed", "{summary}");
        assert_eq!(v["source_checksum"], whole, "{summary}");
        assert_eq!(v["target_checksum"], whole, "{summary}");
        assert_exact(&out);
        resumed |= summary["checkpoint"]["resumed"] == true;
        if resumed {
            break;
        }
    }
    assert!(resumed, "no kill landed in the middle of a run");

    // CSV keeps no types to read back: the staging's side is not compared, and says so.
    let csv = write_config(
        tmp.path(),
        &db,
        &out,
        json!({"verify": "checksum", "target": {"file": {"path": tmp.path().join("csv"), "format": "csv"}}}),
    );
    let summary = run_to_end(tmp.path(), &csv, &[]);
    let v = &summary["verification"];
    assert_eq!(v["status"], "passed", "{summary}");
    assert_eq!(v["source_checksum"], whole, "{summary}");
    assert!(v["target_checksum"].is_null(), "{summary}");
    assert!(
        v["note"]
            .as_str()
            .unwrap_or("")
            .contains("only Parquet files"),
        "{summary}"
    );
}
