//! End-to-end tests of the `fastlane` command: real files, real plugins, real processes.

use std::fs::File;
use std::path::Path;

use arrow_array::{Array, Int64Array, RecordBatch};
use fastlane_tests::{fastlane, fastlane_with_env, redact, test_plugin_dir};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn write_json(path: &Path, value: &Value) {
    write(path, &serde_json::to_string_pretty(value).unwrap());
}

fn orders_csv(rows: usize) -> String {
    let mut s = String::from("id,customer,amount,country,created\n");
    for i in 1..=rows {
        let country = ["NL", "DE", "FR", "US"][i % 4];
        s.push_str(&format!(
            "{i},customer {i},{}.{:02},{country},2026-01-{:02}T10:00:00\n",
            i % 500,
            i % 100,
            i % 28 + 1
        ));
    }
    s
}

fn data_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read_parquet(dir: &Path) -> Vec<RecordBatch> {
    data_files(dir, ".parquet")
        .iter()
        .flat_map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn int_sum(batches: &[RecordBatch], column: &str) -> i64 {
    batches
        .iter()
        .map(|b| {
            let c = b.column_by_name(column).unwrap();
            let c = arrow_cast::cast(c, &arrow_schema::DataType::Int64).unwrap();
            let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
            c.iter().flatten().sum::<i64>()
        })
        .sum()
}

#[test]
fn csv_to_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("orders.csv"), &orders_csv(10_000));
    write_json(
        &dir.join("pipeline.json"),
        &json!({
            "replication_mode": "FULL_TABLE",
            "max_buffered_batches": 4,
            "source": {"file": {"path": "orders.csv", "batch_size": 1000}},
            "transform": {"add_op_fields": true},
            "target": {"file": {"path": "out", "format": "parquet", "max_rows_per_file": 4000}}
        }),
    );
    let out = fastlane(
        dir,
        &[
            "-q",
            "--source=file",
            "--target=file",
            "--config=pipeline.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, dir));
    let files = data_files(&dir.join("out"), ".parquet");
    assert_eq!(files.len(), 3, "10,000 rows at 4,000 per file");
    let batches = read_parquet(&dir.join("out"));
    assert_eq!(rows(&batches), 10_000);
    assert_eq!(int_sum(&batches, "id"), 10_000 * 10_001 / 2);
    let schema = batches[0].schema();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "customer",
            "amount",
            "country",
            "created",
            "_op_type",
            "_op_timestamp"
        ]
    );
    assert!(
        !dir.join("out").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no staging folder may remain"
    );
}

#[test]
fn parquet_to_jsonl_with_sql_transform() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("orders.csv"), &orders_csv(2_000));
    write_json(
        &dir.join("to_parquet.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "orders.csv"}},
                "transform": {"add_op_fields": false},
                "target": {"file": {"path": "pq"}}}),
    );
    assert_eq!(fastlane(dir, &["-q", "--config=to_parquet.json"]).code, 0);
    write_json(
        &dir.join("to_jsonl.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "pq"}},
                "transform": {"sql": {"query": "SELECT id, country, amount * 2 AS doubled FROM batch WHERE country = 'NL'"}},
                "target": {"file": {"path": "js", "format": "jsonl", "compression": "gzip"}}}),
    );
    let out = fastlane(
        dir,
        &[
            "-q",
            "--source",
            "file",
            "--transform",
            "sql",
            "--target",
            "file",
            "--config",
            "to_jsonl.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = data_files(&dir.join("js"), ".jsonl.gz");
    assert_eq!(files.len(), 1);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(File::open(&files[0]).unwrap()),
        &mut text,
    )
    .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 500, "every 4th row is NL");
    assert!(lines.iter().all(|l| l["country"] == "NL"));
    assert_eq!(lines[0]["id"], 4);
    assert_eq!(lines[0]["doubled"], 8.08);
}

