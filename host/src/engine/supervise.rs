//! The supervisor of a run: while the workers run it drains their events, samples queues and
//! memory, and watches for a stop request and for stalls; once they are done it concludes the
//! run (commit, or abort) and summarizes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use fastlane_plugin_api::{ErrorCode, PluginError, Target};
use serde_json::Value;

use super::events::{
    CheckpointSummary, Event, Observer, QueueSummary, RunStatus, RunSummary, Stage, StageSummary,
    StageTotals, Totals,
};
use super::queue::BatchQueue;
use super::verify::{Check, VerificationSummary};
use super::workers::{Msg, Started};
use super::{EngineOptions, RunFailed, StageError, memory};

/// The error of a run stopped on request.
const STOPPED: &str = "the run was stopped";

/// A queue of the run, as the summary names it.
pub(super) struct NamedQueue {
    /// `source→target`, `source→transform` or `transform→target`.
    pub(super) name: String,
    /// The queue.
    pub(super) queue: Arc<BatchQueue>,
    /// Its share of the byte budget.
    pub(super) max_bytes: usize,
}

impl NamedQueue {
    /// `queue`, named, with its share of the byte budget.
    pub(super) fn new(name: &str, queue: &Arc<BatchQueue>, max_bytes: usize) -> Self {
        Self {
            name: name.to_owned(),
            queue: queue.clone(),
            max_bytes,
        }
    }
}

/// The component ids and worker counts of the three stages (0 transform workers: no transform).
pub(super) struct StageShape {
    pub(super) ids: [String; 3],
    pub(super) workers: [usize; 3],
}

/// How the workers ended: the first error, and whether a stop request caused it.
pub(super) struct Ending {
    error: Option<StageError>,
    stop_requested: bool,
}

/// Watches a run's workers until every one has exited (or, after a failure, until the cancel
/// grace period is over), reporting events and samples to the observer.
pub(super) struct Supervisor<'a> {
    options: &'a EngineOptions,
    observer: &'a mut dyn Observer,
    workers: Started,
    queues: &'a [NamedQueue],
    next_sample: Instant,
    cancel_deadline: Option<Instant>,
    stop_requested: bool,
}

impl<'a> Supervisor<'a> {
    /// A supervisor for started workers.
    pub(super) fn new(
        options: &'a EngineOptions,
        observer: &'a mut dyn Observer,
        workers: Started,
        queues: &'a [NamedQueue],
    ) -> Self {
        Self {
            options,
            observer,
            workers,
            queues,
            next_sample: Instant::now(),
            cancel_deadline: None,
            stop_requested: false,
        }
    }

    /// Runs until the workers are done; returns how they ended. A stop request fails the run
    /// as a cancelled read of `source_id`.
    pub(super) fn watch(mut self, source_id: &str, totals: &mut Totals) -> Ending {
        while self.workers.workers > 0 {
            if !self.receive(totals) {
                break;
            }
            let now = Instant::now();
            self.sample(now, totals);
            self.check_stop(source_id);
            self.check_stalls();
            if self.grace_is_over(now) {
                tracing::warn!(
                    workers = self.workers.workers,
                    "workers did not stop within the cancel grace period; abandoning them"
                );
                break;
            }
        }
        self.drain(totals);
        totals.elapsed = self.workers.clock.0.elapsed();
        Ending {
            error: self.workers.control.take_error(),
            stop_requested: self.stop_requested,
        }
    }

