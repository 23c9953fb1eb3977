//! Test-only plugin built against the frozen copy of plugin ABI 1 as first released
//! (`tests/plugins/abi1/api`). Every later host must load and run it unchanged.
//!
//! | kind | id | does |
//! |---|---|---|
//! | source | `numbers` | `rows` rows of `id` (Int64, from 1) and `label` (text), in `partitions` partitions, after the start offset |
//! | transform | `shout` | upper-cases every text column |
//! | target | `lines` | writes `id<TAB>value` lines (the text column `column`, `label` by default) to `path`, staged per writer and published at commit (FULL_TABLE replaces, INCREMENTAL appends); its offset is the largest `id` |

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use fastlane_plugin_api::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use fastlane_plugin_api::arrow_schema::{DataType, Field, Schema};
use fastlane_plugin_api::serde_json::{Value, json};
use fastlane_plugin_api::{
    BatchStream, Partition, PluginDefinition, PluginError, ReadContext, ReplicationMode, Result,
    Source, Target, Transform, WriteContext, Writer, export_plugin,
};
use serde::Deserialize;

/// Configuration of `numbers`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NumbersConfig {
    /// Rows in all (ids `1..=rows`).
    rows: i64,
    /// Rows per batch.
    #[serde(default = "thousand")]
    batch_size: i64,
    /// Partitions.
    #[serde(default = "one")]
    partitions: i64,
    /// The replication key (always `id`).
    #[allow(dead_code)]
    replication_key: Option<String>,
    /// Partitions read at once (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn label() -> String {
    "label".into()
}

fn thousand() -> i64 {
    1_000
}

fn one() -> i64 {
    1
}

struct Numbers(NumbersConfig);

impl Source for Numbers {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let after = context
            .start_offset
            .as_ref()
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let n = self.0.partitions.max(1);
        let per = (self.0.rows + n - 1) / n;
        Ok((0..n)
            .map(|i| {
                let first = (i * per + 1).max(after + 1);
                let last = ((i + 1) * per).min(self.0.rows);
                Partition {
                    index: i as usize,
                    spec: json!({"first": first, "last": last}),
                }
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(NumberStream {
            next: partition.spec["first"].as_i64().unwrap_or(1),
            last: partition.spec["last"].as_i64().unwrap_or(0),
            batch: self.0.batch_size.max(1),
        }))
    }
}

struct NumberStream {
    next: i64,
    last: i64,
    batch: i64,
}

impl BatchStream for NumberStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next > self.last {
            return Ok(None);
        }
        let end = (self.next + self.batch - 1).min(self.last);
        let ids = Int64Array::from_iter_values(self.next..=end);
        let labels =
            StringArray::from_iter_values((self.next..=end).map(|i| format!("number {i}")));
        self.next = end + 1;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("label", DataType::Utf8, false),
        ]));
        Ok(Some(RecordBatch::try_new(
            schema,
            vec![Arc::new(ids) as ArrayRef, Arc::new(labels)],
        )?))
    }
}

/// Configuration of `shout`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShoutConfig {
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

struct Shout;

impl Transform for Shout {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let columns = batch
            .columns()
            .iter()
            .map(|c| match c.as_any().downcast_ref::<StringArray>() {
                Some(text) => {
                    let shouted: StringArray =
                        text.iter().map(|t| t.map(str::to_uppercase)).collect();
                    Arc::new(shouted) as ArrayRef
                }
                None => c.clone(),
            })
            .collect();
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

/// Configuration of `lines`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LinesConfig {
    /// The file the lines are published to.
    path: String,
    /// The text column written after the id.
    #[serde(default = "label")]
    column: String,
    /// The replication key (always `id`).
    #[allow(dead_code)]
    key: Option<String>,
    /// Writers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

struct Lines {
    path: PathBuf,
    column: String,
    run: Option<(String, ReplicationMode, usize)>,
}

impl Lines {
    fn staged(&self, run: &str, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{run}.{index}.staged"));
        PathBuf::from(name)
    }
}

impl Target for Lines {
    fn get_offset(&self) -> Result<Option<Value>> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(None);
        };
        let ids = text
            .lines()
            .filter_map(|l| l.split('\t').next()?.parse::<i64>().ok());
        Ok(ids.max().map(Value::from))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        self.run = Some((context.run_id.clone(), context.mode, context.concurrency));
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let (run, _, _) = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("not open"))?;
        let file = std::fs::File::create(self.staged(run, index))?;
        Ok(Box::new(LinesWriter {
            out: std::io::BufWriter::new(file),
            column: self.column.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some((run, mode, writers)) = self.run.take() else {
            return Ok(());
        };
        let mut out = match mode {
            ReplicationMode::FullTable => String::new(),
            ReplicationMode::Incremental => std::fs::read_to_string(&self.path).unwrap_or_default(),
        };
        for index in 0..writers {
            let staged = self.staged(&run, index);
            if let Ok(text) = std::fs::read_to_string(&staged) {
                out.push_str(&text);
                std::fs::remove_file(staged)?;
            }
        }
        let mut temp = self.path.clone().into_os_string();
        temp.push(".publishing");
        std::fs::write(&temp, out)?;
        std::fs::rename(temp, &self.path)?;
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        if let Some((run, _, writers)) = self.run.take() {
            for index in 0..writers {
                let _ = std::fs::remove_file(self.staged(&run, index));
            }
        }
        Ok(())
    }
}

struct LinesWriter {
    out: std::io::BufWriter<std::fs::File>,
    column: String,
}

impl Writer for LinesWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let ids = batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| PluginError::data("no Int64 column `id`"))?;
        let labels = batch
            .column_by_name(&self.column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| PluginError::data(format!("no text column `{}`", self.column)))?;
        for row in 0..batch.num_rows() {
            let label = if labels.is_null(row) {
                ""
            } else {
                labels.value(row)
            };
            writeln!(self.out, "{}\t{label}", ids.value(row))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

export_plugin!(
    PluginDefinition::new("abi1", env!("CARGO_PKG_VERSION"))
        .description("Test-only components built against plugin ABI 1 as first released.")
        .source(
            "numbers",
            "Numbers and their labels.",
            |c: NumbersConfig| Ok(Numbers(c))
        )
        .transform("shout", "Upper-cases text columns.", |_: ShoutConfig| Ok(
            Shout
        ))
        .target(
            "lines",
            "Tab-separated lines in one file.",
            |c: LinesConfig| {
                Ok(Lines {
                    path: PathBuf::from(c.path),
                    column: c.column,
                    run: None,
                })
            }
        )
);
