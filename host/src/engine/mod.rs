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
//!
//! [`run`] reads as its phases: where reading starts and the partitions ([`RunPlan`], in
//! `plan`), opening the target, the queues, starting the workers (`workers`), supervising
//! them and concluding the run (`supervise`).

pub mod checkpoint;
pub mod events;
pub mod memory;
mod plan;
pub mod queue;
mod supervise;
pub mod verify;
mod workers;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use fastlane_plugin_api::{
    Capability, Checkpointing as TargetCheckpoint, PluginError, ReplicationMode, Source, Target,
    Transform, WriteContext, Writer,
};
use serde_json::Value;

pub use checkpoint::{CheckpointOptions, Resume};
pub use events::{
    CheckpointSummary, Event, NoObserver, Observer, QueueSummary, RunStatus, RunSummary, Stage,
    StageSummary, StageTotals, Totals,
};
pub use plan::RunPlan;
use plan::{Checkpointing, decide_checkpointing, plan_partitions, resolve_start_offset};
use queue::BatchQueue;
use supervise::{NamedQueue, StageShape, SummaryContext, Supervisor, conclude, summarize};
pub use verify::{VerificationStatus, VerificationSummary, Verify};
use workers::Crew;

/// A component with the id it was created from.
pub struct Named<T> {
    /// The component id (`file`, `sql`…).
    pub id: String,
    /// The component.
    pub component: T,
    /// What it can do beyond the basic contract (resume…), as its plugin declares.
    pub capabilities: Vec<Capability>,
}

impl<T> Named<T> {
    /// Names a component.
    pub fn new(id: impl Into<String>, component: T) -> Self {
        Self {
            id: id.into(),
            component,
            capabilities: Vec::new(),
        }
    }

