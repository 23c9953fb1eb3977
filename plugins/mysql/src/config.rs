//! Configuration of the `mysql` source and target.
//!
//! Both keep every field of the original connectors (`host`, `port`, `username`, `password`,
//! `db`, `table`, `key`, `batch_size`, `secret`, `secret_region`) and add what a production
//! load needs. `validate()` is pure; connecting happens later.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn default_port() -> u16 {
    3306
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_username() -> String {
    "root".to_owned()
}

fn default_batch_size() -> usize {
    65_536
}

fn default_partitions() -> usize {
    1
}

fn default_retry_secs() -> u64 {
    60
}

fn default_connect_timeout() -> u64 {
    10
}

/// What to do with zero dates (`0000-00-00`, `0000-00-00 00:00:00`) and dates with a zero month
/// or day, which Arrow cannot represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZeroDates {
    /// Fail the run with an error naming the column and key.
    #[default]
    Error,
    /// Read them as NULL.
    Null,
}

/// How MySQL `TIME` columns are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeAs {
    /// Arrow `Time64(µs)`, a time of day; a value outside 00:00:00–23:59:59.999999 is an error.
    #[default]
    Time,
    /// Arrow `Duration(µs)`: any MySQL `TIME` value, negative or above 24 hours.
    Duration,
}

/// How the target sends rows to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadMethod {
    /// `bulk` on MariaDB 10.2.7 and later, `load_data` on other servers.
    #[default]
    Auto,
    /// MariaDB's bulk execution (`COM_STMT_BULK_EXECUTE`) of one prepared `INSERT` with arrays
    /// of binary parameters: no text for the server to parse.
    Bulk,
    /// `LOAD DATA LOCAL INFILE` streaming of each batch (needs `local_infile` on the server).
    LoadData,
    /// Multi-row `INSERT … VALUES (…),(…)` statements with bound parameters.
    Insert,
}

/// The connection settings shared by the source and the target.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password (never logged).
    pub password: Option<String>,
    /// Database of the table.
    pub db: String,
    /// Seconds allowed to open one connection.
    pub connect_timeout_secs: u64,
    /// Seconds of reconnect attempts (with backoff) after a lost connection.
    pub retry_timeout_secs: u64,
    /// For a server on this machine, switch to its Unix socket.
    pub prefer_socket: bool,
}

/// Configuration of the `mysql` source.
///
/// Exactly one of `table` and `query` must be given.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// Server host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name (default `root`).
    #[serde(default = "default_username", alias = "user")]
    pub username: String,
    /// Password; use `${VAR}` to take it from the environment. Never logged.
    pub password: Option<String>,
    /// The database (schema) of the table.
    #[serde(alias = "database")]
    pub db: String,
    /// The table to read by keyset paging on `key`. Exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A SELECT statement to read instead of a table, in one pass and as one partition
    /// (FULL_TABLE mode only). Exactly one of `table` and `query`.
    pub query: Option<String>,
    /// The replication key: the column the table is paged on in ascending order, and the one
    /// INCREMENTAL runs continue after. Numeric, string, date or time columns; it must hold no
    /// NULLs. Default: the table's single-column primary key.
    #[serde(alias = "replication_key")]
    pub key: Option<String>,
    /// The columns to read (default: all, in table order).
    #[schemars(length(min = 1))]
    pub columns: Option<Vec<String>>,
    /// Rows per batch, and per page query.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub batch_size: usize,
    /// Splits the key range into this many contiguous ranges read in parallel over separate
    /// connections. Integer, decimal and date/time keys are split between MIN and MAX;
    /// other keys need `partition_bounds`.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1024))]
    pub partitions: usize,
    /// Explicit partition boundaries, ascending: `[b1, b2]` reads `key < b1`, `b1 <= key < b2`
    /// and `key >= b2` as three partitions. Overrides `partitions`.
    #[schemars(length(min = 1))]
    pub partition_bounds: Option<Vec<Value>>,
    /// What to do with zero dates such as `0000-00-00`.
    #[serde(default)]
    pub zero_dates: ZeroDates,
    /// How `TIME` columns are read.
    #[serde(default)]
    pub time_as: TimeAs,
    /// Read `TINYINT(1)` (`BOOL`) columns as Arrow booleans.
    #[serde(default = "yes")]
    pub tinyint1_as_bool: bool,
    /// Seconds allowed to open one connection.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1))]
    pub connect_timeout_secs: u64,
    /// After a lost connection (network error, server restart), seconds of reconnect attempts
    /// with backoff before the run fails. Reading resumes after the last key delivered.
    #[serde(default = "default_retry_secs")]
    pub retry_timeout_secs: u64,
    /// For a server on this machine (a loopback address), switch from TCP to the server's Unix
    /// socket, which is faster.
    #[serde(default = "yes")]
    pub prefer_socket: bool,
    /// AWS Secrets Manager secret holding `host`, `port`, `username` and `password`.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many partitions are read at once (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Read only rows whose key is above this value (the original's starting key, exclusive;
    /// `-1`, its default, reads from the start). In INCREMENTAL runs the target's offset takes
    /// precedence when it has one.
    pub offset: Option<Value>,
}

fn yes() -> bool {
    true
}

