//! The `sqlite` target: writers insert batches into a staging table, one transaction per
//! batch; `commit` publishes the staging into the table in one transaction (FULL_TABLE: the
//! table's rows replaced; INCREMENTAL: rows upserted on the key), so readers see the old rows
//! or the new ones, never a half-loaded table.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result, Target, WriteContext, Writer};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::config::{OnSchemaChange, SqliteTargetConfig};
use crate::encode::{Encoder, declared_type};
use crate::plan::{listed, quote};
use fastlane_plugin_support::schema::{SchemaStep, schema_step};

/// Loads a SQLite table.
pub struct SqliteTarget {
    config: Arc<SqliteTargetConfig>,
    run: Option<Arc<Run>>,
}

/// One run's state, shared by its writers.
struct Run {
    mode: ReplicationMode,
    /// The staging table: `_fastlane_staging|<run id>|<table>`.
    staging: String,
    /// Whether this run created the database file (removed again by `abort` when it holds
    /// nothing else).
    created_file: bool,
    /// The staging's columns (name, declared type), once the first batch created it.
    columns: Mutex<Option<Vec<(String, &'static str)>>>,
}

fn sql_error(path: &str, e: rusqlite::Error) -> PluginError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            PluginError::io(format!(
                "`{path}` stayed locked by another connection: {e} (raise `busy_timeout_secs`)"
            ))
        }
        _ => PluginError::io(format!("`{path}`: {e}")),
    }
}

impl SqliteTarget {
    /// A target for `config`.
    pub fn new(config: SqliteTargetConfig) -> Result<Self> {
        if config.table.trim().is_empty() {
            return Err(PluginError::config("`table` must not be empty"));
        }
        if config.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(PluginError::config("`key` must not be empty"));
        }
        Ok(Self {
            config: Arc::new(config),
            run: None,
        })
    }

    fn staging_name(&self, run_id: &str) -> String {
        format!("{STAGING_PREFIX}{run_id}|{}", self.config.table)
    }

    /// Whether the database file is there (a `file:` URI is taken as there).
    fn file_exists(&self) -> bool {
        let path = &self.config.path;
        path.starts_with("file:") || Path::new(path).exists()
    }

    /// A read-write connection, creating the file when `create`.
    fn connect(&self, create: bool) -> Result<Connection> {
        connect(&self.config, create)
    }

    fn run(&self, what: &str) -> Result<&Arc<Run>> {
        self.run
            .as_ref()
            .ok_or_else(|| PluginError::internal(format!("{what} before open")))
    }
}

/// The start of a staging table's name; the run id and the table follow, separated by `|`.
const STAGING_PREFIX: &str = "_fastlane_staging|";

/// The column of a staging table that keeps the order rows were staged in.
const SEQ: &str = "_fastlane_seq";

/// The stagings of `table` that runs other than `run_id` left.
fn stale_stagings(conn: &Connection, table: &str, run_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?2) = ?1",
    )?;
    let names = stmt
        .query_map(
            rusqlite::params![STAGING_PREFIX, STAGING_PREFIX.len() as i64],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names
        .into_iter()
        .filter(|name| {
            name[STAGING_PREFIX.len()..]
                .split_once('|')
                .is_some_and(|(run, t)| run != run_id && t.eq_ignore_ascii_case(table))
        })
        .collect())
}

fn connect(config: &SqliteTargetConfig, create: bool) -> Result<Connection> {
    let path = &config.path;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| PluginError::io(format!("cannot open `{path}`: {e}")))?;
    conn.busy_timeout(Duration::from_secs(config.busy_timeout_secs))
        .map_err(|e| sql_error(path, e))?;
    Ok(conn)
}

/// The columns of `table` (name, declared type), or `None` when there is no such table.
fn table_columns(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Option<Vec<(String, String)>>> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")?;
    let columns = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(columns))
}

