//! The monitoring store: pipelines, runs, samples and log lines, in SQLite (the embedded
//! default, one file), PostgreSQL or MySQL/MariaDB (by URL), through sqlx.
//!
//! Statements are written once, with PostgreSQL's numbered `$n` parameters; on MySQL each
//! becomes a positional `?` with its value bound again where it recurs. What the databases
//! spell differently (`ON CONFLICT` / `ON DUPLICATE KEY`, `RETURNING`, `DELETE … LIMIT`) goes
//! through a few helpers of [`Backend`]. The migrations differ, under
//! `migrations/sqlite`, `migrations/postgres` and `migrations/mysql`, and are applied when the
//! store opens. SQLite writes are serialised inside the process (one writer at a time, readers
//! alongside in WAL mode); other processes writing the same file wait on SQLite's busy
//! timeout. On the servers at most half the pool writes at once, so reads never wait behind a
//! burst of reports, and a report that loses a deadlock is applied again.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::model::*;
use crate::time::{iso, now_ms, parse};

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such pipeline, run, …
    #[error("{0}")]
    NotFound(String),
    /// The record exists already.
    #[error("{0}")]
    Conflict(String),
    /// A value the store cannot take.
    #[error("{0}")]
    Invalid(String),
    /// The URL names no store fastlane knows.
    #[error(
        "unsupported store url `{0}`: use a file path, sqlite://PATH, postgres://… or mysql://…"
    )]
    Url(String),
    /// The database failed.
    #[error("store query failed")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the store")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store's folder could not be created.
    #[error("cannot create `{path}`")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The store's `Result`.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
    /// A MySQL (8 or later) or MariaDB (10.5 or later) database.
    Mysql,
}

