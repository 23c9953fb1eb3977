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
    std::thread::sleep(Duration::from_secs(1));
    let services = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/services.sh");
    let status = std::process::Command::new("bash")
        .args([services, "start"])
        .status()
        .expect("services.sh");
    assert!(status.success(), "the server did not start again");
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
