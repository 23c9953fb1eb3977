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
//! | source | `ranged` | like `generate` (`id`, `payload`), with positions, ranges and counts (`resume`, `verify_count`); `flaw` breaks one rule of the contract |
//! | target | `store` | Arrow IPC files under `path`, staged then published at commit; `flaw` breaks one rule of the contract |
//! | source | `stored` | reads what `store` published under `path` |
//! | target | `kept` | like `store`, keeping a failed checkpointed run's staging for a resume (`resume`); `flaw` breaks one rule of resuming |
//!
//! The flaws (`SourceFlaw`, `TargetFlaw`, `ResumeFlaw`, `TransformFlaw`) give `fastlane plugins check` a component
//! that fails each of its checks.

use std::sync::Arc;
use std::time::Duration;

use fastlane_plugin_api::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use fastlane_plugin_api::arrow_schema::{DataType, Field, Schema};
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginDefinition, PluginError, ReadContext, ReplicationMode,
    Result, Source, Target, Transform, WriteContext, Writer, export_plugin,
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
    /// The rule broken, if any.
    #[serde(default)]
    flaw: Option<TransformFlaw>,
    /// Workers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn id() -> String {
    "id".into()
}

/// A rule of the transform contract that `double` breaks on purpose.
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TransformFlaw {
    /// Every second batch comes out with the column as Float64.
    ShiftingSchema,
    /// The output depends on how many batches came before.
    Unstable,
    /// A batch without rows is an error.
    FailEmpty,
    /// Each instance adds its own number to the column: instances disagree.
    InstanceSalt,
}

static INSTANCES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);

struct Double {
    column: String,
    flaw: Option<TransformFlaw>,
    calls: std::sync::atomic::AtomicI64,
    salt: i64,
}

impl Transform for Double {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.flaw == Some(TransformFlaw::FailEmpty) && batch.num_rows() == 0 {
            return Err(PluginError::data("nothing to double"));
        }
        let Some(index) = batch.schema().index_of(&self.column).ok() else {
            return Err(PluginError::not_found(format!(
                "no column `{}`",
                self.column
            )));
        };
        let column = batch.column(index);
        let ints = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| PluginError::data(format!("`{}` is not Int64", self.column)))?;
        let extra = match self.flaw {
            Some(TransformFlaw::Unstable) => call,
            Some(TransformFlaw::InstanceSalt) => self.salt,
            _ => 0,
        };
        let doubled: Int64Array = ints.iter().map(|v| v.map(|v| v * 2 + extra)).collect();
        let mut columns = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if self.flaw == Some(TransformFlaw::ShiftingSchema) && call % 2 == 1 {
            let floats: arrow_array::Float64Array =
                doubled.iter().map(|v| v.map(|v| v as f64)).collect();
            columns[index] = Arc::new(floats);
            fields[index] = fields[index].clone().with_data_type(DataType::Float64);
        } else {
            columns[index] = Arc::new(doubled);
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
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

/// A rule of the source contract that `ranged` breaks on purpose.
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum SourceFlaw {
    /// Batches after the first have `payload` as LargeUtf8.
    ShiftingSchema,
    /// The first batch of partition 0 is handed out twice.
    RepeatBatch,
    /// `payload` differs from one read to the next.
    Unstable,
    /// INCREMENTAL reads start from the beginning.
    IgnoreOffset,
    /// INCREMENTAL reads include the offset's own row.
    OffByOne,
    /// Counts one row more than a partition holds.
    Miscount,
    /// Range reads ignore where they start.
    BadRange,
    /// Batches have no position.
    NoPosition,
    /// Dropping a stream before its end blocks for 30 s.
    SlowStop,
}

/// Configuration of `ranged`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RangedConfig {
    /// Rows in all (ids from 0).
    #[serde(default = "ranged_rows")]
    rows: u64,
    /// Rows per batch.
    #[serde(default = "ranged_batch")]
    batch_size: u64,
    /// Partitions.
    #[serde(default = "two")]
    partitions: u64,
    /// The rule broken, if any.
    #[serde(default)]
    flaw: Option<SourceFlaw>,
    /// Partitions read at once (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

fn ranged_rows() -> u64 {
    10_000
}

fn ranged_batch() -> u64 {
    1_000
}

fn two() -> u64 {
    2
}

static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Ranged(RangedConfig);

impl Ranged {
    fn bounds(partition: &Partition) -> (u64, u64) {
        (
            partition.spec["start"].as_u64().unwrap_or(0),
            partition.spec["end"].as_u64().unwrap_or(0),
        )
    }

    fn stream(&self, partition: usize, start: u64, end: u64) -> Box<dyn BatchStream> {
        Box::new(RangedStream {
            next: start,
            end,
            batch: self.0.batch_size.max(1),
            flaw: self.0.flaw,
            first: start,
            repeat: self.0.flaw == Some(SourceFlaw::RepeatBatch) && partition == 0,
            read: READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            handed: 0,
            last: None,
        })
    }
}

impl Source for Ranged {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let offset = context.start_offset.as_ref().and_then(Value::as_i64);
        let after = match (offset, self.0.flaw) {
            (None, _) | (_, Some(SourceFlaw::IgnoreOffset)) => 0,
            (Some(o), Some(SourceFlaw::OffByOne)) => o.max(0) as u64,
            (Some(o), _) => (o + 1).max(0) as u64,
        };
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
        let (start, end) = Self::bounds(partition);
        Ok(self.stream(partition.index, start, end))
    }

    fn resumable(&self) -> bool {
        true
    }

    fn read_range(
        &self,
        partition: &Partition,
        range: &fastlane_plugin_api::ReadRange,
    ) -> Result<Box<dyn BatchStream>> {
        let (mut start, mut end) = Self::bounds(partition);
        if let Some(after) = range.after.as_ref().and_then(Value::as_u64)
            && self.0.flaw != Some(SourceFlaw::BadRange)
        {
            start = start.max(after + 1);
        }
        if let Some(upto) = range.upto.as_ref().and_then(Value::as_u64) {
            end = end.min(upto + 1);
        }
        Ok(self.stream(partition.index, start, end.max(start)))
    }

    fn count(&self, partition: &Partition) -> Result<u64> {
        let (start, end) = Self::bounds(partition);
        let extra = u64::from(self.0.flaw == Some(SourceFlaw::Miscount));
        Ok(end - start + extra)
    }
}

