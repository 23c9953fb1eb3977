//! BSON documents straight into Arrow columns, following a [`Kind`]: each document is first
//! checked against the schema (so that one that does not fit leaves no half-written row), then
//! appended value by value from the raw BSON, without building intermediate documents.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{Field, Schema, SchemaRef};
use mongodb::bson::{Bson, RawBsonRef, RawDocument};

use crate::kinds::{Kind, decimal_parts};

/// Why a document does not fit the schema.
pub type Mismatch = String;

fn found(value: &RawBsonRef<'_>) -> String {
    format!("{:?}", value.element_type()).to_lowercase()
}

/// The unscaled value of a decimal (or integer) at `scale`, if it fits `precision`.
fn rescale(value: RawBsonRef<'_>, precision: u8, scale: i8) -> Option<i128> {
    let (unscaled, from) = match value {
        RawBsonRef::Decimal128(d) => decimal_parts(&d.to_string())?,
        RawBsonRef::Int32(v) => (i128::from(v), 0),
        RawBsonRef::Int64(v) => (i128::from(v), 0),
        _ => return None,
    };
    let to = i32::from(scale);
    let v = if from > to {
        let factor = 10i128.checked_pow((from - to) as u32)?;
        if unscaled % factor != 0 {
            return None;
        }
        unscaled / factor
    } else {
        unscaled.checked_mul(10i128.checked_pow((to - from) as u32)?)?
    };
    (v.unsigned_abs() < 10u128.pow(u32::from(precision))).then_some(v)
}

