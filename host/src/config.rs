//! Pipeline configuration: the original fastlane JSON layout, environment interpolation, and
//! validation of every section against its JSON Schema, all problems reported at once.
//!
//! ```json
//! {
//!   "replication_mode": "FULL_TABLE",
//!   "max_buffered_batches": 8,
//!   "source": { "file": { "path": "data/*.csv" } },
//!   "transform": { "add_op_fields": true },
//!   "target": { "file": { "path": "out", "format": "parquet" } },
//!   "logs": { "log_file": "run.log" }
//! }
//! ```
//!
//! `source` and `target` hold one section per connector type; the one named by `--source` /
//! `--target` is used (or the only one, when the flag is omitted). `transform` is either the
//! transform's own section (the original's flat layout, e.g. `{"add_op_fields": false}`) or an
//! object keyed by the transform id (`{"sql": {"query": "…"}}`).
//!
//! Any string may contain `${VAR}` (or `${VAR:-default}`), replaced by the environment variable
//! before validation; `$${` stands for a literal `${`. Secrets belong there, not in the file,
//! or in AWS Secrets Manager: `secret` (and `secret_region`) in a source or target section fill
//! its fields from the named secret before validation ([`crate::secrets`]).

use fastlane_plugin_api::{ComponentKind, ReplicationMode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::plugins::{ComponentInfo, Registry};
pub use crate::problem::{ConfigError, Problem};

/// The optional `logs` section (the original's fields).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Appends log lines to this file.
    pub log_file: Option<String>,
    /// Sends logs to CloudWatch Logs (needs the AWS plugin); `cloudwatch` says where.
    pub log_to_cloudwatch: Option<bool>,
    /// Sends error logs and the run summary to Slack; `slack` says where.
    pub error_log_to_slack: Option<bool>,
    /// Where and how log lines go to CloudWatch Logs.
    #[serde(default)]
    pub cloudwatch: CloudWatchLogsSettings,
    /// Where and how log lines go to Slack.
    #[serde(default)]
    pub slack: SlackSettings,
}

/// The `logs.cloudwatch` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsSettings {
    /// The log group (default: the pipeline's id).
    pub log_group: Option<String>,
    /// The log stream (default: the run's start time and id).
    pub log_stream: Option<String>,
    /// The least severe level sent (default: info).
    pub level: Option<String>,
    /// Seconds between sends (default 5).
    pub flush_interval_secs: Option<f64>,
    /// Retention in days of a group created for the logs.
    pub retention_days: Option<i32>,
    /// AWS region.
    pub region: Option<String>,
    /// Endpoint of a CloudWatch Logs compatible service.
    pub endpoint_url: Option<String>,
    /// Named AWS profile.
    pub profile: Option<String>,
}

/// The `logs.slack` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The incoming-webhook URL (better given as `${VAR}`, or by `FASTLANE_SLACK_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// The least severe level sent (default: error).
    pub level: Option<String>,
    /// The most messages per minute; lines beyond are gathered into the next message.
    pub max_messages_per_minute: Option<u32>,
    /// Also send the run's summary when it ends (default true).
    pub summary: Option<bool>,
    /// The name the messages are posted under.
    pub username: Option<String>,
    /// A channel overriding the webhook's own.
    pub channel: Option<String>,
    /// An emoji icon, such as `:truck:`.
    pub icon_emoji: Option<String>,
}

/// The optional `monitoring` section: where the run reports itself.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// `false` turns reporting off for this pipeline.
    pub enabled: Option<bool>,
    /// A monitoring service to report to (`http://host:8001`).
    pub url: Option<String>,
    /// The service's bearer token.
    pub token: Option<String>,
    /// A store to write to directly (a SQLite file, a PostgreSQL or a MySQL URL), when no `url`.
    pub store: Option<String>,
    /// Seconds between reports.
    pub interval_secs: Option<f64>,
}

