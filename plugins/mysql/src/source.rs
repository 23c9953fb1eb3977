//! The `mysql` source: keyset paging on the replication key, partitioned key ranges read in
//! parallel, one-pass custom queries, and resuming after a lost connection.
//!
//! A table is read page by page, `SELECT … WHERE key > last ORDER BY key LIMIT batch_size`,
//! each page one batch, built straight from the binary protocol's rows. The next page is
//! fetched while the host works on the previous one. A lost connection (network error, killed
//! connection, server restart) is retried with backoff: the page is read again after the last
//! key delivered, so nothing is lost or repeated. A key that is not unique is paged safely: a
//! full page's last key value is read whole by a second query before paging continues.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginError, ReadContext, ReadRange, ReplicationMode,
    Result as PluginResult,
};
use fastlane_plugin_support::runtime::{AsyncSource, BatchSender};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};
use serde_json::Value as Json;

use crate::checksum::{checksum_sql, run_checksum};
use crate::columns::{BatchSizes, Layout, ReadOptions, value_text};
use crate::config::MysqlSourceConfig;
use crate::conn::{Connector, RUNTIME, Session, ident, qualified};
use crate::error::{Context, Error, Result, is_lost_error};
use crate::plan::{
    KeyKind, Plan, Range, TableColumn, bounds, choose_key, decimal_cast, key_kind_of, param,
    partitions_between, plain_param, position_json, query_partition, range_expressions,
    refuse_null_keys, select_columns,
};

/// The `mysql` source.
pub struct MysqlSource {
    config: MysqlSourceConfig,
    connector: Connector,
    options: ReadOptions,
}

impl MysqlSource {
    /// Checks the configuration (no I/O).
    pub fn new(config: MysqlSourceConfig) -> PluginResult<Self> {
        config
            .validate()
            .map_err(|problems| PluginError::config(problems.join("; ")))?;
        let options = ReadOptions {
            zero_dates: config.zero_dates,
            time_as: config.time_as,
            tinyint1_as_bool: config.tinyint1_as_bool,
        };
        Ok(Self {
            connector: Connector::new(config.connection()),
            config,
            options,
        })
    }

    fn table_name(&self) -> String {
        format!(
            "`{}`.`{}`",
            self.config.db,
            self.config.table.as_deref().unwrap_or("")
        )
    }

