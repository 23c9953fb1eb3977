//! Checkpointed runs: the plan stored with the target's staging, the tags written with every
//! batch, and the read jobs of a resumed run.
//!
//! In a checkpointed run every batch reaches the target with a [`Tag`]: its partition, the
//! read job it belongs to, its number in that job, the range of source positions it covers
//! (after `a`, up to `u`) and its row count. When a job's stream ends, a batch without rows
//! carries the job's end tag. The target keeps each tag with the batch's rows (see
//! [`fastlane_plugin_api::checkpoint`]), so the tags it gives back describe exactly what its
//! staging holds.
//!
//! A resumed run rebuilds, per partition, what is missing: the job of a whole partition runs
//! from `None` to `None`; its tags, ordered by number, must link (`a` of one is `u` of the one
//! before) and end with the end tag. Each hole between two kept tags, and the tail after the
//! last one, is read again as a job of its own over that range. A hole that a job of an earlier
//! resume already covers (same bounds) is looked up in that job's tags in turn. Positions are
//! compared for equality only, so the host never needs to know how a source orders them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fastlane_plugin_api::{Checksum, Partition, ReadRange, ReplicationMode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether and how a run may continue an unfinished one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Resume {
    /// Continue the newest unfinished run of the same configuration, when there is one.
    #[default]
    Auto,
    /// Start afresh; the target discards any unfinished run's staging.
    Never,
    /// Continue this run, or fail.
    Run(String),
}

/// How a run is checkpointed.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// Whether it may continue an unfinished run.
    pub resume: Resume,
    /// A digest of what must not change between a run and its resume (the source and target
    /// sections, the mode).
    pub fingerprint: String,
    /// How often target workers make their writes durable.
    pub interval: Duration,
}

/// The plan a checkpointed run stores with the target's staging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The format of this record.
    pub version: u32,
    /// See [`CheckpointOptions::fingerprint`].
    pub fingerprint: String,
    /// The id of the run that created the staging (kept by every resume of it).
    pub staging_run_id: String,
    /// The run's mode.
    pub mode: ReplicationMode,
    /// Where an incremental run starts.
    pub start_offset: Option<Value>,
    /// The source's partitions, as planned by the first run.
    pub partitions: Vec<Partition>,
}

/// The format version of [`StoredPlan`].
pub const PLAN_VERSION: u32 = 1;

/// What travels with one batch to the target, kept with its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// The partition.
    pub p: usize,
    /// The job's start (the position it reads after; `None`: the partition's start).
    pub ja: Option<Value>,
    /// The job's end (the position it reads up to; `None`: the partition's end).
    pub ju: Option<Value>,
    /// The batch's number in its job, from 0.
    pub s: u64,
    /// The position the batch starts after.
    pub a: Option<Value>,
    /// The position after the batch.
    pub u: Option<Value>,
    /// Its rows.
    pub n: u64,
    /// The sum of its rows' hashes, in a run verified by checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<u64>,
    /// Whether this is the job's end tag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
}

/// One read of a partition, or of a range of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadJob {
    /// The partition.
    pub partition: Partition,
    /// The range read; `None` for the whole partition.
    pub range: Option<ReadRange>,
}

impl ReadJob {
    /// A job reading the whole of `partition`.
    pub fn whole(partition: Partition) -> Self {
        Self {
            partition,
            range: None,
        }
    }

    /// The job's bounds, as its tags name them.
    pub fn bounds(&self) -> (Option<Value>, Option<Value>) {
        match &self.range {
            Some(r) => (r.after.clone(), r.upto.clone()),
            None => (None, None),
        }
    }
}

/// What a resumed run has to read, and what its staging already holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeWork {
    /// The reads still to do.
    pub jobs: Vec<ReadJob>,
    /// Rows the staging holds already.
    pub rows_done: u64,
    /// Partitions read completely already.
    pub partitions_done: usize,
    /// Rows the staging holds already, per partition.
    pub rows_by_partition: BTreeMap<usize, u64>,
    /// The checksums of the rows the staging holds already, per partition, when every tag
    /// carried one.
    pub checksums_by_partition: Option<BTreeMap<usize, Checksum>>,
}

