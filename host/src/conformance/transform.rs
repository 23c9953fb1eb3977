//! The transform checks.

use std::sync::Arc;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{ComponentKind, ReplicationMode, Target, Transform};

use super::data::{self, ALL_COLUMNS};
use super::engine_parts::{
    Collect, Collected, DataSource, checksum, engine_options, failure, with_timeout,
};
use super::{CheckOptions, Checks, TransformSpec, check_config, find, total_rows};
use crate::engine::{self, Named, NoObserver, Pipeline, Verify};
use crate::plugins::LoadedPlugin;

/// What applying the transform directly gave.
struct Direct {
    outputs: Result<Vec<RecordBatch>, String>,
    empty: Result<RecordBatch, String>,
    again: Result<Vec<RecordBatch>, String>,
}

/// Runs the transform checks on transform `id` of `plugin` with the configuration `spec`
/// gives, on the suite's standard rows.
pub fn check_transform(
    plugin: &Arc<LoadedPlugin>,
    id: &str,
    spec: &TransformSpec,
    options: &CheckOptions,
) -> Vec<super::Check> {
    let mut checks = Checks::new(format!("transform `{id}`"));
    let Some(info) = find(plugin, ComponentKind::Transform, id) else {
        checks.fail(
            "exists",
            format!("plugin `{}` has no transform `{id}`", plugin.name),
        );
        return checks.into_vec();
    };
    if !check_config(&mut checks, info, &spec.config) {
        return checks.into_vec();
    }
    let input = data::standard_batches(1, 1_500, 500, ALL_COLUMNS);
    let direct = {
        let (plugin, id, config) = (plugin.clone(), id.to_owned(), spec.config.clone());
        let input = input.clone();
        with_timeout(options.stall_timeout, "the transform", move || {
            let transform = plugin
                .create_transform(&id, &config)
                .map_err(|e| format!("creating the transform failed: {e}"))?;
            let apply = |batches: &[RecordBatch]| -> Result<Vec<RecordBatch>, String> {
                batches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        transform
                            .transform(b.clone())
                            .map_err(|e| format!("transforming batch {i} failed: {e}"))
                    })
                    .collect()
            };
            let outputs = apply(&input);
            let empty = transform
                .transform(input[0].slice(0, 0))
                .map_err(|e| format!("transforming a batch without rows failed: {e}"));
            let again = apply(&input);
            Ok::<_, String>(Direct {
                outputs,
                empty,
                again,
            })
        })
        .and_then(|r| r)
    };
    let direct = match direct {
        Ok(d) => d,
        Err(e) => {
            checks.fail("transforms batches", e);
            return checks.into_vec();
        }
    };
    let outputs = match direct.outputs {
        Ok(o) => o,
        Err(e) => {
            checks.fail("transforms batches", e);
            return checks.into_vec();
        }
    };
    checks.pass(
        "transforms batches",
        format!(
            "{} rows in {} batches became {} rows",
            total_rows(&input),
            input.len(),
            total_rows(&outputs)
        ),
    );
    let shapes: Vec<String> = outputs.iter().map(data::schema_text).collect();
    match shapes.iter().position(|s| *s != shapes[0]) {
        None => checks.pass("one output schema", shapes[0].clone()),
        Some(i) => checks.fail(
            "one output schema",
            format!(
                "batch {i} became {}, batch 0 became {}: batches of one schema must give one schema",
                shapes[i], shapes[0]
            ),
        ),
    }
    match direct.empty {
        Ok(b) => checks.pass(
            "a batch without rows",
            format!("gave {} rows", b.num_rows()),
        ),
        Err(e) => checks.fail("a batch without rows", e),
    }
    let sums = checksum(&outputs);
    let again = direct.again.map(|b| checksum(&b));
    match (&sums, again) {
        (Ok(a), Ok(Ok(b))) if *a == b => checks.pass("the same output for the same input", ""),
        (Ok(a), Ok(Ok(b))) => checks.fail(
            "the same output for the same input",
            format!(
                "the same batches gave {} rows (checksum {:016x}) then {} rows (checksum {:016x})",
                a.rows, a.sum, b.rows, b.sum
            ),
        ),
        (_, Err(e)) => checks.fail("the same output for the same input", e),
        (Err(e), _) => checks.skip(
            "the same output for the same input",
            format!("no checksum: {e}"),
        ),
        (_, Ok(Err(e))) => checks.skip(
            "the same output for the same input",
            format!("no checksum: {e}"),
        ),
    }
    let engine_result = plugin
        .create_transform(id, &spec.config)
        .map_err(|e| format!("creating the transform failed: {e}"))
        .and_then(|transform| {
            let collected = Collected::default();
            let pipeline = Pipeline {
                source: Named::new("suite", Box::new(DataSource::new(input.clone(), 2)) as _),
                transforms: vec![Named::new(id, Box::new(transform) as Box<dyn Transform>)],
                target: Named::new(
                    "collect",
                    Box::new(Collect {
                        collected: collected.clone(),
                        offset: None,
                        stop: None,
                    }) as Box<dyn Target>,
                ),
            };
            let options = engine::EngineOptions {
                transform_concurrency: 2,
                ..engine_options(options, ReplicationMode::FullTable, Verify::Off)
            };
            engine::run(pipeline, &options, &mut NoObserver)
                .map(|_| collected.take())
                .map_err(|e| failure(&e))
        });
    match (engine_result, sums) {
        (Ok(got), Ok(want)) => match checksum(&got) {
            Ok(sum) if sum == want => checks.pass(
                "the same rows through the engine, two workers",
                format!("{} rows", sum.rows),
            ),
            Ok(sum) => checks.fail(
                "the same rows through the engine, two workers",
                format!(
                    "{} rows (checksum {:016x}) where the batches transformed one by one gave {} \
                     (checksum {:016x})",
                    sum.rows, sum.sum, want.rows, want.sum
                ),
            ),
            Err(e) => checks.skip(
                "the same rows through the engine, two workers",
                format!("no checksum: {e}"),
            ),
        },
        (Ok(got), Err(e)) => checks.warn(
            "the same rows through the engine, two workers",
            format!("{} rows; not compared (no checksum: {e})", total_rows(&got)),
        ),
        (Err(e), _) => checks.fail("the same rows through the engine, two workers", e),
    }
    checks.into_vec()
}
