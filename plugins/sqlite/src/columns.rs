//! SQLite declared types to Arrow types, and Arrow builders fed straight from SQLite values.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use fastlane_plugin_api::{PluginError, Result};
use rusqlite::types::ValueRef;

/// The Arrow type a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `Int64`.
    Int64,
    /// `Float64`.
    Float64,
    /// `Utf8`.
    Utf8,
    /// `Binary`.
    Binary,
    /// `Boolean`.
    Boolean,
    /// `Timestamp(Microsecond, None)`.
    Timestamp,
    /// `Date32`.
    Date32,
}

impl Kind {
    /// The Arrow data type.
    pub(crate) fn data_type(self) -> DataType {
        match self {
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Utf8 => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Boolean => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Date32 => DataType::Date32,
        }
    }

    /// The kind of a declared column type, by SQLite's affinity rules extended with booleans,
    /// dates and timestamps; `None` when it must be inferred from the values (no declared type,
    /// or a type that names nothing known).
    pub(crate) fn from_declared(declared: Option<&str>) -> Option<Self> {
        let declared = declared?.trim().to_ascii_uppercase();
        let has = |words: &[&str]| words.iter().any(|w| declared.contains(w));
        if declared.is_empty() {
            None
        } else if has(&["INT"]) {
            Some(Self::Int64)
        } else if has(&["CHAR", "CLOB", "TEXT"]) {
            Some(Self::Utf8)
        } else if has(&["BLOB"]) {
            Some(Self::Binary)
        } else if has(&["REAL", "FLOA", "DOUB"]) {
            Some(Self::Float64)
        } else if has(&["BOOL"]) {
            Some(Self::Boolean)
        } else if has(&["DATETIME", "TIMESTAMP"]) {
            Some(Self::Timestamp)
        } else if has(&["DATE"]) {
            Some(Self::Date32)
        } else if has(&["DECIMAL", "NUMERIC"]) {
            Some(Self::Float64)
        } else {
            None
        }
    }

    /// The kind of a stored value; `None` for NULL.
    fn from_value(value: ValueRef<'_>) -> Option<Self> {
        match value {
            ValueRef::Null => None,
            ValueRef::Integer(_) => Some(Self::Int64),
            ValueRef::Real(_) => Some(Self::Float64),
            ValueRef::Text(_) => Some(Self::Utf8),
            ValueRef::Blob(_) => Some(Self::Binary),
        }
    }
}

