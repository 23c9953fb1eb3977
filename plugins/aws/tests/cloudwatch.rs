//! CloudWatch Logs against a real server on loopback (moto's server mode): the
//! `cloudwatch_logs` target's stream-target conformance suite and its event rules, and the
//! `fastlane` command's `--logs_to_cloudwatch`, read back with `GetLogEvents`.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
use fastlane_plugin_api::ReplicationMode;
use fastlane_tests::conformance::{self, TargetFixture, standard_batches};
use fastlane_tests::fastlane_with_env;
use serde_json::{Value, json};

/// The standard columns a JSON message carries (binary has no JSON form).
const COLUMNS: &[&str] = &["int32", "int64", "float64", "text", "flag", "day", "moment"];

fn client() -> aws_sdk_cloudwatchlogs::Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(common::endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// Every event of a stream, oldest first: (time in ms, message). Empty when the stream does
/// not exist.
fn events(group: &str, stream: &str) -> Vec<(i64, String)> {
    let client = client();
    common::runtime().block_on(async {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return out;
                }
                Err(e) => panic!(
                    "get log events: {}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                ),
            };
            if page.events().is_empty() {
                return out;
            }
            out.extend(page.events().iter().map(|e| {
                (
                    e.timestamp().unwrap_or_default(),
                    e.message().unwrap_or_default().to_owned(),
                )
            }));
            let next = page.next_forward_token().map(str::to_owned);
            if next.is_none() || next == token {
                return out;
            }
            token = next;
        }
    })
}

fn streams_of(group: &str) -> Vec<String> {
    common::runtime()
        .block_on(client().describe_log_streams().log_group_name(group).send())
        .map(|out| {
            out.log_streams()
                .iter()
                .filter_map(|s| s.log_stream_name().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn unique_group(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("fastlane/{name}/{}-{nanos}", std::process::id())
}

fn target_config(group: &str, stream: &str) -> Value {
    json!({
        "log_group": group,
        "log_stream": stream,
        "endpoint_url": common::endpoint(),
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test",
    })
}

struct Fixture {
    group: String,
    schema: SchemaRef,
}

impl Fixture {
    fn stream(dir: &Path) -> String {
        common::unique_name(&dir.display().to_string())
    }
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "cloudwatch_logs"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.to_vec()
    }

    fn config(&self, dir: &Path) -> Value {
        target_config(&self.group, &Self::stream(dir))
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        let text: String = events(&self.group, &Self::stream(dir))
            .into_iter()
            .map(|(_, m)| m + "\n")
            .collect();
        arrow_json::ReaderBuilder::new(self.schema.clone())
            .build(text.as_bytes())
            .expect("json reader")
            .map(|b| b.expect("json batch"))
            .collect()
    }

    fn leftovers(&self, _dir: &Path) -> Vec<String> {
        Vec::new()
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"log_group": "shop", "log_stream": "orders"}),
            json!({"log_group": "shop", "log_stream": "orders", "create": false,
                   "retention_days": 30, "timestamp_column": "at", "message_column": "line",
                   "max_events_per_call": 1000, "region": "eu-west-1", "concurrency": 2}),
        ]
    }
}

#[test]
fn conformance() {
    let schema = standard_batches(1, 1, 1, COLUMNS)[0].schema();
    conformance::check_stream_target(
        "aws",
        &Fixture {
            group: unique_group("conformance"),
            schema,
        },
        false,
    );
}

fn load(config: &Value, batches: Vec<RecordBatch>) -> Result<(), String> {
    common::load(
        "cloudwatch_logs",
        config,
        batches,
        ReplicationMode::FullTable,
        1,
    )
}

#[test]
fn events_take_their_time_and_text_from_columns_in_time_order() {
    let group = unique_group("columns");
    let now = chrono::Utc::now().timestamp_millis();
    let schema = Arc::new(Schema::new(vec![
        Field::new("at", DataType::Int64, true),
        Field::new("line", DataType::Utf8, true),
    ]));
    // Out of order, one without a time, one longer than an event takes, one without text
    // (left out: CloudWatch takes no empty event).
    let long = "z".repeat(300 * 1024);
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![
                Some(now - 3_000),
                Some(now - 5_000),
                None,
                Some(now - 4_000),
                Some(now - 1_000),
            ])),
            Arc::new(StringArray::from(vec![
                Some("third"),
                Some("first"),
                Some("last"),
                Some(long.as_str()),
                None,
            ])),
        ],
    )
    .expect("batch");
    let mut config = target_config(&group, "s");
    config["timestamp_column"] = json!("at");
    config["message_column"] = json!("line");
    config["retention_days"] = json!(7);
    load(&config, vec![batch]).expect("load");
    let got = events(&group, "s");
    let texts: Vec<&str> = got.iter().map(|(_, m)| &m[..m.len().min(5)]).collect();
    assert_eq!(texts, ["first", "zzzzz", "third", "last"]);
    assert_eq!(got[0].0, now - 5_000);
    assert!(got[3].0 >= now, "a missing time is the time of writing");
    let cut = &got[1].1;
    assert!(
        cut.len() <= 256 * 1024 - 26 && cut.ends_with("[cut]"),
        "{}",
        cut.len()
    );

    // A stream that must exist but does not, without `create`: a clear error.
    let mut config = target_config(&unique_group("missing"), "s");
    config["create"] = json!(false);
    let error = load(&config, standard_batches(1, 3, 3, COLUMNS)).unwrap_err();
    assert!(error.contains("does not exist"), "{error}");
}

