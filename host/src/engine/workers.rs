//! The workers of a run and what they share: the run's [`Control`] (first error, cancellation,
//! events), the busy [`Slot`] each worker marks for the stall watchdog, and the [`Crew`] that
//! starts the source, transform and target workers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use fastlane_plugin_api::{ErrorCode, Partition, PluginError, Source, Transform, Writer};

use super::events::{Event, Stage};
use super::queue::BatchQueue;
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
        };
        (crew, rx)
    }

    /// Starts `workers` source workers taking partitions from one list, in order.
    pub(super) fn spawn_sources(
        &mut self,
        source: Named<Box<dyn Source>>,
        partitions: Vec<Partition>,
        workers: usize,
        queue: &Arc<BatchQueue>,
    ) {
        let source = Arc::new(source);
        let pending = Arc::new(Mutex::new(partitions.into_iter().collect::<VecDeque<_>>()));
        for w in 0..workers {
            let slot = self.slot(Stage::Source, &source.id);
            let (source, pending, queue) = (source.clone(), pending.clone(), queue.clone());
            let (control, clock) = (self.control.clone(), self.clock.clone());
            let done = (ExitSignal(self.tx.clone()), ProducerDone(queue.clone()));
            let id = source.id.clone();
            self.spawn_thread(format!("fl-source-{w}"), Stage::Source, &id, move || {
                let _done = done;
                guarded(&control, Stage::Source, &source.id, || {
                    source_worker(&source, &pending, &queue, &control, &clock, &slot)
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

    /// Starts one target worker per writer.
    pub(super) fn spawn_targets(
        &mut self,
        writers: Vec<Box<dyn Writer>>,
        target_id: &str,
        queue: &Arc<BatchQueue>,
    ) {
        for (w, writer) in writers.into_iter().enumerate() {
            let slot = self.slot(Stage::Target, target_id);
            let queue = queue.clone();
            let (control, clock) = (self.control.clone(), self.clock.clone());
            let done = ExitSignal(self.tx.clone());
            let id = target_id.to_owned();
            self.spawn_thread(
                format!("fl-target-{w}"),
                Stage::Target,
                target_id,
                move || {
                    let _done = done;
                    guarded(&control, Stage::Target, &id, || {
                        target_worker(w, writer, &queue, &control, &clock, &slot)
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

/// Reads partitions from the shared list until it is empty or the run fails.
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
            control.fail(StageError::new(Stage::Source, &source.id, during, cause))
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
        if batch.num_rows() == 0 {
            continue;
        }
        if output.push(batch, bytes).is_err() {
            return;
        }
    }
}

/// Writes batches from `queue` until it is closed, then closes the writer (unless the run
/// failed).
fn target_worker(
    worker: usize,
    mut writer: Box<dyn Writer>,
    queue: &BatchQueue,
    control: &Control,
    clock: &Clock,
    slot: &Slot,
) {
    let fail = |during: &str, cause: PluginError| {
        control.fail(StageError::new(
            Stage::Target,
            &slot.component,
            during,
            cause,
        ))
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