/// The SQLite storage class of a value, as SQLite names it.
pub(crate) fn storage_class(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// A short rendering of a value for messages.
pub(crate) struct Shown<'a>(pub ValueRef<'a>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ValueRef::Null => f.write_str("NULL"),
            ValueRef::Integer(i) => write!(f, "{i}"),
            ValueRef::Real(r) => write!(f, "{r}"),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                let mut chars = text.chars();
                let head: String = chars.by_ref().take(40).collect();
                if chars.next().is_some() {
                    write!(f, "{head}…")
                } else {
                    f.write_str(&head)
                }
            }
            ValueRef::Blob(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// Why a value could not be appended to its column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mismatch {
    /// The storage class does not fit the column type.
    Type(&'static str, DataType),
    /// Text that is not valid UTF-8.
    Utf8,
    /// Text that does not parse as the column type (the text, what was expected).
    Parse(String, &'static str),
    /// An integer out of the column type's range.
    Range(i64, &'static str),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type(class, data_type) => write!(f, "a {class} value does not fit {data_type}"),
            Self::Utf8 => f.write_str("a TEXT value is not valid UTF-8"),
            Self::Parse(text, what) => write!(f, "the TEXT value `{text}` is not {what}"),
            Self::Range(value, what) => {
                write!(
                    f,
                    "the INTEGER value `{value}` is out of the range of {what}"
                )
            }
        }
    }
}

const TIMESTAMP: &str = "an ISO-8601 timestamp";
const DATE: &str = "a YYYY-MM-DD date";

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`, optional `Z`) or `YYYY-MM-DD` into
/// microseconds since the Unix epoch.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .unwrap_or(text);
    let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .ok()?;
    Some(parsed.and_utc().timestamp_micros())
}

/// Parses `YYYY-MM-DD` into days since the Unix epoch.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let days = date
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    i32::try_from(days).ok()
}

fn text(bytes: &[u8]) -> Result<&str, Mismatch> {
    std::str::from_utf8(bytes).map_err(|_| Mismatch::Utf8)
}

/// An Arrow builder for one column.
pub(crate) enum ColumnBuilder {
    /// The type is not known yet: only this many NULLs were seen.
    Pending(usize),
    /// `Int64`.
    Int64(Int64Builder),
    /// `Float64`.
    Float64(Float64Builder),
    /// `Utf8`.
    Utf8(StringBuilder),
    /// `Binary`.
    Binary(BinaryBuilder),
    /// `Boolean`.
    Boolean(BooleanBuilder),
    /// `Timestamp(Microsecond, None)`.
    Timestamp(TimestampMicrosecondBuilder),
    /// `Date32`.
    Date32(Date32Builder),
}

impl ColumnBuilder {
    /// A builder of `kind`, or one that waits for the first non-null value.
    pub(crate) fn new(kind: Option<Kind>, capacity: usize) -> Self {
        match kind {
            None => Self::Pending(0),
            Some(Kind::Int64) => Self::Int64(Int64Builder::with_capacity(capacity)),
            Some(Kind::Float64) => Self::Float64(Float64Builder::with_capacity(capacity)),
            Some(Kind::Utf8) => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            Some(Kind::Binary) => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity)),
            Some(Kind::Boolean) => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            Some(Kind::Timestamp) => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            Some(Kind::Date32) => Self::Date32(Date32Builder::with_capacity(capacity)),
        }
    }

    /// The kind, once known.
    pub(crate) fn kind(&self) -> Option<Kind> {
        match self {
            Self::Pending(_) => None,
            Self::Int64(_) => Some(Kind::Int64),
            Self::Float64(_) => Some(Kind::Float64),
            Self::Utf8(_) => Some(Kind::Utf8),
            Self::Binary(_) => Some(Kind::Binary),
            Self::Boolean(_) => Some(Kind::Boolean),
            Self::Timestamp(_) => Some(Kind::Timestamp),
            Self::Date32(_) => Some(Kind::Date32),
        }
    }

    /// Appends one value.
    pub(crate) fn append(&mut self, value: ValueRef<'_>) -> Result<(), Mismatch> {
        let mismatch = |kind: Kind| Mismatch::Type(storage_class(value), kind.data_type());
        match self {
            Self::Pending(nulls) => match Kind::from_value(value) {
                None => *nulls += 1,
                Some(kind) => {
                    let nulls = *nulls;
                    *self = Self::new(Some(kind), nulls + 1024);
                    for _ in 0..nulls {
                        self.append(ValueRef::Null)?;
                    }
                    self.append(value)?;
                }
            },
            Self::Int64(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Integer(i) => b.append_value(i),
                _ => return Err(mismatch(Kind::Int64)),
            },
            Self::Float64(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Real(r) => b.append_value(r),
                ValueRef::Integer(i) => b.append_value(i as f64),
                _ => return Err(mismatch(Kind::Float64)),
            },
            Self::Utf8(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Text(t) => b.append_value(text(t)?),
                _ => return Err(mismatch(Kind::Utf8)),
            },
            Self::Binary(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Blob(bytes) => b.append_value(bytes),
                _ => return Err(mismatch(Kind::Binary)),
            },
            Self::Boolean(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Integer(i) => b.append_value(i != 0),
                _ => return Err(mismatch(Kind::Boolean)),
            },
            Self::Timestamp(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Text(t) => {
                    let t = text(t)?;
                    let micros = parse_timestamp(t)
                        .ok_or_else(|| Mismatch::Parse(Shown(value).to_string(), TIMESTAMP))?;
                    b.append_value(micros);
                }
                ValueRef::Integer(seconds) => {
                    let micros = seconds
                        .checked_mul(1_000_000)
                        .ok_or(Mismatch::Range(seconds, "a timestamp"))?;
                    b.append_value(micros);
                }
                _ => return Err(mismatch(Kind::Timestamp)),
            },
            Self::Date32(b) => match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Text(t) => {
                    let days = parse_date(text(t)?)
                        .ok_or_else(|| Mismatch::Parse(Shown(value).to_string(), DATE))?;
                    b.append_value(days);
                }
                _ => return Err(mismatch(Kind::Date32)),
            },
        }
        Ok(())
    }

    /// The values appended since the last call; a column still pending becomes `Utf8`.
    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Pending(nulls) => {
                let array = new_null_array(&DataType::Utf8, *nulls);
                *self = Self::new(Some(Kind::Utf8), 0);
                array
            }
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Date32(b) => Arc::new(b.finish()),
        }
    }
}

/// Where a row is, for messages: its key value, or its position in a query's result.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    /// The row's replication key value.
    Key(ValueRef<'a>),
    /// The row's position in the result, from 1.
    Row(u64),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => write!(f, "at key `{}`", Shown(*key)),
            Self::Row(row) => write!(f, "at row `{row}`"),
        }
    }
}

/// Builds record batches column by column; the schema is fixed by the first batch.
pub(crate) struct BatchBuilder {
    names: Vec<String>,
    builders: Vec<ColumnBuilder>,
    schema: Option<SchemaRef>,
    rows: usize,
}

impl BatchBuilder {
    /// A builder for columns `names` of declared types `declared`.
    pub(crate) fn new(columns: Vec<(String, Option<String>)>, capacity: usize) -> Self {
        let capacity = capacity.min(65_536);
        let (names, builders) = columns
            .into_iter()
            .map(|(name, declared)| {
                let kind = Kind::from_declared(declared.as_deref());
                (name, ColumnBuilder::new(kind, capacity))
            })
            .unzip();
        Self {
            names,
            builders,
            schema: None,
            rows: 0,
        }
    }

    /// How many columns a row has.
    pub(crate) fn width(&self) -> usize {
        self.builders.len()
    }

    /// Appends the value of column `index` of the current row.
    pub(crate) fn append(&mut self, index: usize, value: ValueRef<'_>, at: At<'_>) -> Result<()> {
        let Some(builder) = self.builders.get_mut(index) else {
            return Err(PluginError::internal(format!("no column {index}")));
        };
        builder.append(value).map_err(|m| {
            let name = self.names.get(index).map(String::as_str).unwrap_or("?");
            PluginError::data(format!("cannot read column `{name}` {at}: {m}"))
        })
    }

    /// Marks the current row as complete.
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }

    /// How many rows are waiting.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The rows appended since the last call, as a batch.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        let schema = match &self.schema {
            Some(schema) => schema.clone(),
            None => {
                let fields: Vec<Field> = self
                    .names
                    .iter()
                    .zip(&self.builders)
                    .map(|(name, b)| {
                        let kind = b.kind().unwrap_or(Kind::Utf8);
                        Field::new(name, kind.data_type(), true)
                    })
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                self.schema = Some(schema.clone());
                schema
            }
        };
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types() {
        let cases = [
            ("INTEGER", Some(Kind::Int64)),
            ("bigint", Some(Kind::Int64)),
            ("TINYINT(1)", Some(Kind::Int64)),
            ("VARCHAR(20)", Some(Kind::Utf8)),
            ("text", Some(Kind::Utf8)),
            ("CLOB", Some(Kind::Utf8)),
            ("BLOB", Some(Kind::Binary)),
            ("REAL", Some(Kind::Float64)),
            ("DOUBLE PRECISION", Some(Kind::Float64)),
            ("FLOAT", Some(Kind::Float64)),
            ("BOOLEAN", Some(Kind::Boolean)),
            ("DATETIME", Some(Kind::Timestamp)),
            ("TIMESTAMP", Some(Kind::Timestamp)),
            ("DATE", Some(Kind::Date32)),
            ("DECIMAL(10,2)", Some(Kind::Float64)),
            ("NUMERIC", Some(Kind::Float64)),
            ("", None),
            ("JSON", None),
        ];
        for (declared, kind) in cases {
            assert_eq!(Kind::from_declared(Some(declared)), kind, "{declared}");
        }
        assert_eq!(Kind::from_declared(None), None);
    }

    #[test]
    fn timestamps_and_dates() {
        let t = parse_timestamp;
        assert_eq!(t("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(t("1970-01-01T00:00:01.5"), Some(1_500_000));
        assert_eq!(t("1970-01-01T00:00:01.000002Z"), Some(1_000_002));
        assert_eq!(t("1970-01-02"), Some(86_400_000_000));
        assert_eq!(t("2024-13-01 00:00:00"), None);
        assert_eq!(t("yesterday"), None);
        assert_eq!(parse_date("1970-01-11"), Some(10));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-30"), None);
    }

    #[test]
    fn pending_columns_take_the_first_value_type() {
        let mut b = ColumnBuilder::new(None, 4);
        b.append(ValueRef::Null).unwrap();
        b.append(ValueRef::Real(1.5)).unwrap();
        b.append(ValueRef::Integer(2)).unwrap();
        assert_eq!(b.kind(), Some(Kind::Float64));
        let array = b.finish();
        assert_eq!(array.len(), 3);
        assert_eq!(array.null_count(), 1);
        assert!(matches!(
            b.append(ValueRef::Text(b"x")),
            Err(Mismatch::Type("TEXT", DataType::Float64))
        ));
    }
}
