//! The `aws` plugin of fastlane: connectors for Amazon Web Services, on one copy of the AWS SDK.
//!
//! - **Target `s3`**: writes Parquet (snappy or zstd), JSON Lines or CSV (optionally gzip)
//!   under `<prefix>/<table>/dt=YYYY-MM-DD/`, rolling objects by rows or bytes and streaming
//!   each through a multipart upload, so memory stays bounded by the part size. A run becomes
//!   visible as a whole: its data objects are uploaded first and a run manifest last, and
//!   readers and `get_offset` trust only manifested runs. An aborted run deletes what it
//!   uploaded; a killed one leaves objects no manifest lists.
//!
//! - **Target `athena`**: the original fastlane's: the `s3` target writing Parquet into the
//!   folder of a Glue table (found from the table's location, or made from `bucket`), the
//!   table registered in Glue, every row tagged with its run's `_table_version`, and the
//!   Athena view `<view_database>.<table>` replaced at each published run so that it shows
//!   exactly the published rows (each `pk`'s newest); optionally a Glue crawler started.
//!
//! - **Target `firehose`**: rows as JSON Lines records through `PutRecordBatch` (at most 500
//!   records and 4 MiB per call, 1,000 KiB per record), retrying only the records a call
//!   refused, with backoff, and failing clearly once the retries are spent.
//!
//! - **Target `cloudwatch_logs`**: rows as CloudWatch Logs events (`PutLogEvents`, batched and
//!   in time order); the host's `--logs_to_cloudwatch` sends the run's log lines through it.
//!
//! - **Source `cloudwatch_logs`**: the events of one log stream, oldest first (`timestamp`,
//!   `message`); the monitoring service reads a run's lines with it when they went there.
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

mod athena;
mod cloudwatch;
mod cloudwatch_source;
mod connection;
mod firehose;
pub mod s3;
mod secrets;

pub use athena::{AthenaTarget, AthenaTargetConfig};
pub use cloudwatch::{CloudWatchLogsConfig, CloudWatchLogsTarget};
pub use cloudwatch_source::{CloudWatchLogsSource, CloudWatchLogsSourceConfig};
pub use connection::Connection;
pub use firehose::{FirehoseTarget, FirehoseTargetConfig};
pub use s3::{S3Target, S3TargetConfig};
pub use secrets::{SecretsManagerConfig, SecretsManagerSource};

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("aws", env!("CARGO_PKG_VERSION"))
        .description("Amazon Web Services: S3, Athena (Glue), Data Firehose, CloudWatch Logs and Secrets Manager.")
        .target(
            "s3",
            "Writes Parquet, JSON Lines or CSV objects to S3; a run is published by its manifest.",
            S3Target::new,
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
        ])
        .target(
            "athena",
            "The original fastlane's Athena target: Parquet in a Glue table's folder, the table registered, and a view showing exactly the published rows.",
            AthenaTarget::new,
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
        ])
        .target(
            "firehose",
            "Sends rows as JSON Lines records to an Amazon Data Firehose delivery stream.",
            FirehoseTarget::new,
        )
        .target(
            "cloudwatch_logs",
            "Sends rows as CloudWatch Logs events (the host's --logs_to_cloudwatch uses it).",
            CloudWatchLogsTarget::new,
        )
        .source(
            "cloudwatch_logs",
            "Reads the events of one CloudWatch Logs stream (the monitor reads run logs with it).",
            CloudWatchLogsSource::new,
        )
        .source(
            "secretsmanager",
            "Reads one secret from AWS Secrets Manager (the host resolves `secret` settings with it).",
            SecretsManagerSource::new,
        )
);
