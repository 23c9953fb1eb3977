//! The plugin conformance suite, run by `fastlane plugins check PATH.so [--config FILE]` and by
//! the tests of every plugin in this repository.
//!
//! It loads a plugin file through the same loader as a run and checks:
//!
//! - **the manifest**: a described plugin, described components, unique ids, every
//!   configuration schema a valid and closed JSON Schema of an object;
//! - **sources** (given a configuration that reads data): one schema across batches, the rows
//!   expected when the data is the suite's own, a unique key, the same rows when read twice,
//!   INCREMENTAL reads strictly after a start offset (and nothing after the last key),
//!   verification by count or checksum where declared, range reads for resume where declared,
//!   a prompt stop when the run is cancelled, no stall past the timeout;
//! - **transforms**: every batch transformed, one output schema, empty batches, the same output
//!   for the same input, the same rows through the engine with several workers;
//! - **targets** (given a configuration writing into a fresh place, and a way to read back):
//!   an empty run, many batches from several writers arriving once with their values,
//!   FULL_TABLE replacing, INCREMENTAL appending, the offset being the largest key stored, a
//!   failed or cancelled run leaving the target as it was, verification where declared, and a
//!   killed checkpointed run resumed to exactly its rows where `resume` is declared.
//!
//! Every component runs through the engine, as in a real run, with a stall timeout: a check
//! that hangs fails instead. Failures are reported, never panicked: a [`Report`] lists every
//! check with its outcome.
//!
//! The check file ([`CheckSpec`]) gives each component its configuration. In a configuration,
//! the text `{dir}` stands for a fresh temporary folder and `{name}` for a fresh name (a table,
//! a prefix), so that every target check writes into a place of its own.

pub mod data;
mod engine_parts;
mod report;
mod source;
mod target;
mod transform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use fastlane_plugin_api::ComponentKind;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::plugins::{ComponentInfo, LoadedPlugin, Origin, load_plugin};

pub use report::{Check, Checks, Outcome, PluginSummary, Report};
pub use source::check_source;
pub use target::{Place, TargetHarness, check_target};
pub use transform::check_transform;

/// What the suite is given for each component it exercises: the contents of the file passed
/// with `fastlane plugins check --config`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Sources to read, by component id.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSpec>,
    /// Transforms to apply, by component id. A transform not named here is checked with the
    /// configuration `{}` when its schema accepts it.
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformSpec>,
    /// Targets to write, by component id.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
}

/// How to check a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The source's configuration: it must read data that does not change during the check.
    pub config: Value,
    /// A column whose values are unique and by which the configuration reads incrementally
    /// (its replication key): enables the key and offset checks.
    #[serde(default)]
    pub key: Option<String>,
    /// The data holds the suite's standard rows (`fastlane_host::conformance::data`): ids
    /// `1..=rows` and these columns, compared value by value.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// The suite's standard rows, as a source is expected to read them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How many rows (ids `1..=rows`).
    pub rows: usize,
    /// The standard columns beyond `id` (all of them when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// How to check a transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    /// The transform's configuration; it is applied to the suite's standard rows (an `id`
    /// Int64 column and the standard columns).
    pub config: Value,
}

/// How to check a target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The target's configuration, writing into `{dir}` or `{name}` with `id` (Int64) as the
    /// replication key.
    pub config: Value,
    /// A source of the same plugin that reads back what the target published in the same
    /// place (its configuration may use `{dir}` and `{name}` too). Without it, only what the
    /// target says of itself (offsets, counts) is checked.
    #[serde(default)]
    pub read_back: Option<ReadBackSpec>,
    /// The standard columns the target stores faithfully (all of them when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The target streams rows into a service that keeps no offset and cannot take records
    /// back (a delivery stream, a log): a failed run may leave what was sent, never twice.
    #[serde(default)]
    pub stream: bool,
}

/// A source that reads back what a target wrote.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBackSpec {
    /// The source's id, in the same plugin.
    pub source: String,
    /// Its configuration.
    pub config: Value,
}

/// How the checks run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// A component call that takes longer than this fails its check.
    pub stall_timeout: Duration,
    /// How long a cancelled run may take to stop.
    pub cancel_grace: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(60),
            cancel_grace: Duration::from_secs(5),
        }
    }
}

/// Why a check file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read the check file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or not a check file; every problem is listed.
    #[error("the check file `{path}` is not valid:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with field paths.
        problems: Vec<crate::problem::Problem>,
    },
}

