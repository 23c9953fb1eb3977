//! Arrow batches to what the server loads: tab-separated text for `LOAD DATA LOCAL INFILE`
//! (escaped with `\`, NULL as `\N`), or statement parameters for multi-row `INSERT`.
//!
//! Values are rendered exactly: integers and decimals digit for digit, floats in their
//! shortest round-trip form, timestamps to the microsecond (a nanosecond timestamp that would
//! lose digits is an error), binary data as hex for binary columns.

use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int64Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use mysql_async::Value;

use crate::error::{Error, Result};

/// How a staging column takes a value from the text stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Directly.
    Plain,
    /// Hex text, through `UNHEX(@var)` (binary and geometry columns).
    Hex,
    /// A number, through `CAST(@var AS UNSIGNED)` (BIT columns).
    Bit,
}

impl Slot {
    /// The slot for a column of `data_type` (`information_schema.COLUMNS.DATA_TYPE`).
    pub fn for_column(data_type: &str) -> Self {
        match data_type {
            "bit" => Self::Bit,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => Self::Hex,
            _ => Self::Plain,
        }
    }
}

enum Col {
    Bool(ArrayRef),
    Int(ArrayRef),
    UInt(ArrayRef),
    F32(ArrayRef),
    F64(ArrayRef),
    D128(ArrayRef, i8),
    D256(ArrayRef, i8),
    Utf8(ArrayRef),
    Binary(ArrayRef),
    Date(ArrayRef),
    /// Microseconds since the epoch.
    Micros(ArrayRef),
    /// Microseconds of a duration or time of day.
    Clock(ArrayRef),
}

/// Renders one batch's cells.
pub struct Encoder {
    cols: Vec<(Col, Slot, String)>,
    rows: usize,
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    arrow_cast::cast(array, to).map_err(|e| Error::Data(format!("cannot convert: {e}")))
}

/// Scales times to microseconds, refusing to drop digits.
fn to_micros(array: &ArrayRef, unit: TimeUnit, name: &str) -> Result<ArrayRef> {
    let values = cast(array, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    let scale = |factor: i64| -> Result<arrow_array::Int64Array> {
        if let Some(v) = values
            .iter()
            .flatten()
            .find(|v| v.checked_mul(factor).is_none())
        {
            return Err(Error::Data(format!(
                "column `{name}` holds {v}, which is out of MySQL's date and time range"
            )));
        }
        Ok(values.unary(|v| v * factor))
    };
    let scaled: arrow_array::Int64Array = match unit {
        TimeUnit::Second => scale(1_000_000)?,
        TimeUnit::Millisecond => scale(1_000)?,
        TimeUnit::Microsecond => values.clone(),
        TimeUnit::Nanosecond => {
            if let Some(v) = values.iter().flatten().find(|v| v % 1_000 != 0) {
                return Err(Error::Data(format!(
                    "column `{name}` holds {v} ns, which MySQL cannot store (it keeps \
                     microseconds); round it in a transform"
                )));
            }
            values.unary(|v| v / 1_000)
        }
    };
    Ok(Arc::new(scaled))
}

impl Encoder {
    /// Prepares `batch`; `slots` gives each column's slot, in batch order.
    pub fn new(batch: &RecordBatch, slots: &[Slot]) -> Result<Self> {
        let mut cols = Vec::with_capacity(batch.num_columns());
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let a = batch.column(i);
            let name = field.name().clone();
            let col = match field.data_type() {
                DataType::Null => Col::Utf8(cast(a, &DataType::Utf8)?),
                DataType::Boolean => Col::Bool(a.clone()),
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                    Col::Int(cast(a, &DataType::Int64)?)
                }
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                    Col::UInt(cast(a, &DataType::UInt64)?)
                }
                DataType::Float16 | DataType::Float32 => Col::F32(cast(a, &DataType::Float32)?),
                DataType::Float64 => Col::F64(a.clone()),
                DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => {
                    Col::D128(cast(a, &DataType::Decimal128(*p, *s))?, *s)
                }
                DataType::Decimal128(_, s) => Col::D128(a.clone(), *s),
                DataType::Decimal256(_, s) => Col::D256(a.clone(), *s),
                DataType::Utf8 => Col::Utf8(a.clone()),
                DataType::LargeUtf8 | DataType::Utf8View => Col::Utf8(cast(a, &DataType::Utf8)?),
                DataType::Binary => Col::Binary(a.clone()),
                DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                    Col::Binary(cast(a, &DataType::Binary)?)
                }
                DataType::Date32 => Col::Date(a.clone()),
                DataType::Date64 => Col::Date(cast(a, &DataType::Date32)?),
                DataType::Timestamp(unit, _) => Col::Micros(to_micros(a, *unit, &name)?),
                DataType::Time32(unit) | DataType::Time64(unit) | DataType::Duration(unit) => {
                    Col::Clock(to_micros(a, *unit, &name)?)
                }
                other => {
                    return Err(Error::Config(format!(
                        "column `{name}` has the Arrow type {other}, which MySQL cannot store; \
                         cast or drop it in a transform"
                    )));
                }
            };
            if let Col::F32(x) | Col::F64(x) = &col {
                let bad = match &col {
                    Col::F32(_) => x
                        .as_primitive::<Float32Type>()
                        .iter()
                        .flatten()
                        .any(|v| !v.is_finite()),
                    _ => x
                        .as_primitive::<Float64Type>()
                        .iter()
                        .flatten()
                        .any(|v| !v.is_finite()),
                };
                if bad {
                    return Err(Error::Data(format!(
                        "column `{name}` holds NaN or infinity, which MySQL cannot store"
                    )));
                }
            }
            cols.push((col, slots.get(i).copied().unwrap_or(Slot::Plain), name));
        }
        Ok(Self {
            cols,
            rows: batch.num_rows(),
        })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends rows `range` as LOAD DATA text.
    pub fn write_text(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        let mut cell = Vec::with_capacity(64);
        for row in range {
            for (i, (col, slot, _)) in self.cols.iter().enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                cell.clear();
                if !render(col, row, *slot, &mut cell) {
                    out.extend_from_slice(b"\\N");
                    continue;
                }
                escape_into(&cell, out);
            }
            out.push(b'\n');
        }
    }

    /// Whether every column gives parameters of one type (or NULL) in every row, as MariaDB's
    /// bulk execution needs: the types travel once per request. Only a BIT column fed from
    /// something other than integers or booleans can change type from row to row.
    pub fn fixed_param_types(&self) -> bool {
        self.cols.iter().all(|(col, slot, _)| {
            *slot != Slot::Bit || matches!(col, Col::Bool(_) | Col::Int(_) | Col::UInt(_))
        })
    }

    /// The parameters of one row.
    pub fn row_params(&self, row: usize) -> Vec<Value> {
        self.cols
            .iter()
            .map(|(col, slot, _)| param(col, row, *slot))
            .collect()
    }

    /// Appends the parameters of rows `range` for a multi-row INSERT.
    pub fn write_params(&self, range: std::ops::Range<usize>, out: &mut Vec<Value>) {
        for row in range {
            for (col, slot, _) in &self.cols {
                out.push(param(col, row, *slot));
            }
        }
    }
}

