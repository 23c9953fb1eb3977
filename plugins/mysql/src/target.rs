//! The `mysql` target: staged loads published at commit.
//!
//! Every run loads into a staging table (`_fastlane_stage_…`, a copy of the target's
//! definition, or created from the data's schema when the target does not exist yet):
//!
//! - **FULL_TABLE** swaps the staging table in with one atomic `RENAME TABLE`, so readers see
//!   the old table or the new one, never a half-loaded one;
//! - **INCREMENTAL** upserts the staging rows into the target in one transaction
//!   (`INSERT … SELECT … ON DUPLICATE KEY UPDATE`), so a rerun after a crash duplicates nothing.
//!
//! Data with columns the table lacks fails the run, adds them, or replaces the table, as
//! `on_schema_change` says ([`schema_step`]). A checkpointed run sends each batch in one
//! transaction with its tag ([`crate::checkpoints`]) and keeps its staging when it fails, for
//! the next run to resume.
//!
//! A failed run drops its staging table and leaves the target untouched. A run holds a named
//! lock on the target (`GET_LOCK`) so that two runs never load the same table at once; staging
//! tables left by a killed process are dropped by the next run.
//!
//! Writers send each batch with `LOAD DATA LOCAL INFILE` (or multi-row `INSERT`), one statement
//! per batch, so a statement cut off by a lost connection is rolled back by the server and sent
//! again on a new connection. Warnings (a value truncated or changed) fail the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use bytes::Bytes;
use fastlane_plugin_api::{
    Checksum, PluginError, ReplicationMode, Result as PluginResult, StagedRun, WriteContext, Writer,
};
use fastlane_plugin_support::runtime::{AsyncTarget, AsyncWriter};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};
use serde_json::{Value as Json, json};

use crate::checkpoints::{self, Checkpoints, table_exists, tag_id};
use crate::checksum::{checksum_sql, run_checksum};
use crate::config::{LoadMethod, MysqlTargetConfig, OnSchemaChange};
use crate::conn::{Connector, RUNTIME, Session, ident, qualified};
use crate::ddl::{column_definition, create_table};
use crate::encode::{Encoder, Slot};
use crate::error::{Context, Error, Result, is_lost_error};

/// The `mysql` target.
pub struct MysqlTarget {
    config: MysqlTargetConfig,
    connector: Connector,
    run: Option<Run>,
}

/// A column of the staging table.
#[derive(Debug, Clone)]
struct StagedColumn {
    name: String,
    slot: Slot,
}

/// The staging table, once it exists.
#[derive(Debug, Clone)]
struct Staging {
    columns: Vec<StagedColumn>,
    /// The columns of its primary and unique indexes.
    unique: Vec<Vec<String>>,
    /// The columns the data brings (an upsert updates only these).
    written: Vec<String>,
    /// Their Arrow types, for checksums (none for a staging an older build created).
    written_types: Option<Vec<(String, DataType)>>,
}

/// What the writers of one run share.
struct Shared {
    config: MysqlTargetConfig,
    connector: Connector,
    staging_name: String,
    /// Created by the first batch (or at commit when none came).
    staging: tokio::sync::Mutex<Option<Staging>>,
    mode: ReplicationMode,
    /// The target's columns when it exists.
    target_columns: Option<Vec<String>>,
    /// Set when the server refuses LOAD DATA LOCAL: writers fall back to INSERT.
    insert_only: AtomicBool,
    /// With MariaDB's bulk execution: the most bytes of parameters per request.
    bulk_payload: Option<usize>,
    /// In a checkpointed run: where batches' tags are stored, with the batches.
    checkpoints: Option<Checkpoints>,
    /// Whether the run continues a staging table that may exist already.
    resume: bool,
}

/// One run's state.
struct Run {
    control: Session,
    mode: ReplicationMode,
    target_exists: bool,
    shared: Arc<Shared>,
    /// In a resumed run: the tags its staging holds.
    resumed_tags: Option<Vec<String>>,
}

