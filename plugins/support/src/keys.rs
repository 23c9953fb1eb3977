//! Replication keys: the largest key in a set of batches, and keeping rows above an offset.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, UInt64Type};
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
    /// Decimals: the unscaled value and its scale.
    Decimal(i128, i8),
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
            Self::Decimal(v, scale) => Value::from(format_decimal(*v, *scale)),
            Self::Text(v) => Value::from(v.clone()),
        }
    }

    /// The key with its kind, for storing and reading back exactly (`{"int": 5}`,
    /// `{"decimal": "1025", "scale": 2}`, `{"text": "a"}`…), unlike [`KeyMax::to_json`], which
    /// gives the offset a source compares with.
    pub fn to_tagged(&self) -> Value {
        match self {
            Self::Int(v) => serde_json::json!({ "int": v }),
            Self::UInt(v) => serde_json::json!({ "uint": v }),
            Self::Float(v) => serde_json::json!({ "float": v }),
            Self::Decimal(v, scale) => {
                serde_json::json!({ "decimal": v.to_string(), "scale": scale })
            }
            Self::Text(v) => serde_json::json!({ "text": v }),
        }
    }

    /// Reads back what [`KeyMax::to_tagged`] wrote.
    pub fn from_tagged(value: &Value) -> Result<Self> {
        let bad = || PluginError::data(format!("`{value}` is not a stored replication key"));
        let Some(object) = value.as_object() else {
            return Err(bad());
        };
        if let Some(v) = object.get("int") {
            return v.as_i64().map(Self::Int).ok_or_else(bad);
        }
        if let Some(v) = object.get("uint") {
            return v.as_u64().map(Self::UInt).ok_or_else(bad);
        }
        if let Some(v) = object.get("float") {
            return v.as_f64().map(Self::Float).ok_or_else(bad);
        }
        if let Some(v) = object.get("decimal") {
            let unscaled = v
                .as_str()
                .and_then(|s| s.parse::<i128>().ok())
                .ok_or_else(bad)?;
            let scale = object
                .get("scale")
                .and_then(Value::as_i64)
                .and_then(|s| i8::try_from(s).ok())
                .ok_or_else(bad)?;
            return Ok(Self::Decimal(unscaled, scale));
        }
        if let Some(v) = object.get("text") {
            return v.as_str().map(|s| Self::Text(s.to_owned())).ok_or_else(bad);
        }
        Err(bad())
    }

    fn merge(self, other: KeyMax) -> Result<KeyMax> {
        Ok(match (&self, &other) {
            (Self::Int(a), Self::Int(b)) => Self::Int(*a.max(b)),
            (Self::UInt(a), Self::UInt(b)) => Self::UInt(*a.max(b)),
            (Self::Int(a), Self::UInt(b)) | (Self::UInt(b), Self::Int(a)) => {
                if *a < 0 || (*a as u64) < *b {
                    Self::UInt(*b)
                } else {
                    Self::Int(*a)
                }
            }
            (Self::Float(a), Self::Float(b)) => Self::Float(a.max(*b)),
            (Self::Decimal(a, sa), Self::Decimal(b, sb)) if sa == sb => {
                Self::Decimal(*a.max(b), *sa)
            }
            (Self::Text(a), Self::Text(b)) => Self::Text(a.max(b).clone()),
            _ => {
                return Err(PluginError::data(format!(
                    "the key column holds {self:?} in one file and {other:?} in another; \
                     give every file the same key type"
                )));
            }
        })
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
        DataType::Decimal128(_, scale) => {
            arrow_arith::aggregate::max(array.as_primitive::<Decimal128Type>())
                .map(|v| KeyMax::Decimal(v, *scale))
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
pub fn fold(acc: Option<KeyMax>, next: Option<KeyMax>) -> Result<Option<KeyMax>> {
    match (acc, next) {
        (Some(a), Some(b)) => a.merge(b).map(Some),
        (a, b) => Ok(a.or(b)),
    }
}

/// `12345` at scale 2 → `"123.45"`.
fn format_decimal(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return (value * 10i128.pow(scale.unsigned_abs() as u32)).to_string();
    }
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if value < 0 { "-" } else { "" })
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

/// The starting offset a source's configuration gives (the original fastlane's `offset`):
/// `None` when it is absent, null or `-1`, the original's "from the start".
pub fn configured_offset(offset: Option<&Value>) -> Option<Value> {
    offset
        .filter(|o| !o.is_null() && o.as_i64() != Some(-1))
        .cloned()
}

/// The offset a source reads after: in INCREMENTAL runs the target's (`start_offset`) when it
/// has one, else the configured one; in FULL_TABLE runs the configured one.
pub fn read_after(
    mode: fastlane_plugin_api::ReplicationMode,
    start_offset: Option<&Value>,
    configured: Option<&Value>,
) -> Option<Value> {
    let configured = configured_offset(configured);
    match mode {
        fastlane_plugin_api::ReplicationMode::Incremental => start_offset
            .filter(|o| !o.is_null())
            .cloned()
            .or(configured),
        fastlane_plugin_api::ReplicationMode::FullTable => configured,
    }
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

    #[test]
    fn decimals_compare_as_numbers() {
        let a = arrow_array::Decimal128Array::from(vec![950, 1025])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let batch = RecordBatch::try_from_iter([("k", Arc::new(a) as ArrayRef)]).unwrap();
        let max = column_max(&batch, "k").unwrap().unwrap();
        assert_eq!(max.to_json(), json!("10.25"));
        assert_eq!(format_decimal(-5, 3), "-0.005");
        let scalar = offset_scalar(&max.to_json(), batch.column(0).data_type()).unwrap();
        assert_eq!(keep_after(&batch, "k", &scalar).unwrap().num_rows(), 0);
    }

    #[test]
    fn tagged_keys_read_back_exactly() {
        for key in [
            KeyMax::Int(-3),
            KeyMax::UInt(u64::MAX),
            KeyMax::Float(1.5),
            KeyMax::Decimal(-170_141_183_460_469_231_731_687_303_715_884_105_727, 4),
            KeyMax::Text("2026-11-24T10:00:00".into()),
        ] {
            assert_eq!(KeyMax::from_tagged(&key.to_tagged()).unwrap(), key);
        }
        assert!(KeyMax::from_tagged(&json!({"int": "x"})).is_err());
        assert!(KeyMax::from_tagged(&json!(5)).is_err());
    }

    #[test]
    fn mismatched_key_types_are_an_error() {
        assert!(fold(Some(KeyMax::Int(3)), Some(KeyMax::Text("a".into()))).is_err());
        assert_eq!(
            fold(Some(KeyMax::Int(3)), Some(KeyMax::UInt(9))).unwrap(),
            Some(KeyMax::UInt(9))
        );
    }

    #[test]
    fn configured_offsets() {
        use fastlane_plugin_api::ReplicationMode::{FullTable, Incremental};
        use serde_json::json;
        assert_eq!(configured_offset(Some(&json!(-1))), None);
        assert_eq!(configured_offset(Some(&Value::Null)), None);
        assert_eq!(configured_offset(Some(&json!(0))), Some(json!(0)));
        assert_eq!(
            read_after(FullTable, Some(&json!(9)), Some(&json!(3))),
            Some(json!(3))
        );
        assert_eq!(
            read_after(Incremental, Some(&json!(9)), Some(&json!(3))),
            Some(json!(9))
        );
        assert_eq!(
            read_after(Incremental, None, Some(&json!(3))),
            Some(json!(3))
        );
        assert_eq!(read_after(Incremental, None, Some(&json!(-1))), None);
    }
}
