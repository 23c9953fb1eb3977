//! The `influxdb` target against the real InfluxDB 1.6 server of the tests (v1 API, 127.0.0.1:8086,
//! started by `tests/services.sh`): conformance, exact values read back with InfluxQL, hostile
//! names, precisions, offsets, retries through a fault-injecting proxy, and one clear error for
//! each kind of bad input.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use common::*;
use fastlane_plugin_api::ReplicationMode;
use fastlane_tests::conformance::{self, TargetFixture};
use serde_json::{Value, json};

struct Fixture;

impl Fixture {
    fn db(dir: &Path) -> String {
        unique_name(&dir.display().to_string())
    }
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "influxdb"
    }

    fn columns(&self) -> Vec<&'static str> {
        vec!["int32", "int64", "float64", "text", "flag"]
    }

    fn config(&self, dir: &Path) -> Value {
        config(
            &Self::db(dir),
            json!({"create_database": true, "batch_size": 1000, "key": "id"}),
        )
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        let db = Self::db(dir);
        let exists = influxql(None, "SHOW DATABASES").to_string().contains(&db);
        if !exists {
            return vec![];
        }
        let points = points(&db, "m");
        let int = |p: &serde_json::Map<String, Value>, k: &str| p.get(k).and_then(Value::as_i64);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("int32", DataType::Int32, true),
            Field::new("int64", DataType::Int64, true),
            Field::new("float64", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter(points.iter().map(|p| int(p, "id")))),
            Arc::new(Int32Array::from_iter(
                points.iter().map(|p| int(p, "int32").map(|v| v as i32)),
            )),
            Arc::new(Int64Array::from_iter(
                points.iter().map(|p| int(p, "int64")),
            )),
            Arc::new(Float64Array::from_iter(
                points
                    .iter()
                    .map(|p| p.get("float64").and_then(Value::as_f64)),
            )),
            Arc::new(StringArray::from_iter(
                points.iter().map(|p| p.get("text").and_then(Value::as_str)),
            )),
            Arc::new(BooleanArray::from_iter(
                points
                    .iter()
                    .map(|p| p.get("flag").and_then(Value::as_bool)),
            )),
        ];
        vec![RecordBatch::try_new(schema, columns).expect("batch")]
    }

    fn leftovers(&self, _dir: &Path) -> Vec<String> {
        vec![]
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"host": "influx.internal", "database": "metrics", "measurement": "cpu",
                   "tag_columns": ["host"], "field_columns": ["usage"], "user": "etl",
                   "password": "${INFLUX_PASSWORD}", "time_column": "ts", "precision": "ms"}),
            json!({"url": "https://eu-central-1-1.aws.cloud2.influxdata.com", "org": "acme",
                   "bucket": "metrics", "token": "${INFLUX_TOKEN}", "measurement_column": "kind",
                   "gzip": true}),
        ]
    }
}

#[test]
fn conformance() {
    conformance::check_stream_target("influxdb", &Fixture, true);
}

