//! MySQL result columns to Arrow: the type of each column, decided once from the result
//! set's metadata, and builders that take the values of each row straight from the driver's
//! binary-protocol row (no intermediate row type).
//!
//! | MySQL | Arrow |
//! |---|---|
//! | TINYINT … BIGINT | Int8 … Int64; UNSIGNED: UInt8 … UInt64 |
//! | TINYINT(1) / BOOL, BIT(1) | Boolean |
//! | BIT(n) | UInt64 |
//! | YEAR | Int16 |
//! | FLOAT, DOUBLE | Float32, Float64 |
//! | DECIMAL(p,s) | Decimal128(p,s), Decimal256(p,s) above 38 digits |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON | Utf8 |
//! | BINARY, VARBINARY, BLOB, GEOMETRY | Binary |
//! | DATE | Date32 |
//! | DATETIME | Timestamp(µs) |
//! | TIMESTAMP | Timestamp(µs, UTC) |
//! | TIME | Time64(µs), or Duration(µs) with `time_as: "duration"` |
//!
//! Every field carries the column's MySQL type (`fastlane.mysql.column_type` metadata, e.g.
//! `enum('a','b')`, `bit(5)`, `json`), so a MySQL target recreates the exact column.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Decimal256Builder, DurationMicrosecondBuilder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Value};

use crate::config::{TimeAs, ZeroDates};
use crate::error::{Error, Result};

/// Field metadata key holding the column's MySQL type.
pub const COLUMN_TYPE_KEY: &str = "fastlane.mysql.column_type";

const BINARY_CHARSET: u16 = 63;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How one column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bits,
    F32,
    F64,
    Decimal128(u8, i8),
    Decimal256(u8, i8),
    Utf8,
    Binary,
    Date,
    DateTime,
    Timestamp,
    Time,
    Duration,
}

/// Options that shape the mapping.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Zero-date policy.
    pub zero_dates: ZeroDates,
    /// TIME mapping.
    pub time_as: TimeAs,
    /// TINYINT(1) as Boolean.
    pub tinyint1_as_bool: bool,
}

/// The Arrow layout of a result set, and how to fill it.
#[derive(Debug, Clone)]
pub struct Layout {
    kinds: Vec<Kind>,
    schema: SchemaRef,
    options: ReadOptions,
}

fn kind_of(column: &Column, options: &ReadOptions) -> Result<Kind> {
    let flags = column.flags();
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let pick = |s: Kind, u: Kind| if unsigned { u } else { s };
    Ok(match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY if options.tinyint1_as_bool && column.column_length() == 1 => {
            Kind::Bool
        }
        ColumnType::MYSQL_TYPE_TINY => pick(Kind::I8, Kind::U8),
        ColumnType::MYSQL_TYPE_SHORT => pick(Kind::I16, Kind::U16),
        ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG => pick(Kind::I32, Kind::U32),
        ColumnType::MYSQL_TYPE_LONGLONG => pick(Kind::I64, Kind::U64),
        ColumnType::MYSQL_TYPE_YEAR => Kind::I16,
        ColumnType::MYSQL_TYPE_BIT if column.column_length() == 1 => Kind::Bool,
        ColumnType::MYSQL_TYPE_BIT => Kind::Bits,
        ColumnType::MYSQL_TYPE_FLOAT => Kind::F32,
        ColumnType::MYSQL_TYPE_DOUBLE => Kind::F64,
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            let scale = column.decimals();
            // The display length counts the sign (signed only) and the point (scale > 0).
            let length = column.column_length() as i64
                - i64::from(!unsigned)
                - i64::from(scale > 0 && scale < 31);
            let precision = length.clamp(1, 76) as u8;
            let precision = precision.max(scale);
            if precision <= 38 {
                Kind::Decimal128(precision, scale as i8)
            } else {
                Kind::Decimal256(precision, scale as i8)
            }
        }
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => Kind::Date,
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => Kind::DateTime,
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp,
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => match options.time_as {
            TimeAs::Time => Kind::Time,
            TimeAs::Duration => Kind::Duration,
        },
        ColumnType::MYSQL_TYPE_JSON => Kind::Utf8,
        ColumnType::MYSQL_TYPE_GEOMETRY => Kind::Binary,
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_ENUM
        | ColumnType::MYSQL_TYPE_SET
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if column.character_set() == BINARY_CHARSET {
                Kind::Binary
            } else {
                Kind::Utf8
            }
        }
        ColumnType::MYSQL_TYPE_NULL => Kind::Utf8,
        other => {
            return Err(Error::Config(format!(
                "column `{}` has the MySQL type {other:?}, which fastlane cannot read",
                column.name_str()
            )));
        }
    })
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::I8 => DataType::Int8,
        Kind::I16 => DataType::Int16,
        Kind::I32 => DataType::Int32,
        Kind::I64 => DataType::Int64,
        Kind::U8 => DataType::UInt8,
        Kind::U16 => DataType::UInt16,
        Kind::U32 => DataType::UInt32,
        Kind::U64 | Kind::Bits => DataType::UInt64,
        Kind::F32 => DataType::Float32,
        Kind::F64 => DataType::Float64,
        Kind::Decimal128(p, s) => DataType::Decimal128(p, s),
        Kind::Decimal256(p, s) => DataType::Decimal256(p, s),
        Kind::Utf8 => DataType::Utf8,
        Kind::Binary => DataType::Binary,
        Kind::Date => DataType::Date32,
        Kind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Time => DataType::Time64(TimeUnit::Microsecond),
        Kind::Duration => DataType::Duration(TimeUnit::Microsecond),
    }
}

