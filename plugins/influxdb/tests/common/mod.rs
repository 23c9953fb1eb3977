//! Talking to the tests' InfluxDB and VictoriaMetrics servers directly (not through the
//! plugin), running the target through the engine, and the fault-injecting proxy.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use fastlane_host::engine::{self, EngineOptions, Named, NoObserver, Pipeline};
use fastlane_plugin_api::{BatchStream, IterStream, Partition, ReplicationMode, Source, Target};
use serde_json::{Value, json};

/// The InfluxDB 1.x server started by `tests/services.sh`.
pub const INFLUX: &str = "http://127.0.0.1:8086";
/// Its admin user.
pub const USER: &str = "fastlane";
/// Its admin password.
pub const PASSWORD: &str = "fastlane";
/// The VictoriaMetrics server started by `tests/services.sh`.
pub const VICTORIA: &str = "http://127.0.0.1:8428";

/// A database name unique to `seed`.
pub fn unique_name(seed: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    std::process::id().hash(&mut h);
    format!("t_{:012x}", h.finish() & 0xffff_ffff_ffff)
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Runs an InfluxQL statement as the admin user and returns the first statement's result.
pub fn influxql(db: Option<&str>, q: &str) -> Value {
    let mut params = vec![("q", q), ("epoch", "ns")];
    if let Some(db) = db {
        params.push(("db", db));
    }
    let answer = http()
        .post(format!("{INFLUX}/query"))
        .basic_auth(USER, Some(PASSWORD))
        .form(&params)
        .send()
        .unwrap_or_else(|e| panic!("InfluxDB on {INFLUX} (tests/services.sh starts it): {e}"));
    let status = answer.status();
    let body: Value = answer.json().expect("json");
    assert!(status.is_success(), "{q}: {status} {body}");
    body["results"][0].clone()
}

/// Creates the database `db` (empty).
pub fn create_database(db: &str) {
    influxql(None, &format!("DROP DATABASE \"{db}\""));
    influxql(None, &format!("CREATE DATABASE \"{db}\""));
}

/// Every point of `measurement` in `db`, as maps from column to value (nulls left out),
/// in time order.
pub fn points(db: &str, measurement: &str) -> Vec<serde_json::Map<String, Value>> {
    let escaped = measurement.replace('\\', "\\\\").replace('"', "\\\"");
    let result = influxql(Some(db), &format!("SELECT * FROM \"{escaped}\""));
    let mut out = Vec::new();
    let Some(series) = result["series"].as_array() else {
        return out;
    };
    for s in series {
        let columns: Vec<String> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        for row in s["values"].as_array().unwrap() {
            let mut point = serde_json::Map::new();
            for (c, v) in columns.iter().zip(row.as_array().unwrap()) {
                if !v.is_null() {
                    point.insert(c.clone(), v.clone());
                }
            }
            out.push(point);
        }
    }
    out
}

/// The target's configuration for `db` on the tests' InfluxDB, with `extra` settings.
pub fn config(db: &str, extra: Value) -> Value {
    let mut v = json!({
        "url": INFLUX, "database": db, "user": USER, "password": PASSWORD,
        "measurement": "m"
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// The loaded `influxdb` plugin.
pub fn plugin() -> Arc<fastlane_host::plugins::LoadedPlugin> {
    fastlane_tests::conformance::load("influxdb")
}

struct Batches(Vec<RecordBatch>);

impl Source for Batches {
    fn read(&self, _partition: &Partition) -> fastlane_plugin_api::Result<Box<dyn BatchStream>> {
        Ok(Box::new(IterStream(self.0.clone().into_iter().map(Ok))))
    }
}

/// Runs `batches` through the engine into the target configured with `config`; returns the
/// error chain of a failed run.
pub fn load(
    config: &Value,
    batches: Vec<RecordBatch>,
    mode: ReplicationMode,
    workers: usize,
) -> Result<(), String> {
    let target = plugin()
        .create_target("influxdb", config)
        .map_err(|e| e.to_string())?;
    let pipeline = Pipeline {
        source: Named::new("memory", Box::new(Batches(batches)) as Box<dyn Source>),
        transforms: vec![],
        target: Named::new("influxdb", Box::new(target) as Box<dyn Target>),
    };
    let options = EngineOptions {
        mode,
        target_concurrency: workers,
        ..EngineOptions::default()
    };
    engine::run(pipeline, &options, &mut NoObserver)
        .map(|_| ())
        .map_err(|e| fastlane_host::error::chain(&e))
}

/// The fault-injecting proxy (`tests/influxdb/write_faults.py`), stopped when dropped.
pub struct Proxy {
    child: Child,
    /// Its base URL.
    pub url: String,
    stats: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts the proxy in front of `upstream`, failing the first `faulty` writes (all of them
    /// when negative) in `mode` (`none`, `status` or `drop`).
    pub fn start(upstream: &str, mode: &str, faulty: i32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/influxdb/write_faults.py");
        let port_file = dir.path().join("port");
        let stats = dir.path().join("stats.json");
        let child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream, "--mode", mode])
            .arg(format!("--faulty-writes={faulty}"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--stats")
            .arg(&stats)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the proxy");
        let port = fastlane_tests::read_port_file(&port_file);
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stats,
            _dir: dir,
        }
    }

    /// What the proxy saw so far.
    pub fn stats(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).expect("stats")).expect("json")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
