//! The `firehose` target against a real Data Firehose server on loopback (moto's server mode,
//! which delivers each `PutRecordBatch` call synchronously as one object in the stream's S3
//! bucket): the stream-target conformance suite, the service limits, and refused records
//! retried through a fault-injecting proxy (`tests/aws/firehose_faults.py`) placed between the
//! target and moto, since moto never throttles.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use common::S3;
use fastlane_plugin_api::ReplicationMode;
use fastlane_tests::conformance::{self, TargetFixture, standard_batches};
use serde_json::{Value, json};

/// The standard columns JSON Lines carries (binary has no JSON form).
const COLUMNS: &[&str] = &["int32", "int64", "float64", "text", "flag", "day", "moment"];

/// Delivery streams writing into one bucket, each under a prefix of its own.
struct Streams {
    s3: S3,
    client: aws_sdk_firehose::Client,
    /// Streams created, deleted again when the test ends (moto allows 50 per account).
    created: std::sync::Mutex<Vec<String>>,
}

impl Streams {
    fn new(name: &str) -> Self {
        Self {
            s3: S3::new(name),
            client: common::firehose_client(),
            created: Default::default(),
        }
    }

    /// Creates the delivery stream `name`, delivering under `name/` (the settings moto needs
    /// to describe it back are all given).
    fn create(&self, name: &str) {
        common::create_delivery_stream(&self.client, &self.s3.bucket, name);
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
    }

    fn config(&self, name: &str, endpoint: &str) -> Value {
        json!({
            "delivery_stream": name,
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "access_key_id": "test",
            "secret_access_key": "test",
            "retry_backoff_ms": 10,
            "retry_max_backoff_ms": 200,
        })
    }

    /// The objects the stream delivered, in key order.
    fn objects(&self, name: &str) -> Vec<Vec<u8>> {
        self.s3
            .keys(&format!("{name}/"))
            .iter()
            .map(|k| self.s3.get(k))
            .collect()
    }

    /// The rows the stream delivered, decoded with `schema`.
    fn rows(&self, name: &str, schema: &SchemaRef) -> Vec<RecordBatch> {
        let text: Vec<u8> = self.objects(name).concat();
        arrow_json::ReaderBuilder::new(schema.clone())
            .build(text.as_slice())
            .expect("json reader")
            .map(|b| b.expect("json batch"))
            .collect()
    }
}

/// A stream name no earlier run of the tests used (the server keeps its streams).
fn fresh_name(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{base}-{}-{nanos}", std::process::id())
}

impl Drop for Streams {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for name in names {
            common::delete_delivery_stream(&self.client, &name);
        }
    }
}

struct Fixture {
    streams: Streams,
    schema: SchemaRef,
}

impl Fixture {
    fn stream(dir: &Path) -> String {
        common::unique_name(&dir.display().to_string())
    }
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "firehose"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.to_vec()
    }

    fn config(&self, dir: &Path) -> Value {
        let name = Self::stream(dir);
        let exists = self
            .streams
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name);
        if !exists {
            self.streams.create(&name);
        }
        self.streams.config(&name, &common::endpoint())
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        self.streams.rows(&Self::stream(dir), &self.schema)
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        self.streams.s3.keys(&format!("{}/", Self::stream(dir)))
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"delivery_stream": "orders"}),
            json!({"delivery_stream": "orders", "database": "shop", "table": "orders",
                   "region": "eu-west-1", "max_records_per_call": 250,
                   "max_record_retries": 3, "retry_backoff_ms": 50, "calls_in_flight": 2,
                   "concurrency": 2}),
            json!({"delivery_stream": "orders", "endpoint_url": "http://127.0.0.1:5000",
                   "access_key_id": "test", "secret_access_key": "${AWS_SECRET}"}),
        ]
    }
}

#[test]
fn conformance() {
    let schema = standard_batches(1, 1, 1, COLUMNS)[0].schema();
    conformance::check_stream_target(
        "aws",
        &Fixture {
            streams: Streams::new("firehose-conformance"),
            schema,
        },
        false,
    );
}

fn load(config: &Value, batches: Vec<RecordBatch>, workers: usize) -> Result<(), String> {
    common::load(
        "firehose",
        config,
        batches,
        ReplicationMode::FullTable,
        workers,
    )
}

