//! Configuration of the `mongodb` source: the original fastlane's fields (`database`,
//! `collection`, `replication_key`, `batch_size`, `filter_fields`, `host`, `port`, `user`,
//! `password`), plus a connection string, a filter and projection in extended JSON, an
//! aggregation pipeline, the schema, and where documents that do not fit it go.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::kinds::Kind;

/// What to do with a document that does not fit the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMismatch {
    /// Fail the run, naming the document and the field.
    #[default]
    Error,
    /// Write the document and the reason to `dead_letter_path` (JSON Lines) and go on.
    DeadLetter,
}

/// One column of an explicit schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaField {
    /// The field's name in the documents.
    pub name: String,
    /// Its type: `string`, `objectid`, `int32`, `int64`, `double`, `bool`, `timestamp`,
    /// `date`, `decimal(p,s)`, `binary`, `json`, `list<T>` or `struct<name: T, …>`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Configuration of the `mongodb` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// A connection string, `mongodb://…` or `mongodb+srv://…`; otherwise `host` and `port`.
    pub uri: Option<String>,
    /// The server's host name, when `uri` is not given.
    pub host: Option<String>,
    /// The server's port (27017), when `uri` is not given.
    pub port: Option<u16>,
    /// User name.
    #[serde(alias = "username")]
    pub user: Option<String>,
    /// Password; use `${VAR}` or `secret` rather than writing it into the file.
    pub password: Option<String>,
    /// The database holding the user (default: the connection string's, else `admin`).
    pub auth_source: Option<String>,
    /// Talk to the one server named, without discovering a replica set.
    #[serde(default)]
    pub direct_connection: bool,
    /// Seconds to wait for a server to answer before the run fails.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub connect_timeout_secs: u64,
    /// The database.
    pub database: String,
    /// The collection.
    pub collection: String,
    /// The key documents are read in order of, and incremental runs continue after (`_id`).
    #[serde(default = "default_key", alias = "key")]
    pub replication_key: String,
    /// Documents per batch (and per server round trip).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub batch_size: usize,
    /// A query filter in MongoDB extended JSON, e.g. `{"status": "paid", "total": {"$gt": 10}}`.
    pub filter: Option<serde_json::Map<String, Value>>,
    /// The original fastlane's filter list: `[field, value, "None", 0]` for equality or
    /// `[field, operator, value, flag]`; with flag 1 the value is JSON text (never evaluated).
    #[serde(default)]
    pub filter_fields: Vec<Vec<Value>>,
    /// Fields to read, e.g. `{"name": 1, "total": 1}`; the replication key is always read.
    pub projection: Option<serde_json::Map<String, Value>>,
    /// Aggregation stages run after the filter, the offset and the sort on the key, e.g.
    /// `[{"$match": {"kind": "a"}}, {"$project": {"kind": 0}}]`.
    pub pipeline: Option<Vec<serde_json::Map<String, Value>>>,
    /// The columns, in order; without it they are inferred from the first `sample_size`
    /// documents.
    pub schema: Option<Vec<SchemaField>>,
    /// Documents read to infer the schema.
    #[serde(default = "default_sample")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub sample_size: usize,
    /// Infer embedded documents and arrays as Arrow structs and lists; otherwise they are
    /// JSON text.
    #[serde(default = "default_true")]
    pub infer_nested: bool,
    /// A document that does not fit the schema: `error` or `dead_letter`.
    #[serde(default)]
    pub on_mismatch: OnMismatch,
    /// The JSON Lines file dead letters are appended to.
    pub dead_letter_path: Option<String>,
    /// How many times a read that lost its connection or cursor starts again after the last
    /// document read, with backoff, before the run fails.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// The first backoff before a retry, in milliseconds (doubling, with jitter).
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 60_000))]
    pub retry_backoff_ms: u64,
    /// AWS Secrets Manager secret holding `host`, `port`, `user` and `password`; resolved by
    /// the fastlane host.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many partitions are read at once (host setting; the original's base field).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Read only documents whose `replication_key` is above this value (the original's
    /// starting key, exclusive; `-1`, its default, reads from the start). In INCREMENTAL runs
    /// the target's offset takes precedence when it has one.
    pub offset: Option<Value>,
}

