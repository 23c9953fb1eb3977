//! Verification before publishing: the rows the source says each partition holds, the rows the
//! run read from it, and the rows the target's staging holds must agree, or the run fails
//! before anything is published.
//!
//! Three comparisons, each made where both sides can say:
//! - **read**: per partition, the source's count (`SELECT COUNT(*)` over its range…) against the
//!   rows read from it, by this run and, in a resumed run, the run it resumed (its tags);
//! - **written**: the staging's own count against the rows the run wrote into it (plus what it
//!   held when a resumed run opened it);
//! - **end to end**: the source's total against the staging's, when no transform changed the
//!   number of rows (otherwise the first two still hold, and the summary says so).

use std::collections::BTreeMap;
use std::sync::Arc;

use fastlane_plugin_api::{Capability, Partition, PluginError, Source, Target};
use serde::Serialize;

use super::events::{Stage, Totals};
use super::{Named, StageError};

/// Whether, and how, a run verifies its load before publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// No verification.
    #[default]
    Off,
    /// Row counts.
    Count,
}

/// How verification went, in the run summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationSummary {
    /// `count`.
    pub mode: Verify,
    /// `passed`, `failed` or `skipped`.
    pub status: VerificationStatus,
    /// The source's count over all partitions, when it could count.
    pub source_rows: Option<u64>,
    /// Rows read from the source (by this run and the run it resumed).
    pub read_rows: u64,
    /// The staging's count, when the target could count.
    pub target_rows: Option<u64>,
    /// What was not compared, and why; or the mismatch.
    pub note: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Every comparison made agreed.
    Passed,
    /// A comparison disagreed: nothing was published.
    Failed,
    /// Neither side could count.
    Skipped,
}

/// What a staging held when the run started (a resumed run's staging).
#[derive(Debug, Clone, Default)]
pub(super) struct Before {
    /// Rows per partition, from the kept checkpoints.
    pub(super) rows_by_partition: BTreeMap<usize, u64>,
    /// Rows, from the kept checkpoints.
    pub(super) rows: u64,
    /// The staging's own count at the start, when the target can count.
    pub(super) staged: Option<u64>,
}

/// The source's counts of its partitions, taken while the run loads.
type Counting = std::thread::JoinHandle<Result<Vec<u64>, (usize, PluginError)>>;

/// A verification to make once the workers are done. The source's counts are taken on a
/// thread of their own while the run loads (`SELECT COUNT(*)` of a large range takes a
/// while), as of the run; the staging's count once the writers are done.
pub(super) struct Check {
    pub(super) mode: Verify,
    pub(super) source: Arc<Named<Box<dyn Source>>>,
    pub(super) target_id: String,
    pub(super) target_capabilities: Vec<Capability>,
    pub(super) partitions: Vec<Partition>,
    pub(super) before: Before,
    /// Whether the run has transforms (which may change the number of rows).
    pub(super) transforms: bool,
    pub(super) counting: std::sync::Mutex<Option<Counting>>,
}

impl Check {
    /// Starts counting the source's partitions, when the source counts.
    pub(super) fn start_counting(&self) {
        if !self.source.capabilities.contains(&Capability::VerifyCount) {
            return;
        }
        let (source, partitions) = (self.source.clone(), self.partitions.clone());
        let spawned = std::thread::Builder::new()
            .name("fl-verify".to_owned())
            .spawn(move || {
                partitions
                    .iter()
                    .map(|p| source.component.count(p).map_err(|e| (p.index, e)))
                    .collect()
            });
        match spawned {
            Ok(handle) => *self.counting.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle),
            Err(e) => {
                tracing::warn!("cannot start counting the source's rows ({e}); counting later")
            }
        }
    }

    /// The source's counts: those the counting thread took, or taken now.
    fn counts(&self) -> Option<Result<Vec<u64>, (usize, PluginError)>> {
        if !self.source.capabilities.contains(&Capability::VerifyCount) {
            return None;
        }
        let handle = self
            .counting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            return Some(handle.join().unwrap_or_else(|_| {
                Err((
                    0,
                    PluginError::internal("counting the source's rows panicked"),
                ))
            }));
        }
        Some(
            self.partitions
                .iter()
                .map(|p| self.source.component.count(p).map_err(|e| (p.index, e)))
                .collect(),
        )
    }

    /// Verifies the load the run's `totals` describe.
    pub(super) fn run(&self, target: &dyn Target, totals: &Totals) -> Verified {
        let mut read = self.before.rows_by_partition.clone();
        for (p, n) in &totals.rows_by_partition {
            *read.entry(*p).or_default() += n;
        }
        let preserved_now = !self.transforms || totals.transform_rows_in == totals.transform.rows;
        let preserved_before = self
            .before
            .staged
            .is_none_or(|staged| staged == self.before.rows);
        let evidence = Evidence {
            source: &self.source,
            counts: self.counts(),
            target_id: &self.target_id,
            target_capabilities: &self.target_capabilities,
            partitions: &self.partitions,
            read: &read,
            written: self.before.staged.unwrap_or(self.before.rows) + totals.target.rows,
            rows_preserved: preserved_now && preserved_before,
        };
        verify(self.mode, &evidence, target)
    }
}

