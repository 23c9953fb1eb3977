//! The shape of the data: a small type language for the columns of a collection, inferred from
//! a sample of documents or given in the configuration (`int64`, `decimal(18,2)`,
//! `list<string>`, `struct<city: string, zip: string>`, …), and its Arrow types.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use mongodb::bson::{RawBsonRef, RawDocument};

/// The type of one column or nested value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Only nulls seen so far (inference only; it ends as `String`).
    Null,
    /// UTF-8 text.
    String,
    /// An ObjectId, as its 24 hex digits.
    ObjectId,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer (32-bit ones widen to it).
    Int64,
    /// 64-bit float (integers widen to it).
    Double,
    /// Boolean.
    Bool,
    /// A BSON date, as an Arrow timestamp in milliseconds, UTC.
    Timestamp,
    /// A BSON date's day (UTC), as an Arrow date.
    Date,
    /// Decimal128 as an Arrow decimal of this precision and scale.
    Decimal(u8, i8),
    /// Binary data.
    Binary,
    /// Anything, as relaxed extended JSON text.
    Json,
    /// An array whose items have this kind.
    List(Box<Kind>),
    /// An embedded document with these fields.
    Struct(Vec<(String, Kind)>),
}

/// The scale of a decimal value written as text (`"1.25"` → (125, 2), `"1E+3"` → (1, -3)),
/// or `None` for NaN and infinities.
pub fn decimal_parts(text: &str) -> Option<(i128, i32)> {
    let (mantissa, exponent) = match text.split_once(['E', 'e']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut unscaled: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    let scale = i32::try_from(frac.len()).ok()? - exponent;
    Some((if negative { -unscaled } else { unscaled }, scale))
}

impl Kind {
    /// The kind of one value; `nested` says whether documents and arrays become structs and
    /// lists (otherwise JSON text).
    pub fn of(value: RawBsonRef<'_>, nested: bool) -> Kind {
        match value {
            RawBsonRef::Null | RawBsonRef::Undefined => Kind::Null,
            RawBsonRef::String(_) => Kind::String,
            RawBsonRef::ObjectId(_) => Kind::ObjectId,
            RawBsonRef::Int32(_) => Kind::Int32,
            RawBsonRef::Int64(_) => Kind::Int64,
            RawBsonRef::Double(_) => Kind::Double,
            RawBsonRef::Boolean(_) => Kind::Bool,
            RawBsonRef::DateTime(_) => Kind::Timestamp,
            RawBsonRef::Binary(_) => Kind::Binary,
            RawBsonRef::Decimal128(d) => match decimal_parts(&d.to_string()) {
                Some((_, scale)) => Kind::Decimal(38, scale.clamp(0, 38) as i8),
                None => Kind::Json,
            },
            RawBsonRef::Array(items) if nested => {
                let mut kind = Kind::Null;
                for item in items.into_iter() {
                    match item {
                        Ok(v) => kind = kind.merge(Kind::of(v, nested)),
                        Err(_) => return Kind::Json,
                    }
                }
                Kind::List(Box::new(kind))
            }
            RawBsonRef::Document(doc) if nested => Kind::of_document(doc, nested),
            _ => Kind::Json,
        }
    }

    /// The kind of a whole document: always a struct of its fields.
    pub fn of_document(doc: &RawDocument, nested: bool) -> Kind {
        let mut fields = Vec::new();
        for element in doc.iter() {
            match element {
                Ok((name, v)) => fields.push((name.to_owned(), Kind::of(v, nested))),
                Err(_) => return Kind::Json,
            }
        }
        Kind::Struct(fields)
    }

    /// The narrowest kind holding both.
    pub fn merge(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int32, Int64) | (Int64, Int32) => Int64,
            (Int32 | Int64, Double) | (Double, Int32 | Int64) => Double,
            (Decimal(_, a), Decimal(_, b)) => Decimal(38, a.max(b)),
            (Int32 | Int64, Decimal(_, s)) | (Decimal(_, s), Int32 | Int64) => Decimal(38, s),
            (List(a), List(b)) => List(Box::new(a.merge(*b))),
            (Struct(mut a), Struct(b)) => {
                for (name, kind) in b {
                    match a.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, k)) => *k = std::mem::replace(k, Null).merge(kind),
                        None => a.push((name, kind)),
                    }
                }
                Struct(a)
            }
            _ => Json,
        }
    }

    /// Replaces what inference left open (`Null`) with `String`.
    pub fn settle(self) -> Kind {
        match self {
            Kind::Null => Kind::String,
            Kind::List(item) => Kind::List(Box::new(item.settle())),
            Kind::Struct(fields) => {
                Kind::Struct(fields.into_iter().map(|(n, k)| (n, k.settle())).collect())
            }
            other => other,
        }
    }

    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Null | Kind::String | Kind::ObjectId | Kind::Json => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Double => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Date => DataType::Date32,
            Kind::Decimal(p, s) => DataType::Decimal128(*p, *s),
            Kind::Binary => DataType::Binary,
            Kind::List(item) => {
                DataType::List(Arc::new(Field::new("item", item.data_type(), true)))
            }
            Kind::Struct(fields) => DataType::Struct(Self::fields(fields)),
        }
    }

    /// The Arrow fields of a struct's members (all nullable).
    pub fn fields(fields: &[(String, Kind)]) -> Fields {
        fields
            .iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect()
    }

    /// Reads a kind written in the configuration's type language.
    pub fn parse(text: &str) -> Result<Kind, String> {
        let mut parser = Parser { text, at: 0 };
        let kind = parser.kind()?;
        parser.space();
        if parser.at != text.len() {
            return Err(parser.error("the type ends here"));
        }
        Ok(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Null => f.write_str("null"),
            Kind::String => f.write_str("string"),
            Kind::ObjectId => f.write_str("objectid"),
            Kind::Int32 => f.write_str("int32"),
            Kind::Int64 => f.write_str("int64"),
            Kind::Double => f.write_str("double"),
            Kind::Bool => f.write_str("bool"),
            Kind::Timestamp => f.write_str("timestamp"),
            Kind::Date => f.write_str("date"),
            Kind::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            Kind::Binary => f.write_str("binary"),
            Kind::Json => f.write_str("json"),
            Kind::List(item) => write!(f, "list<{item}>"),
            Kind::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, (name, kind)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {kind}")?;
                }
                f.write_str(">")
            }
        }
    }
}

