//! The plan of a table read, as pure functions of what the server said: the key to page on
//! and its kind, the selected columns, the key range split into partitions, and each
//! partition's spec. The source (`source.rs`) asks the server; everything decided from the
//! answers is here, tested without a server.

use std::collections::HashMap;

use fastlane_plugin_api::Partition;
use mysql_async::Value;
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};

/// What a partition reads: the key range and where incremental reading starts. (A resumed
/// run narrows it further with a [`fastlane_plugin_api::ReadRange`].)
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Range {
    /// Read keys strictly above this (the incremental offset).
    pub(crate) after: Option<Json>,
    /// Read keys at or above this.
    pub(crate) from: Option<Json>,
    /// Read keys below this.
    pub(crate) below: Option<Json>,
}

/// What the source learned about the table when it planned the partitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Plan {
    pub(crate) select: String,
    /// The qualified table a table's plan reads (none for a custom `query`): its rows are
    /// counted straight from the table, without reading the selected columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) table: Option<String>,
    pub(crate) key: String,
    pub(crate) key_unique: bool,
    /// How a key value is bound: `?`, or `CAST(? AS DECIMAL(p,s))` for decimal keys, which
    /// would otherwise be compared as doubles and lose digits.
    #[serde(default = "plain_param")]
    pub(crate) key_param: String,
    /// Whether the key is text, compared by its collation.
    #[serde(default)]
    pub(crate) key_text: bool,
    pub(crate) column_types: HashMap<String, String>,
}

pub(crate) fn plain_param() -> String {
    "?".to_owned()
}

/// The category of a key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Integer,
    Decimal,
    Float,
    Temporal,
    Text,
}

pub(crate) fn key_kind(data_type: &str) -> Option<KeyKind> {
    Some(match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            KeyKind::Integer
        }
        "decimal" | "numeric" => KeyKind::Decimal,
        "float" | "double" | "real" => KeyKind::Float,
        "date" | "datetime" | "timestamp" | "time" => KeyKind::Temporal,
        "char" | "varchar" | "binary" | "varbinary" | "tinytext" | "text" | "mediumtext"
        | "longtext" => KeyKind::Text,
        _ => return None,
    })
}

/// `CAST(? AS DECIMAL(p,s))` for a `decimal(p,s) [unsigned]` column type.
pub(crate) fn decimal_cast(column_type: &str) -> Option<String> {
    let t = column_type.trim().to_ascii_lowercase();
    let rest = t
        .strip_prefix("decimal(")
        .or_else(|| t.strip_prefix("numeric("))?;
    let (args, _) = rest.split_once(')')?;
    let (p, sc) = args.split_once(',').unwrap_or((args, "0"));
    let (p, sc): (u8, u8) = (p.trim().parse().ok()?, sc.trim().parse().ok()?);
    Some(format!("CAST(? AS DECIMAL({p},{sc}))"))
}

/// A key value as a position in a partition, JSON the host keeps and gives back to
/// [`param`]: numbers stay numbers, dates and times are text, bytes are text when they are
/// UTF-8 and `{"hex": …}` otherwise.
pub(crate) fn position_json(v: &Value) -> Json {
    match v {
        Value::NULL => Json::Null,
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => Json::String(s.to_owned()),
            Err(_) => json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
        },
        Value::Date(y, m, d, h, mi, s, us) => Json::String(format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, d, h, m, s, us) => Json::String(format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" },
            u32::from(*h) + d * 24
        )),
    }
}

/// A JSON offset or bound as a statement parameter.
pub(crate) fn param(v: &Json) -> Value {
    if let Some(hex) = v.get("hex").and_then(Json::as_str) {
        let bytes = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        return Value::Bytes(bytes);
    }
    match v {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Int(i64::from(*b)),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Double(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Value::Bytes(s.clone().into_bytes()),
        other => Value::Bytes(other.to_string().into_bytes()),
    }
}

/// A column of the table, from `information_schema.COLUMNS`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableColumn {
    /// Its name.
    pub(crate) name: String,
    /// `COLUMN_TYPE` (`decimal(10,2) unsigned`).
    pub(crate) column_type: String,
    /// `DATA_TYPE` (`decimal`).
    pub(crate) data_type: String,
    /// Whether it may hold NULL.
    pub(crate) nullable: bool,
}

