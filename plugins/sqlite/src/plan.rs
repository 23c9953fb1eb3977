//! The plan of a table read: the table resolved against the database (what to select, how to
//! page it), its key ranges, and the helpers the source and its streams share.

use std::path::Path;
use std::time::Duration;

use fastlane_plugin_api::{PluginError, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SqliteSourceConfig;

/// What a partition carries: the start offset and its key range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RangeSpec {
    /// In INCREMENTAL mode, the target's offset: only keys above it are read.
    pub start_offset: Option<Value>,
    /// The exclusive lower bound of the key range (none: from the start offset, or the start).
    pub lower: Option<i64>,
    /// The inclusive upper bound of the key range (none: to the end).
    pub upper: Option<i64>,
}

/// A table resolved against the database: what to select and how to page it.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    /// The table name as configured.
    pub table: String,
    /// The quoted table name.
    pub table_sql: String,
    /// The replication key as configured (`rowid` by default).
    pub key: String,
    /// The quoted key.
    pub key_sql: String,
    /// The select list; the key comes last when it is not among the output columns.
    pub select_sql: String,
    /// How many leading columns of the select list are output.
    pub output_columns: usize,
    /// The position of the key in the select list.
    pub key_index: usize,
    /// Whether the key is a column of the table (else it is the rowid).
    pub key_is_column: bool,
}

/// Quotes an SQL identifier: `"` around it, inner `"` doubled.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Names in backticks, comma-separated, for messages.
pub(crate) fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_rowid_name(name: &str) -> bool {
    ["rowid", "_rowid_", "oid"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

/// An SQLite error while reading `path`.
pub(crate) fn sql_error(path: &str, e: rusqlite::Error) -> PluginError {
    PluginError::io(format!("cannot read `{path}`: {e}"))
}

/// Opens the database read-only; a missing file is a not-found error.
pub(crate) fn open(path: &str) -> Result<Connection> {
    if !path.starts_with("file:") && !Path::new(path).exists() {
        return Err(PluginError::not_found(format!("`{path}` does not exist")));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| PluginError::io(format!("cannot open `{path}`: {e}")))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| sql_error(path, e))?;
    Ok(conn)
}

/// Converts a JSON offset into an SQLite value: numbers bind as INTEGER or REAL, strings as
/// TEXT; `null` means no offset.
pub(crate) fn offset_value(offset: &Value) -> Result<Option<SqlValue>> {
    Ok(match offset {
        Value::Null => None,
        Value::Bool(b) => Some(SqlValue::Integer(i64::from(*b))),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(SqlValue::Integer(i)),
            (None, Some(f)) => Some(SqlValue::Real(f)),
            _ => return Err(PluginError::data(format!("unsupported start offset `{n}`"))),
        },
        Value::String(s) => Some(SqlValue::Text(s.clone())),
        other => {
            return Err(PluginError::data(format!(
                "unsupported start offset `{other}`"
            )));
        }
    })
}

impl TablePlan {
    /// Checks that the table, the requested columns and the key exist, and plans the select.
    pub(crate) fn resolve(conn: &Connection, config: &SqliteSourceConfig) -> Result<Self> {
        let path = config.path.as_str();
        let table = config.table.clone().unwrap_or_default();
        let found: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                 AND name = ?1 COLLATE NOCASE",
                [&table],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| sql_error(path, e))?;
        if found.is_none() {
            let tables = table_names(conn, path)?;
            return Err(PluginError::not_found(if tables.is_empty() {
                format!("table `{table}` does not exist; `{path}` has no tables")
            } else {
                format!(
                    "table `{table}` does not exist; tables: {}",
                    listed(&tables)
                )
            }));
        }
        let table_sql = quote(&table);
        let names: Vec<String> = conn
            .prepare(&format!("SELECT * FROM {table_sql} LIMIT 0"))
            .map_err(|e| sql_error(path, e))?
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let has =
            |list: &[String], name: &str| list.iter().position(|n| n.eq_ignore_ascii_case(name));
        let missing = |what: String| {
            PluginError::not_found(format!(
                "{what} does not exist in table `{table}`; columns: {}",
                listed(&names)
            ))
        };
        if let Some(c) = config
            .columns
            .iter()
            .flatten()
            .find(|c| has(&names, c).is_none())
        {
            return Err(missing(format!("column `{c}`")));
        }

