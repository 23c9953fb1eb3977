//! What a table target does when the data has columns its table lacks: the `on_schema_change`
//! setting and the decision it leads to, shared by the `mysql` and `postgres` targets.

use fastlane_plugin_api::ReplicationMode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a load does when the data has columns the table lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaChange {
    /// Stop the run before loading, naming the new columns and those the data lacks.
    #[default]
    Fail,
    /// Keep the table (its indexes and declared types) and add the new columns.
    AddColumns,
    /// Replace the table with one defined by the data (FULL_TABLE only): its indexes and
    /// declared types are lost.
    Replace,
}

/// What the load does about the table's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStep {
    /// The data's columns are all in the table.
    Fits,
    /// The table is kept and these columns of the data are added to it.
    AddColumns(Vec<String>),
    /// The table is replaced by one defined by the data.
    Replace,
}

/// The step for data with the `written` columns into a table with the `existing` ones (`same`
/// tells whether two names are one column), as `on_change` says; an error naming the new
/// columns (and those the data lacks) for `fail`, and for `replace` in an INCREMENTAL run.
pub fn schema_step(
    mode: ReplicationMode,
    on_change: OnSchemaChange,
    existing: &[String],
    written: &[String],
    table: &str,
    same: fn(&str, &str) -> bool,
) -> Result<SchemaStep, String> {
    let has = |names: &[String], name: &str| names.iter().any(|n| same(n, name));
    let new: Vec<String> = written
        .iter()
        .filter(|w| !has(existing, w))
        .cloned()
        .collect();
    if new.is_empty() {
        return Ok(SchemaStep::Fits);
    }
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (on_change, mode) {
        (OnSchemaChange::AddColumns, _) => Ok(SchemaStep::AddColumns(new)),
        (OnSchemaChange::Replace, ReplicationMode::FullTable) => {
            log::warn!(
                "the data has columns that {table} lacks ({}): `on_schema_change: replace` \
                 replaces the table with one defined by the data (its indexes and declared \
                 types are lost)",
                quoted(&new)
            );
            Ok(SchemaStep::Replace)
        }
        (OnSchemaChange::Replace, ReplicationMode::Incremental) => Err(format!(
            "the data has columns that {table} lacks: {}; an INCREMENTAL run cannot replace \
             the table (`replace` applies to FULL_TABLE runs only): use `on_schema_change: \
             add_columns`",
            quoted(&new)
        )),
        (OnSchemaChange::Fail, _) => {
            let missing: Vec<String> = existing
                .iter()
                .filter(|e| !has(written, e))
                .cloned()
                .collect();
            let also = if missing.is_empty() {
                String::new()
            } else {
                format!(", and lacks {} that the table has", quoted(&missing))
            };
            Err(format!(
                "the data has columns that {table} lacks: {}{also}; set the target's \
                 `on_schema_change` to `add_columns` (keep the table, add them) or `replace` \
                 (FULL_TABLE: a table defined by the data)",
                quoted(&new)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_columns_fail_are_added_or_replace_the_table_as_configured() {
        let existing = vec!["id".to_owned(), "old".to_owned()];
        let written = vec!["ID".to_owned(), "extra".to_owned()];
        let caseless = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let step = |on, mode| schema_step(mode, on, &existing, &written, "`t`", caseless);
        let err = step(OnSchemaChange::Fail, ReplicationMode::FullTable).unwrap_err();
        assert!(
            err.contains("lacks: `extra`, and lacks `old` that the table has"),
            "{err}"
        );
        assert_eq!(
            step(OnSchemaChange::AddColumns, ReplicationMode::Incremental),
            Ok(SchemaStep::AddColumns(vec!["extra".into()]))
        );
        assert_eq!(
            step(OnSchemaChange::Replace, ReplicationMode::FullTable),
            Ok(SchemaStep::Replace)
        );
        assert!(step(OnSchemaChange::Replace, ReplicationMode::Incremental).is_err());
        // Names compare as `same` says; missing columns alone change nothing.
        let exact = |a: &str, b: &str| a == b;
        let fits = vec!["id".to_owned()];
        assert_eq!(
            schema_step(
                ReplicationMode::FullTable,
                OnSchemaChange::Fail,
                &existing,
                &fits,
                "t",
                exact
            ),
            Ok(SchemaStep::Fits)
        );
        let upper = vec!["ID".to_owned()];
        assert!(
            schema_step(
                ReplicationMode::FullTable,
                OnSchemaChange::Fail,
                &existing,
                &upper,
                "t",
                exact
            )
            .is_err()
        );
    }
}