/// The default store: `$FASTLANE_STORE`, else `fastlane/monitor.db` under the user's data
/// folder (`$XDG_DATA_HOME`, or `~/.local/share`), else `./fastlane-monitor.db`.
pub fn default_url() -> String {
    if let Some(url) = std::env::var_os("FASTLANE_STORE").filter(|v| !v.is_empty()) {
        return url.to_string_lossy().into_owned();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    match base {
        Some(b) => b.join("fastlane/monitor.db").display().to_string(),
        None => "fastlane-monitor.db".into(),
    }
}

/// Say where a store is without its password (`postgres://user:***@host/db`).
pub fn display_url(url: &str) -> String {
    redact_url(url).unwrap_or_else(|| url.to_owned())
}

/// The migrations of one database: `(version, description, SQL)`.
type Migrations = [(i64, &'static str, &'static str); 3];

/// The migrations of `backend`. On MySQL, `collation` replaces the files' `utf8mb4_bin` (see
/// [`mysql_collation`]); the checksums stay those of the files, so a store keeps its migration
/// history whichever the server is.
fn migrations(backend: Backend, collation: &str) -> Migrator {
    let list: Migrations = match backend {
        Backend::Sqlite => [
            (
                1,
                "monitoring store",
                include_str!("../../migrations/sqlite/0001_monitoring_store.sql"),
            ),
            (
                2,
                "retention",
                include_str!("../../migrations/sqlite/0002_retention.sql"),
            ),
            (
                3,
                "cloudwatch log group",
                include_str!("../../migrations/sqlite/0003_cloudwatch_log_group.sql"),
            ),
        ],
        Backend::Postgres => [
            (
                1,
                "monitoring store",
                include_str!("../../migrations/postgres/0001_monitoring_store.sql"),
            ),
            (
                2,
                "retention",
                include_str!("../../migrations/postgres/0002_retention.sql"),
            ),
            (
                3,
                "cloudwatch log group",
                include_str!("../../migrations/postgres/0003_cloudwatch_log_group.sql"),
            ),
        ],
        Backend::Mysql => [
            (
                1,
                "monitoring store",
                include_str!("../../migrations/mysql/0001_monitoring_store.sql"),
            ),
            (
                2,
                "retention",
                include_str!("../../migrations/mysql/0002_retention.sql"),
            ),
            (
                3,
                "cloudwatch log group",
                include_str!("../../migrations/mysql/0003_cloudwatch_log_group.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        list.into_iter()
            .map(|(version, description, sql)| {
                let mut m = Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                );
                if backend == Backend::Mysql && collation != MYSQL_PAD_BIN {
                    m.sql = AssertSqlSafe(sql.replace(MYSQL_PAD_BIN, collation)).into_sql_str();
                }
                m
            })
            .collect(),
    )
}

use sqlx::SqlSafeStr;

pub mod migrate;

/// A value bound to a query.
#[derive(Debug, Clone)]
enum Arg {
    I(i64),
    OptI(Option<i64>),
    F(Option<f64>),
    S(String),
    OptS(Option<String>),
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Samples removed.
    pub samples: u64,
    /// Log lines removed.
    pub log_lines: u64,
}

/// The monitoring store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Writers at a time: one on SQLite (its single writer), half the pool on the servers, so
    /// that reads (the UI, the API) never queue behind a burst of reports.
    write: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Connections to a SQLite file (one writer, readers beside it in WAL mode).
const POOL_SQLITE: u32 = 4;
/// Connections to PostgreSQL or MySQL.
const POOL_SERVER: u32 = 10;

const RUN_COLUMNS: &str = "r.id, r.pipeline_id, r.run_key, r.status, r.cloudwatch_log_stream, \
    r.cloudwatch_log_group, \
    r.started, r.finished, r.rows_loaded, r.rows_extracted, r.bytes_loaded, r.peak_memory_bytes, \
    r.start_offset, r.end_offset, r.error, r.stages, r.stop_requested, r.last_report_at, \
    r.created_at, r.updated_at";

/// The collation of the MySQL migrations' files: binary, but it ignores trailing spaces.
const MYSQL_PAD_BIN: &str = "utf8mb4_bin";

/// The binary collation of a MySQL server that does not ignore trailing spaces (`a` and `a `
/// are two ids, as on the other stores): MariaDB's `utf8mb4_nopad_bin`, MySQL 8's
/// `utf8mb4_0900_bin`; `utf8mb4_bin` on a server with neither.
async fn mysql_collation(pool: &AnyPool) -> Result<String> {
    let rows = query(
        "SELECT COLLATION_NAME AS c FROM information_schema.COLLATIONS \
         WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY 1 DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(match rows.first() {
        Some(r) => r.try_get("c")?,
        None => MYSQL_PAD_BIN.to_owned(),
    })
}

/// Puts a SQLite store in WAL mode, then applies the migrations.
async fn prepare(pool: &AnyPool, backend: Backend) -> Result<()> {
    let mut collation = MYSQL_PAD_BIN.to_owned();
    match backend {
        Backend::Sqlite => {
            query("PRAGMA journal_mode = WAL").execute(pool).await?;
        }
        Backend::Mysql => collation = mysql_collation(pool).await?,
        Backend::Postgres => {}
    }
    migrations(backend, &collation).run(pool).await?;
    Ok(())
}

impl Store {
    /// Opens (creating it when it is a new SQLite file) and migrates the store at `url`: a file
    /// path, `sqlite://PATH`, `sqlite::memory:`, `postgres://…` or `mysql://…` (`mariadb://…`).
    pub async fn open(url: &str) -> Result<Self> {
        let (pool, backend) = connect(url).await?;
        let sqlite = backend == Backend::Sqlite;
        // Several processes may open a new SQLite store at once (a run and `fastlane serve`):
        // switching it to WAL and migrating it need the file to themselves for a moment, and a
        // process that finds the tables made between its look at the migration table and its
        // own attempt fails. A second look finds the work done.
        let mut attempt = 0u64;
        loop {
            match prepare(&pool, backend).await {
                Ok(()) => break,
                Err(e) if sqlite && attempt < 8 => {
                    attempt += 1;
                    tracing::debug!("preparing the store failed ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            pool,
            backend,
            write: std::sync::Arc::new(tokio::sync::Semaphore::new(if sqlite {
                1
            } else {
                POOL_SERVER as usize / 2
            })),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// A pool on the database at `url` (as [`Store::open`] takes it), without migrating it.
pub async fn connect(url: &str) -> Result<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    let (backend, conn) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (Backend::Postgres, url.to_owned())
    } else if url.starts_with("mysql://") {
        (Backend::Mysql, url.to_owned())
    } else if let Some(rest) = url.strip_prefix("mariadb://") {
        (Backend::Mysql, format!("mysql://{rest}"))
    } else if url == "sqlite::memory:" {
        (Backend::Sqlite, url.to_owned())
    } else if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))
    {
        (Backend::Sqlite, sqlite_url(Path::new(rest))?)
    } else if url.contains("://") {
        return Err(StoreError::Url(display_url(url)));
    } else {
        (Backend::Sqlite, sqlite_url(Path::new(url))?)
    };
    let sqlite = backend == Backend::Sqlite;
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { POOL_SQLITE } else { POOL_SERVER })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    // In WAL mode, NORMAL syncs at checkpoints rather than at every commit:
                    // a crash of the process loses nothing, a power cut at most the last
                    // few reports, and the file is never corrupted.
                    sqlx::Executor::execute(&mut *conn, query("PRAGMA synchronous = NORMAL"))
                        .await?;
                }
                if backend == Backend::Mysql {
                    // Whatever the server's defaults: a value that does not fit is an error,
                    // never cut short; a backslash escapes in literals (the LIKE pattern); `||`
                    // joins strings, as on the other stores.
                    sqlx::Executor::execute(
                        &mut *conn,
                        query(
                            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,\
                             NO_ENGINE_SUBSTITUTION,PIPES_AS_CONCAT'",
                        ),
                    )
                    .await?;
                    // As PostgreSQL's default: no gap locks on the reports' inserts, so
                    // concurrent reports collide (and are applied again) less often.
                    sqlx::Executor::execute(
                        &mut *conn,
                        query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(&conn)
        .await?;
    Ok((pool, backend))
}

impl Store {
    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn writer(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.write.acquire().await.ok()
    }

    async fn fetch(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AnyRow>> {
        Ok(self
            .backend
            .statement(&sql, args)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn count(&self, sql: String, args: Vec<Arg>) -> Result<i64> {
        let rows = self.fetch(sql, args).await?;
        Ok(rows
            .first()
            .map(|r| r.try_get::<i64, _>("n"))
            .transpose()?
            .unwrap_or(0))
    }

    async fn exec(&self, sql: String, args: Vec<Arg>) -> Result<u64> {
        let _w = self.writer().await;
        Ok(self
            .backend
            .statement(&sql, args)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    // ----- retention -----

    /// Removes the samples and log lines taken before `before_ms` (epoch milliseconds), at most
    /// `batch` rows per statement, each in its own short transaction, so that runs reporting
    /// meanwhile wait for one batch at most. Runs and pipelines stay.
    pub async fn prune(&self, before_ms: i64, batch: i64) -> Result<Pruned> {
        let batch = batch.max(1);
        let mut pruned = Pruned::default();
        for (table, count) in [
            ("pipeline_run_sample", &mut pruned.samples),
            ("pipeline_run_log", &mut pruned.log_lines),
        ] {
            let sql = if self.backend == Backend::Mysql {
                // MySQL takes no LIMIT in a subquery of IN, but a DELETE of its own.
                format!(
                    "DELETE FROM {table} WHERE created_at < $1 ORDER BY created_at, id LIMIT $2"
                )
            } else {
                format!(
                    "DELETE FROM {table} WHERE id IN \
                     (SELECT id FROM {table} WHERE created_at < $1 ORDER BY created_at, id LIMIT $2)"
                )
            };
            loop {
                let n = self
                    .exec(sql.clone(), vec![Arg::I(before_ms), Arg::I(batch)])
                    .await?;
                *count += n;
                if n < batch as u64 {
                    break;
                }
                // Let the writes waiting on the store go first.
                tokio::task::yield_now().await;
            }
        }
        Ok(pruned)
    }

    // ----- pipelines -----

    /// Registers a pipeline; its config is stored redacted.
    pub async fn create_pipeline(&self, p: &NewPipeline) -> Result<Pipeline> {
        check_id(&p.pipeline_id, "pipeline_id")?;
        check_name(&p.source_type, "source_type")?;
        check_name(&p.target_type, "target_type")?;
        let mut config = Value::Object(p.config.clone());
        redact(&mut config);
        let now = now_ms();
        let done = self
            .exec(
                self.backend.insert_new(
                    "INSERT INTO pipeline (id, source_type, target_type, pipeline_type, config, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    "id",
                ),
                vec![
                    Arg::S(p.pipeline_id.clone()),
                    Arg::S(p.source_type.clone()),
                    Arg::S(p.target_type.clone()),
                    Arg::S(p.pipeline_type.as_str().into()),
                    Arg::S(config.to_string()),
                    Arg::I(now),
                ],
            )
            .await?;
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "pipeline `{}` already exists",
                p.pipeline_id
            )));
        }
        self.pipeline(&p.pipeline_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("pipeline `{}`", p.pipeline_id)))
    }

    /// A pipeline, with its latest run.
    pub async fn pipeline(&self, id: &str) -> Result<Option<Pipeline>> {
        let rows = self
            .fetch(
                format!("{} WHERE p.id = $1", *PIPELINE_SELECT),
                vec![Arg::S(id.into())],
            )
            .await?;
        rows.first().map(pipeline_from_row).transpose()
    }

    /// Changes the fields given.
    pub async fn update_pipeline(&self, u: &PipelineUpdate) -> Result<Pipeline> {
        let mut sets = Vec::new();
        let mut args = vec![Arg::S(u.pipeline_id.clone()), Arg::I(now_ms())];
        let mut push = |col: &str, a: Arg| {
            args.push(a);
            sets.push(format!("{col} = ${}", args.len()));
        };
        if let Some(s) = &u.source_type {
            check_name(s, "source_type")?;
            push("source_type", Arg::S(s.clone()));
        }
        if let Some(s) = &u.target_type {
            check_name(s, "target_type")?;
            push("target_type", Arg::S(s.clone()));
        }
        if let Some(t) = u.pipeline_type {
            push("pipeline_type", Arg::S(t.as_str().into()));
        }
        if let Some(c) = &u.config {
            let mut config = Value::Object(c.clone());
            redact(&mut config);
            push("config", Arg::S(config.to_string()));
        }
        sets.push("updated_at = $2".into());
        let n = self
            .exec(
                format!("UPDATE pipeline SET {} WHERE id = $1", sets.join(", ")),
                args,
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "pipeline `{}` does not exist",
                u.pipeline_id
            )));
        }
        self.pipeline(&u.pipeline_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("pipeline `{}`", u.pipeline_id)))
    }

    /// Deletes a pipeline and its runs; `false` when there was none.
    pub async fn delete_pipeline(&self, id: &str) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM pipeline WHERE id = $1".into(),
                vec![Arg::S(id.into())],
            )
            .await?
            > 0)
    }

    /// Pipelines matching `f`, newest activity first, and how many match in all.
    pub async fn pipelines(&self, f: &PipelineFilter) -> Result<(Vec<Pipeline>, i64)> {
        let mut wh = Vec::new();
        let mut args = Vec::new();
        let mut add = |cond: &str, a: Arg| {
            args.push(a);
            wh.push(cond.replace('?', &format!("${}", args.len())));
        };
        if let Some(s) = f.pipeline_status {
            add("r.status = ?", Arg::S(s.as_str().into()));
        }
        if let Some(t) = &f.pipeline_type {
            let t = PipelineType::parse(t).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "pipeline_type must be FULL_TABLE or INCREMENTAL, not `{t}`"
                ))
            })?;
            add("p.pipeline_type = ?", Arg::S(t.as_str().into()));
        }
        if let Some(s) = &f.source_type {
            add("p.source_type = ?", Arg::S(s.clone()));
        }
        if let Some(s) = &f.target_type {
            add("p.target_type = ?", Arg::S(s.clone()));
        }
        if let Some(q) = &f.q {
            add(
                if self.backend == Backend::Mysql {
                    // A backslash escapes in MySQL's literals too (see `connect`).
                    "LOWER(p.id) LIKE ? ESCAPE '\\\\'"
                } else {
                    "LOWER(p.id) LIKE ? ESCAPE '\\'"
                },
                Arg::S(format!("%{}%", like_escape(&q.to_lowercase()))),
            );
        }
        let (limit, offset) = page(f.limit, f.offset)?;
        let wh = where_clause(&wh);
        let total = self
            .count(
                format!("SELECT COUNT(*) AS n FROM pipeline p {PIPELINE_JOIN}{wh}"),
                args.clone(),
            )
            .await?;
        let n = args.len();
        args.push(Arg::I(limit));
        args.push(Arg::I(offset));
        let rows = self
            .fetch(
                format!(
                    "{}{wh} ORDER BY COALESCE(r.created_at, p.updated_at) DESC, p.id \
                     LIMIT ${} OFFSET ${}",
                    *PIPELINE_SELECT,
                    n + 1,
                    n + 2
                ),
                args,
            )
            .await?;
        let items = rows.iter().map(pipeline_from_row).collect::<Result<_>>()?;
        Ok((items, total))
    }

    // ----- runs -----

    /// Creates a run of an existing pipeline.
    pub async fn create_run(&self, r: &NewRun) -> Result<PipelineRun> {
        if self.pipeline(&r.pipeline_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "pipeline `{}` does not exist",
                r.pipeline_id
            )));
        }
        let now = now_ms();
        let started = opt_time(r.started.as_deref(), "started")?.unwrap_or(now);
        let finished = opt_time(r.finished.as_deref(), "finished")?;
        let rows = non_negative(r.rows_loaded.unwrap_or(0), "rows_loaded")?;
        let stream = r.cloudwatch_log_stream.clone().unwrap_or_default();
        check_len(&stream, 512, "cloudwatch_log_stream")?;
        let sql = "INSERT INTO pipeline_run (pipeline_id, status, cloudwatch_log_stream, started, finished, \
                   rows_loaded, start_offset, end_offset, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
        let args = vec![
            Arg::S(r.pipeline_id.clone()),
            Arg::S(r.status.unwrap_or(RunStatus::Running).as_str().into()),
            Arg::S(stream),
            Arg::I(started),
            Arg::OptI(finished),
            Arg::I(rows),
            Arg::OptS(offset_text(r.start_offset.as_ref())),
            Arg::OptS(offset_text(r.end_offset.as_ref())),
            Arg::I(now),
        ];
        let id = {
            let _w = self.writer().await;
            let mut conn = self.pool.acquire().await?;
            self.backend.insert_id(&mut conn, sql, args).await?
        };
        self.run(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
    }

    /// A run.
    pub async fn run(&self, id: i64) -> Result<Option<PipelineRun>> {
        let rows = self
            .fetch(
                format!("SELECT {RUN_COLUMNS} FROM pipeline_run r WHERE r.id = $1"),
                vec![Arg::I(id)],
            )
            .await?;
        rows.first().map(run_from_row).transpose()
    }

    /// The latest run of a pipeline.
    pub async fn latest_run(&self, pipeline_id: &str) -> Result<Option<PipelineRun>> {
        let rows = self
            .fetch(
                format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_run r WHERE r.pipeline_id = $1 \
                     ORDER BY r.created_at DESC, r.id DESC LIMIT 1"
                ),
                vec![Arg::S(pipeline_id.into())],
            )
            .await?;
        rows.first().map(run_from_row).transpose()
    }

    /// Changes the fields given.
    pub async fn update_run(&self, u: &RunUpdate) -> Result<PipelineRun> {
        let mut sets = Vec::new();
        let mut args = vec![Arg::I(u.pipeline_run_id), Arg::I(now_ms())];
        let mut push = |col: &str, a: Arg| {
            args.push(a);
            sets.push(format!("{col} = ${}", args.len()));
        };
        if let Some(s) = u.status {
            push("status", Arg::S(s.as_str().into()));
        }
        if let Some(s) = &u.cloudwatch_log_stream {
            check_len(s, 512, "cloudwatch_log_stream")?;
            push("cloudwatch_log_stream", Arg::S(s.clone()));
        }
        if let Some(t) = opt_time(u.started.as_deref(), "started")? {
            push("started", Arg::I(t));
        }
        if let Some(t) = opt_time(u.finished.as_deref(), "finished")? {
            push("finished", Arg::I(t));
        }
        if let Some(n) = u.rows_loaded {
            push("rows_loaded", Arg::I(non_negative(n, "rows_loaded")?));
        }
        if u.start_offset.is_some() {
            push(
                "start_offset",
                Arg::OptS(offset_text(u.start_offset.as_ref())),
            );
        }
        if u.end_offset.is_some() {
            push("end_offset", Arg::OptS(offset_text(u.end_offset.as_ref())));
        }
        if let Some(e) = &u.error {
            push("error", Arg::S(e.clone()));
        }
        sets.push("updated_at = $2".into());
        let n = self
            .exec(
                format!("UPDATE pipeline_run SET {} WHERE id = $1", sets.join(", ")),
                args,
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "run {} does not exist",
                u.pipeline_run_id
            )));
        }
        self.run(u.pipeline_run_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {}", u.pipeline_run_id)))
    }

    /// Deletes a run with its samples and logs; `false` when there was none.
    pub async fn delete_run(&self, id: i64) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM pipeline_run WHERE id = $1".into(),
                vec![Arg::I(id)],
            )
            .await?
            > 0)
    }

    /// Asks a running run to stop (it sees the request with its next report).
    pub async fn request_stop(&self, id: i64) -> Result<PipelineRun> {
        let run = self
            .run(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {id} does not exist")))?;
        if run.status != RunStatus::Running {
            return Err(StoreError::Conflict(format!(
                "run {id} is not running (it is {})",
                run.status.as_str()
            )));
        }
        self.exec(
            "UPDATE pipeline_run SET stop_requested = 1, updated_at = $2 WHERE id = $1".into(),
            vec![Arg::I(id), Arg::I(now_ms())],
        )
        .await?;
        self.run(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
    }

    /// Runs matching `f`, newest first, and how many match in all.
    pub async fn runs(&self, f: &RunFilter) -> Result<(Vec<PipelineRun>, i64)> {
        let mut wh = Vec::new();
        let mut args = Vec::new();
        let mut add = |cond: &str, a: Arg| {
            args.push(a);
            wh.push(cond.replace('?', &format!("${}", args.len())));
        };
        if let Some(p) = &f.pipeline_id {
            add("r.pipeline_id = ?", Arg::S(p.clone()));
        }
        if let Some(s) = f.status {
            add("r.status = ?", Arg::S(s.as_str().into()));
        }
        if let Some(t) = opt_time(f.start_date.as_deref(), "start_date")? {
            add("r.started >= ?", Arg::I(t));
        }
        if let Some(t) = opt_time(f.end_date.as_deref(), "end_date")? {
            add("r.started < ?", Arg::I(t));
        }
        let (limit, offset) = page(f.limit, f.offset)?;
        let wh = where_clause(&wh);
        let total: i64 = self
            .count(
                format!("SELECT COUNT(*) AS n FROM pipeline_run r{wh}"),
                args.clone(),
            )
            .await?;
        let n = args.len();
        args.push(Arg::I(limit));
        args.push(Arg::I(offset));
        let rows = self
            .fetch(
                format!(
                    "SELECT {RUN_COLUMNS} FROM pipeline_run r{wh} ORDER BY r.created_at DESC, r.id DESC \
                     LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                args,
            )
            .await?;
        let items = rows.iter().map(run_from_row).collect::<Result<_>>()?;
        Ok((items, total))
    }

    // ----- samples and logs -----

    async fn require_run(&self, id: i64) -> Result<()> {
        let rows = self
            .fetch(
                "SELECT id FROM pipeline_run WHERE id = $1".into(),
                vec![Arg::I(id)],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!("run {id} does not exist")));
        }
        Ok(())
    }

    /// Adds one sample to a run.
    pub async fn add_sample(&self, run_id: i64, s: &Sample) -> Result<()> {
        self.require_run(run_id).await?;
        let _w = self.writer().await;
        let mut conn = self.pool.acquire().await?;
        insert_samples(self.backend, &mut conn, run_id, std::slice::from_ref(s)).await
    }

    /// Samples of a run between two times (`rps` or `memory_usage` only, when `only` names
    /// one), oldest first.
    pub async fn samples(
        &self,
        run_id: i64,
        from: Option<i64>,
        to: Option<i64>,
        only: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        self.require_run(run_id).await?;
        let mut sql =
            format!("SELECT {SAMPLE_COLUMNS} FROM pipeline_run_sample WHERE pipeline_run_id = $1");
        let mut args = vec![Arg::I(run_id)];
        if let Some(f) = from {
            args.push(Arg::I(f));
            sql.push_str(&format!(" AND created_at >= ${}", args.len()));
        }
        if let Some(t) = to {
            args.push(Arg::I(t));
            sql.push_str(&format!(" AND created_at <= ${}", args.len()));
        }
        match only {
            Some("rps") => sql.push_str(" AND rps IS NOT NULL"),
            Some("memory_usage") => sql.push_str(" AND memory_usage IS NOT NULL"),
            _ => {}
        }
        args.push(Arg::I(limit));
        sql.push_str(&format!(" ORDER BY created_at, id LIMIT ${}", args.len()));
        let rows = self.fetch(sql, args).await?;
        rows.iter().map(sample_from_row).collect()
    }

    /// Adds log lines to a run.
    pub async fn add_logs(&self, run_id: i64, lines: &[LogLine]) -> Result<()> {
        self.require_run(run_id).await?;
        for l in lines {
            check_line(l)?;
        }
        let _w = self.writer().await;
        let mut tx = self.pool.begin().await?;
        insert_logs(self.backend, &mut tx, run_id, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Log lines of a run after the line `after` (oldest first), at most `limit`; `level`
    /// keeps lines at that level or more severe.
    pub async fn logs(
        &self,
        run_id: i64,
        after: Option<i64>,
        level: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        self.require_run(run_id).await?;
        let mut sql = "SELECT id, created_at, level, target, message FROM pipeline_run_log \
                       WHERE pipeline_run_id = $1 AND id > $2"
            .to_owned();
        let mut args = vec![Arg::I(run_id), Arg::I(after.unwrap_or(0))];
        if let Some(level) = level {
            let levels = levels_at_least(level).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "level must be ERROR, WARN, INFO, DEBUG or TRACE, not `{level}`"
                ))
            })?;
            let mut marks = Vec::new();
            for l in levels {
                args.push(Arg::S((*l).to_owned()));
                marks.push(format!("${}", args.len()));
            }
            sql.push_str(&format!(" AND level IN ({})", marks.join(", ")));
        }
        args.push(Arg::I(limit));
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", args.len()));
        let rows = self.fetch(sql, args).await?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    id: r.try_get("id")?,
                    created_at: iso(r.try_get("created_at")?),
                    level: r.try_get("level")?,
                    target: r.try_get("target")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    // ----- reports -----

    /// Applies a run's report in one transaction: registers or updates the pipeline, creates or
    /// updates the run (found by its key), and adds the samples and log lines not stored yet.
    pub async fn apply_report(&self, rep: &Report) -> Result<ReportAck> {
        check_id(&rep.run_key, "run_key")?;
        let p = &rep.pipeline;
        check_id(&p.pipeline_id, "pipeline.pipeline_id")?;
        check_name(&p.source_type, "pipeline.source_type")?;
        check_name(&p.target_type, "pipeline.target_type")?;
        let r = &rep.run;
        let started = parse(&r.started).ok_or_else(|| invalid_time("run.started", &r.started))?;
        let finished = opt_time(r.finished.as_deref(), "run.finished")?;
        for (n, name) in [
            (r.rows_loaded, "run.rows_loaded"),
            (r.rows_extracted, "run.rows_extracted"),
            (r.bytes_loaded, "run.bytes_loaded"),
        ] {
            non_negative(n, name)?;
        }
        if !(r.peak_memory_usage.is_finite() && r.peak_memory_usage >= 0.0) {
            return Err(StoreError::Invalid(
                "run.peak_memory_usage must be a number ≥ 0".into(),
            ));
        }
        if let Some(stream) = &r.cloudwatch_log_stream {
            check_len(stream, 512, "run.cloudwatch_log_stream")?;
        }
        if let Some(group) = &r.cloudwatch_log_group {
            check_len(group, 512, "run.cloudwatch_log_group")?;
        }
        for l in &rep.logs {
            check_line(l)?;
        }
        for s in &rep.samples {
            check_sample(s)?;
        }
        let mut config = Value::Object(p.config.clone());
        redact(&mut config);
        let now = now_ms();
        let mut attempt = 0u64;
        loop {
            match self
                .write_report(rep, &config, started, finished, now)
                .await
            {
                // Two reports that lock the same rows in opposite orders: the server undid one
                // of them, which is applied again.
                Err(StoreError::Db(e)) if attempt < 5 && lost_a_race(&e) => {
                    attempt += 1;
                    tracing::debug!("a report lost a race in the store ({e}); applying it again");
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// [`Store::apply_report`]'s writes, in one transaction.
    async fn write_report(
        &self,
        rep: &Report,
        config: &Value,
        started: i64,
        finished: Option<i64>,
        now: i64,
    ) -> Result<ReportAck> {
        let (p, r, backend) = (&rep.pipeline, &rep.run, self.backend);
        let _w = self.writer().await;
        let mut tx = self.pool.begin().await?;
        let pipeline = format!(
            "INSERT INTO pipeline (id, source_type, target_type, pipeline_type, config, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6){}",
            backend.upsert(
                "id",
                "source_type = excluded.source_type, target_type = excluded.target_type, \
                 pipeline_type = excluded.pipeline_type, config = excluded.config, \
                 updated_at = excluded.updated_at"
            )
        );
        backend
            .statement(
                &pipeline,
                vec![
                    Arg::S(p.pipeline_id.clone()),
                    Arg::S(p.source_type.clone()),
                    Arg::S(p.target_type.clone()),
                    Arg::S(p.pipeline_type.as_str().into()),
                    Arg::S(config.to_string()),
                    Arg::I(now),
                ],
            )
            .execute(&mut *tx)
            .await?;
        let peak = (r.peak_memory_usage * 1e6) as i64;
        let stages = r
            .stages
            .as_ref()
            .map(|m| Value::Object(m.clone()).to_string());
        let stream = r.cloudwatch_log_stream.clone().unwrap_or_default();
        // A run already recorded is updated in place: an `INSERT … ON CONFLICT` would draw a
        // new id from the sequence at every report, and the next run's number would jump.
        let update = vec![
            Arg::S(rep.run_key.clone()),
            Arg::S(r.status.as_str().into()),
            Arg::OptI(finished),
            Arg::S(stream.clone()),
            Arg::I(r.rows_loaded),
            Arg::I(r.rows_extracted),
            Arg::I(r.bytes_loaded),
            Arg::I(peak),
            Arg::OptS(r.end_offset.clone()),
            Arg::OptS(r.error.clone()),
            Arg::OptS(stages.clone()),
            Arg::I(now),
            Arg::OptS(r.cloudwatch_log_group.clone()),
        ];
        let update_sql = "UPDATE pipeline_run SET status = $2, finished = $3, \
             cloudwatch_log_stream = CASE WHEN $4 = '' THEN cloudwatch_log_stream ELSE $4 END, \
             rows_loaded = $5, rows_extracted = $6, bytes_loaded = $7, peak_memory_bytes = $8, \
             end_offset = $9, error = $10, stages = $11, last_report_at = $12, updated_at = $12, \
             cloudwatch_log_group = COALESCE($13, cloudwatch_log_group) \
             WHERE run_key = $1";
        let insert_sql = format!(
            "INSERT INTO pipeline_run (pipeline_id, run_key, status, cloudwatch_log_stream, started, \
             finished, rows_loaded, rows_extracted, bytes_loaded, peak_memory_bytes, start_offset, \
             end_offset, error, stages, last_report_at, created_at, updated_at, cloudwatch_log_group) \
             VALUES ($1, $2, $3, $15, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14, $16){}",
            backend.upsert(
                "run_key",
                "status = excluded.status, finished = excluded.finished, \
                 cloudwatch_log_stream = CASE WHEN excluded.cloudwatch_log_stream = '' \
                 THEN pipeline_run.cloudwatch_log_stream ELSE excluded.cloudwatch_log_stream END, \
                 rows_loaded = excluded.rows_loaded, rows_extracted = excluded.rows_extracted, \
                 bytes_loaded = excluded.bytes_loaded, peak_memory_bytes = excluded.peak_memory_bytes, \
                 end_offset = excluded.end_offset, error = excluded.error, stages = excluded.stages, \
                 last_report_at = excluded.last_report_at, updated_at = excluded.updated_at, \
                 cloudwatch_log_group = COALESCE(excluded.cloudwatch_log_group, \
                 pipeline_run.cloudwatch_log_group)"
            )
        );
        let insert = vec![
            Arg::S(p.pipeline_id.clone()),
            Arg::S(rep.run_key.clone()),
            Arg::S(r.status.as_str().into()),
            Arg::I(started),
            Arg::OptI(finished),
            Arg::I(r.rows_loaded),
            Arg::I(r.rows_extracted),
            Arg::I(r.bytes_loaded),
            Arg::I(peak),
            Arg::OptS(r.start_offset.clone()),
            Arg::OptS(r.end_offset.clone()),
            Arg::OptS(r.error.clone()),
            Arg::OptS(stages),
            Arg::I(now),
            Arg::S(stream),
            Arg::OptS(r.cloudwatch_log_group.clone()),
        ];
        let row = if backend == Backend::Mysql {
            // No `RETURNING` here (MySQL has none; MariaDB none on UPDATE): the run is read
            // back by its key inside the same transaction.
            let found = backend
                .statement(update_sql, update)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if found == 0 {
                backend
                    .statement(&insert_sql, insert)
                    .execute(&mut *tx)
                    .await?;
            }
            backend
                .statement(
                    "SELECT id, stop_requested FROM pipeline_run WHERE run_key = $1",
                    vec![Arg::S(rep.run_key.clone())],
                )
                .fetch_one(&mut *tx)
                .await?
        } else {
            let updated = backend
                .statement(
                    &format!("{update_sql} RETURNING id, stop_requested"),
                    update,
                )
                .fetch_optional(&mut *tx)
                .await?;
            match updated {
                Some(row) => row,
                None => {
                    backend
                        .statement(
                            &format!("{insert_sql} RETURNING id, stop_requested"),
                            insert,
                        )
                        .fetch_one(&mut *tx)
                        .await?
                }
            }
        };
        let run_id: i64 = row.try_get("id")?;
        let stop: i64 = row.try_get("stop_requested")?;
        insert_samples(backend, &mut tx, run_id, &rep.samples).await?;
        insert_logs(backend, &mut tx, run_id, &rep.logs).await?;
        tx.commit().await?;
        Ok(ReportAck {
            pipeline_run_id: run_id,
            stop_requested: stop != 0,
        })
    }

    // ----- metrics -----

    /// Counts of runs by status, and of pipelines.
    pub async fn counts(&self) -> Result<(i64, Vec<(RunStatus, i64)>)> {
        let pipelines = self
            .count("SELECT COUNT(*) AS n FROM pipeline".into(), vec![])
            .await?;
        let rows = self
            .fetch(
                "SELECT status, COUNT(*) AS n FROM pipeline_run GROUP BY status".into(),
                vec![],
            )
            .await?;
        let mut by = Vec::new();
        for r in rows {
            let s: String = r.try_get("status")?;
            if let Some(s) = RunStatus::parse(&s) {
                by.push((s, r.try_get::<i64, _>("n")?));
            }
        }
        Ok((pipelines, by))
    }

    /// Running runs with their latest sample.
    pub async fn running(&self) -> Result<Vec<(PipelineRun, Option<Sample>)>> {
        let (runs, _) = self
            .runs(&RunFilter {
                status: Some(RunStatus::Running),
                limit: Some(1000),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let rows = self
                .fetch(
                    format!(
                        "SELECT {SAMPLE_COLUMNS} FROM pipeline_run_sample \
                         WHERE pipeline_run_id = $1 AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
                    ),
                    vec![Arg::I(run.id)],
                )
                .await?;
            let sample = rows.first().map(sample_from_row).transpose()?;
            out.push((run, sample));
        }
        Ok(out)
    }
}

const PIPELINE_JOIN: &str = "LEFT JOIN pipeline_run r ON r.id = \
    (SELECT MAX(x.id) FROM pipeline_run x WHERE x.pipeline_id = p.id)";

static PIPELINE_SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT p.id AS p_id, p.source_type AS p_source_type, p.target_type AS p_target_type, \
         p.pipeline_type AS p_pipeline_type, p.config AS p_config, p.created_at AS p_created_at, \
         p.updated_at AS p_updated_at, {RUN_COLUMNS} FROM pipeline p {PIPELINE_JOIN}"
    )
});

impl Backend {
    /// A statement written with numbered `$n` parameters, with `args` bound, as this database
    /// takes it: on MySQL every `$n` (outside quotes) becomes `?` and `args[n - 1]` is bound
    /// at that place, as often as it occurs.
    fn statement<'q>(
        self,
        sql: &str,
        args: Vec<Arg>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        if self != Backend::Mysql {
            let mut q = query(AssertSqlSafe(sql.to_owned()));
            for a in args {
                q = bind(q, a);
            }
            return q;
        }
        let (sql, order) = positional(sql);
        // Kept prepared on MySQL, whose values carry their types at every execution: closing a
        // statement after each use sends a packet that gets no answer, and the next command
        // then waits on TCP's delayed acknowledgement (some 40 ms a statement).
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for i in order {
            q = bind(q, args[i].clone());
        }
        q
    }

    /// What follows an `INSERT` to update the row already there under the unique `keys`
    /// instead: `set` is written as PostgreSQL's (`col = excluded.col`, the old row by the
    /// table's name); an empty `set` keeps the row as it is.
    fn upsert(self, keys: &str, set: &str) -> String {
        match (self, set.is_empty()) {
            (Backend::Mysql, true) => {
                // Assigning a key column its own value changes nothing and, unlike `INSERT
                // IGNORE`, lets every other error through.
                let first = keys.split(',').next().unwrap_or(keys).trim();
                format!(" ON DUPLICATE KEY UPDATE {first} = {first}")
            }
            (Backend::Mysql, false) => {
                format!(" ON DUPLICATE KEY UPDATE {}", mysql_new_values(set))
            }
            (_, true) => format!(" ON CONFLICT ({keys}) DO NOTHING"),
            (_, false) => format!(" ON CONFLICT ({keys}) DO UPDATE SET {set}"),
        }
    }

    /// `insert` of a row that must be new, skipped when its unique `keys` are taken: the
    /// statement then reports 0 rows.
    fn insert_new(self, insert: &str, keys: &str) -> String {
        match self {
            // The affected-row count of `ON DUPLICATE KEY` counts a row found as changed.
            Backend::Mysql => insert.replacen("INSERT INTO", "INSERT IGNORE INTO", 1),
            _ => format!("{insert} ON CONFLICT ({keys}) DO NOTHING"),
        }
    }

    /// Runs the one-row `insert` and gives the `id` it drew.
    async fn insert_id(
        self,
        conn: &mut sqlx::AnyConnection,
        insert: &str,
        args: Vec<Arg>,
    ) -> Result<i64> {
        if self == Backend::Mysql {
            let done = self.statement(insert, args).execute(&mut *conn).await?;
            return done.last_insert_id().ok_or_else(|| {
                StoreError::Invalid("the database gave no id for the new row".into())
            });
        }
        Ok(self
            .statement(&format!("{insert} RETURNING id"), args)
            .fetch_one(&mut *conn)
            .await?
            .try_get::<i64, _>("id")?)
    }
}