/// A stable 32-bit FNV-1a hash in hex: staging names must stay the same across builds, so
/// that a later run recognises the tables an earlier one left.
fn short_hash(parts: &[&str]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in part.as_bytes().iter().chain(std::iter::once(&0u8)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    format!("{h:08x}")
}

/// `information_schema` columns of a table: names and data types, in order.
async fn describe(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<(String, String)>> {
    conn.exec(
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (db, table),
    )
    .await
    .what(|| format!("reading the columns of `{db}`.`{table}`"))
}

async fn has_unique_key(conn: &mut Conn, db: &str, table: &str) -> Result<bool> {
    let n: Option<u32> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0",
            (db, table),
        )
        .await
        .what(|| format!("reading the keys of `{db}`.`{table}`"))?;
    Ok(n.unwrap_or(0) > 0)
}

/// Checks that this run still holds the target's lock before publishing. A control connection
/// lost during the load (an idle timeout, a server restart) took the lock with it: take it
/// again, or fail when another run holds it now.
async fn keep_lock(control: &mut Session, lock: &str, table: &str) -> Result<()> {
    let name = || vec![Value::from(lock)];
    let held: Option<Option<i64>> = control
        .first(
            "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
            name(),
            "checking the target's lock",
        )
        .await?;
    if held.flatten() == Some(1) {
        return Ok(());
    }
    let taken: Option<Option<i64>> = control
        .first(
            "SELECT GET_LOCK(?, 0)",
            name(),
            "taking the target's lock again",
        )
        .await?;
    if taken.flatten() == Some(1) {
        log::warn!("the connection holding the lock on {table} was lost; took the lock again");
        Ok(())
    } else {
        Err(Error::Config(format!(
            "this run lost its lock on {table} with its connection, and another run holds it \
             now; nothing was published"
        )))
    }
}

/// The columns of each primary or unique index of a table.
async fn unique_indexes(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<Vec<String>>> {
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .what(|| format!("reading the keys of `{db}`.`{table}`"))?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (index, column) in rows {
        match out.last_mut() {
            Some((name, columns)) if *name == index => columns.push(column),
            _ => out.push((index, vec![column])),
        }
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// The largest value of `key` as JSON: numbers stay numbers, anything else is text.
fn offset_json(v: Value) -> Option<Json> {
    match v {
        Value::NULL => None,
        Value::Int(i) => Some(json!(i)),
        Value::UInt(u) => Some(json!(u)),
        Value::Float(f) => Some(json!(f)),
        Value::Double(d) => Some(json!(d)),
        Value::Bytes(b) => Some(Json::String(String::from_utf8(b).ok()?)),
        Value::Date(y, m, d, h, mi, s, us) => Some(Json::String(format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        ))),
        Value::Time(neg, d, h, m, s, us) => Some(Json::String(format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            u32::from(h) + d * 24
        ))),
    }
}

impl MysqlTarget {
    /// Checks the configuration (no I/O).
    pub fn new(config: MysqlTargetConfig) -> PluginResult<Self> {
        config
            .validate()
            .map_err(|problems| PluginError::config(problems.join("; ")))?;
        Ok(Self {
            connector: Connector::new(config.connection()),
            config,
            run: None,
        })
    }

    fn table(&self) -> String {
        qualified(&self.config.db, &self.config.table)
    }

    fn lock_name(&self) -> String {
        let name = format!("fastlane:{}.{}", self.config.db, self.config.table);
        // Lock names are limited to 64 characters.
        if name.chars().count() <= 64 {
            name
        } else {
            format!(
                "fastlane:{}",
                short_hash(&[&self.config.db, &self.config.table])
            )
        }
    }

    /// The checkpoint table of this target.
    fn checkpoint_table(&self) -> String {
        checkpoints::table_name(&short_hash(&[&self.config.db, &self.config.table]))
    }

    /// Staging tables of this target start with this prefix.
    fn staging_prefix(&self) -> String {
        format!(
            "_fastlane_stage_{}_",
            short_hash(&[&self.config.db, &self.config.table])
        )
    }

    /// Checks the target, takes its lock and creates the run's state (the staging table is
    /// created by the first writer).
    async fn prepare(&mut self, context: &WriteContext) -> Result<()> {
        let mut control = Session::open(self.connector.clone()).await?;
        let db = self.config.db.clone();
        let table = self.config.table.clone();
        if context.mode == ReplicationMode::Incremental && self.config.key.is_none() {
            return Err(Error::Config(
                "INCREMENTAL mode needs the target's `key`, the column rows are upserted on".into(),
            ));
        }
        let conn = control.conn().await?;
        let locked: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, 0)", (self.lock_name(),))
            .await
            .what(|| "taking the target's lock".to_owned())?;
        if locked.flatten() != Some(1) {
            return Err(Error::Config(format!(
                "another run is loading {} right now (its lock `{}` is held)",
                self.table(),
                self.lock_name()
            )));
        }
        // Staging tables of runs that were killed: nobody else can be using them, we hold
        // the lock.
        let prefix = self.staging_prefix();
        let stale: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND LEFT(TABLE_NAME, ?) = ?",
                (db.clone(), prefix.len(), prefix.clone()),
            )
            .await
            .what(|| "listing staging tables".to_owned())?;
        let staging_name = format!("{prefix}{}", short_hash(&[&context.run_id]));
        let resume = context.checkpoint.as_ref().is_some_and(|c| c.resume);
        for name in stale {
            if resume && name == staging_name {
                continue;
            }
            log::info!("dropping `{db}`.`{name}`, left by an earlier run that did not finish");
            conn.query_drop(format!("DROP TABLE IF EXISTS {}", qualified(&db, &name)))
                .await
                .what(|| format!("dropping `{name}`"))?;
        }
        let bulk_payload = match self.config.load_method {
            LoadMethod::Auto | LoadMethod::Bulk => {
                let (version, max_packet): (String, u64) = conn
                    .query_first("SELECT @@version, @@max_allowed_packet")
                    .await
                    .what(|| "reading the server's version".to_owned())?
                    .unwrap_or_default();
                match (bulk_supported(&version), self.config.load_method) {
                    (true, _) => Some(bulk_payload(max_packet)),
                    (false, LoadMethod::Bulk) => {
                        return Err(Error::Config(format!(
                            "`load_method: bulk` needs MariaDB 10.2.7 or later, and the server \
                             is `{version}`; use `load_data` or `insert`"
                        )));
                    }
                    (false, _) => None,
                }
            }
            LoadMethod::LoadData | LoadMethod::Insert => None,
        };
        let columns = describe(conn, &db, &table).await?;
        let target_exists = !columns.is_empty();
        if let (true, Some(key)) = (target_exists, &self.config.key)
            && !columns.iter().any(|c| &c.0 == key)
        {
            return Err(Error::NotFound(format!(
                "{} has no column `{key}` (the target's `key`)",
                self.table()
            )));
        }
        if target_exists
            && context.mode == ReplicationMode::Incremental
            && !has_unique_key(conn, &db, &table).await?
        {
            return Err(Error::Config(format!(
                "INCREMENTAL mode upserts on a primary or unique key, and {} has none; add one \
                 on `{}`",
                self.table(),
                self.config.key.as_deref().unwrap_or_default()
            )));
        }
        let checkpoints = match &context.checkpoint {
            None => {
                // A run without checkpoints never resumes: unfinished runs are garbage now
                // (their staging tables were dropped above).
                let ck = Checkpoints {
                    db: db.clone(),
                    name: self.checkpoint_table(),
                    run_id: context.run_id.clone(),
                };
                ck.forget(conn).await?;
                None
            }
            Some(c) => {
                if target_exists
                    && let Some(engine) = checkpoints::engine_of(conn, &db, &table).await?
                    && !engine.eq_ignore_ascii_case("InnoDB")
                {
                    return Err(Error::Config(format!(
                        "{} uses the {engine} engine, which has no transactions, so its loads \
                         cannot be checkpointed; set `\"resume\": \"never\"` in the \
                         pipeline to load it without checkpoints",
                        self.table()
                    )));
                }
                let ck = Checkpoints {
                    db: db.clone(),
                    name: self.checkpoint_table(),
                    run_id: context.run_id.clone(),
                };
                if !c.resume {
                    ck.start(conn, &c.plan).await?;
                }
                Some(ck)
            }
        };
        let (staged, resumed_tags) = match (&checkpoints, resume) {
            (Some(ck), true) => {
                let (staged, tags) = reopen(conn, ck, &db, &staging_name).await?;
                (staged, Some(tags))
            }
            _ => (None, None),
        };
        self.run = Some(Run {
            control,
            mode: context.mode,
            target_exists,
            resumed_tags,
            shared: Arc::new(Shared {
                config: self.config.clone(),
                connector: self.connector.clone(),
                staging_name,
                staging: tokio::sync::Mutex::new(staged),
                mode: context.mode,
                target_columns: target_exists
                    .then(|| columns.iter().map(|c| c.0.clone()).collect()),
                insert_only: AtomicBool::new(self.config.load_method == LoadMethod::Insert),
                bulk_payload,
                checkpoints,
                resume,
            }),
        });
        Ok(())
    }

    /// Publishes the staging table (see [`Publish`]).
    async fn publish(&mut self) -> Result<()> {
        let table = self.table();
        let old = qualified(&self.config.db, &format!("{}old", self.staging_prefix()));
        let lock = self.lock_name();
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let db = run.shared.config.db.clone();
        let staging = qualified(&db, &run.shared.staging_name);
        let staged = run.shared.staging.lock().await.clone();
        keep_lock(&mut run.control, &lock, &table).await?;
        if staged.is_some() {
            let present: Option<u32> = run
                .control
                .first(
                    "SELECT COUNT(*) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    vec![Value::from(&db), Value::from(&run.shared.staging_name)],
                    "checking the staging table",
                )
                .await?;
            if present != Some(1) {
                return Err(Error::Data(format!(
                    "the staging table {staging} disappeared during the run, so nothing was \
                     published to {table}"
                )));
            }
        }
        let written = staged.map(|s| s.written);
        match Publish::choose(run.mode, run.target_exists, written.is_some()) {
            Publish::Nothing => {}
            Publish::Rename => {
                run.control
                    .execute(
                        format!("RENAME TABLE {staging} TO {table}"),
                        "publishing the new table",
                    )
                    .await?;
            }
            Publish::Swap { empty } => {
                if empty {
                    run.control
                        .execute(
                            format!("CREATE TABLE {staging} LIKE {table}"),
                            "creating the staging table",
                        )
                        .await?;
                }
                swap(&mut run.control, &table, &old, &staging).await?;
            }
            Publish::Upsert => {
                let written = written.unwrap_or_default();
                add_missing_columns(
                    &mut run.control,
                    &db,
                    &self.config.table,
                    &run.shared.staging_name,
                    &written,
                )
                .await?;
                let checkpoints = run.shared.checkpoints.clone();
                upsert(
                    &mut run.control,
                    &table,
                    &staging,
                    &written,
                    checkpoints.as_ref(),
                )
                .await?;
            }
        }
        if let Some(ck) = &run.shared.checkpoints {
            // After a rename, a crash before this leaves tags whose staging table is gone:
            // the next run sees a finished run there, not one to resume.
            let conn = run.control.conn().await?;
            ck.forget(conn).await?;
        }
        Ok(())
    }

    /// Drops the run's staging table.
    async fn drop_staging(&mut self) -> Result<()> {
        if let Some(run) = self.run.as_mut() {
            let staging = qualified(&run.shared.config.db, &run.shared.staging_name);
            run.control
                .execute(
                    format!("DROP TABLE IF EXISTS {staging}"),
                    "dropping the staging table",
                )
                .await?;
            if let Some(ck) = run.shared.checkpoints.clone() {
                let conn = run.control.conn().await?;
                ck.forget(conn).await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) {
        if let Some(mut run) = self.run.take() {
            let lock = self.lock_name();
            if let Ok(conn) = run.control.conn().await {
                let _ = conn.exec_drop("DO RELEASE_LOCK(?)", (lock,)).await;
            }
            run.control.close().await;
        }
    }
}

/// How the staging table becomes the target's data at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Nothing to publish: no row was staged, and nothing is to be replaced.
    Nothing,
    /// The target did not exist: the staging table takes its name.
    Rename,
    /// FULL_TABLE into an existing table: an atomic swap, then the old table is dropped.
    /// `empty`: no row was staged, so an empty copy of the target is swapped in.
    Swap {
        /// Whether the staging table must first be created empty.
        empty: bool,
    },
    /// INCREMENTAL into an existing table: the staged rows upserted on the key in one
    /// transaction, then the staging table is dropped.
    Upsert,
}

impl Publish {
    /// The step for a run of `mode`, into a target that existed at open or not, with rows
    /// staged or not.
    fn choose(mode: ReplicationMode, target_exists: bool, staged: bool) -> Self {
        match (staged, mode, target_exists) {
            (false, ReplicationMode::FullTable, true) => Self::Swap { empty: true },
            (false, _, _) => Self::Nothing,
            (true, _, false) => Self::Rename,
            (true, ReplicationMode::FullTable, true) => Self::Swap { empty: false },
            (true, ReplicationMode::Incremental, true) => Self::Upsert,
        }
    }
}

/// How the staging table is defined, from the target's columns and the data's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemaStep {
    /// A copy of the target's definition (the data fits it).
    Like,
    /// A copy of the target's definition with the data's new columns added.
    AddColumns(Vec<String>),
    /// A table defined by the data (a new table, or `on_schema_change: replace`).
    FromData,
}

