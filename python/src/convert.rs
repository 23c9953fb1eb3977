//! Lists of dicts (the original `Source.extract()` contract) to Arrow record batches.
//!
//! Each column is filled straight from the dicts into an Arrow builder, under the GIL, with the
//! CPython API: one dict lookup per cell with a pre-hashed key, no intermediate Python objects.
//!
//! The schema is the one the source declares, or else the one inferred from the first non-empty
//! batch, and it stays fixed for the run (a target needs one schema). Inference:
//!
//! | Python value                 | Arrow type                           |
//! |------------------------------|--------------------------------------|
//! | `bool`                       | `Boolean`                            |
//! | `int`                        | `Int64`                              |
//! | `float` (or `int` and float) | `Float64`                            |
//! | `str`                        | `Utf8`                               |
//! | `bytes`                      | `Binary`                             |
//! | `datetime.date`              | `Date32`                             |
//! | `datetime.datetime`          | `Timestamp(µs)`; aware ones in UTC   |
//! | `decimal.Decimal`            | `Decimal128(38, largest scale seen)` |
//! | `dict`, `list`, `tuple`      | `Utf8` holding JSON text             |
//! | only `None`                  | `Null`                               |
//!
//! Anything that does not fit is an error naming the batch, row, column and value, never a
//! silent coercion: a key the schema does not know, a value of another type, an `int` out of
//! range, a `None` in a non-nullable column.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    NullBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::types::Decimal128Type;
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_cast::CastOptions;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyDate, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyList, PyString, PyTimeAccess,
    PyTzInfoAccess,
};

/// Converts the batches of one source into record batches of one schema.
pub struct RowConverter {
    schema: Option<SchemaRef>,
    declared: bool,
    keys: Vec<Py<PyString>>,
    json: Vec<bool>,
    decimal_type: Py<PyAny>,
    json_dumps: Py<PyAny>,
    batches: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    Date,
    Ts { aware: bool },
    Dec { scale: i8 },
    Json,
}

impl Kind {
    fn merge(self, other: Kind) -> Option<Kind> {
        use Kind::*;
        Some(match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int, Float) | (Float, Int) => Float,
            (Dec { scale: a }, Dec { scale: b }) => Dec { scale: a.max(b) },
            (Dec { scale }, Int) | (Int, Dec { scale }) => Dec { scale },
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Null => "None",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Str => "str",
            Kind::Bytes => "bytes",
            Kind::Date => "date",
            Kind::Ts { aware: false } => "naive datetime",
            Kind::Ts { aware: true } => "aware datetime",
            Kind::Dec { .. } => "Decimal",
            Kind::Json => "dict/list",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Null => DataType::Null,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Str | Kind::Json => DataType::Utf8,
            Kind::Bytes => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Ts { aware } => {
                DataType::Timestamp(TimeUnit::Microsecond, aware.then(|| "UTC".into()))
            }
            Kind::Dec { scale } => DataType::Decimal128(38, scale),
        }
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

fn short_repr(v: &Bound<'_, PyAny>) -> String {
    let r = v
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".into());
    if r.chars().count() > 60 {
        format!("{}…", r.chars().take(60).collect::<String>())
    } else {
        r
    }
}

impl RowConverter {
    /// A converter with a declared schema, or one that infers it from the first batch.
    pub fn new(py: Python<'_>, schema: Option<SchemaRef>) -> PyResult<Self> {
        let decimal_type = py.import("decimal")?.getattr("Decimal")?.unbind();
        let json_dumps = py.import("json")?.getattr("dumps")?.unbind();
        let mut c = Self {
            schema: None,
            declared: schema.is_some(),
            keys: Vec::new(),
            json: Vec::new(),
            decimal_type,
            json_dumps,
            batches: 0,
        };
        if let Some(s) = schema {
            c.fix_schema(py, s, None);
        }
        Ok(c)
    }

    /// The schema, once declared or inferred.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// Adopts a schema inferred elsewhere (by another partition of the same source).
    pub fn adopt(&mut self, py: Python<'_>, schema: SchemaRef, json: Vec<bool>) {
        if self.schema.is_none() {
            self.fix_schema(py, schema, Some(json));
        }
    }

    /// Which columns hold JSON text of nested values.
    pub fn json_columns(&self) -> Vec<bool> {
        self.json.clone()
    }

    fn fix_schema(&mut self, py: Python<'_>, schema: SchemaRef, json: Option<Vec<bool>>) {
        self.keys = schema
            .fields()
            .iter()
            .map(|f| PyString::intern(py, f.name()).unbind())
            .collect();
        self.json = json.unwrap_or_else(|| vec![false; schema.fields().len()]);
        self.schema = Some(schema);
    }

