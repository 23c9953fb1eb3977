//! [`PluginDefinition`]: the list of components a plugin provides and how to build them.

use std::fmt;

use abi_stable::std_types::{RString, RVec};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::component::{Source, Target, Transform};
use crate::error::{PluginError, Result};
use crate::manifest::{ComponentKind, ComponentManifest, PluginManifest};

type SourceFactory = Box<dyn Fn(&str) -> Result<Box<dyn Source>> + Send + Sync>;
type TransformFactory = Box<dyn Fn(&str) -> Result<Box<dyn Transform>> + Send + Sync>;
type TargetFactory = Box<dyn Fn(&str) -> Result<Box<dyn Target>> + Send + Sync>;

enum Factory {
    Source(SourceFactory),
    Transform(TransformFactory),
    Target(TargetFactory),
}

struct Entry {
    kind: ComponentKind,
    id: String,
    description: String,
    schema: Value,
    factory: Factory,
}

/// Describes a plugin: its name, version and components, each with a typed configuration.
///
/// The configuration type of each component gives both its JSON Schema (through
/// [`schemars`]) and its parser (through [`serde`]), so the schema the host validates against
/// and the struct the plugin reads can never disagree.
pub struct PluginDefinition {
    name: String,
    version: String,
    description: String,
    entries: Vec<Entry>,
}

impl fmt::Debug for PluginDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDefinition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field(
                "components",
                &self
                    .entries
                    .iter()
                    .map(|e| format!("{} {}", e.kind, e.id))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn schema_of<C: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(C)).unwrap_or(Value::Bool(true))
}

fn parse_config<C: DeserializeOwned>(kind: ComponentKind, id: &str, config: &str) -> Result<C> {
    serde_json::from_str(config)
        .map_err(|e| PluginError::config(format!("invalid configuration of {kind} `{id}`: {e}")))
}

impl PluginDefinition {
    /// A plugin named `name` (a lowercase word) at `version` (usually `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            entries: Vec::new(),
        }
    }

    /// Sets the one-line description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a source `id` whose configuration is `C`, built by `create`.
    pub fn source<C, S, F>(mut self, id: &str, description: &str, create: F) -> Self
    where
        C: DeserializeOwned + JsonSchema,
        S: Source,
        F: Fn(C) -> Result<S> + Send + Sync + 'static,
    {
        let owned = id.to_owned();
        self.entries.push(Entry {
            kind: ComponentKind::Source,
            id: id.to_owned(),
            description: description.to_owned(),
            schema: schema_of::<C>(),
            factory: Factory::Source(Box::new(move |config| {
                let config = parse_config::<C>(ComponentKind::Source, &owned, config)?;
                Ok(Box::new(create(config)?) as Box<dyn Source>)
            })),
        });
        self
    }

    /// Adds a transform `id` whose configuration is `C`, built by `create`.
    pub fn transform<C, T, F>(mut self, id: &str, description: &str, create: F) -> Self
    where
        C: DeserializeOwned + JsonSchema,
        T: Transform,
        F: Fn(C) -> Result<T> + Send + Sync + 'static,
    {
        let owned = id.to_owned();
        self.entries.push(Entry {
            kind: ComponentKind::Transform,
            id: id.to_owned(),
            description: description.to_owned(),
            schema: schema_of::<C>(),
            factory: Factory::Transform(Box::new(move |config| {
                let config = parse_config::<C>(ComponentKind::Transform, &owned, config)?;
                Ok(Box::new(create(config)?) as Box<dyn Transform>)
            })),
        });
        self
    }

    /// Adds a target `id` whose configuration is `C`, built by `create`.
    pub fn target<C, T, F>(mut self, id: &str, description: &str, create: F) -> Self
    where
        C: DeserializeOwned + JsonSchema,
        T: Target,
        F: Fn(C) -> Result<T> + Send + Sync + 'static,
    {
        let owned = id.to_owned();
        self.entries.push(Entry {
            kind: ComponentKind::Target,
            id: id.to_owned(),
            description: description.to_owned(),
            schema: schema_of::<C>(),
            factory: Factory::Target(Box::new(move |config| {
                let config = parse_config::<C>(ComponentKind::Target, &owned, config)?;
                Ok(Box::new(create(config)?) as Box<dyn Target>)
            })),
        });
        self
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest the host receives at initialisation.
    pub fn manifest(&self) -> PluginManifest {
        PluginManifest {
            name: RString::from(self.name.as_str()),
            version: RString::from(self.version.as_str()),
            abi_version: crate::ABI_VERSION,
            description: RString::from(self.description.as_str()),
            components: self
                .entries
                .iter()
                .map(|e| ComponentManifest {
                    kind: e.kind,
                    id: RString::from(e.id.as_str()),
                    description: RString::from(e.description.as_str()),
                    config_schema: RString::from(e.schema.to_string()),
                })
                .collect::<RVec<_>>(),
        }
    }

    fn entry(&self, kind: ComponentKind, id: &str) -> Result<&Entry> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && e.id == id)
            .ok_or_else(|| {
                PluginError::not_found(format!("plugin `{}` has no {kind} `{id}`", self.name))
            })
    }

    /// Builds the source `id` from its JSON configuration.
    pub fn create_source(&self, id: &str, config: &str) -> Result<Box<dyn Source>> {
        match &self.entry(ComponentKind::Source, id)?.factory {
            Factory::Source(f) => f(config),
            _ => Err(PluginError::internal("component kind mismatch")),
        }
    }

    /// Builds the transform `id` from its JSON configuration.
    pub fn create_transform(&self, id: &str, config: &str) -> Result<Box<dyn Transform>> {
        match &self.entry(ComponentKind::Transform, id)?.factory {
            Factory::Transform(f) => f(config),
            _ => Err(PluginError::internal("component kind mismatch")),
        }
    }

    /// Builds the target `id` from its JSON configuration.
    pub fn create_target(&self, id: &str, config: &str) -> Result<Box<dyn Target>> {
        match &self.entry(ComponentKind::Target, id)?.factory {
            Factory::Target(f) => f(config),
            _ => Err(PluginError::internal("component kind mismatch")),
        }
    }
}
