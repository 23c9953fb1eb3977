//! Python `Source`, `Transform` and `Target` subclasses seen by the engine as ordinary
//! components.
//!
//! Each call into Python takes the GIL for the length of the call only; the engine itself
//! runs without it. A Python exception becomes a component error whose message names the
//! exception and where it was raised; the exception itself is kept in [`Failures`] so that
//! the run can re-raise it as the cause of the `PipelineError`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use fastlane_plugin_api::{
    BatchStream, Partition, PluginError, ReadContext, Result, Source, Target, Transform,
    WriteContext, Writer,
};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use serde_json::Value;

use crate::arrow_py::{self, ArrowBatch};
use crate::convert::RowConverter;

/// The first Python exception raised by each stage of a run.
#[derive(Default)]
pub struct Failures {
    errors: Mutex<Vec<(&'static str, PyErr)>>,
}

impl Failures {
    fn record(&self, stage: &'static str, error: PyErr) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if !errors.iter().any(|(s, _)| *s == stage) {
            errors.push((stage, error));
        }
    }

    /// The exception recorded for `stage`, if any.
    pub fn take(&self, stage: &str) -> Option<PyErr> {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let i = errors.iter().position(|(s, _)| *s == stage)?;
        Some(errors.remove(i).1)
    }
}

/// Turns a Python exception into a component error, keeping the exception for the run.
fn py_error(
    py: Python<'_>,
    e: PyErr,
    stage: &'static str,
    call: &str,
    failures: &Failures,
) -> PluginError {
    let kind = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    let place = e
        .traceback(py)
        .and_then(|tb| tb.format().ok())
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| l.trim_start().starts_with("File \""))
                .map(|l| l.trim().to_owned())
        });
    let mut text = format!("{call} raised {kind}");
    if !message.is_empty() {
        text.push_str(&format!(": {message}"));
    }
    if let Some(place) = place {
        text.push_str(&format!(" ({place})"));
    }
    failures.record(stage, e);
    PluginError::new(fastlane_plugin_api::ErrorCode::DATA, text)
}

fn frames(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("fastlane._frames")
}

