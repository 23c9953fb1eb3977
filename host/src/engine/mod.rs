//! The engine: runs a source, a chain of transforms and a target as stages joined by bounded
//! queues.
//!
//! - **Source workers**: one thread per partition being read, at most `source_concurrency` at a
//!   time, each pulling batches from its partition's stream.
//! - **Transform workers**: `transform_concurrency` workers on a dedicated rayon pool, each
//!   applying the transform chain to one batch at a time. Skipped when there is no transform.
//! - **Target workers**: `target_concurrency` threads, each with its own writer.
//!
//! Queues are bounded in batches and in bytes (half the byte budget each), so a slow target
//! holds the source back and memory stays flat. The first error cancels the run: queues are
//! emptied and closed, workers stop at their next call, the target's abort path runs, and the
//! error comes back with its chain. A worker stuck inside a component for longer than
//! `stall_timeout` fails the run the same way; threads that do not stop within `cancel_grace`
//! are abandoned. On success the target commits.

pub mod events;
pub mod memory;
pub mod queue;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fastlane_plugin_api::{
    ErrorCode, Partition, PluginError, ReadContext, ReplicationMode, Source, Target, Transform,
    WriteContext, Writer,
};
use serde_json::Value;

pub use events::{
    Event, NoObserver, Observer, QueueSummary, RunStatus, RunSummary, Stage, StageSummary,
    StageTotals, Totals,
};
use queue::BatchQueue;

/// A component with the id it was created from.
pub struct Named<T> {
    /// The component id (`file`, `sql`…).
    pub id: String,
    /// The component.
    pub component: T,
}

impl<T> Named<T> {
    /// Names a component.
    pub fn new(id: impl Into<String>, component: T) -> Self {
        Self {
            id: id.into(),
            component,
        }
    }
}

/// What to run: a source, transforms applied in order, and a target.
pub struct Pipeline {
    /// The source.
    pub source: Named<Box<dyn Source>>,
    /// Transforms, applied in order to every batch.
    pub transforms: Vec<Named<Box<dyn Transform>>>,
    /// The target.
    pub target: Named<Box<dyn Target>>,
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// A unique id for the run.
    pub run_id: String,
    /// Full table or incremental.
    pub mode: ReplicationMode,
    /// The most batches waiting in each queue.
    pub max_buffered_batches: usize,
    /// The most bytes waiting in all queues together.
    pub max_buffered_bytes: usize,
    /// Partitions read at once; `None` reads up to the number of CPUs at once.
    pub source_concurrency: Option<usize>,
    /// Transform workers.
    pub transform_concurrency: usize,
    /// Target workers (writers).
    pub target_concurrency: usize,
    /// Fail when a worker spends longer than this inside one component call.
    pub stall_timeout: Option<Duration>,
    /// How long to wait for workers to stop after a failure before abandoning them.
    pub cancel_grace: Duration,
    /// How often queues and memory are sampled.
    pub sample_interval: Duration,
    /// Stops the run cleanly when set (Ctrl-C, a stop request).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            run_id: new_run_id(),
            mode: ReplicationMode::FullTable,
            max_buffered_batches: 8,
            max_buffered_bytes: 256 * 1024 * 1024,
            source_concurrency: None,
            transform_concurrency: 1,
            target_concurrency: 1,
            stall_timeout: None,
            cancel_grace: Duration::from_secs(5),
            sample_interval: Duration::from_millis(250),
            stop: None,
        }
    }
}

/// A new run id: UTC time and a random suffix, usable in file and object names.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    let noise = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos as u64;
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%SZ"), noise & 0xff_ffff)
}

/// A stage failure: which stage and component, what it was doing, and the component's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage} `{component}` failed while {during}")]
pub struct StageError {
    /// The stage.
    pub stage: Stage,
    /// The component id.
    pub component: String,
    /// What it was doing (`reading partition 3`, `writing a batch`…).
    pub during: String,
    /// The component's error.
    #[source]
    pub cause: PluginError,
}

/// A failed run: the first stage error, the abort error if aborting failed too, and the
/// summary of what happened before it stopped.
#[derive(Debug, thiserror::Error)]
#[error("run `{run_id}` failed")]
pub struct RunFailed {
    /// The run's id.
    pub run_id: String,
    /// The first error.
    #[source]
    pub error: StageError,
    /// The error of the target's abort path, if it failed too.
    pub abort_error: Option<PluginError>,
    /// What the run did before it stopped.
    pub summary: Box<RunSummary>,
}