/// The top level of a pipeline configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    name: Option<String>,
    replication_mode: ReplicationMode,
    #[serde(default = "default_max_buffered_batches")]
    max_buffered_batches: usize,
    max_buffered_bytes: Option<Value>,
    stall_timeout_secs: Option<f64>,
    #[serde(default)]
    resume: ResumePolicy,
    checkpoint_interval_secs: Option<f64>,
    #[serde(default)]
    verify: VerifyPolicy,
    // The sections are read from the document by `choose`; they are declared here so that
    // `deny_unknown_fields` knows them.
    #[allow(dead_code)]
    source: Map<String, Value>,
    #[serde(default)]
    #[allow(dead_code)]
    transform: Option<Value>,
    #[allow(dead_code)]
    target: Map<String, Value>,
    #[serde(default)]
    logs: Option<LogsConfig>,
    #[serde(default)]
    monitoring: Option<MonitoringConfig>,
    #[serde(default)]
    #[allow(dead_code)]
    ssm: Option<Value>,
}

fn default_max_buffered_batches() -> usize {
    8
}

/// Whether a run may continue an unfinished run of the same pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumePolicy {
    /// Continue the unfinished run whose source and target sections are unchanged, when the
    /// source and the target can resume; otherwise start afresh and say why.
    #[default]
    Auto,
    /// Always start afresh (an unfinished run's staging is discarded).
    Never,
}

/// How a run verifies its load before publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyPolicy {
    /// Compare row counts: the source's per partition, the rows read, the staging's.
    #[default]
    Count,
    /// Compare row counts and checksums of the rows' values.
    Checksum,
    /// No verification.
    Off,
}

/// The default seconds between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: f64 = 5.0;

/// The default byte budget of the queues: 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;

/// The JSON Schema of the top level.
pub fn top_level_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fastlane pipeline",
        "type": "object",
        "additionalProperties": false,
        "required": ["replication_mode", "source", "target"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "A name for the pipeline, used by monitoring."},
            "replication_mode": {"enum": ["FULL_TABLE", "INCREMENTAL"], "description": "FULL_TABLE copies everything; INCREMENTAL copies rows after the target's offset."},
            "max_buffered_batches": {"type": "integer", "minimum": 1, "description": "The most batches waiting in each queue."},
            "max_buffered_bytes": {
                "description": "The most bytes waiting in the queues: an integer, or a string such as \"64MiB\".",
                "oneOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "description": "a size such as 64MiB", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([kKmMgGtT]i?[bB]?|[bB])?\\s*$"}
                ]
            },
            "stall_timeout_secs": {"type": "number", "exclusiveMinimum": 0, "description": "Fail when a stage spends longer than this in one call."},
            "resume": {"enum": ["auto", "never"], "description": "auto (the default): a run continues the unfinished run of the same pipeline whose source and target sections are unchanged, when its source and target can resume; never: every run starts afresh."},
            "verify": {"enum": ["count", "checksum", "off"], "description": "count (the default): before publishing, compare the rows the source counts per partition, the rows read, and the rows the target's staging counts; a mismatch fails the run and publishes nothing. checksum: also compare an order-independent checksum of every row's values, computed by the source and the target themselves (in SQL for MySQL and SQLite) and by the run from the data it moved. off: no verification."},
            "checkpoint_interval_secs": {"type": "number", "minimum": 0, "maximum": 3600, "description": "How often the target makes what it wrote durable with its checkpoints (default 5; 0 after every batch)."},
            "source": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object"}},
            "transform": {"type": ["object", "null"]},
            "target": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object"}},
            "logs": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "log_file": {"type": "string"},
                    "log_to_cloudwatch": {"type": "boolean", "description": "Send log lines to CloudWatch Logs (logs.cloudwatch says where)."},
                    "error_log_to_slack": {"type": "boolean", "description": "Send error lines and the run summary to Slack (logs.slack says where)."},
                    "cloudwatch": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "log_group": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[.\\-_/#A-Za-z0-9]+$", "description": "The log group (default: the pipeline's id)."},
                            "log_stream": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^:*]+$", "description": "The log stream (default: the run's start time and id)."},
                            "level": {"enum": ["error", "warn", "info", "debug", "trace"], "description": "The least severe level sent (default info)."},
                            "flush_interval_secs": {"type": "number", "minimum": 0.1, "maximum": 300, "description": "Seconds between sends (default 5)."},
                            "retention_days": {"enum": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], "description": "Retention of a log group created for the logs."},
                            "region": {"type": "string", "minLength": 1},
                            "endpoint_url": {"type": "string", "pattern": "^https?://"},
                            "profile": {"type": "string", "minLength": 1}
                        }
                    },
                    "slack": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "webhook_url": {"type": "string", "pattern": "^https?://", "description": "The incoming-webhook URL; better ${VAR} than written out."},
                            "level": {"enum": ["error", "warn", "info"], "description": "The least severe level sent (default error)."},
                            "max_messages_per_minute": {"type": "integer", "minimum": 1, "maximum": 60, "description": "Lines beyond this rate are gathered into later messages (default 10)."},
                            "summary": {"type": "boolean", "description": "Also send the run summary (default true)."},
                            "username": {"type": "string", "minLength": 1},
                            "channel": {"type": "string", "minLength": 1},
                            "icon_emoji": {"type": "string", "pattern": "^:[^:\\s]+:$"}
                        }
                    }
                }
            },
            "ssm": {"type": "object", "additionalProperties": false, "description": "The original's AWS settings: `region` is the region of the secrets named by `secret` without a `secret_region`.", "properties": {"region": {"type": "string", "minLength": 1}}},
            "monitoring": {
                "type": "object",
                "additionalProperties": false,
                "description": "Where the run reports itself: a monitoring service (url), or a store written directly (store); the local SQLite store by default.",
                "properties": {
                    "enabled": {"type": "boolean", "description": "false turns reporting off."},
                    "url": {"type": "string", "pattern": "^https?://", "description": "A monitoring service, such as http://127.0.0.1:8001."},
                    "token": {"type": "string", "description": "The service's bearer token."},
                    "store": {"type": "string", "minLength": 1, "description": "A SQLite file, a postgres:// or a mysql:// URL."},
                    "interval_secs": {"type": "number", "minimum": 0.1, "maximum": 3600, "description": "Seconds between reports (default 2)."}
                }
            }
        }
    })
}

