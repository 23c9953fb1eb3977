//! Record batches to polars DataFrames and back, column by column through the Arrow C Data
//! Interface (arrow-rs and polars-arrow share its layout, so no data is copied except where
//! polars insists on its own string layout).

use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, ArrayRef, RecordBatch, make_array};
use arrow_schema::{DataType as ArrowType, Field, Schema};
use fastlane_plugin_api::{PluginError, Result};
use polars::prelude::{Column, CompatLevel, DataFrame, IntoColumn, PlSmallStr, Series};

fn polars_err(e: polars::prelude::PolarsError) -> PluginError {
    PluginError::data(e)
}

/// Converts a record batch into a DataFrame.
pub fn to_frame(batch: &RecordBatch) -> Result<DataFrame> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let (ffi_array, ffi_schema) = to_ffi(&array.to_data())?;
        // SAFETY: both structs follow the Arrow C Data Interface and are `repr(C)` with the
        // same layout; ownership moves into polars-arrow, which releases them.
        let (pa_array, pa_schema): (
            polars_arrow::ffi::ArrowArray,
            polars_arrow::ffi::ArrowSchema,
        ) = unsafe {
            (
                std::mem::transmute::<FFI_ArrowArray, polars_arrow::ffi::ArrowArray>(ffi_array),
                std::mem::transmute::<FFI_ArrowSchema, polars_arrow::ffi::ArrowSchema>(ffi_schema),
            )
        };
        let pa_field =
            unsafe { polars_arrow::ffi::import_field_from_c(&pa_schema) }.map_err(polars_err)?;
        let pa_array = unsafe { polars_arrow::ffi::import_array_from_c(pa_array, pa_field.dtype) }
            .map_err(polars_err)?;
        let series = Series::from_arrow(PlSmallStr::from_str(field.name()), pa_array)
            .map_err(|e| PluginError::data(format!("column `{}`: {e}", field.name())))?;
        columns.push(series.into_column());
    }
    DataFrame::new(batch.num_rows(), columns).map_err(polars_err)
}

/// Converts a DataFrame back into a record batch, with large strings and binaries narrowed to
/// the regular types so that downstream schemas stay stable.
pub fn from_frame(frame: DataFrame) -> Result<RecordBatch> {
    let height = frame.height();
    let mut fields = Vec::with_capacity(frame.width());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(frame.width());
    for column in frame.into_columns() {
        let name = column.name().to_string();
        let array = column_to_arrow(column)?;
        let array = narrow(array)?;
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(height));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

fn column_to_arrow(column: Column) -> Result<ArrayRef> {
    let name = column.name().clone();
    let array = column.rechunk_to_arrow(CompatLevel::oldest());
    let field = polars_arrow::datatypes::Field::new(name, array.dtype().clone(), true);
    let pa_schema = polars_arrow::ffi::export_field_to_c(&field);
    let pa_array = polars_arrow::ffi::export_array_to_c(array);
    // SAFETY: as in `to_frame`, the other way round.
    let (ffi_array, ffi_schema): (FFI_ArrowArray, FFI_ArrowSchema) = unsafe {
        (
            std::mem::transmute::<polars_arrow::ffi::ArrowArray, FFI_ArrowArray>(pa_array),
            std::mem::transmute::<polars_arrow::ffi::ArrowSchema, FFI_ArrowSchema>(pa_schema),
        )
    };
    let data = unsafe { from_ffi(ffi_array, &ffi_schema) }?;
    Ok(make_array(data))
}

fn narrow(array: ArrayRef) -> Result<ArrayRef> {
    let to = match array.data_type() {
        ArrowType::LargeUtf8 | ArrowType::Utf8View => ArrowType::Utf8,
        ArrowType::LargeBinary | ArrowType::BinaryView => ArrowType::Binary,
        _ => return Ok(array),
    };
    Ok(arrow_cast::cast(&array, &to)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn round_trip_keeps_values_and_types() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ü🦀")])) as _,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![0.5, 1.5, f64::NAN])) as _,
            ),
        ])
        .unwrap();
        let frame = to_frame(&batch).unwrap();
        assert_eq!(frame.shape(), (3, 3));
        let back = from_frame(frame).unwrap();
        assert_eq!(back.schema().field(1).data_type(), &ArrowType::Utf8);
        for i in 0..3 {
            assert_eq!(back.column(i).to_data().len(), 3);
        }
        let names = back
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(2), "ü🦀");
        assert!(names.is_null(1));
    }
}
