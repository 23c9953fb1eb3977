//! `fastlane plugins new`: writes a complete out-of-tree plugin project, built against
//! `fastlane-plugin-api`, with a working component, a check file and a test that runs the
//! conformance suite (`fastlane plugins check`) on the built library.

use std::path::{Path, PathBuf};

use fastlane_plugin_api::ComponentKind;

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a plugin.
    #[error(
        "`{0}` cannot name a plugin: use lower-case letters, digits and `_`, starting with a letter"
    )]
    BadName(String),
    /// The folder exists and is not empty.
    #[error("`{0}` already exists and is not empty: choose another --path or name")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The project written for plugin `name` with one component of `kind`, into `dir` (created;
/// it must not exist or be empty). Returns the files written.
pub fn new_plugin(
    name: &str,
    kind: ComponentKind,
    dir: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let api_version = env!("CARGO_PKG_VERSION");
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(name, api_version)),
        (".gitignore", "/target\n".to_owned()),
        ("src/lib.rs", library(name, kind)),
        ("check.json", check_file(name, kind)),
        ("tests/check.rs", check_test(name)),
        ("README.md", readme(name, kind)),
    ];
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &str, api_version: &str) -> String {
    format!(
        r#"[package]
name = "fastlane-plugin-{dashed}"
version = "0.1.0"
edition = "2024"
description = "A fastlane plugin."
publish = false

[lib]
# fastlane loads files named libfastlane_plugin_<name>.so from its plugin folders; the rlib
# lets `cargo test` build the library for the tests.
name = "fastlane_plugin_{name}"
crate-type = ["cdylib", "rlib"]

[dependencies]
fastlane-plugin-api = "{api_version}"
serde = {{ version = "1", features = ["derive"] }}
schemars = "1"
"#,
        dashed = name.replace('_', "-"),
    )
}

fn library(name: &str, kind: ComponentKind) -> String {
    let head = format!(
        "//! The `{name}` fastlane plugin.\n//!\n//! Build it with `cargo build --release`, then drop \
         `target/release/libfastlane_plugin_{name}.so`\n//! into a plugin folder (`--plugin-dir`, \
         `FASTLANE_PLUGIN_PATH`): `fastlane plugins list` shows it.\n\n"
    );
    let body = match kind {
        ComponentKind::Source => SOURCE.replace("{name}", name),
        ComponentKind::Transform => TRANSFORM.replace("{name}", name),
        ComponentKind::Target => TARGET.replace("{name}", name),
    };
    head + &body
}

fn check_file(name: &str, kind: ComponentKind) -> String {
    let value = match kind {
        ComponentKind::Source => serde_json::json!({
            "sources": {name: {"config": {"rows": 5000, "partitions": 2}, "key": "id"}}
        }),
        ComponentKind::Transform => serde_json::json!({
            "transforms": {name: {"config": {}}}
        }),
        ComponentKind::Target => serde_json::json!({
            "targets": {name: {"config": {"path": "{dir}/out.tsv"}, "columns": ["text"]}}
        }),
    };
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

fn check_test(name: &str) -> String {
    CHECK_TEST.replace("{name}", name)
}

fn readme(name: &str, kind: ComponentKind) -> String {
    format!(
        "# fastlane-plugin-{name}\n\nA fastlane plugin with one {kind}, `{name}`.\n\n\
         ```sh\ncargo build --release                  # target/release/libfastlane_plugin_{name}.so\n\
         cargo test                             # runs `fastlane plugins check` on the built library\n\
         fastlane plugins check target/debug/libfastlane_plugin_{name}.so --config check.json\n\
         fastlane plugins list --plugin-dir target/release\n```\n\n\
         `cargo test` needs `fastlane` on the `PATH` (`pip install fastlane`, or the binary), or its \
         path in `FASTLANE`.\n`check.json` tells the conformance suite how to exercise the \
         component; see `fastlane plugins check --help`.\n"
    )
}

const SOURCE: &str = r#"use std::sync::Arc;

use fastlane_plugin_api::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use fastlane_plugin_api::arrow_schema::{DataType, Field, Schema};
use fastlane_plugin_api::serde_json::{Value, json};
use fastlane_plugin_api::{
    BatchStream, Partition, PluginDefinition, ReadContext, Result, Source, export_plugin,
};
use serde::Deserialize;

/// Configuration of the `{name}` source.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// How many rows (ids `1..=rows`).
    rows: i64,
    /// Rows per batch.
    #[serde(default = "default_batch")]
    batch_size: i64,
    /// Partitions, read in parallel.
    #[serde(default = "one")]
    partitions: i64,
    /// Partitions read at once (a fastlane setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn default_batch() -> i64 {
    1_000
}