/// A component chosen by the configuration, with its section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The component id.
    pub id: String,
    /// Its configuration section (after interpolation).
    pub config: Value,
}

impl Section {
    /// The integer `concurrency` of the section, when it has one.
    pub fn concurrency(&self) -> Option<usize> {
        self.config
            .get("concurrency")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    }
}

/// A validated pipeline configuration.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The pipeline's name, when given.
    pub name: Option<String>,
    /// Full table or incremental.
    pub replication_mode: ReplicationMode,
    /// The most batches waiting in each queue.
    pub max_buffered_batches: usize,
    /// The most bytes waiting in the queues.
    pub max_buffered_bytes: usize,
    /// Stall timeout, seconds.
    pub stall_timeout_secs: Option<f64>,
    /// Whether a run may continue an unfinished one.
    pub resume: ResumePolicy,
    /// Seconds between the target's checkpoints.
    pub checkpoint_interval_secs: f64,
    /// How the load is verified before publishing.
    pub verify: VerifyPolicy,
    /// The source.
    pub source: Section,
    /// The transform.
    pub transform: Section,
    /// The target.
    pub target: Section,
    /// The logs section.
    pub logs: LogsConfig,
    /// The monitoring section.
    pub monitoring: MonitoringConfig,
    /// The document as written, before `${VAR}` interpolation (for monitoring, which stores it
    /// with secrets redacted).
    pub document: Value,
}

/// Which components to use, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--source`.
    pub source: Option<String>,
    /// `--transform` (default: `default`).
    pub transform: Option<String>,
    /// `--target`.
    pub target: Option<String>,
}

/// Reads, interpolates and validates a configuration file.
pub fn load_file(
    path: &std::path::Path,
    selection: &Selection,
    registry: &Registry,
) -> Result<PipelineConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    load_str(&text, &file, selection, registry)
}

/// Parses, interpolates and validates a configuration given as text.
pub fn load_str(
    text: &str,
    file: &str,
    selection: &Selection,
    registry: &Registry,
) -> Result<PipelineConfig, ConfigError> {
    load_str_with(text, file, selection, registry, &|_, _, _, _| None)
}

/// Validates a chosen section in place of its JSON Schema: given the kind, the id, the section
/// (after interpolation) and its path, returns `Some(problems)` when it validated the section,
/// `None` to use the schema.
pub type ExternalValidator<'a> =
    dyn Fn(ComponentKind, &str, &Value, &str) -> Option<Vec<Problem>> + 'a;