/// The column to page on: the configured `key`, else the single-column primary key.
pub(crate) fn choose_key<'a>(
    configured: Option<&str>,
    primary: &[String],
    columns: &'a [TableColumn],
    table: &str,
) -> Result<&'a TableColumn> {
    let key = match (configured, primary) {
        (Some(k), _) => k,
        (None, [only]) => only.as_str(),
        (None, _) => {
            return Err(Error::Config(format!(
                "table {table} has no single-column primary key to page on; set `key` to an \
                 indexed column"
            )));
        }
    };
    columns.iter().find(|c| c.name == key).ok_or_else(|| {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        Error::NotFound(format!(
            "unknown replication key `{key}`: {table} has the columns {}",
            names.join(", ")
        ))
    })
}

/// The kind of a key column, or why it cannot be paged on.
pub(crate) fn key_kind_of(column: &TableColumn) -> Result<KeyKind> {
    key_kind(&column.data_type).ok_or_else(|| {
        Error::Config(format!(
            "replication key `{}` is of type {}, which cannot be paged on; use a numeric, \
             string, date or time column",
            column.name, column.data_type
        ))
    })
}

/// Refuses a key column that holds NULL (`has_null`, as the server said): such rows can be
/// neither paged nor resumed.
pub(crate) fn refuse_null_keys(key: &TableColumn, has_null: bool, table: &str) -> Result<()> {
    if !has_null {
        return Ok(());
    }
    Err(Error::Data(format!(
        "replication key `{}` of {table} has NULL values, and rows with a NULL key cannot be \
         paged or resumed; fill them, or choose another `key`",
        key.name
    )))
}

/// The columns read: the configured `columns` (which must exist and include the key), or all.
pub(crate) fn select_columns(
    configured: Option<&[String]>,
    columns: &[TableColumn],
    key: &str,
    table: &str,
) -> Result<Vec<String>> {
    let Some(list) = configured else {
        return Ok(columns.iter().map(|c| c.name.clone()).collect());
    };
    let unknown: Vec<String> = list
        .iter()
        .filter(|c| !columns.iter().any(|t| &t.name == *c))
        .map(|c| format!("`{c}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::NotFound(format!(
            "`columns` names columns that {table} lacks: {}",
            unknown.join(", ")
        )));
    }
    if !list.iter().any(|c| c == key) {
        return Err(Error::Config(format!(
            "`columns` must include the replication key `{key}`"
        )));
    }
    Ok(list.to_vec())
}

/// The SQL expressions of the smallest and largest key, as numbers a range can be split on.
pub(crate) fn range_expressions(kind: KeyKind, key: &str) -> Result<(String, String)> {
    let quoted = crate::conn::ident(key);
    Ok(match kind {
        KeyKind::Integer => (format!("MIN({quoted})"), format!("MAX({quoted})")),
        KeyKind::Decimal | KeyKind::Float => (
            format!("CAST(MIN({quoted}) AS DOUBLE)"),
            format!("CAST(MAX({quoted}) AS DOUBLE)"),
        ),
        KeyKind::Temporal => (
            format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MIN({quoted}))"),
            format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MAX({quoted}))"),
        ),
        KeyKind::Text => {
            return Err(Error::Config(format!(
                "`partitions` cannot split the string key `{key}`; give `partition_bounds`"
            )));
        }
    })
}