/// What verification compares.
pub(super) struct Evidence<'a> {
    pub(super) source: &'a Named<Box<dyn Source>>,
    /// The source's count of each partition (in the order of `partitions`), when it counts.
    pub(super) counts: Option<Result<Vec<u64>, (usize, PluginError)>>,
    pub(super) target_id: &'a str,
    pub(super) target_capabilities: &'a [Capability],
    pub(super) partitions: &'a [Partition],
    /// Rows read per partition (this run, and the run it resumed).
    pub(super) read: &'a BTreeMap<usize, u64>,
    /// Rows written into the staging: by this run, plus what the staging held at its start.
    pub(super) written: u64,
    /// Whether every row read reached the target as one row (no transform changed counts).
    pub(super) rows_preserved: bool,
}

/// The outcome of a verification: its summary, and the run's error on a mismatch.
pub(super) struct Verified {
    pub(super) summary: VerificationSummary,
    pub(super) error: Option<StageError>,
}

/// Verifies the load; the summary says how it went, with an error on a mismatch.
pub(super) fn verify(mode: Verify, evidence: &Evidence<'_>, target: &dyn Target) -> Verified {
    let read_rows: u64 = evidence.read.values().sum();
    let mut notes = Vec::new();
    let mut summary = VerificationSummary {
        mode,
        status: VerificationStatus::Passed,
        source_rows: None,
        read_rows,
        target_rows: None,
        note: None,
    };
    let fail = |mut summary: VerificationSummary, stage: Stage, id: &str, message: String| {
        summary.status = VerificationStatus::Failed;
        summary.note = Some(message.clone());
        let error = StageError::new(
            stage,
            id,
            "verifying the load before publishing",
            PluginError::data(message),
        );
        Verified {
            summary,
            error: Some(error),
        }
    };

    let source = evidence.source;
    if let Some(counts) = &evidence.counts {
        let counts = match counts {
            Ok(counts) => counts,
            Err((index, e)) => {
                let message = format!("cannot count partition {index}: {e}");
                return fail(summary, Stage::Source, &source.id, message);
            }
        };
        let mut total = 0u64;
        for (partition, &counted) in evidence.partitions.iter().zip(counts) {
            let read = evidence.read.get(&partition.index).copied().unwrap_or(0);
            if counted != read {
                let message = format!(
                    "partition {}: the source holds {counted} rows, the run read {read}; \
                     nothing was published",
                    partition.index
                );
                return fail(summary, Stage::Source, &source.id, message);
            }
            total += counted;
        }
        summary.source_rows = Some(total);
    } else {
        notes.push(format!("source `{}` cannot count its rows", source.id));
    }

    if evidence
        .target_capabilities
        .contains(&Capability::VerifyCount)
    {
        let staged = match target.staged_rows() {
            Ok(n) => n,
            Err(e) => {
                let message = format!("cannot count the staged rows: {e}");
                return fail(summary, Stage::Target, evidence.target_id, message);
            }
        };
        summary.target_rows = Some(staged);
        if staged != evidence.written {
            let message = format!(
                "the staging holds {staged} rows, but {} were written into it; nothing was \
                 published",
                evidence.written
            );
            return fail(summary, Stage::Target, evidence.target_id, message);
        }
    } else {
        notes.push(format!(
            "target `{}` cannot count its staged rows",
            evidence.target_id
        ));
    }

    match (summary.source_rows, summary.target_rows) {
        (Some(s), Some(t)) if evidence.rows_preserved && s != t => {
            let message =
                format!("the source holds {s} rows, the staging {t}; nothing was published");
            return fail(summary, Stage::Target, evidence.target_id, message);
        }
        (Some(_), Some(_)) if !evidence.rows_preserved => {
            notes.push(
                "the transform changed the number of rows, so the source's and the \
                        target's totals are not compared"
                    .to_owned(),
            );
        }
        _ => {}
    }
    if summary.source_rows.is_none() && summary.target_rows.is_none() {
        summary.status = VerificationStatus::Skipped;
    }
    if !notes.is_empty() {
        summary.note = Some(notes.join("; "));
    }
    Verified {
        summary,
        error: None,
    }
}