    /// Reads the table's columns and keys and checks the configuration against them.
    async fn plan(&self, conn: &mut Conn, table: &str) -> Result<(Plan, KeyKind)> {
        let db = self.config.db.clone();
        let columns: Vec<(String, String, String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (db.clone(), table.to_owned()),
            )
            .await
            .what(|| format!("reading the columns of {}", self.table_name()))?;
        if columns.is_empty() {
            return Err(Error::NotFound(format!(
                "table {} does not exist (or `{}` may not read it)",
                self.table_name(),
                self.config.username
            )));
        }
        // MariaDB stores JSON as LONGTEXT with a json_valid() check.
        let json_checks: Vec<String> = conn
            .exec(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (db.clone(), table.to_owned()),
            )
            .await
            .unwrap_or_default();
        let is_json = |name: &str| {
            json_checks.iter().any(|c| {
                c.replace(' ', "")
                    .eq_ignore_ascii_case(&format!("json_valid(`{name}`)"))
            })
        };
        let primary: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
                 ORDER BY SEQ_IN_INDEX",
                (db.clone(), table.to_owned()),
            )
            .await
            .what(|| format!("reading the keys of {}", self.table_name()))?;
        let table_columns: Vec<TableColumn> = columns
            .iter()
            .map(|c| TableColumn {
                name: c.0.clone(),
                column_type: c.1.clone(),
                data_type: c.2.clone(),
                nullable: c.3 == "YES",
            })
            .collect();
        let shown = self.table_name();
        let key_column = choose_key(self.config.key.as_deref(), &primary, &table_columns, &shown)?;
        let key = key_column.name.clone();
        let kind = key_kind_of(key_column)?;
        let selected =
            select_columns(self.config.columns.as_deref(), &table_columns, &key, &shown)?;
        let unique_indexes: Vec<(String, u32)> = conn
            .exec(
                "SELECT INDEX_NAME, COUNT(*) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
                 GROUP BY INDEX_NAME HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME = ?) = 1",
                (db.clone(), table.to_owned(), key.clone()),
            )
            .await
            .what(|| format!("reading the indexes of {}", self.table_name()))?;
        let indexed: Option<u32> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = ? AND COLUMN_NAME = ? AND SEQ_IN_INDEX = 1",
                (db.clone(), table.to_owned(), key.clone()),
            )
            .await
            .what(|| format!("reading the indexes of {}", self.table_name()))?;
        if indexed.unwrap_or(0) == 0 {
            log::warn!(
                "replication key `{key}` of {} has no index: every page query scans the table",
                self.table_name()
            );
        }
        if key_column.nullable {
            let nulls: Option<u8> = conn
                .query_first(format!(
                    "SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1",
                    qualified(&db, table),
                    ident(&key)
                ))
                .await
                .what(|| format!("checking `{key}` for NULLs"))?;
            refuse_null_keys(key_column, nulls.is_some(), &shown)?;
        }
        let column_types = columns
            .iter()
            .filter(|c| selected.contains(&c.0))
            .map(|c| {
                let t = if is_json(&c.0) {
                    "json".to_owned()
                } else {
                    c.1.clone()
                };
                (c.0.clone(), t)
            })
            .collect();
        let select = format!(
            "SELECT {} FROM {}",
            selected
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            qualified(&db, table)
        );
        Ok((
            Plan {
                select,
                table: Some(qualified(&db, table)),
                key,
                key_unique: !unique_indexes.is_empty(),
                key_param: decimal_cast(&key_column.column_type).unwrap_or_else(plain_param),
                key_text: kind == KeyKind::Text,
                column_types,
            },
            kind,
        ))
    }

    /// Splits `[min, max]` of the key into `n` ranges.
    async fn split(
        &self,
        conn: &mut Conn,
        plan: &Plan,
        kind: KeyKind,
        after: Option<&Json>,
        n: usize,
    ) -> Result<Vec<Json>> {
        let table = self.config.table.as_deref().unwrap_or_default();
        let key = ident(&plan.key);
        let (expr_min, expr_max) = range_expressions(kind, &plan.key)?;
        let mut sql = format!(
            "SELECT {expr_min}, {expr_max} FROM {}",
            qualified(&self.config.db, table)
        );
        let mut params = Vec::new();
        if let Some(a) = after {
            sql.push_str(&format!(" WHERE {key} > {}", plan.key_param));
            params.push(param(a));
        }
        let row: Option<Row> = conn
            .exec_first(sql, Params::Positional(params))
            .await
            .what(|| format!("reading the range of `{}`", plan.key))?;
        let Some(row) = row else { return Ok(vec![]) };
        match (row.as_ref(0), row.as_ref(1)) {
            (Some(lo), Some(hi)) => Ok(bounds(kind, lo, hi, n)),
            _ => Ok(vec![]),
        }
    }

    async fn partitions_async(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let mut session = Session::open(self.connector.clone()).await?;
        let conn = session.conn().await?;
        let after = fastlane_plugin_support::keys::read_after(
            context.mode,
            context.start_offset.as_ref(),
            self.config.offset.as_ref(),
        );
        let partitions = match &self.config.table {
            None => {
                if context.mode == ReplicationMode::Incremental {
                    return Err(Error::Config(
                        "INCREMENTAL mode needs `table` and `key`; a `query` is read whole".into(),
                    ));
                }
                vec![query_partition(
                    self.config.query.clone().unwrap_or_default(),
                )]
            }
            Some(table) => {
                let (plan, kind) = self.plan(conn, table).await?;
                let bounds = match &self.config.partition_bounds {
                    Some(b) => {
                        let mut b = b.clone();
                        b.dedup();
                        b
                    }
                    None if self.config.partitions > 1 => {
                        self.split(conn, &plan, kind, after.as_ref(), self.config.partitions)
                            .await?
                    }
                    None => vec![],
                };
                partitions_between(&plan, after.as_ref(), bounds)
            }
        };
        session.close().await;
        Ok(partitions)
    }
}

impl AsyncSource for MysqlSource {
    type Error = Error;

