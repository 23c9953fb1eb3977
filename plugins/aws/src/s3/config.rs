//! Configuration of the `s3` target.

use fastlane_plugin_api::{PluginError, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connection::with_aws_settings;

/// The smallest part S3 accepts in a multipart upload (but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part S3 accepts.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

with_aws_settings! {
/// Configuration of the `s3` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3TargetConfig {
    /// The bucket; it must exist.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix of the table's folder (`<prefix>/<table>/…`); empty for the bucket's root.
    #[serde(default)]
    pub prefix: String,
    /// The table: objects go under `<prefix>/<table>/`.
    #[schemars(length(min = 1))]
    pub table: String,
    /// The Glue / Athena database the table belongs to; part of the target's name.
    pub database: Option<String>,
    /// The partition folder under the table, with `{date}` (YYYY-MM-DD), `{year}`, `{month}`,
    /// `{day}`, `{hour}` (the run's start, UTC) and `{run_id}`; empty for none.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// The object format.
    #[serde(default)]
    pub format: Format,
    /// Parquet: page codec (default snappy). CSV/JSON Lines: `gzip` or `none` (the default).
    pub compression: Option<Compression>,
    /// The replication key column: its largest value in the published runs is the offset of
    /// INCREMENTAL runs (required for them).
    pub key: Option<String>,
    /// Start a new object after this many rows.
    #[schemars(range(min = 1))]
    pub max_rows_per_object: Option<u64>,
    /// The original fastlane's rows per object: `max_rows_per_object` when that is not given.
    #[schemars(range(min = 1))]
    pub batch_size: Option<u64>,
    /// Start a new object once this many bytes are written (checked after each batch).
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes_per_object: u64,
    /// Size of each part of a multipart upload, at least 5 MiB; objects smaller than one part
    /// are sent in a single request.
    #[serde(default = "default_part_size")]
    #[schemars(range(min = 5_242_880u64, max = 5_368_709_120u64))]
    pub part_size: u64,
    /// Parts each target worker uploads at once (memory: about `part_size` times this, plus
    /// one part being filled).
    #[serde(default = "default_uploads")]
    #[schemars(range(min = 1, max = 64))]
    pub upload_concurrency: usize,
    /// Parquet: rows per row group.
    #[serde(default = "default_row_group")]
    #[schemars(range(min = 1))]
    pub row_group_rows: usize,
    /// CSV: write a header line.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// CSV: the field delimiter, one character.
    #[serde(default = "default_delimiter")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: String,
    /// FULL_TABLE: keep the objects of earlier runs (by default they are deleted once the new
    /// run is published; readers that follow the manifests never see them either way).
    #[serde(default)]
    pub keep_previous: bool,
    /// Number of target workers, each writing its own objects.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`); default: on when `endpoint_url` (or
    /// `AWS_ENDPOINT_URL`) is set, off otherwise.
    pub force_path_style: Option<bool>,
    /// Registers the table in the AWS Glue Data Catalog (for Athena) at each commit.
    pub glue: Option<GlueConfig>,
}
}

/// Registration of the table in the AWS Glue Data Catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlueConfig {
    /// The Glue database (default: the target's `database`).
    #[schemars(length(min = 1, max = 255))]
    pub database: Option<String>,
    /// The Glue table (default: the target's `table`, lower-cased).
    #[schemars(length(min = 1, max = 255))]
    pub table: Option<String>,
    /// Create the database when it is missing.
    #[serde(default = "default_true")]
    pub create_database: bool,
    /// Endpoint of a Glue-compatible catalog (default: AWS's, not the target's
    /// `endpoint_url`, which is for S3).
    pub endpoint_url: Option<String>,
    /// When the data's columns differ from the registered table's: `fail` (the default) stops
    /// the run before it is published, naming the new and missing columns; `add_columns` keeps
    /// the table's columns and types and adds the new ones; `replace` defines the table by the
    /// data.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
}

/// What a run does when the data's columns differ from the Glue table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaChange {
    /// Stop the run before it is published, naming the new and missing columns.
    #[default]
    Fail,
    /// Keep the table's columns (names, types, order) and add the new ones at the end.
    AddColumns,
    /// Define the table by the data.
    Replace,
}

fn default_partition() -> String {
    "dt={date}".to_owned()
}

fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_part_size() -> u64 {
    16 * 1024 * 1024
}

fn default_uploads() -> usize {
    4
}

fn default_row_group() -> usize {
    122_880
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> String {
    ",".to_owned()
}

/// An object format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Apache Parquet.
    #[default]
    Parquet,
    /// JSON Lines: one JSON object per line.
    #[serde(alias = "json", alias = "ndjson")]
    Jsonl,
    /// Comma-separated values.
    Csv,
}

impl Format {
    /// The object name's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// Compression: Parquet's page codec, or a stream compression for CSV and JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None.
    None,
    /// Snappy (Parquet only).
    Snappy,
    /// Zstandard (Parquet only).
    Zstd,
    /// gzip.
    Gzip,
}