/// [`load_str`], with `external` validating the sections of components that are not described
/// by a JSON Schema (Python classes with a marshmallow schema).
pub fn load_str_with(
    text: &str,
    file: &str,
    selection: &Selection,
    registry: &Registry,
    external: &ExternalValidator<'_>,
) -> Result<PipelineConfig, ConfigError> {
    let err = |problems| ConfigError {
        file: file.to_owned(),
        problems,
    };
    let mut doc: Value = serde_json::from_str(text).map_err(|e| {
        err(vec![Problem {
            path: String::new(),
            message: format!("not valid JSON: {e}"),
        }])
    })?;
    let document = doc.clone();
    let mut problems = Vec::new();
    interpolate(&mut doc, &mut String::new(), &mut problems);
    validate(&top_level_schema(), &doc, "", &mut problems);

    let mut source = choose(
        &doc,
        ComponentKind::Source,
        selection.source.as_deref(),
        registry,
        &mut problems,
    );
    let mut target = choose(
        &doc,
        ComponentKind::Target,
        selection.target.as_deref(),
        registry,
        &mut problems,
    );
    let transform = choose_transform(
        &doc,
        selection.transform.as_deref(),
        registry,
        &mut problems,
    );

    if doc.get("replication_mode").and_then(Value::as_str) == Some("INCREMENTAL")
        && let (Some(source), Some(target)) = (&source, &mut target)
    {
        default_target_key(source, target, registry);
    }
    // The original's top-level `ssm.region`: the region of secrets named without one.
    let ssm_region = doc.pointer("/ssm/region").and_then(Value::as_str);
    for (kind, section, base) in [
        (ComponentKind::Source, &mut source, "/source/"),
        (ComponentKind::Target, &mut target, "/target/"),
    ] {
        if let Some(s) = section
            && let Some(c) = registry.find(kind, &s.id)
        {
            let base = format!("{base}{}", escape(&s.id));
            crate::secrets::resolve(
                &mut s.config,
                &c.info.schema,
                &pointer_to_path(&base),
                ssm_region,
                registry,
                &mut problems,
            );
            match external(kind, &s.id, &s.config, &base) {
                Some(found) => problems.extend(found),
                None => {
                    let first = problems.len();
                    validate(&c.info.schema, &s.config, &base, &mut problems);
                    hint_unknown_fields(&c.info, &base, &mut problems[first..], registry);
                }
            }
        }
    }
    if let Some((section, base)) = &transform
        && let Some(c) = registry.find(ComponentKind::Transform, &section.id)
    {
        match external(ComponentKind::Transform, &section.id, &section.config, base) {
            Some(found) => problems.extend(found),
            None => {
                let first = problems.len();
                validate(&c.info.schema, &section.config, base, &mut problems);
                hint_unknown_fields(&c.info, base, &mut problems[first..], registry);
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(err(problems));
    }
    let top: TopLevel = serde_json::from_value(doc).map_err(|e| {
        err(vec![Problem {
            path: String::new(),
            message: e.to_string(),
        }])
    })?;
    let (Some(source), Some(target), Some((transform, _))) = (source, target, transform) else {
        return Err(err(vec![Problem {
            path: String::new(),
            message: "incomplete configuration".into(),
        }]));
    };
    let max_bytes = top
        .max_buffered_bytes
        .as_ref()
        .and_then(parse_bytes)
        .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES);
    Ok(PipelineConfig {
        name: top.name,
        replication_mode: top.replication_mode,
        max_buffered_batches: top.max_buffered_batches,
        max_buffered_bytes: max_bytes,
        stall_timeout_secs: top.stall_timeout_secs,
        resume: top.resume,
        checkpoint_interval_secs: top
            .checkpoint_interval_secs
            .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_SECS),
        verify: top.verify,
        source,
        transform,
        target,
        logs: top.logs.unwrap_or_default(),
        monitoring: top.monitoring.unwrap_or_default(),
        document,
    })
}

