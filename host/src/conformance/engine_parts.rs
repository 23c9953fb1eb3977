//! What the suite runs components with: a source of given batches (failing, stopping or
//! resumable on demand), a target that keeps what it receives, runs through the engine, keys,
//! checksums, and calls guarded by a time limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginError, ReadContext, ReadRange, ReplicationMode, Result,
    Source, Target, WriteContext, Writer,
};
use serde_json::{Value, json};

use super::CheckOptions;
use crate::engine::{self, EngineOptions, Named, NoObserver, Pipeline, RunFailed, RunSummary};

/// Engine options for a check: small queues, the suite's stall timeout and cancel grace.
pub(crate) fn engine_options(
    options: &CheckOptions,
    mode: ReplicationMode,
    verify: engine::Verify,
) -> EngineOptions {
    EngineOptions {
        mode,
        max_buffered_batches: 4,
        stall_timeout: Some(options.stall_timeout),
        cancel_grace: options.cancel_grace,
        verify,
        ..EngineOptions::default()
    }
}

/// A failed run as one line: the stage's error with its causes, and the abort's error.
pub(crate) fn failure(e: &RunFailed) -> String {
    let mut text = crate::error::chain(&e.error);
    if let Some(abort) = &e.abort_error {
        text.push_str(&format!("; aborting the target failed too: {abort}"));
    }
    text
}

/// A source handing out given batches, one partition per list.
pub(crate) struct DataSource {
    parts: Vec<Vec<RecordBatch>>,
    /// Fail after handing out this many batches in all.
    pub fail_after: Option<usize>,
    /// Wait this long before each batch.
    pub delay: Duration,
    /// Set this flag after handing out the first batch.
    pub stop_after_first: Option<Arc<AtomicBool>>,
    handed: Arc<AtomicUsize>,
}

impl DataSource {
    /// Batches in `partitions` partitions (batch `i` goes to partition `i % partitions`).
    pub(crate) fn new(batches: Vec<RecordBatch>, partitions: usize) -> Self {
        let n = partitions.max(1);
        let mut parts = vec![Vec::new(); n];
        for (i, b) in batches.into_iter().enumerate() {
            parts[i % n].push(b);
        }
        Self {
            parts,
            fail_after: None,
            delay: Duration::ZERO,
            stop_after_first: None,
            handed: Arc::default(),
        }
    }

    fn stream(&self, batches: VecDeque<RecordBatch>) -> Box<dyn BatchStream> {
        Box::new(DataStream {
            batches,
            last: None,
            fail_after: self.fail_after,
            delay: self.delay,
            stop_after_first: self.stop_after_first.clone(),
            handed: self.handed.clone(),
        })
    }
}

impl Source for DataSource {
    fn partitions(&self, _context: &ReadContext) -> Result<Vec<Partition>> {
        Ok((0..self.parts.len())
            .map(|index| Partition {
                index,
                spec: json!({ "part": index }),
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let batches = self.parts.get(partition.index).cloned().unwrap_or_default();
        Ok(self.stream(batches.into()))
    }

    fn resumable(&self) -> bool {
        true
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        let after = range.after.as_ref().and_then(Value::as_i64);
        let upto = range.upto.as_ref().and_then(Value::as_i64);
        let mut kept = VecDeque::new();
        for batch in self.parts.get(partition.index).into_iter().flatten() {
            let ids = id_column(batch)?;
            let mask: BooleanArray = ids
                .iter()
                .map(|id| id.map(|id| after.is_none_or(|a| id > a) && upto.is_none_or(|u| id <= u)))
                .collect();
            let part = arrow::compute::filter_record_batch(batch, &mask)?;
            if part.num_rows() > 0 {
                kept.push_back(part);
            }
        }
        Ok(self.stream(kept))
    }
}

fn id_column(batch: &RecordBatch) -> Result<&Int64Array> {
    batch
        .column_by_name("id")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| PluginError::internal("the suite's batches have an Int64 `id`"))
}

struct DataStream {
    batches: VecDeque<RecordBatch>,
    last: Option<Value>,
    fail_after: Option<usize>,
    delay: Duration,
    stop_after_first: Option<Arc<AtomicBool>>,
    handed: Arc<AtomicUsize>,
}

impl BatchStream for DataStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.batches.is_empty() {
            return Ok(None);
        }
        if let Some(n) = self.fail_after
            && self.handed.load(Ordering::SeqCst) >= n
        {
            // Let the target take in what was handed out first, so that the failure finds
            // rows written into its staging.
            std::thread::sleep(Duration::from_millis(300));
            return Err(PluginError::io(format!(
                "the suite's source fails on purpose after {n} batches"
            )));
        }
        std::thread::sleep(self.delay);
        let Some(batch) = self.batches.pop_front() else {
            return Ok(None);
        };
        let ids = id_column(&batch)?;
        if !ids.is_empty() {
            self.last = Some(Value::from(ids.value(ids.len() - 1)));
        }
        if self.handed.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(stop) = &self.stop_after_first
        {
            stop.store(true, Ordering::SeqCst);
        }
        Ok(Some(batch))
    }

    fn position(&self) -> Option<Value> {
        self.last.clone()
    }
}

/// What a [`Collect`] target received, and when it asked the run to stop.
#[derive(Clone, Default)]
pub(crate) struct Collected {
    pub batches: Arc<Mutex<Vec<RecordBatch>>>,
    pub stopped_at: Arc<Mutex<Option<Instant>>>,
}

