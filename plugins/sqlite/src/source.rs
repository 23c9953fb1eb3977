//! The `sqlite` source: validation, partitions from the table's plan ([`crate::plan`]), and
//! opening their streams.

use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginError, ReadContext, ReadRange, ReplicationMode, Result,
    Source,
};
use rusqlite::types::Value as SqlValue;

use crate::config::SqliteSourceConfig;
use crate::plan::{RangeSpec, TablePlan, offset_value, open};
use crate::stream::{QueryStream, TableStream};

/// The `sqlite` source: a table read by keyset paging, or a query read in one pass.
#[derive(Debug)]
pub struct SqliteSource {
    config: SqliteSourceConfig,
}

impl SqliteSource {
    /// Checks the configuration: exactly one of `table` and `query`, positive sizes.
    pub fn new(config: SqliteSourceConfig) -> Result<Self> {
        match (&config.table, &config.query) {
            (Some(_), Some(_)) => {
                return Err(PluginError::config(
                    "set either `table` or `query`, not both",
                ));
            }
            (None, None) => return Err(PluginError::config("set `table` or `query`")),
            _ => {}
        }
        if config.query.is_some() && config.columns.is_some() {
            return Err(PluginError::config(
                "`columns` applies to `table` only; select the columns in `query`",
            ));
        }
        if config.columns.as_ref().is_some_and(Vec::is_empty) {
            return Err(PluginError::config("`columns` is empty"));
        }
        if config.batch_size == 0 {
            return Err(PluginError::config("`batch_size` must be at least 1"));
        }
        if config.partitions == 0 {
            return Err(PluginError::config("`partitions` must be at least 1"));
        }
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SqliteSourceConfig {
        &self.config
    }
}

impl Source for SqliteSource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let incremental = context.mode == ReplicationMode::Incremental;
        let path = self.config.path.as_str();
        if incremental && (self.config.query.is_some() || self.config.replication_key.is_none()) {
            return Err(PluginError::config(
                "INCREMENTAL mode needs `table` and `replication_key`",
            ));
        }
        let conn = open(path)?;
        if let Some(query) = &self.config.query {
            conn.prepare(query)
                .map_err(|e| PluginError::config(format!("invalid `query`: {e}")))?;
            if self.config.partitions > 1 {
                log::debug!("`query` is read as one partition");
            }
            let spec = serde_json::to_value(RangeSpec::default()).map_err(PluginError::internal)?;
            return Ok(vec![Partition { index: 0, spec }]);
        }

        let plan = TablePlan::resolve(&conn, &self.config)?;
        plan.check_no_nulls(&conn, path)?;
        let start_offset = if incremental {
            context.start_offset.clone().filter(|v| !v.is_null())
        } else {
            None
        };
        let start = start_offset
            .as_ref()
            .map(offset_value)
            .transpose()?
            .flatten();
        let ranges = plan.split(&conn, path, start.as_ref(), self.config.partitions)?;
        log::debug!(
            "table `{}` read in {} partition(s) on `{}`",
            plan.table,
            ranges.len(),
            plan.key
        );
        ranges
            .into_iter()
            .enumerate()
            .map(|(index, (lower, upper))| {
                let spec = RangeSpec {
                    start_offset: start_offset.clone(),
                    lower,
                    upper,
                };
                Ok(Partition {
                    index,
                    spec: serde_json::to_value(spec).map_err(PluginError::internal)?,
                })
            })
            .collect()
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        self.open_stream(partition, &ReadRange::default())
    }

    /// The checksum of the partition's rows, read again through the source's own reader:
    /// SQLite runs in this process and has no MD5 of its own, so reading the rows costs what
    /// a SQL aggregate would.
    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        Checksum::of_stream(self.read(partition)?.as_mut())
    }

    /// `SELECT COUNT(*)` over the partition's key range (or over the query's result).
    fn count(&self, partition: &Partition) -> Result<u64> {
        let spec: RangeSpec = serde_json::from_value(partition.spec.clone())
            .map_err(|e| PluginError::internal(format!("invalid partition spec: {e}")))?;
        let path = self.config.path.as_str();
        let conn = open(path)?;
        let (sql, params) = match &self.config.query {
            Some(query) => (format!("SELECT COUNT(*) FROM ({query})"), Vec::new()),
            None => {
                let plan = TablePlan::resolve(&conn, &self.config)?;
                let mut conditions = Vec::new();
                let mut params = Vec::new();
                let lower = match (spec.lower, &spec.start_offset) {
                    (Some(lower), _) => Some(SqlValue::Integer(lower)),
                    (None, Some(offset)) => offset_value(offset)?,
                    (None, None) => None,
                };
                if let Some(lower) = lower {
                    params.push(lower);
                    conditions.push(format!("{} > ?{}", plan.key_sql, params.len()));
                }
                if let Some(upper) = spec.upper {
                    params.push(SqlValue::Integer(upper));
                    conditions.push(format!("{} <= ?{}", plan.key_sql, params.len()));
                }
                let filter = if conditions.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conditions.join(" AND "))
                };
                (
                    format!("SELECT COUNT(*) FROM {}{filter}", plan.table_sql),
                    params,
                )
            }
        };
        let n: i64 = conn
            .query_row(&sql, rusqlite::params_from_iter(params), |row| row.get(0))
            .map_err(|e| crate::plan::sql_error(path, e))?;
        Ok(n.max(0) as u64)
    }

    /// A table read by key resumes after any key; a query does not.
    fn resumable(&self) -> bool {
        self.config.table.is_some()
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        if self.config.table.is_none() {
            return Err(PluginError::unsupported(
                "a `query` is read in one pass and cannot be read in part",
            ));
        }
        self.open_stream(partition, range)
    }
}

impl SqliteSource {
    /// Opens a partition, or the part of it inside `range` (keys after `range.after`, up to
    /// `range.upto`).
    fn open_stream(
        &self,
        partition: &Partition,
        range: &ReadRange,
    ) -> Result<Box<dyn BatchStream>> {
        let spec: RangeSpec = serde_json::from_value(partition.spec.clone())
            .map_err(|e| PluginError::internal(format!("invalid partition spec: {e}")))?;
        let path = self.config.path.clone();
        let conn = open(&path)?;
        if let Some(query) = &self.config.query {
            return Ok(Box::new(QueryStream::start(
                conn,
                path,
                query.clone(),
                self.config.batch_size,
            )?));
        }
        let plan = TablePlan::resolve(&conn, &self.config)?;
        let cursor = match (&range.after, spec.lower) {
            (Some(after), _) => offset_value(after)?,
            (None, Some(lower)) => Some(SqlValue::Integer(lower)),
            (None, None) => match &spec.start_offset {
                Some(offset) => offset_value(offset)?,
                None => None,
            },
        };
        let upto = range.upto.as_ref().map(offset_value).transpose()?.flatten();
        Ok(Box::new(TableStream::new(
            conn,
            path,
            plan,
            self.config.batch_size,
            (cursor, spec.upper),
            upto,
        )))
    }
}
