//! The `file` plugin of fastlane: a source and a target for CSV, JSON Lines and Parquet files
//! on the local file system.
//!
//! - **Source `file`**: a file, a folder or glob patterns; format and compression (gzip, zstd)
//!   from the extension or the configuration; one partition per file, read in parallel; the
//!   columns of CSV and JSON Lines are inferred once from the first file; INCREMENTAL runs keep
//!   the rows whose `replication_key` is above the target's offset.
//! - **Target `file`**: Parquet (snappy, zstd, gzip), CSV or JSON Lines (optionally gzip or
//!   zstd); each worker writes its own files, rolled by rows or bytes; files are written in a
//!   hidden staging folder and published by rename at commit, so nothing half-written is ever
//!   visible; `get_offset` is the largest `key` in the published files. One run at a time
//!   writes a folder and prefix (a lock file). Checkpointed runs record, at every flush, the
//!   files made durable and their batches' tags, so a killed run can be resumed
//!   (the `checkpoint` module).
//!
//! See `README.md` beside this crate for every option.

mod checkpoint;
mod config;
mod io;
mod source;
mod target;

pub use config::{Compression, FileSourceConfig, FileTargetConfig, Format, Paths};
pub use source::FileSource;
pub use target::FileTarget;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("file", env!("CARGO_PKG_VERSION"))
        .description("CSV, JSON Lines and Parquet files on the local file system.")
        .source(
            "file",
            "Reads CSV, JSON Lines and Parquet files (globs, folders, gzip, zstd).",
            FileSource::new,
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
        .target(
            "file",
            "Writes CSV, JSON Lines or Parquet files atomically, rolled by rows or bytes.",
            FileTarget::new,
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
);