impl Layout {
    /// The layout of a result set. `column_types` maps column names to their full MySQL type
    /// (from `information_schema`), kept as field metadata.
    pub fn new(
        columns: &[Column],
        column_types: &HashMap<String, String>,
        options: ReadOptions,
    ) -> Result<Self> {
        let mut kinds = Vec::with_capacity(columns.len());
        let mut fields = Vec::with_capacity(columns.len());
        for column in columns {
            let kind = kind_of(column, &options)?;
            let name = column.name_str().into_owned();
            let nullable = !column.flags().contains(ColumnFlags::NOT_NULL_FLAG)
                || matches!(kind, Kind::Date | Kind::DateTime | Kind::Timestamp)
                    && options.zero_dates == ZeroDates::Null;
            let mut field = Field::new(&name, data_type(kind), nullable);
            if let Some(t) = column_types.get(&name) {
                field.set_metadata(HashMap::from([(COLUMN_TYPE_KEY.to_owned(), t.clone())]));
            }
            kinds.push(kind);
            fields.push(field);
        }
        Ok(Self {
            kinds,
            schema: Arc::new(Schema::new(fields)),
            options,
        })
    }

    /// The Arrow schema of the result set.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Empty builders for `capacity` rows.
    pub fn builders(&self, capacity: usize) -> Builders {
        self.builders_like(capacity, None)
    }

    /// Empty builders for `capacity` rows, sized by the value bytes per row of an earlier
    /// batch of the same columns (see [`BatchSizes`]).
    pub fn builders_like(&self, capacity: usize, earlier: Option<&BatchSizes>) -> Builders {
        let earlier = earlier.filter(|e| e.columns.len() == self.kinds.len());
        let columns = self
            .kinds
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                ColumnBuilder::sized_like(k, capacity, earlier.and_then(|e| e.columns[i]))
            })
            .collect();
        Builders {
            layout: self.clone(),
            columns,
            rows: 0,
        }
    }
}

/// The value bytes of a string or binary column of a batch, and the batch's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueBytes {
    rows: usize,
    bytes: usize,
}

impl ValueBytes {
    fn of(array: &ArrayRef) -> Option<Self> {
        let bytes = if let Some(a) = array.as_string_opt::<i32>() {
            a.values().len()
        } else if let Some(a) = array.as_binary_opt::<i32>() {
            a.values().len()
        } else {
            return None;
        };
        Some(Self {
            rows: array.len(),
            bytes,
        })
    }
}

/// How much string and binary data a batch held per column: enough to size the next batch's
/// builders without keeping the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSizes {
    columns: Vec<Option<ValueBytes>>,
}

impl BatchSizes {
    /// The sizes of `batch`'s columns.
    pub fn of(batch: &RecordBatch) -> Self {
        Self {
            columns: batch.columns().iter().map(ValueBytes::of).collect(),
        }
    }
}

