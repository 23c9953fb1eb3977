//! `fastlane._native`: the fastlane engine inside Python.
//!
//! The pure-Python package (`python/fastlane`) holds the public API; this module gives it
//! the command line (`cli_main`), configuration loading against the plugins' schemas
//! (`load_config`), and `Config.run`, which runs a pipeline on the Rust engine with the GIL
//! released, mixing plugin connectors with Python `Source`/`Transform`/`Target` objects.

mod arrow_py;
mod components;
mod convert;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use fastlane_host::config::{self, PipelineConfig, Problem, Selection};
use fastlane_host::engine::{RunFailed, RunSummary};
use fastlane_host::plugins::{ComponentInfo, Registry, SearchDir, set_package_dir};
use fastlane_host::{logging, transforms};
use fastlane_plugin_api::ComponentKind;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

use arrow_py::ArrowBatch;
use components::{Failures, json_to_py};
use convert::RowConverter;

/// Runs the `fastlane` command line with `argv` (program name first); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(move || fastlane_host::cli::exit_code(argv))
}

/// Sets the plugin folder shipped inside the Python package (searched after
/// `FASTLANE_PLUGIN_PATH`).
#[pyfunction]
fn set_package_plugin_dir(path: PathBuf) {
    set_package_dir(path);
}

fn registry(dirs: &[PathBuf]) -> Registry {
    static CACHE: OnceLock<Mutex<HashMap<Vec<PathBuf>, Registry>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(dirs.to_vec())
        .or_insert_with(|| {
            let search: Vec<SearchDir> = fastlane_host::plugins::search_dirs(dirs, true);
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
            let reg = Registry::load(search, transforms::builtin_components(), threads);
            for w in &reg.warnings {
                tracing::warn!("{w}");
            }
            for f in &reg.failures {
                tracing::warn!("{f}");
            }
            reg
        })
        .clone()
}

fn kind_of(s: &str) -> PyResult<ComponentKind> {
    match s {
        "source" => Ok(ComponentKind::Source),
        "transform" => Ok(ComponentKind::Transform),
        "target" => Ok(ComponentKind::Target),
        other => Err(PyValueError::new_err(format!(
            "unknown component kind `{other}`"
        ))),
    }
}

pub(crate) fn errors_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("fastlane.errors")
}

/// A validated configuration, ready to run.
#[pyclass(module = "fastlane._native", name = "Config", unsendable)]
pub struct Config {
    config: PipelineConfig,
    registry: Registry,
}

/// Reads, interpolates and validates a configuration.
///
/// `python` lists the components given as Python classes: `(kind, id, description, schema)`
/// where `schema` is a JSON Schema (as JSON text) or `None` when `validator` checks the
/// section instead. `validator(kind, id, section, path)` returns a list of `(path, message)`.
/// Raises `fastlane.errors.ConfigError` listing every problem.
/// Reads an AWS Secrets Manager secret through the `aws` plugin and returns its JSON object as
/// text; a `ValueError` says why it could not (never quoting the value).
#[pyfunction]
#[pyo3(signature = (name, region=None, plugin_dirs=Vec::new()))]
fn get_secret(
    py: Python<'_>,
    name: &str,
    region: Option<String>,
    plugin_dirs: Vec<PathBuf>,
) -> PyResult<String> {
    logging::init(0);
    py.detach(|| {
        let registry = registry(&plugin_dirs);
        fastlane_host::secrets::fetch(name, region.as_deref(), &registry)
            .map(|values| serde_json::Value::Object(values).to_string())
    })
    .map_err(PyValueError::new_err)
}

#[pyfunction]
#[pyo3(signature = (text, file, source=None, transform=None, target=None, python=Vec::new(), validator=None, plugin_dirs=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn load_config(
    py: Python<'_>,
    text: &str,
    file: &str,
    source: Option<String>,
    transform: Option<String>,
    target: Option<String>,
    python: Vec<(String, String, String, Option<String>)>,
    validator: Option<Py<PyAny>>,
    plugin_dirs: Vec<PathBuf>,
) -> PyResult<Config> {
    logging::init(0);
    let mut registry = py.detach(|| registry(&plugin_dirs));
    let mut external = Vec::new();
    for (kind, id, description, schema) in python {
        let kind = kind_of(&kind)?;
        let validated_here = schema.is_none();
        let schema: Value = match schema {
            Some(s) => serde_json::from_str(&s).map_err(|e| {
                PyValueError::new_err(format!("the schema of `{id}` is not JSON: {e}"))
            })?,
            None => serde_json::json!({"type": "object"}),
        };
        if validated_here {
            external.push((kind, id.clone()));
        }
        registry.insert_external(ComponentInfo {
            kind,
            id,
            description,
            schema,
            capabilities: Vec::new(),
        });
    }
    let failure: Mutex<Option<PyErr>> = Mutex::new(None);
    let check =
        |kind: ComponentKind, id: &str, section: &Value, base: &str| -> Option<Vec<Problem>> {
            if !external.iter().any(|(k, i)| *k == kind && i == id) {
                return None;
            }
            let validator = validator.as_ref()?;
            let path = config::pointer_to_path(base);
            let result = json_to_py(py, section).and_then(|section| {
                validator
                    .call1(py, (kind.as_str(), id, section, path.clone()))
                    .and_then(|r| r.extract::<Vec<(String, String)>>(py))
            });
            match result {
                Ok(found) => Some(
                    found
                        .into_iter()
                        .map(|(path, message)| Problem { path, message })
                        .collect(),
                ),
                Err(e) => {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    Some(Vec::new())
                }
            }
        };
    let selection = Selection {
        source,
        transform,
        target,
    };
    let loaded = config::load_str_with(text, file, &selection, &registry, &check);
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    match loaded {
        Ok(config) => Ok(Config { config, registry }),
        Err(e) => {
            let problems: Vec<(String, String)> = e
                .problems
                .iter()
                .map(|p| (p.path.clone(), p.message.clone()))
                .collect();
            let cls = errors_module(py)?.getattr("ConfigError")?;
            Err(PyErr::from_value(cls.call1((
                e.to_string(),
                problems,
                e.file.clone(),
            ))?))
        }
    }
}