#[test]
fn plugin_transform_runs_in_the_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plugins = test_plugin_dir(&["misbehave"]);
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 1000, "batch_size": 100}},
                "transform": {"double": {"column": "id"}},
                "target": {"file": {"path": "out"}}}),
    );
    let out = fastlane(
        dir,
        &[
            "-q",
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "--transform=double",
            "--config=p.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let batches = read_parquet(&dir.join("out"));
    assert_eq!(int_sum(&batches, "id"), 2 * 999 * 1000 / 2);
}

fn sqlite_db(path: &Path, first: i64, last: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, created DATETIME)",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in first..=last {
        tx.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i,
                format!("customer {i}"),
                i as f64 / 4.0,
                "2026-03-01 12:00:00"
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn sqlite_full_table_then_incremental() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite_db(&dir.join("shop.db"), 1, 5_000);
    let pipeline = |mode: &str| {
        json!({"replication_mode": mode,
               "source": {"sqlite": {"path": "shop.db", "table": "orders", "replication_key": "id", "batch_size": 1000}},
               "transform": {"add_op_fields": false},
               "target": {"file": {"path": "out", "key": "id"}}})
    };
    write_json(&dir.join("full.json"), &pipeline("FULL_TABLE"));
    write_json(&dir.join("incremental.json"), &pipeline("INCREMENTAL"));

    let full = fastlane(
        dir,
        &[
            "-q",
            "--source=sqlite",
            "--target=file",
            "--config=full.json",
        ],
    );
    assert_eq!(full.code, 0, "{}", full.stderr);
    insta::assert_snapshot!("sqlite_full", redact(&full.stdout, dir));
    assert_eq!(rows(&read_parquet(&dir.join("out"))), 5_000);

    sqlite_db(&dir.join("shop.db"), 5_001, 5_700);
    let inc = fastlane(
        dir,
        &[
            "-q",
            "--source=sqlite",
            "--target=file",
            "--config=incremental.json",
        ],
    );
    assert_eq!(inc.code, 0, "{}", inc.stderr);
    insta::assert_snapshot!("sqlite_incremental", redact(&inc.stdout, dir));
    let batches = read_parquet(&dir.join("out"));
    assert_eq!(rows(&batches), 5_700, "only the 700 new rows were added");
    assert_eq!(int_sum(&batches, "id"), 5_700 * 5_701 / 2, "no duplicates");

    let again = fastlane(
        dir,
        &[
            "-q",
            "--source=sqlite",
            "--target=file",
            "--config=incremental.json",
        ],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains(" 0 rows loaded"), "{}", again.stdout);
    assert_eq!(rows(&read_parquet(&dir.join("out"))), 5_700);
}

