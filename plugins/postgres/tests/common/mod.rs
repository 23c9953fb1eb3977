//! What the `postgres` plugin's tests share: fresh databases on the local PostgreSQL server
//! (127.0.0.1:5432, user `postgres`, trust; tests/services.sh starts it), and SQL run through
//! the servers' own command-line clients.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `sql` in `database` with `psql`; its output, unaligned and without headers.
pub fn psql(database: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql])
        .output()
        .expect("psql (PostgreSQL's client; tests/services.sh installs the server with it)");
    assert!(
        out.status.success(),
        "psql: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `sql` with the `mariadb` client as root on 127.0.0.1:3306, in UTF-8; its output.
pub fn mariadb(sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "-uroot",
            "-h127.0.0.1",
            "-P3306",
            "--default-character-set=utf8mb4",
        ])
        .args(["-N", "-B", "-e", sql])
        .output()
        .expect("the mariadb client (tests/services.sh starts the server with it)");
    assert!(
        out.status.success(),
        "mariadb: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh UTF-8 database on the local server, dropped at the end (kept when the test failed,
/// to look at).
pub struct Db {
    pub name: String,
}

impl Db {
    pub fn new(tag: &str) -> Db {
        let name = format!("fl_pg_{tag}_{}", std::process::id());
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(
            "postgres",
            &format!("CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"),
        );
        Db { name }
    }

    pub fn exec(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Every row of `table` as the server writes it, in `id` order.
    pub fn rows(&self, table: &str) -> String {
        self.exec(&format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY id), '') FROM {table} t"
        ))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }
}

/// Runs `pipeline` with the built `fastlane` in `dir`; whether it succeeded, and its stderr.
/// The run's summary is left in `dir/summary.json` ([`summary`]).
pub fn run_pipeline(dir: &Path, pipeline: &serde_json::Value) -> (bool, String) {
    let path = dir.join("pipeline.json");
    std::fs::write(&path, pipeline.to_string()).unwrap();
    let _ = std::fs::remove_file(dir.join("summary.json"));
    let out = Command::new(fastlane_tests::fastlane_bin())
        .current_dir(dir)
        .args([
            "--progress",
            "off",
            "--no-monitor",
            "--summary-json=summary.json",
        ])
        .arg(format!("--config={}", path.display()))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The summary of the last run [`run_pipeline`] made in `dir`.
pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("a run summary");
    serde_json::from_str(&text).expect("a JSON run summary")
}
