//! `Config.run` in three steps: the caller's arguments checked into a [`RunRequest`], the
//! pipeline built from it ([`RunRequest::build`]), then run on its own thread while Python
//! keeps its signals ([`execute`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_schema::SchemaRef;
use fastlane_host::config::PipelineConfig;
use fastlane_host::engine::{self, EngineOptions, Named, Pipeline, RunFailed, RunSummary};
use fastlane_host::plugins::Registry;
use fastlane_host::progress::{Progress, ProgressMode};
use fastlane_host::{log_sinks, monitoring, runner};
use fastlane_plugin_api::{ComponentKind, Source, Target, Transform};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrow_py;
use crate::components::{Failures, PySource, PyTarget, PyTransform};

/// A Python object standing in for one stage, with its options as `Config.run` received them.
pub type Given<'py> = Option<(Py<PyAny>, Bound<'py, PyDict>)>;

/// A Python source and how to read it.
pub struct SourceSpec {
    obj: Py<PyAny>,
    with_index: bool,
    partitions: usize,
    batch_size: usize,
    schema: Option<SchemaRef>,
}

/// A Python transform and the frames it takes.
pub struct TransformSpec {
    obj: Py<PyAny>,
    frame: String,
    add_op_fields: bool,
}

/// A Python target and the frames it takes.
pub struct TargetSpec {
    obj: Py<PyAny>,
    frame: String,
    batch_size: usize,
}

/// What `Config.run` was asked, checked: the progress display, and for each stage a Python
/// object or (`None`) the configured plugin.
pub struct RunRequest {
    /// How progress is shown.
    pub progress: ProgressMode,
    source: Option<SourceSpec>,
    transform: Option<TransformSpec>,
    target: Option<TargetSpec>,
}

impl RunRequest {
    /// Checks the arguments of `Config.run`; a `ValueError` or `TypeError` names the first bad
    /// one.
    pub fn parse(
        progress: &str,
        source: Given<'_>,
        transform: Given<'_>,
        target: Given<'_>,
    ) -> PyResult<Self> {
        let progress = match progress {
            "auto" => ProgressMode::Auto,
            "bar" => ProgressMode::Bar,
            "log" => ProgressMode::Log,
            "off" => ProgressMode::Off,
            other => {
                return Err(PyValueError::new_err(format!(
                    "progress must be auto, bar, log or off, not `{other}`"
                )));
            }
        };
        let source = match source {
            Some((obj, opts)) => Some(SourceSpec {
                obj,
                with_index: opt(&opts, "with_index")?.unwrap_or(false),
                partitions: opt(&opts, "partitions")?.unwrap_or(1),
                batch_size: opt(&opts, "batch_size")?.unwrap_or(1),
                schema: match opts.get_item("schema")? {
                    Some(s) if !s.is_none() => Some(arrow_py::import_schema(&s)?),
                    _ => None,
                },
            }),
            None => None,
        };
        let transform = match transform {
            Some((obj, opts)) => Some(TransformSpec {
                obj,
                frame: opt(&opts, "frame")?.unwrap_or_else(|| "pandas".into()),
                add_op_fields: opt(&opts, "add_op_fields")?.unwrap_or(true),
            }),
            None => None,
        };
        let target = match target {
            Some((obj, opts)) => Some(TargetSpec {
                obj,
                frame: opt(&opts, "frame")?.unwrap_or_else(|| "pandas".into()),
                batch_size: opt(&opts, "batch_size")?.unwrap_or(1),
            }),
            None => None,
        };
        Ok(Self {
            progress,
            source,
            transform,
            target,
        })
    }

