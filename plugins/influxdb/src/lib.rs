//! The `influxdb` plugin of fastlane: the `influxdb` target.
//!
//! Each row becomes a point: a measurement (fixed, or from a column), tags from
//! `tag_columns`, fields from `field_columns` (or every other column), and a time from
//! `time_column` in the configured `precision`. Points are written as line protocol in
//! requests of `batch_size` points, through the v1 API (`/write?db=&rp=`, user and password)
//! or the v2 API (`/api/v2/write?org=&bucket=`, token), retried with backoff when the server
//! is busy or unreachable. `get_offset` reads the newest time (or the largest value of a
//! numeric key field) back with InfluxQL.
//!
//! See `README.md` beside this crate for every option.

#![warn(missing_docs)]

mod client;
pub mod config;
pub mod line;
pub mod names;
mod target;

pub use config::InfluxDbTargetConfig;
pub use target::InfluxDbTarget;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("influxdb", env!("CARGO_PKG_VERSION"))
        .description("InfluxDB: points written as line protocol through the v1 or v2 write API.")
        .target(
            "influxdb",
            "Writes rows as InfluxDB points (measurement, tags, fields, time) in batches.",
            InfluxDbTarget::new,
        )
);