impl Target for SqliteTarget {
    /// The largest `key` of the table; none without a key, a database file or the table.
    fn get_offset(&self) -> Result<Option<Value>> {
        let Some(key) = &self.config.key else {
            return Ok(None);
        };
        if !self.file_exists() {
            return Ok(None);
        }
        let conn = self.connect(false)?;
        let path = &self.config.path;
        let table = &self.config.table;
        let Some(columns) = table_columns(&conn, table).map_err(|e| sql_error(path, e))? else {
            return Ok(None);
        };
        if !columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(key)) {
            return Err(PluginError::config(format!(
                "table `{table}` has no column `{key}` (the `key`)"
            )));
        }
        let sql = format!("SELECT MAX({}) FROM {}", quote(key), quote(table));
        conn.query_row(&sql, [], |r| {
            Ok(match r.get_ref(0)? {
                ValueRef::Integer(i) => Some(Value::from(i)),
                ValueRef::Real(f) => Some(Value::from(f)),
                ValueRef::Text(t) => Some(Value::from(String::from_utf8_lossy(t).into_owned())),
                ValueRef::Null | ValueRef::Blob(_) => None,
            })
        })
        .map_err(|e| sql_error(path, e))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let path = &self.config.path;
        let existed = self.file_exists();
        if !existed {
            let folder = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            if let Some(folder) = folder.filter(|f| !f.is_dir()) {
                return Err(PluginError::not_found(format!(
                    "the folder of `{path}` ({}) does not exist",
                    folder.display()
                )));
            }
        }
        let staging = self.staging_name(&context.run_id);
        let prepared: Result<()> = (|| {
            let conn = self.connect(true)?;
            // Stagings left by runs that died are of no use: no run resumes them. (A run of
            // another pipeline loading this table at the same time loses its staging and fails.)
            let stale = stale_stagings(&conn, &self.config.table, &context.run_id)
                .map_err(|e| sql_error(path, e))?;
            for name in stale.iter().chain([&staging]) {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(name)))
                    .map_err(|e| sql_error(path, e))?;
            }
            Ok(())
        })();
        if let Err(e) = prepared {
            if !existed {
                remove_database(path);
            }
            return Err(e);
        }
        self.run = Some(Arc::new(Run {
            mode: context.mode,
            staging,
            created_file: !existed,
            columns: Mutex::new(None),
        }));
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        let run = self.run("writer")?.clone();
        Ok(Box::new(SqliteWriter {
            conn: self.connect(false)?,
            config: self.config.clone(),
            staging: run.staging.clone(),
            run,
            insert: None,
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let run = self.run("commit")?.clone();
        let columns = run
            .columns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut conn = self.connect(false)?;
        let path = self.config.path.clone();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path, e))?;
        publish(
            &tx,
            &self.config,
            run.mode,
            &run.staging,
            columns.as_deref(),
        )?;
        tx.commit().map_err(|e| sql_error(&path, e))?;
        self.run = None;
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let path = &self.config.path;
        let conn = self.connect(false)?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&run.staging)))
            .map_err(|e| sql_error(path, e))?;
        if run.created_file {
            // The file this run created goes too, unless something else was stored in it.
            let others: i64 = conn
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| sql_error(path, e))?;
            drop(conn);
            if others == 0 {
                remove_database(path);
            }
        }
        Ok(())
    }

    /// `SELECT COUNT(*)` of the staging (none yet: 0).
    fn staged_rows(&self) -> Result<u64> {
        let run = self.run("staged_rows")?;
        if run
            .columns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Ok(0);
        }
        let conn = self.connect(false)?;
        let sql = format!("SELECT COUNT(*) FROM {}", quote(&run.staging));
        let n: i64 = conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| sql_error(&self.config.path, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Removes a database file (and its journal) that a run created.
fn remove_database(path: &str) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

/// Moves the staging into the table inside `tx`, creating or altering the table as the
/// configuration allows, then drops the staging.
fn publish(
    tx: &rusqlite::Transaction<'_>,
    config: &SqliteTargetConfig,
    mode: ReplicationMode,
    staging: &str,
    columns: Option<&[(String, &'static str)]>,
) -> Result<()> {
    let path = &config.path;
    let table = &config.table;
    let sql = |statement: &str| tx.execute_batch(statement).map_err(|e| sql_error(path, e));
    let existing = table_columns(tx, table).map_err(|e| sql_error(path, e))?;
    let Some(columns) = columns else {
        // No batch came: a FULL_TABLE load of nothing empties the table.
        if mode == ReplicationMode::FullTable && existing.is_some() {
            sql(&format!("DELETE FROM {}", quote(table)))?;
        }
        return Ok(());
    };
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let mut create = existing.is_none();
    if let Some(existing) = &existing {
        let existing: Vec<String> = existing.iter().map(|(e, _)| e.clone()).collect();
        let step = schema_step(
            mode,
            config.on_schema_change,
            &existing,
            &names,
            &format!("table `{table}`"),
            |a, b| a.eq_ignore_ascii_case(b),
        )
        .map_err(|e| match config.on_schema_change {
            OnSchemaChange::Replace => PluginError::config(e),
            _ => PluginError::data(e),
        })?;
        match step {
            SchemaStep::Fits => {}
            SchemaStep::AddColumns(new) => {
                for (name, declared) in columns.iter().filter(|(n, _)| new.contains(n)) {
                    sql(&format!(
                        "ALTER TABLE {} ADD COLUMN {} {declared}",
                        quote(table),
                        quote(name)
                    ))?;
                }
            }
            SchemaStep::Replace => {
                sql(&format!("DROP TABLE {}", quote(table)))?;
                create = true;
            }
        }
    }
    if let Some(key) = &config.key {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
            return Err(PluginError::data(format!(
                "the data has no column `{key}` (the `key`)"
            )));
        }
        let null_key: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1",
                    quote(staging),
                    quote(key)
                ),
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_error(path, e))?;
        if null_key.is_some() {
            return Err(PluginError::data(format!(
                "the data has rows whose key `{key}` is NULL: they cannot be loaded by key"
            )));
        }
    }
    let list = names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ");
    if create {
        let mut ddl = format!("CREATE TABLE {} (", quote(table));
        ddl.push_str(
            &columns
                .iter()
                .map(|(n, t)| format!("{} {t}", quote(n)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(key) = &config.key {
            ddl.push_str(&format!(", PRIMARY KEY ({})", quote(key)));
        }
        ddl.push(')');
        sql(&ddl)?;
    } else if mode == ReplicationMode::FullTable {
        sql(&format!("DELETE FROM {}", quote(table)))?;
    }
    let (staged, table_q) = (quote(staging), quote(table));
    let insert = match (&config.key, mode) {
        // Upsert: the table's rows with a staged key go; of rows staged twice, the last stays.
        (Some(key), ReplicationMode::Incremental) => {
            let key = quote(key);
            if !create {
                sql(&format!(
                    "DELETE FROM {table_q} WHERE {key} IN (SELECT {key} FROM {staged})"
                ))?;
            }
            format!(
                "INSERT INTO {table_q} ({list}) SELECT {list} FROM {staged} \
                 WHERE {SEQ} IN (SELECT MAX({SEQ}) FROM {staged} GROUP BY {key})"
            )
        }
        _ => format!("INSERT INTO {table_q} ({list}) SELECT {list} FROM {staged} ORDER BY {SEQ}"),
    };
    tx.execute_batch(&insert).map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            PluginError::data(format!(
                "table `{table}` refused the rows: {e} (a key repeated in the data, or a \
                 constraint of the table)"
            ))
        }
        _ => sql_error(path, e),
    })?;
    sql(&format!("DROP TABLE {staged}"))?;
    Ok(())
}

