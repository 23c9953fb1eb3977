//! The workers of a run and what they share: the run's [`Control`] (first error, cancellation,
//! events), the busy [`Slot`] each worker marks for the stall watchdog, and the [`Crew`] that
//! starts the source, transform and target workers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{RecordBatch, RecordBatchOptions};
use crossbeam_channel::{Receiver, Sender};
use fastlane_plugin_api::{ErrorCode, PluginError, Source, Transform, Writer};
use serde_json::Value;

use super::checkpoint::{ReadJob, Tag};
use super::events::{Event, Stage};
use super::queue::BatchQueue;
use super::verify::Sums;
use super::{Named, StageError, memory};

/// Shared state of a run: the first error, and the cancellation flag.
pub(super) struct Control {
    failed: AtomicBool,
    error: Mutex<Option<StageError>>,
    queues: Vec<Arc<BatchQueue>>,
    events: Sender<Msg>,
}

impl Control {
    /// Records the first error, reports it, and cancels every queue.
    pub(super) fn fail(&self, error: StageError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let _ = self.events.send(Msg::Event(Event::StageFailed {
                stage: error.stage,
                error: crate::error::chain(&error),
            }));
            *slot = Some(error);
        }
        drop(slot);
        self.failed.store(true, Ordering::SeqCst);
        for q in &self.queues {
            q.cancel();
        }
    }

    /// Whether the run has failed (or was stopped).
    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The first error, taken once the workers are done.
    pub(super) fn take_error(&self) -> Option<StageError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(Msg::Event(event));
    }
}

/// What workers tell the supervisor.
pub(super) enum Msg {
    /// Something happened.
    Event(Event),
    /// A worker is done (returned, panicked, or never started).
    WorkerExited,
}

/// Marks when a worker is inside a component call, for the stall watchdog.
pub(super) struct Slot {
    pub(super) stage: Stage,
    pub(super) component: String,
    what: Mutex<String>,
    since_ms: AtomicU64,
}

const IDLE: u64 = u64::MAX;

impl Slot {
    fn new(stage: Stage, component: &str) -> Arc<Self> {
        Arc::new(Self {
            stage,
            component: component.to_owned(),
            what: Mutex::new(String::new()),
            since_ms: AtomicU64::new(IDLE),
        })
    }

    /// How long the worker has been inside its current call (`None` when it is not in one),
    /// and what that call is.
    pub(super) fn busy_for(&self, clock: &Clock) -> Option<(u64, String)> {
        let since = self.since_ms.load(Ordering::SeqCst);
        if since == IDLE {
            return None;
        }
        let what = self.what.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some((clock.ms().saturating_sub(since), what))
    }
}

/// The run's clock, started with the run.
pub(super) struct Clock(pub(super) Instant);

impl Clock {
    /// Milliseconds since the run started.
    pub(super) fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

struct Busy<'a> {
    slot: &'a Slot,
}

impl<'a> Busy<'a> {
    fn enter(slot: &'a Slot, clock: &Clock, what: impl FnOnce() -> String) -> Self {
        *slot.what.lock().unwrap_or_else(|p| p.into_inner()) = what();
        slot.since_ms.store(clock.ms(), Ordering::SeqCst);
        Self { slot }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.slot.since_ms.store(IDLE, Ordering::SeqCst);
    }
}

fn batch_bytes(batch: &RecordBatch) -> usize {
    batch.get_array_memory_size()
}

/// Starts the workers of a run and keeps what the supervisor needs of them: the events they
/// send, their busy slots, and how many were started.
pub(super) struct Crew {
    control: Arc<Control>,
    tx: Sender<Msg>,
    clock: Arc<Clock>,
    slots: Vec<Arc<Slot>>,
    spawned: usize,
    /// The checksums of the rows read and written, in a run verified by checksum.
    sums: Option<Arc<Sums>>,
}

/// What the supervisor takes over from the crew once every worker is started.
pub(super) struct Started {
    pub(super) control: Arc<Control>,
    pub(super) events: Receiver<Msg>,
    pub(super) clock: Arc<Clock>,
    pub(super) slots: Vec<Arc<Slot>>,
    pub(super) workers: usize,
}

impl Crew {
    /// A crew whose failures cancel `queues`; the clock starts at `started`.
    pub(super) fn new(queues: Vec<Arc<BatchQueue>>, started: Instant) -> (Self, Receiver<Msg>) {
        let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
        let control = Arc::new(Control {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            queues,
            events: tx.clone(),
        });
        let crew = Self {
            control,
            tx,
            clock: Arc::new(Clock(started)),
            slots: Vec::new(),
            spawned: 0,
            sums: None,
        };
        (crew, rx)
    }

    /// Has the workers add up the checksums of the rows they read and write into `sums`.
    pub(super) fn summing(&mut self, sums: Option<Arc<Sums>>) {
        self.sums = sums;
    }

