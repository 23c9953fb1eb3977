//! Registration of the `s3` target's table in the AWS Glue Data Catalog, so that Athena,
//! Spark or Trino can query it: the table (columns from the run's Arrow schema, location,
//! format and SerDe) is created or updated, and the run's partition added, before the run's
//! manifest is written. A run whose table cannot be registered is not published.

use arrow_schema::{DataType, Schema};
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use fastlane_plugin_api::{PluginError, Result};

use crate::connection::call_error;
use crate::s3::config::{Compression, Format, OnSchemaChange, S3TargetConfig};

/// The Glue (Hive) type of an Arrow type, as Athena reads it from the objects written.
pub fn glue_type(data_type: &DataType) -> std::result::Result<String, String> {
    Ok(match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        // Parquet keeps UInt64 as a 64-bit integer: values above 2^63 read as negative.
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *p <= 38 && *s >= 0 => {
            format!("decimal({p},{s})")
        }
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => format!("array<{}>", glue_type(f.data_type())?),
        DataType::Struct(fields) => {
            let inner = fields
                .iter()
                .map(|f| Ok(format!("{}:{}", f.name(), glue_type(f.data_type())?)))
                .collect::<std::result::Result<Vec<_>, String>>()?;
            format!("struct<{}>", inner.join(","))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                glue_type(kv[0].data_type())?,
                glue_type(kv[1].data_type())?
            ),
            other => return Err(format!("a map of {other}")),
        },
        DataType::Dictionary(_, value) => glue_type(value)?,
        other => return Err(other.to_string()),
    })
}

/// The partition keys of a partition template made of `name={placeholder}` folders, such as
/// `dt={date}` or `year={year}/month={month}`; `None` for other layouts, whose folders Glue
/// cannot name.
pub fn partition_keys(template: &str) -> Option<Vec<String>> {
    let template = template.trim_matches('/');
    if template.is_empty() {
        return Some(Vec::new());
    }
    template
        .split('/')
        .map(|segment| {
            let (name, value) = segment.split_once('=')?;
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !value.is_empty();
            valid.then(|| name.to_ascii_lowercase())
        })
        .collect()
}

/// The values of a rendered partition folder (`dt=2026-11-24` → `["2026-11-24"]`).
fn partition_values(folder: &str) -> Vec<String> {
    folder
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.split_once('=').map_or(s, |(_, v)| v).to_owned())
        .collect()
}

/// Where the table is registered.
pub struct Registration<'a> {
    /// The target's configuration (its `glue` section is set).
    pub config: &'a S3TargetConfig,
    /// The Glue database.
    pub database: &'a str,
    /// The Glue table.
    pub table: &'a str,
    /// The run's partition folder under the table (`dt=2026-11-24`), or empty.
    pub partition: &'a str,
}

