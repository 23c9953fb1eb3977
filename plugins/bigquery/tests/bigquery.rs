//! The `bigquery` source against the bqemulator BigQuery emulator of the tests (REST on
//! 127.0.0.1:9050, Storage Read gRPC on 127.0.0.1:9060, started by `tests/services.sh`):
//! conformance, every type through both read paths, streams and row ranges as partitions,
//! column selection and filters, incremental reads of tables and queries, service-account
//! credentials against an OAuth token endpoint, and one clear error for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Decimal256Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use base64::Engine;
use fastlane_host::engine::EngineOptions;
use fastlane_plugin_api::{ReadContext, ReplicationMode, Source};
use fastlane_tests::conformance::{self, SourceFixture};
use serde_json::{Value, json};

const REST: &str = "http://127.0.0.1:9050";
const GRPC: &str = "http://127.0.0.1:9060";
const PROJECT: &str = "test-project";

/// The emulator runs one statement at a time on one DuckDB connection and fails requests that
/// arrive meanwhile (HTTP 500, `connection has an unfinished result`), or answers them wrongly
/// (a page of 1 row where 1000 were asked for): the tests run one at a time, and the reads
/// that go through the engine use one partition (`max_streams: 1`) where the REST API reads.
/// `storage_streams_and_rest_ranges_are_partitions_that_cover_every_row_once` reads several
/// partitions, one after the other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn http() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::blocking::Client::new)
}

