//! The plan of a run: where reading starts and which partitions are read, decided before any
//! data moves. A plan is plain data (partition specs are JSON), so the same plan can drive a
//! resumed run or one partition's task elsewhere.

use fastlane_plugin_api::{
    Capability, Partition, PluginError, ReadContext, ReplicationMode, Source, StagedRun, Target,
};
use serde_json::Value;

use super::checkpoint::{CheckpointOptions, ReadJob, Resume, StoredPlan};
use super::events::Stage;
use super::{EngineOptions, Named, StageError};

/// What a run reads: its mode, the offset it starts after, and the source's partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// Full table or incremental.
    pub mode: ReplicationMode,
    /// In an incremental run, the target's offset: only rows above it are read.
    pub start_offset: Option<Value>,
    /// The partitions.
    pub partitions: Vec<Partition>,
    /// The reads to do, in this order: every partition whole, or in a resumed run what its
    /// staging lacks.
    pub jobs: Vec<ReadJob>,
    /// How many reads run at once.
    pub source_workers: usize,
}

impl RunPlan {
    /// The plan to store with a checkpointed run's staging.
    pub(super) fn stored(&self, fingerprint: &str, staging_run_id: &str) -> StoredPlan {
        StoredPlan {
            version: super::checkpoint::PLAN_VERSION,
            fingerprint: fingerprint.to_owned(),
            staging_run_id: staging_run_id.to_owned(),
            mode: self.mode,
            start_offset: self.start_offset.clone(),
            partitions: self.partitions.clone(),
        }
    }

    /// The plan of a run resuming `stored`, reading `jobs`.
    pub(super) fn resumed(
        stored: &StoredPlan,
        jobs: Vec<ReadJob>,
        options: &EngineOptions,
    ) -> Self {
        Self {
            mode: stored.mode,
            start_offset: stored.start_offset.clone(),
            partitions: stored.partitions.clone(),
            source_workers: parallelism(options).min(jobs.len()).max(1),
            jobs,
        }
    }
}

/// How a run is checkpointed, decided before anything is read.
#[derive(Debug)]
pub(super) enum Checkpointing {
    /// Not checkpointed: not asked for, or the source or the target cannot (`why`).
    Off { why: Option<String> },
    /// A new checkpointed run; `why` says why an unfinished run was not resumed.
    Fresh {
        options: CheckpointOptions,
        why: Option<String>,
    },
    /// Continues an unfinished run.
    Resume(Box<Resuming>),
}

/// The unfinished run a run continues.
#[derive(Debug)]
pub(super) struct Resuming {
    pub(super) options: CheckpointOptions,
    pub(super) staged: StagedRun,
    pub(super) plan: StoredPlan,
}

/// Whether the run is checkpointed, and whether it resumes an unfinished run (and which).
pub(super) fn decide_checkpointing(
    options: &EngineOptions,
    source: &Named<Box<dyn Source>>,
    target: &Named<Box<dyn Target>>,
) -> Result<Checkpointing, StageError> {
    let Some(ck) = options.checkpoint.clone() else {
        return Ok(Checkpointing::Off { why: None });
    };
    let lacking = [
        (Stage::Source, &source.id, &source.capabilities),
        (Stage::Target, &target.id, &target.capabilities),
    ]
    .into_iter()
    .find(|(_, _, caps)| !caps.contains(&Capability::Resume));
    let lacking = lacking.map(|(stage, id, _)| {
        (
            stage,
            id,
            format!("{stage} `{id}` cannot resume a run, so this run is not checkpointed"),
        )
    });
    let lacking = lacking.or_else(|| {
        (!source.component.resumable()).then(|| {
            let why = format!(
                "source `{}` cannot resume as configured (a query is read in one pass), so \
                 this run is not checkpointed",
                source.id
            );
            (Stage::Source, &source.id, why)
        })
    });
    if let Some((stage, id, why)) = lacking {
        if let Resume::Run(run) = &ck.resume {
            return Err(StageError::new(
                stage,
                id,
                format!("resuming run `{run}`"),
                PluginError::unsupported(why),
            ));
        }
        return Ok(Checkpointing::Off { why: Some(why) });
    }
    if ck.resume == Resume::Never {
        return Ok(Checkpointing::Fresh {
            options: ck,
            why: None,
        });
    }
    let staged = target.component.resumable_runs().map_err(|e| {
        StageError::new(
            Stage::Target,
            &target.id,
            "looking for an unfinished run",
            e,
        )
    })?;
    let parsed: Vec<(StagedRun, Option<StoredPlan>)> = staged
        .into_iter()
        .map(|r| {
            let plan = serde_json::from_value::<StoredPlan>(r.plan.clone()).ok();
            (r, plan)
        })
        .collect();
    let refuse = |message: String| {
        StageError::new(
            Stage::Target,
            &target.id,
            "looking for the run to resume",
            PluginError::not_found(message),
        )
    };
    if let Resume::Run(wanted) = &ck.resume {
        let Some((staged, plan)) = parsed.into_iter().find(|(r, _)| &r.run_id == wanted) else {
            return Err(refuse(format!(
                "run `{wanted}` left no staging that this target can resume (it finished, was                  discarded, or wrote elsewhere)"
            )));
        };
        return match plan {
            Some(plan) if plan.fingerprint == ck.fingerprint => {
                Ok(Checkpointing::Resume(Box::new(Resuming {
                    options: ck,
                    staged,
                    plan,
                })))
            }
            Some(_) => Err(refuse(format!(
                "run `{wanted}` was started with other source or target settings or another                  replication mode; run it with its own configuration, or start afresh with                  --fresh"
            ))),
            None => Err(refuse(format!(
                "run `{wanted}` was checkpointed by another version of fastlane; start afresh                  with --fresh"
            ))),
        };
    }
    let newest = parsed.first().map(|(r, _)| r.run_id.clone());
    match parsed
        .into_iter()
        .find(|(_, plan)| plan.as_ref().is_some_and(|p| p.fingerprint == ck.fingerprint))
    {
        Some((staged, Some(plan))) => Ok(Checkpointing::Resume(Box::new(Resuming {
            options: ck,
            staged,
            plan,
        }))),
        _ => Ok(Checkpointing::Fresh {
            options: ck,
            why: newest.map(|run| {
                format!(
                    "not resuming unfinished run `{run}`: the source or target settings or the                      replication mode changed since; its staging is discarded"
                )
            }),
        }),
    }
}