/// Configuration of the `mysql` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlTargetConfig {
    /// Server host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name (default `root`).
    #[serde(default = "default_username", alias = "user")]
    pub username: String,
    /// Password; use `${VAR}` to take it from the environment. Never logged.
    pub password: Option<String>,
    /// The database (schema) of the table.
    #[serde(alias = "database")]
    pub db: String,
    /// The table to load; created from the data's schema when missing.
    pub table: String,
    /// The key column: the primary key of a created table, the upsert key of INCREMENTAL
    /// runs and the column whose largest value is the offset. Required for INCREMENTAL.
    #[serde(alias = "replication_key")]
    pub key: Option<String>,
    /// Largest number of rows per statement (a batch is split into statements of at most this
    /// many rows).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub batch_size: usize,
    /// How rows are sent: `auto` (the default: `bulk` on MariaDB, `load_data` elsewhere),
    /// `bulk` (MariaDB's binary bulk execution), `load_data` (LOAD DATA LOCAL INFILE) or
    /// `insert` (multi-row INSERT statements).
    #[serde(default)]
    pub load_method: LoadMethod,
    /// Seconds allowed to open one connection.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1))]
    pub connect_timeout_secs: u64,
    /// After a lost connection, seconds of reconnect attempts with backoff before the run
    /// fails. A batch whose statement was cut off is sent again (idempotent on the key).
    #[serde(default = "default_retry_secs")]
    pub retry_timeout_secs: u64,
    /// For a server on this machine (a loopback address), switch from TCP to the server's Unix
    /// socket, which is faster.
    #[serde(default = "yes")]
    pub prefer_socket: bool,
    /// AWS Secrets Manager secret holding `host`, `port`, `username` and `password`.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many target workers load in parallel (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// When the data has columns the table lacks: `fail` (the default) stops the run naming
    /// them; `add_columns` keeps the table (its indexes and types) and adds them; `replace`
    /// (FULL_TABLE only) replaces the table with one defined by the data.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
}

pub use fastlane_plugin_support::schema::OnSchemaChange;

/// The error for a `secret` that reached the plugin unresolved: the fastlane host resolves it
/// (through the `aws` plugin) before the configuration gets here.
fn secret_unavailable(secret: &str) -> String {
    format!(
        "`secret` `{secret}` was not resolved: run the pipeline with fastlane and the `aws` \
         plugin installed, or give `host`, `username` and `password` (use `${{VAR}}` for the \
         password) instead"
    )
}

fn check_name(field: &str, value: &str, problems: &mut Vec<String>) {
    if value.is_empty() {
        problems.push(format!("`{field}` must not be empty"));
    } else if value.contains('\0') {
        problems.push(format!("`{field}` must not contain NUL characters"));
    }
}

impl MysqlSourceConfig {
    /// Checks the configuration without connecting; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret {
            problems.push(secret_unavailable(secret));
        }
        check_name("db", &self.db, &mut problems);
        match (&self.table, &self.query) {
            (Some(t), None) => check_name("table", t, &mut problems),
            (None, Some(q)) => {
                if q.trim().is_empty() {
                    problems.push("`query` must not be empty".to_owned());
                }
                if fastlane_plugin_support::keys::configured_offset(self.offset.as_ref()).is_some()
                {
                    problems.push(
                        "`offset` needs `table` and `key`; a `query` is read whole".to_owned(),
                    );
                }
                if self.partitions > 1 || self.partition_bounds.is_some() {
                    problems.push(
                        "`partitions` and `partition_bounds` need `table`, not `query`".to_owned(),
                    );
                }
                if self.columns.is_some() {
                    problems.push("`columns` needs `table`; list them in `query`".to_owned());
                }
            }
            (Some(_), Some(_)) => problems.push("give either `table` or `query`, not both".into()),
            (None, None) => problems.push("one of `table` and `query` is required".into()),
        }
        if let Some(k) = &self.key {
            check_name("key", k, &mut problems);
        }
        if let Some(bounds) = &self.partition_bounds {
            let numbers: Option<Vec<f64>> = bounds.iter().map(Value::as_f64).collect();
            if let Some(n) = numbers
                && n.windows(2).any(|w| w[0] >= w[1])
            {
                problems.push(
                    "`partition_bounds` must be strictly ascending (overlapping ranges would \
                     read rows twice)"
                        .to_owned(),
                );
            }
        }
        if let Some(columns) = &self.columns {
            for c in columns {
                check_name("columns", c, &mut problems);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The connection settings.
    pub fn connection(&self) -> Connection {
        Connection {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            password: self.password.clone(),
            db: self.db.clone(),
            connect_timeout_secs: self.connect_timeout_secs,
            retry_timeout_secs: self.retry_timeout_secs,
            prefer_socket: self.prefer_socket,
        }
    }
}

impl MysqlTargetConfig {
    /// Checks the configuration without connecting; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret {
            problems.push(secret_unavailable(secret));
        }
        check_name("db", &self.db, &mut problems);
        check_name("table", &self.table, &mut problems);
        if let Some(k) = &self.key {
            check_name("key", k, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The connection settings.
    pub fn connection(&self) -> Connection {
        Connection {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            password: self.password.clone(),
            db: self.db.clone(),
            connect_timeout_secs: self.connect_timeout_secs,
            retry_timeout_secs: self.retry_timeout_secs,
            prefer_socket: self.prefer_socket,
        }
    }
}
