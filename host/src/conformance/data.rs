//! The suite's data: the standard columns, generated batches of them, and rows rendered as
//! text so that values compare across equivalent types.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// The standard columns, beyond the `id` key every batch has.
pub const ALL_COLUMNS: &[&str] = &[
    "int32", "int64", "float64", "text", "flag", "day", "moment", "blob",
];

/// `rows` rows of the standard columns in batches of `batch_rows`, ids `first..first+rows`.
///
/// Every column but `id` has a null every 7th row; `text` holds unicode and emoji.
pub fn standard_batches(
    first: i64,
    rows: usize,
    batch_rows: usize,
    columns: &[&str],
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < rows {
        let n = batch_rows.min(rows - start);
        let ids: Vec<i64> = (0..n).map(|i| first + (start + i) as i64).collect();
        let null = |id: i64| id % 7 == 3;
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.clone()))];
        for &c in columns {
            let (field, array): (Field, ArrayRef) = match c {
                "int32" => (
                    Field::new(c, DataType::Int32, true),
                    Arc::new(Int32Array::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then_some((i % 1000) as i32 - 500)),
                    )),
                ),
                "int64" => (
                    Field::new(c, DataType::Int64, true),
                    Arc::new(Int64Array::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i * 1_000_003 - 7)),
                    )),
                ),
                "float64" => (
                    Field::new(c, DataType::Float64, true),
                    Arc::new(Float64Array::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i as f64 / 8.0)),
                    )),
                ),
                "text" => (
                    Field::new(c, DataType::Utf8, true),
                    Arc::new(StringArray::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then(|| format!("row {i} ü 日本 🦀"))),
                    )),
                ),
                "flag" => (
                    Field::new(c, DataType::Boolean, true),
                    Arc::new(BooleanArray::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i % 2 == 0)),
                    )),
                ),
                "day" => (
                    Field::new(c, DataType::Date32, true),
                    Arc::new(Date32Array::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then_some(19_000 + (i % 365) as i32)),
                    )),
                ),
                "moment" => (
                    Field::new(c, DataType::Timestamp(TimeUnit::Microsecond, None), true),
                    Arc::new(TimestampMicrosecondArray::from_iter(ids.iter().map(|&i| {
                        (!null(i)).then_some(1_700_000_000_000_000 + i * 1_000_001)
                    }))),
                ),
                "blob" => (
                    Field::new(c, DataType::Binary, true),
                    Arc::new(BinaryArray::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then(|| i.to_le_bytes().to_vec())),
                    )),
                ),
                other => panic!("unknown standard column `{other}`"),
            };
            fields.push(field);
            arrays.push(array);
        }
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch"));
        start += n;
    }
    out
}

/// Renders rows as text (sorted by `id`), so that values compare across equivalent types.
///
/// # Panics
/// When a batch lacks `id` or one of `columns`; [`try_rows_as_text`] says so instead.
pub fn rows_as_text(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<String>> {
    try_rows_as_text(batches, columns).unwrap_or_else(|e| panic!("{e}"))
}

/// Renders rows as text (sorted by `id`, which comes first in each row), or says which column
/// is missing or cannot be shown.
pub fn try_rows_as_text(
    batches: &[RecordBatch],
    columns: &[&str],
) -> Result<Vec<Vec<String>>, String> {
    let options = arrow_cast::display::FormatOptions::default().with_null("NULL");
    let mut rows: Vec<(i64, Vec<String>)> = Vec::new();
    for batch in batches {
        let id = batch
            .column_by_name("id")
            .ok_or_else(|| format!("no column `id` in {}", schema_text(batch)))?;
        let id = arrow_cast::cast(id, &DataType::Int64)
            .map_err(|e| format!("column `id` is not an integer: {e}"))?;
        let id = id
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("column `id` is not an integer")?;
        let mut formatters = Vec::with_capacity(columns.len());
        for c in columns {
            let column = batch
                .column_by_name(c)
                .ok_or_else(|| format!("no column `{c}` in {}", schema_text(batch)))?;
            formatters.push(
                arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
                    .map_err(|e| format!("column `{c}` cannot be shown: {e}"))?,
            );
        }
        for r in 0..batch.num_rows() {
            if id.is_null(r) {
                return Err("column `id` holds a null".into());
            }
            rows.push((
                id.value(r),
                formatters.iter().map(|f| f.value(r).to_string()).collect(),
            ));
        }
    }
    rows.sort_by_key(|(id, _)| *id);
    Ok(rows
        .into_iter()
        .map(|(id, mut values)| {
            values.insert(0, id.to_string());
            values
        })
        .collect())
}

/// A batch's columns and types, as `(id Int64, text Utf8)`.
pub fn schema_text(batch: &RecordBatch) -> String {
    fields_text(batch.schema_ref())
}

/// Fields and types, as `(id Int64, text Utf8)`.
pub fn fields_text(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    format!("({})", fields.join(", "))
}
