//! Typed events of a run, the running totals they feed, and the final run summary.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::memory::Rss;
use super::queue::QueueDepth;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading from the source.
    Source,
    /// Applying transforms.
    Transform,
    /// Writing to the target.
    Target,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Target => "target",
        })
    }
}

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run has started: offsets resolved, partitions planned, target opened.
    RunStarted {
        /// The run's id.
        run_id: String,
        /// How many partitions the source will read.
        partitions: usize,
        /// Where an incremental run starts (exclusive).
        start_offset: Option<Value>,
    },
    /// A source worker read a batch.
    BatchExtracted {
        /// The partition it came from.
        partition: usize,
        /// Rows in the batch.
        rows: usize,
        /// Bytes of Arrow memory in the batch.
        bytes: usize,
        /// Time spent inside the source producing it.
        elapsed: Duration,
    },
    /// A transform worker transformed a batch.
    BatchTransformed {
        /// The worker.
        worker: usize,
        /// Rows in.
        rows_in: usize,
        /// Rows out.
        rows_out: usize,
        /// Bytes out.
        bytes: usize,
        /// Time spent in the transforms.
        elapsed: Duration,
    },
    /// A target worker wrote a batch.
    BatchLoaded {
        /// The worker.
        worker: usize,
        /// Rows written.
        rows: usize,
        /// Bytes of Arrow memory written.
        bytes: usize,
        /// Time spent inside the target writing it.
        elapsed: Duration,
    },
    /// A source partition has been read to its end.
    PartitionFinished {
        /// The partition.
        partition: usize,
    },
    /// A stage failed; the run is being cancelled.
    StageFailed {
        /// The stage.
        stage: Stage,
        /// The error, with its causes.
        error: String,
    },
    /// The target committed.
    Committed,
    /// The target was aborted.
    Aborted,
    /// The target kept the failed run's staging, so that a later run can resume it.
    Suspended,
}

/// Totals of one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTotals {
    /// Batches handled.
    pub batches: u64,
    /// Rows produced (source, transform) or written (target).
    pub rows: u64,
    /// Bytes of Arrow memory produced or written.
    pub bytes: u64,
    /// Time spent inside the stage's components, summed over its workers.
    #[serde(serialize_with = "ser_secs")]
    pub busy: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The running totals of a run, updated from its events and periodic samples.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Source totals.
    pub source: StageTotals,
    /// Transform totals.
    pub transform: StageTotals,
    /// Target totals.
    pub target: StageTotals,
    /// Memory at the last sample.
    pub rss: Rss,
    /// Queue depths at the last sample (source→transform, transform→target).
    pub queues: Vec<QueueDepth>,
    /// The names of the queues, in the order of `queues`.
    pub queue_names: Vec<String>,
    /// Partitions finished.
    pub partitions_done: usize,
    /// Partitions planned.
    pub partitions: usize,
    /// Rows read per partition.
    pub rows_by_partition: BTreeMap<usize, u64>,
    /// Rows that went into the transforms (their output is `transform.rows`).
    pub transform_rows_in: u64,
}

impl Totals {
    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted { partitions, .. } => self.partitions = *partitions,
            Event::BatchExtracted {
                partition,
                rows,
                bytes,
                elapsed,
            } => {
                add(&mut self.source, *rows, *bytes, *elapsed);
                *self.rows_by_partition.entry(*partition).or_default() += *rows as u64;
            }
            Event::BatchTransformed {
                rows_in,
                rows_out,
                bytes,
                elapsed,
                ..
            } => {
                add(&mut self.transform, *rows_out, *bytes, *elapsed);
                self.transform_rows_in += *rows_in as u64;
            }
            Event::BatchLoaded {
                rows,
                bytes,
                elapsed,
                ..
            } => add(&mut self.target, *rows, *bytes, *elapsed),
            Event::PartitionFinished { .. } => self.partitions_done += 1,
            Event::StageFailed { .. } | Event::Committed | Event::Aborted | Event::Suspended => {}
        }
    }
}

fn add(t: &mut StageTotals, rows: usize, bytes: usize, elapsed: Duration) {
    t.batches += 1;
    t.rows += rows as u64;
    t.bytes += bytes as u64;
    t.busy += elapsed;
}

/// Receives a run's events on the coordinating thread.
pub trait Observer {
    /// An event happened; `totals` already include it.
    fn event(&mut self, event: &Event, totals: &Totals) {
        let _ = (event, totals);
    }

    /// Periodic sample (every few hundred milliseconds).
    fn tick(&mut self, totals: &Totals) {
        let _ = totals;
    }
}

/// An observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {}

/// One stage in the run summary.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// The stage.
    pub stage: Stage,
    /// The component ids of the stage (`file`, `sql+filter`…).
    pub component: String,
    /// Worker threads of the stage.
    pub workers: usize,
    /// Totals.
    #[serde(flatten)]
    pub totals: StageTotals,
    /// Rows per second of wall time.
    pub rows_per_sec: f64,
}

/// One queue in the run summary.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSummary {
    /// Which queue (`source→transform`, `transform→target`).
    pub name: String,
    /// Its limit in batches.
    pub max_batches: usize,
    /// Its limit in bytes.
    pub max_bytes: usize,
    /// The most batches it held at once.
    pub peak_batches: usize,
    /// The most bytes it held at once.
    pub peak_bytes: usize,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage succeeded and the target committed.
    Succeeded,
    /// A stage failed; the target was aborted.
    Failed,
    /// The run was stopped on request (a signal, or the monitoring service); the target was
    /// aborted.
    Stopped,
}

/// The summary of a finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The replication mode.
    pub mode: fastlane_plugin_api::ReplicationMode,
    /// Where an incremental run started (exclusive).
    pub start_offset: Option<Value>,
    /// Wall time, seconds.
    pub duration_secs: f64,
    /// Rows read from the source.
    pub rows_extracted: u64,
    /// Rows written to the target.
    pub rows_loaded: u64,
    /// Bytes of Arrow memory written to the target.
    pub bytes_loaded: u64,
    /// Rows written per second of wall time.
    pub rows_per_sec: f64,
    /// Partitions read.
    pub partitions: usize,
    /// Per-stage figures.
    pub stages: Vec<StageSummary>,
    /// Per-queue figures.
    pub queues: Vec<QueueSummary>,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// The error, for a failed run.
    pub error: Option<String>,
    /// For a checkpointed run: its staging, what a resumed run found there, and whether a
    /// failed run kept it for a resume.
    pub checkpoint: Option<CheckpointSummary>,
    /// How the load was verified before publishing, when it was.
    pub verification: Option<super::verify::VerificationSummary>,
}

/// The checkpoints of a run, in its summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSummary {
    /// The run whose staging this run loaded: its own id, or the id of the run it resumed.
    pub staging_run_id: String,
    /// Whether this run resumed an unfinished run.
    pub resumed: bool,
    /// Rows the staging held when this run started.
    pub rows_already_loaded: u64,
    /// Partitions read completely before this run.
    pub partitions_already_done: usize,
    /// Seconds between checkpoints.
    pub interval_secs: f64,
    /// Whether the run failed and its staging is kept for a resume.
    pub kept: bool,
}
