//! Load on `fastlane serve`: 50 pipelines report at once, as fast as the service answers,
//! while four clients poll what the web UI reads; bounded in count (31 reports per pipeline)
//! and in time (the test fails after two minutes). Afterwards every sample, log line and final
//! total must be in the store, read straight from it (the SQLite file; MariaDB through its
//! client). Prints requests per second and latency percentiles of each kind of request. Runs on
//! a SQLite store and on a MariaDB one (a fresh database on the local server).
//!
//! `FASTLANE_LOAD_BIN` runs another build of `fastlane` as the service (a release build, say);
//! `FASTLANE_LOAD_STORE` puts the first test's store elsewhere (a PostgreSQL URL, say).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastlane_tests::fastlane_bin;
use serde_json::{Value, json};

const PIPELINES: usize = 50;
const REPORTS: usize = 30;
const LOGS_PER_REPORT: usize = 10;
const ROWS_PER_REPORT: i64 = 64_000;
const POLLERS: usize = 4;
const LIMIT: Duration = Duration::from_secs(120);

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latencies of one kind of request, and the answers that were not a success.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Tally {
    fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    }
}

fn timed(
    tally: &Mutex<Tally>,
    what: &str,
    send: impl FnOnce() -> reqwest::Result<reqwest::blocking::Response>,
) -> Option<Value> {
    let start = Instant::now();
    let answer = send();
    let took = start.elapsed();
    let mut t = tally.lock().unwrap();
    t.latencies.push(took);
    match answer {
        Ok(r) if r.status().is_success() => r.json().ok().or(Some(Value::Null)),
        Ok(r) => {
            t.failures.push(format!(
                "{what}: {} {}",
                r.status(),
                r.text().unwrap_or_default()
            ));
            None
        }
        Err(e) => {
            t.failures.push(format!("{what}: {e}"));
            None
        }
    }
}