#[test]
fn sqlite_into_sqlite_full_then_incremental_keeps_the_tables_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite_db(&dir.join("shop.db"), 1, 3_000);
    let pipeline = |mode: &str| {
        json!({"replication_mode": mode,
               "source": {"sqlite": {"path": "shop.db", "table": "orders", "replication_key": "id", "batch_size": 700}},
               "transform": {"add_op_fields": false},
               "target": {"sqlite": {"path": "copy.db", "table": "orders_copy", "key": "id", "concurrency": 2}},
               "verify": "count"})
    };
    write_json(&dir.join("full.json"), &pipeline("FULL_TABLE"));
    write_json(&dir.join("incremental.json"), &pipeline("INCREMENTAL"));
    let run = |config: &str| {
        let out = fastlane(
            dir,
            &[
                "--source=sqlite",
                "--target=sqlite",
                &format!("--config={config}"),
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    let full = run("full.json");
    assert!(
        full.stdout
            .contains("the source counts 3,000 rows, 3,000 were read, the staging counts 3,000"),
        "{}",
        full.stdout
    );
    let copy = rusqlite::Connection::open(dir.join("copy.db")).unwrap();
    copy.execute_batch("CREATE INDEX by_customer ON orders_copy (customer)")
        .unwrap();
    let summary = |copy: &rusqlite::Connection| -> (i64, i64, f64) {
        copy.query_row(
            "SELECT COUNT(*), SUM(id), SUM(amount) FROM orders_copy",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(
        summary(&copy),
        (3_000, 3_000 * 3_001 / 2, 3_000.0 * 3_001.0 / 8.0)
    );

    // New rows and a changed one: the incremental run reads after the copy's largest id.
    sqlite_db(&dir.join("shop.db"), 3_001, 3_500);
    let inc = run("incremental.json");
    assert!(inc.stdout.contains(" 500 rows loaded"), "{}", inc.stdout);
    assert_eq!(
        summary(&copy),
        (3_500, 3_500 * 3_501 / 2, 3_500.0 * 3_501.0 / 8.0)
    );
    let (types, created): (String, String) = copy
        .query_row(
            "SELECT (SELECT group_concat(type, ',') FROM pragma_table_info('orders_copy')), \
             (SELECT created FROM orders_copy WHERE id = 3500)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(types, "INTEGER,TEXT,REAL,TIMESTAMP");
    assert_eq!(created, "2026-03-01 12:00:00.000000");
    let indexes: i64 = copy
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'by_customer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 1, "the index made on the copy stays");

    // A full run replaces the rows, keeping the index.
    let again = run("full.json");
    assert!(
        again.stdout.contains("3,500 rows loaded"),
        "{}",
        again.stdout
    );
    assert_eq!(
        summary(&copy),
        (3_500, 3_500 * 3_501 / 2, 3_500.0 * 3_501.0 / 8.0)
    );
    let left: i64 = copy
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_fastlane%' OR name = 'by_customer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 1, "the index stays, no staging is left");
}

#[test]
fn bad_config_reports_every_mistake() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_json(
        &dir.join("bad.json"),
        &json!({
            "replication_mode": "SOMETIMES",
            "max_buffered_batches": 0,
            "max_buffered_bytes": "lots",
            "colour": "blue",
            "source": {"file": {"path": 42, "batch_size": -1, "delimter": ";"}},
            "target": {"file": {"format": "xlsx", "compression": "rar", "table": "orders"}},
            "logs": {"log_file": "${FASTLANE_TEST_UNSET_VARIABLE}"}
        }),
    );
    let out = fastlane(
        dir,
        &["--source=file", "--target=file", "--config=bad.json"],
    );
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(redact(&out.stderr, dir));
    // The same through `validate`.
    let out = fastlane(dir, &["validate", "--config=bad.json"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("problems in"), "{}", out.stderr);
}

#[test]
fn validate_accepts_a_good_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_json(
        &dir.join("ok.json"),
        &json!({"replication_mode": "INCREMENTAL",
                "source": {"file": {"path": "in/*.csv", "replication_key": "id"}},
                "transform": {"filter": {"condition": "id > 3"}},
                "target": {"file": {"path": "out", "key": "id"}}}),
    );
    let out = fastlane(dir, &["validate", "--transform=filter", "--config=ok.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, dir));
}

#[test]
fn missing_plugin_id_lists_the_available_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"oracle": {"dsn": "x"}},
                "target": {"file": {"path": "out"}}}),
    );
    let out = fastlane(
        dir,
        &["--source=oracle", "--target=file", "--config=p.json"],
    );
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(redact(&out.stderr, dir));
}