struct RangedStream {
    next: u64,
    end: u64,
    batch: u64,
    flaw: Option<SourceFlaw>,
    first: u64,
    repeat: bool,
    read: u64,
    handed: u64,
    last: Option<u64>,
}

impl BatchStream for RangedStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let start = self.next;
        let stop = (start + self.batch).min(self.end);
        if self.repeat && self.handed == 1 {
            self.repeat = false;
            return self.next_batch_from(self.first, (self.first + self.batch).min(self.end));
        }
        self.next = stop;
        self.next_batch_from(start, stop)
    }

    fn position(&self) -> Option<Value> {
        if self.flaw == Some(SourceFlaw::NoPosition) {
            return None;
        }
        self.last.map(Value::from)
    }
}

impl RangedStream {
    fn next_batch_from(&mut self, start: u64, stop: u64) -> Result<Option<RecordBatch>> {
        let ids = Int64Array::from_iter_values(start as i64..stop as i64);
        let read = self.read;
        let unstable = self.flaw == Some(SourceFlaw::Unstable);
        let payload = StringArray::from_iter_values((start..stop).map(|i| {
            if unstable {
                format!("row {i} read {read}")
            } else {
                format!("row {i}")
            }
        }));
        let shifted = self.flaw == Some(SourceFlaw::ShiftingSchema) && self.handed > 0;
        let (payload, payload_type): (ArrayRef, DataType) = if shifted {
            let large = arrow_cast_large(&payload);
            (large, DataType::LargeUtf8)
        } else {
            (Arc::new(payload), DataType::Utf8)
        };
        self.handed += 1;
        self.last = Some(stop - 1);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("payload", payload_type, false),
        ]));
        Ok(Some(RecordBatch::try_new(
            schema,
            vec![Arc::new(ids) as ArrayRef, payload],
        )?))
    }
}

fn arrow_cast_large(strings: &StringArray) -> ArrayRef {
    Arc::new(arrow_array::LargeStringArray::from_iter(strings.iter()))
}

