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
//!
//! With `verify: "checksum"` each comparison also compares a [`Checksum`] of the rows (their
//! number and the sum of one hash per row, see `fastlane_plugin_api::checksum`): the source's
//! own (in SQL where it has SQL) against the one the run computes from the batches it read,
//! and the staging's own against the one it computes from the batches it wrote. End to end,
//! the checksums are compared only when there is no transform.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use fastlane_plugin_api::{
    Capability, Checksum, ErrorCode, Partition, PluginError, Source, Target,
};
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
    /// Row counts and checksums of the rows' values.
    Checksum,
}

/// How verification went, in the run summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationSummary {
    /// `count` or `checksum`.
    pub mode: Verify,
    /// `passed`, `failed` or `skipped`.
    pub status: VerificationStatus,
    /// The source's count over all partitions, when it could count.
    pub source_rows: Option<u64>,
    /// Rows read from the source (by this run and the run it resumed).
    pub read_rows: u64,
    /// The staging's count, when the target could count.
    pub target_rows: Option<u64>,
    /// The source's checksum over all partitions (hexadecimal), in a run verified by checksum
    /// whose source computes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_checksum: Option<String>,
    /// The staging's checksum (hexadecimal), in a run verified by checksum whose target
    /// computes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_checksum: Option<String>,
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
    /// The checksums of the rows read per partition, from the kept checkpoints (when each
    /// carried one).
    pub(super) checksums_by_partition: Option<BTreeMap<usize, Checksum>>,
    /// The staging's own checksum at the start, when the target computes one.
    pub(super) staged_checksum: Option<Checksum>,
}

/// The checksums of the rows a run reads (per partition) and writes, added up by its workers.
#[derive(Debug, Default)]
pub(super) struct Sums {
    /// Without transforms the target gets the very batches read: their checksums are the
    /// read ones, not computed twice.
    pub(super) written_is_read: bool,
    read: Mutex<BTreeMap<usize, Checksum>>,
    written: Mutex<Checksum>,
    /// Why a batch had no checksum (a column of a type without an encoding).
    problem: Mutex<Option<String>>,
}

impl Sums {
    /// The checksum of `batch`, or none (the reason is kept) when a column has no encoding.
    pub(super) fn checksum(&self, batch: &RecordBatch) -> Option<Checksum> {
        match Checksum::of_batch(batch) {
            Ok(c) => Some(c),
            Err(e) => {
                let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
                problem.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }

    /// Adds the checksum of `batch`, read from `partition`; returns its sum for the batch's tag.
    pub(super) fn read(&self, partition: usize, batch: &RecordBatch) -> Option<u64> {
        let checksum = self.checksum(batch)?;
        self.read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partition)
            .or_default()
            .add(checksum);
        Some(checksum.sum)
    }

    /// Adds the checksum of a batch written into the staging.
    pub(super) fn written(&self, checksum: Checksum) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(checksum);
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the source says of one partition: its rows, and its checksum when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    pub(super) rows: u64,
    pub(super) checksum: Option<Checksum>,
}

/// What the source says of one partition, or the partition it failed on and why.
type CountResult = Result<Counted, (usize, PluginError)>;

/// The source's counts of its partitions, taken while the run loads.
type Counting = std::thread::JoinHandle<Result<Vec<Counted>, (usize, PluginError)>>;

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
    pub(super) counting: Mutex<Option<Counting>>,
    /// The checksums the workers add up, in a run verified by checksum.
    pub(super) sums: Option<Arc<Sums>>,
    /// How many partitions are counted at once.
    parallel: usize,
}

impl Check {
    /// A check of `mode` for a run with `transforms` or not; its source's counts are started
    /// with [`start_counting`](Self::start_counting).
    pub(super) fn new(
        mode: Verify,
        source: Arc<Named<Box<dyn Source>>>,
        target: (String, Vec<Capability>),
        partitions: Vec<Partition>,
        before: Before,
        transforms: bool,
        parallel: usize,
    ) -> Self {
        Self {
            mode,
            source,
            target_id: target.0,
            target_capabilities: target.1,
            partitions,
            before,
            transforms,
            counting: Mutex::new(None),
            parallel,
            sums: (mode == Verify::Checksum).then(|| {
                Arc::new(Sums {
                    written_is_read: !transforms,
                    ..Sums::default()
                })
            }),
        }
    }

