//! Order-independent checksums of rows, for `verify: "checksum"`: the same figure computed by a
//! source's or a target's own system (in SQL) and by the host from the Arrow batches it moves.
//!
//! A [`Checksum`] is the number of rows and the sum, modulo 2⁶⁴, of one 64-bit hash per row.
//! A sum does not depend on the rows' order, adds up over batches, partitions and resumed runs,
//! and changes when a row is lost, repeated or altered.
//!
//! # The encoding (version 1)
//!
//! A row's hash is the first 8 bytes, read big-endian, of the MD5 digest of the row's text: for
//! each column in order, `N` for a null; for text, binary and nested values, the canonical text
//! preceded by its length in bytes and a colon (`5:hello`); for the others (numbers, booleans,
//! dates and times, whose texts hold only digits, `-` and `.`), the canonical text followed by
//! a semicolon (`42;`). A value's canonical text depends on its Arrow type's family, not on its
//! width, so that a value keeps its text when a system stores it in a wider column:
//!
//! | Arrow type | canonical text |
//! |---|---|
//! | Boolean | `1`, `0` |
//! | integers | decimal (`-42`) |
//! | Float16/32/64 | the shortest text that reads back as the same double (a Float32 is widened to a double first), in fixed notation, rounded half away from zero to 30 decimals, trailing zeros and point removed (`0.30000000000000004`, `100`, `-0` as `0`); beyond ±10³⁵ the sign and 35 nines, a point and 30 nines; NaN `nan`, infinities `inf`, `-inf` |
//! | Decimal(p, s) | fixed notation, trailing zeros of the fraction and the point removed (`1.5` for `1.50`) |
//! | Utf8, Binary (all sizes and views) | the bytes |
//! | Date32 | days since 1970-01-01 |
//! | Date64 | milliseconds since 1970-01-01 |
//! | Timestamp (any unit and time zone), Time32/64, Duration | microseconds (since the epoch in UTC, since midnight, or in all), with a decimal fraction for nanoseconds that are not whole microseconds (`1.5`) |
//! | Dictionary | its value's text |
//! | List, LargeList, FixedSizeList | `[`, each item encoded as a column is, `]` |
//! | Struct | `{`, each field encoded as a column is, `}` |
//! | Map | its list of entries |
//!
//! Other types (intervals, unions) have no encoding: [`Checksum::of_batch`] says which column.
//!
//! In MariaDB or MySQL one row's hash is
//! `CAST(CONV(LEFT(MD5(CONCAT(e₁, e₂, …)), 16), 16, 10) AS UNSIGNED)` with
//! `eᵢ = IFNULL(CONCAT(LENGTH(bᵢ), ':', bᵢ), 'N')` for a text `bᵢ` (as a binary string) and
//! `eᵢ = IFNULL(CONCAT(tᵢ, ';'), 'N')` for the canonical text `tᵢ` of a number (for a DOUBLE,
//! `CAST(x AS DECIMAL(65,30))` with trailing zeros and point trimmed: the server converts a
//! double to a decimal through its shortest text, as the encoding does). The `mysql` plugin
//! builds these statements.

use std::fmt;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, DecimalType, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, TimeUnit};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Rows and the wrapping sum of their hashes: equal for equal multisets of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum {
    /// The number of rows.
    pub rows: u64,
    /// The sum of the rows' hashes, modulo 2⁶⁴.
    pub sum: u64,
}

