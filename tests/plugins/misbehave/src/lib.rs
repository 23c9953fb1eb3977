//! Test-only plugin: data generators and components that fail, panic or stall on purpose.
//!
//! | kind | id | does |
//! |---|---|---|
//! | source | `generate` | `rows` rows of `id` (Int64) and `payload` (text of `payload_bytes`), in `partitions` partitions |
//! | source | `fail_open` | fails when a partition is opened |
//! | source | `panic_read` | panics after `after_batches` batches |
//! | source | `stall` | never returns from its first read |
//! | transform | `double` | doubles the `id` column (an Arrow-only plugin transform) |
//! | target | `discard` | drops every batch, after `delay_ms` per batch |
//! | target | `fail_open` | fails when opened |
//! | target | `fail_write` | fails on the batch after `after_batches` |
//! | target | `lossy` | counts the rows it keeps, silently losing batch `lose_batch` (from 0); writes the count to `path` at commit |
//! | target | `altering` | keeps the checksum of what it stores, but stores batch `alter_batch` with its last row replaced by a copy of its first (same count, one value changed) |

use std::sync::Arc;
use std::time::Duration;

use fastlane_plugin_api::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use fastlane_plugin_api::arrow_schema::{DataType, Field, Schema};
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginDefinition, PluginError, ReadContext, Result, Source,
    Target, Transform, WriteContext, Writer, export_plugin,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Configuration of `generate`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct GenerateConfig {
    /// Rows in all.
    rows: u64,
    /// Rows per batch.
    #[serde(default = "default_batch")]
    batch_size: u64,
    /// Bytes of text per row in `payload`.
    #[serde(default)]
    payload_bytes: usize,
    /// Partitions.
    #[serde(default = "one")]
    partitions: u64,
    /// Partitions read at once (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn default_batch() -> u64 {
    8192
}

fn one() -> u64 {
    1
}

struct Generate(GenerateConfig);

impl Source for Generate {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let after = context
            .start_offset
            .as_ref()
            .and_then(Value::as_i64)
            .map_or(0, |o| (o + 1).max(0) as u64);
        let n = self.0.partitions.max(1);
        let per = self.0.rows.div_ceil(n);
        Ok((0..n)
            .map(|i| {
                let start = (i * per).max(after);
                let end = ((i + 1) * per).min(self.0.rows);
                Partition {
                    index: i as usize,
                    spec: json!({"start": start, "end": end.max(start)}),
                }
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let start = partition.spec["start"].as_u64().unwrap_or(0);
        let end = partition.spec["end"].as_u64().unwrap_or(0);
        Ok(Box::new(GenerateStream {
            next: start,
            end,
            batch: self.0.batch_size.max(1),
            payload: "x".repeat(self.0.payload_bytes),
        }))
    }
}

struct GenerateStream {
    next: u64,
    end: u64,
    batch: u64,
    payload: String,
}

impl BatchStream for GenerateStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let stop = (self.next + self.batch).min(self.end);
        let ids = Int64Array::from_iter_values(self.next as i64..stop as i64);
        let payload = StringArray::from_iter_values((self.next..stop).map(|_| &self.payload));
        self.next = stop;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, false),
        ]));
        Ok(Some(RecordBatch::try_new(
            schema,
            vec![Arc::new(ids) as ArrayRef, Arc::new(payload)],
        )?))
    }
}

/// Configuration of components that misbehave after a number of batches.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AfterConfig {
    /// Batches that succeed first.
    #[serde(default)]
    after_batches: u64,
    /// Milliseconds to wait per batch.
    #[serde(default)]
    delay_ms: u64,
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

struct FailOpenSource;

impl Source for FailOpenSource {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Err(PluginError::connection(
            "cannot connect to `db.invalid:5432`: connection refused",
        ))
    }
}

struct PanicRead(u64);

impl Source for PanicRead {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(PanicStream {
            left: self.0,
            inner: GenerateStream {
                next: 0,
                end: u64::MAX,
                batch: 100,
                payload: String::new(),
            },
        }))
    }
}

struct PanicStream {
    left: u64,
    inner: GenerateStream,
}

impl BatchStream for PanicStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.left == 0 {
            panic!("deliberate panic while reading");
        }
        self.left -= 1;
        self.inner.next_batch()
    }
}

struct Stall;

impl Source for Stall {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(StallStream))
    }
}

struct StallStream;

impl BatchStream for StallStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Configuration of `double`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DoubleConfig {
    /// The integer column to double.
    #[serde(default = "id")]
    column: String,
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn id() -> String {
    "id".into()
}

struct Double(String);

impl Transform for Double {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(index) = batch.schema().index_of(&self.0).ok() else {
            return Err(PluginError::not_found(format!("no column `{}`", self.0)));
        };
        let column = batch.column(index);
        let ints = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| PluginError::data(format!("`{}` is not Int64", self.0)))?;
        let doubled: Int64Array = ints.iter().map(|v| v.map(|v| v * 2)).collect();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(doubled);
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

struct Discard {
    delay: Duration,
    fail_open: bool,
    fail_after: Option<u64>,
}

impl Target for Discard {
    fn open(&mut self, _context: &WriteContext) -> Result<()> {
        if self.fail_open {
            return Err(PluginError::connection(
                "cannot reach `warehouse.invalid`: no route to host",
            ));
        }
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(DiscardWriter {
            delay: self.delay,
            fail_after: self.fail_after,
            written: 0,
        }))
    }