/// A recursive-descent reader of the type language.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at position {} of `{}`", self.at, self.text)
    }

    fn space(&mut self) {
        while self.text[self.at..].starts_with(char::is_whitespace) {
            self.at += self.text[self.at..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, token: char) -> bool {
        self.space();
        if self.text[self.at..].starts_with(token) {
            self.at += token.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: char) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{token}`")))
        }
    }

    fn word(&mut self) -> &str {
        self.space();
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn number(&mut self) -> Result<i64, String> {
        self.space();
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        let n = rest[..len]
            .parse::<i64>()
            .map_err(|_| self.error("expected a number"))?;
        self.at += len;
        Ok(n)
    }

    fn kind(&mut self) -> Result<Kind, String> {
        let start = self.at;
        let word = self.word().to_ascii_lowercase();
        Ok(match word.as_str() {
            "string" | "text" => Kind::String,
            "objectid" => Kind::ObjectId,
            "int32" | "int" => Kind::Int32,
            "int64" | "long" => Kind::Int64,
            "double" | "float64" => Kind::Double,
            "bool" | "boolean" => Kind::Bool,
            "timestamp" | "datetime" => Kind::Timestamp,
            "date" => Kind::Date,
            "binary" => Kind::Binary,
            "json" => Kind::Json,
            "decimal" => {
                self.expect('(')?;
                let p = self.number()?;
                self.expect(',')?;
                let s = self.number()?;
                self.expect(')')?;
                if !(1..=38).contains(&p) || !(0..=p).contains(&s) {
                    return Err(format!(
                        "decimal({p},{s}) needs a precision from 1 to 38 and a scale from 0 to \
                         the precision"
                    ));
                }
                Kind::Decimal(p as u8, s as i8)
            }
            "list" => {
                self.expect('<')?;
                let item = self.kind()?;
                self.expect('>')?;
                Kind::List(Box::new(item))
            }
            "struct" => {
                self.expect('<')?;
                let mut fields: Vec<(String, Kind)> = Vec::new();
                loop {
                    let name = self.word().to_owned();
                    if name.is_empty() {
                        return Err(self.error("expected a field name"));
                    }
                    self.expect(':')?;
                    let kind = self.kind()?;
                    if fields.iter().any(|(n, _)| *n == name) {
                        return Err(format!("the struct names `{name}` twice"));
                    }
                    fields.push((name, kind));
                    if self.eat('>') {
                        break;
                    }
                    self.expect(',')?;
                }
                Kind::Struct(fields)
            }
            _ => {
                self.at = start;
                return Err(self.error(
                    "expected string, objectid, int32, int64, double, bool, timestamp, date, \
                     decimal(p,s), binary, json, list<…> or struct<…>",
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{Decimal128, doc, oid::ObjectId};

    #[test]
    fn the_type_language_reads_back_what_it_writes() {
        for text in [
            "int64",
            "decimal(18,2)",
            "list<struct<city: string, zip: int32>>",
            "struct<a: list<json>, b: timestamp>",
        ] {
            assert_eq!(Kind::parse(text).unwrap().to_string(), text);
        }
        assert!(
            Kind::parse("decimal(40,2)")
                .unwrap_err()
                .contains("precision")
        );
        assert!(
            Kind::parse("list<int64")
                .unwrap_err()
                .contains("expected `>`")
        );
        assert!(
            Kind::parse("strin")
                .unwrap_err()
                .contains("expected string")
        );
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal_parts("1.25"), Some((125, 2)));
        assert_eq!(decimal_parts("-0.001"), Some((-1, 3)));
        assert_eq!(decimal_parts("1E+3"), Some((1, -3)));
        assert_eq!(decimal_parts("1.5E-7"), Some((15, 8)));
        assert_eq!(decimal_parts("NaN"), None);
        assert_eq!(decimal_parts("Infinity"), None);
    }

    #[test]
    fn kinds_are_inferred_and_merged() {
        let d: Decimal128 = "12.345".parse().unwrap();
        let first = mongodb::bson::RawDocumentBuf::from_document(&doc! {
            "_id": ObjectId::new(), "n": 1i32, "x": 1i32, "price": d, "tags": ["a"],
            "address": {"city": "Delft"}, "maybe": null, "mixed": "text"
        })
        .unwrap();
        let second = mongodb::bson::RawDocumentBuf::from_document(&doc! {
            "n": 5_000_000_000i64, "x": 0.5, "price": 3i32, "tags": [],
            "address": {"zip": 2611}, "maybe": true, "mixed": 4i32
        })
        .unwrap();
        let doc_kind = |d: &mongodb::bson::RawDocumentBuf| Kind::of_document(d, true);
        let kind = doc_kind(&first).merge(doc_kind(&second)).settle();
        assert_eq!(
            kind.to_string(),
            "struct<_id: objectid, n: int64, x: double, price: decimal(38,3), tags: list<string>, \
             address: struct<city: string, zip: int32>, maybe: bool, mixed: json>"
        );
        let flat = Kind::of_document(&first, false);
        assert!(
            flat.to_string().contains("tags: json, address: json"),
            "{flat}"
        );
    }
}