impl Checksum {
    /// Adds another set of rows.
    pub fn add(&mut self, other: Checksum) {
        self.rows += other.rows;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// Adds one row's hash.
    pub fn add_row(&mut self, hash: u64) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// A checksum from a row count and a sum of row hashes of any size (a SQL `SUM` over
    /// unsigned 64-bit hashes, as text), reduced modulo 2⁶⁴.
    pub fn from_sum_text(rows: u64, sum: &str) -> Option<Self> {
        let sum = sum.trim();
        let sum = if sum.is_empty() {
            0
        } else {
            // The integer part of a DECIMAL, as a server may print `123.0`.
            let digits = sum.split('.').next().unwrap_or(sum);
            let mut value: u64 = 0;
            for b in digits.bytes() {
                if !b.is_ascii_digit() {
                    return None;
                }
                value = value.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            }
            value
        };
        Some(Self { rows, sum })
    }

    /// The checksum of every row a stream gives (a source reading its own partition again).
    pub fn of_stream(stream: &mut dyn crate::BatchStream) -> crate::Result<Self> {
        let mut checksum = Self::default();
        while let Some(batch) = stream.next_batch()? {
            checksum.add(Self::of_batch(&batch).map_err(crate::PluginError::data)?);
        }
        Ok(checksum)
    }

    /// The checksum of a batch's rows.
    pub fn of_batch(batch: &RecordBatch) -> Result<Self, UnsupportedType> {
        let mut checksum = Self::default();
        let encoders = batch
            .columns()
            .iter()
            .zip(batch.schema().fields())
            .map(|(column, field)| {
                check_type(column.data_type()).map_err(|data_type| UnsupportedType {
                    column: field.name().clone(),
                    data_type,
                })?;
                Ok(column.clone())
            })
            .collect::<Result<Vec<ArrayRef>, UnsupportedType>>()?;
        let mut row = Vec::with_capacity(256);
        let mut text = Vec::with_capacity(64);
        for i in 0..batch.num_rows() {
            row.clear();
            for column in &encoders {
                encode_field(column.as_ref(), i, &mut row, &mut text);
            }
            checksum.add_row(row_hash(&row));
        }
        Ok(checksum)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.sum)
    }
}

/// A column whose Arrow type has no checksum encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}` has the type {data_type}, which has no checksum encoding")]
pub struct UnsupportedType {
    /// The column's name.
    pub column: String,
    /// Its type.
    pub data_type: DataType,
}

/// The hash of one row's encoded text: the first 8 bytes of its MD5 digest, big-endian.
pub fn row_hash(row: &[u8]) -> u64 {
    let digest = Md5::digest(row);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `Ok` when every value of `data_type` has an encoding; otherwise the type that has none.
fn check_type(data_type: &DataType) -> Result<(), DataType> {
    match data_type {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(..)
        | DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
        | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond)
        | DataType::Duration(_) => Ok(()),
        DataType::Dictionary(_, values) => check_type(values),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => check_type(f.data_type()),
        DataType::Struct(fields) => fields.iter().try_for_each(|f| check_type(f.data_type())),
        other => Err(other.clone()),
    }
}

/// Whether values of `data_type` have texts of digits, `-` and `.` only (numbers, booleans,
/// dates and times), which a semicolon ends; other texts are preceded by their length.
pub fn is_delimited(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => is_delimited(values),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..)
        | DataType::Struct(_) => false,
        // NaN and infinities read as `nan`, `inf`, `-inf`: free of `;` and `:` too.
        _ => true,
    }
}

/// Appends the encoding of value `i` of `column` as one field of a row: `N`; the canonical
/// text and a semicolon; or the text's length, a colon and the text.
fn encode_field(column: &dyn Array, i: usize, row: &mut Vec<u8>, text: &mut Vec<u8>) {
    use std::io::Write;
    if column.is_null(i) {
        row.push(b'N');
        return;
    }
    if is_delimited(column.data_type()) {
        canonical_text(column, i, row);
        row.push(b';');
        return;
    }
    text.clear();
    canonical_text(column, i, text);
    let _ = write!(row, "{}:", text.len());
    row.extend_from_slice(text);
}