fn section_dict<'py>(py: Python<'py>, s: &config::Section) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &s.config)
}

#[pymethods]
impl Config {
    /// `FULL_TABLE` or `INCREMENTAL`.
    #[getter]
    fn replication_mode(&self) -> &'static str {
        self.config.replication_mode.as_str()
    }

    /// The pipeline's name, when the configuration gives one.
    #[getter]
    fn name(&self) -> Option<String> {
        self.config.name.clone()
    }

    /// `(id, section)` of the source, transform and target, after `${VAR}` interpolation.
    fn sections<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, s) in [
            ("source", &self.config.source),
            ("transform", &self.config.transform),
            ("target", &self.config.target),
        ] {
            d.set_item(k, (s.id.clone(), section_dict(py, s)?))?;
        }
        Ok(d)
    }

    /// Runs the pipeline. Components given as Python objects replace the plugin of the same
    /// stage: `source`/`target` are `(object, options)` and `transform` is `(object, options)`
    /// or `None` for the configured transform. Returns the run summary as a dict, or raises
    /// `fastlane.errors.PipelineError`; Ctrl-C stops the run cleanly and raises
    /// `KeyboardInterrupt`.
    #[pyo3(signature = (source=None, transform=None, target=None, progress="auto"))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        source: run::Given<'py>,
        transform: run::Given<'py>,
        target: run::Given<'py>,
        progress: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut request = run::RunRequest::parse(progress, source, transform, target)?;
        let failures = Arc::new(Failures::default());
        let pipeline = request.build(py, &self.config, &self.registry, &failures)?;
        match run::execute(py, &self.config, &self.registry, pipeline, request.progress)? {
            Ok(summary) => summary_to_py(py, &summary),
            Err(failed) => Err(pipeline_error(py, &failed, &failures)),
        }
    }
}

pub(crate) fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    for cause in fastlane_host::error::causes(e) {
        text.push_str(&format!(": {cause}"));
    }
    text
}

fn summary_to_py<'py>(py: Python<'py>, s: &RunSummary) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(s).map_err(|e| PyValueError::new_err(e.to_string()))?;
    json_to_py(py, &v)
}

fn pipeline_error(py: Python<'_>, failed: &RunFailed, failures: &Failures) -> PyErr {
    let stage = failed.error.stage.to_string();
    let build = || -> PyResult<PyErr> {
        let cls = errors_module(py)?.getattr("PipelineError")?;
        let mut message = error_text(failed);
        if let Some(abort) = &failed.abort_error {
            message.push_str(&format!(" (the target's abort failed too: {abort})"));
        }
        let summary = summary_to_py(py, &failed.summary)?;
        let err = cls.call1((
            message,
            stage.clone(),
            failed.error.component.clone(),
            failed.error.during.clone(),
            failed.run_id.clone(),
            summary,
        ))?;
        let err = PyErr::from_value(err);
        if let Some(cause) = failures.take(&stage) {
            err.set_cause(py, Some(cause));
        }
        Ok(err)
    };
    build().unwrap_or_else(|e| e)
}

/// Converts a list of dicts to an Arrow batch the way a Python source's rows are converted
/// (`schema`: anything with `__arrow_c_schema__`, or `None` to infer it).
#[pyfunction]
#[pyo3(signature = (rows, schema=None))]
fn rows_to_batch(
    py: Python<'_>,
    rows: Bound<'_, PyList>,
    schema: Option<Bound<'_, PyAny>>,
) -> PyResult<ArrowBatch> {
    let schema = schema.map(|s| arrow_py::import_schema(&s)).transpose()?;
    let mut conv = RowConverter::new(py, schema)?;
    if rows.is_empty() {
        return Err(PyValueError::new_err("no rows"));
    }
    conv.convert(py, &rows)
        .map(ArrowBatch::new)
        .map_err(PyValueError::new_err)
}

/// The compiled part of the `fastlane` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(set_package_plugin_dir, m)?)?;
    m.add_function(wrap_pyfunction!(load_config, m)?)?;
    m.add_function(wrap_pyfunction!(rows_to_batch, m)?)?;
    m.add_function(wrap_pyfunction!(get_secret, m)?)?;
    m.add_class::<Config>()?;
    m.add_class::<ArrowBatch>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
