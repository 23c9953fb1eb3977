//! The batch streams: keyset paging over a table, and one pass over a query.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{BatchStream, PluginError, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement};

use crate::columns::{At, BatchBuilder};
use crate::plan::{TablePlan, set_cursor, sql_error};

/// The output columns of a statement: names and declared types of its first `count` columns.
fn declared_columns(stmt: &Statement<'_>, count: usize) -> Vec<(String, Option<String>)> {
    stmt.columns()
        .into_iter()
        .take(count)
        .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_owned)))
        .collect()
}

/// Reads a table by keyset paging: each page is a query ordered by the key, starting after the
/// last key of the previous page.
pub(crate) struct TableStream {
    conn: Connection,
    path: String,
    plan: TablePlan,
    batch_size: usize,
    /// The last key read (exclusive lower bound of the next page).
    cursor: Option<SqlValue>,
    /// The inclusive upper bound of the partition.
    upper: Option<i64>,
    /// The inclusive upper bound of a range read by a resumed run.
    upto: Option<SqlValue>,
    builder: Option<BatchBuilder>,
    done: bool,
}

impl TableStream {
    /// A stream over the key range `(cursor, upper]` of `plan`'s table, up to `upto` too
    /// when it is given.
    pub(crate) fn new(
        conn: Connection,
        path: String,
        plan: TablePlan,
        batch_size: usize,
        (cursor, upper): (Option<SqlValue>, Option<i64>),
        upto: Option<SqlValue>,
    ) -> Self {
        Self {
            conn,
            path,
            plan,
            batch_size,
            cursor,
            upper,
            upto,
            builder: None,
            done: false,
        }
    }

    /// The page query for the current bounds, and its parameters.
    fn page(&self) -> (String, Vec<SqlValue>) {
        let plan = &self.plan;
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if let Some(cursor) = &self.cursor {
            params.push(cursor.clone());
            conditions.push(format!("{} > ?{}", plan.key_sql, params.len()));
        }
        if let Some(upper) = self.upper {
            params.push(SqlValue::Integer(upper));
            conditions.push(format!("{} <= ?{}", plan.key_sql, params.len()));
        }
        if let Some(upto) = &self.upto {
            params.push(upto.clone());
            conditions.push(format!("{} <= ?{}", plan.key_sql, params.len()));
        }
        params.push(SqlValue::Integer(
            i64::try_from(self.batch_size).unwrap_or(i64::MAX),
        ));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {} LIMIT ?{}",
            plan.select_sql,
            plan.table_sql,
            plan.key_sql,
            params.len()
        );
        (sql, params)
    }
}

impl BatchStream for TableStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        let (sql, params) = self.page();
        let path = self.path.as_str();
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| sql_error(path, e))?;
        let builder = self.builder.get_or_insert_with(|| {
            BatchBuilder::new(
                declared_columns(&stmt, self.plan.output_columns),
                self.batch_size,
            )
        });
        let width = builder.width();
        let key_index = self.plan.key_index;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| sql_error(path, e))?;
        while let Some(row) = rows.next().map_err(|e| sql_error(path, e))? {
            let key = row.get_ref(key_index).map_err(|e| sql_error(path, e))?;
            if matches!(key, ValueRef::Null) {
                return Err(PluginError::data(format!(
                    "the replication key `{}` has NULL values; keyset paging would skip those rows",
                    self.plan.key
                )));
            }
            for index in 0..width {
                let value = row.get_ref(index).map_err(|e| sql_error(path, e))?;
                builder.append(index, value, At::Key(key))?;
            }
            builder.end_row();
            set_cursor(&mut self.cursor, key)?;
        }
        let rows = builder.rows();
        if rows < self.batch_size {
            self.done = true;
        }
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(builder.finish()?))
    }

    /// The last key read: the next page starts after it.
    fn position(&self) -> Option<serde_json::Value> {
        match self.cursor.as_ref()? {
            SqlValue::Integer(i) => Some((*i).into()),
            SqlValue::Real(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number),
            SqlValue::Text(t) => Some(t.clone().into()),
            SqlValue::Null | SqlValue::Blob(_) => None,
        }
    }
}

/// Reads a query in one pass, on a thread of its own (a statement borrows its connection, so
/// the cursor cannot live across calls otherwise), one batch ahead of the consumer.
pub(crate) struct QueryStream {
    batches: Receiver<Result<RecordBatch>>,
    thread: Option<JoinHandle<()>>,
}

impl QueryStream {
    /// Starts reading `query`.
    pub(crate) fn start(
        conn: Connection,
        path: String,
        query: String,
        batch_size: usize,
    ) -> Result<Self> {
        let (sender, batches) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-query".to_owned())
            .spawn(move || {
                if let Err(e) = run_query(&conn, &path, &query, batch_size, &sender) {
                    let _ = sender.send(Err(e));
                }
            })
            .map_err(|e| PluginError::io(format!("cannot start a reader thread: {e}")))?;
        Ok(Self {
            batches,
            thread: Some(thread),
        })
    }
}

fn run_query(
    conn: &Connection,
    path: &str,
    query: &str,
    batch_size: usize,
    sender: &SyncSender<Result<RecordBatch>>,
) -> Result<()> {
    let mut stmt = conn
        .prepare(query)
        .map_err(|e| PluginError::config(format!("invalid `query`: {e}")))?;
    let mut builder = BatchBuilder::new(declared_columns(&stmt, usize::MAX), batch_size);
    let width = builder.width();
    let mut rows = stmt.query([]).map_err(|e| sql_error(path, e))?;
    let mut row_number = 0u64;
    while let Some(row) = rows.next().map_err(|e| sql_error(path, e))? {
        row_number += 1;
        for index in 0..width {
            let value = row.get_ref(index).map_err(|e| sql_error(path, e))?;
            builder.append(index, value, At::Row(row_number))?;
        }
        builder.end_row();
        if builder.rows() >= batch_size && sender.send(Ok(builder.finish()?)).is_err() {
            // The consumer is gone.
            return Ok(());
        }
    }
    if builder.rows() > 0 {
        let _ = sender.send(Ok(builder.finish()?));
    }
    Ok(())
}

impl BatchStream for QueryStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.batches.recv() {
            Ok(batch) => batch.map(Some),
            Err(_) => match self.thread.take().map(JoinHandle::join) {
                Some(Err(_)) => Err(PluginError::internal("the query reader thread panicked")),
                _ => Ok(None),
            },
        }
    }
}