impl Drop for RangedStream {
    fn drop(&mut self) {
        if self.flaw == Some(SourceFlaw::SlowStop) && self.next < self.end {
            std::thread::sleep(Duration::from_secs(30));
        }
    }
}

/// A rule of the target contract that `store` breaks on purpose.
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TargetFlaw {
    /// The last row of each writer's first batch is not stored.
    DropLastRow,
    /// The offset is the smallest key stored.
    WrongOffset,
    /// FULL_TABLE runs append.
    AppendAlways,
    /// An aborted run publishes what it staged.
    PublishOnAbort,
    /// An aborted run leaves its staging files.
    LeakyAbort,
    /// INCREMENTAL runs replace what was there.
    ReplaceAlways,
}

/// Configuration of `store`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    /// The folder of the published files.
    path: String,
    /// The replication key (the host's offset column; `id`).
    #[allow(dead_code)]
    key: Option<String>,
    /// The rule broken, if any.
    #[serde(default)]
    flaw: Option<TargetFlaw>,
    /// Writers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

struct Store {
    config: StoreConfig,
    staging: Option<std::path::PathBuf>,
    mode: ReplicationMode,
    run_id: String,
}

fn arrow_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "arrow") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Moves the staged files of run `run_id` into `published` (after removing what was there,
/// when `replace`), then removes the staging folder.
fn publish(
    staging: &std::path::Path,
    published: &std::path::Path,
    run_id: &str,
    replace: bool,
) -> Result<()> {
    if replace {
        for file in arrow_files(published)? {
            std::fs::remove_file(file)?;
        }
    }
    for file in arrow_files(staging)? {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = format!("{run_id}-{}", name.unwrap_or_default());
        std::fs::rename(&file, published.join(name))?;
    }
    std::fs::remove_dir_all(staging)?;
    Ok(())
}

fn read_arrow(path: &std::path::Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path)?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None)?;
    reader.map(|b| b.map_err(PluginError::from)).collect()
}

impl Target for Store {
    fn get_offset(&self) -> Result<Option<Value>> {
        let mut keys = Vec::new();
        for file in arrow_files(std::path::Path::new(&self.config.path))? {
            for batch in read_arrow(&file)? {
                let ids = batch
                    .column_by_name("id")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .ok_or_else(|| PluginError::data("no Int64 `id`"))?;
                keys.extend(ids.iter().flatten());
            }
        }
        let key = if self.config.flaw == Some(TargetFlaw::WrongOffset) {
            keys.into_iter().min()
        } else {
            keys.into_iter().max()
        };
        Ok(key.map(Value::from))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let staging =
            std::path::Path::new(&self.config.path).join(format!(".staging-{}", context.run_id));
        std::fs::create_dir_all(&staging)?;
        self.staging = Some(staging);
        self.mode = context.mode;
        self.run_id = context.run_id.clone();
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(StoreWriter {
            dir: self
                .staging
                .clone()
                .ok_or_else(|| PluginError::internal("not open"))?,
            index,
            written: 0,
            drop_last: self.config.flaw == Some(TargetFlaw::DropLastRow),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        let replace = self.mode == ReplicationMode::FullTable
            || self.config.flaw == Some(TargetFlaw::ReplaceAlways);
        publish(
            &staging,
            std::path::Path::new(&self.config.path),
            &self.run_id,
            replace && self.config.flaw != Some(TargetFlaw::AppendAlways),
        )
    }

    fn abort(&mut self) -> Result<()> {
        match self.config.flaw {
            Some(TargetFlaw::PublishOnAbort) => self.commit(),
            Some(TargetFlaw::LeakyAbort) => Ok(()),
            _ => match self.staging.take() {
                Some(s) if s.exists() => std::fs::remove_dir_all(s).map_err(PluginError::from),
                _ => Ok(()),
            },
        }
    }
}

struct StoreWriter {
    dir: std::path::PathBuf,
    index: usize,
    written: u64,
    drop_last: bool,
}

impl Writer for StoreWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = if self.drop_last && self.written == 0 && batch.num_rows() > 0 {
            batch.slice(0, batch.num_rows() - 1)
        } else {
            batch
        };
        let path = self
            .dir
            .join(format!("part-{}-{:06}.arrow", self.index, self.written));
        self.written += 1;
        let file = std::fs::File::create(path)?;
        let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema())?;
        writer.write(&batch)?;
        writer.finish()?;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Configuration of `stored`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct StoredConfig {
    /// The folder `store` published into.
    path: String,
    /// Partitions read at once (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

struct Stored(StoredConfig);

impl Source for Stored {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let mut batches = Vec::new();
        for file in arrow_files(std::path::Path::new(&self.0.path))? {
            batches.extend(read_arrow(&file)?);
        }
        Ok(Box::new(fastlane_plugin_api::IterStream(
            batches.into_iter().map(Ok),
        )))
    }
}

/// A rule of resuming that `kept` breaks on purpose.
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ResumeFlaw {
    /// A failed run's staging is removed instead of kept.
    DiscardStaging,
    /// A resumed run reports no checkpoints, though it keeps the rows they cover (rows twice).
    ForgetCheckpoints,
    /// A resumed run reports its checkpoints, but has lost the rows they cover.
    LoseRows,
}

/// Configuration of `kept`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeptConfig {
    /// The folder of the published files.
    path: String,
    /// The replication key (the host's offset column; `id`).
    #[allow(dead_code)]
    key: Option<String>,
    /// The rule of resuming broken, if any.
    #[serde(default)]
    flaw: Option<ResumeFlaw>,
    /// Writers (host setting).
    #[allow(dead_code)]
    concurrency: Option<u32>,
}

