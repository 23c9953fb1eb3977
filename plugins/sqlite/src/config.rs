//! Configuration of the `sqlite` source and target.

use schemars::JsonSchema;
use serde::Deserialize;

fn default_batch_size() -> usize {
    65_536
}

fn default_partitions() -> usize {
    1
}

/// Configuration of the `sqlite` source.
///
/// Exactly one of `table` and `query` must be given.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// The SQLite database file (or a `file:` URI), opened read-only: a wrong path never
    /// creates a file.
    pub path: String,
    /// The table (or view) to read, a plain name. Read by keyset paging on `replication_key`.
    /// Exactly one of `table` and `query` is required.
    pub table: Option<String>,
    /// A SQL query to read instead of a table, in one pass and as one partition (no paging,
    /// FULL_TABLE mode only). Exactly one of `table` and `query` is required.
    pub query: Option<String>,
    /// The column the table is paged on, in ascending order; in INCREMENTAL mode only rows whose
    /// key is above the target's offset are read. It must have no NULL values. Default: the
    /// table's `rowid` (FULL_TABLE mode only; a WITHOUT ROWID table needs a key).
    pub replication_key: Option<String>,
    /// The columns of `table` to read (default: all).
    #[schemars(length(min = 1))]
    pub columns: Option<Vec<String>>,
    /// Rows per batch, and per page query.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// Splits an INTEGER key range into this many contiguous ranges read in parallel. A
    /// non-integer key, an empty table or `query` is read as one partition.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1))]
    pub partitions: usize,
    /// How many partitions are read at once (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

fn default_busy_timeout() -> u64 {
    30
}

/// Configuration of the `sqlite` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteTargetConfig {
    /// The SQLite database file, created when missing (its folder must exist).
    pub path: String,
    /// The table to load, a plain name; created from the data's columns when missing.
    pub table: String,
    /// The key column: the primary key of a created table, the upsert key of INCREMENTAL runs
    /// (a row replaces the table's rows with its key) and the column whose largest value is
    /// the offset. Without it, INCREMENTAL runs append and there is no offset.
    pub key: Option<String>,
    /// When the data has columns the table lacks: `fail` (the default) stops the run naming
    /// them; `add_columns` adds them to the table (`ALTER TABLE … ADD COLUMN`, in the
    /// transaction that publishes the rows); `replace` (FULL_TABLE only) replaces the table
    /// with one defined by the data.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
    /// Seconds a writer waits for another connection's lock on the database before failing.
    #[serde(default = "default_busy_timeout")]
    #[schemars(range(min = 1))]
    pub busy_timeout_secs: u64,
    /// How many target workers write at once (host setting). SQLite has one writer at a
    /// time: more workers only overlap encoding with writing.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

pub use fastlane_plugin_support::schema::OnSchemaChange;
