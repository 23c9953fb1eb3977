//! The `sqlite` plugin of fastlane: a source that reads a table or a query of a SQLite
//! database file into Arrow record batches, and a target that loads a table of one.
//!
//! - **Tables** are read by keyset paging: `SELECT … WHERE key > last ORDER BY key LIMIT n`,
//!   one page per batch, on the `replication_key` column (by default the `rowid`). An INTEGER
//!   key range can be split into `partitions` contiguous ranges read in parallel. In
//!   INCREMENTAL mode only rows whose key is above the target's offset are read.
//! - **Queries** are read in one pass, as one partition (FULL_TABLE mode only).
//! - **Resume**: a table read gives the last key of each batch as its position, and reads the
//!   keys after one position and up to another on request, so a killed run continues where its
//!   target's checkpoints stop. A query cannot.
//! - The database is opened read-only; column types come from the declared types by SQLite's
//!   affinity rules (with booleans, dates and timestamps), or from the first values when a
//!   column has no declared type.
//! - **Target**: writers insert batches into a staging table (one transaction per batch);
//!   the run publishes it into the table in one transaction: FULL_TABLE replaces the table's
//!   rows (its definition, indexes and triggers kept), INCREMENTAL upserts on `key` (appends
//!   without one). A missing
//!   table is created from the data (the key as primary key) with declared types the source
//!   reads back as the same Arrow types; new columns follow `on_schema_change`.
//!
//! See `README.md` beside this crate for every option and the type mapping.

#![warn(missing_docs)]

mod columns;
mod config;
mod encode;
mod plan;
mod source;
mod stream;
mod target;
#[cfg(test)]
mod tests;

pub use config::{OnSchemaChange, SqliteSourceConfig, SqliteTargetConfig};
pub use source::SqliteSource;
pub use target::SqliteTarget;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("sqlite", env!("CARGO_PKG_VERSION"))
        .description("SQLite database files.")
        .source(
            "sqlite",
            "Reads a SQLite table by keyset paging (incremental, partitioned) or a query.",
            SqliteSource::new,
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
        .target(
            "sqlite",
            "Loads a SQLite table in one transaction: rows replaced (FULL_TABLE) or upserted on the key.",
            SqliteTarget::new,
        )
        .capabilities(&[fastlane_plugin_api::Capability::VerifyCount])
);