impl S3TargetConfig {
    /// The codec actually used: the configured one, or snappy for Parquet and none otherwise.
    pub fn codec(&self) -> Compression {
        self.compression.unwrap_or(match self.format {
            Format::Parquet => Compression::Snappy,
            _ => Compression::None,
        })
    }

    /// The Glue database and table, when `glue` is configured and names a database.
    pub fn glue_names(&self) -> Option<(String, String)> {
        let glue = self.glue.as_ref()?;
        let database = glue.database.clone().or_else(|| self.database.clone())?;
        let table = glue.table.clone().unwrap_or_else(|| {
            self.table
                .trim_matches('/')
                .replace(['/', '-', '.'], "_")
                .to_ascii_lowercase()
        });
        Some((database, table))
    }

    /// The most rows of an object: `max_rows_per_object`, else the original's `batch_size`.
    pub fn rows_per_object(&self) -> Option<u64> {
        self.max_rows_per_object.or(self.batch_size)
    }

    /// The folder of the table: `<prefix>/<table>` without stray slashes.
    pub fn base(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        let table = self.table.trim_matches('/');
        if prefix.is_empty() {
            table.to_owned()
        } else {
            format!("{prefix}/{table}")
        }
    }

    /// Checks everything that needs no network; lists every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = self.connection().problems();
        match (self.format, self.codec()) {
            (Format::Parquet, Compression::Gzip) => problems.push(
                "`compression: gzip` is for csv and jsonl; parquet takes snappy, zstd or none"
                    .into(),
            ),
            (Format::Jsonl | Format::Csv, Compression::Snappy | Compression::Zstd) => problems
                .push(format!(
                    "`compression` of {} objects is `gzip` or `none`",
                    self.format.extension()
                )),
            _ => {}
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            problems.push(format!(
                "`part_size` must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"
            ));
        }
        if self.delimiter.len() != 1 {
            problems.push("`delimiter` must be one ASCII character".into());
        }
        if self.table.trim_matches('/').is_empty() || self.table.contains("..") {
            problems.push(format!(
                "`table` `{}` is not a usable folder name",
                self.table
            ));
        }
        if let Err(e) = render_partition(&self.partition, chrono::DateTime::UNIX_EPOCH, "r") {
            problems.push(e);
        }
        if self.glue.is_some() && self.glue_names().is_none() {
            problems.push(
                "`glue` needs a database: `glue.database`, or the target's `database`".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PluginError::config(problems.join("; ")))
        }
    }
}

/// Fills the placeholders of a partition template.
pub fn render_partition(
    template: &str,
    start: chrono::DateTime<chrono::Utc>,
    run_id: &str,
) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("`partition` `{template}` has an unclosed `{{`"));
        };
        let name = &rest[open + 1..open + close];
        let value = match name {
            "date" => start.format("%Y-%m-%d").to_string(),
            "year" => start.format("%Y").to_string(),
            "month" => start.format("%m").to_string(),
            "day" => start.format("%d").to_string(),
            "hour" => start.format("%H").to_string(),
            "run_id" => run_id.to_owned(),
            other => {
                return Err(format!(
                    "`partition` `{template}` has an unknown placeholder `{{{other}}}` \
                     (known: date, year, month, day, hour, run_id)"
                ));
            }
        };
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    if out.contains("..") || out.starts_with('/') {
        return Err(format!(
            "`partition` `{template}` must be a relative folder"
        ));
    }
    Ok(out.trim_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn partitions_render() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 3, 9, 7, 5, 0).unwrap();
        assert_eq!(
            render_partition("dt={date}", t, "r1").unwrap(),
            "dt=2026-03-09"
        );
        assert_eq!(
            render_partition("{year}/{month}/{day}/{hour}/", t, "r1").unwrap(),
            "2026/03/09/07"
        );
        assert_eq!(render_partition("", t, "r1").unwrap(), "");
        assert!(
            render_partition("dt={when}", t, "r")
                .unwrap_err()
                .contains("`{when}`")
        );
        assert!(render_partition("dt={date", t, "r").is_err());
        assert!(render_partition("../x", t, "r").is_err());
    }

    #[test]
    fn every_problem_is_listed() {
        let config: S3TargetConfig = serde_json::from_value(serde_json::json!({
            "bucket": "b-1", "table": "t", "format": "parquet", "compression": "gzip",
            "part_size": 1024, "delimiter": ";;", "partition": "{nope}",
            "access_key_id": "x"
        }))
        .unwrap();
        let message = config.validate().unwrap_err().message().to_owned();
        for part in [
            "`secret_access_key`",
            "`compression: gzip`",
            "`part_size`",
            "`delimiter`",
            "`{nope}`",
        ] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
    }

    #[test]
    fn the_base_folder_has_no_stray_slashes() {
        let config: S3TargetConfig = serde_json::from_value(
            serde_json::json!({"bucket": "b-1", "table": "/orders/", "prefix": "lake/"}),
        )
        .unwrap();
        assert_eq!(config.base(), "lake/orders");
        assert_eq!(config.codec(), Compression::Snappy);
    }
}
