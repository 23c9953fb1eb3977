//! Line protocol: checking and escaping names, and encoding the rows of a record batch as
//! points (`measurement,tag=v field=1i,other="text" 1700000000000000000`).
//!
//! Escaping follows the InfluxDB parser: in measurements, commas and spaces are escaped with a
//! backslash; in tag keys, tag values and field keys, commas, equals signs and spaces; in string
//! field values, double quotes and backslashes. A backslash elsewhere is kept as written, so a
//! name or tag value that ends in a backslash, or has one right before a character that must
//! be escaped, cannot be written unambiguously and is refused, as are newlines (line protocol
//! has no way to carry them) and NaN or infinite floats.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use fastlane_plugin_api::{PluginError, Result};

use crate::config::{EmptyRows, InfluxDbTargetConfig, NonFinite, Precision};
use crate::names::{
    KEY_SPECIALS, MEASUREMENT_SPECIALS, check_key, check_measurement, check_text, escape, quote,
};

/// How the columns of the data map to a point, resolved once per schema.
struct Layout {
    schema: SchemaRef,
    measurement: Option<usize>,
    /// `,key=` escaped, and the column, sorted by key (InfluxDB's preferred order).
    tags: Vec<(Vec<u8>, usize)>,
    /// `key=` escaped, and the column.
    fields: Vec<(Vec<u8>, usize)>,
    time: Option<usize>,
}

/// A field column, read in the form its line protocol value takes.
enum FieldValues {
    Int(Int64Array),
    UInt(UInt64Array),
    Float(Float64Array),
    Bool(BooleanArray),
    Text(StringArray),
    /// A column of the `Null` type: never written.
    Absent,
}

/// The time of each row, in units of the precision.
enum Times {
    Column(Int64Array),
    /// The run's start plus the row's position in the run.
    Sequence(i64),
}

/// The columns of one batch, ready to be written row by row.
pub struct Prepared {
    measurement: Option<StringArray>,
    tags: Vec<StringArray>,
    fields: Vec<FieldValues>,
    times: Times,
    rows: usize,
}

impl Prepared {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Turns record batches into line protocol, following the target's configuration.
pub struct Encoder {
    config: Arc<InfluxDbTargetConfig>,
    measurement: Vec<u8>,
    layout: Option<Layout>,
}

/// What happened to a row.
#[derive(Debug, PartialEq, Eq)]
pub enum Row {
    /// The row became a line.
    Written,
    /// The row had no non-null field and was left out.
    Skipped,
}

impl Encoder {
    /// An encoder for the (checked) configuration.
    pub fn new(config: Arc<InfluxDbTargetConfig>) -> Self {
        let mut measurement = Vec::new();
        if let Some(m) = &config.measurement {
            escape(&mut measurement, m, MEASUREMENT_SPECIALS);
        }
        Self {
            config,
            measurement,
            layout: None,
        }
    }