impl Registration<'_> {
    fn location(&self, folder: &str) -> String {
        let base = self.config.base();
        if folder.is_empty() {
            format!("s3://{}/{base}/", self.config.bucket)
        } else {
            format!("s3://{}/{base}/{folder}/", self.config.bucket)
        }
    }

    fn storage(&self, columns: Vec<Column>, folder: &str) -> StorageDescriptor {
        let config = self.config;
        let (input, output, serde, mut params): (&str, &str, &str, Vec<(&str, String)>) =
            match config.format {
                Format::Parquet => (
                    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                    vec![],
                ),
                Format::Jsonl => (
                    "org.apache.hadoop.mapred.TextInputFormat",
                    "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    "org.openx.data.jsonserde.JsonSerDe",
                    vec![],
                ),
                Format::Csv => (
                    "org.apache.hadoop.mapred.TextInputFormat",
                    "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    "org.apache.hadoop.hive.serde2.OpenCSVSerde",
                    vec![
                        ("separatorChar", config.delimiter.clone()),
                        ("quoteChar", "\"".into()),
                    ],
                ),
            };
        if config.format == Format::Csv && config.has_header {
            params.push(("skip.header.line.count", "1".into()));
        }
        let mut serde_info = SerDeInfo::builder().serialization_library(serde);
        for (k, v) in params {
            serde_info = serde_info.parameters(k, v);
        }
        StorageDescriptor::builder()
            .set_columns(Some(columns))
            .location(self.location(folder))
            .input_format(input)
            .output_format(output)
            .compressed(config.codec() != Compression::None)
            .serde_info(serde_info.build())
            .build()
    }

    fn table_input(&self, columns: Vec<Column>, keys: &[String]) -> Result<TableInput> {
        let classification = match self.config.format {
            Format::Parquet => "parquet",
            Format::Jsonl => "json",
            Format::Csv => "csv",
        };
        let partition_keys = keys
            .iter()
            .map(|k| Column::builder().name(k).r#type("string").build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(PluginError::internal)?;
        TableInput::builder()
            .name(self.table)
            .description(format!(
                "Written by fastlane; the runs published are listed under s3://{}/{}/_fastlane/manifests/",
                self.config.bucket,
                self.config.base()
            ))
            .table_type("EXTERNAL_TABLE")
            .parameters("EXTERNAL", "TRUE")
            .parameters("classification", classification)
            .parameters("fastlane.format", self.config.format.extension())
            .storage_descriptor(self.storage(columns, ""))
            .set_partition_keys(Some(partition_keys))
            .build()
            .map_err(PluginError::internal)
    }

    /// Creates or updates the table for `schema`, and adds the run's partition.
    pub async fn register(&self, client: &Client, schema: &Schema) -> Result<()> {
        let keys = partition_keys(&self.config.partition).unwrap_or_default();
        let mut columns = Vec::new();
        let mut problems = Vec::new();
        for field in schema.fields() {
            if keys.iter().any(|k| k.eq_ignore_ascii_case(field.name())) {
                problems.push(format!(
                    "the column `{}` has the name of a partition key",
                    field.name()
                ));
                continue;
            }
            match glue_type(field.data_type()) {
                Ok(t) => columns.push(
                    Column::builder()
                        .name(field.name().to_ascii_lowercase())
                        .r#type(t)
                        .build()
                        .map_err(PluginError::internal)?,
                ),
                Err(t) => problems.push(format!(
                    "the column `{}` is {t}, which has no Glue type (cast it in a transform)",
                    field.name()
                )),
            }
        }
        if !problems.is_empty() {
            return Err(PluginError::data(format!(
                "cannot register `{}.{}` in Glue: {}",
                self.database,
                self.table,
                problems.join("; ")
            )));
        }
        self.ensure_database(client).await?;
        let input = self.table_input(columns.clone(), &keys)?;
        let existing = client
            .get_table()
            .database_name(self.database)
            .name(self.table)
            .send()
            .await;
        let what = format!("`{}.{}`", self.database, self.table);
        let mut input = input;
        if let Ok(found) = &existing {
            let registered: Vec<Column> = found
                .table()
                .and_then(|t| t.storage_descriptor())
                .map(|sd| sd.columns().to_vec())
                .unwrap_or_default();
            let on_change = self
                .config
                .glue
                .as_ref()
                .map(|g| g.on_schema_change)
                .unwrap_or_default();
            if let Some(merged) = merge_columns(&registered, &columns, on_change, &what)? {
                columns = merged;
                input = self.table_input(columns.clone(), &keys)?;
            }
        }
        match existing {
            Ok(_) => {
                // No archived version per run: Glue keeps at most 100,000 per table.
                client
                    .update_table()
                    .database_name(self.database)
                    .skip_archive(true)
                    .table_input(input)
                    .send()
                    .await
                    .map_err(|e| call_error(&format!("cannot update the Glue table {what}"), &e))?;
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                client
                    .create_table()
                    .database_name(self.database)
                    .table_input(input)
                    .send()
                    .await
                    .map_err(|e| call_error(&format!("cannot create the Glue table {what}"), &e))?;
            }
            Err(e) => {
                return Err(call_error(
                    &format!("cannot read the Glue table {what}"),
                    &e,
                ));
            }
        }
        if !keys.is_empty() && !self.partition.is_empty() {
            self.add_partition(client, columns).await?;
        }
        Ok(())
    }

    async fn ensure_database(&self, client: &Client) -> Result<()> {
        let create_database = self.config.glue.as_ref().is_some_and(|g| g.create_database);
        if !create_database {
            return Ok(());
        }
        let input = DatabaseInput::builder()
            .name(self.database)
            .build()
            .map_err(PluginError::internal)?;
        match client.create_database().database_input(input).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(call_error(
                &format!("cannot create the Glue database `{}`", self.database),
                &e,
            )),
        }
    }

    async fn add_partition(&self, client: &Client, columns: Vec<Column>) -> Result<()> {
        let values = partition_values(self.partition);
        let input = PartitionInput::builder()
            .set_values(Some(values.clone()))
            .storage_descriptor(self.storage(columns, self.partition))
            .build();
        let out = client
            .batch_create_partition()
            .database_name(self.database)
            .table_name(self.table)
            .partition_input_list(input)
            .send()
            .await
            .map_err(|e| {
                call_error(
                    &format!(
                        "cannot add the partition {} to the Glue table `{}.{}`",
                        self.partition, self.database, self.table
                    ),
                    &e,
                )
            })?;
        for error in out.errors() {
            let code = error
                .error_detail()
                .and_then(|d| d.error_code())
                .unwrap_or_default();
            if code != "AlreadyExistsException" {
                return Err(PluginError::io(format!(
                    "Glue refused the partition {} of `{}.{}`: {code}: {}",
                    self.partition,
                    self.database,
                    self.table,
                    error
                        .error_detail()
                        .and_then(|d| d.error_message())
                        .unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// The table's columns for a run whose data has `data` columns, when the table has
/// `registered` ones: `None` keeps the data's (no change, or `replace`); the registered
/// columns with the new ones added (`add_columns`); an error naming the new, missing and
/// retyped columns (`fail`, or a retyped column with `add_columns`).
fn merge_columns(
    registered: &[Column],
    data: &[Column],
    on_change: OnSchemaChange,
    what: &str,
) -> Result<Option<Vec<Column>>> {
    let find = |list: &[Column], name: &str| {
        list.iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .cloned()
    };
    let new: Vec<&Column> = data
        .iter()
        .filter(|c| find(registered, c.name()).is_none())
        .collect();
    let missing: Vec<&Column> = registered
        .iter()
        .filter(|c| find(data, c.name()).is_none())
        .collect();
    let retyped: Vec<String> = data
        .iter()
        .filter_map(|c| {
            let old = find(registered, c.name())?;
            (old.r#type() != c.r#type()).then(|| {
                format!(
                    "`{}` ({} → {})",
                    c.name(),
                    old.r#type().unwrap_or("?"),
                    c.r#type().unwrap_or("?")
                )
            })
        })
        .collect();
    if registered.is_empty() {
        // A table defined without columns (made to hold the location) takes the data's.
        return Ok(None);
    }
    if new.is_empty() && retyped.is_empty() {
        // Columns the data lacks stay in the table (they read as null), unless it is replaced.
        return Ok(
            (!missing.is_empty() && on_change != OnSchemaChange::Replace)
                .then(|| registered.to_vec()),
        );
    }
    let names = |cols: &[&Column]| {
        cols.iter()
            .map(|c| format!("`{}`", c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match on_change {
        OnSchemaChange::Replace => Ok(None),
        OnSchemaChange::AddColumns if retyped.is_empty() => {
            let mut merged = registered.to_vec();
            merged.extend(new.into_iter().cloned());
            Ok(Some(merged))
        }
        OnSchemaChange::AddColumns => Err(PluginError::data(format!(
            "the data changes the types of {} in the Glue table {what}, which `add_columns` \
             cannot do; use `on_schema_change: replace`",
            retyped.join(", ")
        ))),
        OnSchemaChange::Fail => {
            let mut parts = Vec::new();
            if !new.is_empty() {
                parts.push(format!("has columns the table lacks: {}", names(&new)));
            }
            if !retyped.is_empty() {
                parts.push(format!("changes the types of {}", retyped.join(", ")));
            }
            let also = if missing.is_empty() {
                String::new()
            } else {
                format!(" (and lacks {})", names(&missing))
            };
            Err(PluginError::data(format!(
                "the data {}{also} compared with the Glue table {what}; nothing was \
                 published: set the glue section's `on_schema_change` to `add_columns` or \
                 `replace`",
                parts.join(" and ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Field, Fields, TimeUnit};

    use super::*;

    #[test]
    fn arrow_types_map_to_glue_types() {
        let cases = [
            (DataType::Int8, "tinyint"),
            (DataType::UInt8, "smallint"),
            (DataType::Int64, "bigint"),
            (DataType::UInt64, "bigint"),
            (DataType::Float32, "float"),
            (DataType::Utf8View, "string"),
            (DataType::Date32, "date"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp",
            ),
            (DataType::Decimal128(12, 2), "decimal(12,2)"),
            (
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                "array<int>",
            ),
            (
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Utf8, true),
                    Field::new("b", DataType::Boolean, true),
                ])),
                "struct<a:string,b:boolean>",
            ),
        ];
        for (arrow, glue) in cases {
            assert_eq!(glue_type(&arrow).unwrap(), glue, "{arrow}");
        }
        assert!(glue_type(&DataType::Time64(TimeUnit::Microsecond)).is_err());
    }

    #[test]
    fn hive_style_templates_give_partition_keys() {
        assert_eq!(partition_keys("dt={date}"), Some(vec!["dt".to_owned()]));
        assert_eq!(
            partition_keys("year={year}/month={month}/"),
            Some(vec!["year".to_owned(), "month".to_owned()])
        );
        assert_eq!(partition_keys(""), Some(vec![]));
        assert_eq!(partition_keys("{year}/{month}"), None);
        assert_eq!(
            partition_values("year=2026/month=11"),
            ["2026".to_owned(), "11".to_owned()]
        );
    }
}