fn one() -> i64 {
    1
}

/// Rows `id` (the key) and `text`, split into key ranges.
struct Numbers(Config);

impl Source for Numbers {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        // INCREMENTAL runs read strictly after the target's offset.
        let after = context.start_offset.as_ref().and_then(Value::as_i64).unwrap_or(0);
        let n = self.0.partitions.max(1);
        let per = (self.0.rows + n - 1) / n;
        Ok((0..n)
            .map(|i| Partition {
                index: i as usize,
                spec: json!({"first": (i * per + 1).max(after + 1), "last": ((i + 1) * per).min(self.0.rows)}),
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(Rows {
            next: partition.spec["first"].as_i64().unwrap_or(1),
            last: partition.spec["last"].as_i64().unwrap_or(0),
            batch: self.0.batch_size.max(1),
        }))
    }
}

struct Rows {
    next: i64,
    last: i64,
    batch: i64,
}

impl BatchStream for Rows {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next > self.last {
            return Ok(None);
        }
        let end = (self.next + self.batch - 1).min(self.last);
        let ids = Int64Array::from_iter_values(self.next..=end);
        let text = StringArray::from_iter_values((self.next..=end).map(|i| format!("row {i}")));
        self.next = end + 1;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        Ok(Some(RecordBatch::try_new(schema, vec![Arc::new(ids) as ArrayRef, Arc::new(text)])?))
    }
}

export_plugin!(
    PluginDefinition::new("{name}", env!("CARGO_PKG_VERSION"))
        .description("The {name} plugin.")
        .source("{name}", "Rows `id` and `text`, in key ranges.", |config: Config| {
            Ok(Numbers(config))
        })
);
"#;

const TRANSFORM: &str = r#"use std::sync::Arc;

use fastlane_plugin_api::arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use fastlane_plugin_api::{PluginDefinition, Result, Transform, export_plugin};
use serde::Deserialize;

/// Configuration of the `{name}` transform.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The text columns to upper-case (all of them when absent).
    columns: Option<Vec<String>>,
    /// Workers (a fastlane setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

/// Upper-cases text columns.
struct Upper(Config);

impl Transform for Upper {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let schema = batch.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                let chosen = self.0.columns.as_ref().is_none_or(|c| c.contains(field.name()));
                match column.as_any().downcast_ref::<StringArray>() {
                    Some(text) if chosen => {
                        let upper: StringArray = text.iter().map(|v| v.map(str::to_uppercase)).collect();
                        Arc::new(upper) as ArrayRef
                    }
                    _ => column.clone(),
                }
            })
            .collect::<Vec<_>>();
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

export_plugin!(
    PluginDefinition::new("{name}", env!("CARGO_PKG_VERSION"))
        .description("The {name} plugin.")
        .transform("{name}", "Upper-cases text columns.", |config: Config| Ok(Upper(config)))
);
"#;

const TARGET: &str = r#"use std::io::Write as _;
use std::path::PathBuf;

use fastlane_plugin_api::arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use fastlane_plugin_api::serde_json::Value;
use fastlane_plugin_api::{
    PluginDefinition, PluginError, ReplicationMode, Result, Target, WriteContext, Writer,
    export_plugin,
};
use serde::Deserialize;