/// The staging table's definition when the data brings columns the target lacks, as
/// `on_schema_change` says; an error naming the new (and missing) columns for `fail`. Names
/// compare case-insensitively, as MySQL's columns do.
fn schema_step(
    mode: ReplicationMode,
    on_change: OnSchemaChange,
    existing: &[String],
    schema: &arrow_schema::Schema,
    target: &str,
) -> Result<SchemaStep> {
    let written: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    Ok(
        match fastlane_plugin_support::schema::schema_step(
            mode, on_change, existing, &written, target, same,
        )
        .map_err(Error::Config)?
        {
            fastlane_plugin_support::schema::SchemaStep::Fits => SchemaStep::Like,
            fastlane_plugin_support::schema::SchemaStep::AddColumns(new) => {
                SchemaStep::AddColumns(new)
            }
            fastlane_plugin_support::schema::SchemaStep::Replace => SchemaStep::FromData,
        },
    )
}

/// The statement that swaps the staging table in and the target out, in one step.
fn swap_statement(table: &str, old: &str, staging: &str) -> String {
    format!("RENAME TABLE {table} TO {old}, {staging} TO {table}")
}

/// The statement that upserts the `written` columns of the staged rows into the target.
fn upsert_statement(table: &str, staging: &str, written: &[String]) -> String {
    let names: Vec<String> = written.iter().map(|c| ident(c)).collect();
    let list = names.join(", ");
    let updates = names
        .iter()
        .map(|c| format!("{c} = VALUES({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM {staging} ON DUPLICATE KEY UPDATE \
         {updates}"
    )
}

/// Swaps the staging table in (FULL_TABLE), then drops the replaced table.
async fn swap(control: &mut Session, table: &str, old: &str, staging: &str) -> Result<()> {
    control
        .execute(format!("DROP TABLE IF EXISTS {old}"), "preparing the swap")
        .await?;
    // Not retried: a swap whose answer was lost may have happened.
    let swap = swap_statement(table, old, staging);
    control
        .run_retrying(false, |conn| {
            let swap = swap.clone();
            Box::pin(async move {
                // Wait at most 5 minutes behind other sessions' transactions on the table
                // (the server's default is a year), then fail cleanly.
                conn.query_drop(LOCK_WAIT)
                    .await
                    .what(|| "preparing the swap".to_owned())?;
                conn.query_drop(swap)
                    .await
                    .what(|| "swapping in the new table".to_owned())
            })
        })
        .await?;
    if let Err(e) = control
        .execute(format!("DROP TABLE {old}"), "dropping the replaced table")
        .await
    {
        log::warn!("the new table is published, but {e}; the next run drops it");
    }
    Ok(())
}

/// Adds to the target the `written` columns it lacks, defined as in the staging table (an
/// INCREMENTAL run with `on_schema_change: add_columns`). Columns added by an earlier attempt
/// of the same run are there already.
async fn add_missing_columns(
    control: &mut Session,
    db: &str,
    table: &str,
    staging: &str,
    written: &[String],
) -> Result<()> {
    let conn = control.conn().await?;
    let existing = describe(conn, db, table).await?;
    let lacking: Vec<&String> = written
        .iter()
        .filter(|w| !existing.iter().any(|(e, _)| e.eq_ignore_ascii_case(w)))
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let types: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE \
             TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, staging),
        )
        .await
        .what(|| "reading the staging table's columns".to_owned())?;
    let mut adds = Vec::new();
    for name in lacking {
        let Some((_, t)) = types.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) else {
            continue;
        };
        adds.push(format!("ADD COLUMN {} {t} NULL", ident(name)));
    }
    let target = qualified(db, table);
    log::info!("adding columns to {target}: {}", adds.join(", "));
    conn.query_drop(format!("ALTER TABLE {target} {}", adds.join(", ")))
        .await
        .what(|| format!("adding the data's new columns to {target}"))
}