    fn layout(&mut self, schema: &SchemaRef) -> Result<&Layout> {
        if self.layout.as_ref().is_some_and(|l| &l.schema == schema) {
            return Ok(self.layout.as_ref().expect("checked"));
        }
        let config = &self.config;
        let index = |name: &str, what: &str| {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                PluginError::config(format!(
                    "{what} `{name}` is not a column of the data (its columns: {})",
                    names.join(", ")
                ))
            })
        };
        let measurement = match &config.measurement_column {
            Some(c) => Some(index(c, "the measurement column")?),
            None => None,
        };
        let time = match &config.time_column {
            Some(c) => {
                let i = index(c, "the time column")?;
                match schema.field(i).data_type() {
                    DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View => {}
                    other => {
                        return Err(PluginError::config(format!(
                            "the time column `{c}` is {other}; it must be a timestamp, a date, \
                             ISO 8601 text or an integer in units of `precision`"
                        )));
                    }
                }
                Some(i)
            }
            None => None,
        };
        let mut tag_names = config.tag_columns.clone();
        tag_names.sort();
        let mut tags = Vec::new();
        for name in &tag_names {
            let i = index(name, "the tag column")?;
            let data_type = schema.field(i).data_type();
            if !can_be_text(data_type) {
                return Err(PluginError::config(format!(
                    "the tag column `{name}` is {data_type}, which has no text form for a tag"
                )));
            }
            let mut prefix = vec![b','];
            escape(&mut prefix, name, KEY_SPECIALS);
            prefix.push(b'=');
            tags.push((prefix, i));
        }
        let field_names: Vec<String> = match &config.field_columns {
            Some(fields) => fields.clone(),
            None => schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| {
                    !config.tag_columns.contains(n)
                        && Some(n) != config.time_column.as_ref()
                        && Some(n) != config.measurement_column.as_ref()
                })
                .collect(),
        };
        if field_names.is_empty() {
            return Err(PluginError::config(
                "the data has no column left for fields (every column is a tag, the time or \
                 the measurement); InfluxDB needs at least one field",
            ));
        }
        let mut fields = Vec::new();
        for name in &field_names {
            let i = index(name, "the field column")?;
            check_key(name).map_err(|e| PluginError::config(format!("the field column: {e}")))?;
            let data_type = schema.field(i).data_type();
            if !is_field_type(data_type) {
                return Err(PluginError::config(format!(
                    "the column `{name}` is {data_type}, which InfluxDB cannot store as a \
                     field; leave it out with `field_columns` or convert it in a transform"
                )));
            }
            let mut prefix = Vec::new();
            escape(&mut prefix, name, KEY_SPECIALS);
            prefix.push(b'=');
            fields.push((prefix, i));
        }
        self.layout = Some(Layout {
            schema: schema.clone(),
            measurement,
            tags,
            fields,
            time,
        });
        Ok(self.layout.as_ref().expect("set"))
    }

    /// Reads the columns of `batch`; `sequence_start` is the time of its first row when the
    /// configuration has no time column.
    pub fn prepare(&mut self, batch: &RecordBatch, sequence_start: i64) -> Result<Prepared> {
        let precision = self.config.precision;
        let layout = self.layout(&batch.schema())?;
        let text = |i: usize| -> Result<StringArray> {
            Ok(arrow_cast::cast(batch.column(i), &DataType::Utf8)?
                .as_string::<i32>()
                .clone())
        };
        let measurement = layout.measurement.map(text).transpose()?;
        let tags = layout
            .tags
            .iter()
            .map(|(_, i)| text(*i))
            .collect::<Result<Vec<_>>>()?;
        let fields = layout
            .fields
            .iter()
            .map(|(_, i)| field_values(batch.column(*i)))
            .collect::<Result<Vec<_>>>()?;
        let times = match layout.time {
            Some(i) => Times::Column(times_in(
                batch.column(i),
                precision,
                &batch.schema().field(i).name().clone(),
            )?),
            None => Times::Sequence(sequence_start),
        };
        Ok(Prepared {
            measurement,
            tags,
            fields,
            times,
            rows: batch.num_rows(),
        })
    }

    /// Appends row `row` of `prepared` to `out` as one line.
    pub fn row(&self, prepared: &Prepared, row: usize, out: &mut Vec<u8>) -> Result<Row> {
        let layout = self.layout.as_ref().expect("prepare comes first");
        let start = out.len();
        let fail = |out: &mut Vec<u8>, column: &str, e: &dyn std::fmt::Display| {
            out.truncate(start);
            PluginError::data(format!("row {row} of the batch, column `{column}`: {e}"))
        };
        match &prepared.measurement {
            Some(names) => {
                let column = self.config.measurement_column.as_deref().unwrap_or("");
                if names.is_null(row) {
                    return Err(fail(out, column, &"the measurement is null"));
                }
                let name = names.value(row);
                if let Err(e) = check_measurement(name) {
                    return Err(fail(out, column, &e));
                }
                escape(out, name, MEASUREMENT_SPECIALS);
            }
            None => out.extend_from_slice(&self.measurement),
        }
        for ((prefix, column), values) in layout.tags.iter().zip(&prepared.tags) {
            if values.is_null(row) || values.value(row).is_empty() {
                continue;
            }
            let value = values.value(row);
            if let Err(e) = check_text(value, KEY_SPECIALS) {
                let name = layout.schema.field(*column).name().clone();
                return Err(fail(out, &name, &e));
            }
            out.extend_from_slice(prefix);
            escape(out, value, KEY_SPECIALS);
        }
        out.push(b' ');
        let fields_start = out.len();
        for ((prefix, column), values) in layout.fields.iter().zip(&prepared.fields) {
            let mark = out.len();
            if mark > fields_start {
                out.push(b',');
            }
            out.extend_from_slice(prefix);
            let written = match values {
                FieldValues::Absent => false,
                FieldValues::Int(a) => {
                    if a.is_null(row) {
                        false
                    } else {
                        out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
                        out.push(b'i');
                        true
                    }
                }
                FieldValues::UInt(a) => {
                    if a.is_null(row) {
                        false
                    } else {
                        let v = a.value(row);
                        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                        if self.config.unsigned_integers {
                            out.push(b'u');
                        } else if v > i64::MAX as u64 {
                            let name = layout.schema.field(*column).name().clone();
                            return Err(fail(
                                out,
                                &name,
                                &format!(
                                    "{v} is above the largest signed integer InfluxDB stores; \
                                     set `unsigned_integers` for servers that take unsigned \
                                     fields (1.8+, 2.x)"
                                ),
                            ));
                        } else {
                            out.push(b'i');
                        }
                        true
                    }
                }
                FieldValues::Float(a) => {
                    if a.is_null(row) {
                        false
                    } else {
                        let v = a.value(row);
                        if v.is_finite() {
                            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
                            true
                        } else if self.config.non_finite == NonFinite::Null {
                            false
                        } else {
                            let name = layout.schema.field(*column).name().clone();
                            return Err(fail(
                                out,
                                &name,
                                &format!(
                                    "{v} cannot be written to InfluxDB; set `non_finite` to \
                                     `null` to leave such values out"
                                ),
                            ));
                        }
                    }
                }
                FieldValues::Bool(a) => {
                    if a.is_null(row) {
                        false
                    } else {
                        out.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
                        true
                    }
                }
                FieldValues::Text(a) => {
                    if a.is_null(row) {
                        false
                    } else if let Err(e) = quote(out, a.value(row)) {
                        let name = layout.schema.field(*column).name().clone();
                        return Err(fail(out, &name, &e));
                    } else {
                        true
                    }
                }
            };
            if !written {
                out.truncate(mark);
            }
        }
        if out.len() == fields_start {
            out.truncate(start);
            return match self.config.empty_rows {
                EmptyRows::Skip => Ok(Row::Skipped),
                EmptyRows::Error => Err(PluginError::data(format!(
                    "row {row} of the batch has no non-null field, and InfluxDB cannot store \
                     a point without fields (set `empty_rows` to `skip` to leave such rows out)"
                ))),
            };
        }
        out.push(b' ');
        let time = match &prepared.times {
            Times::Column(times) => {
                if times.is_null(row) {
                    let name = self.config.time_column.clone().unwrap_or_default();
                    return Err(fail(out, &name, &"the time is null"));
                }
                times.value(row)
            }
            Times::Sequence(start) => start + row as i64,
        };
        out.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
        out.push(b'\n');
        Ok(Row::Written)
    }
}