    /// Starts `workers` source workers taking read jobs from one list, in order; with
    /// `tagging`, every batch carries its checkpoint tag.
    pub(super) fn spawn_sources(
        &mut self,
        source: &Arc<Named<Box<dyn Source>>>,
        jobs: Vec<ReadJob>,
        workers: usize,
        tagging: bool,
        queue: &Arc<BatchQueue>,
    ) {
        let pending = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
        for w in 0..workers {
            let slot = self.slot(Stage::Source, &source.id);
            let (source, pending, queue) = (source.clone(), pending.clone(), queue.clone());
            let (control, clock) = (self.control.clone(), self.clock.clone());
            let done = (ExitSignal(self.tx.clone()), ProducerDone(queue.clone()));
            let id = source.id.clone();
            let sums = self.sums.clone();
            self.spawn_thread(format!("fl-source-{w}"), Stage::Source, &id, move || {
                let _done = done;
                guarded(&control, Stage::Source, &source.id, || {
                    let worker = SourceWorker {
                        source: &source,
                        queue: &queue,
                        control: &control,
                        clock: &clock,
                        slot: &slot,
                        tagging,
                        sums: sums.as_deref(),
                    };
                    worker.run(&pending)
                });
            });
        }
    }

    /// Starts `workers` transform workers on `pool`, each applying the whole chain to a batch.
    pub(super) fn spawn_transforms(
        &mut self,
        pool: &rayon::ThreadPool,
        chain: Vec<Named<Box<dyn Transform>>>,
        chain_id: &str,
        workers: usize,
        input: &Arc<BatchQueue>,
        output: &Arc<BatchQueue>,
    ) {
        let chain = Arc::new(chain);
        for w in 0..workers {
            let slot = self.slot(Stage::Transform, chain_id);
            let (chain, input, output) = (chain.clone(), input.clone(), output.clone());
            let (control, clock) = (self.control.clone(), self.clock.clone());
            let done = (ExitSignal(self.tx.clone()), ProducerDone(output.clone()));
            let id = chain_id.to_owned();
            self.spawned += 1;
            pool.spawn(move || {
                let _done = done;
                guarded(&control, Stage::Transform, &id, || {
                    transform_worker(w, &chain, &input, &output, &control, &clock, &slot)
                });
            });
        }
    }

    /// Starts one target worker per writer; in a checkpointed run each flushes its writer every
    /// `flush_every`.
    pub(super) fn spawn_targets(
        &mut self,
        writers: Vec<Box<dyn Writer>>,
        target_id: &str,
        flush_every: Option<Duration>,
        queue: &Arc<BatchQueue>,
    ) {
        for (w, writer) in writers.into_iter().enumerate() {
            let slot = self.slot(Stage::Target, target_id);
            let queue = queue.clone();
            let (control, clock) = (self.control.clone(), self.clock.clone());
            let done = ExitSignal(self.tx.clone());
            let id = target_id.to_owned();
            let sums = self.sums.clone();
            self.spawn_thread(
                format!("fl-target-{w}"),
                Stage::Target,
                target_id,
                move || {
                    let _done = done;
                    guarded(&control, Stage::Target, &id, || {
                        let target = TargetWorker {
                            worker: w,
                            flush_every,
                            queue: &queue,
                            control: &control,
                            clock: &clock,
                            slot: &slot,
                            sums: sums.as_deref(),
                        };
                        target.run(writer)
                    });
                },
            );
        }
    }

    /// Hands the started workers over to the supervisor.
    pub(super) fn started(self, events: Receiver<Msg>) -> Started {
        Started {
            control: self.control,
            events,
            clock: self.clock,
            slots: self.slots,
            workers: self.spawned,
        }
    }

    fn slot(&mut self, stage: Stage, component: &str) -> Arc<Slot> {
        let slot = Slot::new(stage, component);
        self.slots.push(slot.clone());
        slot
    }

    /// Starts a worker thread. The closure owns the worker's exit signals, so if the thread
    /// cannot be started, dropping the closure still sends them; the run then fails.
    fn spawn_thread(
        &mut self,
        name: String,
        stage: Stage,
        component: &str,
        f: impl FnOnce() + Send + 'static,
    ) {
        self.spawned += 1;
        if let Err(e) = std::thread::Builder::new().name(name).spawn(f) {
            self.control.fail(StageError::new(
                stage,
                component,
                "starting a worker thread",
                PluginError::internal(e),
            ));
        }
    }
}

/// Tells the supervisor that a worker is done when dropped.
struct ExitSignal(Sender<Msg>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::WorkerExited);
    }
}

/// Ends a producer's share of a queue when dropped: after the worker returns, panics, or was
/// never started.
struct ProducerDone(Arc<BatchQueue>);

