//! The `influxdb` target's v2 write API (`/api/v2/write?org=&bucket=&precision=`, token) against
//! VictoriaMetrics on 127.0.0.1:8428 (started by `tests/services.sh`), which takes InfluxDB line
//! protocol on that path. It keeps numeric fields only, as series `<measurement>_<field>` with
//! millisecond times, so this checks the HTTP contract (seen by the fault-injecting proxy) and
//! the numeric values; exact InfluxDB semantics are checked against InfluxDB 1.6 in
//! `influxdb.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow_array::TimestampMillisecondArray;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use common::*;
use fastlane_plugin_api::ReplicationMode;
use serde_json::{Value, json};

/// Every series whose name starts with `prefix`, as (name, tags, values, timestamps).
fn export(prefix: &str) -> Vec<(String, Value, Vec<f64>, Vec<i64>)> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    http.post(format!("{VICTORIA}/internal/force_flush"))
        .send()
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| {
            panic!("VictoriaMetrics on {VICTORIA} (tests/services.sh starts it): {e}")
        });
    let text = http
        .get(format!("{VICTORIA}/api/v1/export"))
        .query(&[("match[]", format!("{{__name__=~\"{prefix}.*\"}}"))])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out: Vec<_> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let mut tags = v["metric"].clone();
            let name = tags["__name__"].as_str().unwrap().to_owned();
            tags.as_object_mut().unwrap().remove("__name__");
            let values = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let times = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            (name, tags, values, times)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    out
}

#[test]
fn v2_writes_follow_the_api_and_land() {
    let measurement = unique_name("v2 writes");
    let proxy = Proxy::start(VICTORIA, "none", 0);
    let rows = 3_000i64;
    let batch = RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| if i % 2 == 0 { "a b" } else { "c,d" }),
            )) as ArrayRef,
        ),
        (
            "at",
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..rows).map(|i| 1_700_000_000_000 + i),
            )),
        ),
        ("n", Arc::new(Int64Array::from_iter_values(0..rows))),
        (
            "x",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 / 4.0),
            )),
        ),
    ])
    .unwrap();
    let cfg = json!({
        "url": proxy.url, "org": "acme", "bucket": "metrics", "token": "s3cr3t-token",
        "measurement": measurement, "tag_columns": ["host"], "time_column": "at",
        "precision": "ms", "batch_size": 1_000, "gzip": true
    });
    load(&cfg, vec![batch], ReplicationMode::FullTable, 1).unwrap();

    let stats = proxy.stats();
    assert_eq!(stats["writes"], json!(3), "{stats}");
    for request in stats["requests"].as_array().unwrap() {
        assert_eq!(request["path"], json!("/api/v2/write"));
        assert_eq!(
            request["query"],
            json!("org=acme&bucket=metrics&precision=ms")
        );
        assert_eq!(request["authorization"], json!("Token s3cr3t-token"));
        assert_eq!(request["content_encoding"], json!("gzip"));
    }

    let series = export(&measurement);
    let names: Vec<(&str, &str)> = series
        .iter()
        .map(|s| (s.0.as_str(), s.1["host"].as_str().unwrap()))
        .collect();
    let n = format!("{measurement}_n");
    let x = format!("{measurement}_x");
    assert_eq!(
        names,
        vec![
            (n.as_str(), "a b"),
            (n.as_str(), "c,d"),
            (x.as_str(), "a b"),
            (x.as_str(), "c,d")
        ]
    );
    for (name, tags, values, times) in &series {
        let odd = i64::from(tags["host"] == json!("c,d"));
        let ids: Vec<i64> = (0..rows).filter(|i| i % 2 == odd).collect();
        let expected: Vec<f64> = ids
            .iter()
            .map(|&i| {
                if name.ends_with("_n") {
                    i as f64
                } else {
                    i as f64 / 4.0
                }
            })
            .collect();
        assert_eq!(values, &expected, "{name} {tags}");
        let expected_times: Vec<i64> = ids.iter().map(|i| 1_700_000_000_000 + i).collect();
        assert_eq!(times, &expected_times, "{name} {tags}");
    }
}

#[test]
fn v2_incremental_is_refused_with_the_way_out() {
    let cfg = json!({
        "url": VICTORIA, "bucket": "metrics", "token": "t", "measurement": "m",
        "time_column": "t"
    });
    let target = plugin().create_target("influxdb", &cfg).unwrap();
    use fastlane_plugin_api::Target;
    let e = target.get_offset().unwrap_err().to_string();
    assert!(e.contains("v1 API") && e.contains("`api`: `v1`"), "{e}");
}
