//! Runs reporting to the monitor, end to end: the `fastlane` binary runs pipelines, reports
//! into the local store or to `fastlane serve` over HTTP, and stops on SIGTERM or on a stop
//! request from the API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fastlane_tests::{fastlane, fastlane_bin, fastlane_with_env, test_plugin_dir};
use serde_json::{Value, json};

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// `fastlane serve` on a free port of 127.0.0.1, stopped (SIGTERM) when dropped.
struct Serve {
    child: Child,
    base: String,
    /// The token reads carry, when the service has one.
    token: Option<String>,
}

impl Serve {
    fn start(store: &Path, token: Option<&str>) -> Self {
        let mut cmd = Command::new(fastlane_bin());
        cmd.args(["serve", "-q", "--bind", "127.0.0.1:0", "--store"])
            .arg(store)
            .env("NO_COLOR", "1")
            .env_remove("FASTLANE_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd.spawn().expect("start fastlane serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_owned();
        Self {
            child,
            base,
            token: token.map(str::to_owned),
        }
    }

    fn get(&self, path: &str) -> Value {
        let mut request = reqwest::blocking::Client::new().get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let r = request.send().unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().unwrap()
    }

    fn terminate(&mut self) -> i32 {
        signal(&self.child, "TERM");
        wait(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

fn wait(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A slow pipeline: 2,000 batches of 64 rows, each written after 20 ms.
fn slow_pipeline(dir: &Path, monitoring: Value) -> std::path::PathBuf {
    let path = dir.join("slow.json");
    write_json(
        &path,
        &json!({"name": "slow", "replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 128_000, "batch_size": 64}},
                "target": {"discard": {"delay_ms": 20}},
                "monitoring": monitoring}),
    );
    path
}

fn spawn_run(dir: &Path, plugin_dir: &Path, config: &Path, extra: &[&str]) -> Child {
    Command::new(fastlane_bin())
        .args(["--plugin-dir"])
        .arg(plugin_dir)
        .arg(format!("--config={}", config.display()))
        .args(["--progress", "off"])
        .args(extra)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", dir.join(".data"))
        .env_remove("FASTLANE_MONITOR_URL")
        .env_remove("FASTLANE_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fastlane")
}

#[test]
fn a_run_is_recorded_in_the_local_store_and_shown_by_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("monitor.db");
    std::fs::write(dir.join("in.csv"), "id,name\n1,a\n2,b\n3,c\n").unwrap();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"file": {"path": "out", "format": "parquet"}},
                "monitoring": {"token": "hunter2"}}),
    );
    let out = fastlane_with_env(
        dir,
        &["--config=p.json", "--summary-json=summary.json"],
        &[("FASTLANE_STORE", store.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("recorded as run 1 of `out.file.file`"),
        "{}",
        out.stderr
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();

    let serve = Serve::start(&store, None);
    let pipelines = serve.get("/api/pipelines");
    assert_eq!(pipelines.as_array().unwrap().len(), 1, "{pipelines}");
    let p = &pipelines[0];
    assert_eq!(p["id"], "out.file.file");
    assert_eq!(p["source_type"], "file");
    assert_eq!(p["pipeline_type"], "FULL_TABLE");
    assert_eq!(
        p["config"]["monitoring"]["token"], "***",
        "secrets redacted"
    );
    let run = &p["last_run"];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["rows_loaded"], summary["rows_loaded"]);
    assert_eq!(run["rows_loaded"], 3);
    assert_eq!(run["run_key"], summary["run_id"]);
    assert!(run["finished"].is_string());
    let stages = &run["stages"]["stages"];
    assert_eq!(stages.as_array().unwrap().len(), 3, "{run}");
    let logs = serve.get(&format!(
        "/api/pipeline/run/logs?pipeline_run_id={}",
        run["id"]
    ));
    assert!(
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("running source `file`")),
        "{logs}"
    );
    let samples = serve.get(&format!(
        "/api/pipeline/run/metrics?pipeline_run_id={}",
        run["id"]
    ));
    assert!(
        !samples.as_array().unwrap().is_empty(),
        "at least the first sample"
    );
}

#[test]
fn a_run_goes_on_when_the_service_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("in.csv"), "id\n1\n").unwrap();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"file": {"path": "out", "format": "csv"}},
                "monitoring": {"url": "http://127.0.0.1:9"}}),
    );
    let t = Instant::now();
    let out = fastlane_with_env(dir, &["--config=p.json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        out.stderr
            .contains("cannot report to the service http://127.0.0.1:9"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 1);
}

#[test]
fn sigterm_stops_a_run_cleanly_and_records_it_as_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("monitor.db");
    let plugins = test_plugin_dir(&["misbehave"]);
    let config = slow_pipeline(
        dir,
        json!({"store": store.to_str().unwrap(), "interval_secs": 0.2}),
    );
    let mut run = spawn_run(dir, plugins.path(), &config, &[]);
    let serve = Serve::start(&store, None);
    wait_until("the run to report progress", || {
        let runs = serve.get("/api/pipeline/runs?status=running");
        runs.as_array()
            .and_then(|a| a.first())
            .is_some_and(|r| r["rows_loaded"].as_i64().unwrap_or(0) > 0)
    });
    signal(&run, "TERM");
    let code = wait(&mut run, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, 4, "exit code of a stopped run\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let runs = serve.get("/api/pipeline/runs?pipeline_id=slow");
    let r = &runs[0];
    assert_eq!(r["status"], "stopped", "{r}");
    assert!(r["finished"].is_string());
    let loaded = r["rows_loaded"].as_i64().unwrap();
    assert!(loaded > 0 && loaded < 128_000, "{loaded}");
}

#[test]
fn a_stop_request_from_the_api_stops_a_run_reporting_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("svc.db");
    let plugins = test_plugin_dir(&["misbehave"]);
    let mut serve = Serve::start(&store, Some("tok"));
    let config = slow_pipeline(
        dir,
        json!({"url": serve.base, "token": "tok", "interval_secs": 0.2}),
    );
    let mut run = spawn_run(dir, plugins.path(), &config, &[]);
    let mut id = 0;
    wait_until("the run to register with the service", || {
        let runs = serve.get("/api/pipeline/runs?pipeline_id=slow&status=running");
        match runs.as_array().and_then(|a| a.first()) {
            Some(r) => {
                id = r["id"].as_i64().unwrap();
                true
            }
            None => false,
        }
    });
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(format!("{}/api/pipeline/run/stop", serve.base))
        .json(&json!({"pipeline_run_id": id}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "the token is needed");
    let r = c
        .post(format!("{}/api/pipeline/run/stop", serve.base))
        .bearer_auth("tok")
        .json(&json!({"pipeline_run_id": id}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let code = wait(&mut run, Duration::from_secs(30));
    assert_eq!(code, 4);
    let r = serve.get(&format!("/api/pipeline/run?pipeline_run_id={id}"));
    assert_eq!(r["status"], "stopped", "{r}");
    assert_eq!(r["stop_requested"], true);
    let rps = serve.get(&format!("/api/pipeline/run/rps?pipeline_run_id={id}"));
    assert!(!rps.as_array().unwrap().is_empty());
    assert_eq!(serve.terminate(), 0, "serve exits cleanly on SIGTERM");
}

#[test]
fn a_run_that_fails_to_open_its_target_is_recorded_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("monitor.db");
    let plugins = test_plugin_dir(&["misbehave"]);
    write_json(
        &dir.join("p.json"),
        &json!({"name": "broken", "replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 10}},
                "target": {"fail_open": {}},
                "monitoring": {"store": store.to_str().unwrap()}}),
    );
    let out = fastlane_with_env(
        dir,
        &[
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "--config=p.json",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let serve = Serve::start(&store, None);
    let run = serve.get("/api/pipeline/run/latest?pipeline_id=broken");
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("fail_open"), "{error}");
}

#[test]
fn serve_refuses_an_open_non_loopback_address_without_a_token() {
    let out = Command::new(fastlane_bin())
        .args([
            "serve",
            "-q",
            "--bind",
            "0.0.0.0:0",
            "--store",
            "sqlite::memory:",
        ])
        .env_remove("FASTLANE_API_TOKEN")
        .env_remove("FASTLANE_API_READ_TOKEN")
        .env_remove("FASTLANE_API_TOKENS_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve without a token on 0.0.0.0:0")
            && err.contains("--insecure-no-auth"),
        "{err}"
    );
    // A bad tokens file is a usage error naming the line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "grafana reader gr4fana-t0ken\n").unwrap();
    let out = Command::new(fastlane_bin())
        .args([
            "serve",
            "-q",
            "--bind",
            "127.0.0.1:0",
            "--store",
            "sqlite::memory:",
            "--tokens-file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: the role `reader` is not `read` or `write`"),
        "{err}"
    );
}

/// Runs a small file → Parquet pipeline `runs` times in `dir`, recording into `store`.
fn run_into_store(dir: &Path, store: &Path, runs: usize) {
    std::fs::write(dir.join("in.csv"), "id,name\n1,a\n2,b\n3,c\n").unwrap();
    write_json(
        &dir.join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"file": {"path": "out", "format": "parquet"}}}),
    );
    for _ in 0..runs {
        let out = fastlane_with_env(
            dir,
            &["--config=p.json"],
            &[("FASTLANE_STORE", store.to_str().unwrap())],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

#[test]
fn store_prune_removes_old_samples_and_log_lines_and_keeps_the_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("monitor.db");
    run_into_store(dir, &store, 1);
    let count = |table: &str| -> i64 {
        let db = rusqlite::Connection::open(&store).unwrap();
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let (samples, lines) = (count("pipeline_run_sample"), count("pipeline_run_log"));
    assert!(samples > 0 && lines > 0, "{samples} samples, {lines} lines");

    // Nothing is a day old yet.
    let prune = |days: &str| {
        fastlane(
            dir,
            &[
                "store",
                "prune",
                "--older-than-days",
                days,
                "--store",
                store.to_str().unwrap(),
                "--batch-size",
                "2",
            ],
        )
    };
    let out = prune("1");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("removed 0 samples and 0 log lines older than 1 days"),
        "{}",
        out.stdout
    );
    assert_eq!(count("pipeline_run_sample"), samples);

    // Everything before now goes, in batches of 2; the run and its pipeline stay.
    let out = prune("0");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "removed {samples} samples and {lines} log lines older than 0 days"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        (count("pipeline_run_sample"), count("pipeline_run_log")),
        (0, 0)
    );
    assert_eq!((count("pipeline_run"), count("pipeline")), (1, 1));

    let out = prune("-3");
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn serve_with_retention_days_removes_what_is_older_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("monitor.db");
    run_into_store(dir, &store, 2);
    let db = rusqlite::Connection::open(&store).unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let (first, second): (i64, i64) = db
        .query_row("SELECT MIN(id), MAX(id) FROM pipeline_run", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    // The first run's samples and lines are made 40 days old.
    let old = 40 * 86_400_000i64;
    for table in ["pipeline_run_sample", "pipeline_run_log"] {
        db.execute(
            &format!("UPDATE {table} SET created_at = created_at - ?1 WHERE pipeline_run_id = ?2"),
            [old, first],
        )
        .unwrap();
    }
    let kept = |table: &str| -> i64 {
        db.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE pipeline_run_id = ?1"),
            [second],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (samples2, lines2) = (kept("pipeline_run_sample"), kept("pipeline_run_log"));
    assert!(count("pipeline_run_sample") > samples2);

    let mut child = Command::new(fastlane_bin())
        .args([
            "serve",
            "-q",
            "--bind",
            "127.0.0.1:0",
            "--retention-days",
            "30",
            "--store",
        ])
        .arg(&store)
        .env("NO_COLOR", "1")
        .env_remove("FASTLANE_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count("pipeline_run_sample") != samples2 || count("pipeline_run_log") != lines2 {
        assert!(
            Instant::now() < deadline,
            "serve did not remove the old samples and lines"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "TERM");
    wait(&mut child, Duration::from_secs(20));
    assert_eq!(count("pipeline_run"), 2, "runs stay");
}

#[test]
fn store_migrate_copies_a_store_into_an_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let from = dir.join("monitor.db");
    run_into_store(dir, &from, 2);
    let to = dir.join("copy.db");
    let migrate = |from: &Path, to: &Path| {
        fastlane(
            dir,
            &[
                "store",
                "migrate",
                "--from",
                from.to_str().unwrap(),
                "--to",
                to.to_str().unwrap(),
            ],
        )
    };
    let out = migrate(&from, &to);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("copied 1 pipeline, 2 pipeline_run, "),
        "{}",
        out.stdout
    );
    let count = |db: &Path, table: &str| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    for table in [
        "pipeline",
        "pipeline_run",
        "pipeline_run_sample",
        "pipeline_run_log",
    ] {
        assert_eq!(count(&from, table), count(&to, table), "{table}");
    }
    // Not into a store that holds runs already, and not from one that does not exist.
    let out = migrate(&from, &to);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("is not empty"), "{}", out.stderr);
    let out = migrate(&dir.join("missing.db"), &dir.join("other.db"));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("there is no store at"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("missing.db").exists());
}