/// Appends the canonical text of the (non-null) value `i` of `column`.
fn canonical_text(column: &dyn Array, i: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", column.as_primitive::<$t>().value(i));
        }};
    }
    match column.data_type() {
        DataType::Null => {}
        DataType::Boolean => out.push(if column.as_boolean().value(i) {
            b'1'
        } else {
            b'0'
        }),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float16 => {
            float_text(column.as_primitive::<Float16Type>().value(i).to_f64(), out)
        }
        DataType::Float32 => float_text(
            f64::from(column.as_primitive::<Float32Type>().value(i)),
            out,
        ),
        DataType::Float64 => float_text(column.as_primitive::<Float64Type>().value(i), out),
        DataType::Decimal128(p, s) => decimal_text(
            &Decimal128Type::format_decimal(
                column.as_primitive::<Decimal128Type>().value(i),
                *p,
                *s,
            ),
            out,
        ),
        DataType::Decimal256(p, s) => decimal_text(
            &Decimal256Type::format_decimal(
                column.as_primitive::<Decimal256Type>().value(i),
                *p,
                *s,
            ),
            out,
        ),
        DataType::Utf8 => out.extend_from_slice(column.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => out.extend_from_slice(column.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => out.extend_from_slice(column.as_string_view().value(i).as_bytes()),
        DataType::Binary => out.extend_from_slice(column.as_binary::<i32>().value(i)),
        DataType::LargeBinary => out.extend_from_slice(column.as_binary::<i64>().value(i)),
        DataType::BinaryView => out.extend_from_slice(column.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => {
            out.extend_from_slice(column.as_fixed_size_binary().value(i))
        }
        DataType::Date32 => int!(Date32Type),
        DataType::Date64 => int!(Date64Type),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => column.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => column.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().value(i),
            };
            micros_text(v, *unit, out);
        }
        DataType::Time32(unit) => {
            let v = match unit {
                TimeUnit::Second => column.as_primitive::<Time32SecondType>().value(i),
                _ => column.as_primitive::<Time32MillisecondType>().value(i),
            };
            micros_text(i64::from(v), *unit, out);
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Nanosecond => column.as_primitive::<Time64NanosecondType>().value(i),
                _ => column.as_primitive::<Time64MicrosecondType>().value(i),
            };
            micros_text(v, *unit, out);
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => column.as_primitive::<DurationSecondType>().value(i),
                TimeUnit::Millisecond => column.as_primitive::<DurationMillisecondType>().value(i),
                TimeUnit::Microsecond => column.as_primitive::<DurationMicrosecondType>().value(i),
                TimeUnit::Nanosecond => column.as_primitive::<DurationNanosecondType>().value(i),
            };
            micros_text(v, *unit, out);
        }
        DataType::Dictionary(key_type, _) => {
            let values = column.as_any_dictionary().values();
            if let Some(key) = dictionary_key(column, key_type, i)
                && !values.is_null(key)
            {
                canonical_text(values.as_ref(), key, out);
            }
        }
        DataType::List(_) => items_text(column.as_list::<i32>().value(i).as_ref(), out),
        DataType::LargeList(_) => items_text(column.as_list::<i64>().value(i).as_ref(), out),
        DataType::FixedSizeList(..) => {
            items_text(column.as_fixed_size_list().value(i).as_ref(), out)
        }
        DataType::Map(..) => {
            let entries = column.as_map().value(i);
            out.push(b'[');
            for e in 0..entries.len() {
                struct_text(&entries, e, out);
            }
            out.push(b']');
        }
        DataType::Struct(_) => struct_text(column.as_struct(), i, out),
        // `check_type` refused every other type before any row was encoded.
        _ => {}
    }
}

/// Appends the items of a list value, each encoded as a field, between `[` and `]`.
fn items_text(items: &dyn Array, out: &mut Vec<u8>) {
    let mut scratch = Vec::new();
    out.push(b'[');
    for j in 0..items.len() {
        encode_field(items, j, out, &mut scratch);
    }
    out.push(b']');
}

