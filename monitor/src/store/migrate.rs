//! `fastlane store migrate`: copies a store into another (SQLite, PostgreSQL, MySQL/MariaDB,
//! either way) keeping every id, or reads a database laid out as the original fastlane's (`pipeline`, `pipeline_run`,
//! `pipeline_rps`, `pipeline_memory_usage`) into a store.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row, query};

use super::{Arg, Backend, Result, Store, StoreError, redact};
use crate::time::parse;

/// How a column is read and written.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Text,
}

use Kind::{Float, Int, Text};

/// The store's tables in the order they are copied (each refers only to those before it), with
/// their columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "pipeline",
        &[
            ("id", Text),
            ("source_type", Text),
            ("target_type", Text),
            ("pipeline_type", Text),
            ("config", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    ),
    (
        "pipeline_run",
        &[
            ("id", Int),
            ("pipeline_id", Text),
            ("run_key", Text),
            ("status", Text),
            ("cloudwatch_log_stream", Text),
            ("cloudwatch_log_group", Text),
            ("started", Int),
            ("finished", Int),
            ("rows_loaded", Int),
            ("rows_extracted", Int),
            ("bytes_loaded", Int),
            ("peak_memory_bytes", Int),
            ("start_offset", Text),
            ("end_offset", Text),
            ("error", Text),
            ("stages", Text),
            ("stop_requested", Int),
            ("last_report_at", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    ),
    (
        "pipeline_run_sample",
        &[
            ("id", Int),
            ("pipeline_run_id", Int),
            ("seq", Int),
            ("created_at", Int),
            ("elapsed_secs", Float),
            ("rps", Float),
            ("memory_usage", Float),
            ("rows_loaded", Int),
            ("bytes_loaded", Int),
            ("source_rows", Int),
            ("transform_rows", Int),
            ("source_rps", Float),
            ("transform_rps", Float),
            ("queues", Text),
        ],
    ),
    (
        "pipeline_run_log",
        &[
            ("id", Int),
            ("pipeline_run_id", Int),
            ("seq", Int),
            ("created_at", Int),
            ("level", Text),
            ("target", Text),
            ("message", Text),
        ],
    ),
];

/// Rows copied per statement batch.
const PAGE: i64 = 1000;

/// What a migration copied, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)`, in the order copied.
    pub tables: Vec<(String, u64)>,
}

/// Whether the database of `pool` is laid out as the original fastlane's store.
pub async fn is_original(pool: &AnyPool) -> bool {
    query("SELECT COUNT(*) AS n FROM pipeline_rps")
        .fetch_one(pool)
        .await
        .is_ok()
}

/// A floating-point column, single precision too (the original's `FLOAT` on MySQL).
fn float(row: &AnyRow, column: &str) -> Result<Option<f64>> {
    match row.try_get::<Option<f64>, _>(column) {
        Ok(v) => Ok(v),
        Err(e) => match row.try_get::<Option<f32>, _>(column) {
            Ok(v) => Ok(v.map(f64::from)),
            Err(_) => Err(e.into()),
        },
    }
}

fn value(row: &AnyRow, column: &str, kind: Kind) -> Result<Arg> {
    Ok(match kind {
        Int => Arg::OptI(row.try_get::<Option<i64>, _>(column)?),
        Float => Arg::F(float(row, column)?),
        Text => Arg::OptS(row.try_get::<Option<String>, _>(column)?),
    })
}

impl Store {
    async fn require_empty(&self) -> Result<()> {
        let pipelines = self
            .count("SELECT COUNT(*) AS n FROM pipeline".into(), vec![])
            .await?;
        let runs = self
            .count("SELECT COUNT(*) AS n FROM pipeline_run".into(), vec![])
            .await?;
        if pipelines + runs > 0 {
            return Err(StoreError::Conflict(format!(
                "the store to copy into is not empty ({pipelines} pipelines, {runs} runs)"
            )));
        }
        Ok(())
    }

    /// After rows were inserted with their ids: PostgreSQL's sequences continue after them.
    async fn advance_sequences(&self) -> Result<()> {
        if self.backend != Backend::Postgres {
            // SQLite's AUTOINCREMENT and MySQL's AUTO_INCREMENT follow the largest id inserted.
            return Ok(());
        }
        for table in ["pipeline_run", "pipeline_run_sample", "pipeline_run_log"] {
            self.fetch(
                format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false) AS n"
                ),
                vec![],
            )
            .await?;
        }
        Ok(())
    }

    /// Copies every pipeline, run, sample and log line of this store into `to`, which must be
    /// empty, keeping their ids.
    pub async fn copy_into(&self, to: &Store) -> Result<Copied> {
        to.require_empty().await?;
        let mut copied = Copied::default();
        for (table, columns) in TABLES {
            let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
            let list = names.join(", ");
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", marks.join(", "));
            let mut offset = 0i64;
            let mut count = 0u64;
            loop {
                let rows = self
                    .fetch(
                        format!("SELECT {list} FROM {table} ORDER BY id LIMIT $1 OFFSET $2"),
                        vec![Arg::I(PAGE), Arg::I(offset)],
                    )
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let _w = to.writer().await;
                let mut tx = to.pool.begin().await?;
                for row in &rows {
                    let args = columns
                        .iter()
                        .map(|(name, kind)| value(row, name, *kind))
                        .collect::<Result<Vec<_>>>()?;
                    to.backend
                        .statement(&insert, args)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                count += rows.len() as u64;
                offset += PAGE;
            }
            copied.tables.push(((*table).to_owned(), count));
        }
        to.advance_sequences().await?;
        Ok(copied)
    }

    /// Reads the original fastlane's store in `pool` into this one, which must be empty:
    /// pipelines (configurations redacted), runs (ids kept), and `pipeline_rps` and
    /// `pipeline_memory_usage` as samples. `from` says which database `pool` is.
    pub async fn import_original(&self, pool: &AnyPool, from: Backend) -> Result<Copied> {
        self.require_empty().await?;
        let time = |row: &AnyRow, column: &str| -> Result<Option<i64>> {
            let text: Option<String> = row.try_get(column)?;
            match text {
                None => Ok(None),
                Some(t) => parse(&t).map(Some).ok_or_else(|| {
                    StoreError::Invalid(format!("`{column}` holds `{t}`, which is not a time"))
                }),
            }
        };
        let mut copied = Copied::default();
        let _w = self.writer().await;
        let mut tx = self.pool.begin().await?;

        // Times, enums and JSON are read as text: each database spells that cast its own way.
        let t = if from == Backend::Mysql {
            "CHAR"
        } else {
            "TEXT"
        };
        let pipelines = query(AssertSqlSafe(format!(
            "SELECT CAST(id AS {t}) AS id, CAST(source_type AS {t}) AS source_type, \
             CAST(target_type AS {t}) AS target_type, CAST(pipeline_type AS {t}) AS pipeline_type, \
             CAST(config AS {t}) AS config, CAST(created_at AS {t}) AS created_at, \
             CAST(updated_at AS {t}) AS updated_at FROM pipeline ORDER BY id"
        )))
        .fetch_all(pool)
        .await?;
        for row in &pipelines {
            let kind: String = row.try_get("pipeline_type")?;
            let kind = match kind.to_ascii_lowercase().as_str() {
                "incremental" => "INCREMENTAL",
                "full_table" => "FULL_TABLE",
                other => {
                    return Err(StoreError::Invalid(format!(
                        "a pipeline has the type `{other}`"
                    )));
                }
            };
            let config: Option<String> = row.try_get("config")?;
            let mut config: Value = config
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_else(|| Value::Object(Default::default()));
            redact(&mut config);
            let created = time(row, "created_at")?.unwrap_or_default();
            let updated = time(row, "updated_at")?.unwrap_or(created);
            let args = vec![
                Arg::S(row.try_get("id")?),
                Arg::S(row.try_get("source_type")?),
                Arg::S(row.try_get("target_type")?),
                Arg::S(kind.to_owned()),
                Arg::S(config.to_string()),
                Arg::I(created),
                Arg::I(updated),
            ];
            self.backend
                .statement(
                    "INSERT INTO pipeline (id, source_type, target_type, pipeline_type, config, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    args,
                )
                .execute(&mut *tx)
                .await?;
        }
        copied
            .tables
            .push(("pipeline".into(), pipelines.len() as u64));

        let runs = query(AssertSqlSafe(format!(
            "SELECT id, CAST(pipeline_id AS {t}) AS pipeline_id, CAST(status AS {t}) AS status, \
             CAST(cloudwatch_log_stream AS {t}) AS cloudwatch_log_stream, \
             CAST(started AS {t}) AS started, CAST(finished AS {t}) AS finished, rows_loaded, \
             CAST(start_offset AS {t}) AS start_offset, CAST(end_offset AS {t}) AS end_offset, \
             CAST(created_at AS {t}) AS created_at, CAST(updated_at AS {t}) AS updated_at \
             FROM pipeline_run ORDER BY id"
        )))
        .fetch_all(pool)
        .await?;
        for row in &runs {
            let created = time(row, "created_at")?.unwrap_or_default();
            let started = time(row, "started")?.unwrap_or(created);
            let status: String = row.try_get("status")?;
            let args = vec![
                Arg::I(row.try_get("id")?),
                Arg::S(row.try_get("pipeline_id")?),
                Arg::S(status.to_ascii_lowercase()),
                Arg::S(
                    row.try_get::<Option<String>, _>("cloudwatch_log_stream")?
                        .unwrap_or_default(),
                ),
                Arg::I(started),
                Arg::OptI(time(row, "finished")?),
                Arg::I(row.try_get::<Option<i64>, _>("rows_loaded")?.unwrap_or(0)),
                Arg::OptS(row.try_get("start_offset")?),
                Arg::OptS(row.try_get("end_offset")?),
                Arg::I(created),
                Arg::I(time(row, "updated_at")?.unwrap_or(created)),
            ];
            self.backend
                .statement(
                    "INSERT INTO pipeline_run (id, pipeline_id, status, cloudwatch_log_stream, \
                     started, finished, rows_loaded, start_offset, end_offset, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    args,
                )
                .execute(&mut *tx)
                .await?;
        }
        copied
            .tables
            .push(("pipeline_run".into(), runs.len() as u64));

        for (table, column) in [
            ("pipeline_rps", "rps"),
            ("pipeline_memory_usage", "memory_usage"),
        ] {
            let rows = query(AssertSqlSafe(format!(
                "SELECT pipeline_run_id, {column} AS v, CAST(created_at AS {t}) AS created_at \
                 FROM {table} WHERE pipeline_run_id IS NOT NULL ORDER BY id"
            )))
            .fetch_all(pool)
            .await?;
            let insert = format!(
                "INSERT INTO pipeline_run_sample (pipeline_run_id, created_at, {column}) \
                 VALUES ($1, $2, $3)"
            );
            for row in &rows {
                let args = vec![
                    Arg::I(row.try_get("pipeline_run_id")?),
                    Arg::I(time(row, "created_at")?.unwrap_or_default()),
                    Arg::F(float(row, "v")?),
                ];
                self.backend
                    .statement(&insert, args)
                    .execute(&mut *tx)
                    .await?;
            }
            copied.tables.push((table.to_owned(), rows.len() as u64));
        }
        tx.commit().await?;
        self.advance_sequences().await?;
        Ok(copied)
    }
}
