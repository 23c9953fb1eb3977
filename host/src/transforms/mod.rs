//! Transforms built into the host. DataFrame work runs here, on polars, never inside plugins.
//!
//! | id | does |
//! |---|---|
//! | `default` | the original's transform: adds `_op_type` (`"i"`) and `_op_timestamp` (epoch ms) when `add_op_fields` is true (the default), then applies optional `steps` |
//! | `sql` | runs a polars SQL query over each batch, registered as the table `batch` |
//! | `select` | keeps the listed columns, in that order |
//! | `rename` | renames columns |
//! | `cast` | casts columns to types |
//! | `filter` | keeps the rows matching a SQL condition |
//!
//! `steps` chains any of the last five in one transform: `[{"filter": "amount > 0"},
//! {"select": ["id", "amount"]}]`.

pub mod frame;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema};
use fastlane_plugin_api::{ComponentKind, PluginError, Result, Transform};
use polars::prelude::{DataType, IntoLazy, LazyFrame, TimeUnit, col};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::plugins::ComponentInfo;

/// A column type for `cast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 8-bit unsigned integer.
    Uint8,
    /// 16-bit unsigned integer.
    Uint16,
    /// 32-bit unsigned integer.
    Uint32,
    /// 64-bit unsigned integer.
    Uint64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// true / false.
    Boolean,
    /// Calendar date.
    Date,
    /// Timestamp in milliseconds.
    DatetimeMs,
    /// Timestamp in microseconds.
    DatetimeUs,
    /// Timestamp in nanoseconds.
    DatetimeNs,
}

impl CastType {
    fn polars(self) -> DataType {
        match self {
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Uint8 => DataType::UInt8,
            Self::Uint16 => DataType::UInt16,
            Self::Uint32 => DataType::UInt32,
            Self::Uint64 => DataType::UInt64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::String => DataType::String,
            Self::Boolean => DataType::Boolean,
            Self::Date => DataType::Date,
            Self::DatetimeMs => DataType::Datetime(TimeUnit::Milliseconds, None),
            Self::DatetimeUs => DataType::Datetime(TimeUnit::Microseconds, None),
            Self::DatetimeNs => DataType::Datetime(TimeUnit::Nanoseconds, None),
        }
    }
}

/// One DataFrame step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A polars SQL query over the table `batch`.
    Sql(String),
    /// Columns to keep, in order.
    Select(Vec<String>),
    /// Old name → new name.
    Rename(BTreeMap<String, String>),
    /// Column → type; a value that cannot be converted is an error.
    Cast(BTreeMap<String, CastType>),
    /// A SQL condition; rows where it is true are kept.
    Filter(String),
}

/// Configuration of the `default` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultTransformConfig {
    /// Add `_op_type` ("i") and `_op_timestamp` (epoch milliseconds) to every batch.
    #[serde(default = "yes")]
    pub add_op_fields: bool,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// DataFrame steps applied after the op fields, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

/// Configuration of the `sql` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlTransformConfig {
    /// The query; each batch is the table `batch`.
    pub query: String,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// Configuration of the `select` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectTransformConfig {
    /// Columns to keep, in order.
    #[schemars(length(min = 1))]
    pub columns: Vec<String>,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// Configuration of the `rename` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTransformConfig {
    /// Old name → new name.
    pub columns: BTreeMap<String, String>,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// Configuration of the `cast` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CastTransformConfig {
    /// Column → type.
    pub columns: BTreeMap<String, CastType>,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// Configuration of the `filter` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTransformConfig {
    /// A SQL condition, e.g. `amount > 0 AND country = 'NL'`.
    pub condition: String,
    /// Number of transform workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

fn info<C: JsonSchema>(id: &str, description: &str) -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Transform,
        id: id.to_owned(),
        description: description.to_owned(),
        schema: serde_json::to_value(schemars::schema_for!(C)).unwrap_or(Value::Bool(true)),
        capabilities: Vec::new(),
    }
}

/// The built-in transforms, for the registry.
pub fn builtin_components() -> Vec<ComponentInfo> {
    vec![
        info::<DefaultTransformConfig>(
            "default",
            "Adds _op_type and _op_timestamp (as the original), then optional DataFrame steps.",
        ),
        info::<SqlTransformConfig>(
            "sql",
            "Runs a polars SQL query over each batch (table `batch`).",
        ),
        info::<SelectTransformConfig>("select", "Keeps the listed columns, in order."),
        info::<RenameTransformConfig>("rename", "Renames columns."),
        info::<CastTransformConfig>("cast", "Casts columns to types."),
        info::<FilterTransformConfig>("filter", "Keeps the rows matching a SQL condition."),
    ]
}

fn parse<C: DeserializeOwned>(id: &str, config: &Value) -> Result<C> {
    serde_json::from_value(config.clone())
        .map_err(|e| PluginError::config(format!("invalid configuration of transform `{id}`: {e}")))
}

/// Creates the built-in transform `id`, or `None` if there is none of that id.
pub fn create(id: &str, config: &Value) -> Option<Result<Box<dyn Transform>>> {
    let steps = match id {
        "default" => {
            return Some(parse::<DefaultTransformConfig>(id, config).and_then(|c| {
                Ok(Box::new(DefaultTransform {
                    add_op_fields: c.add_op_fields,
                    steps: Steps::new(c.steps)?,
                }) as Box<dyn Transform>)
            }));
        }
        "sql" => parse::<SqlTransformConfig>(id, config).map(|c| vec![Step::Sql(c.query)]),
        "select" => {
            parse::<SelectTransformConfig>(id, config).map(|c| vec![Step::Select(c.columns)])
        }
        "rename" => {
            parse::<RenameTransformConfig>(id, config).map(|c| vec![Step::Rename(c.columns)])
        }
        "cast" => parse::<CastTransformConfig>(id, config).map(|c| vec![Step::Cast(c.columns)]),
        "filter" => {
            parse::<FilterTransformConfig>(id, config).map(|c| vec![Step::Filter(c.condition)])
        }
        _ => return None,
    };
    Some(steps.and_then(|s| Ok(Box::new(Steps::new(s)?) as Box<dyn Transform>)))
}