enum ColumnBuilder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    D128(Decimal128Builder, u8, i8),
    D256(Decimal256Builder, u8, i8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Micros(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Time(Time64MicrosecondBuilder),
    Duration(DurationMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(kind: Kind, n: usize) -> Self {
        match kind {
            Kind::Bool => Self::Bool(BooleanBuilder::with_capacity(n)),
            Kind::I8 => Self::I8(Int8Builder::with_capacity(n)),
            Kind::I16 => Self::I16(Int16Builder::with_capacity(n)),
            Kind::I32 => Self::I32(Int32Builder::with_capacity(n)),
            Kind::I64 => Self::I64(Int64Builder::with_capacity(n)),
            Kind::U8 => Self::U8(UInt8Builder::with_capacity(n)),
            Kind::U16 => Self::U16(UInt16Builder::with_capacity(n)),
            Kind::U32 => Self::U32(UInt32Builder::with_capacity(n)),
            Kind::U64 | Kind::Bits => Self::U64(UInt64Builder::with_capacity(n)),
            Kind::F32 => Self::F32(Float32Builder::with_capacity(n)),
            Kind::F64 => Self::F64(Float64Builder::with_capacity(n)),
            Kind::Decimal128(p, s) => Self::D128(Decimal128Builder::with_capacity(n), p, s),
            Kind::Decimal256(p, s) => Self::D256(Decimal256Builder::with_capacity(n), p, s),
            Kind::Utf8 => Self::Utf8(StringBuilder::with_capacity(n, n * 16)),
            Kind::Binary => Self::Binary(BinaryBuilder::with_capacity(n, n * 16)),
            Kind::Date => Self::Date(Date32Builder::with_capacity(n)),
            Kind::DateTime => Self::Micros(TimestampMicrosecondBuilder::with_capacity(n), None),
            Kind::Timestamp => Self::Micros(
                TimestampMicrosecondBuilder::with_capacity(n),
                Some("UTC".into()),
            ),
            Kind::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(n)),
            Kind::Duration => Self::Duration(DurationMicrosecondBuilder::with_capacity(n)),
        }
    }

    /// A builder for `rows` rows; string and binary builders get room for as many value bytes
    /// per row as `previous` held (plus an eighth), so that they need not grow by doubling.
    fn sized_like(kind: Kind, rows: usize, previous: Option<ValueBytes>) -> Self {
        let Some(ValueBytes {
            rows: before,
            bytes,
        }) = previous.filter(|p| p.rows > 0)
        else {
            return Self::new(kind, rows);
        };
        let wanted = (bytes as u128 * rows as u128 / before as u128) as usize;
        let wanted = wanted + wanted / 8;
        match kind {
            Kind::Utf8 => Self::Utf8(StringBuilder::with_capacity(rows, wanted)),
            Kind::Binary => Self::Binary(BinaryBuilder::with_capacity(rows, wanted)),
            _ => Self::new(kind, rows),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I8(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::U8(b) => Arc::new(b.finish()),
            Self::U16(b) => Arc::new(b.finish()),
            Self::U32(b) => Arc::new(b.finish()),
            Self::U64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::D128(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("valid decimal type"),
            ),
            Self::D256(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("valid decimal type"),
            ),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Micros(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Duration(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::I8(b) => b.len(),
            Self::I16(b) => b.len(),
            Self::I32(b) => b.len(),
            Self::I64(b) => b.len(),
            Self::U8(b) => b.len(),
            Self::U16(b) => b.len(),
            Self::U32(b) => b.len(),
            Self::U64(b) => b.len(),
            Self::F32(b) => b.len(),
            Self::F64(b) => b.len(),
            Self::D128(b, ..) => b.len(),
            Self::D256(b, ..) => b.len(),
            Self::Utf8(b) => b.len(),
            Self::Binary(b) => b.len(),
            Self::Date(b) => b.len(),
            Self::Micros(b, _) => b.len(),
            Self::Time(b) => b.len(),
            Self::Duration(b) => b.len(),
        }
    }
}

/// A value that does not fit its column; the caller adds the column and key.
#[derive(Debug)]
enum Bad {
    /// A zero or invalid date.
    Date(String),
    /// Anything else.
    Value(String),
}

fn int(v: &Value) -> Result<i128, Bad> {
    match v {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::UInt(u) => Ok(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Bad::Value(format!("`{}` is not an integer", show_bytes(b)))),
        other => Err(Bad::Value(format!("unexpected value {other:?}"))),
    }
}

fn fits<T: TryFrom<i128>>(v: &Value) -> Result<T, Bad> {
    let i = int(v)?;
    T::try_from(i).map_err(|_| Bad::Value(format!("{i} is out of range")))
}

fn float(v: &Value) -> Result<f64, Bad> {
    match v {
        Value::Double(d) => Ok(*d),
        Value::Float(f) => Ok(f64::from(*f)),
        Value::Int(i) => Ok(*i as f64),
        Value::UInt(u) => Ok(*u as f64),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Bad::Value(format!("`{}` is not a number", show_bytes(b)))),
        other => Err(Bad::Value(format!("unexpected value {other:?}"))),
    }
}

fn show_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 40 {
        let end = (0..=40).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &s[..end])
    } else {
        s.into_owned()
    }
}

/// Parses a decimal text (`-123.45`) into its unscaled integer digits at `scale`.
pub fn decimal_digits(text: &str, scale: i8) -> Option<String> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !fraction.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    if fraction.len() > scale && fraction[scale..].bytes().any(|c| c != b'0') {
        return None;
    }
    let mut digits = String::with_capacity(whole.len() + scale + 1);
    if negative {
        digits.push('-');
    }
    digits.push_str(if whole.is_empty() { "0" } else { whole });
    let kept = &fraction[..fraction.len().min(scale)];
    digits.push_str(kept);
    digits.extend(std::iter::repeat_n('0', scale - kept.len()));
    Some(digits)
}