/// Upserts the staged rows into the target in one transaction (INCREMENTAL), then drops the
/// staging table.
async fn upsert(
    control: &mut Session,
    table: &str,
    staging: &str,
    written: &[String],
    checkpoints: Option<&Checkpoints>,
) -> Result<()> {
    let upsert = upsert_statement(table, staging, written);
    // One transaction: every row or none. Not retried: a lost connection after COMMIT was
    // sent could apply it twice only as an idempotent upsert anyway, but a clear failure is
    // better than guessing.
    let conn = control.conn().await?;
    conn.query_drop(LOCK_WAIT)
        .await
        .what(|| "preparing the upsert".to_owned())?;
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .what(|| "starting the upsert".to_owned())?;
    tx.query_drop(upsert)
        .await
        .what(|| format!("upserting the new rows into {table}"))?;
    if let Some(ck) = checkpoints {
        // With the rows: a crash after the commit never leaves the run to be resumed.
        tx.exec_drop(
            format!("DELETE FROM {} WHERE run_id = ?", ck.table()),
            (ck.run_id.clone(),),
        )
        .await
        .what(|| "clearing the run's checkpoints".to_owned())?;
    }
    tx.commit()
        .await
        .what(|| format!("committing the upsert into {table}"))?;
    if let Err(e) = control
        .execute(
            format!("DROP TABLE {staging}"),
            "dropping the staging table",
        )
        .await
    {
        log::warn!("the rows are published, but {e}; the next run drops it");
    }
    Ok(())
}

impl AsyncTarget for MysqlTarget {
    type Error = Error;

    async fn get_offset(&self) -> Result<Option<Json>> {
        let Some(key) = self.config.key.clone() else {
            return Err(Error::Config(
                "INCREMENTAL mode needs the target's `key`, the column whose largest value is \
                 the offset"
                    .into(),
            ));
        };
        let table = self.table();
        let (db, name) = (self.config.db.clone(), self.config.table.clone());
        let connector = self.connector.clone();
        async move {
            let mut session = Session::open(connector).await?;
            let conn = session.conn().await?;
            let columns = describe(conn, &db, &name).await?;
            if columns.is_empty() {
                session.close().await;
                return Ok(None);
            }
            if !columns.iter().any(|c| c.0 == key) {
                return Err(Error::NotFound(format!(
                    "{table} has no column `{key}` (the target's `key`)"
                )));
            }
            let max: Option<Value> = conn
                // The binary protocol keeps numbers typed.
                .exec_first(format!("SELECT MAX({}) FROM {table}", ident(&key)), ())
                .await
                .what(|| format!("reading the largest `{key}` of {table}"))?;
            session.close().await;
            match max {
                Some(Value::Bytes(b)) if std::str::from_utf8(&b).is_err() => {
                    Err(Error::Config(format!(
                        "the largest `{key}` of {table} is binary data, which cannot be an \
                         INCREMENTAL offset; use a numeric, date or text key"
                    )))
                }
                other => Ok(other.and_then(offset_json)),
            }
        }
        .await
    }

    async fn open(&mut self, context: &WriteContext) -> Result<()> {
        let out = self.prepare(context).await;
        if out.is_err() {
            self.finish().await;
        }
        out
    }