    /// Creates the components: the Python ones, and the configured plugins for the other
    /// stages (which connect as they are created). A plugin that cannot be created raises
    /// `fastlane.errors.PipelineError`.
    pub fn build(
        &mut self,
        py: Python<'_>,
        config: &PipelineConfig,
        registry: &Registry,
        failures: &Arc<Failures>,
    ) -> PyResult<Pipeline> {
        let build_err = |e: runner::BuildError| -> PyErr {
            let cls = crate::errors_module(py).and_then(|m| m.getattr("PipelineError"));
            match cls.and_then(|cls| {
                cls.call1((
                    crate::error_text(&e),
                    e.kind.as_str(),
                    e.id.clone(),
                    "creating it",
                ))
            }) {
                Ok(v) => PyErr::from_value(v),
                Err(e) => e,
            }
        };
        let source_caps = match &self.source {
            Some(_) => Vec::new(),
            None => runner::capabilities(registry, ComponentKind::Source, &config.source),
        };
        let target_caps = match &self.target {
            Some(_) => Vec::new(),
            None => runner::capabilities(registry, ComponentKind::Target, &config.target),
        };
        let source: Box<dyn Source> = match self.source.take() {
            Some(s) => Box::new(PySource::new(
                s.obj,
                s.with_index,
                s.partitions,
                s.batch_size,
                s.schema,
                failures.clone(),
            )),
            None => runner::create_source(registry, &config.source).map_err(build_err)?,
        };
        let transform: Option<Box<dyn Transform>> = match self.transform.take() {
            Some(t) => Some(Box::new(PyTransform::new(
                t.obj,
                t.frame,
                t.add_op_fields,
                failures.clone(),
            ))),
            None => runner::create_transform(registry, &config.transform).map_err(build_err)?,
        };
        let target: Box<dyn Target> = match self.target.take() {
            Some(t) => Box::new(PyTarget::new(
                t.obj,
                t.frame,
                t.batch_size,
                failures.clone(),
            )),
            None => runner::create_target(registry, &config.target).map_err(build_err)?,
        };
        Ok(Pipeline {
            source: Named::new(config.source.id.clone(), source).with_capabilities(source_caps),
            transforms: transform
                .map(|t| vec![Named::new(config.transform.id.clone(), t)])
                .unwrap_or_default(),
            target: Named::new(config.target.id.clone(), target).with_capabilities(target_caps),
        })
    }
}

/// An option of a Python component, when given and not `None`.
fn opt<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract().map(Some).map_err(Into::into),
        _ => Ok(None),
    }
}

/// Runs the pipeline on its own thread with the log sinks and the monitor, waiting with the
/// GIL released. Ctrl-C stops the run cleanly, then raises `KeyboardInterrupt` once the run
/// has ended.
pub fn execute(
    py: Python<'_>,
    config: &PipelineConfig,
    registry: &Registry,
    pipeline: Pipeline,
    progress: ProgressMode,
) -> PyResult<Result<RunSummary, Box<RunFailed>>> {
    let _log_file = match &config.logs.log_file {
        Some(path) => Some(
            fastlane_host::logging::log_run_to_file(std::path::Path::new(path)).map_err(|e| {
                PyValueError::new_err(format!(
                    "cannot open the log file `{path}` (logs.log_file): {e}"
                ))
            })?,
        ),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let options = EngineOptions {
        stop: Some(stop.clone()),
        ..runner::engine_options(config)
    };
    let sinks = log_sinks::Sinks::start(
        config,
        &log_sinks::SinkFlags::default(),
        registry,
        &monitoring::pipeline_id(config),
        &options.run_id,
    )
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut monitor = monitoring::destination(&config.monitoring, &Default::default()).and_then(
        |(dest, interval)| {
            monitoring::RunMonitor::start(
                config,
                &options.run_id,
                dest,
                interval,
                stop.clone(),
                sinks.cloudwatch_place(),
            )
        },
    );
    let (tx, rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::Builder::new()
        .name("fastlane-run".into())
        .spawn(move || {
            let mut progress = Progress::new(progress, Duration::from_secs(5));
            let result = match monitor.as_mut() {
                Some(m) => engine::run(pipeline, &options, &mut monitoring::Tee(&mut progress, m)),
                None => engine::run(pipeline, &options, &mut progress),
            };
            progress.finish();
            let summary = match &result {
                Ok(s) => s,
                Err(f) => f.summary.as_ref(),
            };
            if let Some(m) = monitor {
                m.finish(summary);
            }
            sinks.finish(log_sinks::RunEnd::Ran(summary), Duration::from_secs(15));
            let _ = tx.send(result);
        })
        .map_err(|e| PyValueError::new_err(format!("cannot start the run: {e}")))?;
    let mut interrupted: Option<PyErr> = None;
    let result = loop {
        match py.detach(|| rx.recv_timeout(Duration::from_millis(100))) {
            Ok(r) => break r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if interrupted.is_none()
                    && let Err(e) = py.check_signals()
                {
                    stop.store(true, Ordering::SeqCst);
                    interrupted = Some(e);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                return Err(PyValueError::new_err("the run ended without a result"));
            }
        }
    };
    let _ = py.detach(|| handle.join());
    match interrupted {
        Some(e) => Err(e),
        None => Ok(result),
    }
}
