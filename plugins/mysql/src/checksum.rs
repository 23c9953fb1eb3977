//! Checksums computed by the server: the SQL giving each row's hash following the encoding of
//! `fastlane_plugin_api::checksum`, for a source's partition or a target's staging.

use arrow_schema::DataType;
use fastlane_plugin_api::checksum::is_delimited;

use fastlane_plugin_api::Checksum;

use crate::conn::{Session, ident};
use crate::error::{Error, Result};

/// Trailing zeros of a decimal text's fraction, and then its point, removed (the text has a
/// point: `v` is computed once).
fn trimmed(v: &str) -> String {
    format!("TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {v}))")
}

/// The SQL giving the canonical text of column `x` whose values are read as (or were written
/// from) `data_type`; none for a type without an encoding.
pub fn text_sql(data_type: &DataType, x: &str) -> Option<String> {
    Some(match data_type {
        DataType::Null => format!("CAST({x} AS BINARY)"),
        DataType::Boolean => format!("CAST(({x} <> 0) AS CHAR)"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            format!("CAST(CAST({x} AS SIGNED) AS CHAR)")
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            format!("CAST(CAST({x} AS UNSIGNED) AS CHAR)")
        }
        // The server turns a double into a decimal through its shortest text, as the
        // encoding does; a FLOAT is widened to a double first, on both sides.
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            trimmed(&format!("CAST({x} AS DECIMAL(65,30))"))
        }
        // As a decimal of the written scale: its text has a point exactly when the scale
        // is above 0, whatever the column's own scale.
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s) => {
            let scale = (*s).clamp(0, 30);
            let v = format!("CAST({x} AS DECIMAL(65,{scale}))");
            if scale > 0 { trimmed(&v) } else { v }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            format!("CAST(CONVERT({x} USING utf8mb4) AS BINARY)")
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => format!("CAST({x} AS BINARY)"),
        DataType::Date32 => format!("DATEDIFF({x}, '1970-01-01')"),
        DataType::Date64 => {
            format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {x}) DIV 1000")
        }
        // The session's time zone is UTC, so a TIMESTAMP reads as UTC.
        DataType::Timestamp(..) => {
            format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {x})")
        }
        DataType::Time32(_) | DataType::Time64(_) | DataType::Duration(_) => {
            format!("CAST(TIME_TO_SEC({x}) * 1000000 AS SIGNED)")
        }
        _ => return None,
    })
}

/// One row's hash over `columns` (name and type, in order) of the table or derived table
/// `alias`; `Err` names a column whose type has no encoding.
pub fn row_hash_sql(alias: &str, columns: &[(String, DataType)]) -> Result<String, String> {
    let mut fields = Vec::with_capacity(columns.len());
    for (name, data_type) in columns {
        let x = format!("{alias}.{}", ident(name));
        let text = text_sql(data_type, &x).ok_or_else(|| {
            format!("column `{name}` has the type {data_type}, which has no checksum encoding")
        })?;
        fields.push(if is_delimited(data_type) {
            format!("IFNULL(CONCAT({text}, ';'), 'N')")
        } else {
            format!("IFNULL(CONCAT(LENGTH({text}), ':', {text}), 'N')")
        });
    }
    if fields.is_empty() {
        fields.push("''".to_owned());
    }
    Ok(format!(
        "CAST(CONV(LEFT(MD5(CONCAT({})), 16), 16, 10) AS UNSIGNED)",
        fields.join(", ")
    ))
}

/// The statement giving the row count and the sum of the row hashes of `from` (a table or a
/// derived table, aliased `alias`): two columns, the count and the sum as text.
pub fn checksum_sql(
    from: &str,
    alias: &str,
    columns: &[(String, DataType)],
) -> Result<String, String> {
    let hash = row_hash_sql(alias, columns)?;
    Ok(format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM({hash}), 0) AS CHAR) FROM {from} AS {alias}"
    ))
}

/// Runs a statement of [`checksum_sql`] and reads its checksum; the session is closed after.
pub async fn run_checksum(
    mut session: Session,
    sql: &str,
    params: Vec<mysql_async::Value>,
    what: &str,
) -> Result<Checksum> {
    let row: Option<(u64, String)> = session.first(sql, params, what).await?;
    session.close().await;
    let (rows, sum) = row.unwrap_or((0, String::new()));
    Checksum::from_sum_text(rows, &sum)
        .ok_or_else(|| Error::Data(format!("the server's checksum sum `{sum}` is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_length_prefixed_and_numbers_delimited() {
        let sql = row_hash_sql(
            "t",
            &[
                ("id".to_owned(), DataType::Int64),
                ("name".to_owned(), DataType::Utf8),
            ],
        )
        .unwrap();
        assert!(sql.starts_with("CAST(CONV(LEFT(MD5(CONCAT(IFNULL(CONCAT(CAST(CAST(t.`id`"));
        assert!(sql.contains("IFNULL(CONCAT(LENGTH(CAST(CONVERT(t.`name`"));
        assert!(sql.contains("t.`name`"));
        let err = row_hash_sql(
            "t",
            &[(
                "tags".to_owned(),
                DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
                    "item",
                    DataType::Utf8,
                    true,
                ))),
            )],
        )
        .unwrap_err();
        assert!(err.contains("`tags`"), "{err}");
    }
}
