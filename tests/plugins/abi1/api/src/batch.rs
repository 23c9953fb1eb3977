//! Record batches across the boundary through the Arrow C Data Interface.

use abi_stable::StableAbi;
use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, RecordBatch, StructArray};

use crate::error::{PluginError, Result};

/// One record batch in Arrow C Data Interface form: a struct array and its schema.
///
/// Zero-copy: exporting hands the buffers over with their `release` callback, so memory is
/// always freed by the side that allocated it. Dropping an `FfiBatch` that was never imported
/// releases it.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiBatch {
    #[sabi(unsafe_opaque_field)]
    array: FFI_ArrowArray,
    #[sabi(unsafe_opaque_field)]
    schema: FFI_ArrowSchema,
}

impl FfiBatch {
    /// Exports a record batch.
    pub fn export(batch: RecordBatch) -> Result<Self> {
        let data = StructArray::from(batch).into_data();
        let (array, schema) = to_ffi(&data)
            .map_err(|e| PluginError::internal(format!("cannot export batch: {e}")))?;
        Ok(Self { array, schema })
    }

    /// Imports the batch, taking ownership of its buffers.
    pub fn import(self) -> Result<RecordBatch> {
        // SAFETY: `array` and `schema` were produced by `to_ffi` (here or in another image
        // following the C Data Interface); `from_ffi` takes ownership of `array` and releases it
        // through its own callback.
        let data = unsafe { from_ffi(self.array, &self.schema) }
            .map_err(|e| PluginError::data(format!("cannot import batch: {e}")))?;
        let array = StructArray::from(data);
        if array.null_count() > 0 {
            return Err(PluginError::data("imported batch has top-level nulls"));
        }
        Ok(RecordBatch::from(array))
    }
}