#[test]
fn values_and_hostile_names_are_written_exactly() {
    let db = unique_name("values_and_hostile_names");
    create_database(&db);
    let measurement = "cpu load,eu \"west\" ü";
    let schema = Arc::new(Schema::new(vec![
        Field::new("host name", DataType::Utf8, true),
        Field::new("region=zone", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("n", DataType::Int32, true),
        Field::new("big", DataType::UInt64, true),
        Field::new("ratio, \"%\"", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("day", DataType::Date32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                Some("a,b=c d"),
                Some("日本🦀"),
                None,
                Some(""),
            ])),
            Arc::new(StringArray::from(vec![
                Some("x y"),
                Some("back\\slash"),
                Some("z"),
                None,
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                1_700_000_000_000_001,
                1_700_000_000_000_002,
                1_700_000_000_000_003,
                -5,
            ])),
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(0),
                None,
                Some(7),
            ])),
            Arc::new(UInt64Array::from(vec![
                Some(i64::MAX as u64),
                None,
                Some(1),
                None,
            ])),
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(-1.5e-7),
                Some(1e21),
                None,
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("say \"hi\" \\o/ , = ü 🦀"),
                Some(""),
                None,
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(12345), Some(-1), None, None])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![Some(19_000), None, None, None])),
        ],
    )
    .unwrap();
    let cfg = config(
        &db,
        json!({
            "measurement": measurement, "tag_columns": ["host name", "region=zone"],
            "time_column": "ts", "precision": "us"
        }),
    );
    load(&cfg, vec![batch], ReplicationMode::FullTable, 1).unwrap();
    let got = points(&db, measurement);
    let expected = vec![
        json!({"time": -5000, "n": 7}),
        json!({"time": 1_700_000_000_000_001_000i64, "host name": "a,b=c d", "region=zone": "x y",
               "n": i32::MIN, "big": i64::MAX, "ratio, \"%\"": 0.1, "ok": true,
               "note": "say \"hi\" \\o/ , = ü 🦀", "price": 123.45, "day": "2022-01-08"}),
        json!({"time": 1_700_000_000_000_002_000i64, "host name": "日本🦀",
               "region=zone": "back\\slash", "n": 0, "ratio, \"%\"": -1.5e-7, "ok": false,
               "note": "", "price": -0.01}),
        json!({"time": 1_700_000_000_000_003_000i64, "region=zone": "z", "big": 1,
               "ratio, \"%\"": 1e21}),
    ];
    let got: Vec<Value> = got.into_iter().map(Value::Object).collect();
    // i64::MAX comes back through InfluxDB's JSON as a float; compare it apart.
    let strip = |mut v: Vec<Value>| {
        for p in &mut v {
            if let Some(big) = p.get("big").and_then(Value::as_f64) {
                p["big"] = json!(big);
            }
        }
        v
    };
    assert_eq!(strip(got), strip(expected));
    // The tags are tags (indexed), not fields.
    let tags = influxql(Some(&db), "SHOW TAG KEYS").to_string();
    assert!(
        tags.contains("host name") && tags.contains("region=zone"),
        "{tags}"
    );
}

#[test]
fn precisions_truncate_times_and_positions_keep_points_apart() {
    let db = unique_name("precisions");
    create_database(&db);
    let times = TimestampNanosecondArray::from(vec![1_700_000_000_999_999_999, -1]);
    let batch = RecordBatch::try_from_iter([
        ("t", Arc::new(times) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1, 2]))),
    ])
    .unwrap();
    for (precision, measurement, first, second) in [
        ("s", "in_s", 1_700_000_000_000_000_000i64, -1_000_000_000i64),
        ("ms", "in_ms", 1_700_000_000_999_000_000, -1_000_000),
        ("ns", "in_ns", 1_700_000_000_999_999_999, -1),
    ] {
        let cfg = config(
            &db,
            json!({"measurement": measurement, "time_column": "t", "precision": precision}),
        );
        load(&cfg, vec![batch.clone()], ReplicationMode::FullTable, 1).unwrap();
        let got: Vec<i64> = points(&db, measurement)
            .iter()
            .map(|p| p["time"].as_i64().unwrap())
            .collect();
        assert_eq!(got, vec![second, first], "{precision}");
    }
    // Without a time column, 5,000 rows from two workers become 5,000 distinct points.
    let rows = conformance::standard_batches(1, 5_000, 300, &["int64"]);
    let cfg = config(&db, json!({"measurement": "positions", "batch_size": 700}));
    load(&cfg, rows, ReplicationMode::FullTable, 2).unwrap();
    let count = influxql(Some(&db), "SELECT COUNT(id) FROM positions");
    assert_eq!(count["series"][0]["values"][0][1], json!(5000), "{count}");
}

