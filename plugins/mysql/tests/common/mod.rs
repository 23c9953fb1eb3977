//! Helpers for the tests against the real MariaDB/MySQL server on 127.0.0.1:3306 (user `root`,
//! empty password; `FASTLANE_TEST_MYSQL_PORT` changes the port). The test command starts the
//! server where none runs.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use fastlane_host::engine::{self, EngineOptions, Named, NoObserver, Pipeline, RunSummary};
use fastlane_host::plugins::LoadedPlugin;
use fastlane_plugin_api::{ComponentKind, ReplicationMode, Source, Target};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use serde_json::{Value, json};

/// The server's port.
pub fn port() -> u16 {
    std::env::var("FASTLANE_TEST_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3306)
}

/// A runtime for the tests' own statements.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A database of its own for one test, dropped at the end.
pub struct Db {
    /// Its name.
    pub name: String,
    conn: std::sync::Mutex<Conn>,
}

fn opts(db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port())
        .user(Some("root"))
        .db_name(db)
        .init(vec!["SET NAMES utf8mb4", "SET time_zone = '+00:00'"])
}

impl Db {
    /// Creates (or recreates) the database `fl_<name>`.
    pub fn new(name: &str) -> Self {
        let name = format!("fl_{name}");
        let conn = rt().block_on(async {
            let mut conn = Conn::new(opts(None)).await.unwrap_or_else(|e| {
                panic!(
                    "no MySQL/MariaDB server answers on 127.0.0.1:{}: {e} (the test command \
                     starts one; see tests/services.sh)",
                    port()
                )
            });
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await
                .expect("drop database");
            conn.query_drop(format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await
            .expect("create database");
            conn.query_drop(format!("USE `{name}`")).await.expect("use");
            conn
        });
        Self {
            name,
            conn: std::sync::Mutex::new(conn),
        }
    }

    /// Opens a new connection (after the server restarted).
    pub fn reconnect(&self) {
        let conn = rt()
            .block_on(Conn::new(opts(Some(&self.name))))
            .expect("reconnect");
        *self.conn.lock().expect("lock") = conn;
    }

    /// Runs statements.
    pub fn exec(&self, sql: &str) {
        let mut conn = self.conn.lock().expect("lock");
        rt().block_on(conn.query_drop(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of a query, or its error.
    pub fn try_rows(&self, sql: &str) -> Result<Vec<Row>, mysql_async::Error> {
        let mut conn = self.conn.lock().expect("lock");
        rt().block_on(conn.query(sql))
    }

    /// The rows of a query (panics on an error).
    pub fn rows(&self, sql: &str) -> Vec<Row> {
        let mut conn = self.conn.lock().expect("lock");
        rt().block_on(conn.query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// One value of a query, as text (`NULL` for NULL).
    pub fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        match rows.first().and_then(|r| r.as_ref(0)) {
            None | Some(mysql_async::Value::NULL) => "NULL".to_owned(),
            Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(v) => v.as_sql(true).trim_matches('\'').to_owned(),
        }
    }

    /// A content checksum of `table` over `columns`, independent of row order and of column
    /// types that render alike: count and a sum of per-row CRC32s.
    pub fn checksum(&self, table: &str, columns: &[&str]) -> String {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| format!("IFNULL(HEX(`{c}`), '~')"))
            .collect();
        self.value(&format!(
            "SELECT CONCAT(COUNT(*), ':', IFNULL(SUM(CRC32(CONCAT_WS('|', {}))), 0)) FROM `{table}`",
            cells.join(", ")
        ))
    }

    /// Table names in the database.
    pub fn tables(&self) -> Vec<String> {
        self.rows(&format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}' ORDER BY 1",
            self.name
        ))
        .into_iter()
        .map(|r| r.get::<String, _>(0).expect("name"))
        .collect()
    }

    /// Ids of the other connections to this database (the plugin's).
    pub fn plugin_connections(&self) -> Vec<u64> {
        self.rows(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
            self.name
        ))
        .into_iter()
        .map(|r| r.get::<u64, _>(0).expect("id"))
        .collect()
    }

    /// Kills the plugin's connections; returns how many.
    pub fn kill_plugin_connections(&self) -> usize {
        let ids = self.plugin_connections();
        for id in &ids {
            let mut conn = self.conn.lock().expect("lock");
            let _ = rt().block_on(conn.query_drop(format!("KILL CONNECTION {id}")));
        }
        ids.len()
    }

    /// A connection config for the plugin, with `extra` fields.
    pub fn config(&self, extra: Value) -> Value {
        let mut c =
            json!({"host": "127.0.0.1", "port": port(), "username": "root", "db": self.name});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the data to look at.
            return;
        }
        let mut conn = self.conn.lock().expect("lock");
        let _ = rt().block_on(conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)));
    }
}

/// The built plugins.
pub fn plugin(name: &str) -> Arc<LoadedPlugin> {
    fastlane_tests::conformance::load(name)
}

/// Runs `source` → `target` through the engine.
pub fn run(
    source: (&str, &str, Value),
    target: (&str, &str, Value),
    mode: ReplicationMode,
) -> Result<RunSummary, String> {
    run_with(source, target, mode, |_| {})
}

/// Runs with adjusted engine options.
pub fn run_with(
    source: (&str, &str, Value),
    target: (&str, &str, Value),
    mode: ReplicationMode,
    adjust: impl FnOnce(&mut EngineOptions),
) -> Result<RunSummary, String> {
    let (source_plugin, target_plugin) = (plugin(source.0), plugin(target.0));
    let s = source_plugin
        .create_source(source.1, &source.2)
        .map_err(|e| e.to_string())?;
    let t = target_plugin
        .create_target(target.1, &target.2)
        .map_err(|e| e.to_string())?;
    let capabilities = |p: &LoadedPlugin, kind: ComponentKind, id: &str| {
        p.components
            .iter()
            .find(|c| c.kind == kind && c.id == id)
            .map(|c| c.capabilities.clone())
            .unwrap_or_default()
    };
    let pipeline = Pipeline {
        source: Named::new(source.1, Box::new(s) as Box<dyn Source>).with_capabilities(
            capabilities(&source_plugin, ComponentKind::Source, source.1),
        ),
        transforms: vec![],
        target: Named::new(target.1, Box::new(t) as Box<dyn Target>).with_capabilities(
            capabilities(&target_plugin, ComponentKind::Target, target.1),
        ),
    };
    let mut options = EngineOptions {
        mode,
        ..EngineOptions::default()
    };
    adjust(&mut options);
    engine::run(pipeline, &options, &mut NoObserver)
        .map_err(|e| fastlane_host::error::chain(&e).to_string())
}

/// Reads Parquet files under `dir`.
pub fn read_parquet(dir: &std::path::Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    for f in files {
        let file = std::fs::File::open(&f).expect("open");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        out.extend(reader.map(|b| b.expect("batch")));
    }
    out
}