impl CheckSpec {
    /// Reads a check file, listing every problem with its field path.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |problems| SpecError::Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            invalid(vec![crate::problem::Problem {
                path: String::new(),
                message: format!("not JSON: {e}"),
            }])
        })?;
        Self::from_value(value).map_err(invalid)
    }

    /// A check file from its JSON, listing every problem with its field path.
    pub fn from_value(value: Value) -> Result<Self, Vec<crate::problem::Problem>> {
        let schema =
            serde_json::to_value(schemars::schema_for!(CheckSpec)).unwrap_or(Value::Bool(true));
        let mut problems = Vec::new();
        crate::config::validate(&schema, &value, "", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_json::from_value(value).map_err(|e| {
            vec![crate::problem::Problem {
                path: String::new(),
                message: e.to_string(),
            }]
        })
    }
}

/// Loads the plugin at `path` and runs the whole suite on it: the manifest, then every
/// component, with the configurations `spec` gives. A plugin that does not load is one failed
/// check naming the file and the loader's reason.
pub fn check_file(path: &Path, spec: &CheckSpec, options: &CheckOptions) -> Report {
    let mut report = Report {
        path: path.to_path_buf(),
        plugin: None,
        checks: Vec::new(),
    };
    let plugin = match load_plugin(path, Origin::Flag, 2) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let mut checks = Checks::new("plugin");
            checks.fail("loads", crate::error::chain(&e));
            report.checks = checks.into_vec();
            return report;
        }
    };
    report.plugin = Some(PluginSummary {
        name: plugin.name.clone(),
        version: plugin.version.clone(),
        abi_version: plugin.abi_version,
    });
    let mut checks = Checks::new("plugin");
    checks.pass(
        "loads",
        format!(
            "plugin `{}` {}, ABI {}",
            plugin.name, plugin.version, plugin.abi_version
        ),
    );
    report.checks = checks.into_vec();
    report.checks.extend(check_manifest(&plugin));
    report
        .checks
        .extend(check_components(&plugin, spec, options));
    report
}

/// Checks every component of a loaded plugin with the configurations `spec` gives; a source
/// or target without one is reported as not checked, a spec entry naming a component the
/// plugin lacks as a failure.
pub fn check_components(
    plugin: &Arc<LoadedPlugin>,
    spec: &CheckSpec,
    options: &CheckOptions,
) -> Vec<Check> {
    let mut out = Vec::new();
    let mut unknown = Checks::new("check file");
    for (kind, ids) in [
        (
            ComponentKind::Source,
            spec.sources.keys().collect::<Vec<_>>(),
        ),
        (ComponentKind::Transform, spec.transforms.keys().collect()),
        (ComponentKind::Target, spec.targets.keys().collect()),
    ] {
        for id in ids {
            if find(plugin, kind, id).is_none() {
                unknown.fail(
                    "names the plugin's components",
                    format!(
                        "it names {kind} `{id}`, which plugin `{}` does not offer (it offers: {})",
                        plugin.name,
                        offered(plugin)
                    ),
                );
            }
        }
    }
    out.extend(unknown.into_vec());
    for info in &plugin.components {
        let id = info.id.as_str();
        match info.kind {
            ComponentKind::Source => match spec.sources.get(id) {
                Some(s) => out.extend(check_source(plugin, id, s, options)),
                None => out.extend(not_configured(info)),
            },
            ComponentKind::Transform => {
                let spec = spec.transforms.get(id).cloned().or_else(|| {
                    let empty = Value::Object(Default::default());
                    schema_accepts(&info.schema, &empty).then_some(TransformSpec { config: empty })
                });
                match spec {
                    Some(s) => out.extend(check_transform(plugin, id, &s, options)),
                    None => out.extend(not_configured(info)),
                }
            }
            ComponentKind::Target => match spec.targets.get(id) {
                Some(s) => {
                    let harness = target::SpecHarness::new(plugin.clone(), s.clone(), options);
                    out.extend(check_target(plugin, id, &harness, options));
                }
                None => out.extend(not_configured(info)),
            },
        }
    }
    out
}

/// The name of the check reported for a component the check file does not configure.
pub(crate) const NOT_CONFIGURED: &str = "contract";

fn not_configured(info: &ComponentInfo) -> Vec<Check> {
    let mut checks = Checks::new(format!("{} `{}`", info.kind, info.id));
    checks.skip(
        NOT_CONFIGURED,
        format!(
            "not run: the check file gives no configuration for it (`{}s.{}.config`)",
            info.kind, info.id
        ),
    );
    checks.into_vec()
}