/// `sql` with each `$n` outside quotes replaced by `?`, and the 0-based argument index of each
/// `?` in order.
fn positional(sql: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '\'' {
                    // MySQL's literals escape with a backslash.
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
            }
            None if c == '\'' || c == '"' || c == '`' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push('?');
                order.push(n.saturating_sub(1));
            }
            None => out.push(c),
        }
    }
    (out, order)
}

/// An `ON CONFLICT … DO UPDATE SET` list in MySQL's words: `excluded.col` is `VALUES(col)`.
fn mysql_new_values(set: &str) -> String {
    let mut out = String::with_capacity(set.len());
    let mut rest = set;
    while let Some(i) = rest.find("excluded.") {
        out.push_str(&rest[..i]);
        rest = &rest[i + "excluded.".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.push_str(&format!("VALUES({})", &rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the database undid a transaction for losing a race with another (a deadlock, a
/// serialization failure): it can be run again.
fn lost_a_race(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01"))
}

/// A query that is not kept prepared: the Any driver fixes a parameter's type when a statement
/// is first prepared, so a statement first run with a NULL would refuse a value there later
/// (PostgreSQL: "incorrect binary data format").
fn query<'q>(
    sql: impl sqlx::SqlSafeStr,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sql).persistent(false)
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    a: Arg,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match a {
        Arg::I(v) => q.bind(v),
        Arg::OptI(v) => q.bind(v),
        Arg::F(v) => q.bind(v),
        Arg::S(v) => q.bind(text(v)),
        Arg::OptS(v) => q.bind(v.map(text)),
    }
}

/// Rows per multi-row INSERT: a report's lines go to the database in a few statements, well
/// below the parameter limits of SQLite (32,766) and PostgreSQL (65,535).
const INSERT_CHUNK: usize = 500;

/// `INSERT INTO table (columns) VALUES ($1, …), ($k+1, …), …` for `rows` rows; repeated rows
/// (same run and `seq`) are skipped, so a resent report stores nothing twice.
fn multi_insert(backend: Backend, table: &str, columns: &str, rows: usize) -> String {
    let width = columns.split(',').count();
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(&backend.upsert("pipeline_run_id, seq", ""));
    sql
}

async fn insert_samples(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
    samples: &[Sample],
) -> Result<()> {
    for chunk in samples.chunks(INSERT_CHUNK) {
        let mut args = Vec::with_capacity(chunk.len() * 13);
        for s in chunk {
            let created = match &s.created_at {
                Some(t) => parse(t).ok_or_else(|| invalid_time("created_at", t))?,
                None => now_ms(),
            };
            let queues = s
                .queues
                .as_ref()
                .map(|q| serde_json::to_string(q).unwrap_or_default());
            args.extend([
                Arg::I(run_id),
                Arg::OptI(s.seq),
                Arg::I(created),
                Arg::F(s.elapsed_secs),
                Arg::F(s.rps),
                Arg::F(s.memory_usage),
                Arg::OptI(s.rows_loaded),
                Arg::OptI(s.bytes_loaded),
                Arg::OptI(s.source_rows),
                Arg::OptI(s.transform_rows),
                Arg::F(s.source_rps),
                Arg::F(s.transform_rps),
                Arg::OptS(queues),
            ]);
        }
        let sql = multi_insert(
            backend,
            "pipeline_run_sample",
            "pipeline_run_id, seq, created_at, elapsed_secs, rps, memory_usage, rows_loaded, \
             bytes_loaded, source_rows, transform_rows, source_rps, transform_rps, queues",
            chunk.len(),
        );
        backend.statement(&sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_logs(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
    lines: &[LogLine],
) -> Result<()> {
    for chunk in lines.chunks(INSERT_CHUNK) {
        let mut args = Vec::with_capacity(chunk.len() * 6);
        for l in chunk {
            let created = match &l.created_at {
                Some(t) => parse(t).ok_or_else(|| invalid_time("created_at", t))?,
                None => now_ms(),
            };
            args.extend([
                Arg::I(run_id),
                Arg::OptI(l.seq),
                Arg::I(created),
                Arg::S(l.level.to_ascii_uppercase()),
                Arg::S(l.target.clone()),
                Arg::S(l.message.clone()),
            ]);
        }
        let sql = multi_insert(
            backend,
            "pipeline_run_log",
            "pipeline_run_id, seq, created_at, level, target, message",
            chunk.len(),
        );
        backend.statement(&sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

const SAMPLE_COLUMNS: &str = "seq, created_at, elapsed_secs, rps, memory_usage, rows_loaded, \
    bytes_loaded, source_rows, transform_rows, source_rps, transform_rps, queues";

fn sample_from_row(r: &AnyRow) -> Result<Sample> {
    Ok(Sample {
        seq: r.try_get("seq")?,
        created_at: Some(iso(r.try_get("created_at")?)),
        elapsed_secs: r.try_get("elapsed_secs")?,
        rps: r.try_get("rps")?,
        memory_usage: r.try_get("memory_usage")?,
        rows_loaded: r.try_get("rows_loaded")?,
        bytes_loaded: r.try_get("bytes_loaded")?,
        source_rows: r.try_get("source_rows")?,
        transform_rows: r.try_get("transform_rows")?,
        source_rps: r.try_get("source_rps")?,
        transform_rps: r.try_get("transform_rps")?,
        queues: r
            .try_get::<Option<String>, _>("queues")?
            .and_then(|q| serde_json::from_str(&q).ok()),
    })
}

fn pipeline_from_row(r: &AnyRow) -> Result<Pipeline> {
    let config: String = r.try_get("p_config")?;
    let kind: String = r.try_get("p_pipeline_type")?;
    let last_run = match r.try_get::<Option<i64>, _>("id")? {
        Some(_) => Some(Box::new(run_from_row(r)?)),
        None => None,
    };
    Ok(Pipeline {
        id: r.try_get("p_id")?,
        source_type: r.try_get("p_source_type")?,
        target_type: r.try_get("p_target_type")?,
        pipeline_type: PipelineType::parse(&kind).unwrap_or(PipelineType::FullTable),
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        created_at: iso(r.try_get("p_created_at")?),
        updated_at: iso(r.try_get("p_updated_at")?),
        last_run,
    })
}

fn run_from_row(r: &AnyRow) -> Result<PipelineRun> {
    let status: String = r.try_get("status")?;
    let started: i64 = r.try_get("started")?;
    let finished: Option<i64> = r.try_get("finished")?;
    let last: Option<i64> = r.try_get("last_report_at")?;
    let end = finished.or(last);
    Ok(PipelineRun {
        id: r.try_get("id")?,
        pipeline_id: r.try_get("pipeline_id")?,
        run_key: r.try_get("run_key")?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Exited),
        cloudwatch_log_stream: r.try_get("cloudwatch_log_stream")?,
        cloudwatch_log_group: r.try_get("cloudwatch_log_group")?,
        started: iso(started),
        finished: finished.map(iso),
        duration_secs: end.map(|e| (e - started).max(0) as f64 / 1000.0),
        rows_loaded: r.try_get("rows_loaded")?,
        rows_extracted: r.try_get("rows_extracted")?,
        bytes_loaded: r.try_get("bytes_loaded")?,
        peak_memory_usage: r.try_get::<i64, _>("peak_memory_bytes")? as f64 / 1e6,
        start_offset: r.try_get("start_offset")?,
        end_offset: r.try_get("end_offset")?,
        error: r.try_get("error")?,
        stages: r
            .try_get::<Option<String>, _>("stages")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        stop_requested: r.try_get::<i64, _>("stop_requested")? != 0,
        last_report_at: last.map(iso),
        created_at: iso(r.try_get("created_at")?),
        updated_at: iso(r.try_get("updated_at")?),
    })
}

fn sqlite_url(path: &Path) -> Result<String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
            path: parent.to_owned(),
            source,
        })?;
    }
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    };
    let text = abs.display().to_string();
    let mut enc = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => enc.push_str("%25"),
            '?' => enc.push_str("%3F"),
            '#' => enc.push_str("%23"),
            ' ' => enc.push_str("%20"),
            c => enc.push(c),
        }
    }
    Ok(format!("sqlite://{enc}?mode=rwc"))
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64)> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(StoreError::Invalid(format!(
            "limit must be between 1 and 1000, not {limit}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(StoreError::Invalid(format!(
            "offset must be 0 or more, not {offset}"
        )));
    }
    Ok((limit, offset))
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn invalid_time(field: &str, text: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{field} must be an ISO 8601 time such as 2026-11-24T01:46:26Z, not `{}`",
        text.chars().take(64).collect::<String>()
    ))
}

