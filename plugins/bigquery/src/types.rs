//! BigQuery types and Arrow: the schema mapping, the conversion of REST cells (`{"v": …}`)
//! into Arrow arrays, and replication-key offsets as SQL literals.
//!
//! | BigQuery | Arrow |
//! |---|---|
//! | INT64 | Int64 |
//! | NUMERIC | Decimal128(38, 9) |
//! | BIGNUMERIC | Decimal256(76, 38) |
//! | FLOAT64 | Float64 |
//! | BOOL | Boolean |
//! | STRING, JSON, GEOGRAPHY (WKT), INTERVAL | Utf8 |
//! | BYTES | Binary |
//! | DATE | Date32 |
//! | DATETIME | Timestamp(µs) |
//! | TIME | Time64(µs) |
//! | TIMESTAMP | Timestamp(µs, UTC) |
//! | `RANGE<T>` | `Struct<start: T, end: T>` |
//! | REPEATED T | `List<T>` |
//! | STRUCT / RECORD | Struct |
//!
//! These are the types the Storage Read API sends in Arrow format, so both read paths give
//! the same columns.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    Float64Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::types::{Decimal128Type, Decimal256Type};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray, new_null_array};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use fastlane_plugin_api::{PluginError, Result};
use serde::Deserialize;
use serde_json::Value;

/// One column of a BigQuery table schema, as the REST API describes it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct BqField {
    /// The column's name.
    pub name: String,
    /// Its type (`INT64` or the legacy `INTEGER`, `RECORD`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// `NULLABLE` (the default), `REQUIRED` or `REPEATED`.
    #[serde(default)]
    pub mode: Option<String>,
    /// The fields of a STRUCT / RECORD.
    #[serde(default)]
    pub fields: Vec<BqField>,
    /// The element type of a RANGE.
    #[serde(default, rename = "rangeElementType")]
    pub range_element_type: Option<RangeElement>,
}

/// The element type of a RANGE column.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct RangeElement {
    /// `DATE`, `DATETIME` or `TIMESTAMP`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl BqField {
    fn repeated(&self) -> bool {
        self.mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("REPEATED"))
    }

    fn required(&self) -> bool {
        self.mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("REQUIRED"))
    }

    /// The standard SQL name of the type (`INTEGER` is `INT64`, `RECORD` is `STRUCT`…).
    pub fn sql_type(&self) -> &'static str {
        sql_type(&self.kind)
    }
}

/// The standard SQL spelling of a REST type name; `""` for one this connector does not know.
fn sql_type(kind: &str) -> &'static str {
    match kind.to_ascii_uppercase().as_str() {
        "INT64" | "INTEGER" => "INT64",
        "NUMERIC" | "DECIMAL" => "NUMERIC",
        "BIGNUMERIC" | "BIGDECIMAL" => "BIGNUMERIC",
        "FLOAT64" | "FLOAT" => "FLOAT64",
        "BOOL" | "BOOLEAN" => "BOOL",
        "STRING" => "STRING",
        "BYTES" => "BYTES",
        "DATE" => "DATE",
        "DATETIME" => "DATETIME",
        "TIME" => "TIME",
        "TIMESTAMP" => "TIMESTAMP",
        "JSON" => "JSON",
        "GEOGRAPHY" => "GEOGRAPHY",
        "INTERVAL" => "INTERVAL",
        "RANGE" => "RANGE",
        "RECORD" | "STRUCT" => "STRUCT",
        _ => "",
    }
}

