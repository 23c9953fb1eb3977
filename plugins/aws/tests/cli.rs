//! The `fastlane` command with a CSV file as source and the `aws` plugin's targets, against
//! moto on loopback: file → S3 (the Parquet objects read back through the manifest) and file →
//! Firehose (the records found in the delivery stream's bucket), compared with the file.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use common::S3;
use fastlane_tests::conformance::rows_as_text;
use fastlane_tests::fastlane_with_env;
use serde_json::json;

const ROWS: usize = 25_000;

/// Writes `orders.csv` and returns its rows as text: id, name, amount.
fn write_orders(dir: &Path) -> Vec<Vec<String>> {
    let mut csv = String::from("id,name,amount\n");
    let mut rows = Vec::new();
    for i in 0..ROWS {
        let name = format!("item {i} «ü»");
        csv.push_str(&format!("{i},{name},{}.5\n", i * 3));
        rows.push(vec![i.to_string(), name, format!("{}.5", i * 3)]);
    }
    std::fs::write(dir.join("orders.csv"), csv).expect("write csv");
    rows
}

fn run(dir: &Path, target: &str) {
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let out = fastlane_with_env(
        dir,
        &[
            "--source=file",
            &format!("--target={target}"),
            "--config=p.json",
            "--progress=off",
        ],
        &env,
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "{} rows loaded",
            fastlane_host::progress::count(ROWS as u64)
        )),
        "{}",
        out.stdout
    );
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]))
}

#[test]
fn a_csv_file_goes_to_s3_and_to_firehose() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = write_orders(dir.path());
    let s3 = S3::new("cli");
    let stream = format!(
        "cli-{}",
        common::unique_name(&dir.path().display().to_string())
    );
    let firehose = common::firehose_client();
    common::create_delivery_stream(&firehose, &s3.bucket, &stream);
    std::fs::write(
        dir.path().join("p.json"),
        json!({
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "orders.csv", "batch_size": 4000}},
            "target": {
                "s3": {"bucket": s3.bucket, "prefix": "shop", "table": "orders",
                       "endpoint_url": common::endpoint(), "region": "us-east-1",
                       "max_rows_per_object": 10000, "concurrency": 2},
                "firehose": {"delivery_stream": stream, "endpoint_url": common::endpoint(),
                             "region": "us-east-1", "concurrency": 2}
            },
            "monitoring": {"enabled": false}
        })
        .to_string(),
    )
    .expect("config");
    let columns = ["name", "amount"];

    run(dir.path(), "s3");
    let back = s3.read_table("shop/orders");
    assert_eq!(rows_as_text(&back, &columns), expected);
    assert!(s3.keys("shop/orders/dt=").len() >= 3, "rolled objects");

    run(dir.path(), "firehose");
    let text: Vec<u8> = s3
        .keys(&format!("{stream}/"))
        .iter()
        .flat_map(|k| s3.get(k))
        .collect();
    let back: Vec<RecordBatch> = arrow_json::ReaderBuilder::new(schema())
        .build(text.as_slice())
        .expect("json reader")
        .map(|b| b.expect("batch"))
        .collect();
    assert_eq!(rows_as_text(&back, &columns), expected);
    common::delete_delivery_stream(&firehose, &stream);
}

/// Kills file → S3 loads with SIGKILL at points spread over the rows loaded
/// (`FASTLANE_KILL_POINTS`, 20 by default): every batch is flushed into an object of its own
/// with its record, so the records say how far the load is; after each kill a run must resume
/// and leave the table with exactly the file's rows.
#[test]
fn a_killed_file_to_s3_load_resumes_to_exactly_the_files_rows() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const BIG: i64 = 1_000_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut csv = String::with_capacity(40 * BIG as usize);
    csv.push_str("id,name,amount\n");
    for i in 0..BIG {
        csv.push_str(&format!("{i},n{:x},{}.25\n", i * 7919, i % 1000));
    }
    std::fs::write(dir.path().join("big.csv"), csv).expect("write csv");
    let s3 = S3::new("resume");
    let config = json!({
        "replication_mode": "FULL_TABLE",
        "checkpoint_interval_secs": 0,
        "source": {"file": {"path": "big.csv", "batch_size": 20000}},
        "target": {"s3": {"bucket": s3.bucket, "prefix": "shop", "table": "big",
                          "endpoint_url": common::endpoint(), "region": "us-east-1",
                          "max_rows_per_object": 100000, "concurrency": 2}},
        "transform": {"add_op_fields": false},
        "monitoring": {"enabled": false}
    });
    std::fs::write(dir.path().join("p.json"), config.to_string()).expect("config");
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let args = [
        "run",
        "--config=p.json",
        "--progress=off",
        "--summary-json=s.json",
    ];
    let check = || {
        let back = s3.read_table("shop/big");
        let mut seen = std::collections::HashSet::new();
        for batch in &back {
            let ids = batch
                .column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>();
            for id in ids.values() {
                assert!(seen.insert(*id), "id {id} was published twice");
            }
        }
        assert_eq!(seen.len() as i64, BIG, "rows in the table");
    };
    let run_to_end = || {
        let out = fastlane_with_env(dir.path(), &args, &env);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let text = std::fs::read_to_string(dir.path().join("s.json")).expect("summary");
        serde_json::from_str::<serde_json::Value>(&text).expect("summary json")
    };
    let started = Instant::now();
    let summary = run_to_end();
    let full = started.elapsed();
    assert_eq!(summary["verification"]["status"], "passed", "{summary}");
    check();

    let points: usize = std::env::var("FASTLANE_KILL_POINTS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20);
    let mut reread = Vec::new();
    for k in 1..=points {
        let mut child = Command::new(fastlane_tests::fastlane_bin())
            .args(args)
            .current_dir(dir.path())
            .envs(env)
            .env("XDG_DATA_HOME", dir.path().join(".no-user-plugins"))
            .env_remove("FASTLANE_PLUGIN_PATH")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // One record per 20,000-row batch.
        let target = (BIG as usize / 20_000) * k / (points + 1);
        let started = Instant::now();
        let running = loop {
            if child.try_wait().expect("wait").is_some() {
                break false;
            }
            let records = s3
                .keys("shop/big/_fastlane/runs/")
                .iter()
                .filter(|k| k.contains("/record-"))
                .count();
            if records >= target.max(1) {
                break true;
            }
            assert!(
                started.elapsed().as_secs() < 120,
                "the load made no progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let _ = child.kill();
        let _ = child.wait();
        if !running {
            continue;
        }
        let summary = run_to_end();
        check();
        if summary["checkpoint"]["resumed"] == true {
            let read = summary["rows_extracted"].as_i64().expect("rows");
            reread.push(read as f64 / BIG as f64);
        }
        // The published run leaves no checkpoints behind.
        let stray = s3.keys("shop/big/_fastlane/runs/");
        assert!(stray.is_empty(), "{stray:?}");
    }
    let mean = reread.iter().sum::<f64>() / reread.len().max(1) as f64;
    eprintln!(
        "{} kills (an uninterrupted load takes {:.1} s); resumed runs read {mean:.3} of the file \
         on average: {:?}",
        reread.len(),
        full.as_secs_f64(),
        reread.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    assert!(
        mean < 0.5,
        "resumed runs read {mean:.3} of the file on average"
    );
    assert!(
        reread.len() >= points / 2,
        "too few kills landed mid-run: {reread:?}"
    );
}