impl Drop for ProducerDone {
    fn drop(&mut self) {
        self.0.producer_done();
    }
}

/// Runs a worker's body, turning a panic (a bug in the host, since plugin calls are guarded
/// inside the plugin) into a failure of the run instead of a lost batch or a hung queue.
fn guarded(control: &Control, stage: Stage, component: &str, body: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        control.fail(StageError::new(
            stage,
            component,
            "processing a batch",
            PluginError::new(ErrorCode::PANIC, format!("panicked: {message}")),
        ));
    }
}

/// A source worker: reads jobs from the shared list until it is empty or the run fails.
struct SourceWorker<'a> {
    source: &'a Named<Box<dyn Source>>,
    queue: &'a BatchQueue,
    control: &'a Control,
    clock: &'a Clock,
    slot: &'a Slot,
    tagging: bool,
    sums: Option<&'a Sums>,
}

impl SourceWorker<'_> {
    fn run(&self, pending: &Mutex<VecDeque<ReadJob>>) {
        loop {
            if self.control.is_failed() {
                return;
            }
            let Some(job) = pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            else {
                return;
            };
            if !self.read(&job) {
                return;
            }
        }
    }

    fn fail(&self, during: String, cause: PluginError) {
        self.control.fail(StageError::new(
            Stage::Source,
            &self.source.id,
            during,
            cause,
        ));
    }

    /// Reads one job to its end; false when the run failed or the queue was cancelled.
    fn read(&self, job: &ReadJob) -> bool {
        let index = job.partition.index;
        let stream = {
            let _busy = Busy::enter(self.slot, self.clock, || {
                format!("opening partition {index}")
            });
            match &job.range {
                None => self.source.component.read(&job.partition),
                Some(range) => self.source.component.read_range(&job.partition, range),
            }
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.fail(format!("opening partition {index}"), e);
                return false;
            }
        };
        let (job_after, job_upto) = job.bounds();
        let mut tags = Tags {
            partition: index,
            job_after,
            job_upto,
            seq: 0,
            cursor: None,
        };
        tags.cursor = tags.job_after.clone();
        let mut schema = None;
        loop {
            if self.control.is_failed() {
                return false;
            }
            let t = Instant::now();
            let next = {
                let _busy = Busy::enter(self.slot, self.clock, || {
                    format!("reading partition {index}")
                });
                stream.next_batch()
            };
            match next {
                Ok(Some(batch)) => {
                    let elapsed = t.elapsed();
                    let (rows, bytes) = (batch.num_rows(), batch_bytes(&batch));
                    self.control.emit(Event::BatchExtracted {
                        partition: index,
                        rows,
                        bytes,
                        elapsed,
                    });
                    if rows == 0 {
                        continue;
                    }
                    let checksum = self.sums.and_then(|sums| sums.read(index, &batch));
                    let tag = match self.tagging {
                        false => None,
                        true => match stream.position() {
                            Some(position) => Some(tags.next(position, rows, checksum)),
                            None => {
                                self.fail(
                                    format!("reading partition {index}"),
                                    PluginError::internal(
                                        "the source declares it can resume, but gave no \
                                         position after a batch",
                                    ),
                                );
                                return false;
                            }
                        },
                    };
                    schema.get_or_insert_with(|| batch.schema());
                    if self.queue.push_item((batch, tag), bytes).is_err() {
                        return false;
                    }
                }
                Ok(None) => {
                    if self.tagging {
                        let end = (empty_batch(), Some(tags.end()));
                        if self.queue.push_item(end, 0).is_err() {
                            return false;
                        }
                    }
                    self.control
                        .emit(Event::PartitionFinished { partition: index });
                    return true;
                }
                Err(e) => {
                    self.fail(format!("reading partition {index}"), e);
                    return false;
                }
            }
        }
    }
}

/// The tags of one read job's batches.
struct Tags {
    partition: usize,
    job_after: Option<Value>,
    job_upto: Option<Value>,
    seq: u64,
    cursor: Option<Value>,
}

impl Tags {
    /// The tag of the next batch, of `rows` rows whose checksum is `checksum`, after which the
    /// source stands at `position`.
    fn next(&mut self, position: Value, rows: usize, checksum: Option<u64>) -> String {
        let tag = Tag {
            p: self.partition,
            ja: self.job_after.clone(),
            ju: self.job_upto.clone(),
            s: self.seq,
            a: self.cursor.replace(position.clone()),
            u: Some(position),
            n: rows as u64,
            c: checksum,
            end: false,
        };
        self.seq += 1;
        serde_json::to_string(&tag).unwrap_or_default()
    }