/// What one writer's flush made durable: its files and the tags of the batches in them.
#[derive(serde::Serialize, Deserialize, Default)]
struct Flushed {
    files: Vec<String>,
    tags: Vec<String>,
}

/// `store` that keeps a failed checkpointed run's staging, for a resume.
struct Kept {
    config: KeptConfig,
    staging: Option<std::path::PathBuf>,
    mode: ReplicationMode,
    run_id: String,
    tags: Vec<String>,
}

const KEPT_PREFIX: &str = ".kept-";

fn flushed_records(dir: &std::path::Path) -> Result<Vec<Flushed>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("flushed-") && n.ends_with(".json")) {
            let text = std::fs::read_to_string(&path)?;
            out.push(serde_json::from_str(&text).map_err(PluginError::data)?);
        }
    }
    Ok(out)
}

fn largest_id(dir: &std::path::Path) -> Result<Option<i64>> {
    let mut max = None;
    for file in arrow_files(dir)? {
        for batch in read_arrow(&file)? {
            let ids = batch
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| PluginError::data("no Int64 `id`"))?;
            max = ids.iter().flatten().chain(max).max();
        }
    }
    Ok(max)
}

impl Kept {
    fn dir(&self, run_id: &str) -> std::path::PathBuf {
        std::path::Path::new(&self.config.path).join(format!("{KEPT_PREFIX}{run_id}"))
    }
}