    /// Converts one non-empty list of dicts.
    pub fn convert(
        &mut self,
        py: Python<'_>,
        rows: &Bound<'_, PyList>,
    ) -> Result<RecordBatch, String> {
        self.batches += 1;
        let batch_no = self.batches;
        if self.schema.is_none() {
            let (schema, json) = self
                .infer(py, rows)
                .map_err(|e| format!("batch {batch_no}: {e}"))?;
            self.fix_schema(py, schema, Some(json));
        }
        self.fill(py, rows)
            .map_err(|e| format!("batch {batch_no}: {e}"))
    }

    fn infer(
        &self,
        py: Python<'_>,
        rows: &Bound<'_, PyList>,
    ) -> Result<(SchemaRef, Vec<bool>), String> {
        let mut order: Vec<(String, Kind)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (r, row) in rows.iter().enumerate() {
            let dict = row
                .cast::<pyo3::types::PyDict>()
                .map_err(|_| format!("row {r} is a {}, not a dict", type_name(&row)))?;
            for (k, v) in dict.iter() {
                let key: String = k
                    .cast::<PyString>()
                    .map_err(|_| {
                        format!("row {r} has a key that is not a str: {}", short_repr(&k))
                    })?
                    .to_string();
                let kind = self
                    .kind_of(py, &v)
                    .map_err(|e| format!("row {r}, column `{key}`: {e}"))?;
                match index.get(&key) {
                    Some(&i) => {
                        let old = order[i].1;
                        order[i].1 = old.merge(kind).ok_or_else(|| {
                            format!(
                                "column `{key}` holds both {} and {} values (row {r}); declare a schema on the source to say which type it has",
                                old.name(),
                                kind.name()
                            )
                        })?;
                    }
                    None => {
                        index.insert(key.clone(), order.len());
                        order.push((key, kind));
                    }
                }
            }
        }
        let json = order.iter().map(|(_, k)| *k == Kind::Json).collect();
        let fields: Vec<Field> = order
            .into_iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect();
        Ok((Arc::new(Schema::new(fields)), json))
    }

    fn kind_of(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> Result<Kind, String> {
        let p = v.as_ptr();
        // SAFETY: type checks on a live object.
        unsafe {
            if p == ffi::Py_None() {
                return Ok(Kind::Null);
            }
            if ffi::PyBool_Check(p) != 0 {
                return Ok(Kind::Bool);
            }
            if ffi::PyLong_Check(p) != 0 {
                return Ok(Kind::Int);
            }
            if ffi::PyFloat_Check(p) != 0 {
                return Ok(Kind::Float);
            }
            if ffi::PyUnicode_Check(p) != 0 {
                return Ok(Kind::Str);
            }
            if ffi::PyBytes_Check(p) != 0 {
                return Ok(Kind::Bytes);
            }
            if ffi::PyDict_Check(p) != 0 || ffi::PyList_Check(p) != 0 || ffi::PyTuple_Check(p) != 0
            {
                return Ok(Kind::Json);
            }
        }
        if let Ok(dt) = v.cast::<PyDateTime>() {
            return Ok(Kind::Ts {
                aware: dt.get_tzinfo().is_some(),
            });
        }
        if v.cast::<PyDate>().is_ok() {
            return Ok(Kind::Date);
        }
        if v.is_instance(self.decimal_type.bind(py)).unwrap_or(false) {
            let exponent = v
                .call_method0("as_tuple")
                .and_then(|t| t.getattr("exponent"))
                .map_err(|e| e.to_string())?;
            let exponent: i64 = exponent
                .extract()
                .map_err(|_| format!("cannot store {} (not a finite number)", short_repr(v)))?;
            let scale = (-exponent).max(0);
            if scale > 38 {
                return Err(format!("{} has more than 38 decimal places", short_repr(v)));
            }
            return Ok(Kind::Dec { scale: scale as i8 });
        }
        Err(format!(
            "cannot infer an Arrow type for a {} value ({}); declare a schema on the source",
            type_name(v),
            short_repr(v)
        ))
    }

    fn fill(&self, py: Python<'_>, rows: &Bound<'_, PyList>) -> Result<RecordBatch, String> {
        let schema = self.schema.clone().expect("schema fixed before filling");
        let n = rows.len();
        let mut cols: Vec<Col> = schema
            .fields()
            .iter()
            .zip(&self.json)
            .map(|(f, json)| Col::new(f, *json, n))
            .collect::<Result<_, _>>()?;
        let keys: Vec<*mut ffi::PyObject> = self.keys.iter().map(|k| k.as_ptr()).collect();
        let list = rows.as_ptr();
        for r in 0..n {
            // SAFETY: `rows` is a list borrowed for the whole loop and `r` is in range; the
            // items and dict values are borrowed references kept alive by the list.
            unsafe {
                let row = ffi::PyList_GET_ITEM(list, r as ffi::Py_ssize_t);
                if ffi::PyDict_Check(row) == 0 {
                    let row = Bound::from_borrowed_ptr(py, row);
                    return Err(format!("row {r} is a {}, not a dict", type_name(&row)));
                }
                // Rows built by one dict display have the schema's keys, in its order, as the
                // same interned objects: walk the entries and look up only from the first
                // entry that differs.
                let mut found = 0isize;
                let mut pos: ffi::Py_ssize_t = 0;
                let mut k: *mut ffi::PyObject = std::ptr::null_mut();
                let mut v: *mut ffi::PyObject = std::ptr::null_mut();
                let mut c = 0;
                while c < cols.len()
                    && ffi::PyDict_Next(row, &mut pos, &mut k, &mut v) != 0
                    && k == keys[c]
                {
                    let col = &mut cols[c];
                    col.append(py, v, self)
                        .map_err(|e| format!("row {r}, column `{}`: {e}", col.name))?;
                    found += 1;
                    c += 1;
                }
                for (col, key) in cols[c..].iter_mut().zip(&keys[c..]) {
                    let v = ffi::PyDict_GetItem(row, *key);
                    if !v.is_null() {
                        found += 1;
                    }
                    col.append(py, v, self)
                        .map_err(|e| format!("row {r}, column `{}`: {e}", col.name))?;
                }
                if ffi::PyDict_Size(row) > found {
                    let row = Bound::from_borrowed_ptr(py, row);
                    return Err(self.extra_key(r, &row));
                }
            }
        }
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| c.finish(f))
            .collect::<Result<_, _>>()?;
        RecordBatch::try_new_with_options(
            schema,
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| e.to_string())
    }

