//! Arrow data across the Python boundary through the Arrow PyCapsule interface
//! (`__arrow_c_schema__`, `__arrow_c_array__`, `__arrow_c_stream__`): zero-copy both ways, and
//! understood by pyarrow, polars, pandas and any other library that speaks it.

use std::ffi::CStr;
use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{Array, RecordBatch, RecordBatchIterator, RecordBatchReader, StructArray};
use arrow_schema::{ArrowError, Schema, SchemaRef};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const SCHEMA_NAME: &CStr = c"arrow_schema";
const ARRAY_NAME: &CStr = c"arrow_array";
const STREAM_NAME: &CStr = c"arrow_array_stream";

fn arrow_err(e: ArrowError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One record batch lent to Python. Any Arrow library can take it without copying:
/// `pyarrow.record_batch(b)`, `polars.DataFrame(b)`.
#[pyclass(module = "fastlane._native", name = "ArrowBatch", frozen)]
pub struct ArrowBatch {
    batch: RecordBatch,
}

impl ArrowBatch {
    /// Wraps a batch.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch }
    }
}

#[pymethods]
impl ArrowBatch {
    /// The number of rows.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The column names.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "ArrowBatch({} rows, columns: {})",
            self.batch.num_rows(),
            self.column_names().join(", ")
        )
    }

    /// The schema as an `arrow_schema` capsule.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = FFI_ArrowSchema::try_from(self.batch.schema().as_ref()).map_err(arrow_err)?;
        PyCapsule::new(py, schema, Some(SCHEMA_NAME.to_owned()))
    }

    /// The batch as a struct array: `(arrow_schema, arrow_array)` capsules.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema = FFI_ArrowSchema::try_from(self.batch.schema().as_ref()).map_err(arrow_err)?;
        let data = StructArray::from(self.batch.clone()).into_data();
        let array = FFI_ArrowArray::new(&data);
        Ok((
            PyCapsule::new(py, schema, Some(SCHEMA_NAME.to_owned()))?,
            PyCapsule::new(py, array, Some(ARRAY_NAME.to_owned()))?,
        ))
    }

    /// The batch as a one-batch stream: an `arrow_array_stream` capsule.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader =
            RecordBatchIterator::new(vec![Ok(self.batch.clone())], self.batch.schema().clone());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new(py, stream, Some(STREAM_NAME.to_owned()))
    }
}

fn capsule<'py>(obj: &Bound<'py, PyAny>, method: &str) -> PyResult<Bound<'py, PyCapsule>> {
    let out = obj.call_method0(method)?;
    out.cast_into::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err(format!("{method}() did not return a PyCapsule")))
}

/// Reads every batch of an object implementing `__arrow_c_stream__`.
pub fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let cap = capsule(obj, "__arrow_c_stream__")?;
    let ptr = cap.pointer_checked(Some(STREAM_NAME))?;
    // SAFETY: the capsule holds an `ArrowArrayStream` (checked by name); `from_raw` moves it
    // out and leaves a released stream behind, which the capsule's destructor ignores.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast()) }.map_err(arrow_err)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)?;
    Ok((schema, batches))
}

/// Reads the schema of an object implementing `__arrow_c_schema__` (a `pyarrow.Schema`…).
pub fn import_schema(obj: &Bound<'_, PyAny>) -> PyResult<SchemaRef> {
    let cap = capsule(obj, "__arrow_c_schema__")?;
    let ptr = cap.pointer_checked(Some(SCHEMA_NAME))?;
    // SAFETY: the capsule holds an `ArrowSchema` (checked by name), borrowed for this call.
    let ffi = unsafe { &*(ptr.as_ptr() as *const FFI_ArrowSchema) };
    Schema::try_from(ffi).map(Arc::new).map_err(arrow_err)
}

/// Concatenates batches into one (a frame coming back from Python may be chunked).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    match batches {
        [one] => Ok(one.clone()),
        _ => arrow_select::concat::concat_batches(schema, batches),
    }
}