/// Converts a JSON value (an offset) to a Python object.
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// Converts a Python object to JSON (through `json.dumps(default=str)`).
pub fn py_to_json(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let text: String = frames(py)?.call_method1("to_json", (v,))?.extract()?;
    serde_json::from_str(&text).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

struct SourceShared {
    obj: Py<PyAny>,
    with_index: bool,
    partitions: usize,
    batch_size: usize,
    declared: Option<SchemaRef>,
    inferred: Mutex<Option<(SchemaRef, Vec<bool>)>>,
    open: AtomicUsize,
    finished: AtomicBool,
    failures: Arc<Failures>,
}

impl SourceShared {
    /// Calls `finish()` once, when the last partition ends (or is dropped).
    fn partition_done(&self, py: Python<'_>) -> Result<()> {
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1
            && !self.finished.swap(true, Ordering::SeqCst)
        {
            self.obj
                .call_method0(py, "finish")
                .map_err(|e| py_error(py, e, "source", "finish()", &self.failures))?;
        }
        Ok(())
    }
}

/// How long a source gathers the rows of consecutive `extract` calls at most: a slow source
/// (one that waits on an API, say) still hands its rows on this often, and a stop request,
/// checked between batches, is seen this soon.
pub const GATHER_AT_MOST: Duration = Duration::from_millis(250);

/// A Python `Source`: `extract()` (or `extract(i)`) called until it returns an empty list.
pub struct PySource(Arc<SourceShared>);

impl PySource {
    /// Wraps a source instance. `with_index`: `extract` takes the partition index;
    /// `partitions`: how many partitions (workers) call it; `batch_size`: the rows per batch
    /// handed on (the results of consecutive `extract` calls are gathered up to it, for at
    /// most [`GATHER_AT_MOST`]).
    pub fn new(
        obj: Py<PyAny>,
        with_index: bool,
        partitions: usize,
        batch_size: usize,
        declared: Option<SchemaRef>,
        failures: Arc<Failures>,
    ) -> Self {
        Self(Arc::new(SourceShared {
            obj,
            with_index,
            partitions: partitions.max(1),
            batch_size: batch_size.max(1),
            declared,
            inferred: Mutex::new(None),
            open: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            failures,
        }))
    }
}

impl Source for PySource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let s = &self.0;
        if let Some(offset) = &context.start_offset {
            Python::attach(|py| {
                let value = json_to_py(py, offset)?;
                s.obj.setattr(py, "offset", value)
            })
            .map_err(|e| {
                Python::attach(|py| py_error(py, e, "source", "setting `offset`", &s.failures))
            })?;
        }
        s.open.store(s.partitions, Ordering::SeqCst);
        Ok((0..s.partitions)
            .map(|index| Partition {
                index,
                spec: Value::Null,
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let converter = Python::attach(|py| RowConverter::new(py, self.0.declared.clone()))
            .map_err(|e| PluginError::internal(e.to_string()))?;
        Ok(Box::new(PyStream {
            shared: self.0.clone(),
            index: partition.index,
            converter,
            pending: VecDeque::new(),
            ended: false,
        }))
    }
}

struct PyStream {
    shared: Arc<SourceShared>,
    index: usize,
    converter: RowConverter,
    pending: VecDeque<RecordBatch>,
    ended: bool,
}

impl PyStream {
    /// Calls `extract` once; the batches it returned (none empty), or `None` at the end.
    fn call(&mut self, py: Python<'_>) -> Result<Option<Vec<RecordBatch>>> {
        let s = self.shared.clone();
        let what = if s.with_index {
            format!("extract({})", self.index)
        } else {
            "extract()".to_owned()
        };
        let result = if s.with_index {
            s.obj.call_method1(py, "extract", (self.index,))
        } else {
            s.obj.call_method0(py, "extract")
        }
        .map_err(|e| py_error(py, e, "source", &what, &s.failures))?;
        let result = result.bind(py);
        if let Ok(rows) = result.cast::<PyList>() {
            if rows.is_empty() {
                return Ok(None);
            }
            if self.converter.schema().is_none() {
                let shared = s.inferred.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some((schema, json)) = shared {
                    self.converter.adopt(py, schema, json);
                }
            }
            let fresh = self.converter.schema().is_none();
            let batch = self.converter.convert(py, rows).map_err(|e| {
                PluginError::data(format!("{what} returned rows that do not fit: {e}"))
            })?;
            if fresh {
                let mut inferred = s.inferred.lock().unwrap_or_else(|e| e.into_inner());
                if inferred.is_none() {
                    *inferred = Some((batch.schema(), self.converter.json_columns()));
                }
            }
            return Ok(Some(vec![batch]));
        }
        if result.is_none() {
            return Err(PluginError::data(format!(
                "{what} returned None; return a list of dicts (an empty list ends the source) or a DataFrame"
            )));
        }
        let table = frames(py)
            .and_then(|f| f.call_method1("as_arrow", (result,)))
            .map_err(|e| py_error(py, e, "source", &what, &s.failures))?;
        let (_, batches) = arrow_py::import_stream(&table).map_err(|e| {
            PluginError::data(format!("{what} returned a frame that cannot be read: {e}"))
        })?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(
            batches.into_iter().filter(|b| b.num_rows() > 0).collect(),
        ))
    }

    /// Takes pending batches of one schema until they hold `batch_size` rows (or run out)
    /// and joins them into one batch.
    fn take_gathered(&mut self) -> Result<Option<RecordBatch>> {
        let Some(first) = self.pending.pop_front() else {
            return Ok(None);
        };
        let schema = first.schema();
        let mut rows = first.num_rows();
        let mut parts = vec![first];
        while rows < self.shared.batch_size {
            match self.pending.front() {
                Some(next) if next.schema() == schema => {
                    rows += next.num_rows();
                    parts.extend(self.pending.pop_front());
                }
                _ => break,
            }
        }
        arrow_py::concat(&schema, &parts)
            .map(Some)
            .map_err(|e| PluginError::internal(format!("joining extracted batches: {e}")))
    }

    fn pending_rows(&self) -> usize {
        self.pending.iter().map(RecordBatch::num_rows).sum()
    }
}

impl BatchStream for PyStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut rows = self.pending_rows();
        let started = Instant::now();
        while !self.ended && rows < self.shared.batch_size {
            if rows > 0 && started.elapsed() >= GATHER_AT_MOST {
                break;
            }
            // The GIL is taken per call, so other Python components run between calls.
            let out = Python::attach(|py| {
                let out = self.call(py)?;
                if out.is_none() {
                    self.ended = true;
                    self.shared.partition_done(py)?;
                }
                Ok::<_, PluginError>(out)
            })?;
            for batch in out.into_iter().flatten() {
                rows += batch.num_rows();
                self.pending.push_back(batch);
            }
        }
        // Joined without the GIL.
        self.take_gathered()
    }
}

impl Drop for PyStream {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            Python::attach(|py| {
                if let Err(e) = self.shared.partition_done(py) {
                    tracing::warn!("source finish() failed after the run stopped: {e}");
                }
            });
        }
    }
}

/// A Python `Transform`: `transform(df)` on each batch, as a pandas, polars or pyarrow frame.
pub struct PyTransform {
    obj: Py<PyAny>,
    frame: String,
    add_op_fields: bool,
    failures: Arc<Failures>,
}

impl PyTransform {
    /// Wraps a transform instance.
    pub fn new(
        obj: Py<PyAny>,
        frame: String,
        add_op_fields: bool,
        failures: Arc<Failures>,
    ) -> Self {
        Self {
            obj,
            frame,
            add_op_fields,
            failures,
        }
    }
}