fn choose(
    doc: &Value,
    kind: ComponentKind,
    flag: Option<&str>,
    registry: &Registry,
    problems: &mut Vec<Problem>,
) -> Option<Section> {
    let key = kind.as_str();
    let sections = doc.get(key).and_then(Value::as_object);
    let id =
        match (flag, sections) {
            (Some(id), _) => id.to_owned(),
            (None, Some(s)) if s.len() == 1 => s.keys().next().cloned().unwrap_or_default(),
            (None, Some(s)) if s.len() > 1 => {
                problems.push(Problem {
                path: format!("--{key}"),
                message: format!(
                    "the configuration has several {key} sections ({}); choose one with --{key}",
                    s.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ),
            });
                return None;
            }
            _ => return None, // reported by the top-level schema
        };
    if registry.find(kind, &id).is_none() {
        problems.push(unknown_component(kind, &id, registry, &format!("--{key}")));
        return None;
    }
    match sections.and_then(|s| s.get(&id)) {
        Some(config) => Some(Section {
            id,
            config: config.clone(),
        }),
        None => {
            if let Some(sections) = sections {
                let present: Vec<String> = sections.keys().map(|k| format!("`{k}`")).collect();
                let message = if present.is_empty() {
                    format!("there is no `{key}.{id}` section for --{key}={id}")
                } else {
                    format!(
                        "there is no `{key}.{id}` section for --{key}={id}; the file has {} (choose it with --{key})",
                        present.join(", ")
                    )
                };
                problems.push(Problem {
                    path: key.to_owned(),
                    message,
                });
            }
            None
        }
    }
}

/// In an INCREMENTAL run, a target with the original's `pk` (the column whose largest value is
/// the offset) not given takes the source's replication key (`key` or `replication_key`, given
/// or its schema's default): the offset is compared with that column.
fn default_target_key(source: &Section, target: &mut Section, registry: &Registry) {
    const SOURCE_KEYS: [&str; 2] = ["key", "replication_key"];
    let (Some(s), Some(t)) = (
        registry.find(ComponentKind::Source, &source.id),
        registry.find(ComponentKind::Target, &target.id),
    ) else {
        return;
    };
    let declares = |name: &str| {
        t.info
            .schema
            .pointer(&format!("/properties/{name}"))
            .is_some()
    };
    let Some(section) = target.config.as_object_mut() else {
        return;
    };
    if !declares("pk") || declares("key") || section.get("pk").is_some_and(|v| !v.is_null()) {
        return;
    }
    let key = SOURCE_KEYS.iter().find_map(|k| {
        source
            .config
            .get(*k)
            .and_then(Value::as_str)
            .or_else(|| {
                s.info
                    .schema
                    .pointer(&format!("/properties/{k}/default"))
                    .and_then(Value::as_str)
            })
            .filter(|v| !v.is_empty())
    });
    if let Some(key) = key {
        section.insert("pk".to_owned(), Value::String(key.to_owned()));
    }
}

