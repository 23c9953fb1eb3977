//! The async side of a plugin: one tokio runtime per plugin library, and the bridge between the
//! host's blocking calls and async code.
//!
//! - [`PluginRuntime`]: a runtime built on first use, with as many worker threads as the host
//!   runs (up to a cap). A plugin keeps one in a `static`; each plugin library links its own
//!   copy of this crate, so each library has its own runtime.
//! - [`AsyncSource`], [`AsyncTarget`] and [`AsyncWriter`]: a source, target or writer written
//!   once, as async code. [`PluginRuntime::on`] wraps one in [`OnRuntime`], which is the
//!   host's [`Source`], [`Target`] or [`Writer`]: every call blocks on the runtime.
//! - [`PluginRuntime::stream`]: a partition read by a task that sends batches ahead of the
//!   host, handed to the host as a [`BatchStream`]. The task's error, or its panic, is the
//!   stream's error; a task that ends without saying so is never taken for a complete read.
//!
//! ```
//! use fastlane_plugin_support::runtime::PluginRuntime;
//!
//! static RUNTIME: PluginRuntime = PluginRuntime::new("example", 4);
//!
//! assert_eq!(RUNTIME.block_on(async { 40 + 2 }), 42);
//! ```

use std::future::Future;
use std::sync::OnceLock;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{
    BatchStream, Checksum, ErrorCode, Partition, PluginError, ReadContext, ReadRange, Result,
    Source, StagedRun, Target, WriteContext, Writer,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// A plugin library's tokio runtime, built on first use.
pub struct PluginRuntime {
    name: &'static str,
    max_workers: usize,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl PluginRuntime {
    /// A runtime whose threads are named `fastlane-NAME`, with as many worker threads as the
    /// host runs, at most `max_workers`.
    pub const fn new(name: &'static str, max_workers: usize) -> Self {
        Self {
            name,
            max_workers,
            runtime: OnceLock::new(),
        }
    }

    /// The runtime, built on the first call.
    ///
    /// # Panics
    /// When the operating system refuses its threads.
    pub fn get(&self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(
                    fastlane_plugin_api::host_threads().clamp(1, self.max_workers.max(1)),
                )
                .thread_name(format!("fastlane-{}", self.name))
                .enable_all()
                .build()
                .unwrap_or_else(|e| {
                    panic!(
                        "the tokio runtime of the {} plugin could not start: {e}",
                        self.name
                    )
                })
        })
    }

    /// Runs `future` to its end on the runtime, blocking the calling (host) thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.get().block_on(future)
    }

    /// Wraps an async source, target or writer as the host's blocking one, run on this runtime.
    pub fn on<T>(&'static self, inner: T) -> OnRuntime<T> {
        OnRuntime {
            runtime: self,
            inner,
        }
    }

    /// A stream of the batches that `produce` sends, run as a task on this runtime.
    ///
    /// At most `ahead` batches wait for the host; with [`BatchSender::room`] the task can also
    /// wait for the host to take the last one before it builds the next. `what` names the task
    /// in the error of a panic (`the reader of partition 3`).
    pub fn stream<F, Fut, E>(&self, ahead: usize, what: String, produce: F) -> Box<dyn BatchStream>
    where
        F: FnOnce(BatchSender) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<PluginError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(ahead.max(1));
        let task = produce(BatchSender { tx: tx.clone() });
        self.get().spawn(async move {
            use futures_util::FutureExt;
            let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
            let last = match outcome {
                Ok(Ok(())) => Ok(None),
                Ok(Err(e)) => Err(e.into()),
                Err(panic) => Err(PluginError::new(
                    ErrorCode::PANIC,
                    format!("{what} panicked: {}", panic_message(panic.as_ref())),
                )),
            };
            let _ = tx.send(last).await;
        });
        Box::new(TaskStream {
            rx,
            done: false,
            position: None,
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// What a stream's task sends: a batch with the position after it, the end (`None`), or the
/// error that ended it.
type Message = Result<Option<(RecordBatch, Option<Value>)>>;

/// The sending side of [`PluginRuntime::stream`], given to the task.
#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<Message>,
}

impl BatchSender {
    /// Sends a batch to the host; false when the host has stopped reading.
    pub async fn send(&self, batch: RecordBatch) -> bool {
        self.tx.send(Ok(Some((batch, None)))).await.is_ok()
    }

    /// Sends a batch and the position after it (see [`BatchStream::position`]); false when the
    /// host has stopped reading.
    pub async fn send_at(&self, batch: RecordBatch, position: Value) -> bool {
        self.tx
            .send(Ok(Some((batch, Some(position)))))
            .await
            .is_ok()
    }

    /// Waits until the host has taken the batches sent so far, so that the next one is not
    /// built while they still wait; false when the host has stopped reading.
    pub async fn room(&self) -> bool {
        self.tx.reserve().await.is_ok()
    }
}

struct TaskStream {
    rx: mpsc::Receiver<Message>,
    done: bool,
    position: Option<Value>,
}

impl BatchStream for TaskStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        match self.rx.blocking_recv() {
            Some(Ok(Some((batch, position)))) => {
                self.position = position;
                Ok(Some(batch))
            }
            Some(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            // The task ended without saying so: never report that as a complete read.
            None => Err(PluginError::internal(
                "the partition's reader stopped before the end of its data",
            )),
        }
    }

    fn position(&self) -> Option<Value> {
        self.position.clone()
    }
}