#[test]
fn calls_stay_within_the_service_limits() {
    let streams = Streams::new("firehose-limits");
    // 1,200 rows of about 9 KiB: the 500-record limit and the 4 MiB limit both split calls.
    let name = &fresh_name("limits");
    streams.create(name);
    let batches: Vec<RecordBatch> = standard_batches(1, 1_200, 300, COLUMNS)
        .into_iter()
        .map(|b| {
            let text = arrow_array::StringArray::from_iter_values(
                (0..b.num_rows()).map(|i| format!("{i:05}{}", "x".repeat(9_000))),
            );
            let mut columns = b.columns().to_vec();
            let index = b.schema().index_of("text").expect("text");
            columns[index] = std::sync::Arc::new(text);
            RecordBatch::try_new(b.schema(), columns).expect("batch")
        })
        .collect();
    load(
        &streams.config(name, &common::endpoint()),
        batches.clone(),
        1,
    )
    .expect("load");
    let objects = streams.objects(name);
    for object in &objects {
        let records = object.iter().filter(|&&b| b == b'\n').count();
        assert!(records <= 500, "a call held {records} records");
        assert!(
            object.len() <= 4 * 1024 * 1024,
            "a call held {} bytes",
            object.len()
        );
    }
    // 1,200 records of ~9.3 KiB: at most 450 fit in 4 MiB, so at least 3 calls.
    assert!(objects.len() >= 3, "{} calls", objects.len());
    let back = streams.rows(name, &batches[0].schema());
    assert_eq!(
        conformance::rows_as_text(&back, COLUMNS),
        conformance::rows_as_text(&batches, COLUMNS)
    );

    // A record over 1,000 KiB is a clear error naming the limit.
    let big = standard_batches(1, 1, 1, COLUMNS)
        .into_iter()
        .map(|b| {
            let mut columns = b.columns().to_vec();
            let index = b.schema().index_of("text").expect("text");
            columns[index] =
                std::sync::Arc::new(arrow_array::StringArray::from(vec!["y".repeat(1_100_000)]));
            RecordBatch::try_new(b.schema(), columns).expect("batch")
        })
        .collect();
    let error = load(&streams.config(name, &common::endpoint()), big, 1).unwrap_err();
    assert!(error.contains("over Firehose's limit"), "{error}");
}

#[test]
fn a_missing_stream_and_bad_settings_are_clear_errors() {
    let streams = Streams::new("firehose-errors");
    let error = load(
        &streams.config("no-such-stream", &common::endpoint()),
        standard_batches(1, 10, 10, COLUMNS),
        1,
    )
    .unwrap_err();
    assert!(
        error.contains("the delivery stream `no-such-stream` does not exist"),
        "{error}"
    );
    let plugin = conformance::load("aws");
    let error = plugin
        .create_target(
            "firehose",
            &json!({"delivery_stream": "s", "max_records_per_call": 900,
                    "retry_backoff_ms": 500, "retry_max_backoff_ms": 100}),
        )
        .err()
        .expect("bad settings must be refused")
        .to_string();
    assert!(error.contains("max_records_per_call"), "{error}");
    assert!(error.contains("retry_max_backoff_ms"), "{error}");
}

/// The fault-injecting proxy in front of moto.
struct Faults {
    child: Child,
    port: u16,
    stats: PathBuf,
    _dir: tempfile::TempDir,
}

impl Faults {
    fn start(mode: &str, faulty_calls: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port_file = dir.path().join("port");
        let stats = dir.path().join("stats.json");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/aws/firehose_faults.py");
        let child = Command::new("python3")
            .arg(&script)
            .args(["--upstream", &common::endpoint(), "--mode", mode])
            .args(["--faulty-calls", &faulty_calls.to_string()])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--stats")
            .arg(&stats)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the fault proxy");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse()
            {
                break port;
            }
            assert!(Instant::now() < deadline, "the fault proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            port,
            stats,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stats(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).expect("stats")).expect("json")
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn refused_records_are_sent_again_and_arrive_once() {
    let streams = Streams::new("firehose-retry");
    let name = &fresh_name("retried");
    streams.create(name);
    let faults = Faults::start("partial", 4);
    let batches = standard_batches(1, 3_000, 1_000, COLUMNS);
    let mut config = streams.config(name, &faults.endpoint());
    config["max_records_per_call"] = json!(400);
    load(&config, batches.clone(), 2).expect("the refused records must be sent again");
    let stats = faults.stats();
    assert_eq!(stats["faulty_calls"], 4, "{stats}");
    assert!(
        stats["records_refused"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
    let back = streams.rows(name, &batches[0].schema());
    assert_eq!(
        conformance::rows_as_text(&back, COLUMNS),
        conformance::rows_as_text(&batches, COLUMNS),
        "every row exactly once"
    );
}

#[test]
fn records_refused_past_the_retry_budget_fail_the_run_clearly() {
    let streams = Streams::new("firehose-refused");
    let name = &fresh_name("refused");
    streams.create(name);
    let faults = Faults::start("always", 0);
    let mut config = streams.config(name, &faults.endpoint());
    config["max_record_retries"] = json!(2);
    let started = Instant::now();
    let error = load(&config, standard_batches(1, 50, 50, COLUMNS), 1).unwrap_err();
    assert!(
        error.contains("refused 50 of 50 records after 3 attempts")
            && error.contains("ServiceUnavailableException"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(faults.stats()["calls"], 3);
    assert!(streams.objects(name).is_empty());
}
