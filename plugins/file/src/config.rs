//! Configuration of the `file` source and target.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The byte of a one-character `delimiter` option.
pub fn delimiter_byte(delimiter: &str) -> fastlane_plugin_api::Result<u8> {
    match delimiter.as_bytes() {
        [d] => Ok(*d),
        _ => Err(fastlane_plugin_api::PluginError::config(format!(
            "`delimiter` must be one ASCII character, not `{delimiter}`"
        ))),
    }
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values.
    Csv,
    /// JSON Lines: one JSON object per line.
    #[serde(alias = "json", alias = "ndjson")]
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The file extension (without compression suffix).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    /// Guesses the format from a file name (`.csv`, `.csv.gz`, `.jsonl`, `.ndjson`, `.json`,
    /// `.parquet`, `.pq`).
    pub fn from_name(name: &str) -> Option<Self> {
        let stem = strip_compression(name).0.to_ascii_lowercase();
        let ext = stem.rsplit('.').next().unwrap_or("");
        match ext {
            "csv" | "tsv" | "txt" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// A stream compression for CSV and JSON Lines files; for Parquet, the codec of its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
    /// Snappy (Parquet pages only).
    Snappy,
}

/// Splits a compression suffix off a file name.
pub fn strip_compression(name: &str) -> (&str, Compression) {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".gz") {
        (&name[..name.len() - 3], Compression::Gzip)
    } else if lower.ends_with(".zst") {
        (&name[..name.len() - 4], Compression::Zstd)
    } else if lower.ends_with(".zstd") {
        (&name[..name.len() - 5], Compression::Zstd)
    } else {
        (name, Compression::None)
    }
}

/// When Parquet dictionary encoding is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dictionary {
    /// For columns whose values repeat.
    #[default]
    Auto,
    /// For every column.
    Always,
    /// Never.
    Never,
}

/// Which Parquet statistics to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Statistics {
    /// None.
    None,
    /// Per column chunk (row group).
    #[default]
    Chunk,
    /// Per column chunk and per page.
    Page,
}

/// One path or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Paths {
    /// A single file, folder or glob pattern.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Paths {
    /// The paths as a list.
    pub fn list(&self) -> Vec<String> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

fn default_batch_size() -> usize {
    65_536
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> String {
    ",".to_owned()
}

fn default_split_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_infer_rows() -> usize {
    1000
}

/// Configuration of the `file` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a folder (its files, not recursive) or a glob pattern such as `data/*.csv.gz`;
    /// or a list of them. Each file is one partition.
    pub path: Paths,
    /// The format; by default guessed from each file's extension.
    pub format: Option<Format>,
    /// The compression of CSV/JSON Lines files; by default guessed from the extension
    /// (`.gz`, `.zst`).
    pub compression: Option<Compression>,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// CSV: the first line holds column names.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// CSV: the field delimiter, one character.
    #[serde(default = "default_delimiter")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: String,
    /// CSV/JSON Lines: how many records of the first file are read to infer column types.
    #[serde(default = "default_infer_rows")]
    #[schemars(range(min = 1))]
    pub infer_schema_rows: usize,
    /// The replication key column: in INCREMENTAL mode only rows whose key is above the
    /// target's offset are read.
    pub replication_key: Option<String>,
    /// Files larger than this are split into parts read in parallel: uncompressed CSV and JSON
    /// Lines by byte ranges cut at record boundaries (CSV: newlines outside quotes), Parquet by
    /// row groups. 0 never splits.
    #[serde(default = "default_split_bytes")]
    pub split_bytes: u64,
    /// How many files (or parts of files) are read at once (default: the number of CPUs).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// Configuration of the `file` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTargetConfig {
    /// The folder the files are written to; created when missing.
    pub path: String,
    /// The format.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Parquet: page codec (default snappy). CSV/JSON Lines: stream compression (default none).
    pub compression: Option<Compression>,
    /// Start a new file after this many rows.
    #[schemars(range(min = 1))]
    pub max_rows_per_file: Option<u64>,
    /// Start a new file once this many bytes are written (checked after each batch, so a file
    /// may exceed it by up to one batch).
    #[schemars(range(min = 1))]
    pub max_bytes_per_file: Option<u64>,
    /// Parquet: the min/max statistics written, per column chunk (`chunk`, the default),
    /// also per page (`page`, more precise pruning, slower to write), or `none`.
    #[serde(default)]
    pub statistics: Statistics,
    /// Parquet: dictionary encoding for the columns whose values repeat in the first batch of
    /// each file (`auto`, the default), for every column (`always`), or for none (`never`).
    #[serde(default)]
    pub dictionary: Dictionary,
    /// Parquet: rows per row group.
    #[serde(default = "default_row_group")]
    #[schemars(range(min = 1))]
    pub row_group_rows: usize,
    /// File names are `<file_prefix>-<run id>-<worker>-<sequence>.<ext>`.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 1))]
    pub file_prefix: String,
    /// CSV: write a header line.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// CSV: the field delimiter, one character.
    #[serde(default = "default_delimiter")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: String,
    /// The replication key column; its largest value in the folder is the offset of
    /// INCREMENTAL runs.
    pub key: Option<String>,
    /// Number of target workers, each writing its own files.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

fn default_format() -> Format {
    Format::Parquet
}

fn default_row_group() -> usize {
    122_880
}

fn default_prefix() -> String {
    "part".to_owned()
}