/// A source written as async code; [`PluginRuntime::on`] makes it the host's [`Source`].
pub trait AsyncSource: Send + Sync + 'static {
    /// The source's own error.
    type Error: Into<PluginError>;

    /// Splits the data into partitions (one by default).
    fn partitions(
        &self,
        context: &ReadContext,
    ) -> impl Future<Output = std::result::Result<Vec<Partition>, Self::Error>> {
        let _ = context;
        async {
            Ok(vec![Partition {
                index: 0,
                spec: Value::Null,
            }])
        }
    }

    /// Starts reading a partition (usually with [`PluginRuntime::stream`]).
    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>>;

    /// Whether the source, as configured, can resume (see [`Source::resumable`]).
    fn resumable(&self) -> bool {
        false
    }

    /// Counts a partition's rows (see [`Source::count`]).
    fn count(
        &self,
        partition: &Partition,
    ) -> impl Future<Output = std::result::Result<u64, PluginError>> {
        let _ = partition;
        async {
            Err(PluginError::unsupported(
                "this source cannot count its rows",
            ))
        }
    }

    /// Starts reading a range of a partition (see [`Source::read_range`]).
    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        let _ = (partition, range);
        Err(PluginError::unsupported(
            "this source cannot read part of a partition",
        ))
    }

    /// The checksum of a partition's rows (see [`Source::checksum`]).
    fn checksum(
        &self,
        partition: &Partition,
    ) -> impl Future<Output = std::result::Result<Checksum, PluginError>> {
        let _ = partition;
        async {
            Err(PluginError::unsupported(
                "this source cannot compute checksums",
            ))
        }
    }
}

/// A target written as async code; [`PluginRuntime::on`] makes it the host's [`Target`].
pub trait AsyncTarget: Send + Sync + 'static {
    /// The target's own error.
    type Error: Into<PluginError>;

    /// The offset of the data already loaded (none by default).
    fn get_offset(&self) -> impl Future<Output = std::result::Result<Option<Value>, Self::Error>> {
        async { Ok(None) }
    }

    /// Prepares the run.
    fn open(
        &mut self,
        context: &WriteContext,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>>;

    /// A writer for one target worker (no I/O: writers connect when they first write).
    fn writer(&self, index: usize) -> Result<Box<dyn Writer>>;

    /// Publishes what the writers wrote.
    fn commit(&mut self) -> impl Future<Output = std::result::Result<(), Self::Error>>;

    /// Leaves the target as it was before the run.
    fn abort(&mut self) -> impl Future<Output = std::result::Result<(), Self::Error>>;

    /// The unfinished runs whose staging the target keeps (see [`Target::resumable_runs`]).
    fn resumable_runs(
        &self,
    ) -> impl Future<Output = std::result::Result<Vec<StagedRun>, PluginError>> {
        async { Err(PluginError::unsupported("this target cannot resume a run")) }
    }

    /// The tags kept with a resumed run's rows (see [`Target::checkpoints`]).
    fn checkpoints(&self) -> impl Future<Output = std::result::Result<Vec<String>, PluginError>> {
        async { Err(PluginError::unsupported("this target cannot resume a run")) }
    }

    /// Counts the staged rows (see [`Target::staged_rows`]).
    fn staged_rows(&self) -> impl Future<Output = std::result::Result<u64, PluginError>> {
        async {
            Err(PluginError::unsupported(
                "this target cannot count its staged rows",
            ))
        }
    }

    /// Ends a failed run keeping its staging (see [`Target::suspend`]).
    fn suspend(&mut self) -> impl Future<Output = std::result::Result<(), PluginError>> {
        async {
            Err(PluginError::unsupported(
                "this target cannot keep a run's staging",
            ))
        }
    }

    /// The checksum of the staging (see [`Target::staged_checksum`]).
    fn staged_checksum(&self) -> impl Future<Output = std::result::Result<Checksum, PluginError>> {
        async {
            Err(PluginError::unsupported(
                "this target cannot compute checksums of its staging",
            ))
        }
    }
}