/// Shared state of a run: the first error, and the cancellation flag.
struct Control {
    failed: AtomicBool,
    error: Mutex<Option<StageError>>,
    queues: Vec<Arc<BatchQueue>>,
    events: Sender<Msg>,
}

impl Control {
    fn fail(&self, error: StageError) {
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

    fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(Msg::Event(event));
    }
}

enum Msg {
    Event(Event),
    WorkerExited,
}

/// Marks when a worker is inside a component call, for the stall watchdog.
struct Slot {
    stage: Stage,
    component: String,
    what: Mutex<String>,
    since_ms: AtomicU64,
}

const IDLE: u64 = u64::MAX;

struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
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

fn new_slot(stage: Stage, component: &str) -> Arc<Slot> {
    Arc::new(Slot {
        stage,
        component: component.to_owned(),
        what: Mutex::new(String::new()),
        since_ms: AtomicU64::new(IDLE),
    })
}

fn batch_bytes(batch: &RecordBatch) -> usize {
    batch.get_array_memory_size()
}

fn chain_id(transforms: &[Named<Box<dyn Transform>>]) -> String {
    transforms
        .iter()
        .map(|t| t.id.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Runs a pipeline to the end.
pub fn run(
    pipeline: Pipeline,
    options: &EngineOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Box<RunFailed>> {
    let started = Instant::now();
    let Pipeline {
        source,
        transforms,
        target,
    } = pipeline;
    let source_id = source.id.clone();
    let target_id = target.id.clone();
    let transform_id = chain_id(&transforms);
    let mut target = target.component;
    let mut totals = Totals::default();

    let fail_early = |stage: Stage, component: &str, during: &str, cause: PluginError| StageError {
        stage,
        component: component.to_owned(),
        during: during.to_owned(),
        cause,
    };

    // 1. Where to start.
    let start_offset: Option<Value> = match options.mode {
        ReplicationMode::Incremental => match target.get_offset() {
            Ok(o) => o,
            Err(e) => {
                let err = fail_early(Stage::Target, &target_id, "getting its offset", e);
                return Err(failed_before_start(options, err, None, started));
            }
        },
        ReplicationMode::FullTable => None,
    };
    if let Some(o) = &start_offset {
        tracing::info!(offset = %o, "incremental run starts after the target's offset");
    }

    // 2. Partitions.
    let parallelism = options
        .source_concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let context = ReadContext {
        mode: options.mode,
        start_offset: start_offset.clone(),
        parallelism,
    };
    let partitions = match source.component.partitions(&context) {
        Ok(p) => p,
        Err(e) => {
            let err = fail_early(Stage::Source, &source_id, "planning partitions", e);
            return Err(failed_before_start(options, err, start_offset, started));
        }
    };
    let source_workers = parallelism.min(partitions.len()).max(1);

    // 3. Open the target and its writers.
    let write_context = WriteContext {
        mode: options.mode,
        run_id: options.run_id.clone(),
        concurrency: options.target_concurrency.max(1),
    };
    if let Err(e) = target.open(&write_context) {
        let err = fail_early(Stage::Target, &target_id, "opening", e);
        return Err(failed_before_start(options, err, start_offset, started));
    }
    let mut writers: Vec<Box<dyn Writer>> = Vec::new();
    for i in 0..write_context.concurrency {
        match target.writer(i) {
            Ok(w) => writers.push(w),
            Err(e) => {
                let err = fail_early(
                    Stage::Target,
                    &target_id,
                    &format!("creating writer {i}"),
                    e,
                );
                let abort_error = target.abort().err();
                let mut f = failed_before_start(options, err, start_offset, started);
                f.abort_error = abort_error;
                return Err(f);
            }
        }
    }

    // 4. The transform pool, queues and workers.
    let has_transforms = !transforms.is_empty();
    let transform_workers = options.transform_concurrency.max(1);
    let pool = if has_transforms {
        match rayon::ThreadPoolBuilder::new()
            .num_threads(transform_workers)
            .thread_name(|i| format!("fl-transform-{i}"))
            .build()
        {
            Ok(p) => Some(p),
            Err(e) => {
                let err = fail_early(
                    Stage::Transform,
                    &transform_id,
                    "starting workers",
                    PluginError::internal(e),
                );
                let abort_error = target.abort().err();
                let mut f = failed_before_start(options, err, start_offset, started);
                f.abort_error = abort_error;
                return Err(f);
            }
        }
    } else {
        None
    };
    let byte_share = if has_transforms {
        options.max_buffered_bytes / 2
    } else {
        options.max_buffered_bytes
    };
    let q_source = Arc::new(BatchQueue::new(
        source_workers,
        options.max_buffered_batches,
        byte_share,
    ));
    let q_target = if has_transforms {
        Arc::new(BatchQueue::new(
            transform_workers,
            options.max_buffered_batches,
            byte_share,
        ))
    } else {
        q_source.clone()
    };
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let control = Arc::new(Control {
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        queues: if has_transforms {
            vec![q_source.clone(), q_target.clone()]
        } else {
            vec![q_source.clone()]
        },
        events: tx.clone(),
    });
    let clock = Arc::new(Clock(started));
    let mut slots: Vec<Arc<Slot>> = Vec::new();
    let mut live_workers = 0usize;

    let run_started = Event::RunStarted {
        run_id: options.run_id.clone(),
        partitions: partitions.len(),
        start_offset: start_offset.clone(),
    };
    totals.apply(&run_started);
    observer.event(&run_started, &totals);

    // Source workers.
    let source = Arc::new(source);
    let pending = Arc::new(Mutex::new(partitions.into_iter().collect::<VecDeque<_>>()));
    for w in 0..source_workers {
        let slot = new_slot(Stage::Source, &source_id);
        slots.push(slot.clone());
        let (source, pending, queue, control, clock) = (
            source.clone(),
            pending.clone(),
            q_source.clone(),
            control.clone(),
            clock.clone(),
        );
        live_workers += 1;
        let done = (ExitSignal(tx.clone()), ProducerDone(queue.clone()));
        let guard_control = control.clone();
        let spawn_control = control.clone();
        spawn_worker(
            format!("fl-source-{w}"),
            &spawn_control,
            Stage::Source,
            &source_id,
            move || {
                let _done = done;
                guarded(&guard_control, Stage::Source, &source.id, || {
                    source_worker(&source, &pending, &queue, &control, &clock, &slot)
                });
            },
        );
    }

    // Transform workers on the rayon pool.
    let pool = if let Some(pool) = pool {
        let chain = Arc::new(transforms);
        for w in 0..transform_workers {
            let slot = new_slot(Stage::Transform, &transform_id);
            slots.push(slot.clone());
            let (chain, input, output, control, clock, done) = (
                chain.clone(),
                q_source.clone(),
                q_target.clone(),
                control.clone(),
                clock.clone(),
                tx.clone(),
            );
            live_workers += 1;
            let done = (ExitSignal(done), ProducerDone(output.clone()));
            let id = transform_id.clone();
            pool.spawn(move || {
                let _done = done;
                guarded(&control, Stage::Transform, &id, || {
                    transform_worker(w, &chain, &input, &output, &control, &clock, &slot)
                });
            });
        }
        Some(pool)
    } else {
        None
    };

    // Target workers.
    let target_workers = writers.len();
    for (w, writer) in writers.into_iter().enumerate() {
        let slot = new_slot(Stage::Target, &target_id);
        slots.push(slot.clone());
        let (queue, control, clock) = (q_target.clone(), control.clone(), clock.clone());
        live_workers += 1;
        let done = ExitSignal(tx.clone());
        let guard_control = control.clone();
        let id = target_id.clone();
        let spawn_control = control.clone();
        spawn_worker(
            format!("fl-target-{w}"),
            &spawn_control,
            Stage::Target,
            &target_id,
            move || {
                let _done = done;
                guarded(&guard_control, Stage::Target, &id, || {
                    target_worker(w, writer, &queue, &control, &clock, &slot)
                });
            },
        );
    }
    drop(tx);

    let mut queue_list = vec![(
        if has_transforms {
            "source→transform"
        } else {
            "source→target"
        },
        q_source.clone(),
    )];
    if has_transforms {
        queue_list.push(("transform→target", q_target.clone()));
    }
    finish(FinishArgs {
        options,
        target,
        rx,
        control,
        observer,
        totals,
        live_workers,
        slots,
        clock,
        start_offset,
        stage_ids: [source_id, transform_id, target_id],
        workers: [
            source_workers,
            if has_transforms { transform_workers } else { 0 },
            target_workers,
        ],
        queues: queue_list
            .into_iter()
            .map(|(n, q)| (n.to_owned(), q, byte_share))
            .collect(),
        _pool: pool,
    })
}

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

/// Starts a worker thread. The closure owns the worker's exit signals, so if the thread cannot
/// be started, dropping the closure still sends them; the run then fails.
fn spawn_worker(
    name: String,
    control: &Control,
    stage: Stage,
    component: &str,
    f: impl FnOnce() + Send + 'static,
) {
    if let Err(e) = std::thread::Builder::new().name(name).spawn(f) {
        control.fail(StageError {
            stage,
            component: component.to_owned(),
            during: "starting a worker thread".into(),
            cause: PluginError::internal(e),
        });
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
        control.fail(StageError {
            stage,
            component: component.to_owned(),
            during: "processing a batch".into(),
            cause: PluginError::new(ErrorCode::PANIC, format!("panicked: {message}")),
        });
    }
}

fn source_worker(
    source: &Named<Box<dyn Source>>,
    pending: &Mutex<VecDeque<Partition>>,
    queue: &BatchQueue,
    control: &Control,
    clock: &Clock,
    slot: &Slot,
) {
    loop {
        if control.is_failed() {
            return;
        }
        let Some(partition) = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        else {
            return;
        };
        let index = partition.index;
        let fail = |during: String, cause: PluginError| {
            control.fail(StageError {
                stage: Stage::Source,
                component: source.id.clone(),
                during,
                cause,
            })
        };
        let stream = {
            let _busy = Busy::enter(slot, clock, || format!("opening partition {index}"));
            source.component.read(&partition)
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => return fail(format!("opening partition {index}"), e),
        };
        loop {
            if control.is_failed() {
                return;
            }
            let t = Instant::now();
            let next = {
                let _busy = Busy::enter(slot, clock, || format!("reading partition {index}"));
                stream.next_batch()
            };
            match next {
                Ok(Some(batch)) => {
                    let elapsed = t.elapsed();
                    let (rows, bytes) = (batch.num_rows(), batch_bytes(&batch));
                    control.emit(Event::BatchExtracted {
                        partition: index,
                        rows,
                        bytes,
                        elapsed,
                    });
                    if rows == 0 {
                        continue;
                    }
                    if queue.push(batch, bytes).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    control.emit(Event::PartitionFinished { partition: index });
                    break;
                }
                Err(e) => return fail(format!("reading partition {index}"), e),
            }
        }
    }
}

fn transform_worker(
    worker: usize,
    chain: &[Named<Box<dyn Transform>>],
    input: &BatchQueue,
    output: &BatchQueue,
    control: &Control,
    clock: &Clock,
    slot: &Slot,
) {
    while let Some(mut batch) = input.pop() {
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
                    control.fail(StageError {
                        stage: Stage::Transform,
                        component: step.id.clone(),
                        during: "transforming a batch".into(),
                        cause: e,
                    });
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
        if batch.num_rows() == 0 {
            continue;
        }
        if output.push(batch, bytes).is_err() {
            return;
        }
    }
}

fn target_worker(
    worker: usize,
    mut writer: Box<dyn Writer>,
    queue: &BatchQueue,
    control: &Control,
    clock: &Clock,
    slot: &Slot,
) {
    let fail = |during: &str, cause: PluginError| {
        control.fail(StageError {
            stage: Stage::Target,
            component: slot.component.clone(),
            during: during.to_owned(),
            cause,
        })
    };
    while let Some(batch) = queue.pop() {
        let (rows, bytes) = (batch.num_rows(), batch_bytes(&batch));
        let t = Instant::now();
        let result = {
            let _busy = Busy::enter(slot, clock, || "writing a batch".into());
            writer.write(batch)
        };
        if let Err(e) = result {
            return fail("writing a batch", e);
        }
        if bytes >= memory::TRIM_AFTER_BYTES {
            memory::return_free_memory();
        }
        control.emit(Event::BatchLoaded {
            worker,
            rows,
            bytes,
            elapsed: t.elapsed(),
        });
    }
    if control.is_failed() {
        return;
    }
    let result = {
        let _busy = Busy::enter(slot, clock, || "closing its writer".into());
        writer.close()
    };
    if let Err(e) = result {
        fail("closing its writer", e);
    }
}

struct FinishArgs<'a> {
    options: &'a EngineOptions,
    target: Box<dyn Target>,
    rx: Receiver<Msg>,
    control: Arc<Control>,
    observer: &'a mut dyn Observer,
    totals: Totals,
    live_workers: usize,
    slots: Vec<Arc<Slot>>,
    clock: Arc<Clock>,
    start_offset: Option<Value>,
    stage_ids: [String; 3],
    workers: [usize; 3],
    queues: Vec<(String, Arc<BatchQueue>, usize)>,
    _pool: Option<rayon::ThreadPool>,
}

/// The error of a run stopped on request.
const STOPPED: &str = "the run was stopped";

/// Waits for the workers (watching for stalls and stop requests), then commits or aborts.
fn finish(args: FinishArgs<'_>) -> Result<RunSummary, Box<RunFailed>> {
    let FinishArgs {
        options,
        mut target,
        rx,
        control,
        observer,
        mut totals,
        mut live_workers,
        slots,
        clock,
        start_offset,
        stage_ids,
        workers,
        queues,
        _pool,
    } = args;
    let mut next_sample = Instant::now();
    let mut cancel_deadline: Option<Instant> = None;
    let mut stop_requested = false;
    while live_workers > 0 {
        match rx.recv_timeout(options.sample_interval.min(Duration::from_millis(100))) {
            Ok(Msg::WorkerExited) => live_workers -= 1,
            Ok(Msg::Event(event)) => {
                totals.apply(&event);
                observer.event(&event, &totals);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_sample {
            next_sample = now + options.sample_interval;
            totals.elapsed = clock.0.elapsed();
            totals.rss = memory::rss();
            totals.queues = queues.iter().map(|(_, q, _)| q.depth()).collect();
            if totals.queue_names.len() != queues.len() {
                totals.queue_names = queues.iter().map(|(n, _, _)| n.clone()).collect();
            }
            observer.tick(&totals);
        }
        if let Some(stop) = &options.stop
            && stop.load(Ordering::SeqCst)
            && !control.is_failed()
        {
            stop_requested = true;
            control.fail(StageError {
                stage: Stage::Source,
                component: stage_ids[0].clone(),
                during: "reading".into(),
                cause: PluginError::new(ErrorCode::CANCELLED, STOPPED),
            });
        }
        if let Some(limit) = options.stall_timeout
            && !control.is_failed()
        {
            let now_ms = clock.ms();
            for slot in &slots {
                let since = slot.since_ms.load(Ordering::SeqCst);
                if since != IDLE && now_ms.saturating_sub(since) > limit.as_millis() as u64 {
                    let what = slot.what.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    control.fail(StageError {
                        stage: slot.stage,
                        component: slot.component.clone(),
                        during: what,
                        cause: PluginError::new(
                            ErrorCode::CANCELLED,
                            format!(
                                "no progress for {:.1} s (stall_timeout_secs is {})",
                                now_ms.saturating_sub(since) as f64 / 1000.0,
                                limit.as_secs_f64()
                            ),
                        ),
                    });
                    break;
                }
            }
        }
        if control.is_failed() {
            let deadline = *cancel_deadline.get_or_insert(now + options.cancel_grace);
            if now >= deadline {
                tracing::warn!(
                    workers = live_workers,
                    "workers did not stop within the cancel grace period; abandoning them"
                );
                break;
            }
        }
    }
    // Events still queued (from workers that already exited).
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Event(event) = msg {
            totals.apply(&event);
            observer.event(&event, &totals);
        }
    }
    totals.elapsed = clock.0.elapsed();

    let error = control
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let (status, error, abort_error) = match error {
        None => match target.commit() {
            Ok(()) => {
                observer.event(&Event::Committed, &totals);
                (RunStatus::Succeeded, None, None)
            }
            Err(e) => {
                let err = StageError {
                    stage: Stage::Target,
                    component: stage_ids[2].clone(),
                    during: "committing".into(),
                    cause: e,
                };
                let abort_error = target.abort().err();
                observer.event(&Event::Aborted, &totals);
                (RunStatus::Failed, Some(err), abort_error)
            }
        },
        Some(err) => {
            let abort_error = target.abort().err();
            observer.event(&Event::Aborted, &totals);
            let stopped = stop_requested
                && err.cause.code() == ErrorCode::CANCELLED
                && err.cause.message() == STOPPED;
            let status = if stopped {
                RunStatus::Stopped
            } else {
                RunStatus::Failed
            };
            (status, Some(err), abort_error)
        }
    };
    let summary = summarize(SummaryInput {
        options,
        totals: &totals,
        status,
        start_offset,
        stage_ids: &stage_ids,
        workers,
        queues: &queues,
        error: error.as_ref().map(|e| crate::error::chain(e)),
    });
    match error {
        None => Ok(summary),
        Some(error) => Err(Box::new(RunFailed {
            run_id: options.run_id.clone(),
            error,
            abort_error,
            summary: Box::new(summary),
        })),
    }
}

struct SummaryInput<'a> {
    options: &'a EngineOptions,
    totals: &'a Totals,
    status: RunStatus,
    start_offset: Option<Value>,
    stage_ids: &'a [String; 3],
    workers: [usize; 3],
    queues: &'a [(String, Arc<BatchQueue>, usize)],
    error: Option<String>,
}

fn summarize(input: SummaryInput<'_>) -> RunSummary {
    let secs = input.totals.elapsed.as_secs_f64().max(1e-9);
    let stage = |stage: Stage, i: usize, totals: StageTotals| StageSummary {
        stage,
        component: input.stage_ids[i].clone(),
        workers: input.workers[i],
        totals,
        rows_per_sec: totals.rows as f64 / secs,
    };
    let mut stages = vec![stage(Stage::Source, 0, input.totals.source)];
    if input.workers[1] > 0 {
        stages.push(stage(Stage::Transform, 1, input.totals.transform));
    }
    stages.push(stage(Stage::Target, 2, input.totals.target));
    RunSummary {
        run_id: input.options.run_id.clone(),
        status: input.status,
        mode: input.options.mode,
        start_offset: input.start_offset,
        duration_secs: input.totals.elapsed.as_secs_f64(),
        rows_extracted: input.totals.source.rows,
        rows_loaded: input.totals.target.rows,
        bytes_loaded: input.totals.target.bytes,
        rows_per_sec: input.totals.target.rows as f64 / secs,
        partitions: input.totals.partitions,
        stages,
        queues: input
            .queues
            .iter()
            .map(|(name, q, bytes)| {
                let peak = q.peak();
                QueueSummary {
                    name: name.clone(),
                    max_batches: input.options.max_buffered_batches,
                    max_bytes: *bytes,
                    peak_batches: peak.batches,
                    peak_bytes: peak.bytes,
                }
            })
            .collect(),
        peak_rss_bytes: memory::rss().peak,
        error: input.error,
    }
}

fn failed_before_start(
    options: &EngineOptions,
    error: StageError,
    start_offset: Option<Value>,
    started: Instant,
) -> Box<RunFailed> {
    let totals = Totals {
        elapsed: started.elapsed(),
        ..Totals::default()
    };
    let ids = [String::new(), String::new(), String::new()];
    let summary = summarize(SummaryInput {
        options,
        totals: &totals,
        status: RunStatus::Failed,
        start_offset,
        stage_ids: &ids,
        workers: [0, 0, 0],
        queues: &[],
        error: Some(crate::error::chain(&error)),
    });
    Box::new(RunFailed {
        run_id: options.run_id.clone(),
        error,
        abort_error: None,
        summary: Box::new(summary),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use arrow_array::{ArrayRef, Int64Array};
    use fastlane_plugin_api::{BatchStream, IterStream, WriteContext};

    use super::*;

    struct Numbers(usize);

    impl Source for Numbers {
        fn read(
            &self,
            _partition: &Partition,
        ) -> fastlane_plugin_api::Result<Box<dyn BatchStream>> {
            let batches = (0..self.0).map(|i| {
                let column: ArrayRef = Arc::new(Int64Array::from(vec![i as i64; 100]));
                Ok(RecordBatch::try_from_iter([("n", column)])?)
            });
            Ok(Box::new(IterStream(batches)))
        }
    }

    struct PanicAfter(usize, AtomicUsize);

    impl Transform for PanicAfter {
        fn transform(&self, batch: RecordBatch) -> fastlane_plugin_api::Result<RecordBatch> {
            if self.1.fetch_add(1, Ordering::SeqCst) >= self.0 {
                panic!("bug in a transform");
            }
            Ok(batch)
        }
    }

    #[derive(Default)]
    struct Outcome {
        rows: AtomicUsize,
        committed: AtomicBool,
        aborted: AtomicBool,
    }

    struct Recording(Arc<Outcome>, bool);

    impl Target for Recording {
        fn open(&mut self, _context: &WriteContext) -> fastlane_plugin_api::Result<()> {
            Ok(())
        }
        fn writer(&self, _index: usize) -> fastlane_plugin_api::Result<Box<dyn Writer>> {
            Ok(Box::new(RecordingWriter(self.0.clone(), self.1)))
        }
        fn commit(&mut self) -> fastlane_plugin_api::Result<()> {
            self.0.committed.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn abort(&mut self) -> fastlane_plugin_api::Result<()> {
            self.0.aborted.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    struct RecordingWriter(Arc<Outcome>, bool);

    impl Writer for RecordingWriter {
        fn write(&mut self, batch: RecordBatch) -> fastlane_plugin_api::Result<()> {
            // Whichever writer comes once 1,000 rows have landed panics, so the panic does not
            // depend on how batches are shared between the writers.
            if self.1 && self.0.rows.load(Ordering::SeqCst) >= 1_000 {
                panic!("bug in a writer");
            }
            self.0.rows.fetch_add(batch.num_rows(), Ordering::SeqCst);
            Ok(())
        }
        fn close(&mut self) -> fastlane_plugin_api::Result<()> {
            Ok(())
        }
    }

    fn pipeline(
        transforms: Vec<Named<Box<dyn Transform>>>,
        outcome: &Arc<Outcome>,
        panicking_writer: bool,
    ) -> Pipeline {
        Pipeline {
            source: Named::new("numbers", Box::new(Numbers(50)) as Box<dyn Source>),
            transforms,
            target: Named::new(
                "recording",
                Box::new(Recording(outcome.clone(), panicking_writer)) as Box<dyn Target>,
            ),
        }
    }

    #[test]
    fn every_row_arrives_and_the_target_commits() {
        let outcome = Arc::new(Outcome::default());
        let options = EngineOptions {
            target_concurrency: 3,
            transform_concurrency: 2,
            ..EngineOptions::default()
        };
        let t: Box<dyn Transform> = Box::new(PanicAfter(usize::MAX, AtomicUsize::new(0)));
        let summary = run(
            pipeline(vec![Named::new("t", t)], &outcome, false),
            &options,
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(summary.rows_loaded, 5_000);
        assert_eq!(outcome.rows.load(Ordering::SeqCst), 5_000);
        assert!(
            outcome.committed.load(Ordering::SeqCst) && !outcome.aborted.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn a_panicking_transform_fails_the_run_and_aborts() {
        let outcome = Arc::new(Outcome::default());
        let t: Box<dyn Transform> = Box::new(PanicAfter(5, AtomicUsize::new(0)));
        let err = run(
            pipeline(vec![Named::new("t", t)], &outcome, false),
            &EngineOptions::default(),
            &mut NoObserver,
        )
        .unwrap_err();
        assert_eq!(err.error.stage, Stage::Transform);
        assert!(
            err.error.cause.message().contains("bug in a transform"),
            "{}",
            err.error.cause
        );
        assert!(
            outcome.aborted.load(Ordering::SeqCst) && !outcome.committed.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn a_panicking_writer_fails_the_run_even_with_other_writers() {
        let outcome = Arc::new(Outcome::default());
        let options = EngineOptions {
            target_concurrency: 2,
            ..EngineOptions::default()
        };
        let err = run(pipeline(vec![], &outcome, true), &options, &mut NoObserver).unwrap_err();
        assert_eq!(err.error.stage, Stage::Target);
        assert!(
            outcome.aborted.load(Ordering::SeqCst) && !outcome.committed.load(Ordering::SeqCst)
        );
    }
}