#[test]
fn offsets_are_read_back() {
    let db = unique_name("offsets");
    create_database(&db);
    let plugin = plugin();
    let offset = |extra: Value| {
        plugin
            .create_target("influxdb", &config(&db, extra))
            .unwrap()
            .get_offset()
    };
    use fastlane_plugin_api::Target;
    assert_eq!(offset(json!({"time_column": "t"})).unwrap(), None);
    let batch = RecordBatch::try_from_iter([
        (
            "t",
            Arc::new(TimestampMicrosecondArray::from(vec![
                1_700_000_000_500_000,
                1_700_000_100_250_000,
                1_600_000_000_000_000,
            ])) as ArrayRef,
        ),
        ("id", Arc::new(Int64Array::from(vec![41, 7, 3]))),
    ])
    .unwrap();
    load(
        &config(&db, json!({"time_column": "t", "precision": "ms"})),
        vec![batch],
        ReplicationMode::Incremental,
        1,
    )
    .unwrap();
    assert_eq!(
        offset(json!({"time_column": "t"})).unwrap(),
        Some(json!("2023-11-14T22:15:00.250"))
    );
    assert_eq!(
        offset(json!({"time_column": "t", "precision": "ms", "offset_format": "epoch"})).unwrap(),
        Some(json!(1_700_000_100_250i64))
    );
    assert_eq!(offset(json!({"key": "id"})).unwrap(), Some(json!(41)));
    let missing = offset(json!({"measurement": "none", "key": "id"})).unwrap();
    assert_eq!(missing, None);
    let no_key = offset(json!({})).unwrap_err().to_string();
    assert!(no_key.contains("`key` or `time_column`"), "{no_key}");
    let no_db = plugin
        .create_target("influxdb", &config("no_such_db", json!({"key": "id"})))
        .unwrap()
        .get_offset()
        .unwrap_err()
        .to_string();
    assert!(no_db.contains("no database `no_such_db`"), "{no_db}");
}

fn small_batch(rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef,
        ),
        (
            "t",
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..rows).map(|i| 1_700_000_000_000_000_000 + i),
            )),
        ),
    ])
    .unwrap()
}

#[test]
fn busy_and_lost_writes_are_retried_and_land_once() {
    for mode in ["status", "drop"] {
        let db = unique_name(&format!("retries {mode}"));
        create_database(&db);
        let proxy = Proxy::start(INFLUX, mode, 3);
        let mut cfg = config(
            &db,
            json!({"time_column": "t", "batch_size": 500, "retry_backoff_ms": 10,
                   "retry_max_backoff_ms": 50, "requests_in_flight": 1}),
        );
        cfg["url"] = json!(proxy.url);
        load(
            &cfg,
            vec![small_batch(2_000)],
            ReplicationMode::FullTable,
            1,
        )
        .unwrap();
        let count = influxql(Some(&db), "SELECT COUNT(id) FROM m");
        assert_eq!(
            count["series"][0]["values"][0][1],
            json!(2000),
            "{mode}: {count}"
        );
        let stats = proxy.stats();
        assert_eq!(stats["faulty"], json!(3), "{mode}: {stats}");
        assert_eq!(stats["forwarded"], json!(4), "{mode}: {stats}");
        let request = &stats["requests"][0];
        assert_eq!(request["path"], json!("/write"));
        assert_eq!(request["query"], json!(format!("db={db}&precision=ns")));
        assert!(
            request["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Basic "),
            "{request}"
        );
    }
}

#[test]
fn a_server_that_stays_busy_fails_the_run_clearly() {
    let db = unique_name("always busy");
    create_database(&db);
    let proxy = Proxy::start(INFLUX, "status", -1);
    let mut cfg = config(
        &db,
        json!({"time_column": "t", "max_retries": 2, "retry_backoff_ms": 10,
               "retry_max_backoff_ms": 20}),
    );
    cfg["url"] = json!(proxy.url);
    let error = load(&cfg, vec![small_batch(100)], ReplicationMode::FullTable, 1).unwrap_err();
    assert!(
        error.contains("did not take a write of 100 points after 3 attempts")
            && error.contains("503")
            && error.contains("the server is busy"),
        "{error}"
    );
    assert_eq!(proxy.stats()["writes"], json!(3));
    assert!(points(&db, "m").is_empty());
}