/// The Arrow type of a scalar (non-repeated) BigQuery value.
fn scalar_type(field: &BqField) -> Result<DataType> {
    Ok(match field.sql_type() {
        "INT64" => DataType::Int64,
        "NUMERIC" => DataType::Decimal128(38, 9),
        "BIGNUMERIC" => DataType::Decimal256(76, 38),
        "FLOAT64" => DataType::Float64,
        "BOOL" => DataType::Boolean,
        "STRING" | "JSON" | "GEOGRAPHY" | "INTERVAL" => DataType::Utf8,
        "BYTES" => DataType::Binary,
        "DATE" => DataType::Date32,
        "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "RANGE" => {
            let element = field.range_element_type.as_ref().ok_or_else(|| {
                PluginError::data(format!(
                    "the RANGE column `{}` has no element type",
                    field.name
                ))
            })?;
            let inner = scalar_type(&BqField {
                name: field.name.clone(),
                kind: element.kind.clone(),
                mode: None,
                fields: Vec::new(),
                range_element_type: None,
            })?;
            DataType::Struct(Fields::from(vec![
                Field::new("start", inner.clone(), true),
                Field::new("end", inner, true),
            ]))
        }
        "STRUCT" => DataType::Struct(arrow_fields(&field.fields)?),
        _ => {
            return Err(PluginError::unsupported(format!(
                "the column `{}` has the BigQuery type {}, which fastlane cannot read yet",
                field.name, field.kind
            )));
        }
    })
}

/// The Arrow field of a BigQuery column.
pub fn arrow_field(field: &BqField) -> Result<Field> {
    let scalar = scalar_type(field)?;
    Ok(if field.repeated() {
        Field::new(
            &field.name,
            DataType::List(Arc::new(Field::new("item", scalar, true))),
            true,
        )
    } else {
        Field::new(&field.name, scalar, !field.required())
    })
}

fn arrow_fields(fields: &[BqField]) -> Result<Fields> {
    fields
        .iter()
        .map(arrow_field)
        .collect::<Result<Vec<_>>>()
        .map(Fields::from)
}

/// The Arrow schema of a BigQuery table schema.
pub fn arrow_schema(fields: &[BqField]) -> Result<SchemaRef> {
    Ok(Arc::new(Schema::new(arrow_fields(fields)?)))
}

/// Converts one page of REST rows (`[{"f": [{"v": …}, …]}, …]`) into a batch of `schema`.
pub fn rows_to_batch(
    fields: &[BqField],
    schema: &SchemaRef,
    rows: &[Value],
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(fields.len());
    for (index, (field, arrow)) in fields.iter().zip(schema.fields()).enumerate() {
        let cells: Vec<&Value> = rows
            .iter()
            .map(|row| row_cell(row, index))
            .collect::<Result<_>>()?;
        columns.push(
            column(field, arrow.data_type(), &cells)
                .map_err(|e| e.context(format!("column `{}`", field.name)))?,
        );
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| PluginError::data(format!("the rows do not fit the table's schema: {e}")))
}

static NULL: Value = Value::Null;

/// The value of cell `index` of a `{"f": [{"v": …}]}` row.
fn row_cell(row: &Value, index: usize) -> Result<&Value> {
    let cells = row.get("f").and_then(Value::as_array).ok_or_else(|| {
        PluginError::data(format!("a row is not of the form {{\"f\": […]}}: {row}"))
    })?;
    Ok(cells.get(index).and_then(|c| c.get("v")).unwrap_or(&NULL))
}