/// Appends row `i` of a struct array, each field encoded as a column is, between `{` and `}`.
fn struct_text(fields: &StructArray, i: usize, out: &mut Vec<u8>) {
    let mut scratch = Vec::new();
    out.push(b'{');
    for c in fields.columns() {
        encode_field(c.as_ref(), i, out, &mut scratch);
    }
    out.push(b'}');
}

/// The index into its values of value `i` of a dictionary column keyed by `key_type`.
fn dictionary_key(column: &dyn Array, key_type: &DataType, i: usize) -> Option<usize> {
    macro_rules! key {
        ($t:ty) => {
            usize::try_from(column.as_dictionary::<$t>().keys().value(i)).ok()
        };
    }
    match key_type {
        DataType::Int8 => key!(Int8Type),
        DataType::Int16 => key!(Int16Type),
        DataType::Int32 => key!(Int32Type),
        DataType::Int64 => key!(Int64Type),
        DataType::UInt8 => key!(UInt8Type),
        DataType::UInt16 => key!(UInt16Type),
        DataType::UInt32 => key!(UInt32Type),
        DataType::UInt64 => key!(UInt64Type),
        _ => None,
    }
}

/// The number of decimals floats are rounded to.
const FLOAT_DECIMALS: usize = 30;
/// The most integer digits a float keeps; larger magnitudes read as all nines.
const FLOAT_INTEGER_DIGITS: usize = 35;

/// Appends the canonical text of a float (see the module's table).
pub fn float_text(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"nan");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    let (int_part, frac_part) = shortest_fixed(x.abs());
    let (int_part, frac_part) = (int_part.as_str(), frac_part.as_str());
    let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    let mut int_len = int_part.len();
    let mut frac_len = frac_part.len();
    if frac_len > FLOAT_DECIMALS {
        let round_up = frac_part.as_bytes()[FLOAT_DECIMALS] >= b'5';
        digits.truncate(int_len + FLOAT_DECIMALS);
        frac_len = FLOAT_DECIMALS;
        if round_up {
            let mut k = digits.len();
            loop {
                if k == 0 {
                    digits.insert(0, b'1');
                    int_len += 1;
                    break;
                }
                k -= 1;
                if digits[k] == b'9' {
                    digits[k] = b'0';
                } else {
                    digits[k] += 1;
                    break;
                }
            }
        }
    }
    // Leading zeros of the integer part (`0.5` keeps one).
    while int_len > 1 && digits[0] == b'0' {
        digits.remove(0);
        int_len -= 1;
    }
    let negative = x.is_sign_negative();
    if int_len > FLOAT_INTEGER_DIGITS {
        if negative {
            out.push(b'-');
        }
        out.extend(std::iter::repeat_n(b'9', FLOAT_INTEGER_DIGITS));
        out.push(b'.');
        out.extend(std::iter::repeat_n(b'9', FLOAT_DECIMALS));
        return;
    }
    let mut end = int_len + frac_len;
    while end > int_len && digits[end - 1] == b'0' {
        end -= 1;
    }
    let zero = digits[..end].iter().all(|&d| d == b'0');
    if negative && !zero {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[..int_len]);
    if end > int_len {
        out.push(b'.');
        out.extend_from_slice(&digits[int_len..end]);
    }
}