#[test]
fn a_flag_naming_a_section_the_file_lacks_names_the_sections_it_has() {
    // The original's README ran its athena example with --target=s3.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"athena": {"table": "t", "bucket": "b"}}}),
    );
    let out = fastlane(dir, &["--source=file", "--target=s3", "--config=p.json"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "there is no `target.s3` section for --target=s3; the file has `athena` (choose it \
             with --target)"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn logs_go_to_the_file_given() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("in.csv"), &orders_csv(10));
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"file": {"path": "out"}},
                "logs": {"log_file": "logs/from-config.log"}}),
    );
    let out = fastlane(
        dir,
        &[
            "--logs_to_file=logs/run.log",
            "--progress=off",
            "--config=p.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = std::fs::read_to_string(dir.join("logs/run.log")).unwrap();
    assert!(log.contains("running source `file`"), "{log}");
    assert!(
        log.contains("plugin::file") && log.contains("published 1 file(s)"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in the file");
}

#[test]
fn env_interpolation_fills_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("in.csv"), &orders_csv(10));
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "${FASTLANE_TEST_INPUT:-in.csv}"}},
                "target": {"file": {"path": "out", "format": "csv"}}}),
    );
    let out = fastlane(dir, &["-q", "--config=p.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(data_files(&dir.join("out"), ".csv").len(), 1);
}

#[test]
fn plugins_list_and_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fastlane(tmp.path(), &["plugins", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, tmp.path()));
    let out = fastlane(tmp.path(), &["plugins", "list", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "file")
    );
    let out = fastlane(tmp.path(), &["plugins", "schema", "target", "file"]);
    assert_eq!(out.code, 0);
    let schema: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["properties"]["max_rows_per_file"].is_object());
    let out = fastlane(tmp.path(), &["plugins", "schema", "source", "nope"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("available sources: `") && out.stderr.contains("`file`"),
        "{}",
        out.stderr
    );
}

#[test]
fn compressed_inputs_through_a_glob_and_output_rolled_by_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let csv = orders_csv(3_000);
    let mut gz = flate2::write::GzEncoder::new(
        File::create(dir.join("in/a.csv.gz")).unwrap(),
        flate2::Compression::default(),
    );
    std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
    gz.finish().unwrap();
    let second: String = csv
        .lines()
        .skip(1)
        .map(|l| format!("{}\n", l.replacen(|c: char| c.is_ascii_digit(), "9", 1)))
        .collect();
    let second = format!("id,customer,amount,country,created\n{second}");
    let zst = zstd_bytes(second.as_bytes());
    std::fs::write(dir.join("in/b.csv.zst"), zst).unwrap();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in/*.csv.*", "batch_size": 250}},
                "transform": {"add_op_fields": false},
                "target": {"file": {"path": "out", "format": "csv", "max_bytes_per_file": 50000}}}),
    );
    let out = fastlane(dir, &["-q", "--config=p.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = data_files(&dir.join("out"), ".csv");
    assert!(
        files.len() >= 3,
        "rolled by bytes into several files: {files:?}"
    );
    let mut lines = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("id,customer,amount,country,created\n"),
            "each file has a header"
        );
        lines += text.lines().count() - 1;
    }
    assert_eq!(lines, 6_000, "both compressed inputs arrive whole");
}

fn zstd_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = zstd::Encoder::new(&mut out, 3).unwrap();
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap();
    out
}

#[test]
fn plugins_are_found_through_fastlane_plugin_path() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = test_plugin_dir(&["misbehave"]);
    let elsewhere = tmp.path().join("nothing-here");
    let path = format!("{}:{}", elsewhere.display(), plugins.path().display());
    let out = fastlane_with_env(
        tmp.path(),
        &["plugins", "list", "--json"],
        &[("FASTLANE_PLUGIN_PATH", &path)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let misbehave = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "misbehave")
        .expect("misbehave plugin listed");
    assert_eq!(misbehave["origin"], "env");
    let origins: Vec<&str> = v["search_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["env", "env", "executable", "user"]);
}

#[test]
fn progress_is_logged_periodically_when_not_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plugins = test_plugin_dir(&["misbehave"]);
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 20000, "batch_size": 1000}},
                "target": {"discard": {"delay_ms": 60}}}),
    );
    let out = fastlane(
        dir,
        &[
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "--progress-interval=0.3",
            "--config=p.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("progress:"))
        .collect();
    assert!(lines.len() >= 2, "{}", out.stderr);
    assert!(
        lines[0].contains("rows loaded") && lines[0].contains("memory"),
        "{}",
        lines[0]
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "no terminal codes when not on a terminal"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `fastlane plugins schema … | head -1`: the reader goes away before fastlane writes.
    let mut child = std::process::Command::new(fastlane_tests::fastlane_bin())
        .args(["plugins", "schema", "target", "file"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fastlane");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