fn write_orders(dir: &Path, rows: usize) {
    let mut csv = String::from("id,name,amount\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},item {i},{}.5\n", i * 3));
    }
    std::fs::write(dir.join("orders.csv"), csv).expect("write csv");
}

fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn run_fastlane(
    dir: &Path,
    args: &[&str],
    extra_env: &[(&'static str, String)],
) -> fastlane_tests::Output {
    let mut env = aws_env();
    env.extend(extra_env.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fastlane_with_env(dir, args, &env)
}

/// `p.json`: `orders.csv` → Parquet as pipeline `name`, its lines to CloudWatch group
/// `group`, its reports into `store`.
fn write_logging_config(dir: &Path, name: &str, group: &str, store: &Path) {
    std::fs::write(
        dir.join("p.json"),
        json!({
            "name": name,
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "orders.csv"}},
            "target": {"file": {"path": "out", "format": "parquet"}},
            "logs": {
                "log_to_cloudwatch": true,
                "cloudwatch": {"log_group": group, "endpoint_url": common::endpoint(),
                               "flush_interval_secs": 0.5, "retention_days": 14}
            },
            "monitoring": {"store": store.to_str().expect("utf-8")}
        })
        .to_string(),
    )
    .expect("config");
}

#[test]
fn a_run_sends_its_log_lines_to_cloudwatch() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_orders(dir.path(), 2_000);
    let group = unique_group("run");
    let store = dir.path().join("monitor.db");
    write_logging_config(dir.path(), "orders-to-parquet", &group, &store);
    let out = run_fastlane(dir.path(), &["--config=p.json", "--progress=off"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let streams = streams_of(&group);
    assert_eq!(streams.len(), 1, "{streams:?}");
    let stream = &streams[0];
    let lines: Vec<String> = events(&group, stream).into_iter().map(|(_, m)| m).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO fastlane_host::cli: running source `file`")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("recorded as run 1 of `orders-to-parquet`")),
        "{lines:#?}"
    );
    // The run in the monitoring store names the stream, as the original's API did.
    let recorded = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select cloudwatch_log_stream from pipeline_run').fetchone()[0])",
        ])
        .arg(&store)
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&recorded.stdout).trim(), stream);

    // Group and stream from the flags; the endpoint from the standard AWS variable.
    let flagged = unique_group("flags");
    std::fs::write(
        dir.path().join("q.json"),
        json!({
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "orders.csv"}},
            "target": {"file": {"path": "out2", "format": "parquet"}},
            "monitoring": {"enabled": false}
        })
        .to_string(),
    )
    .expect("config");
    let out = run_fastlane(
        dir.path(),
        &[
            "--config=q.json",
            "--logs_to_cloudwatch",
            &format!("--cloudwatch_log_group={flagged}"),
            "--cloudwatch_log_stream=nightly-1",
        ],
        &[("AWS_ENDPOINT_URL", common::endpoint())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(streams_of(&flagged), ["nightly-1"]);
    assert!(!events(&flagged, "nightly-1").is_empty());
}

#[test]
fn cloudwatch_that_cannot_be_reached_stops_the_run_before_it_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_orders(dir.path(), 10);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    std::fs::write(
        dir.path().join("p.json"),
        json!({
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "orders.csv"}},
            "target": {"file": {"path": "out", "format": "parquet"}},
            "logs": {"log_to_cloudwatch": true,
                     "cloudwatch": {"endpoint_url": format!("http://127.0.0.1:{port}")}},
            "monitoring": {"enabled": false}
        })
        .to_string(),
    )
    .expect("config");
    let out = run_fastlane(dir.path(), &["--config=p.json"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot send logs to CloudWatch Logs")
            && out.stderr.contains("cannot create the log group"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("out").exists(), "nothing may run");

    // A bad group name is a configuration error, before any request.
    let out = run_fastlane(
        dir.path(),
        &["--config=p.json", "--cloudwatch_log_group=bad name!"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--cloudwatch_log_group"),
        "{}",
        out.stderr
    );
}

/// `GET` on the monitoring service, with curl; the JSON answer.
fn get_json(base: &str, path: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-fsS", &format!("{base}{path}")])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn the_monitor_reads_a_runs_lines_from_cloudwatch_and_falls_back_to_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_orders(dir.path(), 500);
    let group = unique_group("served");
    let store = dir.path().join("monitor.db");
    write_logging_config(dir.path(), "served-logs", &group, &store);
    let out = run_fastlane(dir.path(), &["--config=p.json", "--progress=off"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stream = streams_of(&group).pop().expect("a stream");
    let sent = events(&group, &stream);

    let mut serve = std::process::Command::new(fastlane_tests::fastlane_bin())
        .args(["serve", "-q", "--bind", "127.0.0.1:0", "--store"])
        .arg(&store)
        .envs(aws_env())
        // Where the runs given no `endpoint_url` sent their lines, as for them.
        .env("AWS_ENDPOINT_URL", common::endpoint())
        .env("NO_COLOR", "1")
        .env_remove("FASTLANE_API_TOKEN")
        .env("XDG_DATA_HOME", dir.path().join(".no-user-plugins"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("first line");
    let base = line.trim().trim_start_matches("listening on ").to_owned();
    let run = get_json(&base, "/api/pipeline/runs?pipeline_id=served-logs")[0]["id"]
        .as_i64()
        .expect("run id");
    let logs = get_json(
        &base,
        &format!("/api/pipeline/run/logs?pipeline_run_id={run}"),
    );
    assert_eq!(logs["source"], "cloudwatch", "{logs:#}");
    let messages: Vec<String> = sent
        .iter()
        .map(|(_, m)| {
            m.split_once(": ")
                .map_or(m.clone(), |(_, rest)| rest.to_owned())
        })
        .collect();
    let shown: Vec<String> = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|m| m.as_str().expect("text").to_owned())
        .collect();
    assert_eq!(shown, messages, "every line CloudWatch holds, in order");
    let first = &logs["entries"][0];
    assert_eq!(
        (first["id"].as_i64(), first["level"].as_str()),
        (Some(1), Some("INFO"))
    );
    assert_eq!(first["target"], "fastlane_host::cli");
    assert_eq!(first["created_at"], fastlane_monitor_iso(sent[0].0));
    // Pages by `after`, as the stored lines do.
    let page = get_json(
        &base,
        &format!("/api/pipeline/run/logs?pipeline_run_id={run}&after=1&limit=2"),
    );
    let ids: Vec<i64> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert_eq!((ids, page["next_after"].as_i64()), (vec![2, 3], Some(3)));

    // The stream gone from CloudWatch: the lines the store kept, saying why.
    common::runtime()
        .block_on(
            client()
                .delete_log_stream()
                .log_group_name(&group)
                .log_stream_name(&stream)
                .send(),
        )
        .expect("delete stream");
    let logs = get_json(
        &base,
        &format!("/api/pipeline/run/logs?pipeline_run_id={run}"),
    );
    assert_eq!(logs["source"], "store", "{logs:#}");
    assert!(
        logs["note"]
            .as_str()
            .expect("note")
            .contains("does not exist"),
        "{logs:#}"
    );
    assert!(!logs["logs"].as_array().expect("logs").is_empty());

    // A group given only on the command line is recorded with the run, and read from there.
    let flagged = unique_group("served-flag");
    std::fs::write(
        dir.path().join("q.json"),
        json!({
            "name": "served-flagged",
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "orders.csv"}},
            "target": {"file": {"path": "out2", "format": "parquet"}},
            "monitoring": {"store": store.to_str().expect("utf-8")}
        })
        .to_string(),
    )
    .expect("config");
    let out = run_fastlane(
        dir.path(),
        &[
            "--config=q.json",
            "--progress=off",
            "--logs_to_cloudwatch",
            &format!("--cloudwatch_log_group={flagged}"),
            "--cloudwatch_log_stream=flagged-1",
        ],
        &[("AWS_ENDPOINT_URL", common::endpoint())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = get_json(&base, "/api/pipeline/runs?pipeline_id=served-flagged")[0].clone();
    assert_eq!(run["cloudwatch_log_group"], flagged.as_str(), "{run:#}");
    let logs = get_json(
        &base,
        &format!("/api/pipeline/run/logs?pipeline_run_id={}", run["id"]),
    );
    assert_eq!(logs["source"], "cloudwatch", "{logs:#}");
    assert_eq!(
        logs["logs"].as_array().expect("logs").len(),
        events(&flagged, "flagged-1").len()
    );
    let _ = serve.kill();
    let _ = serve.wait();
}

/// A time in milliseconds as the monitoring API writes it.
fn fastlane_monitor_iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