    fn commit(&mut self) -> Result<()> {
        log::info!("discard target committed");
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        log::warn!("discard target aborted");
        Ok(())
    }
}

struct DiscardWriter {
    delay: Duration,
    fail_after: Option<u64>,
    written: u64,
}

impl Writer for DiscardWriter {
    fn write(&mut self, _batch: RecordBatch) -> Result<()> {
        if self.fail_after.is_some_and(|n| self.written >= n) {
            return Err(PluginError::io("disk full (deliberate)"));
        }
        self.written += 1;
        std::thread::sleep(self.delay);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Configuration of `lossy`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LossyConfig {
    /// The batch (counted from 0 over all writers) that is lost.
    lose_batch: u64,
    /// Where the commit writes the row count.
    path: String,
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

/// A target that loses one batch without a word, and counts what it kept honestly.
struct Lossy {
    config: LossyConfig,
    seen: Arc<std::sync::atomic::AtomicU64>,
    kept: Arc<std::sync::atomic::AtomicU64>,
}

impl Target for Lossy {
    fn open(&mut self, _context: &WriteContext) -> Result<()> {
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(LossyWriter {
            lose: self.config.lose_batch,
            seen: self.seen.clone(),
            kept: self.kept.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let kept = self.kept.load(std::sync::atomic::Ordering::SeqCst);
        std::fs::write(&self.config.path, kept.to_string()).map_err(PluginError::from)
    }

    fn abort(&mut self) -> Result<()> {
        Ok(())
    }

    fn staged_rows(&self) -> Result<u64> {
        Ok(self.kept.load(std::sync::atomic::Ordering::SeqCst))
    }
}

struct LossyWriter {
    lose: u64,
    seen: Arc<std::sync::atomic::AtomicU64>,
    kept: Arc<std::sync::atomic::AtomicU64>,
}

impl Writer for LossyWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n != self.lose {
            self.kept
                .fetch_add(batch.num_rows() as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Configuration of `altering`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AlteringConfig {
    /// The batch (counted from 0 over all writers) whose last row is replaced.
    alter_batch: u64,
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

/// A target that changes one row of one batch without a word; its count stays right, its
/// checksum (of what it stores) does not.
struct Altering {
    alter: u64,
    seen: Arc<std::sync::atomic::AtomicU64>,
    stored: Arc<std::sync::Mutex<Checksum>>,
}

impl Target for Altering {
    fn open(&mut self, _context: &WriteContext) -> Result<()> {
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(AlteringWriter {
            alter: self.alter,
            seen: self.seen.clone(),
            stored: self.stored.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        Ok(())
    }

    fn staged_rows(&self) -> Result<u64> {
        Ok(self.stored.lock().map_err(PluginError::internal)?.rows)
    }

    fn staged_checksum(&self) -> Result<Checksum> {
        Ok(*self.stored.lock().map_err(PluginError::internal)?)
    }
}

struct AlteringWriter {
    alter: u64,
    seen: Arc<std::sync::atomic::AtomicU64>,
    stored: Arc<std::sync::Mutex<Checksum>>,
}

impl Writer for AlteringWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let rows = batch.num_rows();
        let checksum = |b: &RecordBatch| Checksum::of_batch(b).map_err(PluginError::data);
        let stored = if n == self.alter && rows > 1 {
            let mut c = checksum(&batch.slice(0, rows - 1))?;
            c.add(checksum(&batch.slice(0, 1))?);
            c
        } else {
            checksum(&batch)?
        };
        self.stored
            .lock()
            .map_err(PluginError::internal)?
            .add(stored);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

export_plugin!(
    PluginDefinition::new("misbehave", env!("CARGO_PKG_VERSION"))
        .description("Test-only components that generate data, fail, panic or stall.")
        .source("generate", "Generates rows.", |c: GenerateConfig| Ok(
            Generate(c)
        ))
        .source("fail_open", "Fails to open.", |_: AfterConfig| Ok(
            FailOpenSource
        ))
        .source("panic_read", "Panics while reading.", |c: AfterConfig| {
            Ok(PanicRead(c.after_batches))
        })
        .source("stall", "Never returns.", |_: AfterConfig| Ok(Stall))
        .transform("double", "Doubles a column.", |c: DoubleConfig| Ok(Double(
            c.column
        )))
        .target("discard", "Drops everything.", |c: AfterConfig| {
            Ok(Discard {
                delay: Duration::from_millis(c.delay_ms),
                fail_open: false,
                fail_after: None,
            })
        })
        .target("fail_open", "Fails to open.", |_: AfterConfig| {
            Ok(Discard {
                delay: Duration::ZERO,
                fail_open: true,
                fail_after: None,
            })
        })
        .target("fail_write", "Fails writing.", |c: AfterConfig| {
            Ok(Discard {
                delay: Duration::from_millis(c.delay_ms),
                fail_open: false,
                fail_after: Some(c.after_batches),
            })
        })
        .target("lossy", "Loses one batch silently.", |c: LossyConfig| {
            Ok(Lossy {
                config: c,
                seen: Arc::default(),
                kept: Arc::default(),
            })
        })
        .capabilities(&[fastlane_plugin_api::Capability::VerifyCount])
        .target(
            "altering",
            "Changes one row silently.",
            |c: AlteringConfig| {
                Ok(Altering {
                    alter: c.alter_batch,
                    seen: Arc::default(),
                    stored: Arc::default(),
                })
            }
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::VerifyCount,
            fastlane_plugin_api::Capability::VerifyChecksum,
        ])
);
