//! The `aws` plugin of fastlane: connectors for Amazon Web Services, on one copy of the AWS SDK.
//!
//! - **Target `s3`**: writes Parquet (snappy or zstd), JSON Lines or CSV (optionally gzip)
//!   under `<prefix>/<table>/dt=YYYY-MM-DD/`, rolling objects by rows or bytes and streaming
//!   each through a multipart upload, so memory stays bounded by the part size. A run becomes
//!   visible as a whole: its data objects are uploaded first and a run manifest last, and
//!   readers and `get_offset` trust only manifested runs. An aborted run deletes what it
//!   uploaded; a killed one leaves objects no manifest lists.
//!
//! - **Source `secretsmanager`**: one secret as a one-row batch; the host resolves the
//!   `secret` / `secret_region` settings of any connector through it.
//!
//! Every connector takes the standard AWS settings: the default credential chain (environment,
//! profile, SSO, process, container and instance credentials), `region`, `profile`, and
//! `endpoint_url` for S3-compatible stores (path-style addressing is then the default).
//!
//! See `README.md` beside this crate for every option.

#![warn(missing_docs)]

mod connection;
pub mod s3;
mod secrets;

pub use connection::Connection;
pub use s3::{S3Target, S3TargetConfig};
pub use secrets::{SecretsManagerConfig, SecretsManagerSource};

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("aws", env!("CARGO_PKG_VERSION"))
        .description("Amazon Web Services: S3 and Secrets Manager.")
        .target(
            "s3",
            "Writes Parquet, JSON Lines or CSV objects to S3; a run is published by its manifest.",
            S3Target::new,
        )
        .source(
            "secretsmanager",
            "Reads one secret from AWS Secrets Manager (the host resolves `secret` settings with it).",
            SecretsManagerSource::new,
        )
);