fn default_connect_timeout() -> u64 {
    10
}

fn default_key() -> String {
    "_id".into()
}

fn default_batch_size() -> usize {
    10_000
}

fn default_sample() -> usize {
    1_000
}

fn default_true() -> bool {
    true
}

fn default_retries() -> u32 {
    5
}

fn default_backoff() -> u64 {
    200
}

impl MongoSourceConfig {
    /// The filter: `filter` and `filter_fields` together, as extended JSON.
    pub fn filter_json(&self) -> Result<serde_json::Map<String, Value>, String> {
        let mut filter = self.filter.clone().unwrap_or_default();
        for (i, entry) in self.filter_fields.iter().enumerate() {
            let bad = |why: &str| format!("`filter_fields[{i}]`: {why}");
            let [field, op, value, flag] = entry.as_slice() else {
                return Err(bad(
                    "needs 4 elements: field, operator or value, value or \"None\", flag",
                ));
            };
            let field = field
                .as_str()
                .ok_or_else(|| bad("the field must be text"))?;
            let condition = if value == &Value::from("None") {
                op.clone()
            } else {
                let op = op
                    .as_str()
                    .ok_or_else(|| bad("the operator must be text"))?;
                if !op.starts_with('$') {
                    return Err(bad("the operator must start with `$`, like `$gt`"));
                }
                let value = match flag.as_i64() {
                    Some(1) => {
                        let text = value
                            .as_str()
                            .ok_or_else(|| bad("with flag 1 the value must be JSON text"))?;
                        serde_json::from_str(text).map_err(|e| {
                            bad(&format!("with flag 1 the value must be JSON text ({e}); it is not evaluated as code"))
                        })?
                    }
                    Some(0) => value.clone(),
                    _ => return Err(bad("the flag must be 0 or 1")),
                };
                serde_json::json!({ op: value })
            };
            let merged = match (filter.remove(field), condition) {
                (Some(Value::Object(mut a)), Value::Object(b))
                    if a.keys().chain(b.keys()).all(|k| k.starts_with('$')) =>
                {
                    a.extend(b);
                    Value::Object(a)
                }
                (Some(_), _) => return Err(bad(&format!("`{field}` is filtered twice"))),
                (None, c) => c,
            };
            filter.insert(field.to_owned(), merged);
        }
        Ok(filter)
    }

    /// The explicit schema, if any, as struct members.
    pub fn schema_fields(&self) -> Result<Option<Vec<(String, Kind)>>, Vec<String>> {
        let Some(schema) = &self.schema else {
            return Ok(None);
        };
        let mut problems = Vec::new();
        let mut fields: Vec<(String, Kind)> = Vec::new();
        for (i, field) in schema.iter().enumerate() {
            if fields.iter().any(|(n, _)| *n == field.name) {
                problems.push(format!("`schema[{i}]`: `{}` is named twice", field.name));
            }
            match Kind::parse(&field.kind) {
                Ok(kind) => fields.push((field.name.clone(), kind)),
                Err(e) => problems.push(format!("`schema[{i}].type`: {e}")),
            }
        }
        if !fields.iter().any(|(n, _)| *n == self.replication_key) && problems.is_empty() {
            problems.push(format!(
                "`schema` must include the replication key `{}`",
                self.replication_key
            ));
        }
        if problems.is_empty() {
            Ok(Some(fields))
        } else {
            Err(problems)
        }
    }