/// A REST call to the emulator; panics with the answer unless it succeeds.
fn call(method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{REST}/bigquery/v2/projects/{PROJECT}{path}");
    let mut request = match method {
        "GET" => http().get(&url),
        "DELETE" => http().delete(&url),
        _ => http().post(&url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap_or_else(|e| {
        panic!("BigQuery emulator on {REST} (tests/services.sh starts it): {e}")
    });
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A fresh dataset named after `seed`.
fn dataset(seed: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    std::process::id().hash(&mut h);
    let name = format!("t_{:012x}", h.finish() & 0xffff_ffff_ffff);
    let url = format!("{REST}/bigquery/v2/projects/{PROJECT}/datasets/{name}?deleteContents=true");
    let _ = http().delete(url).send();
    call(
        "POST",
        "/datasets",
        Some(json!({"datasetReference": {"projectId": PROJECT, "datasetId": name}})),
    );
    name
}

fn create_table(ds: &str, table: &str, fields: Value) {
    call(
        "POST",
        &format!("/datasets/{ds}/tables"),
        Some(json!({
            "tableReference": {"projectId": PROJECT, "datasetId": ds, "tableId": table},
            "schema": {"fields": fields}
        })),
    );
}

fn insert(ds: &str, table: &str, rows: &[Value]) {
    for chunk in rows.chunks(5_000) {
        let rows: Vec<Value> = chunk.iter().map(|r| json!({"json": r})).collect();
        let answer = call(
            "POST",
            &format!("/datasets/{ds}/tables/{table}/insertAll"),
            Some(json!({"rows": rows})),
        );
        assert_eq!(answer["insertErrors"], json!([]), "{answer}");
    }
}

/// Runs a statement (DDL, DML) and checks it succeeded.
fn query(sql: &str) {
    let answer = call(
        "POST",
        "/queries",
        Some(json!({"query": sql, "useLegacySql": false})),
    );
    assert!(answer.get("errors").is_none(), "{sql}: {answer}");
}

fn config(extra: Value) -> Value {
    let mut v = json!({
        "gcp_project": PROJECT, "auth": "none", "endpoint": REST, "storage_endpoint": GRPC,
        "max_retries": 1, "retry_backoff_ms": 10
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

fn source(config: &Value) -> std::result::Result<impl Source, String> {
    conformance::load("bigquery")
        .create_source("bigquery", config)
        .map_err(|e| e.to_string())
}

/// Reads with the source configured by `config`; the batches, or the run's error chain.
fn read(config: &Value, offset: Option<Value>) -> std::result::Result<Vec<RecordBatch>, String> {
    let source = source(config)?;
    conformance::read_source(
        "bigquery",
        Box::new(source),
        &EngineOptions::default(),
        offset,
    )
    .map_err(|e| fastlane_host::error::chain(&e))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The `id` column of every batch, sorted.
fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .map(Option::unwrap)
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The batches as a table, rows sorted by their first column, timestamps shown without their
/// zone (printing a named zone needs chrono-tz).
fn table(batches: &[RecordBatch]) -> String {
    let text = conformance::pretty(batches);
    let mut lines: Vec<&str> = text.lines().collect();
    let body = lines.len().saturating_sub(1);
    if body > 3 {
        lines[3..body].sort_unstable();
    }
    lines.join("\n")
}

struct Fixture;

impl SourceFixture for Fixture {
    fn id(&self) -> &str {
        "bigquery"
    }

    fn columns(&self) -> Vec<&'static str> {
        vec![
            "int32", "int64", "float64", "text", "flag", "day", "moment", "blob",
        ]
    }

    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value {
        let ds = dataset(&dir.display().to_string());
        let Some(first) = batches.first() else {
            create_table(
                &ds,
                "t",
                json!([{"name": "id", "type": "INT64", "mode": "REQUIRED"}]),
            );
            return config(
                json!({"dataset_id": ds, "table_id": "t", "read_api": "rest",
                                 "page_size": batch_rows, "replication_key": "id",
                                 "max_streams": 1}),
            );
        };
        let kinds: Vec<(String, &str)> = first
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let kind = match f.data_type() {
                    DataType::Int32 | DataType::Int64 => "INT64",
                    DataType::Float64 => "FLOAT64",
                    DataType::Utf8 => "STRING",
                    DataType::Boolean => "BOOL",
                    DataType::Date32 => "DATE",
                    DataType::Timestamp(_, None) => "DATETIME",
                    DataType::Binary => "BYTES",
                    other => panic!("no BigQuery type for {other}"),
                };
                (f.name().clone(), kind)
            })
            .collect();
        let fields: Vec<Value> = kinds
            .iter()
            .map(|(name, kind)| {
                let mode = if name == "id" { "REQUIRED" } else { "NULLABLE" };
                json!({"name": name, "type": kind, "mode": mode})
            })
            .collect();
        create_table(&ds, "t", Value::Array(fields));
        let options = arrow_cast::display::FormatOptions::default();
        let mut out = Vec::new();
        for batch in batches {
            let formatters: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| arrow_cast::display::ArrayFormatter::try_new(c, &options).unwrap())
                .collect();
            for row in 0..batch.num_rows() {
                let mut object = serde_json::Map::new();
                for (i, (name, kind)) in kinds.iter().enumerate() {
                    let column = batch.column(i);
                    if column.is_null(row) {
                        continue;
                    }
                    let value = match *kind {
                        "INT64" => json!(formatters[i].value(row).to_string()),
                        "FLOAT64" => json!(
                            column
                                .as_primitive::<arrow_array::types::Float64Type>()
                                .value(row)
                        ),
                        "BOOL" => json!(column.as_boolean().value(row)),
                        "BYTES" => json!(
                            base64::engine::general_purpose::STANDARD
                                .encode(column.as_binary::<i32>().value(row))
                        ),
                        _ => json!(formatters[i].value(row).to_string()),
                    };
                    object.insert(name.clone(), value);
                }
                out.push(Value::Object(object));
            }
        }
        insert(&ds, "t", &out);
        config(
            json!({"dataset_id": ds, "table_id": "t", "read_api": "rest",
                      "page_size": batch_rows, "replication_key": "id", "max_streams": 1}),
        )
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"gcp_project": "analytics-prod", "dataset_id": "shop", "table_id": "orders",
                   "secret": "prod/bigquery", "secret_region": "eu-west-1"}),
            json!({"gcp_project": "analytics-prod", "dataset_id": "shop", "table_id": "orders",
                   "service_account_json": "${GCP_SA_KEY}", "replication_key": "updated_at",
                   "columns": ["id", "status", "updated_at"], "filter": "status != 'test'"}),
            json!({"gcp_project": "analytics-prod", "query": "SELECT id, total FROM shop.orders",
                   "auth": "adc", "location": "EU", "read_api": "rest", "page_size": 50000}),
            json!({"gcp_project": "test-project", "dataset_id": "d", "table_id": "t",
                   "auth": "none", "endpoint": "http://127.0.0.1:9050",
                   "storage_endpoint": "http://127.0.0.1:9060", "max_streams": 4}),
        ]
    }
}