        let key = config
            .replication_key
            .clone()
            .unwrap_or_else(|| "rowid".to_owned());
        let key_is_column = has(&names, &key).is_some();
        // A rowid is named bare: quoted, it would read as a string literal in a table without
        // one (SQLite's double-quoted string fallback).
        let key_sql = if key_is_column {
            quote(&key)
        } else {
            key.to_ascii_lowercase()
        };
        if !key_is_column {
            if !is_rowid_name(&key) {
                return Err(missing(format!("the replication key `{key}`")));
            }
            let probe = format!("SELECT {key_sql} FROM {table_sql} LIMIT 0");
            if conn.prepare(&probe).is_err() {
                return Err(PluginError::config(format!(
                    "table `{table}` has no rowid; set `replication_key`"
                )));
            }
        }

        let (mut select_sql, selected) = match &config.columns {
            Some(columns) => (
                columns
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                columns.clone(),
            ),
            None => ("*".to_owned(), names.clone()),
        };
        let output_columns = selected.len();
        let key_index = match has(&selected, &key) {
            Some(index) => index,
            None => {
                select_sql.push_str(", ");
                select_sql.push_str(&key_sql);
                output_columns
            }
        };
        Ok(Self {
            table,
            table_sql,
            key,
            key_sql,
            select_sql,
            output_columns,
            key_index,
            key_is_column,
        })
    }

    /// Fails when the key has NULL values (keyset paging would skip those rows).
    pub(crate) fn check_no_nulls(&self, conn: &Connection, path: &str) -> Result<()> {
        if !self.key_is_column {
            return Ok(());
        }
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1",
            self.table_sql, self.key_sql
        );
        let null: Option<i64> = conn
            .query_row(&sql, [], |row| row.get(0))
            .optional()
            .map_err(|e| sql_error(path, e))?;
        if null.is_some() {
            return Err(PluginError::data(format!(
                "the replication key `{}` has NULL values; keyset paging would skip those rows",
                self.key
            )));
        }
        Ok(())
    }

    /// Splits the key range after `start` into at most `parts` contiguous ranges
    /// `(exclusive lower, inclusive upper)`; one unbounded range when the key is not an integer
    /// or there is no row.
    pub(crate) fn split(
        &self,
        conn: &Connection,
        path: &str,
        start: Option<&SqlValue>,
        parts: usize,
    ) -> Result<Vec<(Option<i64>, Option<i64>)>> {
        let whole = vec![(None, None)];
        if parts <= 1 {
            return Ok(whole);
        }
        let mut sql = format!(
            "SELECT MIN({k}), MAX({k}) FROM {t}",
            k = self.key_sql,
            t = self.table_sql
        );
        let mut params: Vec<&SqlValue> = Vec::new();
        if let Some(start) = start {
            sql.push_str(&format!(" WHERE {} > ?1", self.key_sql));
            params.push(start);
        }
        let (min, max) = conn
            .query_row(&sql, rusqlite::params_from_iter(params), |row| {
                Ok((row.get_ref(0)?.into(), row.get_ref(1)?.into()))
            })
            .map_err(|e| sql_error(path, e))?;
        let (SqlValue::Integer(min), SqlValue::Integer(max)) = (min, max) else {
            return Ok(whole);
        };
        // Exclusive lower bound and inclusive upper bound of the whole range.
        let lo = i128::from(min) - 1;
        let span = (i128::from(max) - lo) as u128;
        let n = (parts as u128).min(span).max(1);
        let bound = |i: u128| -> Result<i64> {
            let offset = (span * i / n) as i128;
            i64::try_from(lo + offset).map_err(|_| PluginError::internal("key range overflow"))
        };
        let mut ranges = Vec::with_capacity(n as usize);
        for i in 0..n {
            let lower = if i == 0 { None } else { Some(bound(i)?) };
            let upper = if i + 1 == n {
                None
            } else {
                Some(bound(i + 1)?)
            };
            ranges.push((lower, upper));
        }
        Ok(ranges)
    }
}

fn table_names(conn: &Connection, path: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(|e| sql_error(path, e))?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_error(path, e))?;
    Ok(names)
}

/// Copies a key value into `cursor`, reusing its buffer.
pub(crate) fn set_cursor(cursor: &mut Option<SqlValue>, key: ValueRef<'_>) -> Result<()> {
    match (cursor.as_mut(), key) {
        (Some(SqlValue::Text(s)), ValueRef::Text(t)) => {
            s.clear();
            s.push_str(
                std::str::from_utf8(t)
                    .map_err(|_| PluginError::data("a replication key value is not valid UTF-8"))?,
            );
        }
        (Some(SqlValue::Blob(b)), ValueRef::Blob(t)) => {
            b.clear();
            b.extend_from_slice(t);
        }
        (_, ValueRef::Text(t)) => {
            let s = std::str::from_utf8(t)
                .map_err(|_| PluginError::data("a replication key value is not valid UTF-8"))?;
            *cursor = Some(SqlValue::Text(s.to_owned()));
        }
        (_, key) => *cursor = Some(key.into()),
    }
    Ok(())
}