    /// Checks everything that needs no server, and lists every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret {
            problems.push(format!(
                "`secret` `{secret}` was not resolved: run the pipeline with fastlane and the \
                 `aws` plugin installed, or give `host`, `user` and `password` instead"
            ));
        }
        match &self.uri {
            Some(uri) => {
                if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                    problems.push("`uri` must start with mongodb:// or mongodb+srv://".into());
                }
                if self.host.is_some() || self.port.is_some() {
                    problems.push("give either `uri` or `host`/`port`, not both".into());
                }
            }
            None => {
                if self.host.as_deref().is_none_or(str::is_empty) {
                    problems.push("`uri` or `host` is required".into());
                }
            }
        }
        if self.password.is_some() && self.user.is_none() {
            problems.push("`password` is given without `user`".into());
        }
        for (field, value) in [
            ("database", &self.database),
            ("collection", &self.collection),
            ("replication_key", &self.replication_key),
        ] {
            if value.is_empty() {
                problems.push(format!("`{field}` must not be empty"));
            }
        }
        if self
            .database
            .contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            problems.push(format!(
                "`database` `{}` holds a character MongoDB does not allow in database names",
                self.database
            ));
        }
        if let Err(e) = self.filter_json() {
            problems.push(e);
        } else if let Err(e) =
            mongodb::bson::Document::try_from(self.filter_json().unwrap_or_default())
        {
            problems.push(format!("`filter` is not valid extended JSON: {e}"));
        }
        if let Some(projection) = &self.projection
            && let Err(e) = mongodb::bson::Document::try_from(projection.clone())
        {
            problems.push(format!("`projection` is not valid extended JSON: {e}"));
        }
        if let Some(pipeline) = &self.pipeline {
            for (i, stage) in pipeline.iter().enumerate() {
                if stage.len() != 1 || !stage.keys().all(|k| k.starts_with('$')) {
                    problems.push(format!(
                        "`pipeline[{i}]` must be one stage, like {{\"$match\": {{…}}}}"
                    ));
                } else if let Err(e) = mongodb::bson::Document::try_from(stage.clone()) {
                    problems.push(format!("`pipeline[{i}]` is not valid extended JSON: {e}"));
                }
            }
        }
        if let Err(schema_problems) = self.schema_fields() {
            problems.extend(schema_problems);
        }
        if self.on_mismatch == OnMismatch::DeadLetter && self.dead_letter_path.is_none() {
            problems.push("`on_mismatch: dead_letter` needs `dead_letter_path`".into());
        }
        if self.batch_size == 0 {
            problems.push("`batch_size` must be at least 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> MongoSourceConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_original_filter_list_becomes_a_filter() {
        let c = config(json!({
            "host": "h", "database": "d", "collection": "c",
            "filter": {"kind": "a"},
            "filter_fields": [
                ["test1.field.number_field", "$gt", 49, 0],
                ["test1.field.number_field", "$lt", "100", 1],
                ["test1.field.string_field", "hi", "None", 0]
            ]
        }));
        assert_eq!(
            Value::Object(c.filter_json().unwrap()),
            json!({"kind": "a", "test1.field.number_field": {"$gt": 49, "$lt": 100},
                   "test1.field.string_field": "hi"})
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn every_problem_is_listed() {
        let c = config(json!({
            "uri": "http://x", "port": 1, "database": "a.b", "collection": "",
            "password": "p", "filter_fields": [["f", "gt", 1, 0]],
            "pipeline": [{"$match": {}, "$sort": {}}],
            "schema": [{"name": "x", "type": "int65"}],
            "on_mismatch": "dead_letter"
        }));
        let problems = c.problems().join("\n");
        for part in [
            "mongodb://",
            "not both",
            "without `user`",
            "`collection` must not be empty",
            "`database` `a.b`",
            "`filter_fields[0]`: the operator must start with `$`",
            "`pipeline[0]` must be one stage",
            "`schema[0].type`",
            "`dead_letter_path`",
        ] {
            assert!(problems.contains(part), "{part} missing from:\n{problems}");
        }
        let eval = config(json!({"host": "h", "database": "d", "collection": "c",
                                  "filter_fields": [["f", "$gt", "__import__('os')", 1]]}));
        assert!(eval.problems()[0].contains("not evaluated as code"));
    }
}