    fn writer(&self, index: usize) -> PluginResult<Box<dyn Writer>> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("writer() before open()"))?;
        Ok(Box::new(RUNTIME.on(MysqlWriter {
            shared: run.shared.clone(),
            session: None,
            index,
            in_tx: false,
        })))
    }

    async fn commit(&mut self) -> Result<()> {
        let out = self.publish().await;
        let checkpointed = self
            .run
            .as_ref()
            .is_some_and(|r| r.shared.checkpoints.is_some());
        if out.is_err() && !checkpointed {
            let _ = self.drop_staging().await;
        }
        if out.is_err() && checkpointed {
            // The host suspends the run: the staging stays for a resume.
            return out;
        }
        self.finish().await;
        out
    }

    async fn abort(&mut self) -> Result<()> {
        let out = self.drop_staging().await;
        self.finish().await;
        out
    }

    async fn resumable_runs(&self) -> PluginResult<Vec<StagedRun>> {
        let connector = self.connector.clone();
        let (db, name) = (self.config.db.clone(), self.checkpoint_table());
        let prefix = self.staging_prefix();
        let runs = async move {
            let mut session = Session::open(connector).await?;
            let conn = session.conn().await?;
            let mut runs = Vec::new();
            for (run_id, plan, has_tags) in checkpoints::plans(conn, &db, &name).await? {
                let staging = format!("{prefix}{}", short_hash(&[&run_id]));
                // Tags without their staging table: the run was published (or its staging
                // dropped by hand); nothing to resume.
                if has_tags && !table_exists(conn, &db, &staging).await? {
                    continue;
                }
                runs.push(StagedRun { run_id, plan });
            }
            session.close().await;
            Ok::<_, Error>(runs)
        };
        runs.await.map_err(Into::into)
    }

    /// The checksum of the staging table over the columns the run writes, computed by the
    /// server (none yet: 0 rows).
    async fn staged_checksum(&self) -> PluginResult<Checksum> {
        let Some(run) = &self.run else {
            return Err(PluginError::internal("staged_checksum before open"));
        };
        let shared = run.shared.clone();
        let types = match &*shared.staging.lock().await {
            None => return Ok(Checksum::default()),
            Some(staging) => staging.written_types.clone().ok_or_else(|| {
                PluginError::unsupported(
                    "this staging was created before checksums: its columns' types are unknown",
                )
            })?,
        };
        let from = qualified(&shared.config.db, &shared.staging_name);
        let sql = checksum_sql(&from, "fl_sum", &types).map_err(PluginError::config)?;
        let connector = self.connector.clone();
        let summed = async move {
            let session = Session::open_retrying(connector).await?;
            run_checksum(
                session,
                &sql,
                Vec::new(),
                "computing the staging's checksum",
            )
            .await
        };
        summed.await.map_err(Into::into)
    }

    /// `SELECT COUNT(*)` of the staging table (none yet: 0).
    async fn staged_rows(&self) -> PluginResult<u64> {
        let Some(run) = &self.run else {
            return Err(PluginError::internal("staged_rows before open"));
        };
        let (db, staging) = (
            run.shared.config.db.clone(),
            run.shared.staging_name.clone(),
        );
        let connector = self.connector.clone();
        let counted = async move {
            let mut session = Session::open_retrying(connector).await?;
            let conn = session.conn().await?;
            let n = if table_exists(conn, &db, &staging).await? {
                let n: Option<u64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM {}", qualified(&db, &staging)))
                    .await
                    .what(|| "counting the staged rows".to_owned())?;
                n.unwrap_or(0)
            } else {
                0
            };
            session.close().await;
            Ok::<_, Error>(n)
        };
        counted.await.map_err(Into::into)
    }

    async fn checkpoints(&self) -> PluginResult<Vec<String>> {
        self.run
            .as_ref()
            .and_then(|r| r.resumed_tags.clone())
            .ok_or_else(|| PluginError::internal("checkpoints asked of a run that did not resume"))
    }

    /// Keeps the staging table and the checkpoints; releases the lock.
    async fn suspend(&mut self) -> PluginResult<()> {
        if let Some(run) = &self.run {
            log::info!(
                "kept `{}`.`{}` for the next run to resume",
                run.shared.config.db,
                run.shared.staging_name
            );
        }
        self.finish().await;
        Ok(())
    }
}

/// Reopens a resumed run's staging: the staging table as the writers will find it (none when
/// it was never created, or when it lacks its recorded columns and then holds no batch), and
/// the tags kept with its rows.
async fn reopen(
    conn: &mut Conn,
    ck: &Checkpoints,
    db: &str,
    staging_name: &str,
) -> Result<(Option<Staging>, Vec<String>)> {
    ck.ensure(conn).await?;
    if ck.get(conn, "plan").await?.is_none() {
        return Err(Error::NotFound(format!(
            "run `{}` left no checkpoints in `{db}`.`{}`",
            ck.run_id, ck.name
        )));
    }
    let tags = ck.tags(conn).await?;
    let exists = table_exists(conn, db, staging_name).await?;
    let columns: Option<Vec<String>> = match ck.get(conn, "columns").await? {
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            Error::Data(format!(
                "the checkpoints of run `{}` are damaged: {e}",
                ck.run_id
            ))
        })?),
        None => None,
    };
    match (exists, columns) {
        (false, _) if !tags.is_empty() => Err(Error::Data(format!(
            "the staging table `{db}`.`{staging_name}` of run `{}` is gone; start afresh \
             with --fresh",
            ck.run_id
        ))),
        (false, _) => Ok((None, tags)),
        (true, None) => {
            // Created, but killed before its first batch: it holds nothing.
            conn.query_drop(format!("DROP TABLE {}", qualified(db, staging_name)))
                .await
                .what(|| "dropping an empty staging table".to_owned())?;
            Ok((None, tags))
        }
        (true, Some(written)) => {
            let written_types = match ck.get(conn, "types").await? {
                Some(text) => serde_json::from_str(&text).ok(),
                None => None,
            };
            let columns = describe(conn, db, staging_name).await?;
            let unique = unique_indexes(conn, db, staging_name).await?;
            let staging = Staging {
                columns: columns
                    .into_iter()
                    .map(|(name, t)| StagedColumn {
                        slot: Slot::for_column(&t),
                        name,
                    })
                    .collect(),
                unique,
                written,
                written_types,
            };
            Ok((Some(staging), tags))
        }
    }
}

/// Loads one target worker's batches into the staging table.
struct MysqlWriter {
    shared: Arc<Shared>,
    session: Option<Session>,
    index: usize,
    /// Inside a checkpointed batch's transaction: a lost connection fails the statement at
    /// once, and the whole transaction is sent again.
    in_tx: bool,
}

impl MysqlWriter {
    async fn session(&mut self) -> Result<&mut Session> {
        if self.session.is_none() {
            self.session = Some(Session::open_retrying(self.shared.connector.clone()).await?);
        }
        Ok(self.session.as_mut().expect("session"))
    }

