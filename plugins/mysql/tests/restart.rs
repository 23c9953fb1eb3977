//! A MariaDB restart in the middle of a MySQL → MySQL run: both sides reconnect and the run
//! loads exactly the source rows. Restarts the real server (`mariadb-admin shutdown`, then
//! `tests/services.sh start`), so it is a test binary of its own, run alone.

mod common;

use std::time::{Duration, Instant};

use common::Db;
use fastlane_plugin_api::ReplicationMode;
use serde_json::json;

fn port_open() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], common::port())),
        Duration::from_millis(200),
    )
    .is_ok()
}

#[test]
fn a_server_restart_mid_run_loses_and_repeats_nothing() {
    let db = Db::new("restart");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64), n DOUBLE)");
    db.exec("INSERT INTO src SELECT seq, MD5(seq), seq / 7 FROM seq_1_to_300000");
    let source = db.config(json!({"table": "src", "batch_size": 1000, "retry_timeout_secs": 90}));
    let target = db.config(json!({"table": "dst", "key": "id", "retry_timeout_secs": 90}));
    let run = std::thread::spawn(move || {
        common::run_with(
            ("mysql", "mysql", source),
            ("mysql", "mysql", target),
            ReplicationMode::FullTable,
            |o| o.max_buffered_batches = 2,
        )
    });
    // Restart once rows are staged.
    let started = Instant::now();
    loop {
        let staged = db
            .tables()
            .into_iter()
            .find(|t| t.starts_with("_fastlane_stage"));
        if let Some(s) = staged
            && db.value(&format!("SELECT COUNT(*) FROM `{s}`")) != "0"
        {
            break;
        }
        assert!(!run.is_finished(), "the run ended before the restart");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was staged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_server();
    std::thread::sleep(Duration::from_secs(1));
    start_server();
    let summary = run
        .join()
        .expect("run thread")
        .unwrap_or_else(|e| panic!("the run did not survive the restart: {e}"));
    assert_eq!(summary.rows_loaded, 300_000);
    db.reconnect();
    assert_eq!(
        db.checksum("dst", &["id", "v", "n"]),
        db.checksum("src", &["id", "v", "n"])
    );
    assert_eq!(db.tables(), vec!["dst".to_owned(), "src".to_owned()]);
}

/// Stops the server and waits until its port is closed.
fn stop_server() {
    let status = std::process::Command::new("mariadb-admin")
        .args(["-uroot", "-h127.0.0.1", "shutdown"])
        .status()
        .expect("mariadb-admin");
    assert!(status.success(), "mariadb-admin shutdown failed");
    let down = Instant::now();
    while port_open() {
        assert!(
            down.elapsed() < Duration::from_secs(60),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the server again.
fn start_server() {
    let services = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/services.sh");
    let status = std::process::Command::new("bash")
        .args([services, "start"])
        .status()
        .expect("services.sh");
    assert!(status.success(), "the server did not start again");
}

#[test]
fn a_run_that_lost_its_source_server_resumes_once_the_server_is_back() {
    use std::process::{Command, Stdio};

    let db = Db::new("restart_resume");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64), n DOUBLE)");
    db.exec("INSERT INTO src SELECT seq, MD5(seq), seq / 7 FROM seq_1_to_300000");
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let config = tmp.path().join("p.json");
    std::fs::write(
        &config,
        json!({
            "replication_mode": "FULL_TABLE",
            "checkpoint_interval_secs": 0.1,
            "source": {"mysql": db.config(json!({"table": "src", "batch_size": 2000, "partitions": 2, "retry_timeout_secs": 1}))},
            "target": {"file": {"path": out, "format": "parquet"}},
            "transform": {"add_op_fields": false}
        })
        .to_string(),
    )
    .expect("config");
    let summary = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(tmp.path().join(name)).expect("summary");
        serde_json::from_str(&text).expect("summary json")
    };
    let args = |summary: &str| {
        vec![
            "run".to_owned(),
            "--no-monitor".to_owned(),
            "--progress=off".to_owned(),
            format!("--config={}", config.display()),
            format!("--summary-json={}", tmp.path().join(summary).display()),
        ]
    };
    let mut child = Command::new(fastlane_tests::fastlane_bin())
        .args(args("first.json"))
        .current_dir(tmp.path())
        .env("XDG_DATA_HOME", tmp.path().join(".no-user-plugins"))
        .env_remove("FASTLANE_PLUGIN_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Stop the server once some rows are checkpointed.
    let started = Instant::now();
    loop {
        let recorded = std::fs::read_dir(&out)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_dir(e.path().join(".checkpoints"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|r| r.file_name().to_string_lossy().starts_with("record-"))
            });
        if recorded {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended first"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was checkpointed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop_server();
    let status = child.wait().expect("wait");
    start_server();
    assert_eq!(status.code(), Some(1), "the run fails without its server");
    let first = summary("first.json");
    assert_eq!(first["checkpoint"]["kept"], true, "{first}");

    let out_run = fastlane_tests::fastlane(
        tmp.path(),
        &args("second.json")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out_run.code, 0, "{}", out_run.stderr);
    let second = summary("second.json");
    assert_eq!(second["checkpoint"]["resumed"], true, "{second}");
    let already = second["checkpoint"]["rows_already_loaded"]
        .as_u64()
        .expect("rows");
    assert!(already > 0, "{second}");
    assert!(
        second["rows_extracted"].as_u64().expect("rows") < 300_000,
        "{second}"
    );
    assert_eq!(second["verification"]["status"], "passed", "{second}");

    // Every row once.
    use arrow_array::cast::AsArray;
    let mut ids = Vec::new();
    for batch in fastlane_tests::parquet_folder(&out) {
        let column = batch.column_by_name("id").expect("id");
        ids.extend(
            column
                .as_primitive::<arrow_array::types::Int64Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    ids.sort_unstable();
    assert_eq!(ids.len(), 300_000);
    assert!(ids.iter().copied().eq(1..=300_000));
}