    async fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        self.partitions_async(context).await
    }

    fn read(&self, partition: &Partition) -> PluginResult<Box<dyn BatchStream>> {
        self.open_stream(partition, ReadRange::default())
    }

    /// `SELECT COUNT(*)` over the partition's key range (or over the query's result).
    async fn count(&self, partition: &Partition) -> PluginResult<u64> {
        let plan: Plan = serde_json::from_value(partition.spec["plan"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let range: Option<Range> = serde_json::from_value(partition.spec["range"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let (sql, params) = count_statement(&plan, range.as_ref());
        let connector = self.connector.clone();
        let counted = async move {
            let mut session = Session::open_retrying(connector).await?;
            let n: Option<u64> = session
                .first(&sql, params, "counting the partition's rows")
                .await?;
            session.close().await;
            Ok::<_, Error>(n.unwrap_or(0))
        };
        counted.await.map_err(Into::into)
    }

    /// The checksum of the partition's rows, computed by the server over its select: the
    /// columns' types are those the statement's result set reads as.
    async fn checksum(&self, partition: &Partition) -> PluginResult<Checksum> {
        let plan: Plan = serde_json::from_value(partition.spec["plan"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let range: Option<Range> = serde_json::from_value(partition.spec["range"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let (inner, params) = ranged_select(&plan, range.as_ref());
        let (connector, options) = (self.connector.clone(), self.options);
        let summed = async move {
            let mut session = Session::open_retrying(connector).await?;
            let prepared = inner.clone();
            let columns = session
                .run(|conn| {
                    let sql = prepared.clone();
                    Box::pin(async move {
                        let statement = conn
                            .prep(sql)
                            .await
                            .what(|| "preparing the checksum".to_owned())?;
                        Ok(statement.columns().to_vec())
                    })
                })
                .await?;
            let layout = Layout::new(&columns, &HashMap::new(), options)?;
            let typed: Vec<(String, DataType)> = layout
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let sql =
                checksum_sql(&format!("({inner})"), "fl_sum", &typed).map_err(Error::Config)?;
            run_checksum(session, &sql, params, "computing the partition's checksum").await
        };
        summed.await.map_err(Into::into)
    }

    /// A table read by key resumes after any key; a query is read in one pass.
    fn resumable(&self) -> bool {
        self.config.table.is_some()
    }

    fn read_range(
        &self,
        partition: &Partition,
        range: &ReadRange,
    ) -> PluginResult<Box<dyn BatchStream>> {
        if self.config.table.is_none() {
            return Err(PluginError::unsupported(
                "a `query` is read in one pass and cannot be read in part",
            ));
        }
        self.open_stream(partition, range.clone())
    }
}

impl MysqlSource {
    /// Opens a partition, or the part of it inside `part` (keys after `part.after`, up to
    /// `part.upto`).
    fn open_stream(
        &self,
        partition: &Partition,
        part: ReadRange,
    ) -> PluginResult<Box<dyn BatchStream>> {
        let plan: Plan = serde_json::from_value(partition.spec["plan"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let range: Option<Range> = serde_json::from_value(partition.spec["range"].clone())
            .map_err(|e| PluginError::internal(format!("bad partition: {e}")))?;
        let reader = Reader {
            connector: self.connector.clone(),
            plan: Arc::new(plan),
            range,
            part,
            batch_size: self.config.batch_size,
            options: self.options,
        };
        // One finished batch waits for the host at most, and the reader starts the next one
        // only once the host has taken it (`BatchSender::room`): a partition holds at most two
        // batches.
        let what = format!("the reader of partition {}", partition.index);
        Ok(RUNTIME.stream(1, what, move |tx| reader.run(tx)))
    }
}

/// The statement counting a partition's rows: a table's rows in the range straight from the
/// table (InnoDB then counts without reading the columns, several times faster than counting
/// the select), or the query's rows in a derived table.
fn count_statement(plan: &Plan, range: Option<&Range>) -> (String, Vec<Value>) {
    match &plan.table {
        Some(table) => {
            let (conditions, params) = range_conditions(plan, range);
            (
                format!("SELECT COUNT(*) FROM {table}{}", where_clause(&conditions)),
                params,
            )
        }
        None => {
            let (inner, params) = ranged_select(plan, range);
            (
                format!("SELECT COUNT(*) FROM ({inner}) AS fl_count"),
                params,
            )
        }
    }
}

/// A partition's select (a table's, or the query) with the range's conditions.
fn ranged_select(plan: &Plan, range: Option<&Range>) -> (String, Vec<Value>) {
    let (conditions, params) = range_conditions(plan, range);
    (
        format!("{}{}", plan.select, where_clause(&conditions)),
        params,
    )
}

/// The conditions on the key that keep a partition's range, with their parameters.
fn range_conditions(plan: &Plan, range: Option<&Range>) -> (Vec<String>, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(range) = range {
        let key = ident(&plan.key);
        let p = &plan.key_param;
        for (bound, op) in [
            (&range.after, ">"),
            (&range.from, ">="),
            (&range.below, "<"),
        ] {
            if let Some(b) = bound {
                conditions.push(format!("{key} {op} {p}"));
                params.push(param(b));
            }
        }
    }
    (conditions, params)
}

/// ` WHERE a AND b`, or nothing without conditions.
fn where_clause(conditions: &[String]) -> String {
    match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    }
}

/// Reads one partition on the runtime, sending batches ahead of the consumer.
struct Reader {
    connector: Connector,
    plan: Arc<Plan>,
    range: Option<Range>,
    /// The part of the partition to read (all of it by default).
    part: ReadRange,
    batch_size: usize,
    options: ReadOptions,
}

/// One page: its batch and the key of its last row.
struct Page {
    batch: RecordBatch,
    rows: usize,
    last: Option<Value>,
    /// Rows at the end of the page that share the last key.
    tie_start: usize,
}

impl Reader {
    async fn run(self, tx: BatchSender) -> Result<()> {
        let mut session = Session::open_retrying(self.connector.clone()).await?;
        match &self.range {
            None => self.run_query(&mut session, &tx).await?,
            Some(range) => self.run_pages(&mut session, range, &tx).await?,
        }
        session.close().await;
        Ok(())
    }

    /// A custom query, in one pass; a lost connection is retried only before the first batch.
    async fn run_query(&self, session: &mut Session, tx: &BatchSender) -> Result<()> {
        let mut sent = false;
        let mut since: Option<std::time::Instant> = None;
        loop {
            let result = self.query_pass(session, tx, &mut sent).await;
            match result {
                Err(e) if is_lost_error(&e) && !sent => {
                    let started = *since.get_or_insert_with(std::time::Instant::now);
                    if started.elapsed() >= self.connector.retry_budget() {
                        return Err(e);
                    }
                    log::warn!("lost the connection before the first batch ({e}); retrying");
                    session.drop_connection();
                    session.conn().await?;
                }
                Err(e) if is_lost_error(&e) => {
                    return Err(Error::Data(format!(
                        "lost the connection in the middle of `query`, which cannot be resumed \
                         (only tables are read by key): {e}"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn query_pass(
        &self,
        session: &mut Session,
        tx: &BatchSender,
        sent: &mut bool,
    ) -> Result<()> {
        let conn = session.conn().await?;
        // The result is read as the host takes batches; a slow target must not make the server
        // give up writing it (net_write_timeout defaults to 60 s).
        conn.query_drop("SET SESSION net_write_timeout = 86400")
            .await
            .what(|| "preparing the session".to_owned())?;
        let mut result = conn
            .exec_iter(self.plan.select.as_str(), ())
            .await
            .what(|| "running `query`".to_owned())?;
        let layout = Layout::new(result.columns_ref(), &HashMap::new(), self.options)?;
        let mut builders = layout.builders(self.batch_size.min(65_536));
        let mut count = 0u64;
        let mut stream = result
            .stream::<Row>()
            .await
            .what(|| "running `query`".to_owned())?;
        if stream.is_none() {
            return Err(no_result_set()).what(|| "running `query`".to_owned());
        }
        if let Some(stream) = stream.as_mut() {
            use futures_util::StreamExt;
            while let Some(row) = stream.next().await {
                let row = row.what(|| "reading the result of `query`".to_owned())?;
                count += 1;
                builders.push(&row, || format!("(row {count})"))?;
                if builders.rows() >= self.batch_size {
                    let batch = builders.finish()?;
                    *sent = true;
                    if !tx.send(batch).await || !tx.room().await {
                        return Ok(());
                    }
                }
            }
        }
        drop(stream);
        if builders.rows() > 0 || !*sent {
            let batch = builders.finish()?;
            *sent = true;
            tx.send(batch).await;
        }
        Ok(())
    }

    /// Keyset paging over a key range.
    async fn run_pages(
        &self,
        session: &mut Session,
        range: &Range,
        tx: &BatchSender,
    ) -> Result<()> {
        let key = ident(&self.plan.key);
        let p = &self.plan.key_param;
        // A resumed read starts after the position it was given.
        let mut cursor: Option<Value> = self.part.after.as_ref().map(param);
        let mut sent_any = false;
        // The previous page's string sizes, to size the next page's builders.
        let mut sizes: Option<BatchSizes> = None;
        loop {
            if !tx.room().await {
                return Ok(());
            }
            // The page's conditions: after the cursor (or the offset and the lower bound on the
            // first page), below the upper bound.
            let mut conditions = Vec::new();
            let mut params = Vec::new();
            match &cursor {
                Some(c) => {
                    conditions.push(format!("{key} > {p}"));
                    params.push(c.clone());
                }
                None => {
                    if let Some(a) = &range.after {
                        conditions.push(format!("{key} > {p}"));
                        params.push(param(a));
                    }
                    if let Some(f) = &range.from {
                        conditions.push(format!("{key} >= {p}"));
                        params.push(param(f));
                    }
                }
            }
            if let Some(b) = &range.below {
                conditions.push(format!("{key} < {p}"));
                params.push(param(b));
            }
            if let Some(u) = &self.part.upto {
                conditions.push(format!("{key} <= {p}"));
                params.push(param(u));
            }
            let mut sql = self.plan.select.clone();
            if !conditions.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions.join(" AND "));
            }
            let page_sql = sql.clone();
            sql.push_str(&format!(" ORDER BY {key} LIMIT {}", self.batch_size));
            let page = self
                .page(session, &sql, params.clone(), sizes.as_ref())
                .await?;
            if page.rows > 0 {
                sizes = Some(BatchSizes::of(&page.batch));
            }
            let full = page.rows >= self.batch_size;
            let Some(last) = page.last.clone() else {
                // An empty page ends the partition; send one empty batch if nothing was sent,
                // so the host learns the schema.
                if !sent_any {
                    tx.send(page.batch).await;
                }
                return Ok(());
            };
            let position = position_json(&last);
            if full && !self.plan.key_unique {
                // The last key's rows may continue past the page: keep the rows before them and
                // read that key's rows whole. Text keys are equal by their collation (`a` = `A`,
                // trailing spaces), which bytes cannot tell: the server picks the rows before.
                let head = if self.plan.key_text {
                    let mut sql = page_sql.clone();
                    sql.push_str(if conditions.is_empty() {
                        " WHERE "
                    } else {
                        " AND "
                    });
                    sql.push_str(&format!("{key} < {p} ORDER BY {key}"));
                    let mut params = params;
                    params.push(last.clone());
                    self.page(session, &sql, params, sizes.as_ref())
                        .await?
                        .batch
                } else {
                    page.batch.slice(0, page.tie_start)
                };
                let mut sql = self.plan.select.clone();
                sql.push_str(&format!(" WHERE {key} = {p}"));
                let ties = self.page(session, &sql, vec![last.clone()], None).await?;
                // The head and the ties go as one batch: the position after it is the last key,
                // whose rows it holds whole.
                let whole = arrow_select::concat::concat_batches(
                    &ties.batch.schema(),
                    [&head, &ties.batch],
                )
                .map_err(|e| {
                    Error::Data(format!("cannot join a page with its last key's rows: {e}"))
                })?;
                if !tx.send_at(whole, position).await {
                    return Ok(());
                }
            } else if !tx.send_at(page.batch, position).await {
                return Ok(());
            }
            sent_any = true;
            if !full {
                return Ok(());
            }
            cursor = Some(last);
        }
    }

    /// Reads one page, reconnecting and reading it again when the connection is lost.
    async fn page(
        &self,
        session: &mut Session,
        sql: &str,
        params: Vec<Value>,
        sizes: Option<&BatchSizes>,
    ) -> Result<Page> {
        let plan = self.plan.clone();
        let sizes = sizes.cloned();
        let options = self.options;
        let batch_size = self.batch_size;
        session
            .run(move |conn| {
                let sql = sql.to_owned();
                let params = params.clone();
                let plan = plan.clone();
                let sizes = sizes.clone();
                Box::pin(async move {
                    read_page(
                        conn,
                        &sql,
                        params,
                        &plan,
                        options,
                        batch_size,
                        sizes.as_ref(),
                    )
                    .await
                })
            })
            .await
    }
}

/// The error for a SELECT that came back without its result set.
fn no_result_set() -> mysql_async::Error {
    mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the connection ended before the result set",
    )))
}

async fn read_page(
    conn: &mut Conn,
    sql: &str,
    params: Vec<Value>,
    plan: &Plan,
    options: ReadOptions,
    batch_size: usize,
    sizes: Option<&BatchSizes>,
) -> Result<Page> {
    use futures_util::StreamExt;
    let what = || format!("reading a page of `{}`", plan.key);
    let mut result = conn
        .exec_iter(sql, Params::Positional(params))
        .await
        .what(what)?;
    let columns = result.columns_ref().to_vec();
    let layout = Layout::new(&columns, &plan.column_types, options)?;
    let key_index = columns
        .iter()
        .position(|c| c.name_str() == plan.key)
        .ok_or_else(|| Error::Config(format!("the key `{}` is not selected", plan.key)))?;
    let mut builders = layout.builders_like(batch_size.min(65_536), sizes);
    let mut last: Option<Value> = None;
    let mut tie_start = 0;
    let Some(mut stream) = result.stream::<Row>().await.what(what)? else {
        // A SELECT always has a result set: without one the connection broke under it.
        return Err(no_result_set()).what(what);
    };
    {
        while let Some(row) = stream.next().await {
            let row = row.what(what)?;
            let key = row.as_ref(key_index).cloned().unwrap_or(Value::NULL);
            builders.push(&row, || value_text(&key))?;
            if last.as_ref() != Some(&key) {
                tie_start = builders.rows() - 1;
                last = Some(key);
            }
        }
    }
    let rows = builders.rows();
    debug_assert!(builders.consistent());
    Ok(Page {
        batch: builders.finish()?,
        rows,
        last,
        tie_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table_plan() -> Plan {
        Plan {
            select: "SELECT `id`, `doc` FROM `db`.`t`".into(),
            ..crate::plan::tests::test_plan()
        }
    }

    fn range_of(p: &Partition) -> Range {
        serde_json::from_value(p.spec["range"].clone()).unwrap()
    }

    #[test]
    fn a_table_is_counted_straight_from_the_table_with_the_ranges_conditions() {
        let parts = partitions_between(&table_plan(), Some(&json!(5)), vec![json!(10)]);
        let (sql, params) = count_statement(&table_plan(), Some(&range_of(&parts[0])));
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM `db`.`t` WHERE `id` > ? AND `id` < ?"
        );
        assert_eq!(params, vec![Value::Int(5), Value::Int(10)]);
        let (sql, params) = count_statement(&table_plan(), Some(&range_of(&parts[1])));
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM `db`.`t` WHERE `id` > ? AND `id` >= ?"
        );
        assert_eq!(params.len(), 2);
        let whole = partitions_between(&table_plan(), None, vec![]);
        let (sql, params) = count_statement(&table_plan(), Some(&range_of(&whole[0])));
        assert_eq!(sql, "SELECT COUNT(*) FROM `db`.`t`");
        assert!(params.is_empty());
        // The read keeps the selected columns.
        let (select, _) = ranged_select(&table_plan(), Some(&range_of(&parts[0])));
        assert_eq!(
            select,
            "SELECT `id`, `doc` FROM `db`.`t` WHERE `id` > ? AND `id` < ?"
        );
    }

    #[test]
    fn a_query_and_a_plan_kept_without_its_table_are_counted_in_a_derived_table() {
        let query = query_partition("SELECT a FROM t WHERE b = 1".into());
        let plan: Plan = serde_json::from_value(query.spec["plan"].clone()).unwrap();
        let (sql, _) = count_statement(&plan, None);
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM (SELECT a FROM t WHERE b = 1) AS fl_count"
        );
        // A checkpoint written before plans named their table.
        let mut kept = serde_json::to_value(table_plan()).unwrap();
        kept.as_object_mut().unwrap().remove("table");
        let plan: Plan = serde_json::from_value(kept).unwrap();
        let (sql, _) = count_statement(&plan, None);
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM (SELECT `id`, `doc` FROM `db`.`t`) AS fl_count"
        );
    }
}