/// Whether a column of this type can be turned into text (for tags and the measurement).
fn can_be_text(data_type: &DataType) -> bool {
    !matches!(
        data_type,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
            | DataType::RunEndEncoded(..)
    ) && arrow_cast::can_cast_types(data_type, &DataType::Utf8)
}

/// Whether a column of this type can be written as a field.
fn is_field_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, value) => can_be_text(value),
        other => can_be_text(other),
    }
}

/// Reads a field column in its line protocol form: integers, floats (decimals included),
/// booleans, and text for everything else (dates and times as ISO 8601).
fn field_values(array: &ArrayRef) -> Result<FieldValues> {
    Ok(match array.data_type() {
        DataType::Null => FieldValues::Absent,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            FieldValues::Int(a.as_primitive::<Int64Type>().clone())
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            FieldValues::Int(a.as_primitive::<Int64Type>().clone())
        }
        DataType::UInt64 => FieldValues::UInt(array.as_primitive::<UInt64Type>().clone()),
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let a = arrow_cast::cast(array, &DataType::Float64)?;
            FieldValues::Float(a.as_primitive::<Float64Type>().clone())
        }
        DataType::Boolean => FieldValues::Bool(array.as_boolean().clone()),
        _ => {
            let a = arrow_cast::cast(array, &DataType::Utf8)?;
            FieldValues::Text(a.as_string::<i32>().clone())
        }
    })
}