/// Configuration of the `{name}` target.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The file the rows are published to, one `id<TAB>text` line each.
    path: PathBuf,
    /// The replication key (`id`).
    #[allow(dead_code)]
    key: Option<String>,
    /// Writers (a fastlane setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

/// Lines in one file: writers stage their own files, the commit publishes them at once
/// (FULL_TABLE replaces the file, INCREMENTAL appends), an abort removes them.
struct Lines {
    config: Config,
    run: Option<(String, ReplicationMode, usize)>,
}

impl Lines {
    fn staged(&self, run: &str, writer: usize) -> PathBuf {
        let mut name = self.config.path.clone().into_os_string();
        name.push(format!(".{run}.{writer}.staged"));
        PathBuf::from(name)
    }
}

impl Target for Lines {
    fn get_offset(&self) -> Result<Option<Value>> {
        let Ok(text) = std::fs::read_to_string(&self.config.path) else {
            return Ok(None);
        };
        let ids = text.lines().filter_map(|l| l.split('\t').next()?.parse::<i64>().ok());
        Ok(ids.max().map(Value::from))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        self.run = Some((context.run_id.clone(), context.mode, context.concurrency));
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let (run, _, _) = self.run.as_ref().ok_or_else(|| PluginError::internal("not open"))?;
        let file = std::fs::File::create(self.staged(run, index))?;
        Ok(Box::new(LineWriter(std::io::BufWriter::new(file))))
    }

    fn commit(&mut self) -> Result<()> {
        let Some((run, mode, writers)) = self.run.take() else {
            return Ok(());
        };
        let mut out = match mode {
            ReplicationMode::FullTable => String::new(),
            ReplicationMode::Incremental => {
                std::fs::read_to_string(&self.config.path).unwrap_or_default()
            }
        };
        for writer in 0..writers {
            let staged = self.staged(&run, writer);
            if let Ok(text) = std::fs::read_to_string(&staged) {
                out.push_str(&text);
                std::fs::remove_file(staged)?;
            }
        }
        let mut temp = self.config.path.clone().into_os_string();
        temp.push(".publishing");
        std::fs::write(&temp, out)?;
        std::fs::rename(temp, &self.config.path)?;
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        if let Some((run, _, writers)) = self.run.take() {
            for writer in 0..writers {
                let _ = std::fs::remove_file(self.staged(&run, writer));
            }
        }
        Ok(())
    }
}

struct LineWriter(std::io::BufWriter<std::fs::File>);

impl Writer for LineWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let ids = batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| PluginError::data("the batch has no Int64 column `id`"))?;
        let text = batch
            .column_by_name("text")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        for row in 0..batch.num_rows() {
            let value = text.filter(|t| !t.is_null(row)).map_or("", |t| t.value(row));
            writeln!(self.0, "{}\t{value}", ids.value(row))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.0.flush()?;
        Ok(())
    }
}

export_plugin!(
    PluginDefinition::new("{name}", env!("CARGO_PKG_VERSION"))
        .description("The {name} plugin.")
        .target("{name}", "Lines `id<TAB>text` in one file.", |config: Config| {
            Ok(Lines { config, run: None })
        })
);
"#;

const CHECK_TEST: &str = r#"//! Runs fastlane's conformance suite on the built plugin: `fastlane plugins check` with
//! `check.json`. Needs `fastlane` on the PATH, or its path in `FASTLANE`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_plugin_passes_fastlane_plugins_check() {
    // target/<profile>/deps/<this test>; `cargo test` leaves the library in deps/, `cargo
    // build` in target/<profile>/.
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps folder");
    let file = "libfastlane_plugin_{name}.so";
    let library: PathBuf = [deps.join(file), deps.join("..").join(file)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{file} is not built in {}", deps.display()));
    let fastlane = std::env::var("FASTLANE").unwrap_or_else(|_| "fastlane".into());
    let out = Command::new(&fastlane)
        .args(["plugins", "check"])
        .arg(&library)
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/check.json"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{fastlane}` ({e}): install fastlane or set FASTLANE"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("the plugin conforms"), "{report}");
}
"#;
