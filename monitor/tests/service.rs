//! The monitoring service against a real store: the API over HTTP on loopback (SQLite file,
//! PostgreSQL and MariaDB), bad requests, the token, reports and the reporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fastlane_monitor::Store;
use fastlane_monitor::model::*;
use fastlane_monitor::reporter::{Destination, Reporter, ReporterOptions};
use fastlane_monitor::server::{ServeOptions, spawn};
use fastlane_monitor::store::Backend;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Service {
    base: String,
    /// The token every request of [`Service::client`] carries.
    token: Option<String>,
    store: Store,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: Option<tempfile::TempDir>,
}

async fn service_on(store: Store, token: Option<&str>, dir: Option<tempfile::TempDir>) -> Service {
    let opts = ServeOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: token.map(str::to_owned),
        body_limit: 64 * 1024,
        ..ServeOptions::default()
    };
    let (addr, stop) = spawn(store.clone(), opts).await.unwrap();
    Service {
        base: format!("http://{addr}"),
        token: token.map(str::to_owned),
        store,
        _stop: stop,
        _dir: dir,
    }
}

async fn sqlite_service(token: Option<&str>) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("monitor.db").to_str().unwrap())
        .await
        .unwrap();
    service_on(store, token, Some(dir)).await
}

/// A fresh PostgreSQL database on the local server (`FASTLANE_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end by its name's prefix.
async fn postgres_store(tag: &str) -> Store {
    let admin = std::env::var("FASTLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is needed at {admin} (tests/services.sh starts it): {e}")
    });
    drop_stale_databases(&pool, "SELECT datname::text AS name FROM pg_database").await;
    let name = format!("fastlane_test_{tag}_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => unreachable!(),
    };
    Store::open(&url).await.unwrap()
}