    /// Waits a little for the next event or worker exit; false when no worker can send more.
    fn receive(&mut self, totals: &mut Totals) -> bool {
        let wait = self.options.sample_interval.min(Duration::from_millis(100));
        match self.workers.events.recv_timeout(wait) {
            Ok(Msg::WorkerExited) => self.workers.workers -= 1,
            Ok(Msg::Event(event)) => {
                totals.apply(&event);
                self.observer.event(&event, totals);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        true
    }

    /// Samples time, memory and queue depths every `sample_interval`.
    fn sample(&mut self, now: Instant, totals: &mut Totals) {
        if now < self.next_sample {
            return;
        }
        self.next_sample = now + self.options.sample_interval;
        totals.elapsed = self.workers.clock.0.elapsed();
        totals.rss = memory::rss();
        totals.queues = self.queues.iter().map(|q| q.queue.depth()).collect();
        if totals.queue_names.len() != self.queues.len() {
            totals.queue_names = self.queues.iter().map(|q| q.name.clone()).collect();
        }
        self.observer.tick(totals);
    }

    /// Fails the run as stopped once a stop is requested.
    fn check_stop(&mut self, source_id: &str) {
        let control = &self.workers.control;
        if let Some(stop) = &self.options.stop
            && stop.load(Ordering::SeqCst)
            && !control.is_failed()
        {
            self.stop_requested = true;
            control.fail(StageError::new(
                Stage::Source,
                source_id,
                "reading",
                PluginError::new(ErrorCode::CANCELLED, STOPPED),
            ));
        }
    }

    /// Fails the run when a worker has been inside one call for longer than `stall_timeout`.
    fn check_stalls(&self) {
        let control = &self.workers.control;
        let Some(limit) = self.options.stall_timeout else {
            return;
        };
        if control.is_failed() {
            return;
        }
        for slot in &self.workers.slots {
            if let Some((busy_ms, what)) = slot.busy_for(&self.workers.clock)
                && busy_ms > limit.as_millis() as u64
            {
                control.fail(StageError::new(
                    slot.stage,
                    &slot.component,
                    what,
                    PluginError::new(
                        ErrorCode::CANCELLED,
                        format!(
                            "no progress for {:.1} s (stall_timeout_secs is {})",
                            busy_ms as f64 / 1000.0,
                            limit.as_secs_f64()
                        ),
                    ),
                ));
                break;
            }
        }
    }

    /// After a failure, whether the workers have had `cancel_grace` to stop.
    fn grace_is_over(&mut self, now: Instant) -> bool {
        if !self.workers.control.is_failed() {
            return false;
        }
        let deadline = *self
            .cancel_deadline
            .get_or_insert(now + self.options.cancel_grace);
        now >= deadline
    }

    /// Reports the events still queued (from workers that already exited).
    fn drain(&mut self, totals: &mut Totals) {
        while let Ok(msg) = self.workers.events.try_recv() {
            if let Msg::Event(event) = msg {
                totals.apply(&event);
                self.observer.event(&event, totals);
            }
        }
    }
}

/// Aborts the target after a failure, telling the observer; the abort's own error, if any.
/// A checkpointed run suspends it instead, keeping its staging for a resume.
pub(super) fn abort(
    target: &mut dyn Target,
    observer: &mut dyn Observer,
    totals: &Totals,
    checkpoint: Option<&mut CheckpointSummary>,
) -> Option<PluginError> {
    match checkpoint {
        Some(summary) => {
            let error = target.suspend().err();
            summary.kept = error.is_none();
            observer.event(&Event::Suspended, totals);
            error
        }
        None => {
            let abort_error = target.abort().err();
            observer.event(&Event::Aborted, totals);
            abort_error
        }
    }
}

/// Ends a run whose workers are done: commits the target when nothing failed, aborts it
/// otherwise, and summarizes.
pub(super) fn conclude(
    target: &mut dyn Target,
    ending: Ending,
    mut context: SummaryContext<'_>,
    check: Option<&Check>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Box<RunFailed>> {
    let totals = context.totals;
    let verified = match (&ending.error, check) {
        (None, Some(check)) => Some(check.run(target, totals)),
        _ => None,
    };
    let (verified, mismatch) = match verified {
        Some(v) => (Some(v.summary), v.error),
        None => (None, None),
    };
    context.verification = verified;
    let (status, error, abort_error) = match (ending.error, mismatch) {
        (None, Some(err)) => {
            // The staging does not hold what it should: discard it, never resume it.
            let abort_error = abort(target, observer, totals, None);
            (RunStatus::Failed, Some(err), abort_error)
        }
        (None, None) => match target.commit() {
            Ok(()) => {
                observer.event(&Event::Committed, totals);
                (RunStatus::Succeeded, None, None)
            }
            Err(e) => {
                let err = StageError::new(Stage::Target, &context.shape.ids[2], "committing", e);
                let abort_error = abort(target, observer, totals, context.checkpoint.as_mut());
                (RunStatus::Failed, Some(err), abort_error)
            }
        },
        (Some(err), _) => {
            let abort_error = abort(target, observer, totals, context.checkpoint.as_mut());
            let stopped = ending.stop_requested
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
    let summary = summarize(&context, status, error.as_ref());
    match error {
        None => Ok(summary),
        Some(error) => Err(Box::new(RunFailed {
            run_id: context.options.run_id.clone(),
            error,
            abort_error,
            summary: Box::new(summary),
        })),
    }
}

/// What a run's summary is made from, besides its status and error.
pub(super) struct SummaryContext<'a> {
    pub(super) options: &'a EngineOptions,
    pub(super) totals: &'a Totals,
    pub(super) start_offset: Option<Value>,
    pub(super) shape: &'a StageShape,
    pub(super) queues: &'a [NamedQueue],
    pub(super) checkpoint: Option<CheckpointSummary>,
    pub(super) verification: Option<VerificationSummary>,
}

/// The summary of a run, finished or failed.
pub(super) fn summarize(
    context: &SummaryContext<'_>,
    status: RunStatus,
    error: Option<&StageError>,
) -> RunSummary {
    let totals = context.totals;
    let secs = totals.elapsed.as_secs_f64().max(1e-9);
    let stage = |stage: Stage, i: usize, stage_totals: StageTotals| StageSummary {
        stage,
        component: context.shape.ids[i].clone(),
        workers: context.shape.workers[i],
        totals: stage_totals,
        rows_per_sec: stage_totals.rows as f64 / secs,
    };
    let mut stages = vec![stage(Stage::Source, 0, totals.source)];
    if context.shape.workers[1] > 0 {
        stages.push(stage(Stage::Transform, 1, totals.transform));
    }
    stages.push(stage(Stage::Target, 2, totals.target));
    RunSummary {
        run_id: context.options.run_id.clone(),
        status,
        mode: context.options.mode,
        start_offset: context.start_offset.clone(),
        duration_secs: totals.elapsed.as_secs_f64(),
        rows_extracted: totals.source.rows,
        rows_loaded: totals.target.rows,
        bytes_loaded: totals.target.bytes,
        rows_per_sec: totals.target.rows as f64 / secs,
        partitions: totals.partitions,
        stages,
        queues: context
            .queues
            .iter()
            .map(|q| {
                let peak = q.queue.peak();
                QueueSummary {
                    name: q.name.clone(),
                    max_batches: context.options.max_buffered_batches,
                    max_bytes: q.max_bytes,
                    peak_batches: peak.batches,
                    peak_bytes: peak.bytes,
                }
            })
            .collect(),
        peak_rss_bytes: memory::rss().peak,
        error: error.map(|e| crate::error::chain(e)),
        checkpoint: context.checkpoint.clone(),
        verification: context.verification.clone(),
    }
}