/// Inserts batches into the staging, one transaction per batch.
struct SqliteWriter {
    conn: Connection,
    config: Arc<SqliteTargetConfig>,
    staging: String,
    run: Arc<Run>,
    /// The staging's columns and the INSERT statement for them.
    insert: Option<(Vec<String>, String)>,
}

impl SqliteWriter {
    /// The staging's columns, creating the staging from `batch` when no writer did yet.
    fn columns(&mut self, batch: &RecordBatch) -> Result<(Vec<String>, String)> {
        if let Some(insert) = &self.insert {
            return Ok(insert.clone());
        }
        let mut shared = self.run.columns.lock().unwrap_or_else(|p| p.into_inner());
        let columns = match &*shared {
            Some(columns) => columns.clone(),
            None => {
                let columns: Vec<(String, &'static str)> = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), declared_type(f.data_type())))
                    .collect();
                if let Some((name, _)) = columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(SEQ)) {
                    return Err(PluginError::data(format!(
                        "the data has a column named `{name}`, a name the target keeps for itself"
                    )));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some((name, _)) = columns
                    .iter()
                    .find(|(n, _)| !seen.insert(n.to_ascii_lowercase()))
                {
                    return Err(PluginError::data(format!(
                        "the data has two columns named `{name}` (SQLite ignores case)"
                    )));
                }
                let ddl = format!(
                    "CREATE TABLE {} ({} INTEGER PRIMARY KEY, {})",
                    quote(&self.staging),
                    quote(SEQ),
                    columns
                        .iter()
                        .map(|(n, t)| format!("{} {t}", quote(n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.conn
                    .execute_batch(&ddl)
                    .map_err(|e| sql_error(&self.config.path, e))?;
                *shared = Some(columns.clone());
                columns
            }
        };
        let names: Vec<String> = columns.into_iter().map(|(n, _)| n).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&self.staging),
            names
                .iter()
                .map(|n| quote(n))
                .collect::<Vec<_>>()
                .join(", "),
            vec!["?"; names.len()].join(", ")
        );
        self.insert = Some((names.clone(), sql.clone()));
        Ok((names, sql))
    }
}

impl Writer for SqliteWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let (names, sql) = self.columns(&batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        let batch_names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        if batch_names.len() != names.len() || batch_names.iter().zip(&names).any(|(a, b)| *a != b)
        {
            return Err(PluginError::data(format!(
                "a batch has the columns {} where the first had {}",
                listed(&batch_names.into_iter().cloned().collect::<Vec<_>>()),
                listed(&names)
            )));
        }
        let encoders = batch
            .columns()
            .iter()
            .zip(&names)
            .map(|(array, name)| Encoder::new(array, name))
            .collect::<Result<Vec<_>>>()?;
        let path = self.config.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path, e))?;
        {
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| sql_error(&path, e))?;
            for row in 0..batch.num_rows() {
                for (i, (encoder, name)) in encoders.iter().zip(&names).enumerate() {
                    let value = encoder.value(row).map_err(|why| {
                        PluginError::data(format!("column `{name}`, row {row} of a batch: {why}"))
                    })?;
                    stmt.raw_bind_parameter(i + 1, value)
                        .map_err(|e| sql_error(&path, e))?;
                }
                stmt.raw_execute().map_err(|e| sql_error(&path, e))?;
            }
        }
        tx.commit().map_err(|e| sql_error(&path, e))
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use serde_json::json;