#[test]
fn bad_input_gets_one_clear_error_each() {
    let db = unique_name("bad input");
    create_database(&db);
    let run = |cfg: Value, batch: RecordBatch| {
        load(&cfg, vec![batch], ReplicationMode::FullTable, 1).unwrap_err()
    };
    // Wrong password: refused before anything is sent.
    let mut cfg = config(&db, json!({"time_column": "t"}));
    cfg["password"] = json!("wrong");
    let e = run(cfg, small_batch(3));
    assert!(
        e.contains("refused the credentials") && e.contains("401"),
        "{e}"
    );
    // Unknown database.
    let e = run(
        config("nowhere", json!({"time_column": "t"})),
        small_batch(3),
    );
    assert!(
        e.contains("no database `nowhere`") && e.contains("create_database"),
        "{e}"
    );
    // Nothing listening.
    let mut cfg = config(&db, json!({"time_column": "t"}));
    cfg["url"] = json!("http://127.0.0.1:9");
    let e = run(cfg, small_batch(3));
    assert!(
        e.contains("cannot reach InfluxDB at http://127.0.0.1:9"),
        "{e}"
    );
    // Every configuration problem at once.
    let e = plugin()
        .create_target(
            "influxdb",
            &json!({"url": "nope", "tag_columns": ["time"], "batch_size": 0}),
        )
        .err()
        .unwrap()
        .to_string();
    for part in [
        "`url` `nope`",
        "`database`",
        "`measurement`",
        "`time`",
        "`batch_size`",
    ] {
        assert!(e.contains(part), "{part} missing from {e}");
    }
    // A column the configuration names is not in the data.
    let e = run(config(&db, json!({"time_column": "when"})), small_batch(3));
    assert!(
        e.contains("`when` is not a column of the data (its columns: id, t)"),
        "{e}"
    );
    // A tag value line protocol cannot carry.
    let batch = RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from(vec!["ok", "two\nlines"])) as ArrayRef,
        ),
        ("v", Arc::new(Int64Array::from(vec![1, 2]))),
    ])
    .unwrap();
    let e = run(config(&db, json!({"tag_columns": ["host"]})), batch);
    assert!(
        e.contains("row 1 of the batch, column `host`") && e.contains("newline"),
        "{e}"
    );
    // A field type InfluxDB cannot store.
    let batch = RecordBatch::try_from_iter([(
        "raw",
        Arc::new(arrow_array::BinaryArray::from(vec![b"x".as_ref()])) as ArrayRef,
    )])
    .unwrap();
    let e = run(config(&db, json!({})), batch);
    assert!(
        e.contains("`raw` is Binary") && e.contains("field_columns"),
        "{e}"
    );
    // A field whose type conflicts with what the measurement already holds.
    load(
        &config(&db, json!({"measurement": "typed"})),
        vec![small_batch(2)],
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    let batch =
        RecordBatch::try_from_iter([("id", Arc::new(StringArray::from(vec!["text"])) as ArrayRef)])
            .unwrap();
    let e = run(config(&db, json!({"measurement": "typed"})), batch);
    assert!(
        e.contains("refused a write of 1 points") && e.contains("field type conflict"),
        "{e}"
    );
}

#[test]
fn create_database_makes_the_database() {
    let db = unique_name("create_database");
    influxql(None, &format!("DROP DATABASE \"{db}\""));
    let cfg = config(&db, json!({"create_database": true, "time_column": "t"}));
    load(&cfg, vec![small_batch(10)], ReplicationMode::FullTable, 1).unwrap();
    assert_eq!(points(&db, "m").len(), 10);
    // Rerunning rewrites the same points: nothing is duplicated.
    load(&cfg, vec![small_batch(10)], ReplicationMode::FullTable, 1).unwrap();
    assert_eq!(points(&db, "m").len(), 10);
}