/// Where reading starts: the target's offset in an incremental run, nothing in a full one.
pub(super) fn resolve_start_offset(
    mode: ReplicationMode,
    target: &dyn Target,
    target_id: &str,
) -> Result<Option<Value>, StageError> {
    let offset = match mode {
        ReplicationMode::Incremental => target
            .get_offset()
            .map_err(|e| StageError::new(Stage::Target, target_id, "getting its offset", e))?,
        ReplicationMode::FullTable => None,
    };
    if let Some(o) = &offset {
        tracing::info!(offset = %o, "incremental run starts after the target's offset");
    }
    Ok(offset)
}

/// Asks the source for its partitions, reading up to `source_concurrency` (default: the
/// number of CPUs) of them at once.
pub(super) fn plan_partitions(
    source: &Named<Box<dyn Source>>,
    options: &EngineOptions,
    start_offset: &Option<Value>,
) -> Result<RunPlan, StageError> {
    let parallelism = parallelism(options);
    let context = ReadContext {
        mode: options.mode,
        start_offset: start_offset.clone(),
        parallelism,
    };
    let partitions = source
        .component
        .partitions(&context)
        .map_err(|e| StageError::new(Stage::Source, &source.id, "planning partitions", e))?;
    Ok(RunPlan {
        mode: options.mode,
        start_offset: start_offset.clone(),
        source_workers: parallelism.min(partitions.len()).max(1),
        jobs: partitions.iter().cloned().map(ReadJob::whole).collect(),
        partitions,
    })
}

/// Reads at once: `source_concurrency`, or the number of CPUs.
fn parallelism(options: &EngineOptions) -> usize {
    options
        .source_concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use fastlane_plugin_api::{BatchStream, PluginError, Result};
    use serde_json::json;

    use super::*;

    /// A source with `n` partitions that records the context it was planned with.
    struct Parts(usize, Arc<Mutex<Option<ReadContext>>>);

    impl Source for Parts {
        fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
            *self.1.lock().unwrap() = Some(context.clone());
            Ok((0..self.0)
                .map(|index| Partition {
                    index,
                    spec: json!({"part": index}),
                })
                .collect())
        }
        fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
            Err(PluginError::internal("not read in these tests"))
        }
    }

    fn planned(partitions: usize, concurrency: Option<usize>) -> (RunPlan, ReadContext) {
        let seen = Arc::new(Mutex::new(None));
        let source: Named<Box<dyn Source>> =
            Named::new("parts", Box::new(Parts(partitions, seen.clone())));
        let options = EngineOptions {
            mode: ReplicationMode::Incremental,
            source_concurrency: concurrency,
            ..EngineOptions::default()
        };
        let plan = plan_partitions(&source, &options, &Some(json!(41))).unwrap();
        let context = seen.lock().unwrap().clone().expect("the source was asked");
        (plan, context)
    }

    #[test]
    fn the_plan_carries_the_offset_and_reads_no_more_partitions_at_once_than_exist() {
        let (plan, context) = planned(3, Some(8));
        assert_eq!(plan.partitions.len(), 3);
        assert_eq!(plan.source_workers, 3);
        assert_eq!(plan.start_offset, Some(json!(41)));
        assert_eq!(plan.mode, ReplicationMode::Incremental);
        assert_eq!(context.start_offset, Some(json!(41)));
        assert_eq!(context.parallelism, 8);

        let (plan, _) = planned(10, Some(2));
        assert_eq!(plan.source_workers, 2);
    }

    #[test]
    fn a_source_without_partitions_still_gets_one_worker_and_concurrency_is_at_least_one() {
        let (plan, _) = planned(0, Some(4));
        assert!(plan.partitions.is_empty());
        assert_eq!(plan.source_workers, 1);

        let (plan, context) = planned(2, Some(0));
        assert_eq!(context.parallelism, 1);
        assert_eq!(plan.source_workers, 1);
    }
}