    fn extra_key(&self, r: usize, row: &Bound<'_, PyAny>) -> String {
        let known: Vec<&str> = self
            .schema
            .as_ref()
            .map(|s| s.fields().iter().map(|f| f.name().as_str()).collect())
            .unwrap_or_default();
        let extra = row
            .cast::<pyo3::types::PyDict>()
            .ok()
            .and_then(|d| {
                d.keys().iter().find_map(|k| {
                    let s = k.str().map(|s| s.to_string()).unwrap_or_default();
                    (!known.contains(&s.as_str())).then_some(s)
                })
            })
            .unwrap_or_default();
        if self.declared {
            format!("row {r} has the key `{extra}`, which is not in the source's schema")
        } else {
            format!(
                "row {r} has the key `{extra}`, which the first batch did not have; declare a schema on the source so that every column is known from the start"
            )
        }
    }
}

enum Buf {
    Null(NullBuilder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Float(Float64Builder),
    Str(StringBuilder, bool),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, bool),
    Dec(Decimal128Builder, u8, i8),
}

struct Col {
    name: String,
    nullable: bool,
    buf: Buf,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Col {
    fn new(field: &Field, json: bool, n: usize) -> Result<Self, String> {
        let buf = match field.data_type() {
            DataType::Null => Buf::Null(NullBuilder::new()),
            DataType::Boolean => Buf::Bool(BooleanBuilder::with_capacity(n)),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Buf::Int(Int64Builder::with_capacity(n)),
            DataType::UInt64 => Buf::UInt(UInt64Builder::with_capacity(n)),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                Buf::Float(Float64Builder::with_capacity(n))
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Buf::Str(StringBuilder::with_capacity(n, n * 16), json)
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                Buf::Bin(BinaryBuilder::with_capacity(n, n * 16))
            }
            DataType::Date32 | DataType::Date64 => Buf::Date(Date32Builder::with_capacity(n)),
            DataType::Timestamp(_, tz) => {
                Buf::Ts(TimestampMicrosecondBuilder::with_capacity(n), tz.is_some())
            }
            DataType::Decimal128(p, s) => Buf::Dec(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
                *p,
                *s,
            ),
            other => {
                return Err(format!(
                    "column `{}` has the type {other}, which cannot be filled from Python values; return a pyarrow Table from extract() for such columns",
                    field.name()
                ));
            }
        };
        Ok(Self {
            name: field.name().clone(),
            nullable: field.is_nullable(),
            buf,
        })
    }

