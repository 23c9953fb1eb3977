//! The `mysql` plugin of fastlane: a source and a target for MySQL and MariaDB.
//!
//! - **Source**: keyset paging on the replication key over the binary protocol, straight into
//!   Arrow builders; `partitions` splits the key range into ranges read in parallel over
//!   separate connections; INCREMENTAL runs continue after the target's offset; a custom
//!   `query` is read in one pass. A lost connection is resumed after the last key delivered.
//! - **Target**: loads into a staging table with `LOAD DATA LOCAL INFILE` (or multi-row
//!   `INSERT`), then publishes at commit: an atomic `RENAME TABLE` swap for FULL_TABLE, an
//!   upsert on the key in one transaction for INCREMENTAL. A failed run leaves the target as
//!   it was.
//!
//! Both are written as async code on the plugin toolkit's runtime
//! (`fastlane_plugin_support::runtime`), which runs them for the host's blocking calls.
//!
//! See `README.md` beside this crate for every option and the type mappings.

#![warn(missing_docs)]

mod checkpoints;
mod checksum;
mod columns;
mod config;
mod conn;
mod ddl;
mod encode;
mod error;
mod plan;
mod source;
mod target;

pub use columns::COLUMN_TYPE_KEY;
pub use config::{LoadMethod, MysqlSourceConfig, MysqlTargetConfig, TimeAs, ZeroDates};
pub use error::Error;
pub use source::MysqlSource;
pub use target::MysqlTarget;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("mysql", env!("CARGO_PKG_VERSION"))
        .description("MySQL and MariaDB databases.")
        .source(
            "mysql",
            "Reads a MySQL table by keyset paging (incremental, partitioned) or a query.",
            |config| MysqlSource::new(config).map(|source| conn::RUNTIME.on(source)),
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
        .target(
            "mysql",
            "Loads a MySQL table through a staging table: atomic swap or upsert on the key.",
            |config| MysqlTarget::new(config).map(|target| conn::RUNTIME.on(target)),
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
);