/// A writer written as async code; [`PluginRuntime::on`] makes it the host's [`Writer`].
pub trait AsyncWriter: Send + 'static {
    /// The writer's own error.
    type Error: Into<PluginError>;

    /// Writes one batch.
    fn write(
        &mut self,
        batch: RecordBatch,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>>;

    /// Ends the writer's share of the run.
    fn close(&mut self) -> impl Future<Output = std::result::Result<(), Self::Error>>;

    /// Writes one batch and keeps `tag` with its rows (see [`Writer::write_tagged`]).
    fn write_tagged(
        &mut self,
        batch: RecordBatch,
        tag: &str,
    ) -> impl Future<Output = std::result::Result<(), PluginError>> {
        let _ = (batch, tag);
        async {
            Err(PluginError::unsupported(
                "this target cannot keep checkpoints",
            ))
        }
    }

    /// Makes what was written durable (see [`Writer::flush`]); nothing by default.
    fn flush(&mut self) -> impl Future<Output = std::result::Result<(), PluginError>> {
        async { Ok(()) }
    }
}

/// An async source, target or writer run on a plugin's runtime: the host's blocking one.
pub struct OnRuntime<T> {
    runtime: &'static PluginRuntime,
    inner: T,
}

impl<T> OnRuntime<T> {
    /// The wrapped component.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<S: AsyncSource> Source for OnRuntime<S> {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        self.runtime
            .block_on(self.inner.partitions(context))
            .map_err(Into::into)
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        self.inner.read(partition)
    }

    fn resumable(&self) -> bool {
        self.inner.resumable()
    }

    fn count(&self, partition: &Partition) -> Result<u64> {
        self.runtime.block_on(self.inner.count(partition))
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        self.inner.read_range(partition, range)
    }

    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        self.runtime.block_on(self.inner.checksum(partition))
    }
}

impl<T: AsyncTarget> Target for OnRuntime<T> {
    fn get_offset(&self) -> Result<Option<Value>> {
        self.runtime
            .block_on(self.inner.get_offset())
            .map_err(Into::into)
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        self.runtime
            .block_on(self.inner.open(context))
            .map_err(Into::into)
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        self.inner.writer(index)
    }

    fn commit(&mut self) -> Result<()> {
        self.runtime
            .block_on(self.inner.commit())
            .map_err(Into::into)
    }

    fn abort(&mut self) -> Result<()> {
        self.runtime
            .block_on(self.inner.abort())
            .map_err(Into::into)
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        self.runtime.block_on(self.inner.resumable_runs())
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        self.runtime.block_on(self.inner.checkpoints())
    }

    fn staged_rows(&self) -> Result<u64> {
        self.runtime.block_on(self.inner.staged_rows())
    }

    fn suspend(&mut self) -> Result<()> {
        self.runtime.block_on(self.inner.suspend())
    }

    fn staged_checksum(&self) -> Result<Checksum> {
        self.runtime.block_on(self.inner.staged_checksum())
    }
}