    /// Appends one value; `v` is a borrowed reference, or null when the key is missing.
    ///
    /// # Safety
    /// `v` must be null or a live object, and the GIL held.
    unsafe fn append(
        &mut self,
        py: Python<'_>,
        v: *mut ffi::PyObject,
        conv: &RowConverter,
    ) -> Result<(), String> {
        unsafe {
            if v.is_null() || v == ffi::Py_None() {
                if !self.nullable {
                    return Err("is missing or None, but the column is not nullable".into());
                }
                match &mut self.buf {
                    Buf::Null(b) => b.append_null(),
                    Buf::Bool(b) => b.append_null(),
                    Buf::Int(b) => b.append_null(),
                    Buf::UInt(b) => b.append_null(),
                    Buf::Float(b) => b.append_null(),
                    Buf::Str(b, _) => b.append_null(),
                    Buf::Bin(b) => b.append_null(),
                    Buf::Date(b) => b.append_null(),
                    Buf::Ts(b, _) => b.append_null(),
                    Buf::Dec(b, _, _) => b.append_null(),
                }
                return Ok(());
            }
            let mismatch = |expected: &str| -> String {
                let v = Bound::from_borrowed_ptr(py, v);
                format!(
                    "expected {expected}, got {} {}",
                    type_name(&v),
                    short_repr(&v)
                )
            };
            match &mut self.buf {
                Buf::Bool(b) => {
                    if v == ffi::Py_True() {
                        b.append_value(true)
                    } else if v == ffi::Py_False() {
                        b.append_value(false)
                    } else {
                        return Err(mismatch("a bool"));
                    }
                }
                Buf::Int(b) => {
                    if ffi::PyBool_Check(v) != 0 {
                        return Err(mismatch("an int"));
                    }
                    if ffi::PyLong_Check(v) == 0 && ffi::PyIndex_Check(v) == 0 {
                        return Err(mismatch("an int"));
                    }
                    let x = ffi::PyLong_AsLongLong(v);
                    if x == -1 && !ffi::PyErr_Occurred().is_null() {
                        ffi::PyErr_Clear();
                        return Err(mismatch("an int that fits in 64 bits"));
                    }
                    b.append_value(x)
                }
                Buf::UInt(b) => {
                    if ffi::PyBool_Check(v) != 0 || ffi::PyLong_Check(v) == 0 {
                        return Err(mismatch("an int"));
                    }
                    let x = ffi::PyLong_AsUnsignedLongLong(v);
                    if x == u64::MAX && !ffi::PyErr_Occurred().is_null() {
                        ffi::PyErr_Clear();
                        return Err(mismatch("an int from 0 to 2**64-1"));
                    }
                    b.append_value(x)
                }
                Buf::Float(b) => {
                    if ffi::PyFloat_Check(v) != 0 {
                        b.append_value(ffi::PyFloat_AS_DOUBLE(v))
                    } else if ffi::PyBool_Check(v) != 0
                        || ffi::PyUnicode_Check(v) != 0
                        || ffi::PyBytes_Check(v) != 0
                    {
                        return Err(mismatch("a float"));
                    } else {
                        let x = ffi::PyFloat_AsDouble(v);
                        if x == -1.0 && !ffi::PyErr_Occurred().is_null() {
                            ffi::PyErr_Clear();
                            return Err(mismatch("a float"));
                        }
                        b.append_value(x)
                    }
                }
                Buf::Str(b, json) => {
                    if ffi::PyUnicode_Check(v) != 0 {
                        let mut len: ffi::Py_ssize_t = 0;
                        let data = ffi::PyUnicode_AsUTF8AndSize(v, &mut len);
                        if data.is_null() {
                            ffi::PyErr_Clear();
                            return Err(mismatch("a str that can be encoded as UTF-8"));
                        }
                        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
                        // SAFETY: CPython returns valid UTF-8 here.
                        b.append_value(std::str::from_utf8_unchecked(bytes))
                    } else if *json
                        && (ffi::PyDict_Check(v) != 0
                            || ffi::PyList_Check(v) != 0
                            || ffi::PyTuple_Check(v) != 0)
                    {
                        let obj = Bound::from_borrowed_ptr(py, v);
                        let kwargs = pyo3::types::PyDict::new(py);
                        let _ = kwargs.set_item("default", py.get_type::<PyString>());
                        let text = conv
                            .json_dumps
                            .bind(py)
                            .call((obj,), Some(&kwargs))
                            .and_then(|t| t.extract::<String>())
                            .map_err(|e| format!("cannot write the value as JSON: {e}"))?;
                        b.append_value(text)
                    } else {
                        return Err(mismatch(if *json { "a dict or a list" } else { "a str" }));
                    }
                }
                Buf::Bin(b) => {
                    if ffi::PyBytes_Check(v) != 0 {
                        let data = ffi::PyBytes_AsString(v);
                        let len = ffi::PyBytes_Size(v);
                        b.append_value(std::slice::from_raw_parts(data.cast::<u8>(), len as usize))
                    } else if ffi::PyByteArray_Check(v) != 0 {
                        let data = ffi::PyByteArray_AsString(v);
                        let len = ffi::PyByteArray_Size(v);
                        b.append_value(std::slice::from_raw_parts(data.cast::<u8>(), len as usize))
                    } else {
                        return Err(mismatch("bytes"));
                    }
                }
                Buf::Date(b) => {
                    let obj = Bound::from_borrowed_ptr(py, v);
                    if obj.cast::<PyDateTime>().is_ok() {
                        return Err(mismatch("a date (not a datetime)"));
                    }
                    let d = obj.cast::<PyDate>().map_err(|_| mismatch("a date"))?;
                    let days = days_from_civil(d.get_year(), d.get_month(), d.get_day());
                    b.append_value(days as i32)
                }
                Buf::Ts(b, aware_column) => {
                    let obj = Bound::from_borrowed_ptr(py, v);
                    let dt = obj
                        .cast::<PyDateTime>()
                        .map_err(|_| mismatch("a datetime"))?;
                    let days = days_from_civil(dt.get_year(), dt.get_month(), dt.get_day());
                    let mut micros = days * MICROS_PER_DAY
                        + i64::from(dt.get_hour()) * 3_600_000_000
                        + i64::from(dt.get_minute()) * 60_000_000
                        + i64::from(dt.get_second()) * 1_000_000
                        + i64::from(dt.get_microsecond());
                    if dt.get_tzinfo().is_some() {
                        if !*aware_column {
                            return Err(mismatch("a naive datetime (the column has no time zone)"));
                        }
                        let offset = dt
                            .call_method0("utcoffset")
                            .map_err(|e| format!("utcoffset() failed: {e}"))?;
                        if let Ok(delta) = offset.cast::<PyDelta>() {
                            micros -= i64::from(delta.get_days()) * MICROS_PER_DAY
                                + i64::from(delta.get_seconds()) * 1_000_000
                                + i64::from(delta.get_microseconds());
                        }
                    }
                    b.append_value(micros)
                }
                Buf::Dec(b, p, s) => {
                    let obj = Bound::from_borrowed_ptr(py, v);
                    let is_decimal = obj.is_instance(conv.decimal_type.bind(py)).unwrap_or(false);
                    let is_int = ffi::PyLong_Check(v) != 0 && ffi::PyBool_Check(v) == 0;
                    if !is_decimal && !is_int {
                        return Err(mismatch("a Decimal or an int"));
                    }
                    let text = obj.str().map_err(|e| e.to_string())?.to_string();
                    let x = arrow_cast::parse::parse_decimal::<Decimal128Type>(&text, *p, *s)
                        .map_err(|_| mismatch(&format!("a number that fits DECIMAL({p},{s})")))?;
                    b.append_value(x)
                }
                Buf::Null(_) => {
                    return Err(mismatch(
                        "None: the column held only None in the first batch, so its type is unknown; declare a schema on the source",
                    ));
                }
            }
            Ok(())
        }
    }

    fn finish(self, field: &Field) -> Result<ArrayRef, String> {
        let array: ArrayRef = match self.buf {
            Buf::Null(mut b) => Arc::new(b.finish()),
            Buf::Bool(mut b) => Arc::new(b.finish()),
            Buf::Int(mut b) => Arc::new(b.finish()),
            Buf::UInt(mut b) => Arc::new(b.finish()),
            Buf::Float(mut b) => Arc::new(b.finish()),
            Buf::Str(mut b, _) => Arc::new(b.finish()),
            Buf::Bin(mut b) => Arc::new(b.finish()),
            Buf::Date(mut b) => Arc::new(b.finish()),
            Buf::Ts(mut b, aware) => Arc::new(b.finish().with_timezone_opt(aware.then_some("UTC"))),
            Buf::Dec(mut b, _, _) => Arc::new(b.finish()),
        };
        if array.data_type() == field.data_type() {
            return Ok(array);
        }
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        arrow_cast::cast_with_options(&array, field.data_type(), &options)
            .map_err(|e| format!("column `{}`: {e}", field.name()))
    }
}