#[test]
fn conformance() {
    let _serial = serial();
    conformance::check_source("bigquery", &Fixture);
}

/// A table holding every type the emulator stores (it has no GEOGRAPHY without DuckDB's
/// spatial extension, and no BIGNUMERIC column: see `bignumeric_and_json_from_a_query`).
fn types_table() -> String {
    let ds = dataset("types");
    create_table(
        &ds,
        "types",
        json!([
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "n", "type": "NUMERIC"},
            {"name": "f", "type": "FLOAT64"},
            {"name": "b", "type": "BOOL"},
            {"name": "s", "type": "STRING"},
            {"name": "raw", "type": "BYTES"},
            {"name": "d", "type": "DATE"},
            {"name": "dt", "type": "DATETIME"},
            {"name": "t", "type": "TIME"},
            {"name": "ts", "type": "TIMESTAMP"},
            {"name": "j", "type": "JSON"},
            {"name": "a", "type": "INT64", "mode": "REPEATED"},
            {"name": "st", "type": "RECORD", "fields": [
                {"name": "x", "type": "INT64"},
                {"name": "y", "type": "STRING"},
                {"name": "z", "type": "STRING", "mode": "REPEATED"}
            ]}
        ]),
    );
    insert(
        &ds,
        "types",
        &[
            json!({"id": 1, "n": "1.25", "f": 1.5, "b": true, "s": "héllo 😀 'quoted'",
                   "raw": "AP8=", "d": "2024-01-02", "dt": "2024-01-02T03:04:05.123456",
                   "t": "03:04:05.5", "ts": "2024-01-02T03:04:05.123456Z",
                   "j": "{\"a\": [1, 2]}", "a": [1, 2, 3],
                   "st": {"x": 7, "y": "z", "z": ["p", "q"]}}),
            json!({"id": 2, "a": []}),
            json!({"id": 3, "n": "-99999999999999999999999999999.999999999", "f": -0.0,
                   "ts": "1900-01-01T00:00:00Z", "d": "0001-01-01",
                   "dt": "9999-12-31T23:59:59.999999", "a": [-9223372036854775807i64]}),
        ],
    );
    ds
}