/// The shortest digits that read back as `abs` (non-negative, finite), as the integer and
/// fraction parts of its fixed notation. When two texts of that length read back as `abs`,
/// the nearer one, and on a tie the one ending in an even digit, as dtoa (which MariaDB and
/// Python use) picks: 128.142852783203125 (a FLOAT widened) gives `128.14285278320312`.
fn shortest_fixed(abs: f64) -> (String, String) {
    // Rust's shortest digits break such a tie upwards; its formatting to a given number of
    // digits rounds exactly, ties to even.
    let shortest = format!("{abs:e}");
    let significant = shortest
        .split('e')
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count()
        .max(1);
    // A tie needs the two neighbours of that length both within the double's rounding
    // interval: 16 digits or more.
    let chosen = match significant >= 16 {
        true => {
            let even = format!("{abs:.*e}", significant - 1);
            if even.parse::<f64>() == Ok(abs) {
                even
            } else {
                shortest
            }
        }
        false => shortest,
    };
    let (mantissa, exponent) = chosen.split_once('e').unwrap_or((&chosen, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if exponent >= 0 {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            let zeros = "0".repeat(int_len - digits.len());
            (digits + &zeros, String::new())
        } else {
            (digits[..int_len].to_owned(), digits[int_len..].to_owned())
        }
    } else {
        let zeros = "0".repeat((-exponent - 1) as usize);
        ("0".to_owned(), zeros + &digits)
    }
}

/// Appends a decimal's fixed-notation text without the trailing zeros of its fraction.
fn decimal_text(fixed: &str, out: &mut Vec<u8>) {
    let trimmed = if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.')
    } else {
        fixed
    };
    let trimmed = if trimmed == "-0" { "0" } else { trimmed };
    out.extend_from_slice(trimmed.as_bytes());
}