/// Checks that `value` fits `kind`; `path` names it in the reason.
pub fn check(kind: &Kind, value: RawBsonRef<'_>, path: &str) -> Result<(), Mismatch> {
    if matches!(value, RawBsonRef::Null | RawBsonRef::Undefined) {
        return Ok(());
    }
    let ok = match (kind, value) {
        (Kind::Json, _) => true,
        (Kind::String | Kind::Null, RawBsonRef::String(_)) => true,
        (Kind::ObjectId, RawBsonRef::ObjectId(_)) => true,
        (Kind::Int32, RawBsonRef::Int32(_)) => true,
        (Kind::Int32, RawBsonRef::Int64(v)) => i32::try_from(v).is_ok(),
        (Kind::Int64, RawBsonRef::Int32(_) | RawBsonRef::Int64(_)) => true,
        (Kind::Double, RawBsonRef::Double(_) | RawBsonRef::Int32(_) | RawBsonRef::Int64(_)) => true,
        (Kind::Bool, RawBsonRef::Boolean(_)) => true,
        (Kind::Timestamp | Kind::Date, RawBsonRef::DateTime(_)) => true,
        (Kind::Binary, RawBsonRef::Binary(_)) => true,
        (
            Kind::Decimal(p, s),
            v @ (RawBsonRef::Decimal128(_) | RawBsonRef::Int32(_) | RawBsonRef::Int64(_)),
        ) => {
            if rescale(v, *p, *s).is_none() {
                return Err(format!(
                    "`{path}`: {} does not fit decimal({p},{s}) exactly",
                    match v {
                        RawBsonRef::Decimal128(d) => d.to_string(),
                        other => format!("{other:?}"),
                    }
                ));
            }
            true
        }
        (Kind::List(item), RawBsonRef::Array(items)) => {
            for (i, element) in items.into_iter().enumerate() {
                let element = element.map_err(|e| format!("`{path}`: unreadable BSON: {e}"))?;
                check(item, element, &format!("{path}[{i}]"))?;
            }
            true
        }
        (Kind::Struct(fields), RawBsonRef::Document(doc)) => {
            check_document(fields, doc, Some(path))?;
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{path}`: expected {kind}, found {}",
            found(&value)
        ))
    }
}

/// Checks every field of `doc` against `fields`; a field the schema does not name does not fit.
pub fn check_document(
    fields: &[(String, Kind)],
    doc: &RawDocument,
    path: Option<&str>,
) -> Result<(), Mismatch> {
    for element in doc.iter() {
        let (name, value) = element.map_err(|e| format!("unreadable BSON: {e}"))?;
        let child = match path {
            Some(p) => format!("{p}.{name}"),
            None => name.to_owned(),
        };
        match fields.iter().find(|(n, _)| n == name) {
            Some((_, kind)) => check(kind, value, &child)?,
            None => return Err(format!("`{child}` is not in the schema")),
        }
    }
    Ok(())
}

/// The values of one column being built.
enum Column {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Decimal(Decimal128Builder, u8, i8),
    Binary(BinaryBuilder),
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        item: Box<Column>,
        field: Arc<Field>,
    },
    Struct(Box<Members>),
}

/// The members of a struct (or of the whole document) being built.
pub struct Members {
    names: HashMap<String, usize>,
    columns: Vec<Column>,
    fields: arrow_schema::Fields,
    nulls: NullBufferBuilder,
    seen: Vec<bool>,
    len: usize,
}

impl Members {
    fn new(fields: &[(String, Kind)]) -> Self {
        Self {
            names: fields
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.clone(), i))
                .collect(),
            columns: fields.iter().map(|(_, k)| Column::new(k)).collect(),
            fields: Kind::fields(fields),
            nulls: NullBufferBuilder::new(0),
            seen: vec![false; fields.len()],
            len: 0,
        }
    }

    /// Appends a checked document.
    fn append(&mut self, doc: &RawDocument) {
        self.seen.iter_mut().for_each(|s| *s = false);
        for (name, value) in doc.iter().flatten() {
            if let Some(&i) = self.names.get(name)
                && !self.seen[i]
            {
                self.seen[i] = true;
                self.columns[i].append(value);
            }
        }
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !*seen {
                column.append(RawBsonRef::Null);
            }
        }
        self.nulls.append_non_null();
        self.len += 1;
    }

    fn append_null(&mut self) {
        for column in &mut self.columns {
            column.append(RawBsonRef::Null);
        }
        self.nulls.append_null();
        self.len += 1;
    }

    fn finish_columns(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        self.columns.iter_mut().map(Column::finish).collect()
    }
}

impl Column {
    fn new(kind: &Kind) -> Self {
        match kind {
            Kind::Null | Kind::String | Kind::ObjectId | Kind::Json => {
                Column::Text(StringBuilder::new())
            }
            Kind::Int32 => Column::Int32(Int32Builder::new()),
            Kind::Int64 => Column::Int64(Int64Builder::new()),
            Kind::Double => Column::Double(Float64Builder::new()),
            Kind::Bool => Column::Bool(BooleanBuilder::new()),
            Kind::Timestamp => Column::Timestamp(TimestampMillisecondBuilder::new()),
            Kind::Date => Column::Date(Date32Builder::new()),
            Kind::Decimal(p, s) => Column::Decimal(Decimal128Builder::new(), *p, *s),
            Kind::Binary => Column::Binary(BinaryBuilder::new()),
            Kind::List(item) => Column::List {
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                item: Box::new(Column::new(item)),
                field: Arc::new(Field::new("item", item.data_type(), true)),
            },
            Kind::Struct(fields) => Column::Struct(Box::new(Members::new(fields))),
        }
    }

    /// Appends a value that was checked against this column's kind.
    fn append(&mut self, value: RawBsonRef<'_>) {
        let null = matches!(value, RawBsonRef::Null | RawBsonRef::Undefined);
        match self {
            Column::Text(b) => match value {
                _ if null => b.append_null(),
                RawBsonRef::String(s) => b.append_value(s),
                RawBsonRef::ObjectId(id) => b.append_value(id.to_hex()),
                other => b.append_value(json_text(other)),
            },
            Column::Int32(b) => match value {
                RawBsonRef::Int32(v) => b.append_value(v),
                RawBsonRef::Int64(v) => b.append_option(i32::try_from(v).ok()),
                _ => b.append_null(),
            },
            Column::Int64(b) => match value {
                RawBsonRef::Int32(v) => b.append_value(i64::from(v)),
                RawBsonRef::Int64(v) => b.append_value(v),
                _ => b.append_null(),
            },
            Column::Double(b) => match value {
                RawBsonRef::Double(v) => b.append_value(v),
                RawBsonRef::Int32(v) => b.append_value(f64::from(v)),
                RawBsonRef::Int64(v) => b.append_value(v as f64),
                _ => b.append_null(),
            },
            Column::Bool(b) => b.append_option(value.as_bool()),
            Column::Timestamp(b) => {
                b.append_option(value.as_datetime().map(|d| d.timestamp_millis()))
            }
            Column::Date(b) => b.append_option(
                value
                    .as_datetime()
                    .map(|d| d.timestamp_millis().div_euclid(86_400_000) as i32),
            ),
            Column::Decimal(b, p, s) => b.append_option(rescale(value, *p, *s)),
            Column::Binary(b) => match value {
                RawBsonRef::Binary(bin) => b.append_value(bin.bytes),
                _ => b.append_null(),
            },
            Column::List {
                offsets,
                nulls,
                item,
                ..
            } => {
                let last = *offsets.last().expect("offsets start with 0");
                match value {
                    RawBsonRef::Array(items) => {
                        let mut n = 0;
                        for element in items.into_iter().flatten() {
                            item.append(element);
                            n += 1;
                        }
                        offsets.push(last + n);
                        nulls.append_non_null();
                    }
                    _ => {
                        offsets.push(last);
                        nulls.append_null();
                    }
                }
            }
            Column::Struct(members) => match value {
                RawBsonRef::Document(doc) => members.append(doc),
                _ => members.append_null(),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Double(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were checked"),
            ),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::List {
                offsets,
                nulls,
                item,
                field,
            } => {
                let values = item.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(
                    field.clone(),
                    offsets,
                    values,
                    nulls.finish(),
                ))
            }
            Column::Struct(members) => {
                let columns = members.finish_columns();
                let nulls = members.nulls.finish();
                Arc::new(StructArray::new(members.fields.clone(), columns, nulls))
            }
        }
    }
}

/// A value as relaxed extended JSON text.
fn json_text(value: RawBsonRef<'_>) -> String {
    match Bson::try_from(value.to_raw_bson()) {
        Ok(bson) => bson.into_relaxed_extjson().to_string(),
        Err(e) => format!("\"unreadable BSON: {e}\""),
    }
}

/// Builds record batches from documents of a known shape.
pub struct BatchBuilder {
    schema: SchemaRef,
    fields: Vec<(String, Kind)>,
    members: Members,
}

impl BatchBuilder {
    /// A builder for documents whose top-level fields are `fields`.
    pub fn new(fields: Vec<(String, Kind)>) -> Self {
        let schema = Arc::new(Schema::new(Kind::fields(&fields)));
        Self {
            members: Members::new(&fields),
            schema,
            fields,
        }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows appended since the last batch.
    pub fn len(&self) -> usize {
        self.members.len
    }

    /// Whether no row was appended since the last batch.
    pub fn is_empty(&self) -> bool {
        self.members.len == 0
    }

    /// Appends `doc` when it fits the schema; otherwise says why not.
    pub fn push(&mut self, doc: &RawDocument) -> Result<(), Mismatch> {
        check_document(&self.fields, doc, None)?;
        self.members.append(doc);
        Ok(())
    }

    /// The rows appended so far, as a batch.
    pub fn finish(&mut self) -> RecordBatch {
        let columns = self.members.finish_columns();
        let _ = self.members.nulls.finish();
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns follow the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use mongodb::bson::{Decimal128, RawDocumentBuf, doc, oid::ObjectId};

    fn raw(d: mongodb::bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&d).unwrap()
    }

    #[test]
    fn documents_become_rows() {
        let kind = Kind::parse(
            "struct<_id: objectid, n: int64, price: decimal(10,2), when: timestamp, \
             tags: list<string>, address: struct<city: string>, other: json>",
        )
        .unwrap();
        let Kind::Struct(fields) = kind else { panic!() };
        let mut b = BatchBuilder::new(fields);
        let id = ObjectId::parse_str("65f000000000000000000001").unwrap();
        let price: Decimal128 = "12.5".parse().unwrap();
        let when = mongodb::bson::DateTime::from_millis(1_700_000_000_123);
        b.push(&raw(doc! {
            "_id": id, "n": 3i32, "price": price, "when": when, "tags": ["a", null, "b"],
            "address": {"city": "Delft"}, "other": {"$x": [1, 2]}
        }))
        .unwrap();
        b.push(&raw(doc! {"n": null, "tags": [], "address": null}))
            .unwrap();
        let bad = b.push(&raw(doc! {"n": "three"})).unwrap_err();
        assert_eq!(bad, "`n`: expected int64, found string");
        let bad = b.push(&raw(doc! {"address": {"zip": 1}})).unwrap_err();
        assert_eq!(bad, "`address.zip` is not in the schema");
        let too_fine: Decimal128 = "1.005".parse().unwrap();
        let bad = b.push(&raw(doc! {"price": too_fine})).unwrap_err();
        assert!(bad.contains("does not fit decimal(10,2)"), "{bad}");
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        let when = batch
            .column(3)
            .as_primitive::<arrow_array::types::TimestampMillisecondType>();
        assert_eq!(when.value(0), 1_700_000_000_123);
        assert_eq!(when.timezone(), Some("UTC"));
        let text = arrow::util::pretty::pretty_format_batches(&[batch
            .project(&[0, 1, 2, 4, 5, 6])
            .unwrap()])
        .unwrap()
        .to_string();
        for part in [
            "65f000000000000000000001",
            "12.50",
            "[a, , b]",
            "{city: Delft}",
            r#"{"$x":[1,2]}"#,
        ] {
            assert!(text.contains(part), "{part} missing from\n{text}");
        }
        assert!(b.is_empty());
        let next = {
            b.push(&raw(doc! {"n": 9i64})).unwrap();
            b.finish()
        };
        assert_eq!(
            next.column(1)
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(0),
            9
        );
    }
}