    /// Creates the staging table at the first batch: a copy of the target's definition when
    /// the data fits it, otherwise (a new table, or a FULL_TABLE run whose data has new
    /// columns) from the data's schema.
    async fn staging(&mut self, batch: &RecordBatch) -> Result<Staging> {
        let shared = self.shared.clone();
        let mut slot = shared.staging.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let db = shared.config.db.clone();
        let target = qualified(&db, &shared.config.table);
        let name = qualified(&db, &shared.staging_name);
        let schema = batch.schema();
        let step = match &shared.target_columns {
            None => SchemaStep::FromData,
            Some(existing) => schema_step(
                shared.mode,
                shared.config.on_schema_change,
                existing,
                &schema,
                &target,
            )?,
        };
        let fields: Vec<&arrow_schema::Field> =
            schema.fields().iter().map(|f| f.as_ref()).collect();
        let (ddl, added) = match &step {
            SchemaStep::Like => (format!("CREATE TABLE {name} LIKE {target}"), Vec::new()),
            SchemaStep::AddColumns(new) => {
                let mut defs = Vec::new();
                for f in fields.iter().filter(|f| new.contains(f.name())) {
                    defs.push(format!("ADD COLUMN {}", column_definition(f, false)?));
                }
                log::info!(
                    "adding the data's new columns to {target}: {}",
                    new.join(", ")
                );
                (format!("CREATE TABLE {name} LIKE {target}"), defs)
            }
            SchemaStep::FromData => (
                create_table(&name, &fields, shared.config.key.as_deref())?,
                Vec::new(),
            ),
        };
        let ddl = if shared.resume {
            ddl.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
        } else {
            ddl
        };
        let session = self.session().await?;
        session.execute(ddl, "creating the staging table").await?;
        if !added.is_empty() {
            session
                .execute(
                    format!("ALTER TABLE {name} {}", added.join(", ")),
                    "adding columns to the staging table",
                )
                .await?;
        }
        let conn = session.conn().await?;
        let written_types: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        if let Some(ck) = &shared.checkpoints {
            let written: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let text = serde_json::to_string(&written).map_err(|e| Error::Data(e.to_string()))?;
            ck.put(conn, "columns", &text).await?;
            let text =
                serde_json::to_string(&written_types).map_err(|e| Error::Data(e.to_string()))?;
            ck.put(conn, "types", &text).await?;
        }
        let columns = describe(conn, &db, &shared.staging_name).await?;
        let unique = unique_indexes(conn, &db, &shared.staging_name).await?;
        let staging = Staging {
            columns: columns
                .into_iter()
                .map(|(name, t)| StagedColumn {
                    slot: Slot::for_column(&t),
                    name,
                })
                .collect(),
            unique,
            written: schema.fields().iter().map(|f| f.name().clone()).collect(),
            written_types: Some(written_types),
        };
        *slot = Some(staging.clone());
        Ok(staging)
    }

    async fn load(&mut self, batch: RecordBatch) -> Result<()> {
        let staging = self.staging(&batch).await?;
        // MySQL column names are case-insensitive.
        let by_name: HashMap<String, &StagedColumn> = staging
            .columns
            .iter()
            .map(|c| (c.name.to_lowercase(), c))
            .collect();
        let schema = batch.schema();
        let missing: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !by_name.contains_key(&f.name().to_lowercase()))
            .map(|f| format!("`{}`", f.name()))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "the data has columns that `{}`.`{}` lacks: {}",
                self.shared.config.db,
                self.shared.config.table,
                missing.join(", ")
            )));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let slots: Vec<Slot> = schema
            .fields()
            .iter()
            .map(|f| by_name[&f.name().to_lowercase()].slot)
            .collect();
        let encoder = Encoder::new(&batch, &slots)?;
        // A batch can be sent again safely only when a unique index is made of columns the
        // data fills (not an AUTO_INCREMENT key the server assigns anew).
        let keyed = staging.unique.iter().any(|index| {
            index.iter().all(|c| {
                schema
                    .fields()
                    .iter()
                    .any(|f| f.name().eq_ignore_ascii_case(c))
            })
        });
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let rows = encoder.rows();
        let per_statement = self.shared.config.batch_size.max(1);
        let bulk_payload = self
            .shared
            .bulk_payload
            .filter(|_| encoder.fixed_param_types());
        let mut start = 0;
        while start < rows {
            let end = rows.min(start + per_statement);
            if let Some(payload) = bulk_payload {
                self.bulk(&encoder, &names, keyed, start..end, payload)
                    .await?;
            } else if self.shared.insert_only.load(Ordering::Relaxed) {
                self.insert(&encoder, &names, &slots, keyed, start..end)
                    .await?;
            } else {
                self.load_data(&encoder, &names, &slots, keyed, start..end)
                    .await?;
            }
            start = end;
        }
        Ok(())
    }

    /// Sends rows with one `LOAD DATA LOCAL INFILE`.
    async fn load_data(
        &mut self,
        encoder: &Encoder,
        names: &[String],
        slots: &[Slot],
        keyed: bool,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let mut data = Vec::with_capacity(range.len() * 64);
        encoder.write_text(range.clone(), &mut data);
        let data = Bytes::from(data);
        let mut targets = Vec::with_capacity(names.len());
        let mut sets = Vec::new();
        for (i, (name, slot)) in names.iter().zip(slots).enumerate() {
            match slot {
                Slot::Plain => targets.push(ident(name)),
                Slot::Hex => {
                    targets.push(format!("@v{i}"));
                    sets.push(format!("{} = UNHEX(@v{i})", ident(name)));
                }
                Slot::Bit => {
                    targets.push(format!("@v{i}"));
                    sets.push(format!("{} = CAST(@v{i} AS UNSIGNED)", ident(name)));
                }
            }
        }
        // The first attempt adds rows (a duplicate key is a warning, so an error); a batch sent
        // again after a lost connection replaces the rows it may already have stored.
        let statement = |keyword: &str| {
            let mut sql = format!(
                "LOAD DATA LOCAL INFILE 'fastlane-{}' {keyword} INTO TABLE {} CHARACTER SET \
                 utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY \
                 '\\n' ({})",
                self.index,
                qualified(&self.shared.config.db, &self.shared.staging_name),
                targets.join(", ")
            );
            if !sets.is_empty() {
                sql.push_str(" SET ");
                sql.push_str(&sets.join(", "));
            }
            sql
        };
        let (first, again) = (statement(""), statement("REPLACE"));
        let mut attempts = 0;
        let table = self.shared.config.table.clone();
        let (retry, in_tx) = (keyed && !self.in_tx, self.in_tx);
        let session = self.session().await?;
        let attempt = session
            .run_retrying(retry, |conn| {
                attempts += 1;
                let sql = statement_for(attempts, &first, &again);
                let data = data.clone();
                let table = table.clone();
                Box::pin(async move {
                    conn.set_infile_handler(async move {
                        // Small pieces: the driver copies each into a pooled buffer,
                        // and the pool keeps buffers of up to 4 MiB.
                        let pieces: Vec<std::io::Result<Bytes>> = (0..data.len())
                            .step_by(INFILE_PIECE)
                            .map(|at| Ok(data.slice(at..data.len().min(at + INFILE_PIECE))))
                            .collect();
                        let stream: mysql_async::InfileData =
                            Box::pin(futures_util::stream::iter(pieces));
                        Ok(stream)
                    });
                    conn.query_drop(sql)
                        .await
                        .what(|| format!("loading rows for `{table}`"))?;
                    check_warnings(conn, &table).await
                })
            })
            .await;
        match attempt {
            Err(Error::Query {
                source: mysql_async::Error::Server(s),
                ..
            }) if s.code == 1148 || s.code == 3948 || s.code == 4166 => {
                log::warn!(
                    "the server does not allow LOAD DATA LOCAL INFILE ({}); loading with INSERT \
                     statements instead (set `load_method: \"insert\"` to skip this attempt)",
                    s.message
                );
                self.shared.insert_only.store(true, Ordering::Relaxed);
                self.insert(encoder, names, slots, keyed, range).await
            }
            other => other.map_err(|e| keyless_loss(e, keyed || in_tx)),
        }
    }

    /// Sends rows with MariaDB's bulk execution of a one-row `INSERT`: requests of at most
    /// `payload` bytes of binary parameters, each a single packet (the parameter types travel
    /// with the request, so every request stands alone).
    async fn bulk(
        &mut self,
        encoder: &Encoder,
        names: &[String],
        keyed: bool,
        range: std::ops::Range<usize>,
        payload: usize,
    ) -> Result<()> {
        let columns = column_list(names);
        let marks = vec!["?"; names.len()].join(", ");
        let table = qualified(&self.shared.config.db, &self.shared.staging_name);
        let first = format!("INSERT INTO {table} ({columns}) VALUES ({marks})");
        let again = format!("REPLACE INTO {table} ({columns}) VALUES ({marks})");
        let name = self.shared.config.table.clone();
        // The request's header: command, statement id, flags, then two bytes of type per column.
        let header = 7 + 2 * names.len();
        let (retry, in_tx) = (keyed && !self.in_tx, self.in_tx);
        let mut start = range.start;
        while start < range.end {
            let mut rows = Vec::new();
            let mut size = header;
            let mut end = start;
            while end < range.end {
                let row = encoder.row_params(end);
                // A NULL takes its indicator byte; a value its bytes and the indicator.
                let bytes: usize = row.iter().map(|v| v.bin_len() as usize + 1).sum();
                if !rows.is_empty() && size + bytes > payload {
                    break;
                }
                size += bytes;
                rows.push(row);
                end += 1;
            }
            let mut rows = Some(rows);
            let mut attempts = 0;
            let session = self.session().await?;
            let sent = session
                .run_retrying(retry, |conn| {
                    attempts += 1;
                    let sql = statement_for(attempts, &first, &again);
                    // Built again for a resend: the first attempt gave its rows to the driver.
                    let rows = rows
                        .take()
                        .unwrap_or_else(|| (start..end).map(|r| encoder.row_params(r)).collect());
                    let name = name.clone();
                    Box::pin(async move {
                        conn.exec_batch(sql, rows.into_iter().map(Params::Positional))
                            .await
                            .what(|| format!("loading rows for `{name}`"))?;
                        check_warnings(conn, &name).await
                    })
                })
                .await;
            sent.map_err(|e| keyless_loss(e, keyed || in_tx))?;
            start = end;
        }
        Ok(())
    }

    /// Sends rows with multi-row `INSERT` statements.
    async fn insert(
        &mut self,
        encoder: &Encoder,
        names: &[String],
        slots: &[Slot],
        keyed: bool,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let _ = slots;
        let columns = column_list(names);
        let row_marks = format!("({})", vec!["?"; names.len()].join(", "));
        // At most 65,535 parameters per statement.
        let per_statement = (65_535 / names.len().max(1)).clamp(1, 4_096);
        let table = qualified(&self.shared.config.db, &self.shared.staging_name);
        let name = self.shared.config.table.clone();
        let retry = keyed && !self.in_tx;
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + per_statement);
            let mut params = Vec::with_capacity((end - start) * names.len());
            encoder.write_params(start..end, &mut params);
            let values = vec![row_marks.as_str(); end - start].join(", ");
            let first = format!("INSERT INTO {table} ({columns}) VALUES {values}");
            let again = format!("REPLACE INTO {table} ({columns}) VALUES {values}");
            let mut attempts = 0;
            let session = self.session().await?;
            session
                .run_retrying(retry, |conn| {
                    attempts += 1;
                    let sql = statement_for(attempts, &first, &again);
                    let params = params.clone();
                    let name = name.clone();
                    Box::pin(async move {
                        conn.exec_drop(sql, Params::Positional(params))
                            .await
                            .what(|| format!("inserting rows for `{name}`"))?;
                        check_warnings(conn, &name).await
                    })
                })
                .await?;
            start = end;
        }
        Ok(())
    }
}