impl Collected {
    pub(crate) fn take(&self) -> Vec<RecordBatch> {
        std::mem::take(&mut *self.batches.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A target keeping every batch; it reports `offset` as its own and, with `stop`, sets the
/// flag when the first batch arrives and then takes its time, so that the source is still
/// reading when the run stops.
pub(crate) struct Collect {
    pub collected: Collected,
    pub offset: Option<Value>,
    pub stop: Option<Arc<AtomicBool>>,
}

impl Target for Collect {
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(self.offset.clone())
    }

    fn open(&mut self, _context: &WriteContext) -> Result<()> {
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(CollectWriter {
            collected: self.collected.clone(),
            stop: self.stop.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        Ok(())
    }
}

struct CollectWriter {
    collected: Collected,
    stop: Option<Arc<AtomicBool>>,
}

impl Writer for CollectWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.collected
            .batches
            .lock()
            .map_err(PluginError::internal)?
            .push(batch);
        if let Some(stop) = &self.stop
            && !stop.swap(true, Ordering::SeqCst)
        {
            *self
                .collected
                .stopped_at
                .lock()
                .map_err(PluginError::internal)? = Some(Instant::now());
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Runs `source` into a [`Collect`] target reporting `offset`; returns what arrived.
pub(crate) fn read_through_engine(
    source: Named<Box<dyn Source>>,
    options: &EngineOptions,
    offset: Option<Value>,
    stop: Option<Arc<AtomicBool>>,
) -> (std::result::Result<RunSummary, Box<RunFailed>>, Collected) {
    let collected = Collected::default();
    let options = EngineOptions {
        stop: stop.clone(),
        ..options.clone()
    };
    let pipeline = Pipeline {
        source,
        transforms: vec![],
        target: Named::new(
            "collect",
            Box::new(Collect {
                collected: collected.clone(),
                offset,
                stop,
            }) as Box<dyn Target>,
        ),
    };
    let result = engine::run(pipeline, &options, &mut NoObserver);
    (result, collected)
}

/// Creates source `id` of `plugin` from `config`, named and with the capabilities the plugin
/// declares for it, waiting at most `limit` for the plugin.
pub(crate) fn create_source(
    plugin: &Arc<crate::plugins::LoadedPlugin>,
    id: &str,
    config: &Value,
    limit: Duration,
) -> std::result::Result<Named<Box<dyn Source>>, String> {
    let capabilities = super::find(plugin, fastlane_plugin_api::ComponentKind::Source, id)
        .map(|c| c.capabilities.clone())
        .unwrap_or_default();
    let (plugin, id, config) = (plugin.clone(), id.to_owned(), config.clone());
    with_timeout(limit, "creating the source", move || {
        plugin
            .create_source(&id, &config)
            .map(|s| Named::new(id, Box::new(s) as Box<dyn Source>).with_capabilities(capabilities))
    })?
    .map_err(|e| format!("creating the source failed: {e}"))
}

/// Calls `f` on a thread of its own and waits at most `limit` for it; a call that does not
/// return in time is left behind and reported.
pub(crate) fn with_timeout<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fastlane-check".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(limit).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => {
            format!("{what} did not return within {} s", limit.as_secs_f64())
        }
        mpsc::RecvTimeoutError::Disconnected => format!("{what} panicked"),
    })
}

/// A key value, compared as the suite compares keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    /// As a start offset.
    pub(crate) fn json(&self) -> Value {
        match self {
            Self::Int(i) => Value::from(*i),
            Self::Text(s) => Value::from(s.as_str()),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// The key column of each batch, row by row; integer and text keys only.
pub(crate) fn keys(
    batches: &[RecordBatch],
    column: &str,
) -> std::result::Result<Vec<Vec<Key>>, String> {
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let array = batch.column_by_name(column).ok_or_else(|| {
            format!(
                "no key column `{column}` in a batch {}",
                super::data::schema_text(batch)
            )
        })?;
        if array.null_count() > 0 {
            return Err(format!("the key column `{column}` holds nulls"));
        }
        let data_type = array.data_type();
        let row_keys: Vec<Key> = if data_type.is_integer() {
            let ints = arrow_cast::cast(array, &DataType::Int64)
                .map_err(|e| format!("key `{column}`: {e}"))?;
            let ints = ints
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or("an Int64 cast")?;
            ints.values().iter().map(|&v| Key::Int(v)).collect()
        } else if matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            let text = arrow_cast::cast(array, &DataType::Utf8)
                .map_err(|e| format!("key `{column}`: {e}"))?;
            let text = text
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("a Utf8 cast")?;
            text.iter()
                .map(|v| Key::Text(v.unwrap_or_default().to_owned()))
                .collect()
        } else {
            return Err(format!(
                "the key column `{column}` is {data_type}; the offset checks take integer or \
                 text keys"
            ));
        };
        out.push(row_keys);
    }
    Ok(out)
}

/// The rows of `batches` whose key is after `after`.
pub(crate) fn rows_after(
    batches: &[RecordBatch],
    keys: &[Vec<Key>],
    after: &Key,
) -> std::result::Result<Vec<RecordBatch>, String> {
    batches
        .iter()
        .zip(keys)
        .map(|(batch, keys)| {
            let mask: BooleanArray = keys.iter().map(|k| Some(k > after)).collect();
            arrow::compute::filter_record_batch(batch, &mask).map_err(|e| e.to_string())
        })
        .collect()
}

/// The checksum of all rows of `batches`.
pub(crate) fn checksum(batches: &[RecordBatch]) -> std::result::Result<Checksum, String> {
    let mut sum = Checksum::default();
    for batch in batches {
        sum.add(Checksum::of_batch(batch).map_err(|e| e.to_string())?);
    }
    Ok(sum)
}
