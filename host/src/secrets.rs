//! `secret` / `secret_region` in any connector's section, as in the original fastlane: the
//! named AWS Secrets Manager secret holds a JSON object whose keys fill the section's fields
//! (`host`, `port`, `username`, `password`, …), taking precedence over what the file says.
//!
//! The secret is read through the `secretsmanager` source of the `aws` plugin, so the host
//! carries no AWS SDK of its own; credentials and region come from the standard AWS chain
//! (`secret_region` names the region). Only keys the connector's schema declares are used;
//! values never appear in messages, logs or the monitoring store (which keeps the document as
//! written, with the secret's name only).

use fastlane_plugin_api::ComponentKind;
use serde_json::{Map, Value, json};

use crate::plugins::Registry;
use crate::problem::Problem;

/// The source id of the plugin component that reads secrets.
pub const SECRETS_SOURCE: &str = "secretsmanager";

/// Fills `section` from its `secret`, if it names one, and removes `secret` and
/// `secret_region`. `schema` is the connector's configuration schema; `path` the section's
/// dotted path, for problems; `default_region` the region of a secret without
/// `secret_region` (the original's top-level `ssm.region`).
pub fn resolve(
    section: &mut Value,
    schema: &Value,
    path: &str,
    default_region: Option<&str>,
    registry: &Registry,
    problems: &mut Vec<Problem>,
) {
    let Some(object) = section.as_object_mut() else {
        return;
    };
    let secret = object.remove("secret");
    let region = object.remove("secret_region");
    let problem = |field: &str, message: String| Problem {
        path: format!("{path}.{field}"),
        message,
    };
    let name = match secret {
        None | Some(Value::Null) => {
            if let Some(r) = region.filter(|r| !r.is_null()) {
                problems.push(problem(
                    "secret_region",
                    format!("`secret_region` {r} is given without `secret`"),
                ));
            }
            return;
        }
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(other) => {
            problems.push(problem(
                "secret",
                format!("must be the name or ARN of a secret, not {other}"),
            ));
            return;
        }
    };
    let region = match region {
        None | Some(Value::Null) => default_region.map(str::to_owned),
        Some(Value::String(r)) => Some(r),
        Some(other) => {
            problems.push(problem(
                "secret_region",
                format!("must be a region name, not {other}"),
            ));
            return;
        }
    };
    match fetch(&name, region.as_deref(), registry) {
        Ok(values) => fill(object, &values, schema, &name, path, problems),
        Err(message) => problems.push(problem("secret", message)),
    }
}

/// Reads the secret `name` and parses it as a JSON object.
pub fn fetch(
    name: &str,
    region: Option<&str>,
    registry: &Registry,
) -> Result<Map<String, Value>, String> {
    let Some(component) = registry.find(ComponentKind::Source, SECRETS_SOURCE) else {
        return Err(format!(
            "the secret `{name}` needs AWS Secrets Manager, which the `aws` plugin \
             (libfastlane_plugin_aws.so) provides; it was not found in the plugin folders"
        ));
    };
    let Some(plugin) = &component.plugin else {
        return Err(format!("`{SECRETS_SOURCE}` is not a plugin component"));
    };
    let mut config = json!({ "secret": name });
    if let Some(region) = region {
        config["region"] = json!(region);
    }
    let text = read_value(plugin, &config).map_err(|e| e.message().to_owned())?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        // Never quote the value: it is the secret.
        _ => Err(format!(
            "the secret `{name}` is not a JSON object of settings (its keys fill the \
             connector's fields)"
        )),
    }
}

fn read_value(
    plugin: &crate::plugins::LoadedPlugin,
    config: &Value,
) -> fastlane_plugin_api::Result<String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use fastlane_plugin_api::{Partition, Source};

    let source = plugin.create_source(SECRETS_SOURCE, config)?;
    let mut stream = source.read(&Partition {
        index: 0,
        spec: Value::Null,
    })?;
    let batch = stream.next_batch()?.ok_or_else(|| {
        fastlane_plugin_api::PluginError::data("the secrets source returned nothing")
    })?;
    let column = batch
        .column_by_name("value")
        .and_then(|c| c.as_string_opt::<i32>())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            fastlane_plugin_api::PluginError::data("the secrets source returned no `value`")
        })?;
    Ok(column.value(0).to_owned())
}

/// Copies the secret's keys that the schema declares into the section.
fn fill(
    section: &mut Map<String, Value>,
    values: &Map<String, Value>,
    schema: &Value,
    name: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut used = 0;
    for (key, value) in values {
        let Some(property) = properties.and_then(|p| p.get(key)) else {
            tracing::debug!("the secret `{name}` has a key `{key}` that {path} does not take");
            continue;
        };
        section.insert(key.clone(), coerce(value, property));
        used += 1;
    }
    if used == 0 {
        problems.push(Problem {
            path: format!("{path}.secret"),
            message: format!(
                "the secret `{name}` has none of the fields this connector takes (its keys: {})",
                values
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
}

/// Secrets often hold numbers as text (`"port": "3306"`): give the schema's type.
fn coerce(value: &Value, property: &Value) -> Value {
    let wants = |t: &str| {
        property.get("type").is_some_and(|ty| match ty {
            Value::String(s) => s == t,
            Value::Array(a) => a.iter().any(|x| x == t),
            _ => false,
        })
    };
    if let Value::String(s) = value {
        if wants("integer")
            && let Ok(n) = s.trim().parse::<i64>()
        {
            return json!(n);
        }
        if wants("boolean") && matches!(s.as_str(), "true" | "false") {
            return json!(s == "true");
        }
    }
    value.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "host": {"type": "string"}, "port": {"type": ["integer", "null"]},
            "password": {"type": "string"}, "secret": {"type": "string"}
        }})
    }

    #[test]
    fn declared_keys_fill_the_section_and_numbers_are_typed() {
        let mut section = Map::new();
        section.insert("host".into(), json!("from-file"));
        let values: Map<String, Value> = serde_json::from_value(json!({
            "host": "db.internal", "port": "3306", "password": "hunter2", "engine": "mysql"
        }))
        .unwrap();
        let mut problems = Vec::new();
        fill(
            &mut section,
            &values,
            &schema(),
            "prod/db",
            "source.mysql",
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            Value::Object(section),
            json!({"host": "db.internal", "port": 3306, "password": "hunter2"})
        );
    }

    #[test]
    fn a_secret_with_nothing_usable_names_its_keys_not_its_values() {
        let values: Map<String, Value> =
            serde_json::from_value(json!({"token": "s3cr3t"})).unwrap();
        let mut problems = Vec::new();
        fill(
            &mut Map::new(),
            &values,
            &schema(),
            "x",
            "target.s3",
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("`token`"));
        assert!(!problems[0].message.contains("s3cr3t"));
    }

    #[test]
    fn without_the_aws_plugin_the_error_says_what_is_missing() {
        let mut section = json!({"secret": "prod/db", "secret_region": "eu-west-1", "host": "h"});
        let mut problems = Vec::new();
        resolve(
            &mut section,
            &schema(),
            "source.mysql",
            None,
            &Registry::default(),
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "source.mysql.secret");
        assert!(
            problems[0].message.contains("`aws` plugin"),
            "{}",
            problems[0].message
        );
        assert_eq!(
            section,
            json!({"host": "h"}),
            "secret settings are consumed"
        );

        let mut problems = Vec::new();
        resolve(
            &mut json!({"secret_region": "x"}),
            &schema(),
            "t",
            None,
            &Registry::default(),
            &mut problems,
        );
        assert!(problems[0].message.contains("without `secret`"));
    }
}