/// The statement for attempt `attempt` (from 1) at a batch: the first adds rows, so a duplicate
/// key in the data fails the run; a resend after a lost connection replaces the rows the cut
/// statement may have stored.
fn statement_for(attempt: u32, first: &str, again: &str) -> String {
    if attempt == 1 { first } else { again }.to_owned()
}

/// `error` as the run's error: a lost connection while loading a table that no unique index of
/// the data's columns protects stops the run, since a resend could duplicate rows.
fn keyless_loss(error: Error, keyed: bool) -> Error {
    if keyed || !is_lost_error(&error) {
        return error;
    }
    Error::Data(format!(
        "{error}; the table has no primary or unique key, so the rows cannot be sent again \
         without risking duplicates, and the run stops"
    ))
}

/// `a`, `b`, … : column names quoted for a statement.
fn column_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most bytes of parameters in one bulk request.
const BULK_PAYLOAD: usize = 4 << 20;

/// The bytes of parameters per bulk request for a server whose `max_allowed_packet` is
/// `max_packet`: [`BULK_PAYLOAD`], or less to fit in one packet.
fn bulk_payload(max_packet: u64) -> usize {
    usize::try_from(max_packet.saturating_sub(1024))
        .unwrap_or(usize::MAX)
        .clamp(1024, BULK_PAYLOAD)
}

/// Whether a server of `version` (`@@version`) has MariaDB's bulk execution (10.2.7 and later).
fn bulk_supported(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    // MariaDB 10 and 11 may announce themselves as `5.5.5-10.11.6-MariaDB…`.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    numbers.as_slice() >= [10, 2, 7].as_slice()
}

/// How long publishing waits behind other sessions' locks on the target.
const LOCK_WAIT: &str = "SET SESSION lock_wait_timeout = 300";

/// Bytes per piece of LOAD DATA LOCAL INFILE data.
const INFILE_PIECE: usize = 64 * 1024;

/// Fails when the last statement left warnings: a value was truncated, changed or skipped.
async fn check_warnings(conn: &mut Conn, table: &str) -> Result<()> {
    if conn.get_warnings() == 0 {
        return Ok(());
    }
    let warnings: Vec<(String, u32, String)> = conn
        .query("SHOW WARNINGS LIMIT 3")
        .await
        .what(|| "reading the load's warnings".to_owned())?;
    let text = warnings
        .iter()
        .map(|(level, code, message)| format!("{level} {code}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::Data(format!(
        "the server changed or refused values while loading `{table}`, so the run stops \
         rather than store them altered: {text}"
    )))
}