/// DataFrame steps applied to each batch.
pub struct Steps {
    steps: Vec<Step>,
    filters: Vec<Option<polars::prelude::Expr>>,
}

impl Steps {
    /// Prepares the steps, parsing SQL conditions up front so mistakes surface before the run.
    pub fn new(steps: Vec<Step>) -> Result<Self> {
        let mut filters = Vec::with_capacity(steps.len());
        for step in &steps {
            filters.push(match step {
                Step::Filter(condition) => Some(polars::sql::sql_expr(condition).map_err(|e| {
                    PluginError::config(format!("invalid filter condition `{condition}`: {e}"))
                })?),
                _ => None,
            });
        }
        Ok(Self { steps, filters })
    }

    fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut lazy: LazyFrame = frame::to_frame(&batch)?.lazy();
        for (step, filter) in self.steps.iter().zip(&self.filters) {
            lazy = match step {
                Step::Sql(query) => {
                    let mut ctx = polars::sql::SQLContext::new();
                    ctx.register("batch", lazy);
                    ctx.execute(query)
                        .map_err(|e| PluginError::data(format!("sql `{query}`: {e}")))?
                }
                Step::Select(columns) => {
                    lazy.select(columns.iter().map(|c| col(c.as_str())).collect::<Vec<_>>())
                }
                Step::Rename(map) => lazy.rename(map.keys(), map.values(), true),
                Step::Cast(map) => lazy.with_columns(
                    map.iter()
                        .map(|(c, t)| col(c.as_str()).strict_cast(t.polars()))
                        .collect::<Vec<_>>(),
                ),
                Step::Filter(_) => match filter {
                    Some(expr) => lazy.filter(expr.clone()),
                    None => lazy,
                },
            };
        }
        let out = lazy.collect().map_err(PluginError::data)?;
        frame::from_frame(out)
    }
}

impl Transform for Steps {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.apply(batch)
    }
}

/// The original's `default` transform.
pub struct DefaultTransform {
    add_op_fields: bool,
    steps: Steps,
}

impl Transform for DefaultTransform {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = if self.add_op_fields {
            add_op_fields(batch, chrono::Utc::now().timestamp_millis())?
        } else {
            batch
        };
        if self.steps.is_empty() {
            Ok(batch)
        } else {
            self.steps.apply(batch)
        }
    }
}

/// Appends `_op_type = "i"` and `_op_timestamp = now_ms` to a batch.
pub fn add_op_fields(batch: RecordBatch, now_ms: i64) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for name in ["_op_type", "_op_timestamp"] {
        if let Some(i) = fields.iter().position(|f| f.name() == name) {
            fields.remove(i);
            columns.remove(i);
        }
    }
    fields.push(Arc::new(Field::new("_op_type", ArrowType::Utf8, false)));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n("i", rows),
    )));
    fields.push(Arc::new(Field::new(
        "_op_timestamp",
        ArrowType::Int64,
        false,
    )));
    columns.push(Arc::new(Int64Array::from_value(now_ms, rows)));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array};
    use serde_json::json;

    use super::*;

    fn sample() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![10.0, -1.0, 3.5, 0.0])) as _,
            ),
            (
                "country",
                Arc::new(StringArray::from(vec!["NL", "DE", "NL", "FR"])) as _,
            ),
        ])
        .unwrap()
    }

    fn run(id: &str, config: Value) -> RecordBatch {
        create(id, &config)
            .unwrap()
            .unwrap()
            .transform(sample())
            .unwrap()
    }

    #[test]
    fn default_adds_op_fields() {
        let out = run("default", json!({}));
        assert_eq!(out.num_columns(), 5);
        assert_eq!(out.schema().field(3).name(), "_op_type");
        let ts = out.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(ts.value(0) > 1_600_000_000_000);
        let plain = run("default", json!({"add_op_fields": false}));
        assert_eq!(plain.num_columns(), 3);
    }

    #[test]
    fn sql_over_batch() {
        let out = run(
            "sql",
            json!({"query": "SELECT country, SUM(amount) AS total FROM batch GROUP BY country ORDER BY country"}),
        );
        assert_eq!(out.num_rows(), 3);
        assert_eq!(out.schema().field(1).name(), "total");
    }

    #[test]
    fn filter_select_rename_cast_chain() {
        let out = run(
            "default",
            json!({"add_op_fields": false, "steps": [
                {"filter": "amount > 0"},
                {"select": ["id", "amount"]},
                {"rename": {"amount": "value"}},
                {"cast": {"value": "int32"}}
            ]}),
        );
        assert_eq!(out.num_rows(), 2);
        assert_eq!(out.schema().field(1).name(), "value");
        assert_eq!(out.schema().field(1).data_type(), &ArrowType::Int32);
        assert_eq!(out.column(0).len(), 2);
    }

    #[test]
    fn bad_filter_is_a_config_error() {
        let err = create("filter", &json!({"condition": "amount >>> 1"}))
            .unwrap()
            .err()
            .unwrap();
        assert_eq!(err.code(), fastlane_plugin_api::ErrorCode::CONFIG);
    }

    #[test]
    fn strict_cast_failure_is_an_error() {
        let t = create("cast", &json!({"columns": {"country": "int64"}}))
            .unwrap()
            .unwrap();
        assert!(t.transform(sample()).is_err());
    }
}
