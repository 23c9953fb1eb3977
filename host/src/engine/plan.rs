//! The plan of a run: where reading starts and which partitions are read, decided before any
//! data moves. A plan is plain data (partition specs are JSON), so the same plan can drive a
//! resumed run or one partition's task elsewhere.

use fastlane_plugin_api::{Partition, ReadContext, ReplicationMode, Source, Target};
use serde_json::Value;

use super::events::Stage;
use super::{EngineOptions, Named, StageError};

/// What a run reads: its mode, the offset it starts after, and the source's partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// Full table or incremental.
    pub mode: ReplicationMode,
    /// In an incremental run, the target's offset: only rows above it are read.
    pub start_offset: Option<Value>,
    /// The partitions, read in this order.
    pub partitions: Vec<Partition>,
    /// How many partitions are read at once.
    pub source_workers: usize,
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
    let parallelism = options
        .source_concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
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
        partitions,
    })
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