fn days(y: u16, m: u8, d: u8) -> Result<i32, Bad> {
    if y == 0 || m == 0 || d == 0 {
        return Err(Bad::Date(format!("zero date `{y:04}-{m:02}-{d:02}`")));
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d))
        .ok_or_else(|| Bad::Date(format!("invalid date `{y:04}-{m:02}-{d:02}`")))?;
    Ok((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

fn micros(v: &Value) -> Result<i64, Bad> {
    match v {
        Value::Date(y, m, d, h, mi, s, us) => {
            let day = i64::from(days(*y, *m, *d)?);
            Ok(day * MICROS_PER_DAY
                + ((i64::from(*h) * 60 + i64::from(*mi)) * 60 + i64::from(*s)) * 1_000_000
                + i64::from(*us))
        }
        other => Err(Bad::Value(format!("unexpected value {other:?}"))),
    }
}

fn time_micros(v: &Value) -> Result<i64, Bad> {
    match v {
        Value::Time(negative, d, h, m, s, us) => {
            let t = (((i64::from(*d) * 24 + i64::from(*h)) * 60 + i64::from(*m)) * 60
                + i64::from(*s))
                * 1_000_000
                + i64::from(*us);
            Ok(if *negative { -t } else { t })
        }
        other => Err(Bad::Value(format!("unexpected value {other:?}"))),
    }
}

/// Builders for one batch.
pub struct Builders {
    layout: Layout,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl Builders {
    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row; `key` renders the row's key for error messages.
    pub fn push(&mut self, row: &mysql_async::Row, key: impl Fn() -> String) -> Result<()> {
        let options = self.layout.options;
        for (i, column) in self.columns.iter_mut().enumerate() {
            let value = row.as_ref(i).unwrap_or(&Value::NULL);
            if let Err(bad) = push_value(column, value, options) {
                let name = self.layout.schema.field(i).name();
                return Err(match bad {
                    Bad::Date(what) if options.zero_dates == ZeroDates::Null => {
                        let _ = what;
                        push_value(column, &Value::NULL, options)
                            .map_err(|_| Error::Data("cannot append a NULL".into()))?;
                        continue;
                    }
                    Bad::Date(what) => Error::Data(format!(
                        "column `{name}` holds a {what} in the row with key {}; Arrow has no \
                         such date (set `zero_dates: \"null\"` to read it as NULL)",
                        key()
                    )),
                    Bad::Value(what) => Error::Data(format!(
                        "column `{name}` in the row with key {}: {what}",
                        key()
                    )),
                });
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Finishes the batch (the builders are left empty).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        // Finished builders start again from nothing and would grow by doubling (copying, and
        // holding up to twice the data): start the next batch at this one's size instead.
        for ((column, &kind), array) in self.columns.iter_mut().zip(&self.layout.kinds).zip(&arrays)
        {
            *column = ColumnBuilder::sized_like(kind, self.rows, ValueBytes::of(array));
        }
        self.rows = 0;
        RecordBatch::try_new(self.layout.schema.clone(), arrays)
            .map_err(|e| Error::Data(format!("cannot build a batch: {e}")))
    }

    /// Whether every column has the same number of values as rows (a consistency check).
    pub fn consistent(&self) -> bool {
        self.columns.iter().all(|c| c.len() == self.rows)
    }
}

fn push_value(column: &mut ColumnBuilder, v: &Value, options: ReadOptions) -> Result<(), Bad> {
    if matches!(v, Value::NULL) {
        match column {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::I8(b) => b.append_null(),
            ColumnBuilder::I16(b) => b.append_null(),
            ColumnBuilder::I32(b) => b.append_null(),
            ColumnBuilder::I64(b) => b.append_null(),
            ColumnBuilder::U8(b) => b.append_null(),
            ColumnBuilder::U16(b) => b.append_null(),
            ColumnBuilder::U32(b) => b.append_null(),
            ColumnBuilder::U64(b) => b.append_null(),
            ColumnBuilder::F32(b) => b.append_null(),
            ColumnBuilder::F64(b) => b.append_null(),
            ColumnBuilder::D128(b, ..) => b.append_null(),
            ColumnBuilder::D256(b, ..) => b.append_null(),
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Micros(b, _) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::Duration(b) => b.append_null(),
        }
        return Ok(());
    }
    match column {
        ColumnBuilder::Bool(b) => match v {
            Value::Bytes(bits) => b.append_value(bits.iter().any(|&x| x != 0)),
            _ => match int(v)? {
                0 => b.append_value(false),
                1 => b.append_value(true),
                other => {
                    return Err(Bad::Value(format!(
                        "{other} is not a boolean (0 or 1); set `tinyint1_as_bool: false` to \
                         read TINYINT(1) as numbers"
                    )));
                }
            },
        },
        ColumnBuilder::I8(b) => b.append_value(fits(v)?),
        ColumnBuilder::I16(b) => b.append_value(fits(v)?),
        ColumnBuilder::I32(b) => b.append_value(fits(v)?),
        ColumnBuilder::I64(b) => b.append_value(fits(v)?),
        ColumnBuilder::U8(b) => b.append_value(fits(v)?),
        ColumnBuilder::U16(b) => b.append_value(fits(v)?),
        ColumnBuilder::U32(b) => b.append_value(fits(v)?),
        ColumnBuilder::U64(b) => match v {
            // BIT(n) arrives as big-endian bytes.
            Value::Bytes(bits) if bits.len() <= 8 => {
                b.append_value(bits.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            _ => b.append_value(fits(v)?),
        },
        ColumnBuilder::F32(b) => b.append_value(float(v)? as f32),
        ColumnBuilder::F64(b) => b.append_value(float(v)?),
        ColumnBuilder::D128(b, _, s) => {
            let text = decimal_text(v)?;
            let digits = decimal_digits(&text, *s)
                .ok_or_else(|| Bad::Value(format!("`{text}` is not a decimal of scale {s}")))?;
            b.append_value(
                digits
                    .parse::<i128>()
                    .map_err(|_| Bad::Value(format!("`{text}` is out of range")))?,
            );
        }
        ColumnBuilder::D256(b, _, s) => {
            let text = decimal_text(v)?;
            let digits = decimal_digits(&text, *s)
                .ok_or_else(|| Bad::Value(format!("`{text}` is not a decimal of scale {s}")))?;
            b.append_value(
                i256::from_string(&digits)
                    .ok_or_else(|| Bad::Value(format!("`{text}` is out of range")))?,
            );
        }
        ColumnBuilder::Utf8(b) => match v {
            Value::Bytes(bytes) => {
                b.append_value(std::str::from_utf8(bytes).map_err(|_| {
                    Bad::Value(format!("`{}` is not valid UTF-8", show_bytes(bytes)))
                })?)
            }
            other => b.append_value(other.as_sql(true).trim_matches('\'')),
        },
        ColumnBuilder::Binary(b) => match v {
            Value::Bytes(bytes) => b.append_value(bytes),
            other => b.append_value(other.as_sql(true).as_bytes()),
        },
        ColumnBuilder::Date(b) => match v {
            Value::Date(y, m, d, ..) => b.append_value(days(*y, *m, *d)?),
            other => return Err(Bad::Value(format!("unexpected value {other:?}"))),
        },
        ColumnBuilder::Micros(b, _) => b.append_value(micros(v)?),
        ColumnBuilder::Time(b) => {
            let t = time_micros(v)?;
            if !(0..MICROS_PER_DAY).contains(&t) {
                return Err(Bad::Value(format!(
                    "TIME value of {t} µs is not a time of day (set `time_as: \"duration\"` \
                     to read any TIME)",
                )));
            }
            b.append_value(t);
        }
        ColumnBuilder::Duration(b) => b.append_value(time_micros(v)?),
    }
    let _ = options;
    Ok(())
}

fn decimal_text(v: &Value) -> Result<String, Bad> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| Bad::Value("decimal is not text".into())),
        Value::Int(i) => Ok(i.to_string()),
        Value::UInt(u) => Ok(u.to_string()),
        other => Err(Bad::Value(format!("unexpected value {other:?}"))),
    }
}

/// Renders a driver value for messages and offsets.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => show_bytes(b),
        Value::NULL => "NULL".to_owned(),
        other => other.as_sql(true).trim_matches('\'').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_scale_exactly() {
        assert_eq!(decimal_digits("123.45", 2).as_deref(), Some("12345"));
        assert_eq!(decimal_digits("-0.5", 3).as_deref(), Some("-0500"));
        assert_eq!(decimal_digits("7", 2).as_deref(), Some("700"));
        assert_eq!(decimal_digits(".25", 2).as_deref(), Some("025"));
        assert_eq!(decimal_digits("1.250", 2).as_deref(), Some("125"));
        assert_eq!(decimal_digits("1.255", 2), None, "digits would be lost");
        assert_eq!(decimal_digits("1e5", 0), None);
        assert_eq!(decimal_digits("", 0), None);
    }

    #[test]
    fn builders_sized_like_an_earlier_batch_start_with_its_bytes_per_row() {
        let earlier: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["é".repeat(50); 10]));
        let sizes = ValueBytes::of(&earlier);
        assert_eq!(
            sizes,
            Some(ValueBytes {
                rows: 10,
                bytes: 1000
            })
        );
        // Twice the rows: twice the bytes, and an eighth more.
        let ColumnBuilder::Utf8(b) = ColumnBuilder::sized_like(Kind::Utf8, 20, sizes) else {
            panic!("not a string builder");
        };
        assert!((2250..2250 + 64).contains(&b.values_capacity()));
        // Without an earlier batch (or with an empty one), the default guess of 16 per row.
        for sizes in [None, Some(ValueBytes { rows: 0, bytes: 0 })] {
            let ColumnBuilder::Utf8(b) = ColumnBuilder::sized_like(Kind::Utf8, 20, sizes) else {
                panic!("not a string builder");
            };
            assert!((320..320 + 64).contains(&b.values_capacity()));
        }
        let binary: ArrayRef = Arc::new(arrow_array::BinaryArray::from(vec![&b"abc"[..]; 4]));
        let numbers: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3, 4]));
        let batch = RecordBatch::try_from_iter([("b", binary), ("n", numbers)]).unwrap();
        assert_eq!(
            BatchSizes::of(&batch).columns,
            vec![Some(ValueBytes { rows: 4, bytes: 12 }), None]
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(days(1970, 1, 1).unwrap(), 0);
        assert_eq!(days(2000, 3, 1).unwrap(), 11_017);
        assert!(matches!(days(0, 0, 0), Err(Bad::Date(_))));
        assert!(matches!(days(2021, 2, 30), Err(Bad::Date(_))));
        let v = Value::Date(1970, 1, 2, 0, 0, 1, 5);
        assert_eq!(micros(&v).unwrap(), MICROS_PER_DAY + 1_000_005);
        let t = Value::Time(true, 1, 2, 0, 0, 0);
        assert_eq!(time_micros(&t).unwrap(), -(26 * 3_600_000_000));
    }
}