    /// Whether the source computes checksums, in a run verified by checksum.
    fn sums_source(&self) -> bool {
        self.mode == Verify::Checksum
            && self
                .source
                .capabilities
                .contains(&Capability::VerifyChecksum)
    }

    /// Whether the source can say anything of its partitions.
    fn source_counts(&self) -> bool {
        self.sums_source() || self.source.capabilities.contains(&Capability::VerifyCount)
    }

    /// What the source says of one partition: a checksum (with its rows) when the run is
    /// verified by checksum and the source computes them, otherwise a count.
    fn count_partition(
        source: &Named<Box<dyn Source>>,
        p: &Partition,
        checksums: bool,
    ) -> Result<Counted, (usize, PluginError)> {
        let summed = match checksums {
            true => match source.component.checksum(p) {
                Ok(c) => Some(c),
                Err(e) if e.code() == ErrorCode::UNSUPPORTED => {
                    tracing::warn!("partition {}: no checksum ({e}); counting", p.index);
                    None
                }
                Err(e) => return Err((p.index, e)),
            },
            false => None,
        };
        if let Some(c) = summed {
            return Ok(Counted {
                rows: c.rows,
                checksum: Some(c),
            });
        }
        let rows = source.component.count(p).map_err(|e| (p.index, e))?;
        Ok(Counted {
            rows,
            checksum: None,
        })
    }

