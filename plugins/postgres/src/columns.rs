//! PostgreSQL's types in Arrow: which Arrow type each column gets, and the decoding of the
//! binary COPY format's values straight into Arrow builders.
//!
//! Every mapping is exact: a value Arrow's type cannot hold (a `NaN` numeric in a decimal, an
//! infinite date) is an error naming the column, or NULL when the configuration asks for it,
//! never a different value.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, StringBuilder, StringDictionaryBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::{IntervalMonthDayNano, i256};
use arrow_schema::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::config::SpecialValues;
use crate::error::{Error, Result};

/// Field metadata key holding a column's PostgreSQL type as `format_type` shows it
/// (`numeric(12,2)`, `timestamp with time zone`, …).
pub const PG_TYPE_KEY: &str = "fastlane.postgres.type";

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// How a column is read: the decoding of its binary values and its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `oid` (unsigned 32 bits, as Int64).
    Oid,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `numeric(p, s)` with p ≤ 76: Decimal128 (p ≤ 38) or Decimal256.
    Decimal {
        /// Precision.
        precision: u8,
        /// Scale (negative on PostgreSQL 15 and later for `numeric(p, -s)`).
        scale: i8,
    },
    /// `numeric` without a precision (or above 76 digits): its exact text, `NaN` and
    /// `Infinity` included.
    NumericText,
    /// Text of any kind (`text`, `varchar`, `char`, `name`, `json`, `xml`, and columns read as
    /// text).
    Text,
    /// A value of an enum type: its label, in a dictionary of the labels a batch holds.
    Enum,
    /// `jsonb` (a version byte, then its text).
    Jsonb,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `time with time zone`, as text (`12:30:00+02`): Arrow has no such type.
    TimeTz,
    /// `timestamp`.
    Timestamp,
    /// `timestamp with time zone`, in UTC.
    TimestampTz,
    /// `interval` as months, days and nanoseconds.
    Interval,
    /// `uuid` as 16 bytes.
    Uuid,
    /// `inet` / `cidr` as text.
    Inet,
    /// `macaddr` / `macaddr8` as text.
    MacAddr,
}

impl Kind {
    /// The kind of a type by its (base) oid and modifier; `None` for a type read only as text.
    pub fn of(oid: u32, typmod: i32, typtype: &str) -> Option<Kind> {
        if typtype == "e" {
            return Some(Kind::Enum);
        }
        Some(match oid {
            16 => Kind::Bool,
            17 => Kind::Bytea,
            20 => Kind::Int8,
            21 => Kind::Int2,
            23 => Kind::Int4,
            26 => Kind::Oid,
            19 | 25 | 114 | 142 | 1042 | 1043 => Kind::Text,
            650 | 869 => Kind::Inet,
            700 => Kind::Float4,
            701 => Kind::Float8,
            774 | 829 => Kind::MacAddr,
            1082 => Kind::Date,
            1083 => Kind::Time,
            1114 => Kind::Timestamp,
            1184 => Kind::TimestampTz,
            1186 => Kind::Interval,
            1266 => Kind::TimeTz,
            1700 => numeric(typmod),
            2950 => Kind::Uuid,
            3802 => Kind::Jsonb,
            _ => return None,
        })
    }

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 | Kind::Oid => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Decimal { precision, scale } if precision <= 38 => {
                DataType::Decimal128(precision, scale)
            }
            Kind::Decimal { precision, scale } => DataType::Decimal256(precision, scale),
            Kind::NumericText
            | Kind::Text
            | Kind::Jsonb
            | Kind::TimeTz
            | Kind::Inet
            | Kind::MacAddr => DataType::Utf8,
            Kind::Enum => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Kind::Uuid => DataType::FixedSizeBinary(16),
        }
    }
}

/// `numeric` with modifier `typmod`: a decimal when it has a precision Arrow can hold.
fn numeric(typmod: i32) -> Kind {
    if typmod < 4 {
        return Kind::NumericText;
    }
    let m = typmod - 4;
    let precision = (m >> 16) & 0xffff;
    // An 11-bit signed scale (PostgreSQL 15 allows negative scales).
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(p @ 1..=76), Ok(s)) => Kind::Decimal {
            precision: p,
            scale: s,
        },
        _ => Kind::NumericText,
    }
}