    /// The component, declaring `capabilities`.
    pub fn with_capabilities(mut self, capabilities: Vec<Capability>) -> Self {
        self.capabilities = capabilities;
        self
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
    /// Checkpoint the run so that it can be resumed, where the source and target can; `None`
    /// runs without checkpoints.
    pub checkpoint: Option<CheckpointOptions>,
    /// Verify the load before publishing it.
    pub verify: Verify,
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
            checkpoint: None,
            verify: Verify::Off,
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

impl StageError {
    /// The failure of `component` of `stage` while `during`.
    pub fn new(
        stage: Stage,
        component: &str,
        during: impl Into<String>,
        cause: PluginError,
    ) -> Self {
        Self {
            stage,
            component: component.to_owned(),
            during: during.into(),
            cause,
        }
    }
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

/// Runs a pipeline to the end: resolve where reading starts, plan the partitions, open the
/// target, build the queues, start the source, transform and target workers, supervise them,
/// then commit or abort.
pub fn run(
    pipeline: Pipeline,
    options: &EngineOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Box<RunFailed>> {
    let mut early = EarlyFailure {
        options,
        started: Instant::now(),
        keep_staging: false,
    };
    let Pipeline {
        source,
        transforms,
        target,
    } = pipeline;
    let ids = [source.id.clone(), chain_id(&transforms), target.id.clone()];

    let checkpointing =
        decide_checkpointing(options, &source, &target).map_err(|e| early.fail(e, None))?;
    let target_capabilities = target.capabilities.clone();
    let counts_staging =
        options.verify != Verify::Off && target_capabilities.contains(&Capability::VerifyCount);
    let sums_staging = options.verify == Verify::Checksum
        && target_capabilities.contains(&Capability::VerifyChecksum);
    let mut target = target.component;
    let mut before = verify::Before::default();
    let (plan, writers, checkpoint) = match checkpointing {
        Checkpointing::Resume(resuming) => {
            let plan::Resuming {
                options: ck,
                staged,
                plan: stored,
            } = *resuming;
            early.keep_staging = true;
            let Resumed { writers, work } =
                open_resumed(target.as_mut(), &ids[2], &staged, &stored, &early)?;
            tracing::info!(
                run = %staged.run_id,
                rows = work.rows_done,
                "resuming run {}: {} rows already loaded, {} of {} partitions complete",
                staged.run_id,
                work.rows_done,
                work.partitions_done,
                stored.partitions.len()
            );
            let plan = RunPlan::resumed(&stored, work.jobs, options);
            before = verify::Before {
                rows_by_partition: work.rows_by_partition,
                rows: work.rows_done,
                staged: None,
                checksums_by_partition: work.checksums_by_partition,
                staged_checksum: None,
            };
            if sums_staging {
                match target.staged_checksum() {
                    Ok(c) => before.staged_checksum = Some(c),
                    Err(e) if e.code() == fastlane_plugin_api::ErrorCode::UNSUPPORTED => {
                        tracing::warn!("no checksum of the kept staging ({e})");
                    }
                    Err(e) => {
                        drop(writers);
                        let error = StageError::new(
                            Stage::Target,
                            &ids[2],
                            "computing its staging's checksum",
                            e,
                        );
                        return Err(early.abort_then_fail(target.as_mut(), error, &plan));
                    }
                }
            }
            if counts_staging {
                match target.staged_rows() {
                    Ok(n) => before.staged = Some(n),
                    Err(e) => {
                        drop(writers);
                        let error =
                            StageError::new(Stage::Target, &ids[2], "counting its staged rows", e);
                        return Err(early.abort_then_fail(target.as_mut(), error, &plan));
                    }
                }
            }
            let summary = CheckpointSummary {
                staging_run_id: staged.run_id.clone(),
                resumed: true,
                rows_already_loaded: work.rows_done,
                partitions_already_done: work.partitions_done,
                interval_secs: ck.interval.as_secs_f64(),
                kept: false,
            };
            (plan, writers, Some((ck, summary)))
        }
        other => {
            let start_offset = resolve_start_offset(options.mode, target.as_ref(), &ids[2])
                .map_err(|e| early.fail(e, None))?;
            let plan = plan_partitions(&source, options, &start_offset)
                .map_err(|e| early.fail(e, start_offset.clone()))?;
            let (ck, context_checkpoint) = match other {
                Checkpointing::Fresh { options: ck, why } => {
                    if let Some(why) = why {
                        tracing::warn!("{why}");
                    }
                    let stored = plan.stored(&ck.fingerprint, &options.run_id);
                    let value = serde_json::to_value(&stored).unwrap_or(Value::Null);
                    let context = TargetCheckpoint {
                        plan: value,
                        resume: false,
                    };
                    (Some(ck), Some(context))
                }
                Checkpointing::Off { why } => {
                    if let Some(why) = why {
                        tracing::warn!("{why}");
                    }
                    (None, None)
                }
                Checkpointing::Resume(_) => unreachable!("handled above"),
            };
            let context = WriteContext {
                mode: plan.mode,
                run_id: options.run_id.clone(),
                concurrency: options.target_concurrency.max(1),
                checkpoint: context_checkpoint,
            };
            let writers = open_target(target.as_mut(), &ids[2], &context, &plan, &early)?;
            early.keep_staging = ck.is_some();
            let checkpoint = ck.map(|ck| {
                let summary = CheckpointSummary {
                    staging_run_id: options.run_id.clone(),
                    resumed: false,
                    rows_already_loaded: 0,
                    partitions_already_done: 0,
                    interval_secs: ck.interval.as_secs_f64(),
                    kept: false,
                };
                (ck, summary)
            });
            (plan, writers, checkpoint)
        }
    };
    let transform_workers = match transforms.len() {
        0 => 0,
        _ => options.transform_concurrency.max(1),
    };
    let pool = transform_pool(transform_workers, &ids[1])
        .map_err(|e| early.abort_then_fail(target.as_mut(), e, &plan))?;
    let queues = Queues::new(&plan, transform_workers, options);
    let shape = StageShape {
        ids,
        workers: [plan.source_workers, transform_workers, writers.len()],
    };

    let mut totals = Totals::default();
    announce(&plan, options, observer, &mut totals);
    let (mut crew, events) = Crew::new(queues.all(), early.started);
    let tagging = checkpoint.is_some();
    let source = Arc::new(source);
    let check = (options.verify != Verify::Off).then(|| {
        verify::Check::new(
            options.verify,
            source.clone(),
            (shape.ids[2].clone(), target_capabilities),
            plan.partitions.clone(),
            before,
            !transforms.is_empty(),
            plan.source_workers,
        )
    });
    if let Some(check) = &check {
        check.start_counting();
        crew.summing(check.sums.clone());
    }
    crew.spawn_sources(
        &source,
        plan.jobs.clone(),
        plan.source_workers,
        tagging,
        &queues.source,
    );
    if let Some(pool) = &pool {
        let (input, output) = (&queues.source, &queues.target);
        crew.spawn_transforms(
            pool,
            transforms,
            &shape.ids[1],
            transform_workers,
            input,
            output,
        );
    }
    let flush_every = checkpoint.as_ref().map(|(ck, _)| ck.interval);
    crew.spawn_targets(writers, &shape.ids[2], flush_every, &queues.target);

    let supervisor = Supervisor::new(options, observer, crew.started(events), &queues.named);
    let ending = supervisor.watch(&shape.ids[0], &mut totals);
    let context = SummaryContext {
        options,
        totals: &totals,
        start_offset: plan.start_offset,
        shape: &shape,
        queues: &queues.named,
        checkpoint: checkpoint.map(|(_, s)| s),
        verification: None,
    };
    let concluded = conclude(target.as_mut(), ending, context, check.as_ref(), observer);
    drop(pool);
    concluded
}

/// A target opened on the staging of the run being resumed.
struct Resumed {
    /// Its writers.
    writers: Vec<Box<dyn Writer>>,
    /// What is left to read.
    work: checkpoint::ResumeWork,
}

/// Opens the target on the staging of the run being resumed, reads back its checkpoints and
/// creates the writers.
fn open_resumed(
    target: &mut dyn Target,
    target_id: &str,
    staged: &fastlane_plugin_api::StagedRun,
    stored: &checkpoint::StoredPlan,
    early: &EarlyFailure<'_>,
) -> Result<Resumed, Box<RunFailed>> {
    let context = WriteContext {
        mode: stored.mode,
        run_id: staged.run_id.clone(),
        concurrency: early.options.target_concurrency.max(1),
        checkpoint: Some(TargetCheckpoint {
            plan: staged.plan.clone(),
            resume: true,
        }),
    };
    let placeholder = RunPlan::resumed(stored, Vec::new(), early.options);
    let writers = open_target(target, target_id, &context, &placeholder, early)?;
    let tags = target
        .checkpoints()
        .and_then(|texts| checkpoint::parse_tags(&texts).map_err(PluginError::data));
    match tags {
        Ok(tags) => Ok(Resumed {
            writers,
            work: checkpoint::resume_work(&stored.partitions, tags),
        }),
        Err(cause) => {
            drop(writers);
            let error = StageError::new(Stage::Target, target_id, "reading its checkpoints", cause);
            Err(early.abort_then_fail(target, error, &placeholder))
        }
    }
}

fn chain_id(transforms: &[Named<Box<dyn Transform>>]) -> String {
    transforms
        .iter()
        .map(|t| t.id.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Opens the target and creates its writers; a writer that cannot be created aborts the
/// opened target.
fn open_target(
    target: &mut dyn Target,
    target_id: &str,
    context: &WriteContext,
    plan: &RunPlan,
    early: &EarlyFailure<'_>,
) -> Result<Vec<Box<dyn Writer>>, Box<RunFailed>> {
    if let Err(e) = target.open(context) {
        let error = StageError::new(Stage::Target, target_id, "opening", e);
        return Err(early.fail(error, plan.start_offset.clone()));
    }
    let mut writers = Vec::with_capacity(context.concurrency);
    for i in 0..context.concurrency {
        match target.writer(i) {
            Ok(w) => writers.push(w),
            Err(e) => {
                let error =
                    StageError::new(Stage::Target, target_id, format!("creating writer {i}"), e);
                return Err(early.abort_then_fail(target, error, plan));
            }
        }
    }
    Ok(writers)
}

/// The rayon pool of the transform workers; none when there is no transform.
fn transform_pool(workers: usize, chain_id: &str) -> Result<Option<rayon::ThreadPool>, StageError> {
    if workers == 0 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("fl-transform-{i}"))
        .build()
        .map(Some)
        .map_err(|e| {
            StageError::new(
                Stage::Transform,
                chain_id,
                "starting workers",
                PluginError::internal(e),
            )
        })
}

/// The queues between the stages: source → target, or source → transform → target with half
/// the byte budget each.
struct Queues {
    source: Arc<BatchQueue>,
    target: Arc<BatchQueue>,
    named: Vec<NamedQueue>,
}

impl Queues {
    fn new(plan: &RunPlan, transform_workers: usize, options: &EngineOptions) -> Self {
        let batches = options.max_buffered_batches;
        if transform_workers == 0 {
            let bytes = options.max_buffered_bytes;
            let source = Arc::new(BatchQueue::new(plan.source_workers, batches, bytes));
            return Self {
                target: source.clone(),
                named: vec![NamedQueue::new("source→target", &source, bytes)],
                source,
            };
        }
        let bytes = options.max_buffered_bytes / 2;
        let source = Arc::new(BatchQueue::new(plan.source_workers, batches, bytes));
        let target = Arc::new(BatchQueue::new(transform_workers, batches, bytes));
        Self {
            named: vec![
                NamedQueue::new("source→transform", &source, bytes),
                NamedQueue::new("transform→target", &target, bytes),
            ],
            source,
            target,
        }
    }

    /// Every distinct queue, for cancelling them all.
    fn all(&self) -> Vec<Arc<BatchQueue>> {
        self.named.iter().map(|q| q.queue.clone()).collect()
    }
}

/// Tells the observer that the run has started.
fn announce(
    plan: &RunPlan,
    options: &EngineOptions,
    observer: &mut dyn Observer,
    totals: &mut Totals,
) {
    let started = Event::RunStarted {
        run_id: options.run_id.clone(),
        partitions: plan.partitions.len(),
        start_offset: plan.start_offset.clone(),
    };
    totals.apply(&started);
    observer.event(&started, totals);
}

/// Ends a run that failed before its workers started, with a summary of nothing done.
struct EarlyFailure<'a> {
    options: &'a EngineOptions,
    started: Instant,
    /// Whether an opened target keeps its staging (a checkpointed run) instead of aborting.
    keep_staging: bool,
}

impl EarlyFailure<'_> {
    /// The failed run.
    fn fail(&self, error: StageError, start_offset: Option<Value>) -> Box<RunFailed> {
        let totals = Totals {
            elapsed: self.started.elapsed(),
            ..Totals::default()
        };
        let shape = StageShape {
            ids: Default::default(),
            workers: [0; 3],
        };
        let context = SummaryContext {
            options: self.options,
            totals: &totals,
            start_offset,
            shape: &shape,
            queues: &[],
            checkpoint: None,
            verification: None,
        };
        Box::new(RunFailed {
            run_id: self.options.run_id.clone(),
            summary: Box::new(summarize(&context, RunStatus::Failed, Some(&error))),
            error,
            abort_error: None,
        })
    }

    /// Aborts the opened target (suspends it, in a checkpointed run), then fails the run.
    fn abort_then_fail(
        &self,
        target: &mut dyn Target,
        error: StageError,
        plan: &RunPlan,
    ) -> Box<RunFailed> {
        let abort_error = if self.keep_staging {
            target.suspend().err()
        } else {
            target.abort().err()
        };
        let mut failed = self.fail(error, plan.start_offset.clone());
        failed.abort_error = abort_error;
        failed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use fastlane_plugin_api::{BatchStream, IterStream, Partition};

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