    /// The job's end tag.
    fn end(&mut self) -> String {
        let tag = Tag {
            p: self.partition,
            ja: self.job_after.clone(),
            ju: self.job_upto.clone(),
            s: self.seq,
            a: self.cursor.clone(),
            u: self.job_upto.clone(),
            n: 0,
            c: None,
            end: true,
        };
        self.seq += 1;
        serde_json::to_string(&tag).unwrap_or_default()
    }
}

/// A batch without rows or columns: it only carries a tag to the target.
fn empty_batch() -> RecordBatch {
    let options = RecordBatchOptions::new().with_row_count(Some(0));
    RecordBatch::try_new_with_options(Arc::new(arrow_schema::Schema::empty()), vec![], &options)
        .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(arrow_schema::Schema::empty())))
}

/// Applies the transform chain to batches from `input` until it is closed.
fn transform_worker(
    worker: usize,
    chain: &[Named<Box<dyn Transform>>],
    input: &BatchQueue,
    output: &BatchQueue,
    control: &Control,
    clock: &Clock,
    slot: &Slot,
) {
    while let Some((mut batch, tag)) = input.pop_item() {
        if tag.is_some() && batch.num_rows() == 0 {
            // A job's end tag: nothing to transform.
            if output.push_item((batch, tag), 0).is_err() {
                return;
            }
            continue;
        }
        let t = Instant::now();
        let rows_in = batch.num_rows();
        for step in chain {
            let result = {
                let _busy = Busy::enter(slot, clock, || format!("transforming with `{}`", step.id));
                step.component.transform(batch)
            };
            match result {
                Ok(b) => batch = b,
                Err(e) => {
                    control.fail(StageError::new(
                        Stage::Transform,
                        &step.id,
                        "transforming a batch",
                        e,
                    ));
                    return;
                }
            }
        }
        let bytes = batch_bytes(&batch);
        control.emit(Event::BatchTransformed {
            worker,
            rows_in,
            rows_out: batch.num_rows(),
            bytes,
            elapsed: t.elapsed(),
        });
        if batch.num_rows() == 0 && tag.is_none() {
            continue;
        }
        if output.push_item((batch, tag), bytes).is_err() {
            return;
        }
    }
}

/// A target worker: writes batches from its queue until it is closed, then closes its writer
/// (unless the run failed). Tagged batches are written with their tags, and the writer is
/// flushed every `flush_every` and before it is closed.
struct TargetWorker<'a> {
    worker: usize,
    flush_every: Option<Duration>,
    queue: &'a BatchQueue,
    control: &'a Control,
    clock: &'a Clock,
    slot: &'a Slot,
    sums: Option<&'a Sums>,
}

impl TargetWorker<'_> {
    fn run(&self, mut writer: Box<dyn Writer>) {
        let Self {
            worker,
            flush_every,
            queue,
            control,
            clock,
            slot,
            sums,
        } = *self;
        let fail = |during: &str, cause: PluginError| {
            control.fail(StageError::new(
                Stage::Target,
                &slot.component,
                during,
                cause,
            ))
        };
        let mut last_flush = Instant::now();
        let mut unflushed = false;
        while let Some((batch, tag)) = queue.pop_item() {
            let (rows, bytes) = (batch.num_rows(), batch_bytes(&batch));
            let checksum = match sums {
                Some(sums) if rows > 0 && !sums.written_is_read => sums.checksum(&batch),
                _ => None,
            };
            let t = Instant::now();
            let result = {
                let _busy = Busy::enter(slot, clock, || "writing a batch".into());
                match &tag {
                    Some(tag) => writer.write_tagged(batch, tag),
                    None => writer.write(batch),
                }
            };
            if let Err(e) = result {
                return fail("writing a batch", e);
            }
            if let (Some(sums), Some(checksum)) = (sums, checksum) {
                sums.written(checksum);
            }
            unflushed = true;
            if bytes >= memory::TRIM_AFTER_BYTES {
                memory::return_free_memory();
            }
            if rows > 0 {
                control.emit(Event::BatchLoaded {
                    worker,
                    rows,
                    bytes,
                    elapsed: t.elapsed(),
                });
            }
            if let Some(every) = flush_every
                && last_flush.elapsed() >= every
            {
                let result = {
                    let _busy = Busy::enter(slot, clock, || "making its writes durable".into());
                    writer.flush()
                };
                if let Err(e) = result {
                    return fail("making its writes durable", e);
                }
                last_flush = Instant::now();
                unflushed = false;
            }
        }
        if control.is_failed() {
            return;
        }
        if flush_every.is_some() && unflushed {
            let result = {
                let _busy = Busy::enter(slot, clock, || "making its writes durable".into());
                writer.flush()
            };
            if let Err(e) = result {
                return fail("making its writes durable", e);
            }
        }
        let result = {
            let _busy = Busy::enter(slot, clock, || "closing its writer".into());
            writer.close()
        };
        if let Err(e) = result {
            fail("closing its writer", e);
        }
    }
}