/// A malformed tag in a target's checkpoints.
#[derive(Debug, thiserror::Error)]
#[error("the target returned a checkpoint that is not a fastlane tag ({reason}): `{text}`")]
pub struct BadTag {
    text: String,
    reason: String,
}

/// The bounds of a job as a map key.
fn job_key(p: usize, a: &Option<Value>, u: &Option<Value>) -> String {
    serde_json::json!([p, a, u]).to_string()
}

/// Parses the tags a target kept.
pub fn parse_tags(texts: &[String]) -> Result<Vec<Tag>, BadTag> {
    texts
        .iter()
        .map(|t| {
            serde_json::from_str(t).map_err(|e| BadTag {
                text: t.chars().take(200).collect(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The reads a resumed run must do so that, with the rows the `tags` describe, every
/// partition of `partitions` is read exactly once.
pub fn resume_work(partitions: &[Partition], tags: Vec<Tag>) -> ResumeWork {
    let rows_done = tags.iter().map(|t| t.n).sum();
    let mut rows_by_partition = BTreeMap::new();
    let mut checksums_by_partition = BTreeMap::new();
    let mut all_summed = true;
    for tag in &tags {
        *rows_by_partition.entry(tag.p).or_default() += tag.n;
        match tag.c {
            Some(sum) => checksums_by_partition
                .entry(tag.p)
                .or_insert_with(Checksum::default)
                .add(Checksum { rows: tag.n, sum }),
            None => all_summed &= tag.n == 0,
        }
    }
    let mut jobs: HashMap<String, Vec<Tag>> = HashMap::new();
    for tag in tags {
        jobs.entry(job_key(tag.p, &tag.ja, &tag.ju))
            .or_default()
            .push(tag);
    }
    for list in jobs.values_mut() {
        list.sort_by_key(|t| t.s);
        list.dedup_by_key(|t| t.s);
    }
    let mut work = Vec::new();
    let mut partitions_done = 0;
    for partition in partitions {
        let before = work.len();
        holes(partition, None, None, &jobs, &mut work, 0);
        if work.len() == before {
            partitions_done += 1;
        }
    }
    ResumeWork {
        jobs: work,
        rows_done,
        partitions_done,
        rows_by_partition,
        checksums_by_partition: all_summed.then_some(checksums_by_partition),
    }
}

/// Adds the reads missing from the job `(after, upto]` of `partition`.
fn holes(
    partition: &Partition,
    after: Option<Value>,
    upto: Option<Value>,
    jobs: &HashMap<String, Vec<Tag>>,
    out: &mut Vec<ReadJob>,
    depth: usize,
) {
    let range = |after: Option<Value>, upto: Option<Value>| ReadJob {
        partition: partition.clone(),
        range: match (&after, &upto) {
            (None, None) => None,
            _ => Some(ReadRange { after, upto }),
        },
    };
    let Some(tags) = jobs.get(&job_key(partition.index, &after, &upto)) else {
        out.push(range(after, upto));
        return;
    };
    // Each resume adds at most one level; a deeper chain means tags that loop.
    if depth > 10_000 {
        out.push(range(after, upto));
        return;
    }
    let mut cursor = after;
    let mut next = 0u64;
    let mut ended = false;
    for tag in tags {
        if ended {
            break;
        }
        if tag.s != next || tag.a != cursor {
            holes(partition, cursor, tag.a.clone(), jobs, out, depth + 1);
        }
        cursor = tag.u.clone();
        next = tag.s + 1;
        ended = tag.end;
    }
    if !ended {
        holes(partition, cursor, upto, jobs, out, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn part(index: usize) -> Partition {
        Partition {
            index,
            spec: json!({ "part": index }),
        }
    }

    fn tag(p: usize, job: (Option<i64>, Option<i64>), s: u64, a: Option<i64>, u: i64) -> Tag {
        Tag {
            p,
            ja: job.0.map(Value::from),
            ju: job.1.map(Value::from),
            s,
            a: a.map(Value::from),
            u: Some(Value::from(u)),
            n: 10,
            c: None,
            end: false,
        }
    }

    fn end(p: usize, job: (Option<i64>, Option<i64>), s: u64, a: i64) -> Tag {
        Tag {
            p,
            ja: job.0.map(Value::from),
            ju: job.1.map(Value::from),
            s,
            a: Some(Value::from(a)),
            u: job.1.map(Value::from),
            n: 0,
            c: None,
            end: true,
        }
    }

    fn ranges(work: &ResumeWork) -> Vec<(usize, Option<Value>, Option<Value>)> {
        work.jobs
            .iter()
            .map(|j| {
                let (a, u) = j.bounds();
                (j.partition.index, a, u)
            })
            .collect()
    }

    #[test]
    fn without_tags_every_partition_is_read_whole() {
        let work = resume_work(&[part(0), part(1)], vec![]);
        assert_eq!(
            work.jobs,
            vec![ReadJob::whole(part(0)), ReadJob::whole(part(1))]
        );
        assert_eq!((work.rows_done, work.partitions_done), (0, 0));
    }

    #[test]
    fn a_finished_partition_is_skipped_and_an_unfinished_one_continues_after_its_last_tag() {
        let whole = (None, None);
        let tags = vec![
            tag(0, whole, 0, None, 10),
            tag(0, whole, 1, Some(10), 20),
            end(0, whole, 2, 20),
            tag(1, whole, 0, None, 110),
            tag(1, whole, 1, Some(110), 120),
        ];
        let work = resume_work(&[part(0), part(1)], tags);
        assert_eq!(ranges(&work), vec![(1, Some(json!(120)), None)]);
        assert_eq!((work.rows_done, work.partitions_done), (40, 1));
    }

    #[test]
    fn holes_left_by_writers_that_finished_out_of_order_are_read_as_ranges() {
        let whole = (None, None);
        // Batches 1 and 3 were lost (their writer had not made them durable); 0, 2, 4 were kept.
        let tags = vec![
            tag(0, whole, 0, None, 10),
            tag(0, whole, 2, Some(20), 30),
            tag(0, whole, 4, Some(40), 50),
        ];
        let work = resume_work(&[part(0)], tags);
        assert_eq!(
            ranges(&work),
            vec![
                (0, Some(json!(10)), Some(json!(20))),
                (0, Some(json!(30)), Some(json!(40))),
                (0, Some(json!(50)), None),
            ]
        );
        // A hole at the very start.
        let tags = vec![tag(0, whole, 1, Some(10), 20)];
        let work = resume_work(&[part(0)], tags);
        assert_eq!(
            ranges(&work),
            vec![(0, None, Some(json!(10))), (0, Some(json!(20)), None)]
        );
    }

    #[test]
    fn a_second_resume_follows_the_jobs_of_the_first() {
        let whole = (None, None);
        let hole = (Some(10), Some(20));
        let tail = (Some(30), None);
        let tags = vec![
            tag(0, whole, 0, None, 10),
            tag(0, whole, 2, Some(20), 30),
            // The first resume read the hole completely …
            tag(0, hole, 0, Some(10), 15),
            end(0, hole, 1, 15),
            // … and part of the tail.
            tag(0, tail, 0, Some(30), 35),
        ];
        let work = resume_work(&[part(0)], tags);
        assert_eq!(ranges(&work), vec![(0, Some(json!(35)), None)]);
        assert_eq!(work.rows_done, 40);

        let tags = vec![
            tag(0, whole, 0, None, 10),
            tag(0, whole, 2, Some(20), 30),
            end(0, whole, 3, 30),
            tag(0, hole, 0, Some(10), 15),
            end(0, hole, 1, 15),
        ];
        let work = resume_work(&[part(0)], tags);
        assert!(work.jobs.is_empty(), "{:?}", work.jobs);
        assert_eq!(work.partitions_done, 1);
    }

    #[test]
    fn tags_round_trip_and_garbage_is_refused() {
        let t = end(3, (Some(1), None), 7, 5);
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(parse_tags(&[text]).unwrap(), vec![t]);
        let err = parse_tags(&["not json".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("not a fastlane tag"), "{err}");
    }
}
