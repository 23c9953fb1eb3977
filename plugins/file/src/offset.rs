//! Replication keys: the largest key in a set of batches, and keeping rows above an offset.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Datum, RecordBatch, Scalar, StringArray};
use arrow_schema::DataType;
use fastlane_plugin_api::{PluginError, Result};
use serde_json::Value;

/// The largest key seen so far, in one of three comparable forms.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyMax {
    /// Signed integers (and dates/timestamps stored as integers are not folded here).
    Int(i64),
    /// Unsigned integers.
    UInt(u64),
    /// Floats.
    Float(f64),
    /// Everything else, compared as text (ISO dates and timestamps sort correctly).
    Text(String),
}

impl KeyMax {
    /// The offset as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Int(v) => Value::from(*v),
            Self::UInt(v) => Value::from(*v),
            Self::Float(v) => Value::from(*v),
            Self::Text(v) => Value::from(v.clone()),
        }
    }

    fn merge(self, other: KeyMax) -> KeyMax {
        match (&self, &other) {
            (Self::Int(a), Self::Int(b)) => Self::Int(*a.max(b)),
            (Self::UInt(a), Self::UInt(b)) => Self::UInt(*a.max(b)),
            (Self::Float(a), Self::Float(b)) => Self::Float(a.max(*b)),
            (Self::Text(a), Self::Text(b)) => Self::Text(a.max(b).clone()),
            _ => other,
        }
    }
}

/// The largest non-null value of `column` in `batch`, if any.
pub fn column_max(batch: &RecordBatch, column: &str) -> Result<Option<KeyMax>> {
    let Some(array) = batch.column_by_name(column) else {
        return Err(PluginError::not_found(format!(
            "the key column `{column}` is not in the data"
        )));
    };
    let max = match array.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            arrow_arith::aggregate::max(a.as_primitive::<Int64Type>()).map(KeyMax::Int)
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let a = arrow_cast::cast(array, &DataType::UInt64)?;
            arrow_arith::aggregate::max(a.as_primitive::<UInt64Type>()).map(KeyMax::UInt)
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let a = arrow_cast::cast(array, &DataType::Float64)?;
            arrow_arith::aggregate::max(a.as_primitive::<Float64Type>()).map(KeyMax::Float)
        }
        _ => {
            let a = arrow_cast::cast(array, &DataType::Utf8)?;
            arrow_arith::aggregate::max_string(a.as_string::<i32>())
                .map(|s| KeyMax::Text(s.to_owned()))
        }
    };
    Ok(max)
}

/// Folds a new maximum into an accumulated one.
pub fn fold(acc: Option<KeyMax>, next: Option<KeyMax>) -> Option<KeyMax> {
    match (acc, next) {
        (Some(a), Some(b)) => Some(a.merge(b)),
        (a, b) => a.or(b),
    }
}

/// Converts a JSON offset into a one-value array of `data_type`.
pub fn offset_scalar(offset: &Value, data_type: &DataType) -> Result<Scalar<ArrayRef>> {
    let text = match offset {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(PluginError::data(format!("unsupported offset {other}")));
        }
    };
    let utf8: ArrayRef = Arc::new(StringArray::from(vec![text.clone()]));
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = arrow_cast::cast_with_options(&utf8, data_type, &options).map_err(|e| {
        PluginError::data(format!(
            "the offset `{text}` does not fit the key type {data_type}: {e}"
        ))
    })?;
    Ok(Scalar::new(cast))
}

/// Keeps the rows of `batch` whose `column` is greater than `offset`.
pub fn keep_after(batch: &RecordBatch, column: &str, offset: &dyn Datum) -> Result<RecordBatch> {
    let Some(array) = batch.column_by_name(column) else {
        return Err(PluginError::not_found(format!(
            "the replication key `{column}` is not a column of the data"
        )));
    };
    let mask = arrow_ord::cmp::gt(array, offset)?;
    if mask.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    Ok(arrow_select::filter::filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::Int32Array;
    use serde_json::json;

    use super::*;

    #[test]
    fn max_and_filter() {
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int32Array::from(vec![Some(3), None, Some(9), Some(1)])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(column_max(&batch, "id").unwrap(), Some(KeyMax::Int(9)));
        let scalar = offset_scalar(&json!(2), &DataType::Int32).unwrap();
        let kept = keep_after(&batch, "id", &scalar).unwrap();
        assert_eq!(kept.num_rows(), 2);
        assert!(offset_scalar(&json!("x"), &DataType::Int32).is_err());
    }
}