fn opt_time(text: Option<&str>, field: &str) -> Result<Option<i64>> {
    text.map(|t| parse(t).ok_or_else(|| invalid_time(field, t)))
        .transpose()
}

fn non_negative(n: i64, field: &str) -> Result<i64> {
    if n < 0 {
        return Err(StoreError::Invalid(format!(
            "{field} must be 0 or more, not {n}"
        )));
    }
    Ok(n)
}

fn check_len(s: &str, max: usize, field: &str) -> Result<()> {
    if s.chars().count() > max {
        return Err(StoreError::Invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

fn check_id(s: &str, field: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{field} must not be empty")));
    }
    if s.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    check_len(s, 200, field)
}

fn check_name(s: &str, field: &str) -> Result<()> {
    check_id(s, field)?;
    check_len(s, 100, field)
}

fn check_line(l: &LogLine) -> Result<()> {
    if levels_at_least(&l.level).is_none() {
        return Err(StoreError::Invalid(format!(
            "level must be ERROR, WARN, INFO, DEBUG or TRACE, not `{}`",
            l.level.chars().take(32).collect::<String>()
        )));
    }
    check_len(&l.target, 200, "target")?;
    check_len(&l.message, 64 * 1024, "message")?;
    if let Some(t) = &l.created_at {
        parse(t).ok_or_else(|| invalid_time("created_at", t))?;
    }
    Ok(())
}

fn check_sample(s: &Sample) -> Result<()> {
    for (v, name) in [
        (s.elapsed_secs, "elapsed_secs"),
        (s.rps, "rps"),
        (s.memory_usage, "memory_usage"),
        (s.source_rps, "source_rps"),
        (s.transform_rps, "transform_rps"),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(StoreError::Invalid(format!("{name} must be a number ≥ 0")));
        }
    }
    for (v, name) in [
        (s.rows_loaded, "rows_loaded"),
        (s.bytes_loaded, "bytes_loaded"),
        (s.source_rows, "source_rows"),
        (s.transform_rows, "transform_rows"),
    ] {
        if let Some(v) = v {
            non_negative(v, name)?;
        }
    }
    if let Some(q) = &s.queues {
        if q.len() > 16 {
            return Err(StoreError::Invalid("at most 16 queues per sample".into()));
        }
        for x in q {
            check_len(&x.name, 100, "queues.name")?;
            if x.batches > i64::MAX as u64 || x.bytes > i64::MAX as u64 {
                return Err(StoreError::Invalid("queue depth out of range".into()));
            }
        }
    }
    if let Some(t) = &s.created_at {
        parse(t).ok_or_else(|| invalid_time("created_at", t))?;
    }
    Ok(())
}

/// Checks a sample the way the store will (for the API, before it answers).
pub fn validate_sample(s: &Sample) -> Result<()> {
    check_sample(s)
}

/// The levels at `level` or more severe (`None` for an unknown level).
pub fn levels_at_least(level: &str) -> Option<&'static [&'static str]> {
    const ALL: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
    let i = match level.to_ascii_uppercase().as_str() {
        "ERROR" => 0,
        "WARN" | "WARNING" => 1,
        "INFO" => 2,
        "DEBUG" => 3,
        "TRACE" => 4,
        _ => return None,
    };
    Some(&ALL[..=i])
}