/// The Arrow array of one column, from its cells' `v` values.
fn column(field: &BqField, data_type: &DataType, cells: &[&Value]) -> Result<ArrayRef> {
    if let DataType::List(item) = data_type
        && field.repeated()
    {
        let mut offsets = Vec::with_capacity(cells.len() + 1);
        offsets.push(0i32);
        let mut valid = Vec::with_capacity(cells.len());
        let mut inner: Vec<&Value> = Vec::new();
        for cell in cells {
            match cell {
                Value::Null => valid.push(false),
                Value::Array(items) => {
                    valid.push(true);
                    inner.extend(items.iter().map(|i| i.get("v").unwrap_or(&NULL)));
                }
                other => return Err(bad_cell(field, other)),
            }
            offsets
                .push(i32::try_from(inner.len()).map_err(|_| {
                    PluginError::data("a page holds more than 2^31 array elements")
                })?);
        }
        let scalar = BqField {
            mode: None,
            ..field.clone()
        };
        let values = column(&scalar, item.data_type(), &inner)?;
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        return Ok(Arc::new(
            ListArray::try_new(
                item.clone(),
                OffsetBuffer::new(offsets.into()),
                values,
                nulls,
            )
            .map_err(|e| PluginError::data(e.to_string()))?,
        ));
    }
    let n = cells.len();
    macro_rules! build {
        ($builder:expr, $parse:expr) => {{
            let mut builder = $builder;
            for cell in cells {
                match cell {
                    Value::Null => builder.append_null(),
                    other => {
                        let text = other.as_str().ok_or_else(|| bad_cell(field, other))?;
                        let parsed = $parse(text).ok_or_else(|| bad_cell(field, other))?;
                        builder.append_value(parsed);
                    }
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    Ok(match data_type {
        DataType::Int64 => build!(Int64Builder::with_capacity(n), |t: &str| t
            .parse::<i64>()
            .ok()),
        DataType::Float64 => build!(Float64Builder::with_capacity(n), parse_float),
        DataType::Boolean => build!(BooleanBuilder::with_capacity(n), |t: &str| match t {
            "true" | "TRUE" | "True" => Some(true),
            "false" | "FALSE" | "False" => Some(false),
            _ => None,
        }),
        DataType::Utf8 => {
            let mut builder = StringBuilder::with_capacity(n, n * 16);
            for cell in cells {
                match cell {
                    Value::Null => builder.append_null(),
                    Value::String(s) => builder.append_value(s),
                    // JSON columns may come back parsed.
                    other => builder.append_value(other.to_string()),
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Binary => build!(BinaryBuilder::with_capacity(n, n * 16), |t: &str| {
            base64::engine::general_purpose::STANDARD.decode(t).ok()
        }),
        DataType::Decimal128(p, s) => build!(
            Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(*p, *s)
                .map_err(|e| PluginError::internal(e.to_string()))?,
            |t: &str| arrow_cast::parse::parse_decimal::<Decimal128Type>(t, *p, *s).ok()
        ),
        DataType::Decimal256(p, s) => build!(
            Decimal256Builder::with_capacity(n)
                .with_precision_and_scale(*p, *s)
                .map_err(|e| PluginError::internal(e.to_string()))?,
            |t: &str| arrow_cast::parse::parse_decimal::<Decimal256Type>(t, *p, *s).ok()
        ),
        DataType::Date32 => build!(Date32Builder::with_capacity(n), parse_date),
        DataType::Time64(TimeUnit::Microsecond) => {
            build!(Time64MicrosecondBuilder::with_capacity(n), parse_time)
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            build!(
                TimestampMicrosecondBuilder::with_capacity(n),
                parse_datetime
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => build!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone(tz.clone()),
            parse_timestamp
        ),
        DataType::Struct(children) => {
            let range = field.sql_type() == "RANGE";
            // A RANGE in REST form is text: "[2024-01-01, 2024-02-01)", UNBOUNDED for open ends.
            let bounds: Vec<Option<(Value, Value)>> = if range {
                cells
                    .iter()
                    .map(|cell| match cell {
                        Value::String(text) => parse_range(text)
                            .map(Some)
                            .ok_or_else(|| bad_cell(field, cell)),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            let mut valid = Vec::with_capacity(n);
            let mut child_cells: Vec<Vec<&Value>> = vec![Vec::with_capacity(n); children.len()];
            for (row, cell) in cells.iter().enumerate() {
                match cell {
                    Value::Null => {
                        valid.push(false);
                        child_cells.iter_mut().for_each(|c| c.push(&NULL));
                    }
                    Value::Object(_) => {
                        valid.push(true);
                        let inner = cell
                            .get("f")
                            .and_then(Value::as_array)
                            .ok_or_else(|| bad_cell(field, cell))?;
                        for (i, cells) in child_cells.iter_mut().enumerate() {
                            cells.push(inner.get(i).and_then(|c| c.get("v")).unwrap_or(&NULL));
                        }
                    }
                    Value::String(_) if range => {
                        valid.push(true);
                        let (start, end) = bounds[row].as_ref().expect("parsed above");
                        child_cells[0].push(start);
                        child_cells[1].push(end);
                    }
                    other => return Err(bad_cell(field, other)),
                }
            }
            let mut arrays = Vec::with_capacity(children.len());
            for (i, child) in children.iter().enumerate() {
                let sub = if range {
                    BqField {
                        name: child.name().clone(),
                        kind: field
                            .range_element_type
                            .as_ref()
                            .map(|e| e.kind.clone())
                            .unwrap_or_default(),
                        mode: None,
                        fields: Vec::new(),
                        range_element_type: None,
                    }
                } else {
                    field.fields[i].clone()
                };
                arrays.push(
                    column(&sub, child.data_type(), &child_cells[i])
                        .map_err(|e| e.context(format!("field `{}`", child.name())))?,
                );
            }
            let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
            Arc::new(
                StructArray::try_new(children.clone(), arrays, nulls)
                    .map_err(|e| PluginError::data(e.to_string()))?,
            )
        }
        DataType::Null => new_null_array(&DataType::Null, n),
        other => {
            return Err(PluginError::internal(format!(
                "no REST conversion into {other}"
            )));
        }
    })
}

/// `[start, end)` with `UNBOUNDED` (or `NULL`) for open ends, as two cells.
fn parse_range(text: &str) -> Option<(Value, Value)> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(')')?;
    let (start, end) = inner.split_once(',')?;
    let cell = |s: &str| {
        let s = s.trim();
        if s.eq_ignore_ascii_case("UNBOUNDED") || s.eq_ignore_ascii_case("NULL") {
            Value::Null
        } else {
            Value::String(s.to_owned())
        }
    };
    Some((cell(start), cell(end)))
}

fn bad_cell(field: &BqField, cell: &Value) -> PluginError {
    let mut shown = cell.to_string();
    if shown.len() > 80 {
        let mut cut = 80;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    let kind = match field.sql_type() {
        "" => field.kind.as_str(),
        "NUMERIC" => "NUMERIC that fits Decimal128(38, 9)",
        // BigQuery's range reaches 5.7896…E+38; Arrow's Decimal256(76, 38) stops below 1E+38.
        "BIGNUMERIC" => {
            "BIGNUMERIC that fits Decimal256(76, 38) (at most 38 digits before the point)"
        }
        other => other,
    };
    PluginError::data(format!(
        "the value {shown} of `{}` is not a valid {kind}",
        field.name
    ))
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch")
}

/// `YYYY-MM-DD` as days since the epoch.
pub fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from(date.signed_duration_since(epoch()).num_days()).ok()
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight.
pub fn parse_time(text: &str) -> Option<i64> {
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    time.signed_duration_since(NaiveTime::MIN)
        .num_microseconds()
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.ffffff]` as microseconds since the epoch (no time zone).
pub fn parse_datetime(text: &str) -> Option<i64> {
    let dt = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            parse_date(text).map(|_| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .expect("checked")
                    .and_time(NaiveTime::MIN)
            })
        })?;
    Some(dt.and_utc().timestamp_micros())
}

/// A TIMESTAMP cell: integer microseconds (`useInt64Timestamp`), or seconds as a decimal or
/// in E notation (`1.704164645123456E9`), read exactly, without going through a float.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(micros) = text.parse::<i64>() {
        return Some(micros);
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // seconds = digits × 10^(exponent − fraction digits); micros = that × 10^6.
    let digits = format!("{whole}{fraction}");
    let shift = exponent + 6 - i32::try_from(fraction.len()).ok()?;
    let significant = digits.trim_start_matches('0');
    let mut value: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?;
    } else {
        let divisor = 10i128
            .checked_pow(shift.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Round to the nearest microsecond (REST floats may carry a trailing digit).
        value = (value + divisor / 2) / divisor;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// The offset an incremental run continues after, as a standard SQL literal of the key's
/// type, for a `WHERE key > …` restriction.
pub fn offset_literal(field: &BqField, offset: &Value) -> Result<String> {
    let text = match offset {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(PluginError::data(format!(
                "the offset {other} cannot be compared with the replication key `{}`",
                field.name
            )));
        }
    };
    let bad = |why: &str| {
        PluginError::data(format!(
            "the offset {offset} does not fit the replication key `{}` ({}): {why}",
            field.name,
            field.sql_type()
        ))
    };
    if field.repeated() {
        return Err(bad("a repeated column cannot be a replication key"));
    }
    Ok(match field.sql_type() {
        "INT64" => text
            .parse::<i64>()
            .map_err(|_| bad("expected an integer"))?
            .to_string(),
        "FLOAT64" => {
            let v = text.parse::<f64>().map_err(|_| bad("expected a number"))?;
            if !v.is_finite() {
                return Err(bad("expected a finite number"));
            }
            format!("{v:?}")
        }
        kind @ ("NUMERIC" | "BIGNUMERIC") => {
            arrow_cast::parse::parse_decimal::<Decimal256Type>(&text, 76, 38)
                .map_err(|_| bad("expected a decimal number"))?;
            format!("{kind} '{text}'")
        }
        "STRING" => quote(&text),
        "DATE" => {
            parse_date(&text).ok_or_else(|| bad("expected a date like 2026-03-01"))?;
            format!("DATE '{text}'")
        }
        "DATETIME" => {
            let micros = parse_datetime(&text).ok_or_else(|| bad("expected a date and time"))?;
            format!("DATETIME '{}'", format_micros(micros, false))
        }
        "TIMESTAMP" => {
            let micros = timestamp_offset(&text)
                .ok_or_else(|| bad("expected a UTC time like 2026-03-01T12:00:00.5Z"))?;
            format!("TIMESTAMP '{}'", format_micros(micros, true))
        }
        other => {
            return Err(bad(&format!(
                "a {other} column cannot be a replication key"
            )));
        }
    })
}

/// A TIMESTAMP offset: RFC 3339, or a date and time taken as UTC.
fn timestamp_offset(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.timestamp_micros());
    }
    parse_datetime(text.trim_end_matches('Z').trim_end_matches(" UTC"))
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff` (with `+00` for UTC).
fn format_micros(micros: i64, utc: bool) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .unwrap_or_default();
    let text = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    if utc { format!("{text}+00") } else { text }
}

/// A standard SQL string literal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A column name as a quoted identifier (`` `name` ``), nested paths kept as `a.b`.
pub fn ident(name: &str) -> String {
    name.split('.')
        .map(|part| format!("`{}`", part.replace('\\', "\\\\").replace('`', "\\`")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn fields(value: Value) -> Vec<BqField> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_type_maps_to_the_storage_api_arrow_type() {
        let f = fields(json!([
            {"name": "i", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "n", "type": "NUMERIC"},
            {"name": "bn", "type": "BIGNUMERIC"},
            {"name": "f", "type": "FLOAT"},
            {"name": "b", "type": "BOOLEAN"},
            {"name": "s", "type": "STRING"},
            {"name": "by", "type": "BYTES"},
            {"name": "d", "type": "DATE"},
            {"name": "dt", "type": "DATETIME"},
            {"name": "t", "type": "TIME"},
            {"name": "ts", "type": "TIMESTAMP"},
            {"name": "j", "type": "JSON"},
            {"name": "g", "type": "GEOGRAPHY"},
            {"name": "a", "type": "INT64", "mode": "REPEATED"},
            {"name": "st", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]},
            {"name": "r", "type": "RANGE", "rangeElementType": {"type": "DATE"}}
        ]));
        let schema = arrow_schema(&f).unwrap();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "{}{}",
                    f.data_type(),
                    if f.is_nullable() { "" } else { "!" }
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                "Int64!",
                "Decimal128(38, 9)",
                "Decimal256(76, 38)",
                "Float64",
                "Boolean",
                "Utf8",
                "Binary",
                "Date32",
                "Timestamp(µs)",
                "Time64(µs)",
                "Timestamp(µs, \"UTC\")",
                "Utf8",
                "Utf8",
                "List(Int64)",
                "Struct(\"x\": Utf8)",
                "Struct(\"start\": Date32, \"end\": Date32)",
            ]
        );
        let unknown = fields(json!([{"name": "x", "type": "WIDGET"}]));
        let err = arrow_schema(&unknown).unwrap_err();
        assert!(
            err.message().contains("`x`") && err.message().contains("WIDGET"),
            "{err}"
        );
    }

    #[test]
    fn rest_cells_convert_exactly() {
        let f = fields(json!([
            {"name": "i", "type": "INT64"},
            {"name": "n", "type": "NUMERIC"},
            {"name": "bn", "type": "BIGNUMERIC"},
            {"name": "f", "type": "FLOAT64"},
            {"name": "raw", "type": "BYTES"},
            {"name": "d", "type": "DATE"},
            {"name": "ts", "type": "TIMESTAMP"},
            {"name": "a", "type": "STRING", "mode": "REPEATED"},
            {"name": "st", "type": "RECORD", "fields": [
                {"name": "x", "type": "INT64"},
                {"name": "z", "type": "INT64", "mode": "REPEATED"}
            ]},
            {"name": "r", "type": "RANGE", "rangeElementType": {"type": "DATE"}}
        ]));
        let schema = arrow_schema(&f).unwrap();
        let rows = vec![
            json!({"f": [
                {"v": "-9223372036854775808"}, {"v": "-99999999999999999999999999999.999999999"},
                {"v": "-99999999999999999999999999999999999999.99999999999999999999999999999999999999"},
                {"v": "-Infinity"}, {"v": "AP8="}, {"v": "0001-01-01"},
                {"v": "1.704164645123456E9"}, {"v": [{"v": "a"}, {"v": "😀"}]},
                {"v": {"f": [{"v": "7"}, {"v": [{"v": "1"}, {"v": "2"}]}]}},
                {"v": "[2024-01-01, UNBOUNDED)"}
            ]}),
            json!({"f": [
                {"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": null},
                {"v": "-2208988800000000"}, {"v": []}, {"v": null}, {"v": null}
            ]}),
        ];
        let batch = rows_to_batch(&f, &schema, &rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>().value(0),
            i64::MIN
        );
        assert!(batch.column(0).is_null(1));
        assert_eq!(
            batch.column(1).as_primitive::<Decimal128Type>().value(0),
            -99_999_999_999_999_999_999_999_999_999_999_999_999i128
        );
        let bn = batch.column(2).as_primitive::<Decimal256Type>();
        assert_eq!(
            bn.value_as_string(0),
            "-99999999999999999999999999999999999999.99999999999999999999999999999999999999"
        );
        assert_eq!(batch.column(4).as_binary::<i32>().value(0), [0u8, 255]);
        assert_eq!(
            batch.column(5).as_primitive::<Date32Type>().value(0),
            -719_162
        );
        let ts = batch.column(6).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_704_164_645_123_456);
        assert_eq!(ts.value(1), -2_208_988_800_000_000);
        let a = batch.column(7).as_list::<i32>();
        assert_eq!(a.value(0).as_string::<i32>().value(1), "😀");
        assert_eq!(a.value(1).len(), 0);
        assert!(!a.is_null(1));
        let st = batch.column(8).as_struct();
        assert_eq!(st.column(0).as_primitive::<Int64Type>().value(0), 7);
        assert_eq!(st.column(1).as_list::<i32>().value(0).len(), 2);
        assert!(st.is_null(1));
        let r = batch.column(9).as_struct();
        assert_eq!(r.column(0).as_primitive::<Date32Type>().value(0), 19_723);
        assert!(r.column(1).is_null(0));
    }

    #[test]
    fn a_bignumeric_beyond_arrow_decimal256_is_a_clear_error() {
        let f = fields(json!([{"name": "big", "type": "BIGNUMERIC"}]));
        let schema = arrow_schema(&f).unwrap();
        let max = "578960446186580977117854925043439539266.34992332820282019728792003956564819967";
        let err = rows_to_batch(&f, &schema, &[json!({"f": [{"v": max}]})]).unwrap_err();
        assert!(
            err.message().contains("`big`") && err.message().contains("Decimal256(76, 38)"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_cell_names_the_column_and_the_value() {
        let f = fields(json!([{"name": "amount", "type": "NUMERIC"}]));
        let schema = arrow_schema(&f).unwrap();
        let err = rows_to_batch(&f, &schema, &[json!({"f": [{"v": "12x"}]})]).unwrap_err();
        assert!(
            err.message().contains("\"12x\"") && err.message().contains("`amount`"),
            "{err}"
        );
    }

    #[test]
    fn timestamps_read_exactly_in_every_rest_form() {
        assert_eq!(
            parse_timestamp("1704164645123456"),
            Some(1_704_164_645_123_456)
        );
        assert_eq!(
            parse_timestamp("1.704164645123456E9"),
            Some(1_704_164_645_123_456)
        );
        assert_eq!(
            parse_timestamp("1.704164645E9"),
            Some(1_704_164_645_000_000)
        );
        assert_eq!(
            parse_timestamp("-2.2089888E9"),
            Some(-2_208_988_800_000_000)
        );
        assert_eq!(parse_timestamp("1704164645.5"), Some(1_704_164_645_500_000));
        assert_eq!(parse_timestamp("E9"), None);
        assert_eq!(parse_timestamp("0.0"), Some(0));
        assert_eq!(parse_timestamp(&format!("1.{}E9", "7".repeat(45))), None);
        assert_eq!(parse_timestamp("x"), None);
    }

    #[test]
    fn offsets_become_typed_literals_and_hostile_text_is_quoted() {
        let key = |kind: &str| BqField {
            name: "k".into(),
            kind: kind.into(),
            mode: None,
            fields: Vec::new(),
            range_element_type: None,
        };
        assert_eq!(offset_literal(&key("INTEGER"), &json!(42)).unwrap(), "42");
        assert_eq!(offset_literal(&key("INT64"), &json!("42")).unwrap(), "42");
        assert!(offset_literal(&key("INT64"), &json!("1 OR 1=1")).is_err());
        assert_eq!(
            offset_literal(&key("STRING"), &json!("it's \\ done")).unwrap(),
            r"'it\'s \\ done'"
        );
        assert_eq!(
            offset_literal(&key("NUMERIC"), &json!("10.25")).unwrap(),
            "NUMERIC '10.25'"
        );
        assert!(offset_literal(&key("NUMERIC"), &json!("1'; DROP")).is_err());
        assert_eq!(
            offset_literal(&key("TIMESTAMP"), &json!("2024-01-02T03:04:05.5Z")).unwrap(),
            "TIMESTAMP '2024-01-02 03:04:05.500000+00'"
        );
        assert_eq!(
            offset_literal(&key("TIMESTAMP"), &json!("2024-01-02T03:04:05.123456")).unwrap(),
            "TIMESTAMP '2024-01-02 03:04:05.123456+00'"
        );
        assert_eq!(
            offset_literal(&key("DATETIME"), &json!("2024-01-02 03:04:05")).unwrap(),
            "DATETIME '2024-01-02 03:04:05.000000'"
        );
        assert_eq!(
            offset_literal(&key("DATE"), &json!("2024-01-02")).unwrap(),
            "DATE '2024-01-02'"
        );
        assert!(offset_literal(&key("DATE"), &json!("2024-13-02")).is_err());
        assert!(offset_literal(&key("BOOL"), &json!(true)).is_err());
        assert_eq!(ident("a`b.c"), r"`a\`b`.`c`");
    }
}