impl<W: AsyncWriter> Writer for OnRuntime<W> {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.runtime
            .block_on(self.inner.write(batch))
            .map_err(Into::into)
    }

    fn close(&mut self) -> Result<()> {
        self.runtime
            .block_on(self.inner.close())
            .map_err(Into::into)
    }

    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        self.runtime.block_on(self.inner.write_tagged(batch, tag))
    }

    fn flush(&mut self) -> Result<()> {
        self.runtime.block_on(self.inner.flush())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    static RUNTIME: PluginRuntime = PluginRuntime::new("test", 2);

    fn batch(n: i64) -> RecordBatch {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![n]));
        RecordBatch::try_from_iter([("n", column)]).unwrap()
    }

    fn read_all(stream: &mut dyn BatchStream) -> (Vec<i64>, Option<PluginError>) {
        let mut seen = Vec::new();
        loop {
            match stream.next_batch() {
                Ok(Some(b)) => seen.push(
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .value(0),
                ),
                Ok(None) => return (seen, None),
                Err(e) => return (seen, Some(e)),
            }
        }
    }

    #[test]
    fn a_stream_delivers_the_batches_in_order_then_ends() {
        let mut stream = RUNTIME.stream(1, "the reader".into(), |tx| async move {
            for n in 0..5 {
                if !tx.send(batch(n)).await || !tx.room().await {
                    break;
                }
            }
            Ok::<(), PluginError>(())
        });
        let (seen, error) = read_all(stream.as_mut());
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert!(error.is_none());
        assert!(stream.next_batch().unwrap().is_none(), "ended for good");
    }

    #[test]
    fn a_stream_reports_its_task_error_after_the_batches_sent_before_it() {
        let mut stream = RUNTIME.stream(2, "the reader".into(), |tx| async move {
            tx.send(batch(7)).await;
            Err(PluginError::data("the third row is broken"))
        });
        let (seen, error) = read_all(stream.as_mut());
        assert_eq!(seen, [7]);
        assert_eq!(error.unwrap().message(), "the third row is broken");
    }

    #[test]
    fn a_panicking_task_is_an_error_naming_it() {
        let mut stream = RUNTIME.stream(1, "the reader of partition 3".into(), |_tx| async move {
            if batch(0).num_rows() == 1 {
                panic!("bad page");
            }
            Ok::<(), PluginError>(())
        });
        let (seen, error) = read_all(stream.as_mut());
        assert!(seen.is_empty());
        let error = error.expect("an error");
        assert_eq!(error.code(), ErrorCode::PANIC);
        assert_eq!(
            error.message(),
            "the reader of partition 3 panicked: bad page"
        );
    }

    #[test]
    fn a_producer_sees_when_the_host_stops_reading() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let stream = RUNTIME.stream(1, "the reader".into(), move |tx| async move {
            let mut sent = 0;
            while tx.send(batch(sent)).await {
                sent += 1;
            }
            done_tx.send(sent).unwrap();
            Ok::<(), PluginError>(())
        });
        drop(stream);
        let sent = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(sent <= 1, "sent {sent} batches nobody read");
    }

    struct Counting {
        opened: bool,
        committed: bool,
    }

    impl AsyncTarget for Counting {
        type Error = PluginError;

        async fn open(&mut self, _context: &WriteContext) -> Result<()> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.opened = true;
            Ok(())
        }

        fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
            Ok(Box::new(RUNTIME.on(Rows(0))))
        }

        async fn commit(&mut self) -> Result<()> {
            if !self.opened {
                return Err(PluginError::internal("commit before open"));
            }
            self.committed = true;
            Ok(())
        }

        async fn abort(&mut self) -> Result<()> {
            Ok(())
        }
    }

    struct Rows(usize);

    impl AsyncWriter for Rows {
        type Error = PluginError;

        async fn write(&mut self, batch: RecordBatch) -> Result<()> {
            tokio::task::yield_now().await;
            self.0 += batch.num_rows();
            Ok(())
        }

        async fn close(&mut self) -> Result<()> {
            if self.0 == 2 {
                Ok(())
            } else {
                Err(PluginError::data(format!("wrote {} rows", self.0)))
            }
        }
    }

    #[test]
    fn an_async_target_and_its_writers_run_as_blocking_ones() {
        let mut target: Box<dyn Target> = Box::new(RUNTIME.on(Counting {
            opened: false,
            committed: false,
        }));
        assert_eq!(target.get_offset().unwrap(), None);
        target.open(&WriteContext::default()).unwrap();
        let mut writer = target.writer(0).unwrap();
        writer.write(batch(1)).unwrap();
        writer.write(batch(2)).unwrap();
        writer.close().unwrap();
        target.commit().unwrap();
    }

    struct Halves;

    impl AsyncSource for Halves {
        type Error = PluginError;

        async fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
            Ok((0..context.parallelism)
                .map(|index| Partition {
                    index,
                    spec: Value::from(index),
                })
                .collect())
        }

        fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
            let n = partition.index as i64;
            Ok(RUNTIME.stream(1, "half".into(), move |tx| async move {
                tx.send(batch(n)).await;
                Ok::<(), PluginError>(())
            }))
        }
    }

    #[test]
    fn an_async_source_plans_and_reads_as_a_blocking_one() {
        let source: Box<dyn Source> = Box::new(RUNTIME.on(Halves));
        let context = ReadContext {
            parallelism: 2,
            ..ReadContext::default()
        };
        let partitions = source.partitions(&context).unwrap();
        assert_eq!(partitions.len(), 2);
        let (seen, error) = read_all(source.read(&partitions[1]).unwrap().as_mut());
        assert_eq!((seen, error.is_none()), (vec![1], true));
    }
}
