//! Arrow types to MySQL column definitions, for tables the target creates.
//!
//! A field that carries a MySQL column type (`fastlane.mysql.column_type`, set by the `mysql`
//! source and kept by Parquet) is recreated with exactly that type, after a check that it is a
//! plain type expression. Other fields are mapped from their Arrow type:
//!
//! | Arrow | MySQL |
//! |---|---|
//! | Boolean | BOOLEAN |
//! | Int8 … Int64, UInt8 … UInt64 | TINYINT … BIGINT [UNSIGNED] |
//! | Float16/32, Float64 | FLOAT, DOUBLE |
//! | Decimal128/256(p,s), p ≤ 65 | DECIMAL(p,s) |
//! | Utf8 | LONGTEXT (VARCHAR(768) for the key) |
//! | Binary | LONGBLOB (VARBINARY(3072) for the key) |
//! | FixedSizeBinary(n ≤ 255) | BINARY(n) |
//! | Date32/64 | DATE |
//! | Timestamp (any unit, any zone) | DATETIME(0/3/6), UTC for zoned timestamps |
//! | Time32/64 | TIME(0/3/6) |
//! | Duration | TIME(6) |

use arrow_schema::{DataType, Field, TimeUnit};

use crate::columns::COLUMN_TYPE_KEY;
use crate::conn::ident;
use crate::error::{Error, Result};

/// Whether `t` is a plain MySQL type expression: words, numbers, commas, parentheses, spaces
/// and single-quoted strings (for ENUM and SET members), and nothing that could end the
/// statement.
pub fn is_plain_type(t: &str) -> bool {
    let mut chars = t.chars().peekable();
    let mut depth = 0i32;
    if t.is_empty() || t.len() > 4096 {
        return false;
    }
    while let Some(c) = chars.next() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | ' ' => {}
            // A comma outside parentheses would add a table element (`int, check (…)`).
            ',' if depth == 0 => return false,
            ',' => {}
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            '\'' => loop {
                match chars.next() {
                    None => return false,
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    Some('\'') => break,
                    Some('\\') => return false,
                    Some(_) => {}
                }
            },
            _ => return false,
        }
    }
    depth == 0
}

fn mapped(field: &Field, is_key: bool) -> Result<String> {
    let unit_digits = |u: &TimeUnit| match u {
        TimeUnit::Second => "",
        TimeUnit::Millisecond => "(3)",
        TimeUnit::Microsecond | TimeUnit::Nanosecond => "(6)",
    };
    Ok(match field.data_type() {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s)
            if *p <= 65 && *s >= 0 && *s <= 38 =>
        {
            format!("DECIMAL({p},{s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if is_key => {
            "VARCHAR(768)".into()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "LONGTEXT".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView if is_key => {
            "VARBINARY(3072)".into()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "LONGBLOB".into(),
        DataType::FixedSizeBinary(n) if *n <= 255 => format!("BINARY({n})"),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(u, _) => format!("DATETIME{}", unit_digits(u)),
        DataType::Time32(u) | DataType::Time64(u) => format!("TIME{}", unit_digits(u)),
        DataType::Duration(_) => "TIME(6)".into(),
        other => {
            return Err(Error::Config(format!(
                "column `{}` has the Arrow type {other}, which MySQL cannot store; cast or \
                 drop it in a transform",
                field.name()
            )));
        }
    })
}

/// The column definition of `field` in a created table.
pub fn column_definition(field: &Field, is_key: bool) -> Result<String> {
    let declared = field
        .metadata()
        .get(COLUMN_TYPE_KEY)
        .filter(|t| is_plain_type(t));
    let sql_type = match declared {
        // A declared JSON column becomes JSON on MySQL and MariaDB alike.
        Some(t) if !is_key || !t.to_ascii_lowercase().contains("text") => t.clone(),
        _ => mapped(field, is_key)?,
    };
    let null = if field.is_nullable() && !is_key {
        "NULL"
    } else {
        "NOT NULL"
    };
    Ok(format!("{} {sql_type} {null}", ident(field.name())))
}

/// `CREATE TABLE` for `fields`, with `key` as the primary key.
pub fn create_table(name: &str, fields: &[&Field], key: Option<&str>) -> Result<String> {
    let mut parts = Vec::with_capacity(fields.len() + 1);
    for field in fields {
        parts.push(column_definition(
            field,
            Some(field.name().as_str()) == key,
        )?);
    }
    if let Some(k) = key {
        if !fields.iter().any(|f| f.name() == k) {
            return Err(Error::Config(format!(
                "the data has no column `{k}` (the target's `key`)"
            )));
        }
        parts.push(format!("PRIMARY KEY ({})", ident(k)));
    }
    Ok(format!(
        "CREATE TABLE {name} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn plain_types_only() {
        for ok in [
            "int(11)",
            "decimal(10,2) unsigned",
            "enum('a','b c','it''s')",
            "set('x','y')",
            "bit(5)",
            "json",
            "datetime(6)",
        ] {
            assert!(is_plain_type(ok), "{ok}");
        }
        for bad in [
            "int); DROP TABLE x; --",
            "enum('a\\'); drop')",
            "text`",
            "int /* */",
            "enum('a'",
            "",
            "int)",
            "int, check (1)",
        ] {
            assert!(!is_plain_type(bad), "{bad}");
        }
    }

    #[test]
    fn declared_types_win_and_keys_are_not_null() {
        let mut f = Field::new("state", DataType::Utf8, true);
        f.set_metadata(HashMap::from([(
            COLUMN_TYPE_KEY.to_owned(),
            "enum('new','done')".to_owned(),
        )]));
        assert_eq!(
            column_definition(&f, false).unwrap(),
            "`state` enum('new','done') NULL"
        );
        let k = Field::new("id", DataType::Utf8, true);
        assert_eq!(
            column_definition(&k, true).unwrap(),
            "`id` VARCHAR(768) NOT NULL"
        );
        let mut hostile = Field::new("x", DataType::Int64, false);
        hostile.set_metadata(HashMap::from([(
            COLUMN_TYPE_KEY.to_owned(),
            "int); drop table t; --".to_owned(),
        )]));
        assert_eq!(
            column_definition(&hostile, false).unwrap(),
            "`x` BIGINT NOT NULL"
        );
        let l = Field::new(
            "l",
            DataType::List(std::sync::Arc::new(Field::new("i", DataType::Int32, true))),
            true,
        );
        assert!(column_definition(&l, false).is_err());
    }

    #[test]
    fn create_table_needs_the_key_column() {
        let a = Field::new("a", DataType::Int32, false);
        let sql = create_table("`t`", &[&a], Some("a")).unwrap();
        assert!(sql.contains("PRIMARY KEY (`a`)"), "{sql}");
        assert!(create_table("`t`", &[&a], Some("b")).is_err());
    }
}