#[test]
fn every_type_reads_the_same_through_the_storage_and_rest_apis() {
    let _serial = serial();
    let ds = types_table();
    let mut seen = Vec::new();
    for api in ["storage", "rest"] {
        let got = read(
            &config(json!({"dataset_id": ds, "table_id": "types", "read_api": api})),
            None,
        )
        .unwrap_or_else(|e| panic!("{api}: {e}"));
        assert_eq!(rows(&got), 3, "{api}");
        let schema = got[0].schema();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                "id: Int64",
                "n: Decimal128(38, 9)",
                "f: Float64",
                "b: Boolean",
                "s: Utf8",
                "raw: Binary",
                "d: Date32",
                "dt: Timestamp(µs)",
                "t: Time64(µs)",
                "ts: Timestamp(µs, \"UTC\")",
                "j: Utf8",
                "a: List(Int64)",
                "st: Struct(\"x\": Int64, \"y\": Utf8, \"z\": List(Utf8))",
            ],
            "{api}"
        );
        assert!(!schema.field(0).is_nullable(), "REQUIRED is not nullable");
        let all: Vec<RecordBatch> = got.clone();
        let batch = arrow::compute::concat_batches(&schema, &all).unwrap();
        let sorted = arrow::compute::take_record_batch(
            &batch,
            &arrow::compute::sort_to_indices(batch.column(0), None, None).unwrap(),
        )
        .unwrap();
        let n = sorted.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(n.value(0), 1_250_000_000, "{api}: NUMERIC is exact");
        assert_eq!(
            n.value(2),
            -99_999_999_999_999_999_999_999_999_999_999_999_999i128,
            "{api}"
        );
        let ts = sorted.column(9).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_704_164_645_123_456, "{api}");
        assert_eq!(ts.value(2), -2_208_988_800_000_000, "{api}");
        assert_eq!(
            sorted.column(5).as_binary::<i32>().value(0),
            [0u8, 255],
            "{api}"
        );
        seen.push(table(&[sorted]));
    }
    // The emulator sends no list for a REPEATED column left out of an insert (BigQuery sends
    // an empty one); both rows above give it explicitly, so both paths agree to the byte.
    assert_eq!(
        seen[0], seen[1],
        "storage:\n{}\nrest:\n{}",
        seen[0], seen[1]
    );
    insta_like(&seen[0]);
}

