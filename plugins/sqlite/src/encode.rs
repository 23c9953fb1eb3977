//! Arrow columns to SQLite values, and the declared types of the columns a target creates
//! (chosen so that the `sqlite` source reads them back as the same Arrow types).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float64Type, Int64Type, TimestampMicrosecondType, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::DateTime;
use fastlane_plugin_api::{PluginError, Result};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

/// The declared SQLite type of a column of `data_type`.
pub(crate) fn declared_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Boolean => "BOOLEAN",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Dictionary(_, value) => declared_type(value),
        // Text, decimals (their exact digits), times, durations, intervals, and nested values
        // as JSON.
        _ => "TEXT",
    }
}

/// One column of a batch, ready to be bound row by row.
pub(crate) enum Encoder {
    /// Every value is NULL.
    Null,
    /// Integers (and booleans as 0 and 1).
    Int(arrow_array::PrimitiveArray<Int64Type>),
    /// Unsigned 64-bit integers, refused above `i64::MAX`.
    UInt(arrow_array::PrimitiveArray<UInt64Type>),
    /// Floating-point numbers.
    Float(arrow_array::PrimitiveArray<Float64Type>),
    /// Booleans.
    Bool(arrow_array::BooleanArray),
    /// UTF-8 text.
    Text(arrow_array::StringArray),
    /// Bytes.
    Blob(arrow_array::BinaryArray),
    /// Dates, as `YYYY-MM-DD`.
    Date(arrow_array::PrimitiveArray<Date32Type>),
    /// Timestamps, as `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
    Timestamp(arrow_array::PrimitiveArray<TimestampMicrosecondType>),
    /// Values stored as their text (decimals, times, nested values as JSON…).
    Formatted(Vec<Option<String>>),
}

