//! The `bigquery` plugin of fastlane: the `bigquery` source.
//!
//! Reads a table or a query. The BigQuery Storage Read API sends Arrow record batches that
//! pass through without conversion, its streams read in parallel as partitions; where it is
//! not available, rows are paged through the REST API (`tabledata.list`,
//! `jobs.getQueryResults`) in parallel ranges and converted to the same Arrow types.
//! Incremental runs read the rows whose replication key is above the target's offset.
//! Credentials: a service-account key (a file, or JSON text from `${VAR}` or a secret), the
//! application default credentials, or none for emulators (`endpoint`, `storage_endpoint`).
//!
//! See `README.md` beside this crate for every option.

#![warn(missing_docs)]

pub mod client;
pub mod config;
mod source;
pub mod storage;
pub mod types;

pub use config::BigQuerySourceConfig;
pub use source::BigQuerySource;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("bigquery", env!("CARGO_PKG_VERSION"))
        .description("Google BigQuery: tables and queries read as Arrow.")
        .source(
            "bigquery",
            "Reads a BigQuery table or query (Storage Read API in Arrow, REST as the fallback).",
            BigQuerySource::new,
        )
        .capabilities(&[fastlane_plugin_api::Capability::Resume])
);
