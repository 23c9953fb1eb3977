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