/// Drops the test databases (`fastlane_test_{tag}_{pid}`, listed by `list`) of test processes
/// that have ended. A database another process is dropping meanwhile is left to it.
async fn drop_stale_databases(pool: &sqlx::AnyPool, list: &str) {
    let rows = sqlx::query(sqlx::AssertSqlSafe(list.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap();
    for row in rows {
        let name: String = sqlx::Row::try_get(&row, "name").unwrap();
        let pid = name
            .strip_prefix("fastlane_test_")
            .and_then(|rest| rest.rsplit('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(pool)
            .await;
        }
    }
}

/// The URL of a fresh database named `fastlane_test_{tag}_{pid}` on the local MariaDB
/// (`FASTLANE_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306`), made anew each time.
async fn mysql_url(tag: &str) -> String {
    let admin = std::env::var("FASTLANE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| {
        panic!("MariaDB is needed at {admin} (tests/services.sh starts it): {e}")
    });
    drop_stale_databases(
        &pool,
        "SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA",
    )
    .await;
    let name = format!("fastlane_test_{tag}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    format!("{}/{name}", admin.trim_end_matches('/'))
}

/// A fresh, migrated MariaDB store (see [`mysql_url`]).
async fn mysql_store(tag: &str) -> Store {
    Store::open(&mysql_url(tag).await).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

impl Service {
    /// A client whose every request carries the service's token, if it has one.
    fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }
}

/// `GET url` with the bearer `token`.
async fn get_as(c: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    c.get(url).bearer_auth(token).send().await.unwrap()
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({s}): {text}"))
    };
    (s, v)
}

fn error_kind(v: &Value) -> &str {
    v["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no error body: {v}"))
}

async fn original_resources(svc: &Service) {
    let c = svc.client();
    let b = &svc.base;
    let new = json!({
        "pipeline_id": "planets.mysql.mysql", "source_type": "mysql", "target_type": "mysql",
        "pipeline_type": "FULL_TABLE",
        "config": {"source": {"mysql": {"host": "db", "password": "hunter2"}}}
    });
    let (s, p) = json_of(
        c.post(format!("{b}/api/pipeline"))
            .json(&new)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["id"], "planets.mysql.mysql");
    assert_eq!(p["pipeline_type"], "FULL_TABLE");
    assert_eq!(
        p["config"]["source"]["mysql"]["password"], "***",
        "stored redacted"
    );
    let (s, e) = json_of(
        c.post(format!("{b}/api/pipeline"))
            .json(&new)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_kind(&e), "conflict");

    let (s, p) = json_of(
        c.get(format!("{b}/api/pipeline?pipeline_id=planets.mysql.mysql"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(p.get("last_run").is_none());
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));

    let (s, e) = json_of(
        c.get(format!("{b}/api/pipeline?pipeline_id=nope"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_kind(&e), "not_found");

    let (s, p) = json_of(
        c.put(format!("{b}/api/pipeline"))
            .json(&json!({"pipeline_id": "planets.mysql.mysql", "pipeline_type": "INCREMENTAL"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["pipeline_type"], "INCREMENTAL");

    // A second pipeline, and runs.
    let other = json!({"pipeline_id": "x.file.file", "source_type": "file", "target_type": "file",
                       "pipeline_type": "FULL_TABLE", "config": {}});
    assert_eq!(
        c.post(format!("{b}/api/pipeline"))
            .json(&other)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let (s, run) = json_of(
        c.post(format!("{b}/api/pipeline/run"))
            .json(
                &json!({"pipeline_id": "planets.mysql.mysql", "status": "running",
                          "cloudwatch_log_stream": "", "started": "2026-11-24T01:46:26.211",
                          "start_offset": -1}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    let id = run["id"].as_i64().unwrap();
    assert_eq!(run["started"], "2026-11-24T01:46:26.211Z");
    assert_eq!(run["start_offset"], "-1");
    assert_eq!(run["rows_loaded"], 0);
    let (s, e) = json_of(
        c.post(format!("{b}/api/pipeline/run"))
            .json(&json!({"pipeline_id": "nope"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    let (s, run) = json_of(
        c.put(format!("{b}/api/pipeline/run"))
            .json(&json!({"pipeline_run_id": id, "rows_loaded": 150000, "end_offset": "200000"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(run["rows_loaded"], 150000);
    assert_eq!(run["end_offset"], "200000");

    // Samples and logs.
    for (path, body) in [
        ("rps", json!({"pipeline_run_id": id, "rps": 6400.0})),
        (
            "memory_usage",
            json!({"pipeline_run_id": id, "memory_usage": 274.5}),
        ),
        (
            "memory",
            json!({"pipeline_run_id": id, "memory_usage": 280.0}),
        ),
    ] {
        let r = c
            .post(format!("{b}/api/pipeline/run/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    }
    let (_, rps) = json_of(
        c.get(format!("{b}/api/pipeline/run/rps?pipeline_run_id={id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rps.as_array().unwrap().len(), 1);
    assert_eq!(rps[0]["rps"], 6400.0);
    let (_, mem) = json_of(
        c.get(format!(
            "{b}/api/pipeline/run/memory_usage?pipeline_run_id={id}"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let mem: Vec<f64> = mem
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["memory_usage"].as_f64().unwrap())
        .collect();
    assert_eq!(mem, [274.5, 280.0]);
    let (s, _) = json_of(
        c.get(format!("{b}/api/pipeline/run/rps?pipeline_run_id={id}&start_date=2000-01-01&end_date=2000-01-02"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = json_of(
        c.post(format!("{b}/api/pipeline/run/logs"))
            .json(&json!({"pipeline_run_id": id, "logs": ["first", {"message": "second", "level": "ERROR", "target": "plugin::mysql"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, logs) = json_of(
        c.get(format!("{b}/api/pipeline/run/logs?pipeline_run_id={id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(logs["logs"], json!(["first", "second"]));
    assert_eq!(logs["entries"][1]["level"], "ERROR");
    let after = logs["entries"][0]["id"].as_i64().unwrap();
    let (_, later) = json_of(
        c.get(format!(
            "{b}/api/pipeline/run/logs?pipeline_run_id={id}&after={after}"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(later["logs"], json!(["second"]));
    let (_, errors) = json_of(
        c.get(format!(
            "{b}/api/pipeline/run/logs?pipeline_run_id={id}&level=warn"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(errors["logs"], json!(["second"]));

    // Lists, filters and paging.
    let r = c.get(format!("{b}/api/pipelines")).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "2");
    let (_, all) = json_of(r).await;
    assert_eq!(
        all[0]["id"], "planets.mysql.mysql",
        "the one with a run first"
    );
    assert_eq!(all[0]["last_run"]["id"], id);
    for (q, expect) in [
        ("pipeline_status=running", vec!["planets.mysql.mysql"]),
        ("pipeline_status=failed", vec![]),
        ("pipeline_type=FULL_TABLE", vec!["x.file.file"]),
        ("pipeline_type=incremental", vec!["planets.mysql.mysql"]),
        ("source_type=file", vec!["x.file.file"]),
        ("q=PLANETS", vec!["planets.mysql.mysql"]),
        ("limit=1&offset=1", vec!["x.file.file"]),
    ] {
        let (s, v) = json_of(
            c.get(format!("{b}/api/pipelines?{q}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{q}: {v}");
        let ids: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expect, "{q}");
    }
    let (_, latest) = json_of(
        c.get(format!(
            "{b}/api/pipeline/run/latest?pipeline_id=planets.mysql.mysql"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(latest["id"], id);
    let (s, e) = json_of(
        c.get(format!(
            "{b}/api/pipeline/run/latest?pipeline_id=x.file.file"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["error"]["message"].as_str().unwrap().contains("no runs"));
    let (_, runs) = json_of(
        c.get(format!("{b}/api/pipeline/runs?status=running"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(runs.as_array().unwrap().len(), 1);

    // Stop requests, then deletes.
    let (s, stopped) = json_of(
        c.post(format!("{b}/api/pipeline/run/stop"))
            .json(&json!({"pipeline_run_id": id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(stopped["stop_requested"], true);
    let r = c
        .delete(format!("{b}/api/pipeline/run?pipeline_run_id={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .delete(format!("{b}/api/pipeline/run?pipeline_run_id={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (s, _) = json_of(
        c.get(format!("{b}/api/pipeline/run/rps?pipeline_run_id={id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "samples went with the run");
    let r = c
        .delete(format!("{b}/api/pipeline?pipeline_id=planets.mysql.mysql"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, all) = json_of(c.get(format!("{b}/api/pipelines")).send().await.unwrap()).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
}

fn report(
    key: &str,
    status: RunStatus,
    rows: i64,
    samples: Vec<Sample>,
    logs: Vec<LogLine>,
) -> Report {
    Report {
        run_key: key.into(),
        pipeline: ReportPipeline {
            pipeline_id: "events.file.file".into(),
            source_type: "file".into(),
            target_type: "file".into(),
            pipeline_type: PipelineType::FullTable,
            config: serde_json::from_value(
                json!({"target": {"file": {"path": "out", "token": "abc"}}}),
            )
            .unwrap(),
        },
        run: ReportRun {
            status,
            started: "2026-11-24T10:00:00Z".into(),
            finished: (status != RunStatus::Running).then(|| "2026-11-24T10:00:05Z".into()),
            rows_loaded: rows,
            rows_extracted: rows,
            bytes_loaded: rows * 10,
            peak_memory_usage: 50.0,
            start_offset: None,
            end_offset: None,
            error: None,
            cloudwatch_log_stream: None,
            cloudwatch_log_group: None,
            stages: None,
        },
        samples,
        logs,
    }
}

fn sample(seq: i64, rows: i64) -> Sample {
    Sample {
        seq: Some(seq),
        elapsed_secs: Some(seq as f64),
        rps: Some(100.0),
        memory_usage: Some(42.0),
        rows_loaded: Some(rows),
        queues: Some(vec![QueueSample {
            name: "source→target".into(),
            batches: 2,
            bytes: 4096,
        }]),
        ..Default::default()
    }
}

fn line(seq: i64, msg: &str) -> LogLine {
    LogLine {
        seq: Some(seq),
        created_at: None,
        level: "INFO".into(),
        target: "fastlane".into(),
        message: msg.into(),
    }
}

async fn reports_are_idempotent(store: &Store) {
    let first = report(
        "run-a",
        RunStatus::Running,
        10,
        vec![sample(0, 10), sample(1, 20)],
        vec![line(0, "a")],
    );
    let ack = store.apply_report(&first).await.unwrap();
    // The same report again (a retry after a lost answer), then the next one.
    let again = store.apply_report(&first).await.unwrap();
    assert_eq!(ack.pipeline_run_id, again.pipeline_run_id);
    let next = report(
        "run-a",
        RunStatus::Completed,
        30,
        vec![sample(1, 20), sample(2, 30)],
        vec![line(1, "b")],
    );
    store.apply_report(&next).await.unwrap();
    let run = store.run(ack.pipeline_run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.rows_loaded, 30);
    assert_eq!(run.run_key.as_deref(), Some("run-a"));
    assert_eq!(run.duration_secs, Some(5.0));
    let samples = store.samples(run.id, None, None, None, 100).await.unwrap();
    assert_eq!(
        samples.iter().map(|s| s.seq.unwrap()).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(samples[0].queues.as_ref().unwrap()[0].bytes, 4096);
    let logs = store.logs(run.id, None, None, 100).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let p = store.pipeline("events.file.file").await.unwrap().unwrap();
    assert_eq!(p.config["target"]["file"]["token"], "***");
    assert_eq!(p.last_run.unwrap().id, run.id);

    // NUL, which PostgreSQL's text cannot hold, is kept as U+FFFD in free text, on both stores.
    let mut nul = report(
        "run-nul",
        RunStatus::Failed,
        1,
        vec![],
        vec![line(0, "bad\0byte")],
    );
    nul.run.error = Some("failed at \0".into());
    nul.run.start_offset = Some("k\0".into());
    nul.pipeline.config.insert("note".into(), json!("a\0b"));
    let ack = store.apply_report(&nul).await.unwrap();
    let run = store.run(ack.pipeline_run_id).await.unwrap().unwrap();
    assert_eq!(run.error.as_deref(), Some("failed at \u{FFFD}"));
    assert_eq!(run.start_offset.as_deref(), Some("k\u{FFFD}"));
    let logs = store.logs(run.id, None, None, 10).await.unwrap();
    assert_eq!(logs[0].message, "bad\u{FFFD}byte");
    let p = store.pipeline("events.file.file").await.unwrap().unwrap();
    assert_eq!(p.config["note"], "a\0b", "JSON keeps it escaped");
    assert!(store.pipeline("a\0b").await.unwrap().is_none());

    // Ids compare exactly, case and trailing spaces included, on every store.
    for id in ["Exact", "exact", "exact ", "exäct"] {
        store
            .create_pipeline(&NewPipeline {
                pipeline_id: id.into(),
                source_type: "mysql".into(),
                target_type: "s3".into(),
                pipeline_type: PipelineType::FullTable,
                config: Default::default(),
            })
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
    }
    for id in ["Exact", "exact", "exact ", "exäct"] {
        assert_eq!(store.pipeline(id).await.unwrap().unwrap().id, id);
    }
}

#[tokio::test]
async fn the_original_resources_work_on_sqlite() {
    let svc = sqlite_service(None).await;
    original_resources(&svc).await;
    reports_are_idempotent(&svc.store).await;
}

#[tokio::test]
async fn the_original_resources_work_with_a_token_set() {
    let svc = sqlite_service(Some("api-t0ken")).await;
    original_resources(&svc).await;
    // The same request without the token is refused.
    let r = client()
        .get(format!("{}/api/pipelines", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_original_resources_work_on_postgres() {
    let store = postgres_store("api").await;
    let svc = service_on(store, None, None).await;
    original_resources(&svc).await;
    reports_are_idempotent(&svc.store).await;
}

#[tokio::test]
async fn the_original_resources_work_on_mariadb() {
    let store = mysql_store("api").await;
    assert_eq!(store.backend(), fastlane_monitor::store::Backend::Mysql);
    let svc = service_on(store, Some("api-t0ken"), None).await;
    original_resources(&svc).await;
    reports_are_idempotent(&svc.store).await;
}

/// Many runs reporting at once into one server store, each report with samples and lines:
/// every report lands once, whatever the server did to transactions that collided.
async fn concurrent_reports_all_land(store: &Store) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..5i64 {
                    let mut rep = report(
                        &format!("together-{i}"),
                        if n == 4 {
                            RunStatus::Completed
                        } else {
                            RunStatus::Running
                        },
                        n * 100,
                        vec![sample(n, n * 100)],
                        (0..20).map(|k| line(n * 20 + k, "x")).collect(),
                    );
                    // Half the runs share one pipeline, whose row every report updates.
                    if i % 2 == 0 {
                        rep.pipeline.pipeline_id = "together.shared".into();
                    }
                    store.apply_report(&rep).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (runs, total) = store
        .runs(&RunFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let ours: Vec<_> = runs
        .iter()
        .filter(|r| {
            r.run_key
                .as_deref()
                .is_some_and(|k| k.starts_with("together-"))
        })
        .collect();
    assert_eq!(ours.len(), 24, "{total} runs in all");
    for r in ours {
        assert_eq!((r.status, r.rows_loaded), (RunStatus::Completed, 400));
        assert_eq!(
            store
                .samples(r.id, None, None, None, 100)
                .await
                .unwrap()
                .len(),
            5
        );
        assert_eq!(store.logs(r.id, None, None, 1000).await.unwrap().len(), 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reports_all_land_on_mariadb() {
    concurrent_reports_all_land(&mysql_store("together").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reports_all_land_on_postgres() {
    concurrent_reports_all_land(&postgres_store("together").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_opening_a_new_store_at_once_all_find_it_migrated() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.db");
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.to_str().unwrap().to_owned();
                tokio::spawn(async move { Store::open(&path).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {}", fastlane_monitor_chain(&e)));
            store.ping().await.unwrap();
            store.close().await;
        }
    }
}

fn fastlane_monitor_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

#[tokio::test]
async fn migrations_apply_to_fresh_databases_and_again_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/monitor.db");
    let a = Store::open(path.to_str().unwrap()).await.unwrap();
    a.apply_report(&report("k", RunStatus::Running, 1, vec![], vec![]))
        .await
        .unwrap();
    a.close().await;
    let b = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        b.runs(&RunFilter::default()).await.unwrap().1,
        1,
        "reopened, data kept"
    );
    let pg = postgres_store("migrate").await;
    pg.ping().await.unwrap();
    assert_eq!(pg.pipelines(&PipelineFilter::default()).await.unwrap().1, 0);
    // MariaDB, by either scheme: migrated once, then opened again without change.
    let url = mysql_url("migrate").await;
    let my = Store::open(&url).await.unwrap();
    my.apply_report(&report("k", RunStatus::Running, 1, vec![], vec![]))
        .await
        .unwrap();
    my.close().await;
    let again = Store::open(&url.replacen("mysql://", "mariadb://", 1))
        .await
        .unwrap();
    assert_eq!(again.runs(&RunFilter::default()).await.unwrap().1, 1);
    assert!(matches!(
        Store::open("oracle://root@127.0.0.1/x").await,
        Err(fastlane_monitor::store::StoreError::Url(_))
    ));
}

#[tokio::test]
async fn bad_requests_are_4xx_json_errors() {
    let svc = sqlite_service(None).await;
    let c = client();
    let b = &svc.base;
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (c.post(format!("{b}/api/pipeline")).header("content-type", "application/json").body("{not json"), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline")).json(&json!({"pipeline_id": 5})), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline")).json(&json!({"pipeline_id": "a", "source_type": "x", "target_type": "y", "pipeline_type": "full_table", "config": {}})), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline")).json(&json!({"pipeline_id": "a", "source_type": "x", "target_type": "y", "pipeline_type": "FULL_TABLE", "config": {}, "extra": 1})), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline")).json(&json!({"pipeline_id": "", "source_type": "x", "target_type": "y", "pipeline_type": "FULL_TABLE", "config": {}})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        (c.post(format!("{b}/api/pipeline")).header("content-type", "text/plain").body("{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (c.post(format!("{b}/api/pipeline")), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline")).json(&json!({"pad": "x".repeat(100_000)})), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (c.get(format!("{b}/api/pipeline")), StatusCode::BAD_REQUEST, "invalid_query"),
        (c.get(format!("{b}/api/pipeline?pipeline_id=a&bogus=1")), StatusCode::BAD_REQUEST, "invalid_query"),
        (c.get(format!("{b}/api/pipeline/run?pipeline_run_id=abc")), StatusCode::BAD_REQUEST, "invalid_query"),
        (c.get(format!("{b}/api/pipeline/run?pipeline_run_id=99")), StatusCode::NOT_FOUND, "not_found"),
        (c.get(format!("{b}/api/pipeline/run/rps?pipeline_run_id=99")), StatusCode::NOT_FOUND, "not_found"),
        (c.get(format!("{b}/api/pipeline/run/logs?pipeline_run_id=99")), StatusCode::NOT_FOUND, "not_found"),
        (c.get(format!("{b}/api/pipeline/run/rps?pipeline_run_id=1&start_date=yesterday")), StatusCode::BAD_REQUEST, "invalid_query"),
        (c.get(format!("{b}/api/pipelines?limit=0")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        (c.get(format!("{b}/api/pipelines?pipeline_status=done")), StatusCode::BAD_REQUEST, "invalid_query"),
        (c.get(format!("{b}/api/pipelines?pipeline_type=weekly")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        (c.put(format!("{b}/api/pipeline/run")).json(&json!({"pipeline_run_id": 99, "status": "failed"})), StatusCode::NOT_FOUND, "not_found"),
        (c.put(format!("{b}/api/pipeline/run")).json(&json!({"pipeline_run_id": 1, "status": "weird"})), StatusCode::BAD_REQUEST, "invalid_body"),
        (c.post(format!("{b}/api/pipeline/run/rps")).json(&json!({"pipeline_run_id": 1, "rps": -1})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        (c.post(format!("{b}/api/pipeline/run/stop")).json(&json!({"pipeline_run_id": 99})), StatusCode::NOT_FOUND, "not_found"),
        (c.patch(format!("{b}/api/pipeline")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (c.get(format!("{b}/api/pipeline/run/report")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (c.get(format!("{b}/api/nothing")), StatusCode::NOT_FOUND, "not_found"),
        (c.get(format!("{b}/nothing")), StatusCode::NOT_FOUND, "not_found"),
        (c.delete(format!("{b}/index.html")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (i, (req, status, kind)) in cases.into_iter().enumerate() {
        let (s, v) = json_of(req.send().await.unwrap()).await;
        assert_eq!((s, error_kind(&v)), (status, kind), "case {i}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let r = c
        .patch(format!("{b}/api/pipeline/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET, POST, PUT, DELETE");
}

#[tokio::test]
async fn bodies_and_queries_are_read_as_the_openapi_document_describes_them() {
    let svc = sqlite_service(None).await;
    let c = client();
    let b = &svc.base;
    // A creation answers 201 with where to read what was created.
    let r = c
        .post(format!("{b}/api/pipeline"))
        .json(
            &json!({"pipeline_id": "a b", "source_type": "x", "target_type": "y",
                      "pipeline_type": "FULL_TABLE", "config": {}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/api/pipeline?pipeline_id=a+b");
    let (s, v) = json_of(c.get(format!("{b}{location}")).send().await.unwrap()).await;
    assert_eq!((s, &v["id"]), (StatusCode::OK, &json!("a b")));

    // JSON's integers may be written as integral floats (JSON Schema's `integer`).
    let r = c
        .post(format!("{b}/api/pipeline/run"))
        .json(&json!({"pipeline_id": "a b", "rows_loaded": 5.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let (_, run) = json_of(r).await;
    assert_eq!(run["rows_loaded"], 5);
    assert_eq!(
        location,
        format!("/api/pipeline/run?pipeline_run_id={}", run["id"])
    );
    let id = run["id"].as_i64().unwrap();
    // Up to 2^53 included, where every integral float is still exact.
    let r = c
        .put(format!("{b}/api/pipeline/run"))
        .json(&json!({"pipeline_run_id": id, "rows_loaded": 9007199254740992.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for path in [
        format!("/api/pipeline/run?pipeline_run_id={id}.0"),
        format!("/api/pipeline/run/logs?pipeline_run_id={id}&limit=1e1"),
        "/api/pipelines?limit=2.0&offset=0.0".to_owned(),
    ] {
        let (s, v) = json_of(c.get(format!("{b}{path}")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }

    // Anything else is a 400 naming the field.
    let cases = [
        (
            json!({"pipeline_id": "a b", "rows_loaded": 5.5}),
            "rows_loaded",
        ),
        (
            json!({"pipeline_id": "a b", "rows_loaded": 1e300}),
            "rows_loaded",
        ),
        (json!([1, 2]), "must be a JSON object"),
    ];
    for (body, needle) in cases {
        let (s, v) = json_of(
            c.post(format!("{b}/api/pipeline/run"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, error_kind(&v)),
            (StatusCode::BAD_REQUEST, "invalid_body"),
            "{body}: {v}"
        );
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{body}: {m}");
    }
    // Objects must be objects: serde would also take an array of the fields in order.
    let report = |extra: Value| {
        let mut r = json!({"run_key": "k1",
            "pipeline": {"pipeline_id": "p", "source_type": "s", "target_type": "t",
                         "pipeline_type": "FULL_TABLE", "config": {}},
            "run": {"status": "running", "started": "2026-11-24T00:00:00Z"}});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    let cases = [
        (
            report(json!({"samples": [[null, null]]})),
            "samples[0]: invalid type: an array, expected an object",
        ),
        (
            report(json!({"samples": [{"seq": 1, "queues": [["q", 1, 2]]}]})),
            "samples[0].queues[0]: invalid type: an array",
        ),
        (
            report(json!({"logs": [{"message": "m", "seq": "x"}]})),
            "logs[0].seq: invalid type: string",
        ),
        (
            report(json!({"run": ["running", "2026-11-24T00:00:00Z"]})),
            "run: invalid type: an array, expected an object",
        ),
        (
            report(
                json!({"run": {"status": "running", "started": "2026-11-24T00:00:00Z", "stages": [1]}}),
            ),
            "run.stages: invalid type: sequence",
        ),
    ];
    for (body, needle) in cases {
        let (s, v) = json_of(
            c.post(format!("{b}/api/pipeline/run/report"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{needle} in {m}");
    }
    let (s, v) = json_of(
        c.post(format!("{b}/api/pipeline/run/logs"))
            .json(&json!({"pipeline_run_id": id, "logs": ["plain", {"message": "m", "level": "warn"}, 5]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logs[2]: invalid type: a number"),
        "{v}"
    );
    assert_eq!(report(json!({}))["run_key"], "k1");
}

#[tokio::test]
async fn writes_need_the_token_when_one_is_set() {
    let svc = sqlite_service(Some("s3cret")).await;
    let c = client();
    let b = &svc.base;
    let body = json!({"pipeline_id": "p", "source_type": "file", "target_type": "file", "pipeline_type": "FULL_TABLE", "config": {}});
    let (s, v) = json_of(
        c.post(format!("{b}/api/pipeline"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, error_kind(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let r = c
        .post(format!("{b}/api/pipeline"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c
        .post(format!("{b}/api/pipeline"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .delete(format!("{b}/api/pipeline?pipeline_id=p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_tokens_every_route_but_healthz_needs_one_and_read_tokens_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("monitor.db").to_str().unwrap())
        .await
        .unwrap();
    let named = fastlane_monitor::server::ApiToken::parse_file(
        "# dashboards\ngrafana read gr4fana-t0ken\n\nci write c1-writer-t0ken\n",
    )
    .unwrap();
    let opts = ServeOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: Some("0wner-t0ken".into()),
        read_tokens: vec!["scr4pe-t0ken".into()],
        tokens: named,
        ..ServeOptions::default()
    };
    let (addr, _stop) = spawn(store, opts).await.unwrap();
    let b = format!("http://{addr}");
    let c = client();
    let body = json!({"pipeline_id": "p", "source_type": "file", "target_type": "file", "pipeline_type": "FULL_TABLE", "config": {}});

    // No token: nothing but /healthz (and the UI's static files, which hold no data).
    for path in [
        "/api/pipelines",
        "/api/pipeline?pipeline_id=p",
        "/api/pipeline/runs",
        "/api/healthcheck",
        "/api/openapi.json",
        "/metrics",
    ] {
        let (s, v) = json_of(c.get(format!("{b}{path}")).send().await.unwrap()).await;
        assert_eq!(
            (s, error_kind(&v)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
    }
    assert_eq!(
        c.get(format!("{b}/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let ui = c.get(format!("{b}/")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);

    // Read tokens read, and only read.
    for t in ["scr4pe-t0ken", "gr4fana-t0ken"] {
        let r = get_as(&c, &format!("{b}/api/pipelines"), t).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
        let r = get_as(&c, &format!("{b}/metrics"), t).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
        assert!(r.text().await.unwrap().contains("fastlane_"), "{t}");
        let (s, v) = json_of(
            c.post(format!("{b}/api/pipeline"))
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, error_kind(&v)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{t}"
        );
    }
    // Write tokens do everything.
    for (i, t) in ["0wner-t0ken", "c1-writer-t0ken"].iter().enumerate() {
        let mut b2 = body.clone();
        b2["pipeline_id"] = json!(format!("p{i}"));
        let r = c
            .post(format!("{b}/api/pipeline"))
            .bearer_auth(t)
            .json(&b2)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{t}");
        let r = get_as(&c, &format!("{b}/api/pipelines"), t).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
    }

    // Refused tokens: after the limit, this client is told to wait, even with a good token.
    for i in 0..fastlane_monitor::server::MAX_FAILURES {
        let (s, v) = json_of(
            c.get(format!("{b}/api/pipelines"))
                .bearer_auth(format!("guess-{i}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v["error"]["message"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, "the token was refused")
        );
    }
    let r = get_as(&c, &format!("{b}/api/pipelines"), "scr4pe-t0ken").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (_, v) = json_of(r).await;
    assert_eq!(error_kind(&v), "too_many_attempts");
    // /healthz stays open to everyone.
    assert_eq!(
        c.get(format!("{b}/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn a_tokens_file_lists_every_problem_with_its_line() {
    let err = fastlane_monitor::server::ApiToken::parse_file(
        "a read long-enough-token\nb admin long-enough-token\nc write short\nd\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "line 2: the role `admin` is not `read` or `write`; line 3: the token of `c` is shorter \
         than 8 characters; line 4: expected `<name> <read|write> <token>`"
    );
    let t = fastlane_monitor::server::ApiToken::parse_file("a read long-enough-token").unwrap();
    assert!(
        !format!("{t:?}").contains("long-enough"),
        "tokens never print"
    );
}

#[tokio::test]
async fn health_metrics_openapi_and_ui_are_served() {
    let svc = sqlite_service(None).await;
    svc.store
        .apply_report(&report(
            "m",
            RunStatus::Running,
            7,
            vec![sample(0, 7)],
            vec![],
        ))
        .await
        .unwrap();
    let c = client();
    let b = &svc.base;
    let (s, h) = json_of(c.get(format!("{b}/healthz")).send().await.unwrap()).await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (_, h) = json_of(
        c.get(format!("{b}/api/healthcheck?echo=hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(h, json!({"status": "ok", "echo": "hi"}));
    let r = c.get(format!("{b}/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for needle in [
        "fastlane_runs{status=\"running\"} 1",
        "fastlane_pipelines 1",
        "fastlane_run_rows{pipeline_id=\"events.file.file\",run=\"1\",stage=\"target\"} 7",
        "fastlane_run_queue_batches{pipeline_id=\"events.file.file\",run=\"1\",queue=\"source→target\"} 2",
        "fastlane_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let (s, doc) = json_of(c.get(format!("{b}/api/openapi.json")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/pipeline",
        "/api/pipelines",
        "/api/pipeline/run",
        "/api/pipeline/run/report",
        "/api/pipeline/run/logs",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    let page = c.get(format!("{b}/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    let js = c.get(format!("{b}/ui/app.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_state(status: RunStatus, rows: i64) -> ReportRun {
    ReportRun {
        status,
        started: fastlane_monitor::time::iso(fastlane_monitor::time::now_ms()),
        finished: None,
        rows_loaded: rows,
        rows_extracted: rows,
        bytes_loaded: 0,
        peak_memory_usage: 1.0,
        start_offset: None,
        end_offset: None,
        error: None,
        cloudwatch_log_stream: None,
        cloudwatch_log_group: None,
        stages: None,
    }
}

fn pipeline() -> ReportPipeline {
    ReportPipeline {
        pipeline_id: "r.file.file".into(),
        source_type: "file".into(),
        target_type: "file".into(),
        pipeline_type: PipelineType::FullTable,
        config: Default::default(),
    }
}

#[test]
fn the_reporter_writes_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("local.db").display().to_string();
    let mut opts = ReporterOptions::new(Destination::Store(db.clone()));
    opts.interval = Duration::from_millis(100);
    let stop = Arc::new(AtomicBool::new(false));
    let r = Reporter::start(
        opts,
        "local-1".into(),
        pipeline(),
        run_state(RunStatus::Running, 0),
        stop,
    )
    .unwrap();
    for i in 0..5 {
        r.sample(sample(0, i * 10));
        r.log(line(0, &format!("line {i}")));
    }
    let n = r
        .finish(run_state(RunStatus::Completed, 50))
        .expect("reported");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&db).await.unwrap();
        let run = store.run(n).await.unwrap().unwrap();
        assert_eq!((run.status, run.rows_loaded), (RunStatus::Completed, 50));
        let samples = store.samples(n, None, None, None, 100).await.unwrap();
        assert_eq!(samples.len(), 5, "sequence numbers are the reporter's own");
        let logs = store.logs(n, None, None, 100).await.unwrap();
        assert_eq!(logs.len(), 5);
        assert_eq!(logs[4].message, "line 4");
    });
}

#[test]
fn the_reporter_buffers_while_the_service_is_down_and_never_blocks_the_run() {
    let port = free_port();
    let mut opts = ReporterOptions::new(Destination::Service {
        url: format!("http://127.0.0.1:{port}"),
        token: Some("t".into()),
    });
    opts.interval = Duration::from_millis(100);
    opts.final_timeout = Duration::from_secs(20);
    let stop = Arc::new(AtomicBool::new(false));
    let r = Reporter::start(
        opts,
        "buffered".into(),
        pipeline(),
        run_state(RunStatus::Running, 0),
        stop.clone(),
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..200 {
        r.sample(sample(0, i));
        r.log(line(0, &format!("line {i}")));
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "queuing never waits on the service"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(r.run_number(), 0, "nothing listens yet");

    // The service comes up on that port; the buffered reports arrive.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(dir.path().join("svc.db").to_str().unwrap()))
        .unwrap();
    let opts = ServeOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        token: Some("t".into()),
        body_limit: 8 << 20,
        ..ServeOptions::default()
    };
    let (_addr, _guard) = rt.block_on(spawn(store.clone(), opts)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.run_number() == 0 {
        assert!(
            Instant::now() < deadline,
            "the reporter never reached the service"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A stop requested through the service reaches the run.
    let id = r.run_number();
    rt.block_on(store.request_stop(id)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the stop request never reached the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = r.finish(run_state(RunStatus::Stopped, 199)).unwrap();
    rt.block_on(async {
        let run = store.run(n).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Stopped);
        assert_eq!(
            store
                .samples(n, None, None, None, 1000)
                .await
                .unwrap()
                .len(),
            200,
            "nothing lost"
        );
        assert_eq!(store.logs(n, None, None, 1000).await.unwrap().len(), 200);
    });
}

#[test]
fn a_final_report_to_a_dead_service_gives_up_in_time() {
    let port = free_port();
    let mut opts = ReporterOptions::new(Destination::Service {
        url: format!("http://127.0.0.1:{port}"),
        token: None,
    });
    opts.final_timeout = Duration::from_millis(800);
    let r = Reporter::start(
        opts,
        "dead".into(),
        pipeline(),
        run_state(RunStatus::Running, 0),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    r.sample(sample(0, 1));
    let t = Instant::now();
    assert_eq!(r.finish(run_state(RunStatus::Completed, 1)), None);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

/// Samples and log lines before a cut-off go, in batches; newer ones, runs and pipelines stay.
async fn prune_removes_old_samples_and_log_lines(store: &Store) {
    let at = |day: u32| Some(format!("2026-01-{day:02}T12:00:00Z"));
    let mut samples = Vec::new();
    let mut logs = Vec::new();
    for i in 0..10 {
        // Days 1..=7 are old; 20..=22 are not.
        let day = if i < 7 { i + 1 } else { 13 + i };
        samples.push(Sample {
            created_at: at(day),
            ..sample(i64::from(i), 10 * i64::from(i))
        });
        logs.push(LogLine {
            created_at: at(day),
            ..line(i64::from(i), &format!("line {i}"))
        });
    }
    let ack = store
        .apply_report(&report(
            "prune-run",
            RunStatus::Completed,
            90,
            samples,
            logs,
        ))
        .await
        .unwrap();
    let run = ack.pipeline_run_id;
    let cutoff = fastlane_monitor::time::parse("2026-01-10T00:00:00Z").unwrap();
    let pruned = store.prune(cutoff, 3).await.unwrap();
    assert_eq!((pruned.samples, pruned.log_lines), (7, 7));
    let left = store.samples(run, None, None, None, 100).await.unwrap();
    assert_eq!(
        left.iter().map(|s| s.seq.unwrap()).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    let lines = store.logs(run, None, None, 100).await.unwrap();
    assert_eq!(
        lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["line 7", "line 8", "line 9"]
    );
    assert!(store.run(run).await.unwrap().is_some(), "the run stays");
    // Nothing more to remove.
    let again = store.prune(cutoff, 3).await.unwrap();
    assert_eq!((again.samples, again.log_lines), (0, 0));
}

#[tokio::test]
async fn prune_on_sqlite() {
    let svc = sqlite_service(None).await;
    prune_removes_old_samples_and_log_lines(&svc.store).await;
}

#[tokio::test]
async fn prune_on_postgres() {
    let store = postgres_store("prune").await;
    prune_removes_old_samples_and_log_lines(&store).await;
}

#[tokio::test]
async fn prune_on_mariadb() {
    let store = mysql_store("prune").await;
    prune_removes_old_samples_and_log_lines(&store).await;
}

/// Reports of a run update it in place: the next run's number follows, however many reports
/// came before.
async fn run_numbers_follow_each_other(store: &Store) {
    let mut ids = Vec::new();
    for key in ["numbers-a", "numbers-b"] {
        for (i, status) in [
            RunStatus::Running,
            RunStatus::Running,
            RunStatus::Running,
            RunStatus::Completed,
        ]
        .into_iter()
        .enumerate()
        {
            let ack = store
                .apply_report(&report(key, status, 10 * i as i64, vec![], vec![]))
                .await
                .unwrap();
            if i == 0 {
                ids.push(ack.pipeline_run_id);
            } else {
                assert_eq!(ack.pipeline_run_id, *ids.last().unwrap(), "{key}: one run");
            }
        }
    }
    assert_eq!(ids[1], ids[0] + 1, "{ids:?}");
    let run = store.run(ids[0]).await.unwrap().unwrap();
    assert_eq!((run.status, run.rows_loaded), (RunStatus::Completed, 30));
}

#[tokio::test]
async fn run_numbers_follow_each_other_on_sqlite() {
    let svc = sqlite_service(None).await;
    run_numbers_follow_each_other(&svc.store).await;
}

#[tokio::test]
async fn run_numbers_follow_each_other_on_postgres() {
    let store = postgres_store("numbers").await;
    run_numbers_follow_each_other(&store).await;
}

#[tokio::test]
async fn run_numbers_follow_each_other_on_mariadb() {
    let store = mysql_store("numbers").await;
    run_numbers_follow_each_other(&store).await;
}

#[tokio::test]
async fn a_store_is_copied_into_another_keeping_every_id() {
    let from = sqlite_service(None).await;
    let samples: Vec<Sample> = (0..5).map(|i| sample(i, i * 10)).collect();
    let logs: Vec<LogLine> = (0..3).map(|i| line(i, &format!("line {i}"))).collect();
    let a = from
        .store
        .apply_report(&report("copy-a", RunStatus::Completed, 40, samples, logs))
        .await
        .unwrap();
    let b = from
        .store
        .apply_report(&report("copy-b", RunStatus::Failed, 7, vec![], vec![]))
        .await
        .unwrap();
    // SQLite → MariaDB → PostgreSQL.
    let my = mysql_store("copy").await;
    let copied = from.store.copy_into(&my).await.unwrap();
    let to = postgres_store("copy").await;
    assert_eq!(my.copy_into(&to).await.unwrap(), copied);
    assert_eq!(
        copied.tables,
        [
            ("pipeline".to_owned(), 1),
            ("pipeline_run".to_owned(), 2),
            ("pipeline_run_sample".to_owned(), 5),
            ("pipeline_run_log".to_owned(), 3)
        ]
    );
    for id in [a.pipeline_run_id, b.pipeline_run_id] {
        let x = from.store.run(id).await.unwrap().unwrap();
        for store in [&my, &to] {
            let y = store.run(id).await.unwrap().unwrap();
            assert_eq!(
                serde_json::to_value(&x).unwrap(),
                serde_json::to_value(&y).unwrap()
            );
        }
    }
    assert_eq!(
        serde_json::to_value(
            my.samples(a.pipeline_run_id, None, None, None, 100)
                .await
                .unwrap()
        )
        .unwrap(),
        serde_json::to_value(
            from.store
                .samples(a.pipeline_run_id, None, None, None, 100)
                .await
                .unwrap()
        )
        .unwrap()
    );
    assert_eq!(
        to.samples(a.pipeline_run_id, None, None, None, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        to.logs(a.pipeline_run_id, None, None, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    // New runs take the next numbers.
    let c = to
        .apply_report(&report("copy-c", RunStatus::Running, 0, vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(c.pipeline_run_id, b.pipeline_run_id + 1);
    let c = my
        .apply_report(&report("copy-c", RunStatus::Running, 0, vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(c.pipeline_run_id, b.pipeline_run_id + 1);
    // A store that is not empty is not written into.
    let err = from.store.copy_into(&to).await.unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
}

#[tokio::test]
async fn the_original_fastlanes_store_is_read_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("original.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    // The original's tables as its migration made them on SQLite (enum names, naive times).
    for statement in [
        "CREATE TABLE pipeline (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id VARCHAR(100) NOT NULL PRIMARY KEY, source_type VARCHAR(50) NOT NULL, \
         target_type VARCHAR(50) NOT NULL, pipeline_type VARCHAR(10) NOT NULL, config JSON NOT NULL)",
        "CREATE TABLE pipeline_run (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, pipeline_id VARCHAR(100), \
         status VARCHAR(9) NOT NULL, cloudwatch_log_stream VARCHAR(200) NOT NULL, \
         started DATETIME NOT NULL, finished DATETIME, rows_loaded INTEGER, \
         start_offset VARCHAR(100), end_offset VARCHAR(100))",
        "CREATE TABLE pipeline_rps (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, pipeline_run_id INTEGER, rps FLOAT NOT NULL)",
        "CREATE TABLE pipeline_memory_usage (created_at DATETIME NOT NULL, \
         updated_at DATETIME NOT NULL, id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, \
         pipeline_run_id INTEGER, memory_usage FLOAT NOT NULL)",
        "INSERT INTO pipeline VALUES ('2021-03-20 10:00:00.000000', '2021-03-20 10:00:00.000000', \
         'target.planets.mysql.mysql', 'mysql', 'mysql', 'full_table', \
         '{\"source\": {\"mysql\": {\"host\": \"db\", \"password\": \"hunter2\"}}}')",
        "INSERT INTO pipeline_run VALUES ('2021-03-20 10:00:01.000000', \
         '2021-03-20 10:05:00.000000', 7, 'target.planets.mysql.mysql', 'completed', '', \
         '2021-03-20 10:00:01.500000', NULL, 150000, '-1', '0')",
        "INSERT INTO pipeline_run VALUES ('2021-03-21 10:00:01.000000', \
         '2021-03-21 10:00:09.000000', 9, 'target.planets.mysql.mysql', 'failed', \
         '2021.03.21-10.00', '2021-03-21 10:00:01.000000', NULL, NULL, '-1', '0')",
        "INSERT INTO pipeline_rps VALUES ('2021-03-20 10:00:31.000000', \
         '2021-03-20 10:00:31.000000', 1, 7, 6400.0)",
        "INSERT INTO pipeline_memory_usage VALUES ('2021-03-20 10:00:31.000000', \
         '2021-03-20 10:00:31.000000', 1, 7, 274.5)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    }
    let svc = sqlite_service(None).await;
    original_store_is_imported(&pool, Backend::Sqlite, &svc.store).await;
}

/// The original's tables as its migration made them on MySQL (the DDL of
/// `../shared/reference/original-fastlane.md`: enum names, DATETIME, JSON, FLOAT), read into a
/// MariaDB store.
#[tokio::test]
async fn the_original_fastlanes_mysql_database_is_read_into_a_mariadb_store() {
    let url = mysql_url("original").await;
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for statement in [
        "CREATE TABLE pipeline (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id VARCHAR(100) NOT NULL PRIMARY KEY, source_type VARCHAR(50) NOT NULL, \
         target_type VARCHAR(50) NOT NULL, \
         pipeline_type ENUM('incremental','full_table') NOT NULL, config JSON NOT NULL)",
        "CREATE TABLE pipeline_run (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, pipeline_id VARCHAR(100), \
         status ENUM('completed','exited','failed','running') NOT NULL, \
         cloudwatch_log_stream VARCHAR(200) NOT NULL, started DATETIME(6) NOT NULL, \
         finished DATETIME NULL, rows_loaded INTEGER NULL, start_offset VARCHAR(100) NULL, \
         end_offset VARCHAR(100) NULL, FOREIGN KEY (pipeline_id) REFERENCES pipeline (id))",
        "CREATE TABLE pipeline_rps (created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, \
         id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, pipeline_run_id INTEGER NULL, \
         rps FLOAT NOT NULL, FOREIGN KEY (pipeline_run_id) REFERENCES pipeline_run (id))",
        "CREATE TABLE pipeline_memory_usage (created_at DATETIME NOT NULL, \
         updated_at DATETIME NOT NULL, id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         pipeline_run_id INTEGER NULL, memory_usage FLOAT NOT NULL, \
         FOREIGN KEY (pipeline_run_id) REFERENCES pipeline_run (id))",
        "INSERT INTO pipeline VALUES ('2021-03-20 10:00:00', '2021-03-20 10:00:00', \
         'target.planets.mysql.mysql', 'mysql', 'mysql', 'full_table', \
         '{\"source\": {\"mysql\": {\"host\": \"db\", \"password\": \"hunter2\"}}}')",
        "INSERT INTO pipeline_run VALUES ('2021-03-20 10:00:01', '2021-03-20 10:05:00', 7, \
         'target.planets.mysql.mysql', 'completed', '', '2021-03-20 10:00:01.500000', NULL, \
         150000, '-1', '0')",
        "INSERT INTO pipeline_run VALUES ('2021-03-21 10:00:01', '2021-03-21 10:00:09', 9, \
         'target.planets.mysql.mysql', 'failed', '2021.03.21-10.00', '2021-03-21 10:00:01', \
         NULL, NULL, '-1', '0')",
        "INSERT INTO pipeline_rps VALUES ('2021-03-20 10:00:31', '2021-03-20 10:00:31', 1, 7, \
         6400.0)",
        "INSERT INTO pipeline_memory_usage VALUES ('2021-03-20 10:00:31', \
         '2021-03-20 10:00:31', 1, 7, 274.5)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    }
    let store = mysql_store("imported").await;
    original_store_is_imported(&pool, Backend::Mysql, &store).await;
}

/// Reads the original's store in `pool` (as the two tests above lay it out) into `store`.
async fn original_store_is_imported(pool: &sqlx::AnyPool, from: Backend, store: &Store) {
    assert!(fastlane_monitor::store::migrate::is_original(pool).await);
    let copied = store.import_original(pool, from).await.unwrap();
    assert_eq!(
        copied.tables,
        [
            ("pipeline".to_owned(), 1),
            ("pipeline_run".to_owned(), 2),
            ("pipeline_rps".to_owned(), 1),
            ("pipeline_memory_usage".to_owned(), 1)
        ]
    );
    let p = store
        .pipeline("target.planets.mysql.mysql")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.pipeline_type, PipelineType::FullTable);
    assert_eq!(
        p.config["source"]["mysql"]["password"], "***",
        "secrets redacted"
    );
    let run = store.run(7).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.rows_loaded),
        (RunStatus::Completed, 150_000)
    );
    assert_eq!(run.started, "2021-03-20T10:00:01.500Z");
    let failed = store.run(9).await.unwrap().unwrap();
    assert_eq!(failed.cloudwatch_log_stream, "2021.03.21-10.00");
    let samples = store.samples(7, None, None, None, 10).await.unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().any(|s| s.rps == Some(6400.0)));
    assert!(samples.iter().any(|s| s.memory_usage == Some(274.5)));
    // Its next run follows the original's numbers.
    let next = store
        .apply_report(&report(
            "after-original",
            RunStatus::Running,
            0,
            vec![],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(next.pipeline_run_id, 10);
}