/// The inner bounds that split the keys from `lo` to `hi` (as [`range_expressions`] gives
/// them) into at most `n` ranges: ascending, distinct, each above `lo`. None when the table
/// (or what is left after the offset) is empty, or holds one key.
///
/// Integer keys split exactly over signed and unsigned 64-bit values; decimal, float and
/// temporal keys (microseconds since 1970) split as doubles.
pub(crate) fn bounds(kind: KeyKind, lo: &Value, hi: &Value, n: usize) -> Vec<Json> {
    match kind {
        KeyKind::Integer => {
            let (Some(lo), Some(hi)) = (as_i128(lo), as_i128(hi)) else {
                return vec![];
            };
            let span = hi - lo + 1;
            let mut out: Vec<i128> = Vec::new();
            for i in 1..n as i128 {
                let b = lo + span * i / n as i128;
                if b > lo && out.last() != Some(&b) {
                    out.push(b);
                }
            }
            out.into_iter()
                .map(|b| match i64::try_from(b) {
                    Ok(x) => json!(x),
                    Err(_) => json!(u64::try_from(b).unwrap_or(u64::MAX)),
                })
                .collect()
        }
        KeyKind::Decimal | KeyKind::Float | KeyKind::Temporal => {
            let (Some(lo), Some(hi)) = (as_f64(lo), as_f64(hi)) else {
                return vec![];
            };
            let mut out = Vec::new();
            for i in 1..n {
                let b = lo + (hi - lo) * i as f64 / n as f64;
                if b > lo {
                    out.push(if kind == KeyKind::Temporal {
                        let t = chrono::DateTime::from_timestamp_micros(b as i64)
                            .unwrap_or_default()
                            .naive_utc();
                        json!(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                    } else {
                        json!(b)
                    });
                }
            }
            out.dedup();
            out
        }
        KeyKind::Text => vec![],
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Double(d) => Some(*d),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// One partition per range between consecutive `bounds` (the first from the start, the last
/// to the end), each reading only keys after the offset `after`.
pub(crate) fn partitions_between(
    plan: &Plan,
    after: Option<&Json>,
    bounds: Vec<Json>,
) -> Vec<Partition> {
    let mut edges: Vec<Option<Json>> = vec![None];
    edges.extend(bounds.into_iter().map(Some));
    edges.push(None);
    edges
        .windows(2)
        .enumerate()
        .map(|(index, w)| Partition {
            index,
            spec: json!({
                "plan": plan,
                "range": Range { after: after.cloned(), from: w[0].clone(), below: w[1].clone() },
            }),
        })
        .collect()
}

/// The one partition of a custom `query`, read in one pass.
pub(crate) fn query_partition(query: String) -> Partition {
    let plan = Plan {
        select: query,
        table: None,
        key: String::new(),
        key_unique: false,
        key_param: plain_param(),
        key_text: false,
        column_types: HashMap::new(),
    };
    Partition {
        index: 0,
        spec: json!({"plan": plan, "range": Json::Null}),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn column(name: &str, data_type: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            column_type: data_type.into(),
            data_type: data_type.into(),
            nullable: false,
        }
    }

    fn table() -> Vec<TableColumn> {
        vec![
            column("id", "bigint"),
            column("name", "varchar"),
            column("doc", "json"),
        ]
    }

    fn ints(values: &[Json]) -> Vec<i128> {
        values
            .iter()
            .map(|v| {
                v.as_i64()
                    .map(i128::from)
                    .or(v.as_u64().map(i128::from))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_key_is_the_configured_one_or_the_single_column_primary_key() {
        let columns = table();
        let primary = vec!["id".to_owned()];
        assert_eq!(
            choose_key(None, &primary, &columns, "`t`").unwrap().name,
            "id"
        );
        assert_eq!(
            choose_key(Some("name"), &primary, &columns, "`t`")
                .unwrap()
                .name,
            "name"
        );
        let composite = vec!["id".to_owned(), "name".to_owned()];
        let err = choose_key(None, &composite, &columns, "`db`.`t`").unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            err.to_string().contains("no single-column primary key"),
            "{err}"
        );
        assert!(choose_key(None, &[], &columns, "`t`").is_err());
        let err = choose_key(Some("nope"), &primary, &columns, "`t`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown replication key `nope`: `t` has the columns id, name, doc"
        );
    }

    #[test]
    fn a_key_must_be_of_a_kind_that_pages() {
        assert_eq!(
            key_kind_of(&column("id", "bigint")).unwrap(),
            KeyKind::Integer
        );
        assert_eq!(
            key_kind_of(&column("id", "year")).unwrap(),
            KeyKind::Integer
        );
        assert_eq!(
            key_kind_of(&column("d", "decimal")).unwrap(),
            KeyKind::Decimal
        );
        assert_eq!(
            key_kind_of(&column("t", "datetime")).unwrap(),
            KeyKind::Temporal
        );
        assert_eq!(key_kind_of(&column("s", "varchar")).unwrap(), KeyKind::Text);
        let err = key_kind_of(&column("doc", "json")).unwrap_err();
        assert!(err.to_string().contains("of type json"), "{err}");
        assert_eq!(
            decimal_cast("decimal(20,4) unsigned").as_deref(),
            Some("CAST(? AS DECIMAL(20,4))")
        );
        assert_eq!(
            decimal_cast("numeric(9)").as_deref(),
            Some("CAST(? AS DECIMAL(9,0))")
        );
        assert_eq!(decimal_cast("bigint"), None);
    }

    #[test]
    fn a_key_holding_null_is_refused() {
        let mut key = column("id", "bigint");
        key.nullable = true;
        assert!(refuse_null_keys(&key, false, "`t`").is_ok());
        let err = refuse_null_keys(&key, true, "`db`.`t`").unwrap_err();
        assert!(matches!(err, Error::Data(_)));
        assert!(
            err.to_string()
                .starts_with("replication key `id` of `db`.`t` has NULL values"),
            "{err}"
        );
        // A range whose smallest or largest key reads as NULL has no bounds.
        assert!(bounds(KeyKind::Integer, &Value::NULL, &Value::Int(9), 3).is_empty());
    }

    #[test]
    fn selected_columns_exist_and_include_the_key() {
        let columns = table();
        assert_eq!(
            select_columns(None, &columns, "id", "`t`").unwrap(),
            ["id", "name", "doc"]
        );
        let list = vec!["name".to_owned(), "id".to_owned()];
        assert_eq!(
            select_columns(Some(&list), &columns, "id", "`t`").unwrap(),
            list
        );
        let err = select_columns(Some(&["name".to_owned()]), &columns, "id", "`t`").unwrap_err();
        assert!(
            err.to_string()
                .contains("must include the replication key `id`"),
            "{err}"
        );
        let missing = vec!["id".to_owned(), "x".to_owned(), "y".to_owned()];
        let err = select_columns(Some(&missing), &columns, "id", "`t`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`columns` names columns that `t` lacks: `x`, `y`"
        );
    }

    #[test]
    fn integer_ranges_split_evenly_and_exactly() {
        let b = bounds(KeyKind::Integer, &Value::Int(1), &Value::Int(100), 4);
        assert_eq!(ints(&b), [26, 51, 76]);
        let b = bounds(KeyKind::Integer, &Value::Int(-50), &Value::Int(49), 2);
        assert_eq!(ints(&b), [0]);
        // Keys read as text (a BIGINT UNSIGNED through the text protocol, say).
        let b = bounds(
            KeyKind::Integer,
            &Value::Bytes(b"10".to_vec()),
            &Value::Bytes(b"19".to_vec()),
            2,
        );
        assert_eq!(ints(&b), [15]);
    }

    #[test]
    fn unsigned_keys_above_the_signed_range_split_without_overflow() {
        let hi = u64::MAX;
        let lo = hi - 99;
        let b = bounds(KeyKind::Integer, &Value::UInt(lo), &Value::UInt(hi), 4);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], json!(lo + 25));
        assert_eq!(b[2], json!(lo + 75));
        // From the smallest signed to the largest unsigned key: 1.5 × 2^64 keys, halved.
        let b = bounds(
            KeyKind::Integer,
            &Value::Int(i64::MIN),
            &Value::UInt(u64::MAX),
            2,
        );
        assert_eq!(b, [json!(1_i64 << 62)]);
    }

    #[test]
    fn more_partitions_than_keys_give_distinct_bounds() {
        let b = bounds(KeyKind::Integer, &Value::Int(1), &Value::Int(3), 8);
        assert_eq!(ints(&b), [2, 3]);
        let b = bounds(
            KeyKind::Float,
            &Value::Double(1.0),
            &Value::Double(1.0 + 1e-15),
            8,
        );
        let mut sorted = b.clone();
        sorted.dedup();
        assert_eq!(b, sorted);
    }

    #[test]
    fn an_empty_or_one_row_table_is_one_partition() {
        // No rows: MIN and MAX are NULL.
        assert!(bounds(KeyKind::Integer, &Value::NULL, &Value::NULL, 4).is_empty());
        assert!(bounds(KeyKind::Temporal, &Value::NULL, &Value::NULL, 4).is_empty());
        // One row (or one key value).
        assert!(bounds(KeyKind::Integer, &Value::Int(7), &Value::Int(7), 4).is_empty());
        assert!(bounds(KeyKind::Float, &Value::Double(2.5), &Value::Double(2.5), 4).is_empty());
        let plan = query_partition(String::new());
        assert_eq!(plan.index, 0);
        let parts = partitions_between(&test_plan(), None, vec![]);
        assert_eq!(parts.len(), 1);
        let range: Range = serde_json::from_value(parts[0].spec["range"].clone()).unwrap();
        assert_eq!(
            range,
            Range {
                after: None,
                from: None,
                below: None
            }
        );
    }

    #[test]
    fn decimal_float_and_temporal_ranges_split_as_doubles() {
        let b = bounds(
            KeyKind::Decimal,
            &Value::Bytes(b"0.00".to_vec()),
            &Value::Bytes(b"10.00".to_vec()),
            4,
        );
        assert_eq!(b, [json!(2.5), json!(5.0), json!(7.5)]);
        let day = 86_400_000_000_i64;
        let b = bounds(KeyKind::Temporal, &Value::Int(0), &Value::Int(2 * day), 2);
        assert_eq!(b, [json!("1970-01-02 00:00:00.000000")]);
    }

    #[test]
    fn string_keys_are_split_only_by_given_bounds() {
        let err = range_expressions(KeyKind::Text, "name").unwrap_err();
        assert!(err.to_string().contains("give `partition_bounds`"), "{err}");
        let (lo, hi) = range_expressions(KeyKind::Integer, "we`ird").unwrap();
        assert_eq!(
            (lo.as_str(), hi.as_str()),
            ("MIN(`we``ird`)", "MAX(`we``ird`)")
        );
    }

    /// A plan reading `id` of `db`.`t` by its unique integer key.
    pub(crate) fn test_plan() -> Plan {
        Plan {
            select: "SELECT `id` FROM `db`.`t`".into(),
            table: Some("`db`.`t`".into()),
            key: "id".into(),
            key_unique: true,
            key_param: plain_param(),
            key_text: false,
            column_types: HashMap::new(),
        }
    }

    #[test]
    fn partitions_cover_the_ranges_between_bounds_after_the_offset() {
        let offset = json!(5);
        let parts = partitions_between(&test_plan(), Some(&offset), vec![json!(10), json!(20)]);
        let ranges: Vec<Range> = parts
            .iter()
            .map(|p| serde_json::from_value(p.spec["range"].clone()).unwrap())
            .collect();
        assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 1, 2]);
        let r = |from: Option<i64>, below: Option<i64>| Range {
            after: Some(json!(5)),
            from: from.map(|v| json!(v)),
            below: below.map(|v| json!(v)),
        };
        assert_eq!(
            ranges,
            [r(None, Some(10)), r(Some(10), Some(20)), r(Some(20), None)]
        );
        let plan: Plan = serde_json::from_value(parts[1].spec["plan"].clone()).unwrap();
        assert_eq!(plan.key, "id");
    }

    #[test]
    fn offsets_and_bounds_bind_as_typed_parameters() {
        assert_eq!(param(&json!(7)), Value::Int(7));
        assert_eq!(param(&json!(u64::MAX)), Value::UInt(u64::MAX));
        assert_eq!(
            param(&json!("2024-01-01")),
            Value::Bytes(b"2024-01-01".to_vec())
        );
        assert_eq!(param(&json!(true)), Value::Int(1));
        assert_eq!(param(&Json::Null), Value::NULL);
    }

    #[test]
    fn positions_round_trip_through_parameters() {
        for v in [
            Value::Int(-5),
            Value::UInt(u64::MAX),
            Value::Double(0.1),
            Value::Bytes(b"caf\xc3\xa9".to_vec()),
            Value::Bytes(vec![0, 255, 16]),
        ] {
            assert_eq!(param(&position_json(&v)), v, "{v:?}");
        }
        assert_eq!(
            position_json(&Value::Date(2024, 2, 29, 23, 59, 1, 5)),
            json!("2024-02-29 23:59:01.000005")
        );
    }
}