/// Calls `method(df)` on `obj` with `batch` as a frame of kind `frame`; returns the result.
fn call_with_frame<'py>(
    py: Python<'py>,
    obj: &Py<PyAny>,
    method: &str,
    frame: &str,
    batch: RecordBatch,
    stage: &'static str,
    failures: &Failures,
) -> Result<Bound<'py, PyAny>> {
    let call = format!("{method}(df)");
    let handle =
        Bound::new(py, ArrowBatch::new(batch)).map_err(|e| PluginError::internal(e.to_string()))?;
    let df = frames(py)
        .and_then(|f| f.call_method1("to_frame", (handle, frame)))
        .map_err(|e| {
            py_error(
                py,
                e,
                stage,
                &format!("converting a batch for {call}"),
                failures,
            )
        })?;
    obj.bind(py)
        .call_method1(
            method,
            PyTuple::new(py, [df]).map_err(|e| PluginError::internal(e.to_string()))?,
        )
        .map_err(|e| py_error(py, e, stage, &call, failures))
}

impl Transform for PyTransform {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = if self.add_op_fields {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            fastlane_host::transforms::add_op_fields(batch, now)?
        } else {
            batch
        };
        let schema = batch.schema();
        Python::attach(|py| {
            let out = call_with_frame(
                py,
                &self.obj,
                "transform",
                &self.frame,
                batch,
                "transform",
                &self.failures,
            )?;
            if out.is_none() {
                return Err(PluginError::data(
                    "transform(df) returned None; return the transformed DataFrame",
                ));
            }
            let like = Bound::new(py, ArrowBatch::new(RecordBatch::new_empty(schema)))
                .map_err(|e| PluginError::internal(e.to_string()))?;
            let table = frames(py)
                .and_then(|f| f.call_method1("as_arrow", (out, like)))
                .map_err(|e| {
                    py_error(
                        py,
                        e,
                        "transform",
                        "converting the result of transform(df)",
                        &self.failures,
                    )
                })?;
            let (schema, batches) = arrow_py::import_stream(&table).map_err(|e| {
                PluginError::data(format!(
                    "transform(df) returned a frame that cannot be read: {e}"
                ))
            })?;
            arrow_py::concat(&schema, &batches).map_err(|e| PluginError::data(e.to_string()))
        })
    }
}

struct TargetShared {
    obj: Py<PyAny>,
    frame: String,
    batch_size: usize,
    failures: Arc<Failures>,
}

/// A Python `Target`: `load(df)` from the target workers, `get_offset()`, and the optional
/// `commit()`/`abort()` hooks, then `finish()`.
pub struct PyTarget(Arc<TargetShared>);

impl PyTarget {
    /// Wraps a target instance; loads carry at least `batch_size` rows (except the last).
    pub fn new(obj: Py<PyAny>, frame: String, batch_size: usize, failures: Arc<Failures>) -> Self {
        Self(Arc::new(TargetShared {
            obj,
            frame,
            batch_size: batch_size.max(1),
            failures,
        }))
    }

    fn call(&self, method: &'static str) -> Result<()> {
        let s = &self.0;
        Python::attach(|py| {
            s.obj
                .call_method0(py, method)
                .map(|_| ())
                .map_err(|e| py_error(py, e, "target", &format!("{method}()"), &s.failures))
        })
    }
}

impl Target for PyTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        let s = &self.0;
        Python::attach(|py| {
            let v = s
                .obj
                .call_method0(py, "get_offset")
                .map_err(|e| py_error(py, e, "target", "get_offset()", &s.failures))?;
            let v = v.bind(py);
            if v.is_none() {
                return Ok(None);
            }
            py_to_json(py, v)
                .map(Some)
                .map_err(|e| py_error(py, e, "target", "get_offset()", &s.failures))
        })
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let s = &self.0;
        Python::attach(|py| {
            s.obj
                .setattr(py, "run_id", context.run_id.clone())
                .map_err(|e| py_error(py, e, "target", "setting `run_id`", &s.failures))
        })
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let _ = index;
        Ok(Box::new(PyWriter {
            shared: self.0.clone(),
            pending: Vec::new(),
            rows: 0,
        }))
    }

    fn commit(&mut self) -> Result<()> {
        self.call("commit")?;
        self.call("finish")
    }

    fn abort(&mut self) -> Result<()> {
        let abort = self.call("abort");
        let finish = self.call("finish");
        abort.and(finish)
    }
}

struct PyWriter {
    shared: Arc<TargetShared>,
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl PyWriter {
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let schema = self.pending[0].schema();
        let batch = arrow_py::concat(&schema, &self.pending).map_err(|e| {
            PluginError::data(format!(
                "batches of different schemas reached the target: {e}"
            ))
        })?;
        self.pending.clear();
        self.rows = 0;
        let s = &self.shared;
        Python::attach(|py| {
            call_with_frame(py, &s.obj, "load", &s.frame, batch, "target", &s.failures).map(|_| ())
        })
    }
}

impl Writer for PyWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        if self.rows >= self.shared.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
    }
}