fn offered(plugin: &LoadedPlugin) -> String {
    let all: Vec<String> = plugin
        .components
        .iter()
        .map(|c| format!("{} `{}`", c.kind, c.id))
        .collect();
    if all.is_empty() {
        "nothing".into()
    } else {
        all.join(", ")
    }
}

pub(crate) fn find<'a>(
    plugin: &'a LoadedPlugin,
    kind: ComponentKind,
    id: &str,
) -> Option<&'a ComponentInfo> {
    plugin
        .components
        .iter()
        .find(|c| c.kind == kind && c.id == id)
}

fn schema_accepts(schema: &Value, instance: &Value) -> bool {
    let mut problems = Vec::new();
    crate::config::validate(schema, instance, "", &mut problems);
    problems.is_empty()
}

/// Checks a configuration against the component's schema: one failed check listing every
/// problem, or a passed one.
pub(crate) fn check_config(checks: &mut Checks, info: &ComponentInfo, config: &Value) -> bool {
    let mut problems = Vec::new();
    crate::config::validate(&info.schema, config, "", &mut problems);
    if problems.is_empty() {
        checks.pass("configuration", "valid against its schema");
        true
    } else {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        checks.fail(
            "configuration",
            format!("refused by its own schema: {}", list.join("; ")),
        );
        false
    }
}

/// Checks the manifest: a described plugin with components, each described, with a unique id
/// per kind and a valid, closed schema of an object.
pub fn check_manifest(plugin: &LoadedPlugin) -> Vec<Check> {
    let mut checks = Checks::new("manifest");
    let mut problems: Vec<String> = Vec::new();
    if plugin.description.trim().is_empty() {
        problems.push(format!("plugin `{}` has no description", plugin.name));
    }
    if plugin.components.is_empty() {
        problems.push(format!("plugin `{}` offers no component", plugin.name));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &plugin.components {
        let who = format!("{} `{}`", c.kind, c.id);
        if !seen.insert((c.kind.as_str(), c.id.as_str())) {
            problems.push(format!("{who} is declared twice"));
        }
        if c.description.trim().is_empty() {
            problems.push(format!("{who} has no description"));
        }
        if !jsonschema::meta::is_valid(&c.schema) {
            problems.push(format!("{who}: its schema is not a valid JSON Schema"));
            continue;
        }
        if c.schema.get("type") != Some(&Value::from("object")) {
            problems.push(format!(
                "{who}: its schema must describe an object (`\"type\": \"object\"`)"
            ));
        }
        if c.schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            problems.push(format!(
                "{who}: its schema must refuse unknown fields (`\"additionalProperties\": false`), \
                 so that a misspelt field is an error"
            ));
        }
        if c.kind == ComponentKind::Transform && !c.capabilities.is_empty() {
            problems.push(format!(
                "{who} declares capabilities, which only sources and targets have"
            ));
        }
    }
    if problems.is_empty() {
        checks.pass(
            "described, schemas valid and closed",
            format!("{} components", plugin.components.len()),
        );
    } else {
        checks.fail("described, schemas valid and closed", problems.join("; "));
    }
    checks.into_vec()
}

/// Runs `source` (named `id`) through the engine into a target that keeps every batch, and
/// returns them. With `offset`, the run is INCREMENTAL and the source reads after that offset.
pub fn read_source(
    id: &str,
    source: Box<dyn fastlane_plugin_api::Source>,
    options: &crate::engine::EngineOptions,
    offset: Option<Value>,
) -> Result<Vec<RecordBatch>, Box<crate::engine::RunFailed>> {
    let options = crate::engine::EngineOptions {
        mode: if offset.is_some() {
            fastlane_plugin_api::ReplicationMode::Incremental
        } else {
            options.mode
        },
        ..options.clone()
    };
    let named = crate::engine::Named::new(id, source);
    let (result, collected) = engine_parts::read_through_engine(named, &options, offset, None);
    result.map(|_| collected.take())
}

/// Total rows of batches.
pub(crate) fn total_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Replaces `{dir}` and `{name}` in every string of `config`.
pub(crate) fn substitute(config: &Value, place: &Place) -> Value {
    match config {
        Value::String(s) => Value::String(
            s.replace("{dir}", &place.dir.display().to_string())
                .replace("{name}", &place.name),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, place)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, place)))
                .collect(),
        ),
        other => other.clone(),
    }
}
