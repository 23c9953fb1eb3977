//! The `postgres` plugin of fastlane: a source and a target for PostgreSQL.
//!
//! - **Source**: a table read with binary `COPY (SELECT … ORDER BY key) TO STDOUT`, decoded
//!   straight into Arrow builders (no text parsing); an integer key's range is split into
//!   partitions read in parallel over separate connections; INCREMENTAL runs continue after
//!   the target's offset; a `query` is read in one pass. Every column maps to Arrow exactly or
//!   is refused by name (see `README.md` beside this crate for the mapping and the options).
//!
//! - **Target**: binary `COPY … FROM STDIN` into a staging table, published at commit in one
//!   transaction (FULL_TABLE: the table's rows replaced, the table and everything on it kept;
//!   INCREMENTAL: appended, or upserted on the key); a failed run leaves the table as it was.
//!
//! Written as async code on the plugin toolkit's runtime (`fastlane_plugin_support::runtime`),
//! which runs it for the host's blocking calls.

#![warn(missing_docs)]

mod columns;
mod config;
mod conn;
mod copy;
mod encode;
mod error;
mod source;
mod target;
mod tls;

pub use columns::PG_TYPE_KEY;
pub use config::{
    OnSchemaChange, PostgresSourceConfig, PostgresTargetConfig, SpecialValues, SslMode, Unsupported,
};
pub use error::Error;
pub use source::PostgresSource;
pub use target::PostgresTarget;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("postgres", env!("CARGO_PKG_VERSION"))
        .description("PostgreSQL databases.")
        .source(
            "postgres",
            "Reads a PostgreSQL table (incremental, partitioned) or a query by binary COPY.",
            |config| PostgresSource::new(config).map(|source| conn::RUNTIME.on(source)),
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
        .target(
            "postgres",
            "Loads a PostgreSQL table by binary COPY into a staging table, published in one \
             transaction: rows replaced, appended or upserted on the key.",
            |config| PostgresTarget::new(config).map(|target| conn::RUNTIME.on(target)),
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
);
