//! Configuration of the `sqlite` source.

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