/// The time column as integers in units of `precision`, truncated towards the past.
fn times_in(array: &ArrayRef, precision: Precision, name: &str) -> Result<Int64Array> {
    let per_second = precision.per_second();
    // (numerator, denominator): value * numerator / denominator gives the precision's unit.
    let (values, from_per_second): (Int64Array, i64) = match array.data_type() {
        DataType::Timestamp(unit, _) => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            let per = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            (a.as_primitive::<Int64Type>().clone(), per)
        }
        DataType::Date32 => {
            let a = arrow_cast::cast(array, &DataType::Int32)?;
            let days = a.as_primitive::<arrow_array::types::Int32Type>();
            let seconds: Int64Array = days.unary(|d| i64::from(d) * 86_400);
            (seconds, 1)
        }
        DataType::Date64 => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            (a.as_primitive::<Int64Type>().clone(), 1_000)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let options = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            let a = arrow_cast::cast_with_options(
                array,
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
                &options,
            )
            .map_err(|e| {
                PluginError::data(format!(
                    "the time column `{name}` holds text that is not an ISO 8601 time: {e}"
                ))
            })?;
            let a = arrow_cast::cast(&a, &DataType::Int64)?;
            (a.as_primitive::<Int64Type>().clone(), 1_000_000_000)
        }
        _ => {
            let a = arrow_cast::cast(array, &DataType::Int64)?;
            (a.as_primitive::<Int64Type>().clone(), per_second)
        }
    };
    if from_per_second == per_second {
        return Ok(values);
    }
    if from_per_second > per_second {
        let factor = from_per_second / per_second;
        return Ok(values.unary(|v| v.div_euclid(factor)));
    }
    let factor = per_second / from_per_second;
    values
        .try_unary(|v| {
            v.checked_mul(factor)
                .ok_or_else(|| arrow_schema::ArrowError::ComputeError(v.to_string()))
        })
        .map_err(|e| {
            PluginError::data(format!(
                "the time column `{name}` holds a time too far from 1970 for InfluxDB ({e})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Date32Array, Decimal128Array, Float32Array, Int32Array, TimestampMicrosecondArray,
        UInt64Array,
    };
    use arrow_schema::{Field, Schema};
    use serde_json::json;

    fn encoder(extra: serde_json::Value) -> Encoder {
        let mut v = json!({"host": "h", "database": "d", "measurement": "m"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Encoder::new(Arc::new(serde_json::from_value(v).unwrap()))
    }

    fn lines(encoder: &mut Encoder, batch: &RecordBatch) -> Result<String> {
        let prepared = encoder.prepare(batch, 100)?;
        let mut out = Vec::new();
        for row in 0..prepared.rows() {
            encoder.row(&prepared, row, &mut out)?;
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn rows_become_lines() {
        let batch = RecordBatch::try_from_iter([
            (
                "host",
                Arc::new(StringArray::from(vec![Some("a b"), None, Some("")])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), Some(-2), None])),
            ),
            (
                "x",
                Arc::new(Float32Array::from(vec![Some(0.5), None, None])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("q\""), Some("é"), None])),
            ),
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), None, None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            (
                "day",
                Arc::new(Date32Array::from(vec![Some(19_000), None, None])),
            ),
        ])
        .unwrap();
        let mut e = encoder(json!({"tag_columns": ["host"]}));
        assert_eq!(
            lines(&mut e, &batch).unwrap(),
            "m,host=a\\ b n=1i,x=0.5,s=\"q\\\"\",d=123.45,day=\"2022-01-08\" 100\n\
             m n=-2i,s=\"é\" 101\n"
        );
        let mut strict = encoder(json!({"tag_columns": ["host"], "empty_rows": "error"}));
        let e = lines(&mut strict, &batch).unwrap_err();
        assert!(e.message().contains("row 2"), "{e}");
    }

    #[test]
    fn times_follow_the_precision() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_700_000_000_123_456),
                    Some(-1_500),
                ])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let mut ms = encoder(json!({"time_column": "t", "precision": "ms"}));
        assert_eq!(
            lines(&mut ms, &batch).unwrap(),
            "m v=1i 1700000000123\nm v=2i -2\n"
        );
        let mut ns = encoder(json!({"time_column": "t"}));
        assert_eq!(
            lines(&mut ns, &batch).unwrap(),
            "m v=1i 1700000000123456000\nm v=2i -1500000\n"
        );
    }

    #[test]
    fn text_times_are_parsed_as_utc() {
        let batch = RecordBatch::try_from_iter([
            (
                "t",
                Arc::new(StringArray::from(vec![
                    "2026-03-01 12:00:00",
                    "2026-03-01T12:00:00.5+01:00",
                ])) as ArrayRef,
            ),
            ("v", Arc::new(Int64Array::from(vec![1, 2]))),
        ])
        .unwrap();
        let mut e = encoder(json!({"time_column": "t", "precision": "ms"}));
        assert_eq!(
            lines(&mut e, &batch).unwrap(),
            "m v=1i 1772366400000\nm v=2i 1772362800500\n"
        );
        let bad = RecordBatch::try_from_iter([
            ("t", Arc::new(StringArray::from(vec!["soon"])) as ArrayRef),
            ("v", Arc::new(Int64Array::from(vec![1]))),
        ])
        .unwrap();
        let message = lines(&mut e, &bad).unwrap_err().message().to_owned();
        assert!(message.contains("not an ISO 8601 time"), "{message}");
    }

    #[test]
    fn unrepresentable_values_are_errors() {
        let batch = RecordBatch::try_from_iter([
            ("u", Arc::new(UInt64Array::from(vec![u64::MAX])) as ArrayRef),
            ("f", Arc::new(Float64Array::from(vec![f64::NAN]))),
        ])
        .unwrap();
        let mut e = encoder(json!({"field_columns": ["u"]}));
        assert!(
            lines(&mut e, &batch)
                .unwrap_err()
                .message()
                .contains("unsigned_integers")
        );
        let mut e = encoder(json!({"field_columns": ["u"], "unsigned_integers": true}));
        assert_eq!(
            lines(&mut e, &batch).unwrap(),
            "m u=18446744073709551615u 100\n"
        );
        let mut e = encoder(json!({"field_columns": ["f"]}));
        assert!(
            lines(&mut e, &batch)
                .unwrap_err()
                .message()
                .contains("non_finite")
        );
        let mut e = encoder(json!({"field_columns": ["f"], "non_finite": "null"}));
        assert_eq!(lines(&mut e, &batch).unwrap(), "");
        let mut e = encoder(json!({"field_columns": ["missing"]}));
        assert!(
            lines(&mut e, &batch)
                .unwrap_err()
                .message()
                .contains("columns: u, f")
        );
    }
}
