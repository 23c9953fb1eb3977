//! The `fastlane` command loading a SQLite table into InfluxDB 1.6 (127.0.0.1:8086): a first
//! INCREMENTAL run loads everything, a second only the rows after the newest time InfluxDB
//! holds, a third nothing; the points read back match the table, with no duplicates.

mod common;

use std::path::Path;

use common::*;
use fastlane_tests::fastlane;
use serde_json::json;

fn add_rows(db: &Path, from: i64, to: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL,
         celsius REAL, created TEXT NOT NULL)",
    )
    .unwrap();
    let mut insert = conn
        .prepare("INSERT INTO readings VALUES (?1, ?2, ?3, ?4)")
        .unwrap();
    for i in from..=to {
        // One reading a second from 2026-03-01 00:00:00 UTC; every 10th has no value.
        let created = chrono::DateTime::from_timestamp(1_772_323_200 + i, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let celsius = (i % 10 != 0).then_some(i as f64 / 8.0);
        insert
            .execute(rusqlite::params![
                i,
                format!("s-{}", i % 3),
                celsius,
                created
            ])
            .unwrap();
    }
}

fn run(dir: &Path) -> String {
    let out = fastlane(
        dir,
        &[
            "--source=sqlite",
            "--target=influxdb",
            "--config=p.json",
            "--progress=off",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.stdout
}

#[test]
fn sqlite_to_influxdb_incremental_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = unique_name("cli incremental");
    create_database(&db);
    add_rows(&dir.join("plant.db"), 1, 3_000);
    let pipeline = json!({
        "replication_mode": "INCREMENTAL",
        "source": {"sqlite": {"path": "plant.db", "table": "readings",
                               "replication_key": "created", "batch_size": 1000}},
        "transform": {"add_op_fields": false},
        "target": {"influxdb": config(&db, json!({
            "measurement": "readings", "tag_columns": ["sensor"], "time_column": "created",
            "precision": "s", "offset_format": "datetime", "batch_size": 700
        }))}
    });
    std::fs::write(dir.join("p.json"), pipeline.to_string()).unwrap();

    let first = run(dir);
    assert!(first.contains("3,000 rows loaded"), "{first}");
    add_rows(&dir.join("plant.db"), 3_001, 3_500);
    let second = run(dir);
    assert!(second.contains(" 500 rows loaded"), "{second}");
    let third = run(dir);
    assert!(third.contains(" 0 rows loaded"), "{third}");

    let points = points(&db, "readings");
    assert_eq!(points.len(), 3_500);
    for (i, p) in (1i64..).zip(&points) {
        assert_eq!(p["time"], json!((1_772_323_200 + i) * 1_000_000_000));
        assert_eq!(p["id"], json!(i));
        assert_eq!(p["sensor"], json!(format!("s-{}", i % 3)));
        let celsius = p.get("celsius").and_then(serde_json::Value::as_f64);
        assert_eq!(celsius, (i % 10 != 0).then_some(i as f64 / 8.0), "row {i}");
    }
}