    fn batch(columns: &[(&str, ArrayRef)]) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.iter().map(|(_, a)| a.clone()).collect(),
        )
        .unwrap()
    }

    fn ids_names(ids: &[i64], names: &[&str]) -> RecordBatch {
        batch(&[
            ("id", Arc::new(Int64Array::from(ids.to_vec()))),
            ("name", Arc::new(StringArray::from(names.to_vec()))),
        ])
    }

    fn target(path: &Path, extra: Value) -> SqliteTarget {
        let mut config = json!({"path": path, "table": "t", "key": "id"});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        SqliteTarget::new(serde_json::from_value(config).unwrap()).unwrap()
    }

    fn context(mode: ReplicationMode, concurrency: usize) -> WriteContext {
        WriteContext {
            mode,
            run_id: "r1".into(),
            concurrency,
            checkpoint: None,
        }
    }

    /// Writes `batches` with two writers and commits; the commit's error when it fails (the
    /// run then aborted).
    fn load(t: &mut SqliteTarget, mode: ReplicationMode, batches: Vec<RecordBatch>) -> Result<()> {
        let context = context(mode, 2);
        t.open(&context)?;
        let mut writers = [t.writer(0)?, t.writer(1)?];
        for (i, b) in batches.into_iter().enumerate() {
            writers[i % 2].write(b)?;
        }
        for w in &mut writers {
            w.close()?;
        }
        drop(writers);
        match t.commit() {
            Ok(()) => Ok(()),
            Err(e) => {
                t.abort()?;
                Err(e)
            }
        }
    }

    fn rows(path: &Path, sql: &str) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    ValueRef::Null => "NULL".to_owned(),
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) => v.to_string(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Blob(b) => format!("{b:?}"),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    }

    #[test]
    fn a_full_load_replaces_the_rows_and_keeps_the_tables_definition_and_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, extra TEXT DEFAULT 'x');
                 CREATE INDEX t_name ON t (name);
                 INSERT INTO t (id, name) VALUES (1, 'old'), (9, 'gone');",
            )
            .unwrap();
        let mut t = target(&path, json!({}));
        assert_eq!(t.get_offset().unwrap(), Some(json!(9)));
        load(
            &mut t,
            ReplicationMode::FullTable,
            vec![ids_names(&[1, 2], &["a", "b"]), ids_names(&[3], &["c"])],
        )
        .unwrap();
        assert_eq!(
            rows(&path, "SELECT id, name, extra FROM t ORDER BY id"),
            ["1|a|x", "2|b|x", "3|c|x"]
        );
        assert_eq!(
            rows(&path, "SELECT name FROM sqlite_master ORDER BY name"),
            ["t", "t_name"],
            "the index stays and no staging is left"
        );
        assert_eq!(t.get_offset().unwrap(), Some(json!(3)));
        // A full load of nothing empties the table.
        load(&mut t, ReplicationMode::FullTable, vec![]).unwrap();
        assert!(rows(&path, "SELECT * FROM t").is_empty());
        assert_eq!(t.get_offset().unwrap(), None);
    }

    #[test]
    fn an_incremental_load_upserts_on_the_key_or_appends_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut t = target(&path, json!({}));
        assert_eq!(t.get_offset().unwrap(), None, "no file yet");
        assert!(!path.exists(), "get_offset creates nothing");
        load(
            &mut t,
            ReplicationMode::Incremental,
            vec![ids_names(&[1, 2], &["a", "b"])],
        )
        .unwrap();
        load(
            &mut t,
            ReplicationMode::Incremental,
            vec![ids_names(&[2, 3], &["b2", "c"]), ids_names(&[3], &["c2"])],
        )
        .unwrap();
        assert_eq!(
            rows(&path, "SELECT id, name FROM t ORDER BY id"),
            ["1|a", "2|b2", "3|c2"]
        );
        // The created table has the key as its primary key, and declared types the source
        // reads back.
        let ddl = rows(&path, "SELECT sql FROM sqlite_master WHERE name = 't'");
        assert_eq!(
            ddl,
            ["CREATE TABLE \"t\" (\"id\" INTEGER, \"name\" TEXT, PRIMARY KEY (\"id\"))"]
        );
        // Without a key, INCREMENTAL appends (and there is no offset).
        let mut keyless = SqliteTarget::new(
            serde_json::from_value(json!({"path": path, "table": "log"})).unwrap(),
        )
        .unwrap();
        for _ in 0..2 {
            load(
                &mut keyless,
                ReplicationMode::Incremental,
                vec![ids_names(&[1], &["a"])],
            )
            .unwrap();
        }
        assert_eq!(rows(&path, "SELECT id, name FROM log"), ["1|a", "1|a"]);
        assert_eq!(keyless.get_offset().unwrap(), None);
    }

    #[test]
    fn new_columns_fail_by_default_and_are_added_or_replace_the_table_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, old INTEGER);
                 CREATE INDEX t_name ON t (name);
                 INSERT INTO t VALUES (1, 'kept', 5);",
            )
            .unwrap();
        let wider = || {
            vec![batch(&[
                ("id", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
                ("name", Arc::new(StringArray::from(vec!["new"]))),
                ("qty", Arc::new(Int64Array::from(vec![7]))),
            ])]
        };
        let mut t = target(&path, json!({}));
        let err = load(&mut t, ReplicationMode::FullTable, wider()).unwrap_err();
        let message = err.message();
        assert!(
            message.contains("`qty`") && message.contains("`old`"),
            "{message}"
        );
        assert_eq!(
            rows(&path, "SELECT * FROM t"),
            ["1|kept|5"],
            "the table is as it was"
        );
        assert_eq!(
            rows(&path, "SELECT name FROM sqlite_master ORDER BY name"),
            ["t", "t_name"],
            "and the staging is gone"
        );

        let mut t = target(&path, json!({"on_schema_change": "add_columns"}));
        load(&mut t, ReplicationMode::Incremental, wider()).unwrap();
        assert_eq!(
            rows(&path, "SELECT id, name, old, qty FROM t ORDER BY id"),
            ["1|kept|5|NULL", "2|new|NULL|7"]
        );
        assert_eq!(
            rows(&path, "SELECT name FROM sqlite_master WHERE type = 'index'"),
            ["t_name"]
        );

        let mut t = target(&path, json!({"on_schema_change": "replace"}));
        let err = load(
            &mut t,
            ReplicationMode::Incremental,
            vec![batch(&[
                ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
                ("other", Arc::new(Int64Array::from(vec![1]))),
            ])],
        )
        .unwrap_err();
        assert!(err.message().contains("FULL_TABLE"), "{err}");
        load(
            &mut t,
            ReplicationMode::FullTable,
            vec![batch(&[
                ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
                ("other", Arc::new(Int64Array::from(vec![1]))),
            ])],
        )
        .unwrap();
        assert_eq!(rows(&path, "SELECT * FROM t"), ["3|1"]);
    }

    #[test]
    fn a_failed_load_leaves_the_table_and_removes_a_file_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut t = target(&path, json!({}));
        // A repeated key in a FULL_TABLE load breaks the created table's primary key.
        let err = load(
            &mut t,
            ReplicationMode::FullTable,
            vec![ids_names(&[1, 1], &["a", "b"])],
        )
        .unwrap_err();
        assert!(err.message().contains("repeated"), "{err}");
        assert!(!path.exists(), "the file this run created is gone");

        // A value SQLite cannot hold fails the write, naming the column.
        let mut t = target(&path, json!({}));
        let big = batch(&[
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            (
                "big",
                Arc::new(arrow_array::UInt64Array::from(vec![u64::MAX])),
            ),
        ]);
        let context = context(ReplicationMode::FullTable, 1);
        t.open(&context).unwrap();
        let err = t.writer(0).unwrap().write(big).unwrap_err();
        assert!(err.message().contains("column `big`"), "{err}");
        t.abort().unwrap();
        assert!(!path.exists());
        // The folder must exist.
        let mut t = target(&dir.path().join("missing/db.sqlite"), json!({}));
        let err = t.open(&context).unwrap_err();
        assert!(err.message().contains("does not exist"), "{err}");
    }

    #[test]
    fn names_match_whatever_their_case_and_a_killed_runs_staging_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE T (ID INTEGER PRIMARY KEY, Name TEXT);
                 INSERT INTO T VALUES (1, 'old');
                 CREATE TABLE \"_fastlane_staging|dead|t\" (x);
                 CREATE TABLE \"_fastlane_staging|dead|t2\" (x);",
            )
            .unwrap();
        let mut t = target(&path, json!({}));
        assert_eq!(t.get_offset().unwrap(), Some(json!(1)));
        load(
            &mut t,
            ReplicationMode::Incremental,
            vec![ids_names(&[1, 2], &["new", "b"])],
        )
        .unwrap();
        assert_eq!(rows(&path, "SELECT * FROM T ORDER BY ID"), ["1|new", "2|b"]);
        assert_eq!(
            rows(&path, "SELECT name FROM sqlite_master ORDER BY name"),
            ["T", "_fastlane_staging|dead|t2"],
            "the staging of table `t` left by a dead run is gone, another table's stays"
        );
    }

    #[test]
    fn null_keys_fail_the_load_and_a_column_named_rowid_is_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut t = target(&path, json!({}));
        let with_null = batch(&[
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
        ]);
        let err = load(&mut t, ReplicationMode::FullTable, vec![with_null]).unwrap_err();
        assert!(err.message().contains("NULL"), "{err}");
        let rowid = || {
            batch(&[
                ("id", Arc::new(Int64Array::from(vec![5, 6, 5])) as ArrayRef),
                ("rowid", Arc::new(Int64Array::from(vec![30, 20, 10]))),
            ])
        };
        load(&mut t, ReplicationMode::Incremental, vec![rowid()]).unwrap();
        assert_eq!(
            rows(&path, "SELECT id, \"rowid\" FROM t ORDER BY id"),
            ["5|10", "6|20"],
            "the row staged last wins, whatever the data calls `rowid`"
        );
    }

    #[test]
    fn the_staging_is_counted_for_verification() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut t = target(&path, json!({}));
        let context = context(ReplicationMode::FullTable, 1);
        t.open(&context).unwrap();
        assert_eq!(t.staged_rows().unwrap(), 0);
        let mut w = t.writer(0).unwrap();
        w.write(ids_names(&[1, 2, 3], &["a", "b", "c"])).unwrap();
        w.close().unwrap();
        assert_eq!(t.staged_rows().unwrap(), 3);
        t.commit().unwrap();
        assert_eq!(rows(&path, "SELECT COUNT(*) FROM t"), ["3"]);
    }
}