fn escape_into(cell: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in cell.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"\\0",
            _ => continue,
        };
        out.extend_from_slice(&cell[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&cell[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// Writes an unscaled decimal with `scale` digits after the point.
fn decimal_into(digits: &str, scale: i8, out: &mut Vec<u8>) {
    let (negative, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    if negative {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits.as_bytes());
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(whole.as_bytes());
        out.push(b'.');
        out.extend_from_slice(fraction.as_bytes());
    }
}

fn date_into(days: i32, out: &mut Vec<u8>) {
    // Out-of-range days are refused before rendering (see `Encoder::new`).
    let date = days
        .checked_add(719_163)
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .unwrap_or(chrono::NaiveDate::MAX);
    let _ = write!(out, "{}", date.format("%Y-%m-%d"));
}

fn micros_into(v: i64, out: &mut Vec<u8>) {
    let days = v.div_euclid(86_400_000_000);
    let rest = v.rem_euclid(86_400_000_000);
    date_into(days as i32, out);
    out.push(b' ');
    clock_into(rest, out);
}

fn clock_into(v: i64, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    let v = v.unsigned_abs();
    let (secs, us) = (v / 1_000_000, v % 1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if us != 0 {
        let _ = write!(out, ".{us:06}");
    }
}

/// Shortest round-trip text, in exponent form for very large or small magnitudes.
fn float_into(v: f64, out: &mut Vec<u8>) {
    if v.abs() >= 1e16 || (v != 0.0 && v.abs() < 1e-5) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Renders one cell as text; `false` for NULL.
fn render(col: &Col, row: usize, slot: Slot, out: &mut Vec<u8>) -> bool {
    let array = match col {
        Col::Bool(a)
        | Col::Int(a)
        | Col::UInt(a)
        | Col::F32(a)
        | Col::F64(a)
        | Col::D128(a, _)
        | Col::D256(a, _)
        | Col::Utf8(a)
        | Col::Binary(a)
        | Col::Date(a)
        | Col::Micros(a)
        | Col::Clock(a) => a,
    };
    if array.is_null(row) {
        return false;
    }
    match col {
        Col::Bool(a) => out.push(if a.as_boolean().value(row) {
            b'1'
        } else {
            b'0'
        }),
        Col::Int(a) => {
            let _ = write!(out, "{}", a.as_primitive::<Int64Type>().value(row));
        }
        Col::UInt(a) => {
            let _ = write!(out, "{}", a.as_primitive::<UInt64Type>().value(row));
        }
        Col::F32(a) => {
            // The shortest form of the f32 itself, not of its widened f64.
            let v = a.as_primitive::<Float32Type>().value(row);
            if v.abs() >= 1e16 || (v != 0.0 && v.abs() < 1e-5) {
                let _ = write!(out, "{v:e}");
            } else {
                let _ = write!(out, "{v}");
            }
        }
        Col::F64(a) => float_into(a.as_primitive::<Float64Type>().value(row), out),
        Col::D128(a, s) => decimal_into(
            &a.as_primitive::<Decimal128Type>().value(row).to_string(),
            *s,
            out,
        ),
        Col::D256(a, s) => decimal_into(
            &a.as_primitive::<Decimal256Type>().value(row).to_string(),
            *s,
            out,
        ),
        Col::Utf8(a) => {
            let v = a.as_string::<i32>().value(row).as_bytes();
            if slot == Slot::Hex {
                hex_into(v, out);
            } else {
                out.extend_from_slice(v);
            }
        }
        Col::Binary(a) => {
            let v = a.as_binary::<i32>().value(row);
            if slot == Slot::Hex {
                hex_into(v, out);
            } else {
                out.extend_from_slice(v);
            }
        }
        Col::Date(a) => date_into(
            a.as_primitive::<arrow_array::types::Date32Type>()
                .value(row),
            out,
        ),
        Col::Micros(a) => micros_into(a.as_primitive::<Int64Type>().value(row), out),
        Col::Clock(a) => clock_into(a.as_primitive::<Int64Type>().value(row), out),
    }
    true
}

/// One cell as a statement parameter.
fn param(col: &Col, row: usize, slot: Slot) -> Value {
    let mut text = Vec::new();
    match col {
        Col::Int(a) if !a.is_null(row) => Value::Int(a.as_primitive::<Int64Type>().value(row)),
        Col::UInt(a) if !a.is_null(row) => Value::UInt(a.as_primitive::<UInt64Type>().value(row)),
        Col::F64(a) if !a.is_null(row) => Value::Double(a.as_primitive::<Float64Type>().value(row)),
        Col::F32(a) if !a.is_null(row) => Value::Float(a.as_primitive::<Float32Type>().value(row)),
        Col::Bool(a) if !a.is_null(row) => Value::Int(i64::from(a.as_boolean().value(row))),
        _ if slot == Slot::Bit => {
            // BIT columns take numbers, not text.
            if render(col, row, Slot::Plain, &mut text) {
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .map_or(Value::Bytes(text), Value::UInt)
            } else {
                Value::NULL
            }
        }
        _ => {
            // Binary columns take raw bytes as parameters, not hex.
            let slot = if slot == Slot::Hex { Slot::Plain } else { slot };
            if render(col, row, slot, &mut text) {
                Value::Bytes(text)
            } else {
                Value::NULL
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BinaryArray, BooleanArray, Decimal128Array, Float64Array, StringArray,
        TimestampNanosecondArray,
    };
    use arrow_schema::{Field, Schema};

    fn text(batch: &RecordBatch, slots: &[Slot]) -> String {
        let e = Encoder::new(batch, slots).unwrap();
        let mut out = Vec::new();
        e.write_text(0..e.rows(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_escaped_and_exact() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Decimal128(12, 2), true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("x", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a\tb\\c\nd"),
                    None,
                    Some("😀"),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(-5), Some(123_456), None])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(vec![Some(0.1), Some(1e300), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(BinaryArray::from_opt_vec(vec![
                    Some(&[0u8, 255][..]),
                    None,
                    Some(b"\t"),
                ])),
            ],
        )
        .unwrap();
        let slots = [
            Slot::Plain,
            Slot::Plain,
            Slot::Plain,
            Slot::Plain,
            Slot::Hex,
        ];
        assert_eq!(
            text(&batch, &slots),
            "a\\tb\\\\c\\nd\t-0.05\t0.1\t1\t00ff\n\
             \\N\t1234.56\t1e300\t0\t\\N\n\
             😀\t\\N\t\\N\t\\N\t09\n"
        );
    }

    #[test]
    fn nanoseconds_that_would_be_lost_are_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        )]));
        let whole = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(TimestampNanosecondArray::from(vec![
                1_700_000_000_123_456_000,
            ]))],
        )
        .unwrap();
        assert_eq!(text(&whole, &[Slot::Plain]), "2023-11-14 22:13:20.123456\n");
        let lossy = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampNanosecondArray::from(vec![1]))],
        )
        .unwrap();
        assert!(Encoder::new(&lossy, &[Slot::Plain]).is_err());
    }

    #[test]
    fn decimals_render_with_their_scale() {
        let mut out = Vec::new();
        decimal_into("5", 3, &mut out);
        out.push(b' ');
        decimal_into("-12345", 2, &mut out);
        out.push(b' ');
        decimal_into("7", 0, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "0.005 -123.45 7");
    }
}