impl Target for Kept {
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(largest_id(std::path::Path::new(&self.config.path))?.map(Value::from))
    }

    fn resumable_runs(&self) -> Result<Vec<fastlane_plugin_api::StagedRun>> {
        let mut runs = Vec::new();
        let root = std::path::Path::new(&self.config.path);
        if !root.exists() {
            return Ok(Vec::new());
        }
        for entry in std::fs::read_dir(root)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(run_id) = name.and_then(|n| n.strip_prefix(KEPT_PREFIX).map(str::to_owned))
            else {
                continue;
            };
            let Ok(plan) = std::fs::read_to_string(path.join("plan.json")) else {
                continue;
            };
            let modified = std::fs::metadata(&path)?.modified()?;
            let plan = serde_json::from_str(&plan).map_err(PluginError::data)?;
            runs.push((modified, fastlane_plugin_api::StagedRun { run_id, plan }));
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(runs.into_iter().map(|(_, r)| r).collect())
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let dir = self.dir(&context.run_id);
        self.tags.clear();
        match &context.checkpoint {
            Some(c) if c.resume => {
                let records = flushed_records(&dir)?;
                let durable: std::collections::HashSet<String> = records
                    .iter()
                    .flat_map(|r| r.files.iter().cloned())
                    .collect();
                for file in arrow_files(&dir)? {
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                    let lost = self.config.flaw == Some(ResumeFlaw::LoseRows);
                    if lost || !name.is_some_and(|n| durable.contains(&n)) {
                        std::fs::remove_file(file)?;
                    }
                }
                if self.config.flaw != Some(ResumeFlaw::ForgetCheckpoints) {
                    self.tags = records.into_iter().flat_map(|r| r.tags).collect();
                }
            }
            other => {
                let root = std::path::Path::new(&self.config.path);
                std::fs::create_dir_all(root)?;
                for entry in std::fs::read_dir(root)? {
                    let path = entry?.path();
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    if name.is_some_and(|n| n.starts_with(KEPT_PREFIX)) {
                        std::fs::remove_dir_all(path)?;
                    }
                }
                std::fs::create_dir_all(&dir)?;
                if let Some(c) = other {
                    std::fs::write(dir.join("plan.json"), c.plan.to_string())?;
                }
            }
        }
        self.staging = Some(dir);
        self.mode = context.mode;
        self.run_id = context.run_id.clone();
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let attempt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Box::new(KeptWriter {
            dir: self
                .staging
                .clone()
                .ok_or_else(|| PluginError::internal("not open"))?,
            stem: format!("part-{index}-{attempt}"),
            written: 0,
            flushes: 0,
            pending: Flushed::default(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        publish(
            &staging,
            std::path::Path::new(&self.config.path),
            &self.run_id,
            self.mode == ReplicationMode::FullTable,
        )
    }

    fn abort(&mut self) -> Result<()> {
        match self.staging.take() {
            Some(s) if s.exists() => std::fs::remove_dir_all(s).map_err(PluginError::from),
            _ => Ok(()),
        }
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        Ok(self.tags.clone())
    }

    fn suspend(&mut self) -> Result<()> {
        match self.staging.take() {
            Some(s) if self.config.flaw == Some(ResumeFlaw::DiscardStaging) => {
                std::fs::remove_dir_all(s).map_err(PluginError::from)
            }
            _ => Ok(()),
        }
    }
}

struct KeptWriter {
    dir: std::path::PathBuf,
    /// `part-<writer>-<attempt>`: files of a resumed run never take the names of kept ones.
    stem: String,
    written: u64,
    flushes: u64,
    /// Written since the last flush.
    pending: Flushed,
}

impl Writer for KeptWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let name = format!("{}-{:06}.arrow", self.stem, self.written);
        self.written += 1;
        let file = std::fs::File::create(self.dir.join(&name))?;
        let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema())?;
        writer.write(&batch)?;
        writer.finish()?;
        self.pending.files.push(name);
        Ok(())
    }

    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        self.write(batch)?;
        self.pending.tags.push(tag.to_owned());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.files.is_empty() && self.pending.tags.is_empty() {
            return Ok(());
        }
        let name = format!("flushed-{}-{:06}.json", self.stem, self.flushes);
        self.flushes += 1;
        let text = serde_json::to_string(&self.pending).map_err(PluginError::internal)?;
        let temporary = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::rename(temporary, self.dir.join(name))?;
        self.pending = Flushed::default();
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
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
        .transform("double", "Doubles a column.", |c: DoubleConfig| Ok(
            Double {
                column: c.column,
                flaw: c.flaw,
                calls: Default::default(),
                salt: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            }
        ))
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
        .source(
            "ranged",
            "Generates rows with positions, ranges and counts; may break a rule on purpose.",
            |c: RangedConfig| Ok(Ranged(c))
        )
        .capabilities(&[
            fastlane_plugin_api::Capability::Resume,
            fastlane_plugin_api::Capability::VerifyCount,
        ])
        .target(
            "store",
            "Stores batches as Arrow IPC files; may break a rule on purpose.",
            |c: StoreConfig| Ok(Store {
                config: c,
                staging: None,
                mode: ReplicationMode::FullTable,
                run_id: String::new(),
            })
        )
        .source(
            "stored",
            "Reads what `store` published.",
            |c: StoredConfig| { Ok(Stored(c)) }
        )
        .target(
            "kept",
            "Like `store`, keeping a failed checkpointed run's staging; may break a rule of resuming on purpose.",
            |c: KeptConfig| Ok(Kept {
                config: c,
                staging: None,
                mode: ReplicationMode::FullTable,
                run_id: String::new(),
                tags: Vec::new(),
            })
        )
        .capabilities(&[fastlane_plugin_api::Capability::Resume])
);