fn iso(ms: i64) -> String {
    // Seconds since the epoch in a fixed day: 2026-01-01T00:00:00Z plus `ms`.
    let s = ms / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn report(p: usize, k: usize, last: bool) -> Value {
    let rows = ROWS_PER_REPORT * k as i64;
    let samples: Vec<Value> = if last {
        vec![]
    } else {
        vec![json!({
            "seq": k, "created_at": iso(k as i64 * 1000), "elapsed_secs": k as f64,
            "rps": ROWS_PER_REPORT as f64, "memory_usage": 50.0 + p as f64,
            "rows_loaded": rows, "bytes_loaded": rows * 100, "source_rows": rows + 1000,
            "transform_rows": rows, "source_rps": ROWS_PER_REPORT as f64,
            "transform_rps": ROWS_PER_REPORT as f64,
            "queues": [{"name": "source→transform", "batches": 3, "bytes": 3_000_000},
                       {"name": "transform→target", "batches": 1, "bytes": 1_000_000}]})]
    };
    let logs: Vec<Value> = if last {
        vec![]
    } else {
        (0..LOGS_PER_REPORT)
            .map(|i| {
                let seq = k * LOGS_PER_REPORT + i;
                json!({"seq": seq, "created_at": iso(k as i64 * 1000 + i as i64),
                       "level": if i == 0 { "WARN" } else { "INFO" }, "target": "fastlane::engine",
                       "message": format!("pipeline {p} line {seq}")})
            })
            .collect()
    };
    json!({
        "run_key": format!("load-run-{p}"),
        "pipeline": {"pipeline_id": format!("load-{p:02}"), "source_type": "mysql",
                     "target_type": "s3", "pipeline_type": "INCREMENTAL",
                     "config": {"source": {"mysql": {"password": "secret"}}}},
        "run": {"status": if last { "completed" } else { "running" }, "started": iso(0),
                "finished": if last { Some(iso(REPORTS as i64 * 1000)) } else { None },
                "rows_loaded": rows, "rows_extracted": rows + 1000, "bytes_loaded": rows * 100,
                "peak_memory_usage": 50.0 + p as f64},
        "samples": samples,
        "logs": logs,
    })
}

fn start_serve(store: &str) -> (Serve, String) {
    let bin = std::env::var_os("FASTLANE_LOAD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(fastlane_bin);
    let mut child = Command::new(bin)
        .args(["serve", "-q", "--bind", "127.0.0.1:0", "--store", store])
        .env("NO_COLOR", "1")
        .env_remove("FASTLANE_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fastlane serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .to_owned();
    (Serve(child), base)
}

#[test]
fn fifty_pipelines_report_at_once_while_the_ui_polls_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = tmp.path().join("monitor.db");
    match std::env::var("FASTLANE_LOAD_STORE") {
        Ok(store) => load(&store, None),
        Err(_) => {
            let count = |sql: &str| {
                let db = rusqlite::Connection::open(&sqlite).unwrap();
                db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
            };
            load(sqlite.to_str().unwrap(), Some(&count));
        }
    }
}

/// `mariadb` (the client) on the local server as root: the single number `sql` selects.
fn mariadb_count(database: &str, sql: &str) -> i64 {
    let out = Command::new("mariadb")
        .args(["-uroot", "-h127.0.0.1", "-P3306", "-N", "-B", "-e", sql])
        .arg(database)
        .output()
        .expect("the mariadb client (tests/services.sh installs it)");
    assert!(
        out.status.success(),
        "mariadb: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn fifty_pipelines_report_at_once_while_the_ui_polls_and_nothing_is_lost_on_mariadb() {
    let database = format!("fastlane_load_{}", std::process::id());
    mariadb_count(
        "mysql",
        &format!("DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}; SELECT 0"),
    );
    load(
        &format!("mysql://root@127.0.0.1:3306/{database}"),
        Some(&|sql: &str| mariadb_count(&database, sql)),
    );
    mariadb_count("mysql", &format!("DROP DATABASE {database}; SELECT 0"));
}

/// The load on a service over `store`; `count` reads a number straight from the store.
fn load(store: &str, count: Option<&dyn Fn(&str) -> i64>) {
    let (_serve, base) = start_serve(store);
    let client = || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let reports = Arc::new(Mutex::new(Tally::default()));
    let polls = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + LIMIT;
    let started = Instant::now();

    let pollers: Vec<_> = (0..POLLERS)
        .map(|i| {
            let (base, polls, done, http) = (base.clone(), polls.clone(), done.clone(), client());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let get = |path: &str| timed(&polls, path, || http.get(format!("{base}{path}")).send());
                    get("/api/pipelines?limit=200");
                    // Like the UI: a run page is opened from the list of runs.
                    let runs = get("/api/pipeline/runs?limit=50").unwrap_or_default();
                    let ids: Vec<i64> = runs.as_array().into_iter().flatten()
                        .filter_map(|r| r["id"].as_i64()).collect();
                    if let Some(run) = ids.get((i * 13 + n * 7) % ids.len().max(1)) {
                        get(&format!("/api/pipeline/run?pipeline_run_id={run}"));
                        get(&format!("/api/pipeline/run/metrics?pipeline_run_id={run}&start_date=1970-01-01&limit=100000"));
                        get(&format!("/api/pipeline/run/logs?pipeline_run_id={run}&limit=10000"));
                    }
                    if n.is_multiple_of(10) {
                        get("/metrics");
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let runs: Vec<_> = (0..PIPELINES)
        .map(|p| {
            let (base, reports, http) = (base.clone(), reports.clone(), client());
            std::thread::spawn(move || {
                for k in 0..=REPORTS {
                    if Instant::now() > deadline {
                        break;
                    }
                    let body = report(p, k, k == REPORTS);
                    timed(&reports, "report", || {
                        http.post(format!("{base}/api/pipeline/run/report"))
                            .json(&body)
                            .send()
                    });
                }
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap();
    }
    let reporting = started.elapsed();
    done.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    assert!(
        Instant::now() < deadline,
        "the load took longer than {LIMIT:?}"
    );

    let reports = reports.lock().unwrap();
    let polls = polls.lock().unwrap();
    for (what, t) in [("reports", &reports), ("reads", &polls)] {
        assert!(
            t.failures.is_empty(),
            "{} of {} {what} failed; the first: {:#?}",
            t.failures.len(),
            t.latencies.len(),
            &t.failures[..t.failures.len().min(5)]
        );
    }
    let sent = reports.latencies.len();
    assert_eq!(sent, PIPELINES * (REPORTS + 1));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "load: {PIPELINES} pipelines sent {sent} reports in {:.2} s: {:.0} reports/s \
         (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms); {POLLERS} pollers made {} reads: {:.0}/s \
         (p50 {:.1} ms, p99 {:.1} ms)",
        reporting.as_secs_f64(),
        sent as f64 / reporting.as_secs_f64(),
        ms(reports.percentile(0.5)),
        ms(reports.percentile(0.99)),
        ms(reports.percentile(1.0)),
        polls.latencies.len(),
        polls.latencies.len() as f64 / reporting.as_secs_f64(),
        ms(polls.percentile(0.5)),
        ms(polls.percentile(0.99)),
    );

    // Nothing lost: every run, sample, log line and final total, read through the API …
    let http = client();
    let runs: Value = http
        .get(format!("{base}/api/pipeline/runs?limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), PIPELINES);
    for run in runs {
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(
            run["rows_loaded"],
            ROWS_PER_REPORT * REPORTS as i64,
            "{run}"
        );
        let id = &run["id"];
        let samples: Value = http
            .get(format!(
                "{base}/api/pipeline/run/metrics?pipeline_run_id={id}&start_date=1970-01-01&limit=100000"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            samples.as_array().unwrap().len(),
            REPORTS,
            "samples of run {id}"
        );
        let logs: Value = http
            .get(format!(
                "{base}/api/pipeline/run/logs?pipeline_run_id={id}&limit=10000"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let p = run["pipeline_id"]
            .as_str()
            .unwrap()
            .trim_start_matches("load-");
        let p: usize = p.parse().unwrap();
        let expected: Vec<String> = (0..REPORTS * LOGS_PER_REPORT)
            .map(|seq| format!("pipeline {p} line {seq}"))
            .collect();
        assert_eq!(
            logs["logs"],
            json!(expected),
            "log lines of run {id}, in order"
        );
    }

    // … and in the store itself.
    if let Some(count) = count {
        assert_eq!(count("SELECT count(*) FROM pipeline"), PIPELINES as i64);
        assert_eq!(count("SELECT count(*) FROM pipeline_run"), PIPELINES as i64);
        assert_eq!(
            count("SELECT count(*) FROM pipeline_run_sample"),
            (PIPELINES * REPORTS) as i64
        );
        assert_eq!(
            count("SELECT count(*) FROM pipeline_run_log"),
            (PIPELINES * REPORTS * LOGS_PER_REPORT) as i64
        );
        assert_eq!(
            count("SELECT count(*) FROM pipeline WHERE config LIKE '%secret%'"),
            0,
            "passwords redacted"
        );
    }
}
