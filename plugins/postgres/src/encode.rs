//! Arrow columns in PostgreSQL's binary COPY format: the type each Arrow type is staged as, and
//! the encoding of its values. Every conversion is exact; one that would change a value (a
//! nanosecond a microsecond type cannot hold) is an error naming the column.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, DecimalType, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};

use crate::error::{Error, Result};

/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// How a column is staged: its PostgreSQL type and the element oid when it is an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The column's type in the staging table.
    pub pg_type: String,
    /// The type's oid (of a scalar).
    oid: u32,
    /// The Arrow type the column is cast to before it is encoded.
    arrow: DataType,
    /// For a list, how its elements are staged.
    item: Option<Box<Staged>>,
}

fn scalar(pg_type: &str, oid: u32, arrow: DataType) -> Staged {
    Staged {
        pg_type: pg_type.to_owned(),
        oid,
        arrow,
        item: None,
    }
}

/// The staging of a field: `None` for a type with no exact PostgreSQL form.
pub fn staged(field: &Field) -> Option<Staged> {
    let pg_hint = field
        .metadata()
        .get(crate::columns::PG_TYPE_KEY)
        .map(String::as_str);
    Some(match field.data_type() {
        DataType::Boolean => scalar("boolean", 16, DataType::Boolean),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => {
            scalar("smallint", 21, DataType::Int16)
        }
        DataType::Int32 | DataType::UInt16 => scalar("integer", 23, DataType::Int32),
        DataType::Int64 | DataType::UInt32 => scalar("bigint", 20, DataType::Int64),
        DataType::UInt64 => scalar("numeric(20,0)", 1700, DataType::Decimal128(20, 0)),
        DataType::Float16 | DataType::Float32 => scalar("real", 700, DataType::Float32),
        DataType::Float64 => scalar("double precision", 701, DataType::Float64),
        DataType::Decimal128(p, s) => scalar(
            &format!("numeric({p},{s})"),
            1700,
            DataType::Decimal128(*p, *s),
        ),
        DataType::Decimal256(p, s) => scalar(
            &format!("numeric({p},{s})"),
            1700,
            DataType::Decimal256(*p, *s),
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            scalar("text", 25, DataType::Utf8)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            scalar("bytea", 17, DataType::Binary)
        }
        DataType::FixedSizeBinary(16) if pg_hint == Some("uuid") => {
            scalar("uuid", 2950, DataType::FixedSizeBinary(16))
        }
        DataType::FixedSizeBinary(_) => scalar("bytea", 17, DataType::Binary),
        DataType::Date32 | DataType::Date64 => scalar("date", 1082, DataType::Date32),
        DataType::Time32(_) | DataType::Time64(_) => {
            scalar("time", 1083, DataType::Time64(TimeUnit::Microsecond))
        }
        DataType::Timestamp(_, None) => scalar(
            "timestamp",
            1114,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        DataType::Timestamp(_, Some(_)) => scalar(
            "timestamp with time zone",
            1184,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        DataType::Interval(IntervalUnit::MonthDayNano) => scalar(
            "interval",
            1186,
            DataType::Interval(IntervalUnit::MonthDayNano),
        ),
        DataType::Dictionary(_, value) => {
            return staged(&Field::new(field.name(), (**value).clone(), true));
        }
        DataType::List(item) | DataType::LargeList(item) => {
            if matches!(item.data_type(), DataType::List(_) | DataType::LargeList(_)) {
                return None;
            }
            let inner = staged(item)?;
            Staged {
                pg_type: format!("{}[]", inner.pg_type),
                oid: 0,
                arrow: DataType::List(Arc::new(Field::new_list_field(inner.arrow.clone(), true))),
                item: Some(Box::new(inner)),
            }
        }
        _ => return None,
    })
}

/// The binary COPY of `batch`'s rows (header, rows, trailer), its columns staged as `staged`.
pub fn copy_data(batch: &RecordBatch, staged: &[Staged]) -> Result<Vec<u8>> {
    let schema = batch.schema();
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(staged)
        .zip(schema.fields())
        .map(|((c, s), f)| convert(c, &s.arrow).map_err(|e| bad(f.name(), &e)))
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * (8 + 12 * columns.len()) + 32);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    let width =
        i16::try_from(columns.len()).map_err(|_| Error::Data("more than 32,767 columns".into()))?;
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&width.to_be_bytes());
        for ((c, s), f) in columns.iter().zip(staged).zip(schema.fields()) {
            field(&mut out, c.as_ref(), row, s).map_err(|e| bad(f.name(), &e))?;
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

fn bad(column: &str, what: &str) -> Error {
    Error::Data(format!("column `{column}`: {what}"))
}

/// `array` as the Arrow type it is encoded from; only exact conversions.
fn convert(array: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    // Sub-microsecond time values would be cut short by a cast: refuse them.
    let nanos = match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(
            array
                .as_primitive::<arrow_array::types::TimestampNanosecondType>()
                .iter()
                .flatten()
                .find(|v| v % 1000 != 0),
        ),
        DataType::Time64(TimeUnit::Nanosecond) => Some(
            array
                .as_primitive::<arrow_array::types::Time64NanosecondType>()
                .iter()
                .flatten()
                .find(|v| v % 1000 != 0),
        ),
        _ => None,
    };
    if let Some(Some(v)) = nanos {
        return Err(format!(
            "the value {v} ns has a fraction of a microsecond, which PostgreSQL cannot hold"
        ));
    }
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(array, to, &options).map_err(|e| e.to_string())
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends one value (length and bytes, or -1 for NULL).
fn field(
    out: &mut Vec<u8>,
    c: &dyn Array,
    row: usize,
    s: &Staged,
) -> std::result::Result<(), String> {
    if c.is_null(row) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    value(out, c, row, s)
}

fn value(
    out: &mut Vec<u8>,
    c: &dyn Array,
    row: usize,
    s: &Staged,
) -> std::result::Result<(), String> {
    match c.data_type() {
        DataType::Boolean => put(out, &[c.as_boolean().value(row) as u8]),
        DataType::Int16 => put(out, &c.as_primitive::<Int16Type>().value(row).to_be_bytes()),
        DataType::Int32 => put(out, &c.as_primitive::<Int32Type>().value(row).to_be_bytes()),
        DataType::Int64 => put(out, &c.as_primitive::<Int64Type>().value(row).to_be_bytes()),
        DataType::Float32 => put(
            out,
            &c.as_primitive::<Float32Type>()
                .value(row)
                .to_bits()
                .to_be_bytes(),
        ),
        DataType::Float64 => put(
            out,
            &c.as_primitive::<Float64Type>()
                .value(row)
                .to_bits()
                .to_be_bytes(),
        ),
        DataType::Decimal128(p, sc) => {
            let text = Decimal128Type::format_decimal(
                c.as_primitive::<Decimal128Type>().value(row),
                *p,
                *sc,
            );
            put(out, &numeric(&text));
        }
        DataType::Decimal256(p, sc) => {
            let text = Decimal256Type::format_decimal(
                c.as_primitive::<Decimal256Type>().value(row),
                *p,
                *sc,
            );
            put(out, &numeric(&text));
        }
        DataType::Utf8 => {
            let v = c.as_string::<i32>().value(row);
            if v.contains('\0') {
                return Err(
                    "text with a NUL character, which PostgreSQL's text cannot hold".into(),
                );
            }
            put(out, v.as_bytes());
        }
        DataType::Binary => put(out, c.as_binary::<i32>().value(row)),
        DataType::FixedSizeBinary(_) => put(out, c.as_fixed_size_binary().value(row)),
        DataType::Date32 => {
            let d = c.as_primitive::<Date32Type>().value(row);
            let d = d
                .checked_sub(PG_EPOCH_DAYS)
                .ok_or_else(|| format!("the date {d} days after 1970 is out of range"))?;
            put(out, &d.to_be_bytes());
        }
        DataType::Time64(TimeUnit::Microsecond) => put(
            out,
            &c.as_primitive::<Time64MicrosecondType>()
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let t = c.as_primitive::<TimestampMicrosecondType>().value(row);
            let t = t
                .checked_sub(PG_EPOCH_MICROS)
                .ok_or_else(|| format!("the timestamp {t} µs after 1970 is out of range"))?;
            put(out, &t.to_be_bytes());
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = c.as_primitive::<IntervalMonthDayNanoType>().value(row);
            if v.nanoseconds % 1000 != 0 {
                return Err(format!(
                    "an interval of {} ns has a fraction of a microsecond",
                    v.nanoseconds
                ));
            }
            let mut b = Vec::with_capacity(16);
            b.extend_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
            b.extend_from_slice(&v.days.to_be_bytes());
            b.extend_from_slice(&v.months.to_be_bytes());
            put(out, &b);
        }
        DataType::List(_) => {
            let list = c.as_list::<i32>();
            let items = list.value(row);
            let item = s.item.as_deref().ok_or("a list without an element type")?;
            let mut b = Vec::with_capacity(20 + items.len() * 8);
            let has_null = items.null_count() > 0;
            if items.is_empty() {
                b.extend_from_slice(&0i32.to_be_bytes());
                b.extend_from_slice(&0i32.to_be_bytes());
                b.extend_from_slice(&item.oid.to_be_bytes());
            } else {
                b.extend_from_slice(&1i32.to_be_bytes());
                b.extend_from_slice(&(has_null as i32).to_be_bytes());
                b.extend_from_slice(&item.oid.to_be_bytes());
                b.extend_from_slice(&(items.len() as i32).to_be_bytes());
                b.extend_from_slice(&1i32.to_be_bytes());
                for i in 0..items.len() {
                    field(&mut b, items.as_ref(), i, item)?;
                }
            }
            put(out, &b);
        }
        other => return Err(format!("no encoding for {other}")),
    }
    Ok(())
}

/// A decimal's text (`-123.45`) as a binary `numeric`.
fn numeric(text: &str) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let dscale = frac.len() as u16;
    // Base-10000 groups aligned on the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let int_text = format!("{}{int}", "0".repeat(int_pad));
    let frac_text = format!("{frac}{}", "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
            .collect()
    };
    let mut groups = group(&int_text);
    let int_groups = groups.len() as i16;
    groups.extend(group(&frac_text));
    let mut weight = int_groups - 1;
    // Leading zero groups move the weight; trailing ones are dropped.
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..lead);
    weight -= lead as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(
        &(if negative && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_binary_numerics() {
        // 123.45: 1 group before the point (123), 1 after (4500), scale 2.
        assert_eq!(
            numeric("123.45"),
            [0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]
        );
        // -0.001: weight -1, digit 10, negative, scale 3.
        assert_eq!(numeric("-0.001"), [0, 1, 0xff, 0xff, 0x40, 0, 0, 3, 0, 10]);
        // 0.00: no digits.
        assert_eq!(numeric("0.00"), [0, 0, 0, 0, 0, 0, 0, 2]);
        // 10000: weight 1, digit 1.
        assert_eq!(numeric("10000"), [0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
    }
}