/// A column as read: its name, how it is decoded, and its type as PostgreSQL shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// How it is decoded.
    pub kind: Kind,
    /// Its type, as `format_type` shows it.
    pub pg_type: String,
    /// Read through `::text` (a type without an exact Arrow form, `unsupported: "text"`).
    #[serde(default)]
    pub as_text: bool,
    /// A one-dimensional array of `kind` (an Arrow list).
    #[serde(default)]
    pub array: bool,
}

impl Column {
    /// The column's Arrow type.
    pub fn data_type(&self) -> DataType {
        if self.array {
            DataType::List(Arc::new(Field::new_list_field(self.kind.data_type(), true)))
        } else {
            self.kind.data_type()
        }
    }
}

/// The Arrow schema of `columns` (all nullable; each field notes its PostgreSQL type).
pub fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                Field::new(&c.name, c.data_type(), true).with_metadata(
                    [(PG_TYPE_KEY.to_owned(), c.pg_type.clone())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// One column's builder.
enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    D128(Decimal128Builder),
    D256(Decimal256Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder),
    Iv(IntervalMonthDayNanoBuilder),
    Fixed(FixedSizeBinaryBuilder),
    Dict(StringDictionaryBuilder<Int32Type>),
}

impl Builder {
    fn new(kind: Kind, rows: usize) -> Builder {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Int2 => Builder::I16(Int16Builder::with_capacity(rows)),
            Kind::Int4 => Builder::I32(Int32Builder::with_capacity(rows)),
            Kind::Int8 | Kind::Oid => Builder::I64(Int64Builder::with_capacity(rows)),
            Kind::Float4 => Builder::F32(Float32Builder::with_capacity(rows)),
            Kind::Float8 => Builder::F64(Float64Builder::with_capacity(rows)),
            Kind::Decimal { precision, scale } if precision <= 38 => Builder::D128(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(precision, scale)
                    .expect("a precision of 1 to 38"),
            ),
            Kind::Decimal { precision, scale } => Builder::D256(
                Decimal256Builder::with_capacity(rows)
                    .with_precision_and_scale(precision, scale)
                    .expect("a precision of 39 to 76"),
            ),
            Kind::NumericText
            | Kind::Text
            | Kind::Jsonb
            | Kind::TimeTz
            | Kind::Inet
            | Kind::MacAddr => Builder::Str(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::Enum => Builder::Dict(StringDictionaryBuilder::new()),
            Kind::Bytea => Builder::Bin(BinaryBuilder::with_capacity(rows, rows * 16)),
            Kind::Date => Builder::Date(Date32Builder::with_capacity(rows)),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows)),
            Kind::TimestampTz => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            Kind::Interval => Builder::Iv(IntervalMonthDayNanoBuilder::with_capacity(rows)),
            Kind::Uuid => Builder::Fixed(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::D128(b) => b.append_null(),
            Builder::D256(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
            Builder::Iv(b) => b.append_null(),
            Builder::Fixed(b) => b.append_null(),
            Builder::Dict(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::D128(b) => Arc::new(b.finish()),
            Builder::D256(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Iv(b) => Arc::new(b.finish()),
            Builder::Fixed(b) => Arc::new(b.finish()),
            Builder::Dict(b) => Arc::new(b.finish()),
        }
    }
}

/// A value that cannot be read as it is: what it is, for the error naming its column.
#[derive(Debug)]
struct Bad(String);

type Decoded = std::result::Result<(), Bad>;

fn short(v: &[u8], want: usize) -> std::result::Result<(), Bad> {
    if v.len() < want {
        Err(Bad(format!("{} bytes where {want} were expected", v.len())))
    } else {
        Ok(())
    }
}

fn be_i16(v: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([v[at], v[at + 1]])
}

fn be_i32(v: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(v[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(v: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(v[at..at + 8].try_into().expect("8 bytes"))
}

fn utf8(v: &[u8]) -> std::result::Result<&str, Bad> {
    std::str::from_utf8(v).map_err(|e| Bad(format!("text that is not UTF-8 ({e})")))
}

/// A binary `numeric`: sign, weight (of the first base-10000 digit), display scale, digits.
struct Numeric {
    sign: u16,
    weight: i16,
    dscale: u16,
    digits: Vec<i16>,
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

impl Numeric {
    fn parse(v: &[u8]) -> std::result::Result<Numeric, Bad> {
        short(v, 8)?;
        let n = be_i16(v, 0).max(0) as usize;
        short(v, 8 + 2 * n)?;
        Ok(Numeric {
            weight: be_i16(v, 2),
            sign: be_i16(v, 4) as u16,
            dscale: be_i16(v, 6) as u16,
            digits: (0..n).map(|i| be_i16(v, 8 + 2 * i)).collect(),
        })
    }

    fn special(&self) -> Option<&'static str> {
        match self.sign {
            NUMERIC_NAN => Some("NaN"),
            NUMERIC_PINF => Some("Infinity"),
            NUMERIC_NINF => Some("-Infinity"),
            _ => None,
        }
    }

    /// PostgreSQL's text of the value.
    fn text(&self) -> String {
        if let Some(s) = self.special() {
            return s.to_owned();
        }
        let digit = |i: i64| -> i16 {
            if i >= 0 && (i as usize) < self.digits.len() {
                self.digits[i as usize]
            } else {
                0
            }
        };
        let mut out = String::new();
        if self.sign == NUMERIC_NEG && !self.digits.is_empty() {
            out.push('-');
        }
        if self.weight < 0 {
            out.push('0');
        } else {
            for e in (0..=self.weight as i64).rev() {
                let d = digit(self.weight as i64 - e);
                if e == self.weight as i64 {
                    out.push_str(&d.to_string());
                } else {
                    out.push_str(&format!("{d:04}"));
                }
            }
        }
        if self.dscale > 0 {
            out.push('.');
            let mut frac = String::new();
            let groups = (self.dscale as i64 + 3) / 4;
            for e in 1..=groups {
                frac.push_str(&format!("{:04}", digit(self.weight as i64 + e)));
            }
            frac.truncate(self.dscale as usize);
            out.push_str(&frac);
        }
        out
    }

    /// The value times 10^scale, exactly, or `None` when it has more fractional digits.
    fn scaled(&self, scale: i8) -> Option<i256> {
        let ten = i256::from_i128(10);
        let mut total = i256::ZERO;
        for (i, &d) in self.digits.iter().enumerate() {
            if d == 0 {
                continue;
            }
            // This digit's power of ten, once scaled.
            let exp = 4 * (self.weight as i64 - i as i64) + scale as i64;
            let d = i256::from_i128(d as i128);
            let term = if exp >= 0 {
                d.checked_mul(ten.checked_pow(exp as u32)?)?
            } else {
                let div = ten.checked_pow((-exp) as u32)?;
                if d.checked_rem(div)? != i256::ZERO {
                    return None;
                }
                d.checked_div(div)?
            };
            total = total.checked_add(term)?;
        }
        Some(if self.sign == NUMERIC_NEG {
            total.checked_neg()?
        } else {
            total
        })
    }
}

fn inet_text(v: &[u8]) -> std::result::Result<String, Bad> {
    short(v, 4)?;
    let (family, bits, is_cidr, len) = (v[0], v[1], v[2] != 0, v[3] as usize);
    short(v, 4 + len)?;
    let addr = &v[4..4 + len];
    let (text, max) = match (family, len) {
        (2, 4) => (
            Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
            32,
        ),
        (3, 16) => (
            Ipv6Addr::from(<[u8; 16]>::try_from(addr).expect("16 bytes")).to_string(),
            128,
        ),
        _ => return Err(Bad(format!("an address of family {family}, {len} bytes"))),
    };
    Ok(if is_cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

fn timetz_text(v: &[u8]) -> std::result::Result<String, Bad> {
    short(v, 12)?;
    let micros = be_i64(v, 0);
    // Seconds west of UTC.
    let offset = -be_i32(v, 8);
    let (s, frac) = (micros / 1_000_000, micros % 1_000_000);
    let mut out = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    let (sign, o) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    out.push_str(&format!("{sign}{:02}", o / 3600));
    if o % 3600 != 0 {
        out.push_str(&format!(":{:02}", o / 60 % 60));
        if o % 60 != 0 {
            out.push_str(&format!(":{:02}", o % 60));
        }
    }
    Ok(out)
}

/// A value Arrow cannot hold: NULL or an error, as configured.
fn special_value(b: &mut Builder, special: SpecialValues, what: &str) -> Decoded {
    match special {
        SpecialValues::Null => {
            b.null();
            Ok(())
        }
        SpecialValues::Error => Err(Bad(format!(
            "{what} has no Arrow form; `special_values: \"null\"` reads it as NULL"
        ))),
    }
}

/// Decodes one binary value of `kind` into `builder`.
fn decode(builder: &mut Builder, kind: Kind, special: SpecialValues, v: &[u8]) -> Decoded {
    match (&mut *builder, kind) {
        (Builder::Bool(b), _) => {
            short(v, 1)?;
            b.append_value(v[0] != 0);
        }
        (Builder::I16(b), _) => {
            short(v, 2)?;
            b.append_value(be_i16(v, 0));
        }
        (Builder::I32(b), _) => {
            short(v, 4)?;
            b.append_value(be_i32(v, 0));
        }
        (Builder::I64(b), Kind::Oid) => {
            short(v, 4)?;
            b.append_value(be_i32(v, 0) as u32 as i64);
        }
        (Builder::I64(b), _) => {
            short(v, 8)?;
            b.append_value(be_i64(v, 0));
        }
        (Builder::F32(b), _) => {
            short(v, 4)?;
            b.append_value(f32::from_bits(be_i32(v, 0) as u32));
        }
        (Builder::F64(b), _) => {
            short(v, 8)?;
            b.append_value(f64::from_bits(be_i64(v, 0) as u64));
        }
        (Builder::D128(_) | Builder::D256(_), Kind::Decimal { precision, scale }) => {
            let n = Numeric::parse(v)?;
            if let Some(s) = n.special() {
                return special_value(builder, special, &format!("the numeric `{s}`"));
            }
            let Some(x) = n.scaled(scale) else {
                return Err(Bad(format!(
                    "{} has more than {scale} decimal places",
                    n.text()
                )));
            };
            let fits = x.to_i128().filter(|x| {
                x.unsigned_abs() < 10u128.pow(precision.min(38) as u32) || precision > 38
            });
            match builder {
                Builder::D128(b) => match fits {
                    Some(x) => b.append_value(x),
                    None => {
                        return Err(Bad(format!(
                            "{} does not fit numeric({precision},{scale})",
                            n.text()
                        )));
                    }
                },
                Builder::D256(b) => b.append_value(x),
                _ => unreachable!("a decimal builder"),
            }
        }
        (Builder::Str(b), Kind::NumericText) => b.append_value(Numeric::parse(v)?.text()),
        (Builder::Str(b), Kind::Jsonb) => {
            short(v, 1)?;
            if v[0] != 1 {
                return Err(Bad(format!("jsonb of format version {}", v[0])));
            }
            b.append_value(utf8(&v[1..])?);
        }
        (Builder::Str(b), Kind::TimeTz) => b.append_value(timetz_text(v)?),
        (Builder::Str(b), Kind::Inet) => b.append_value(inet_text(v)?),
        (Builder::Str(b), Kind::MacAddr) => {
            let hex: Vec<String> = v.iter().map(|x| format!("{x:02x}")).collect();
            b.append_value(hex.join(":"));
        }
        (Builder::Str(b), _) => b.append_value(utf8(v)?),
        (Builder::Dict(b), _) => {
            b.append(utf8(v)?).map_err(|e| Bad(e.to_string()))?;
        }
        (Builder::Bin(b), _) => b.append_value(v),
        (Builder::Date(b), _) => {
            short(v, 4)?;
            let days = be_i32(v, 0);
            match days {
                i32::MAX => return special_value(builder, special, "the date `infinity`"),
                i32::MIN => return special_value(builder, special, "the date `-infinity`"),
                _ => match days.checked_add(PG_EPOCH_DAYS) {
                    Some(d) => b.append_value(d),
                    None => {
                        return special_value(
                            builder,
                            special,
                            "a date after 5877641 (Arrow's Date32)",
                        );
                    }
                },
            }
        }
        (Builder::Time(b), _) => {
            short(v, 8)?;
            b.append_value(be_i64(v, 0));
        }
        (Builder::Ts(b), _) => {
            short(v, 8)?;
            let micros = be_i64(v, 0);
            match micros {
                i64::MAX => return special_value(builder, special, "the timestamp `infinity`"),
                i64::MIN => return special_value(builder, special, "the timestamp `-infinity`"),
                _ => match micros.checked_add(PG_EPOCH_MICROS) {
                    Some(t) => b.append_value(t),
                    None => {
                        return special_value(
                            builder,
                            special,
                            "a timestamp after 294247-01-10 (microseconds since 1970 in \
                                 64 bits)",
                        );
                    }
                },
            }
        }
        (Builder::Iv(b), _) => {
            short(v, 16)?;
            let micros = be_i64(v, 0);
            let nanos = micros
                .checked_mul(1000)
                .ok_or_else(|| Bad(format!("an interval of {micros} µs")))?;
            b.append_value(IntervalMonthDayNano {
                months: be_i32(v, 12),
                days: be_i32(v, 8),
                nanoseconds: nanos,
            });
        }
        (Builder::Fixed(b), _) => {
            if v.len() != 16 {
                return Err(Bad(format!("a uuid of {} bytes", v.len())));
            }
            b.append_value(v).map_err(|e| Bad(e.to_string()))?;
        }
        (_, kind) => return Err(Bad(format!("no decoder for {kind:?}"))),
    }
    Ok(())
}

/// One column's builder: of values, or of one-dimensional arrays of values.
enum Slot {
    One(Builder),
    Many {
        items: Builder,
        item: Arc<Field>,
        offsets: Vec<i32>,
        nulls: arrow_buffer::NullBufferBuilder,
    },
}

impl Slot {
    fn new(c: &Column, rows: usize) -> Slot {
        if !c.array {
            return Slot::One(Builder::new(c.kind, rows));
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Slot::Many {
            items: Builder::new(c.kind, rows),
            item: Arc::new(Field::new_list_field(c.kind.data_type(), true)),
            offsets,
            nulls: arrow_buffer::NullBufferBuilder::new(rows),
        }
    }

    fn null(&mut self) {
        match self {
            Slot::One(b) => b.null(),
            Slot::Many { offsets, nulls, .. } => {
                offsets.push(*offsets.last().expect("the first offset"));
                nulls.append_null();
            }
        }
    }

    fn value(&mut self, kind: Kind, special: SpecialValues, v: &[u8]) -> Decoded {
        match self {
            Slot::One(b) => decode(b, kind, special, v),
            Slot::Many {
                items,
                offsets,
                nulls,
                ..
            } => {
                let before = *offsets.last().expect("the first offset");
                let n = decode_array(items, kind, special, v)?;
                let end = i32::try_from(n)
                    .ok()
                    .and_then(|n| before.checked_add(n))
                    .ok_or_else(|| Bad("more array elements than a batch holds".into()))?;
                offsets.push(end);
                nulls.append_non_null();
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Slot::One(b) => b.finish(),
            Slot::Many {
                items,
                item,
                offsets,
                nulls,
            } => {
                let values = items.finish();
                let taken = std::mem::replace(offsets, vec![0]);
                Arc::new(arrow_array::ListArray::new(
                    item.clone(),
                    arrow_buffer::OffsetBuffer::new(taken.into()),
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

/// Decodes a binary array of `kind` elements into `items`; how many it had. One dimension
/// only, indexed from 1 (PostgreSQL's default): other arrays have no exact list form.
fn decode_array(
    items: &mut Builder,
    kind: Kind,
    special: SpecialValues,
    v: &[u8],
) -> std::result::Result<usize, Bad> {
    short(v, 12)?;
    let ndim = be_i32(v, 0);
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(Bad(format!(
            "a {ndim}-dimensional array, which has no exact list form; `unsupported: \"text\"` \
             with `columns` reads such columns as text"
        )));
    }
    short(v, 20)?;
    let (n, lower) = (be_i32(v, 12), be_i32(v, 16));
    if lower != 1 {
        return Err(Bad(format!(
            "an array indexed from {lower}, which a list would silently index from 1"
        )));
    }
    let mut at = 20usize;
    for _ in 0..n.max(0) {
        short(v, at + 4)?;
        let len = be_i32(v, at);
        at += 4;
        if len < 0 {
            items.null();
        } else {
            let len = len as usize;
            short(v, at + len)?;
            decode(items, kind, special, &v[at..at + len])?;
            at += len;
        }
    }
    Ok(n.max(0) as usize)
}

/// Builds record batches from the rows of a binary COPY.
pub struct Rows {
    columns: Vec<Column>,
    schema: SchemaRef,
    builders: Vec<Slot>,
    rows: usize,
    special: SpecialValues,
}

impl Rows {
    /// Empty builders for `columns`, sized for `capacity` rows.
    pub fn new(columns: &[Column], capacity: usize, special: SpecialValues) -> Rows {
        Rows {
            schema: schema_of(columns),
            builders: columns.iter().map(|c| Slot::new(c, capacity)).collect(),
            columns: columns.to_vec(),
            rows: 0,
            special,
        }
    }

    /// Rows appended since the last batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row waits.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row, given as its fields' bytes (`None` for NULL).
    pub fn push(&mut self, fields: &[Option<&[u8]>]) -> Result<()> {
        if fields.len() != self.builders.len() {
            return Err(Error::Data(format!(
                "a row of {} fields where {} columns were read",
                fields.len(),
                self.builders.len()
            )));
        }
        for (i, field) in fields.iter().enumerate() {
            let outcome = match field {
                None => {
                    self.builders[i].null();
                    Ok(())
                }
                Some(v) => self.builders[i].value(self.columns[i].kind, self.special, v),
            };
            if let Err(Bad(what)) = outcome {
                let c = &self.columns[i];
                return Err(Error::Data(format!(
                    "column `{}` ({}): {what}",
                    c.name, c.pg_type
                )));
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows appended so far as one batch; the builders start again.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Slot::finish).collect();
        let rows = std::mem::take(&mut self.rows);
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| Error::Data(format!("cannot build a batch: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((sign as i16).to_be_bytes());
        v.extend((dscale as i16).to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_read_exactly_as_text_and_as_decimals() {
        let n = Numeric::parse(&numeric_bytes(0, 0, 2, &[123, 4500])).unwrap();
        assert_eq!(n.text(), "123.45");
        assert_eq!(n.scaled(2), Some(i256::from_i128(12345)));
        assert_eq!(n.scaled(1), None, "a digit would be lost");
        let n = Numeric::parse(&numeric_bytes(-1, NUMERIC_NEG, 3, &[10])).unwrap();
        assert_eq!(n.text(), "-0.001");
        assert_eq!(n.scaled(3), Some(i256::from_i128(-1)));
        let n = Numeric::parse(&numeric_bytes(1, 0, 0, &[1, 0])).unwrap();
        assert_eq!(n.text(), "10000");
        let n = Numeric::parse(&numeric_bytes(0, 0, 3, &[])).unwrap();
        assert_eq!(n.text(), "0.000");
        let n = Numeric::parse(&numeric_bytes(0, NUMERIC_NAN, 0, &[])).unwrap();
        assert_eq!(n.text(), "NaN");
        assert_eq!(numeric(-1), Kind::NumericText);
        assert_eq!(
            numeric(((12 << 16) | 2) + 4),
            Kind::Decimal {
                precision: 12,
                scale: 2
            }
        );
    }

    #[test]
    fn network_and_time_zone_values_read_as_postgresql_writes_them() {
        assert_eq!(inet_text(&[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(), "10.0.0.1");
        assert_eq!(inet_text(&[2, 8, 1, 4, 10, 0, 0, 0]).unwrap(), "10.0.0.0/8");
        let mut v6 = vec![3, 64, 0, 16];
        v6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(inet_text(&v6).unwrap(), "2001:db8::1/64");
        let mut t = (12i64 * 3600 * 1_000_000 + 500_000).to_be_bytes().to_vec();
        t.extend((-7200i32).to_be_bytes());
        assert_eq!(timetz_text(&t).unwrap(), "12:00:00.5+02");
    }
}