/// The problem for a component id that no plugin provides, listing the available ids.
pub fn unknown_component(
    kind: ComponentKind,
    id: &str,
    registry: &Registry,
    path: &str,
) -> Problem {
    let ids = registry.ids(kind);
    let available = if ids.is_empty() {
        format!("no {kind} is available")
    } else {
        format!(
            "available {kind}s: {}",
            ids.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut message = format!("no plugin provides the {kind} `{id}`; {available}");
    if !registry.failures.is_empty() {
        message.push_str(&format!(
            " ({} plugin file(s) failed to load; see `fastlane plugins list`)",
            registry.failures.len()
        ));
    }
    Problem {
        path: path.to_owned(),
        message,
    }
}

fn choose_transform(
    doc: &Value,
    flag: Option<&str>,
    registry: &Registry,
    problems: &mut Vec<Problem>,
) -> Option<(Section, String)> {
    let id = flag.unwrap_or("default").to_owned();
    if registry.find(ComponentKind::Transform, &id).is_none() {
        problems.push(unknown_component(
            ComponentKind::Transform,
            &id,
            registry,
            "--transform",
        ));
        return None;
    }
    let section = doc.get("transform");
    let (config, base) = match section {
        None | Some(Value::Null) => (json!({}), "/transform".to_owned()),
        Some(Value::Object(o)) => match o.get(&id) {
            Some(inner @ Value::Object(_)) => {
                (inner.clone(), format!("/transform/{}", escape(&id)))
            }
            _ => (Value::Object(o.clone()), "/transform".to_owned()),
        },
        Some(_) => return None, // reported by the top-level schema
    };
    Some((Section { id, config }, base))
}

/// Adds a hint to each unknown top-level field of a component's section: the component's own
/// field it looks like a misspelling of, or else the other components that have a field of
/// that name (a field put in the wrong section).
fn hint_unknown_fields(
    info: &ComponentInfo,
    base: &str,
    problems: &mut [Problem],
    registry: &Registry,
) {
    let prefix = format!("{}.", pointer_to_path(base));
    let properties = |schema: &Value| -> Vec<String> {
        schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let own = properties(&info.schema);
    for problem in problems.iter_mut() {
        if problem.message != UNKNOWN_FIELD {
            continue;
        }
        let Some(field) = problem.path.strip_prefix(&prefix) else {
            continue;
        };
        if field.contains(['.', '[']) {
            continue;
        }
        let closest = own
            .iter()
            .map(|name| (edit_distance(field, name), name))
            .filter(|(d, name)| *d <= 2.min(name.len() / 3 + 1))
            .min();
        if let Some((_, name)) = closest {
            problem.message = format!("{UNKNOWN_FIELD} (did you mean `{name}`?)");
            continue;
        }
        let mut owners: Vec<String> = registry
            .components()
            .filter(|c| !(c.info.kind == info.kind && c.info.id == info.id))
            .filter(|c| properties(&c.info.schema).iter().any(|p| p == field))
            .map(|c| format!("{} `{}`", c.info.kind, c.info.id))
            .collect();
        owners.sort();
        if owners.is_empty() {
            continue;
        }
        let more = owners.len().saturating_sub(3);
        owners.truncate(3);
        let list = if more > 0 {
            format!("{} and {more} more", owners.join(", "))
        } else {
            owners.join(", ")
        };
        problem.message = format!(
            "{UNKNOWN_FIELD} of {} `{}`; it is a field of {list}: is it in the right section?",
            info.kind, info.id
        );
    }
}

/// The number of single-character insertions, deletions and substitutions between two words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// What an unknown field is called in a problem.
const UNKNOWN_FIELD: &str = "is not a known field";

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Converts a JSON Pointer (`/source/file/x/0`) to the dotted form (`source.file.x[0]`).
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// Validates `instance` against `schema`, adding every problem with its path under `base`.
pub fn validate(schema: &Value, instance: &Value, base: &str, problems: &mut Vec<Problem>) {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            problems.push(Problem {
                path: pointer_to_path(base),
                message: format!("the component's schema is invalid: {e}"),
            });
            return;
        }
    };
    for error in validator.iter_errors(instance) {
        let pointer = format!("{base}{}", error.instance_path().as_str());
        let (pointer, message) = match error.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                (
                    format!("{pointer}/{}", escape(name)),
                    "is required".to_owned(),
                )
            }
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    problems.push(Problem {
                        path: pointer_to_path(&format!("{pointer}/{}", escape(name))),
                        message: UNKNOWN_FIELD.to_owned(),
                    });
                }
                continue;
            }
            jsonschema::error::ValidationErrorKind::OneOfNotValid { .. }
            | jsonschema::error::ValidationErrorKind::AnyOf { .. } => {
                let relative = &pointer[base.len()..];
                let message =
                    match schema_at(schema, relative).and_then(|s| alternatives(schema, s)) {
                        Some(expected) => format!("{} is not {expected}", error.instance()),
                        None => error.to_string(),
                    };
                (pointer, message)
            }
            _ => (pointer, error.to_string()),
        };
        problems.push(Problem {
            path: pointer_to_path(&pointer),
            message,
        });
    }
}

/// Follows a local `$ref` (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The schema describing the value at `pointer` (a JSON Pointer into the instance).
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut schema = resolve(root, root);
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        schema = if let Some(p) = schema.get("properties").and_then(|p| p.get(&seg)) {
            p
        } else if let Some(items) = schema.get("items") {
            items
        } else {
            schema
                .get("additionalProperties")
                .filter(|v| v.is_object())?
        };
        schema = resolve(root, schema);
    }
    Some(schema)
}