impl MysqlWriter {
    /// Writes a batch and its tag in one transaction, sent again whole after a lost
    /// connection (see [`crate::checkpoints`]).
    async fn load_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        let Some(ck) = self.shared.checkpoints.clone() else {
            return Err(Error::Data(
                "a tagged write in a run without checkpoints".to_owned(),
            ));
        };
        let id = tag_id(tag);
        if batch.num_rows() > 0 {
            // The staging table exists before the transaction starts: DDL would commit it.
            self.staging(&batch).await?;
        }
        let started = std::time::Instant::now();
        loop {
            let out = self.tagged_once(&batch, tag, &id, &ck).await;
            self.in_tx = false;
            match out {
                Ok(()) => return Ok(()),
                Err(e) if is_lost_error(&e) => {
                    let budget = self.shared.connector.retry_budget();
                    if started.elapsed() >= budget {
                        return Err(Error::RetriesExhausted {
                            address: self.shared.connector.address(),
                            secs: budget.as_secs(),
                            last: e.to_string(),
                        });
                    }
                    log::warn!("lost the connection while loading a batch ({e}); sending it again");
                    let session = self.session().await?;
                    session.drop_connection();
                    // The COMMIT may have reached the server before the connection broke.
                    let conn = session.conn().await?;
                    if ck.get(conn, &id).await?.is_some() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    if let Some(session) = self.session.as_mut()
                        && let Ok(conn) = session.conn().await
                    {
                        let _ = conn.query_drop("ROLLBACK").await;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn tagged_once(
        &mut self,
        batch: &RecordBatch,
        tag: &str,
        id: &str,
        ck: &Checkpoints,
    ) -> Result<()> {
        let session = self.session().await?;
        let conn = session.conn().await?;
        conn.query_drop("START TRANSACTION")
            .await
            .what(|| "starting a transaction".to_owned())?;
        self.in_tx = true;
        if batch.num_rows() > 0 {
            self.load(batch.clone()).await?;
        }
        let session = self.session().await?;
        let conn = session.conn().await?;
        conn.exec_drop(
            format!(
                "INSERT INTO {} (run_id, id, body) VALUES (?, ?, ?)",
                ck.table()
            ),
            (ck.run_id.clone(), id.to_owned(), tag.to_owned()),
        )
        .await
        .what(|| "storing a checkpoint".to_owned())?;
        conn.query_drop("COMMIT")
            .await
            .what(|| "committing a batch".to_owned())
    }
}

impl AsyncWriter for MysqlWriter {
    type Error = Error;

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.load(batch).await
    }

    async fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> PluginResult<()> {
        self.load_tagged(batch, tag).await.map_err(Into::into)
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_columns_fail_are_added_or_replace_the_table_as_configured() {
        use arrow_schema::{DataType, Field, Schema};
        let schema = Schema::new(vec![
            Field::new("ID", DataType::Int64, false),
            Field::new("extra", DataType::Utf8, true),
        ]);
        let existing = vec!["id".to_owned(), "old".to_owned()];
        let step = |on, mode| schema_step(mode, on, &existing, &schema, "`d`.`t`");
        let err = step(OnSchemaChange::Fail, ReplicationMode::FullTable).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("lacks: `extra`") && text.contains("`old`"),
            "{text}"
        );
        assert_eq!(
            step(OnSchemaChange::AddColumns, ReplicationMode::Incremental).unwrap(),
            SchemaStep::AddColumns(vec!["extra".into()])
        );
        assert_eq!(
            step(OnSchemaChange::Replace, ReplicationMode::FullTable).unwrap(),
            SchemaStep::FromData
        );
        assert!(step(OnSchemaChange::Replace, ReplicationMode::Incremental).is_err());
        // Names match case-insensitively; missing columns alone change nothing.
        let fits = Schema::new(vec![Field::new("Id", DataType::Int64, false)]);
        assert_eq!(
            schema_step(
                ReplicationMode::FullTable,
                OnSchemaChange::Fail,
                &existing,
                &fits,
                "t"
            )
            .unwrap(),
            SchemaStep::Like
        );
    }

    #[test]
    fn full_table_swaps_and_incremental_upserts_into_an_existing_table() {
        use ReplicationMode::{FullTable, Incremental};
        assert_eq!(
            Publish::choose(FullTable, true, true),
            Publish::Swap { empty: false }
        );
        assert_eq!(Publish::choose(Incremental, true, true), Publish::Upsert);
        // A new table is renamed into place, whatever the mode.
        assert_eq!(Publish::choose(FullTable, false, true), Publish::Rename);
        assert_eq!(Publish::choose(Incremental, false, true), Publish::Rename);
        // No rows: FULL_TABLE still empties an existing table; otherwise nothing changes.
        assert_eq!(
            Publish::choose(FullTable, true, false),
            Publish::Swap { empty: true }
        );
        assert_eq!(Publish::choose(FullTable, false, false), Publish::Nothing);
        assert_eq!(Publish::choose(Incremental, true, false), Publish::Nothing);
        assert_eq!(Publish::choose(Incremental, false, false), Publish::Nothing);
    }

    #[test]
    fn the_publish_statements_name_every_written_column() {
        assert_eq!(
            swap_statement("`db`.`t`", "`db`.`old`", "`db`.`stage`"),
            "RENAME TABLE `db`.`t` TO `db`.`old`, `db`.`stage` TO `db`.`t`"
        );
        let written = ["id".to_owned(), "na`me".to_owned()];
        assert_eq!(
            upsert_statement("`db`.`t`", "`db`.`stage`", &written),
            "INSERT INTO `db`.`t` (`id`, `na``me`) SELECT `id`, `na``me` FROM `db`.`stage` \
             ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `na``me` = VALUES(`na``me`)"
        );
    }

    #[test]
    fn bulk_execution_is_used_on_mariadb_10_2_7_and_later() {
        assert!(bulk_supported("10.11.19-MariaDB-0+deb12u1"));
        assert!(bulk_supported("5.5.5-10.2.7-MariaDB-log"));
        assert!(bulk_supported("11.4.2-MariaDB"));
        assert!(!bulk_supported("10.2.6-MariaDB"));
        assert!(!bulk_supported("10.1.48-MariaDB"));
        assert!(!bulk_supported("8.0.36"));
        assert!(!bulk_supported("8.4.0-mysql-commercial"));
    }

    #[test]
    fn bulk_requests_fit_in_one_packet() {
        assert_eq!(bulk_payload(16 << 20), BULK_PAYLOAD);
        assert_eq!(bulk_payload(1 << 20), (1 << 20) - 1024);
        assert_eq!(bulk_payload(0), 1024);
    }
}