/// The exact rendering of the types table, checked by value.
fn insta_like(text: &str) {
    for expected in [
        "| 1  | 1.250000000",
        "héllo 😀 'quoted'",
        "00ff",
        "2024-01-02 ",
        "2024-01-02T03:04:05.123456",
        "03:04:05.500",
        r#"{"a": [1, 2]}"#,
        "[1, 2, 3]",
        "{x: 7, y: z, z: [p, q]}",
        "| 2  |",
        "-99999999999999999999999999999.999999999",
        "0001-01-01",
        "9999-12-31T23:59:59.999999",
        "1900-01-01T00:00:00",
        "[-9223372036854775807]",
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
}

#[test]
fn bignumeric_and_json_from_a_query() {
    let _serial = serial();
    let got = read(
        &config(json!({"query": "SELECT 1 AS id, BIGNUMERIC '1234567890123456789.0123456789' AS bn, \
                                 NUMERIC '2.5' AS n, JSON '{\"k\": \"v\"}' AS j, \
                                 [STRUCT(1 AS a, 'x' AS b)] AS arr, CAST(NULL AS STRING) AS nothing"})),
        None,
    )
    .unwrap();
    assert_eq!(rows(&got), 1);
    let b = &got[0];
    let bn = b.column_by_name("bn").unwrap();
    assert_eq!(bn.data_type(), &DataType::Decimal256(76, 38));
    assert_eq!(
        bn.as_primitive::<Decimal256Type>().value_as_string(0),
        "1234567890123456789.01234567890000000000000000000000000000"
    );
    assert_eq!(
        b.column_by_name("n")
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .value(0),
        2_500_000_000
    );
    assert!(b.column_by_name("nothing").unwrap().is_null(0));
    assert_eq!(
        b.column_by_name("arr").unwrap().data_type().to_string(),
        "List(Struct(\"a\": Int64, \"b\": Utf8))"
    );
}

/// A table of `n` rows: id, a text and a float.
fn numbers(ds: &str, name: &str, n: usize) {
    query(&format!(
        "CREATE TABLE {ds}.{name} AS SELECT x AS id, CONCAT('row ', CAST(x AS STRING)) AS label, \
         x / 4 AS ratio FROM UNNEST(GENERATE_ARRAY(1, {n})) AS x"
    ));
}

#[test]
fn storage_streams_and_rest_ranges_are_partitions_that_cover_every_row_once() {
    let _serial = serial();
    let ds = dataset("partitions");
    // The emulator gives a table under 1 MB one stream, as BigQuery does.
    numbers(&ds, "big", 100_000);
    let context = ReadContext {
        mode: ReplicationMode::FullTable,
        start_offset: None,
        parallelism: 2,
    };
    for (extra, partitions) in [
        (json!({"read_api": "storage", "max_streams": 4}), 4),
        (json!({"read_api": "storage"}), 2),
        (
            json!({"read_api": "rest", "page_size": 15000, "max_streams": 3}),
            3,
        ),
        (json!({"read_api": "rest", "page_size": 200000}), 1),
    ] {
        let mut c = config(json!({"dataset_id": ds, "table_id": "big"}));
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let s = source(&c).unwrap();
        let parts = s.partitions(&context).unwrap();
        assert_eq!(parts.len(), partitions, "{extra}");
        let mut batches = Vec::new();
        for p in &parts {
            let mut stream = s.read(p).unwrap();
            while let Some(b) = stream.next_batch().unwrap() {
                batches.push(b);
            }
        }
        assert_eq!(
            ids(&batches),
            (1..=100_000).collect::<Vec<i64>>(),
            "{extra}"
        );
    }
}

#[test]
fn columns_and_filter_restrict_the_read_on_both_apis() {
    let _serial = serial();
    let ds = dataset("restrict");
    numbers(&ds, "nums", 1_000);
    for api in ["storage", "rest"] {
        let got = read(
            &config(
                json!({"dataset_id": ds, "table_id": "nums", "read_api": api,
                           "columns": ["id", "label"], "filter": "id <= 10 OR label = 'row 500'"}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(got[0].schema().fields().len(), 2, "{api}");
        let mut expected: Vec<i64> = (1..=10).collect();
        expected.push(500);
        assert_eq!(ids(&got), expected, "{api}");
    }
    let err = read(
        &config(json!({"dataset_id": ds, "table_id": "nums", "columns": ["id", "nope"]})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("no column `nope`") && err.contains("id, label, ratio"),
        "{err}"
    );
}

#[test]
fn incremental_reads_continue_after_the_offset_for_tables_and_queries() {
    let _serial = serial();
    let ds = dataset("incremental");
    create_table(
        &ds,
        "events",
        json!([
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "code", "type": "STRING"},
            {"name": "amount", "type": "NUMERIC"}
        ]),
    );
    let events: Vec<Value> = (1..=50)
        .map(|i| {
            json!({"id": i, "at": format!("2024-03-01T00:00:{:02}.5Z", i),
                   "code": format!("c{i:03}"), "amount": format!("{i}.5")})
        })
        .collect();
    insert(&ds, "events", &events);
    for api in ["storage", "rest"] {
        let base = |key: &str| {
            config(
                json!({"dataset_id": ds, "table_id": "events", "read_api": api,
                          "replication_key": key}),
            )
        };
        let got = read(&base("id"), Some(json!(40))).unwrap();
        assert_eq!(ids(&got), (41..=50).collect::<Vec<i64>>(), "{api} id");
        let got = read(&base("at"), Some(json!("2024-03-01T00:00:45.5"))).unwrap();
        assert_eq!(ids(&got), (46..=50).collect::<Vec<i64>>(), "{api} at");
        let got = read(&base("code"), Some(json!("c047"))).unwrap();
        assert_eq!(ids(&got), vec![48, 49, 50], "{api} code");
        let got = read(&base("amount"), Some(json!("48.5"))).unwrap();
        assert_eq!(ids(&got), vec![49, 50], "{api} amount");
        // No offset yet: everything.
        assert_eq!(
            rows(&read(&base("id"), Some(Value::Null)).unwrap()),
            50,
            "{api}"
        );
        // Nothing after the last key.
        assert_eq!(
            rows(&read(&base("id"), Some(json!(50))).unwrap()),
            0,
            "{api}"
        );
    }
    let q = config(
        json!({"query": format!("SELECT id, code FROM {ds}.events WHERE id > 5"),
                          "replication_key": "id"}),
    );
    let got = read(&q, Some(json!(45))).unwrap();
    assert_eq!(ids(&got), (46..=50).collect::<Vec<i64>>());
    let got = read(&q, None).unwrap();
    assert_eq!(rows(&got), 45);
    let err = read(&q, Some(json!("45; DROP TABLE x"))).unwrap_err();
    assert!(
        err.contains("does not fit the replication key `id`"),
        "{err}"
    );
    let err = read(
        &config(json!({"dataset_id": ds, "table_id": "events"})),
        Some(json!(3)),
    )
    .unwrap_err();
    assert!(err.contains("needs `replication_key`"), "{err}");
    let err = read(
        &config(json!({"dataset_id": ds, "table_id": "events", "replication_key": "missing"})),
        Some(json!(3)),
    )
    .unwrap_err();
    assert!(err.contains("`missing` is not a column"), "{err}");
}

#[test]
fn unknown_dataset_table_and_bad_query_are_one_clear_error_each() {
    let _serial = serial();
    let ds = dataset("errors");
    numbers(&ds, "nums", 3);
    let err = read(
        &config(json!({"dataset_id": "no_such_ds", "table_id": "t"})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("no dataset `no_such_ds` in the project `test-project`"),
        "{err}"
    );
    let err = read(&config(json!({"dataset_id": ds, "table_id": "nope"})), None).unwrap_err();
    assert!(
        err.contains(&format!(
            "no table `nope` in the dataset `test-project.{ds}`"
        )),
        "{err}"
    );
    let err = read(&config(json!({"query": "SELEC 1"})), None).unwrap_err();
    assert!(
        err.contains("the query failed") && err.contains("SELEC"),
        "{err}"
    );
    let err = read(
        &config(json!({"query": "SELECT * FROM no_such_ds.t"})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("the query failed") && err.contains("no_such_ds"),
        "{err}"
    );
    let err = source(&json!({"gcp_project": "p", "table_id": "t", "query": "SELECT 1"}))
        .err()
        .unwrap();
    assert!(err.contains("not both"), "{err}");
    let err = source(&json!({"gcp_project": "p", "table_id": "t", "filter": " "}))
        .err()
        .unwrap();
    assert!(
        err.contains("`table_id` needs `dataset_id`") && err.contains("`filter` is empty"),
        "{err}"
    );
}

#[test]
fn a_server_that_is_down_is_a_connection_error_after_the_retries() {
    let _serial = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let started = std::time::Instant::now();
    let err = read(
        &json!({"gcp_project": PROJECT, "auth": "none", "endpoint": format!("http://127.0.0.1:{port}"),
                "dataset_id": "d", "table_id": "t", "max_retries": 2, "retry_backoff_ms": 50}),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains(&format!("cannot reach BigQuery at http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Storage Read endpoint down, REST up: `auto` falls back to REST, `storage` fails.
    let ds = dataset("grpc-down");
    numbers(&ds, "nums", 10);
    let down = format!("http://127.0.0.1:{port}");
    let got = read(
        &config(json!({"dataset_id": ds, "table_id": "nums", "storage_endpoint": down})),
        None,
    )
    .unwrap();
    assert_eq!(rows(&got), 10);
    let err = read(
        &config(
            json!({"dataset_id": ds, "table_id": "nums", "storage_endpoint": down,
                       "read_api": "storage"}),
        ),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("Storage Read API") && err.contains(&down),
        "{err}"
    );
}

/// The OAuth token endpoint of the tests (tests/bigquery/token_server.py), with its keys.
struct TokenServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl TokenServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = fastlane_tests::services_venv().join("bin/python");
        let child = Command::new(&python)
            .arg(root.join("tests/bigquery/token_server.py"))
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{} (tests/services.sh installs it): {e}", python.display())
            });
        fastlane_tests::read_port_file(&dir.path().join("port"));
        Self { child, dir }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.json"))
    }

    fn grants(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("grants.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn service_account_keys_get_tokens_and_revoked_keys_fail_clearly() {
    let _serial = serial();
    let tokens = TokenServer::start();
    let ds = dataset("credentials");
    numbers(&ds, "nums", 5);
    let mut c = config(json!({"dataset_id": ds, "table_id": "nums"}));
    let object = c.as_object_mut().unwrap();
    object.remove("auth");
    object.insert(
        "service_account_file".into(),
        json!(tokens.key("good-key").display().to_string()),
    );
    assert_eq!(rows(&read(&c, None).unwrap()), 5);
    assert!(tokens.grants() >= 1, "a token was asked for");

    // The key as JSON text (as `${VAR}` or a secret gives it), revoked.
    let revoked = std::fs::read_to_string(tokens.key("revoked-key")).unwrap();
    let mut c = config(json!({"dataset_id": ds, "table_id": "nums"}));
    let object = c.as_object_mut().unwrap();
    object.remove("auth");
    object.insert("service_account_json".into(), json!(revoked));
    let err = read(&c, None).unwrap_err();
    assert!(
        err.contains("revoked@test-project.iam.gserviceaccount.com")
            && err.contains("Invalid JWT Signature"),
        "{err}"
    );
    assert!(
        !err.contains("PRIVATE KEY"),
        "the key must not be shown: {err}"
    );

    let mut c = config(json!({"dataset_id": ds, "table_id": "nums"}));
    let object = c.as_object_mut().unwrap();
    object.remove("auth");
    object.insert(
        "service_account_json".into(),
        json!("{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\"}"),
    );
    let err = read(&c, None).unwrap_err();
    assert!(
        err.contains("`service_account_json` is not a service-account key")
            && !err.contains("BEGIN"),
        "{err}"
    );
}

#[test]
fn the_command_loads_a_table_into_parquet_then_only_the_new_rows() {
    let _serial = serial();
    let ds = dataset("cli");
    create_table(
        &ds,
        "orders",
        json!([
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "total", "type": "NUMERIC"},
            {"name": "at", "type": "TIMESTAMP"}
        ]),
    );
    let orders = |from: i64, to: i64| -> Vec<Value> {
        (from..=to)
            .map(|i| {
                json!({"id": i, "total": format!("{i}.25"),
                            "at": format!("2026-03-01T00:00:00Z")})
            })
            .collect()
    };
    insert(&ds, "orders", &orders(1, 1_500));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = json!({
        "replication_mode": "INCREMENTAL",
        "source": {"bigquery": config(json!({"dataset_id": ds, "table_id": "orders",
                                              "replication_key": "id"}))},
        "transform": {"add_op_fields": false},
        "target": {"file": {"path": "out", "format": "parquet", "key": "id"}}
    });
    std::fs::write(dir.join("p.json"), pipeline.to_string()).unwrap();
    let run = || {
        let out = fastlane_tests::fastlane(
            dir,
            &[
                "--source=bigquery",
                "--target=file",
                "--config=p.json",
                "--progress=off",
            ],
        );
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        out.stdout
    };
    let first = run();
    assert!(first.contains("1,500 rows loaded"), "{first}");
    insert(&ds, "orders", &orders(1_501, 1_600));
    let second = run();
    assert!(second.contains(" 100 rows loaded"), "{second}");
    let third = run();
    assert!(third.contains(" 0 rows loaded"), "{third}");
}

#[test]
fn rest_pages_cut_in_the_middle_are_fetched_again_without_loss_or_duplicates() {
    let _serial = serial();
    let ds = dataset("cut");
    numbers(&ds, "nums", 20_000);
    // Every connection is cut after 150 kB from the server: a 2,000-row page (about 100 kB)
    // gets through on a fresh connection, a pooled connection's next page is cut in the middle.
    let cutter = fastlane_tests::TcpCutter::start("127.0.0.1:9050", 150_000, 4);
    let mut c = config(
        json!({"dataset_id": ds, "table_id": "nums", "read_api": "rest",
                              "page_size": 2000, "max_streams": 1, "max_retries": 3}),
    );
    c["endpoint"] = json!(format!("http://127.0.0.1:{}", cutter.port));
    let got = read(&c, None).unwrap();
    assert!(
        cutter.stats()["cuts"].as_u64().unwrap() >= 1,
        "the proxy cut no connection"
    );
    assert_eq!(ids(&got), (1..=20_000).collect::<Vec<i64>>());

    // More cuts than retries: one clear error.
    let cutter = fastlane_tests::TcpCutter::start("127.0.0.1:9050", 20_000, -1);
    c["endpoint"] = json!(format!("http://127.0.0.1:{}", cutter.port));
    c["max_retries"] = json!(2);
    let err = read(&c, None).unwrap_err();
    assert!(
        err.contains("broke off") || err.contains("cannot reach BigQuery"),
        "{err}"
    );
}

#[test]
fn a_new_source_reads_any_range_between_positions_without_planning_again() {
    use fastlane_plugin_api::ReadRange;
    let _serial = serial();
    let ds = dataset("ranges");
    numbers(&ds, "big", 60_000);
    let context = ReadContext {
        mode: ReplicationMode::FullTable,
        start_offset: None,
        parallelism: 2,
    };
    // Over the Storage Read API a range starts with ReadRows' `offset`, which the emulator
    // ignores (it always streams from the first row): only ranges from a stream's start are
    // checked there.
    for extra in [
        json!({"read_api": "storage", "max_streams": 2}),
        json!({"read_api": "rest", "page_size": 7000, "max_streams": 2}),
        json!({"read_api": "rest", "page_size": 7000, "query": format!("SELECT * FROM {ds}.big")}),
    ] {
        let mut c = config(json!({"dataset_id": ds, "table_id": "big"}));
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        if c.get("query").is_some() {
            let o = c.as_object_mut().unwrap();
            o.remove("dataset_id");
            o.remove("table_id");
        }
        let storage = extra["read_api"] == "storage";
        let planner = source(&c).unwrap();
        assert!(planner.resumable());
        let parts = planner.partitions(&context).unwrap();
        // A source of another process: it never planned, and reads from the specs alone.
        let resumed = source(&c).unwrap();
        let mut covered = Vec::new();
        for p in &parts {
            let mut stream = planner.read(p).unwrap();
            let mut batches = Vec::new();
            let mut positions = Vec::new();
            while let Some(b) = stream.next_batch().unwrap() {
                batches.push(b);
                positions.push(stream.position().expect("a position after every batch"));
            }
            let read = |range: ReadRange| {
                let mut stream = resumed.read_range(p, &range).unwrap();
                let mut out = Vec::new();
                while let Some(b) = stream.next_batch().unwrap() {
                    out.push(b);
                }
                ids(&out)
            };
            // Compared by length and ends: a mismatch must not print 60,000 ids.
            let same = |got: Vec<i64>, want: Vec<i64>, what: &str| {
                assert_eq!(
                    (got.len(), got.first(), got.last()),
                    (want.len(), want.first(), want.last()),
                    "{what} of partition {} with {extra}",
                    p.index
                );
                assert_eq!(got, want);
            };
            let head = read(ReadRange {
                after: None,
                upto: Some(positions[0].clone()),
            });
            same(head.clone(), ids(&batches[..1]), "the first batch");
            if storage {
                continue;
            }
            if batches.len() >= 3 {
                let middle = read(ReadRange {
                    after: Some(positions[0].clone()),
                    upto: Some(positions[2].clone()),
                });
                same(middle, ids(&batches[1..3]), "the second and third batches");
            }
            let tail = read(ReadRange {
                after: Some(positions[0].clone()),
                upto: None,
            });
            same(
                tail.clone(),
                ids(&batches[1..]),
                "the rows after the first batch",
            );
            covered.extend(head);
            covered.extend(tail);
        }
        if !storage {
            covered.sort_unstable();
            assert_eq!(covered.len(), 60_000, "{extra}");
            assert_eq!(covered, (1..=60_000).collect::<Vec<i64>>(), "{extra}");
        }
    }
}