/// "one of `a`, `b`" or "a string or an array" for a `oneOf`/`anyOf`/`enum` schema.
fn alternatives(root: &Value, schema: &Value) -> Option<String> {
    let branches = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    let mut consts = Vec::new();
    let mut kinds = Vec::new();
    for branch in branches.iter().map(|b| resolve(root, b)) {
        if let Some(c) = branch.get("const") {
            consts.push(format!(
                "`{}`",
                c.as_str().map_or_else(|| c.to_string(), str::to_owned)
            ));
        } else if let Some(values) = branch.get("enum").and_then(Value::as_array) {
            consts.extend(values.iter().map(|c| {
                format!(
                    "`{}`",
                    c.as_str().map_or_else(|| c.to_string(), str::to_owned)
                )
            }));
        } else if let Some(nested) = alternatives(root, branch) {
            kinds.push(nested);
        } else if let Some(t) = branch.get("type").and_then(Value::as_str) {
            let described = match (t, branch.get("items").map(|i| resolve(root, i))) {
                ("array", Some(items)) => match items.get("type").and_then(Value::as_str) {
                    Some(it) => format!("an array of {it}s"),
                    None => "an array".to_owned(),
                },
                ("string", _) if branch.get("pattern").is_some() => {
                    match branch.get("description").and_then(Value::as_str) {
                        Some(d) => format!("a string ({d})"),
                        None => "a string of the expected form".to_owned(),
                    }
                }
                ("integer", _) => "an integer".to_owned(),
                ("object", _) => "an object".to_owned(),
                ("array", None) => "an array".to_owned(),
                ("null", _) => continue,
                (other, _) => format!("a {other}"),
            };
            kinds.push(described);
        } else {
            return None;
        }
    }
    if !consts.is_empty() {
        kinds.insert(0, format!("one of {}", consts.join(", ")));
    }
    (!kinds.is_empty()).then(|| kinds.join(" or "))
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of the document.
fn interpolate(value: &mut Value, pointer: &mut String, problems: &mut Vec<Problem>) {
    match value {
        Value::String(s) if s.contains('$') => match substitute(s, |name| std::env::var(name).ok())
        {
            Ok(new) => *s = new,
            Err(missing) => problems.push(Problem {
                path: pointer_to_path(pointer),
                message: format!("environment variable `{missing}` is not set"),
            }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                interpolate(item, pointer, problems);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape(k));
                interpolate(v, pointer, problems);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Substitutes `${NAME}` / `${NAME:-default}`; `$${` is a literal `${`. Returns the first
/// missing variable's name on failure.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(after_escape) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = after_escape;
        } else if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
        {
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match lookup(name).or_else(|| default.map(str::to_owned)) {
                Some(v) => out.push_str(&v),
                None => return Err(name.to_owned()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a byte size: an integer, or a string such as `64MiB`, `1.5GB`, `512k`.
pub fn parse_bytes(v: &Value) -> Option<usize> {
    if let Some(n) = v.as_u64() {
        return Some(n as usize);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        _ => return None,
    };
    Some((num * mult) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("delimter", "delimiter"), 1);
        assert_eq!(edit_distance("kye", "key"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("table", "table"), 0);
        assert_eq!(edit_distance("table", "path"), 4);
    }

    #[test]
    fn substitution() {
        let env = |n: &str| (n == "HOST").then(|| "db.local".to_owned());
        assert_eq!(substitute("h=${HOST}", env).unwrap(), "h=db.local");
        assert_eq!(substitute("${PORT:-3306}", env).unwrap(), "3306");
        assert_eq!(substitute("$${HOST} $5", env).unwrap(), "${HOST} $5");
        assert_eq!(substitute("${NOPE}", env).unwrap_err(), "NOPE");
    }

    #[test]
    fn pointers_become_dotted_paths() {
        assert_eq!(
            pointer_to_path("/source/file/globs/0"),
            "source.file.globs[0]"
        );
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/a~1b"), "a/b");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes(&json!(10)), Some(10));
        assert_eq!(parse_bytes(&json!("64MiB")), Some(64 << 20));
        assert_eq!(parse_bytes(&json!("1.5 GB")), Some(1_500_000_000));
        assert_eq!(parse_bytes(&json!("12 parsecs")), None);
    }

    #[test]
    fn every_top_level_problem_is_reported() {
        let doc = json!({"replication_mode": "SOMETIMES", "max_buffered_batches": 0, "extra": 1});
        let mut problems = Vec::new();
        validate(&top_level_schema(), &doc, "", &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "replication_mode",
            "max_buffered_batches",
            "extra",
            "source",
            "target",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }
}