/// Free text as stored: PostgreSQL's text cannot hold NUL, so a NUL in a message, an error or
/// an offset becomes U+FFFD (on SQLite too, so both stores keep the same text).
fn text(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

fn offset_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Names of configuration keys whose values are secrets.
const SECRET_KEYS: [&str; 12] = [
    "password",
    "passwd",
    "pwd",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "private_key",
    "credentials",
    "service_account_json",
    "webhook_url",
];

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s)) || k == "secret_access_key" || k == "authorization"
}

/// The text that replaces a secret.
pub const REDACTED: &str = "***";

/// Replaces secrets in a configuration: the values of keys that name one (`password`,
/// `token`, `secret_key`, …) and passwords inside URLs (`mysql://user:pw@host`).
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => redact_map(m),
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(r) = redact_url(s) {
                *s = r;
            }
        }
        _ => {}
    }
}

fn redact_map(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        if is_secret_key(k) && !v.is_null() {
            // `${VAR}` references name a secret without holding it.
            let reference = v
                .as_str()
                .is_some_and(|s| s.starts_with("${") && s.ends_with('}'));
            if !reference {
                *v = Value::String(REDACTED.into());
            }
        } else {
            redact(v);
        }
    }
}

fn redact_url(s: &str) -> Option<String> {
    let scheme_end = s.find("://")?;
    let rest = &s[scheme_end + 3..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..auth_end].rfind('@')?;
    let userinfo = &rest[..at];
    let colon = userinfo.find(':')?;
    Some(format!(
        "{}{}:{REDACTED}{}",
        &s[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_keys_and_url_passwords_but_not_references() {
        let mut v = json!({
            "source": {"mysql": {"host": "db", "password": "hunter2", "user": "etl",
                                  "secret": "prod/etl", "url": "mysql://etl:hunter2@db:3306/x"}},
            "target": {"s3": {"aws_secret_access_key": "abc", "token": "${TOKEN}",
                               "nested": [{"api_key": 12}]}},
            "logs": {"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}
        });
        redact(&mut v);
        assert_eq!(v["source"]["mysql"]["password"], "***");
        assert_eq!(v["source"]["mysql"]["host"], "db");
        assert_eq!(
            v["source"]["mysql"]["secret"], "prod/etl",
            "a secret's name is kept"
        );
        assert_eq!(v["source"]["mysql"]["url"], "mysql://etl:***@db:3306/x");
        assert_eq!(v["target"]["s3"]["aws_secret_access_key"], "***");
        assert_eq!(v["target"]["s3"]["token"], "${TOKEN}");
        assert_eq!(v["target"]["s3"]["nested"][0]["api_key"], "***");
        assert_eq!(v["logs"]["slack"]["webhook_url"], "***");
        assert!(!v.to_string().contains("hunter2"));
    }

    #[test]
    fn mysql_statements_bind_each_numbered_parameter_where_it_occurs() {
        let (sql, order) =
            positional("UPDATE t SET a = $2, b = '$1', c = $10, d = $2 WHERE k = $1 AND e = '\\''");
        assert_eq!(
            sql,
            "UPDATE t SET a = ?, b = '$1', c = ?, d = ? WHERE k = ? AND e = '\\''"
        );
        assert_eq!(order, [1, 9, 1, 0]);
        assert_eq!(
            mysql_new_values("a = excluded.a, b = COALESCE(excluded.b_2, t.b)"),
            "a = VALUES(a), b = COALESCE(VALUES(b_2), t.b)"
        );
        assert_eq!(
            Backend::Mysql.upsert("run_id, seq", ""),
            " ON DUPLICATE KEY UPDATE run_id = run_id"
        );
        assert_eq!(
            Backend::Postgres.upsert("id", "x = excluded.x"),
            " ON CONFLICT (id) DO UPDATE SET x = excluded.x"
        );
        assert_eq!(
            Backend::Mysql.insert_new("INSERT INTO p (id) VALUES ($1)", "id"),
            "INSERT IGNORE INTO p (id) VALUES ($1)"
        );
    }

    #[test]
    fn display_url_hides_the_password() {
        assert_eq!(
            display_url("postgres://fl:pw@127.0.0.1:5432/db"),
            "postgres://fl:***@127.0.0.1:5432/db"
        );
        assert_eq!(display_url("/tmp/monitor.db"), "/tmp/monitor.db");
    }
}