fn cast(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef> {
    arrow_cast::cast(array, to).map_err(|e| {
        PluginError::data(format!(
            "column `{column}`: cannot convert {} to {to}: {e}",
            array.data_type()
        ))
    })
}

impl Encoder {
    /// The encoder of `array`, the column `column`.
    pub(crate) fn new(array: &ArrayRef, column: &str) -> Result<Self> {
        let array = match array.data_type() {
            DataType::Dictionary(_, value) => cast(array, value, column)?,
            _ => array.clone(),
        };
        Ok(match array.data_type() {
            DataType::Null => Self::Null,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Self::Int(
                cast(&array, &DataType::Int64, column)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            DataType::UInt64 => Self::UInt(array.as_primitive::<UInt64Type>().clone()),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Self::Float(
                cast(&array, &DataType::Float64, column)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            DataType::Boolean => Self::Bool(array.as_boolean().clone()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text(
                cast(&array, &DataType::Utf8, column)?
                    .as_string::<i32>()
                    .clone(),
            ),
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Self::Blob(
                cast(&array, &DataType::Binary, column)?
                    .as_binary::<i32>()
                    .clone(),
            ),
            DataType::Date32 | DataType::Date64 => Self::Date(
                cast(&array, &DataType::Date32, column)?
                    .as_primitive::<Date32Type>()
                    .clone(),
            ),
            DataType::Timestamp(_, tz) => {
                // The values stay instants since the epoch in UTC, whatever the zone.
                let micros = DataType::Timestamp(TimeUnit::Microsecond, tz.clone());
                Self::Timestamp(
                    cast(&array, &micros, column)?
                        .as_primitive::<TimestampMicrosecondType>()
                        .clone(),
                )
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _) => Self::Formatted(json_values(&array, column)?),
            _ => {
                let options = arrow_cast::display::FormatOptions::default();
                let formatter = arrow_cast::display::ArrayFormatter::try_new(&array, &options)
                    .map_err(|e| {
                        PluginError::data(format!(
                            "column `{column}`: cannot write {}: {e}",
                            array.data_type()
                        ))
                    })?;
                Self::Formatted(
                    (0..array.len())
                        .map(|i| array.is_valid(i).then(|| formatter.value(i).to_string()))
                        .collect(),
                )
            }
        })
    }

    /// The value of row `row`, or why it cannot be stored.
    pub(crate) fn value(&self, row: usize) -> std::result::Result<ToSqlOutput<'_>, String> {
        let null = ToSqlOutput::Borrowed(ValueRef::Null);
        Ok(match self {
            Self::Null => null,
            Self::Int(a) if a.is_valid(row) => ToSqlOutput::Owned(Value::Integer(a.value(row))),
            Self::UInt(a) if a.is_valid(row) => {
                let v = a.value(row);
                let v = i64::try_from(v).map_err(|_| {
                    format!("{v} is above the largest SQLite INTEGER ({})", i64::MAX)
                })?;
                ToSqlOutput::Owned(Value::Integer(v))
            }
            Self::Float(a) if a.is_valid(row) => ToSqlOutput::Owned(Value::Real(a.value(row))),
            Self::Bool(a) if a.is_valid(row) => {
                ToSqlOutput::Owned(Value::Integer(i64::from(a.value(row))))
            }
            Self::Text(a) if a.is_valid(row) => {
                ToSqlOutput::Borrowed(ValueRef::Text(a.value(row).as_bytes()))
            }
            Self::Blob(a) if a.is_valid(row) => ToSqlOutput::Borrowed(ValueRef::Blob(a.value(row))),
            Self::Date(a) if a.is_valid(row) => {
                let days = a.value(row);
                let date =
                    DateTime::from_timestamp(i64::from(days) * 86_400, 0).ok_or_else(|| {
                        format!("the date {days} days from 1970-01-01 is out of range")
                    })?;
                ToSqlOutput::Owned(Value::Text(date.format("%Y-%m-%d").to_string()))
            }
            Self::Timestamp(a) if a.is_valid(row) => {
                let micros = a.value(row);
                let at = DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| format!("the timestamp {micros} µs is out of range"))?;
                ToSqlOutput::Owned(Value::Text(at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()))
            }
            Self::Formatted(values) => match &values[row] {
                Some(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
                None => null,
            },
            _ => null,
        })
    }
}

/// The values of a nested column as JSON texts (NULL stays NULL).
fn json_values(array: &ArrayRef, column: &str) -> Result<Vec<Option<String>>> {
    let failed = |e: &dyn std::fmt::Display| {
        PluginError::data(format!("column `{column}`: cannot write it as JSON: {e}"))
    };
    let field = Field::new("v", array.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array.clone()])
        .map_err(|e| failed(&e))?;
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(&batch).map_err(|e| failed(&e))?;
    writer.finish().map_err(|e| failed(&e))?;
    let bytes = writer.into_inner();
    let text = String::from_utf8(bytes).map_err(|e| failed(&e))?;
    let mut values = Vec::with_capacity(array.len());
    for (row, line) in text.lines().enumerate() {
        if array.is_null(row) {
            values.push(None);
            continue;
        }
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| failed(&e))?;
        values.push(object.remove("v").map(|v| v.to_string()));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{
        Decimal128Array, Int8Array, StringViewArray, TimestampNanosecondArray, UInt64Array,
    };

    fn text(out: ToSqlOutput<'_>) -> String {
        match out {
            ToSqlOutput::Borrowed(ValueRef::Text(t)) => String::from_utf8(t.to_vec()).unwrap(),
            ToSqlOutput::Owned(Value::Text(t)) => t,
            ToSqlOutput::Borrowed(ValueRef::Null) => "NULL".into(),
            ToSqlOutput::Owned(Value::Integer(i)) => format!("int {i}"),
            ToSqlOutput::Owned(Value::Real(r)) => format!("real {r}"),
            _ => "other".into(),
        }
    }

    #[test]
    fn values_are_stored_as_the_source_reads_them_back() {
        let ts: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![Some(1_700_000_000_123_456_789), None])
                .with_timezone("+02:00"),
        );
        let e = Encoder::new(&ts, "at").unwrap();
        assert_eq!(text(e.value(0).unwrap()), "2023-11-14 22:13:20.123456");
        assert_eq!(text(e.value(1).unwrap()), "NULL");
        assert_eq!(declared_type(ts.data_type()), "TIMESTAMP");

        let dec: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(12_345), None])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let e = Encoder::new(&dec, "amount").unwrap();
        assert_eq!(text(e.value(0).unwrap()), "123.45");
        assert_eq!(declared_type(dec.data_type()), "TEXT");

        let small: ArrayRef = Arc::new(Int8Array::from(vec![-3]));
        assert_eq!(
            text(Encoder::new(&small, "s").unwrap().value(0).unwrap()),
            "int -3"
        );
        let view: ArrayRef = Arc::new(StringViewArray::from(vec!["ü 🦀"]));
        assert_eq!(
            text(Encoder::new(&view, "v").unwrap().value(0).unwrap()),
            "ü 🦀"
        );

        let mut list = ListBuilder::new(Int32Builder::new());
        list.values().append_value(1);
        list.values().append_null();
        list.append(true);
        list.append(false);
        let list: ArrayRef = Arc::new(list.finish());
        let e = Encoder::new(&list, "l").unwrap();
        assert_eq!(text(e.value(0).unwrap()), "[1,null]");
        assert_eq!(text(e.value(1).unwrap()), "NULL");
    }

    #[test]
    fn an_unsigned_value_above_sqlites_range_is_refused() {
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![7, u64::MAX]));
        let e = Encoder::new(&big, "big").unwrap();
        assert_eq!(text(e.value(0).unwrap()), "int 7");
        let err = e.value(1).err().unwrap();
        assert!(err.contains("18446744073709551615"), "{err}");
    }
}