/// Appends a count of `unit`s as microseconds, with a fraction for nanoseconds.
fn micros_text(v: i64, unit: TimeUnit, out: &mut Vec<u8>) {
    use std::io::Write;
    let v = i128::from(v);
    match unit {
        TimeUnit::Second => {
            let _ = write!(out, "{}", v * 1_000_000);
        }
        TimeUnit::Millisecond => {
            let _ = write!(out, "{}", v * 1_000);
        }
        TimeUnit::Microsecond => {
            let _ = write!(out, "{v}");
        }
        TimeUnit::Nanosecond => {
            let (whole, rest) = (v / 1_000, (v % 1_000).abs());
            if rest == 0 {
                let _ = write!(out, "{whole}");
            } else {
                let sign = if v < 0 && whole == 0 { "-" } else { "" };
                let fraction = format!("{rest:03}");
                let _ = write!(out, "{sign}{whole}.{}", fraction.trim_end_matches('0'));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        Decimal128Array, Float32Array, Int32Array, StringArray, TimestampNanosecondArray,
    };
    use arrow_schema::{Field, Schema};

    use super::*;

    fn float(x: f64) -> String {
        let mut out = Vec::new();
        float_text(x, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_read_as_a_server_converts_them_to_decimal() {
        // Figures MariaDB gives for TRIM(… CAST(x AS DECIMAL(65,30))).
        assert_eq!(float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float(100.0), "100");
        assert_eq!(float(1.5e-7), "0.00000015");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(-0.0), "0");
        assert_eq!(float(-1e-40), "0");
        assert_eq!(float(1.5e-30), "0.000000000000000000000000000002");
        assert_eq!(float(-2.5e-30), "-0.000000000000000000000000000003");
        assert_eq!(float(9.5e-31), "0.000000000000000000000000000001");
        assert_eq!(
            float(1e40),
            "99999999999999999999999999999999999.999999999999999999999999999999"
        );
        assert_eq!(
            float(-1e35),
            "-99999999999999999999999999999999999.999999999999999999999999999999"
        );
        assert_eq!(float(f64::from(1.1f32)), "1.100000023841858");
        // Two 17-digit texts read back as this double; dtoa takes the even one.
        assert_eq!(float(f64::from(897.0_f32 / 7.0)), "128.14285278320312");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(5e-324), "0");
        assert_eq!(float(123456.0), "123456");
        assert_eq!(float(1e-5), "0.00001");
        assert_eq!(float(f64::NAN), "nan");
    }

    #[test]
    fn nanoseconds_keep_their_fraction() {
        let text = |v: i64| {
            let mut out = Vec::new();
            micros_text(v, TimeUnit::Nanosecond, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(1_500), "1.5");
        assert_eq!(text(2_000), "2");
        assert_eq!(text(-1_500), "-1.5");
        assert_eq!(text(-500), "-0.5");
    }

    fn batch(ids: Vec<i32>, names: Vec<Option<&str>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_checksum_ignores_order_and_sees_changes() {
        let a =
            Checksum::of_batch(&batch(vec![1, 2, 3], vec![Some("a"), None, Some("c")])).unwrap();
        let b =
            Checksum::of_batch(&batch(vec![3, 1, 2], vec![Some("c"), Some("a"), None])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rows, 3);
        let mut split = Checksum::of_batch(&batch(vec![1], vec![Some("a")])).unwrap();
        split.add(Checksum::of_batch(&batch(vec![2, 3], vec![None, Some("c")])).unwrap());
        assert_eq!(a, split);
        let changed =
            Checksum::of_batch(&batch(vec![1, 2, 3], vec![Some("a"), None, Some("d")])).unwrap();
        assert_ne!(a.sum, changed.sum);
        // A null is not an empty string.
        let empty = Checksum::of_batch(&batch(vec![1, 2, 3], vec![Some("a"), Some(""), Some("c")]))
            .unwrap();
        assert_ne!(a.sum, empty.sum);
        let doubled = Checksum::of_batch(&batch(vec![1, 1], vec![Some("a"), Some("a")])).unwrap();
        let other = Checksum::of_batch(&batch(vec![1, 2], vec![Some("a"), None])).unwrap();
        assert_ne!(doubled, other);
    }

    #[test]
    fn a_row_hash_is_the_md5_prefix_of_its_text() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("ratio", DataType::Float32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![7])),
                Arc::new(StringArray::from(vec![None::<&str>])),
                Arc::new(
                    Decimal128Array::from(vec![150])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Float32Array::from(vec![0.5])),
                Arc::new(TimestampNanosecondArray::from(vec![1_000_001_000])),
            ],
        )
        .unwrap();
        let checksum = Checksum::of_batch(&batch).unwrap();
        assert_eq!(checksum.rows, 1);
        assert_eq!(checksum.sum, row_hash(b"7;N1.5;0.5;1000001;"));
        // SELECT CONV(LEFT(MD5('7;N1.5;0.5;1000001;'), 16), 16, 10) in MariaDB.
        let digest = Md5::digest(b"7;N1.5;0.5;1000001;");
        assert_eq!(checksum.sum.to_be_bytes(), digest[..8]);
    }

    #[test]
    fn a_dictionary_column_sums_as_its_values() {
        use arrow_array::DictionaryArray;
        let names = vec![Some("a"), None, Some("c"), Some("a")];
        let dictionary: DictionaryArray<Int8Type> = names.iter().copied().collect();
        let schema = |t: DataType| Arc::new(Schema::new(vec![Field::new("name", t, true)]));
        let plain = RecordBatch::try_new(
            schema(DataType::Utf8),
            vec![Arc::new(StringArray::from(names))],
        )
        .unwrap();
        let coded = RecordBatch::try_new(
            schema(dictionary.data_type().clone()),
            vec![Arc::new(dictionary)],
        )
        .unwrap();
        assert_eq!(
            Checksum::of_batch(&plain).unwrap(),
            Checksum::of_batch(&coded).unwrap()
        );
    }

    #[test]
    fn sums_of_any_size_reduce_modulo_2_64() {
        let c = Checksum::from_sum_text(2, "18446744073709551617").unwrap();
        assert_eq!(c.sum, 1);
        assert_eq!(Checksum::from_sum_text(0, "").unwrap().sum, 0);
        assert_eq!(Checksum::from_sum_text(1, "12.000").unwrap().sum, 12);
        assert!(Checksum::from_sum_text(1, "x").is_none());
    }

    #[test]
    fn unsupported_types_name_their_column() {
        let schema = Schema::new(vec![Field::new(
            "span",
            DataType::Interval(arrow_schema::IntervalUnit::DayTime),
            true,
        )]);
        let batch = RecordBatch::new_empty(Arc::new(schema));
        let err = Checksum::of_batch(&batch).unwrap_err();
        assert_eq!(err.column, "span");
    }
}