    /// What the source says of each partition, asked on up to `parallel` threads (as many as
    /// the run reads with: a checksum takes the server a while).
    fn count_partitions(
        source: &Named<Box<dyn Source>>,
        partitions: &[Partition],
        checksums: bool,
        parallel: usize,
    ) -> Result<Vec<Counted>, (usize, PluginError)> {
        let n = partitions.len();
        let threads = parallel.clamp(1, n.max(1));
        if threads == 1 {
            return partitions
                .iter()
                .map(|p| Self::count_partition(source, p, checksums))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<CountResult>>> = Mutex::new((0..n).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let result = Self::count_partition(source, &partitions[i], checksums);
                        let failed = result.is_err();
                        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                        if failed {
                            // The others stop after their current partition.
                            next.store(n, Ordering::SeqCst);
                            break;
                        }
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(Err((index, e))) = results.iter().flatten().find(|r| r.is_err()) {
            return Err((*index, e.clone()));
        }
        results
            .into_iter()
            .zip(partitions)
            .map(|(r, p)| {
                r.unwrap_or_else(|| {
                    Err((
                        p.index,
                        PluginError::internal("the partition was not counted"),
                    ))
                })
            })
            .collect()
    }

    /// Starts counting the source's partitions, when the source counts.
    pub(super) fn start_counting(&self) {
        if !self.source_counts() {
            return;
        }
        let (source, partitions) = (self.source.clone(), self.partitions.clone());
        let (checksums, parallel) = (self.sums_source(), self.parallel);
        let spawned = std::thread::Builder::new()
            .name("fl-verify".to_owned())
            .spawn(move || Self::count_partitions(&source, &partitions, checksums, parallel));
        match spawned {
            Ok(handle) => *self.counting.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle),
            Err(e) => {
                tracing::warn!("cannot start counting the source's rows ({e}); counting later")
            }
        }
    }

    /// The source's counts: those the counting thread took, or taken now.
    fn counts(&self) -> Option<Result<Vec<Counted>, (usize, PluginError)>> {
        if !self.source_counts() {
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
        Some(Self::count_partitions(
            &self.source,
            &self.partitions,
            self.sums_source(),
            self.parallel,
        ))
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
        let sums = self.sums.as_deref().map(|sums| self.run_sums(sums));
        let evidence = Evidence {
            source: &self.source,
            counts: self.counts(),
            target_id: &self.target_id,
            target_capabilities: &self.target_capabilities,
            partitions: &self.partitions,
            read: &read,
            written: self.before.staged.unwrap_or(self.before.rows) + totals.target.rows,
            rows_preserved: preserved_now && preserved_before,
            sums,
        };
        verify(self.mode, &evidence, target)
    }

    /// The checksums of what the run read and wrote, with what the staging held before.
    fn run_sums(&self, sums: &Sums) -> RunSums {
        let problem = sums.problem();
        let fresh = self.before.rows == 0;
        let read = match (&problem, fresh, &self.before.checksums_by_partition) {
            (Some(_), _, _) => None,
            (None, true, _) => Some(BTreeMap::new()),
            (None, false, before) => before.clone(),
        }
        .map(|mut read| {
            for (p, c) in sums.read.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                read.entry(*p).or_insert_with(Checksum::default).add(*c);
            }
            read
        });
        let before = match fresh {
            true => Some(Checksum::default()),
            false => self.before.staged_checksum,
        };
        let written = match (&problem, before) {
            (None, Some(mut before)) => {
                if sums.written_is_read {
                    for c in sums.read.lock().unwrap_or_else(|p| p.into_inner()).values() {
                        before.add(*c);
                    }
                } else {
                    before.add(*sums.written.lock().unwrap_or_else(|p| p.into_inner()));
                }
                Some(before)
            }
            _ => None,
        };
        let problem = problem.or_else(|| {
            (!fresh && read.is_none())
                .then(|| "the resumed run's checkpoints carry no checksums".to_owned())
        });
        RunSums {
            read,
            written,
            problem,
            values_preserved: !self.transforms,
        }
    }
}

/// The checksums the run computed from its batches.
pub(super) struct RunSums {
    /// Of the rows read, per partition (this run's and the resumed run's).
    pub(super) read: Option<BTreeMap<usize, Checksum>>,
    /// Of the rows the staging should hold: what it held at the start and what was written.
    pub(super) written: Option<Checksum>,
    /// Why some checksum could not be computed.
    pub(super) problem: Option<String>,
    /// Whether the rows reached the target unchanged (no transform).
    pub(super) values_preserved: bool,
}

/// What verification compares.
pub(super) struct Evidence<'a> {
    pub(super) source: &'a Named<Box<dyn Source>>,
    /// The source's count of each partition (in the order of `partitions`), when it counts.
    pub(super) counts: Option<Result<Vec<Counted>, (usize, PluginError)>>,
    pub(super) target_id: &'a str,
    pub(super) target_capabilities: &'a [Capability],
    pub(super) partitions: &'a [Partition],
    /// Rows read per partition (this run, and the run it resumed).
    pub(super) read: &'a BTreeMap<usize, u64>,
    /// Rows written into the staging: by this run, plus what the staging held at its start.
    pub(super) written: u64,
    /// Whether every row read reached the target as one row (no transform changed counts).
    pub(super) rows_preserved: bool,
    /// In a run verified by checksum, the run's own checksums.
    pub(super) sums: Option<RunSums>,
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
        source_checksum: None,
        target_checksum: None,
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
        for (partition, counted) in evidence.partitions.iter().zip(counts) {
            let counted = counted.rows;
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
    if let Some(sums) = &evidence.sums {
        match compare_checksums(evidence, sums, target, &mut summary, &mut notes) {
            Ok(()) => {}
            Err((stage, id, message)) => return fail(summary, stage, &id, message),
        }
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

/// The checksum comparisons of a run verified by checksum: what failed, by which stage and
/// component, or `Ok` with the summary's checksums and notes filled in.
fn compare_checksums(
    evidence: &Evidence<'_>,
    sums: &RunSums,
    target: &dyn Target,
    summary: &mut VerificationSummary,
    notes: &mut Vec<String>,
) -> Result<(), (Stage, String, String)> {
    if let Some(problem) = &sums.problem {
        notes.push(format!("checksums not compared: {problem}"));
        return Ok(());
    }
    let source = evidence.source;
    let source_sums: Option<Vec<Checksum>> = match &evidence.counts {
        Some(Ok(counts)) => counts.iter().map(|c| c.checksum).collect(),
        _ => None,
    };
    let mut source_total = None;
    match (&source_sums, &sums.read) {
        (Some(source_sums), Some(read)) => {
            let mut total = Checksum::default();
            for (partition, counted) in evidence.partitions.iter().zip(source_sums) {
                let got = read.get(&partition.index).copied().unwrap_or_default();
                if *counted != got {
                    let message = format!(
                        "partition {}: the source's checksum is {counted} over {} rows, the \
                         rows the run read give {got} over {}; nothing was published",
                        partition.index, counted.rows, got.rows
                    );
                    return Err((Stage::Source, source.id.clone(), message));
                }
                total.add(*counted);
            }
            summary.source_checksum = Some(total.to_string());
            source_total = Some(total);
        }
        (None, _) => notes.push(format!("source `{}` cannot compute checksums", source.id)),
        (Some(_), None) => {}
    }

    let mut target_total = None;
    if evidence
        .target_capabilities
        .contains(&Capability::VerifyChecksum)
    {
        let staged = match target.staged_checksum() {
            Ok(staged) => staged,
            Err(e) if e.code() == ErrorCode::UNSUPPORTED => {
                notes.push(format!(
                    "target `{}` has no checksum of its staging: {e}",
                    evidence.target_id
                ));
                return Ok(());
            }
            Err(e) => {
                return Err((
                    Stage::Target,
                    evidence.target_id.to_owned(),
                    format!("cannot compute the staging's checksum: {e}"),
                ));
            }
        };
        summary.target_checksum = Some(staged.to_string());
        if sums.written.is_none() {
            notes.push(
                "the kept staging's checksum is unknown, so the staging's is not compared with \
                 the rows written"
                    .to_owned(),
            );
        }
        if let Some(written) = sums.written
            && staged != written
        {
            let message = format!(
                "the staging's checksum is {staged} over {} rows, but the rows written into it \
                 give {written} over {}; nothing was published",
                staged.rows, written.rows
            );
            return Err((Stage::Target, evidence.target_id.to_owned(), message));
        }
        target_total = Some(staged);
    } else {
        notes.push(format!(
            "target `{}` cannot compute checksums of its staging",
            evidence.target_id
        ));
    }

    match (source_total, target_total) {
        (Some(s), Some(t)) if sums.values_preserved && s != t => {
            let message = format!(
                "the source's checksum is {s} over {} rows, the staging's {t} over {}; nothing \
                 was published",
                s.rows, t.rows
            );
            Err((Stage::Target, evidence.target_id.to_owned(), message))
        }
        (Some(_), Some(_)) if !sums.values_preserved => {
            notes.push(
                "a transform may change values, so the source's and the target's checksums \
                 are not compared"
                    .to_owned(),
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use fastlane_plugin_api::{BatchStream, Result};

    use super::*;

    /// A source whose partition `i` holds `10 * i` rows, and whose count of `fail` fails.
    struct Counts {
        fail: Option<usize>,
    }

    impl Source for Counts {
        fn read(&self, _: &Partition) -> Result<Box<dyn BatchStream>> {
            Err(PluginError::unsupported("counts only"))
        }

        fn count(&self, p: &Partition) -> Result<u64> {
            std::thread::sleep(std::time::Duration::from_millis(5));
            match self.fail == Some(p.index) {
                true => Err(PluginError::data("the server went away")),
                false => Ok(10 * p.index as u64),
            }
        }
    }

    fn partitions(n: usize) -> Vec<Partition> {
        (0..n)
            .map(|index| Partition {
                index,
                spec: serde_json::Value::Null,
            })
            .collect()
    }

    #[test]
    fn partitions_counted_in_parallel_keep_their_order_and_report_a_failure() {
        let parts = partitions(9);
        for parallel in [1, 3, 20] {
            let source: Named<Box<dyn Source>> = Named::new("s", Box::new(Counts { fail: None }));
            let counted = Check::count_partitions(&source, &parts, false, parallel).unwrap();
            let rows: Vec<u64> = counted.iter().map(|c| c.rows).collect();
            assert_eq!(
                rows,
                (0..9).map(|i| 10 * i).collect::<Vec<u64>>(),
                "{parallel}"
            );
            assert!(counted.iter().all(|c| c.checksum.is_none()));

            let failing: Named<Box<dyn Source>> =
                Named::new("s", Box::new(Counts { fail: Some(4) }));
            let (index, e) = Check::count_partitions(&failing, &parts, false, parallel)
                .expect_err("partition 4 fails");
            assert_eq!(index, 4, "{parallel}");
            assert!(e.to_string().contains("went away"), "{e}");
        }
    }

    #[test]
    fn a_source_without_checksums_is_counted_instead() {
        let source: Named<Box<dyn Source>> = Named::new("s", Box::new(Counts { fail: None }));
        let counted = Check::count_partitions(&source, &partitions(3), true, 2).unwrap();
        assert_eq!(counted[2].rows, 20);
        assert!(counted.iter().all(|c| c.checksum.is_none()));
    }
}
