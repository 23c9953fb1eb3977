//! All plugins found on the search path, and their components by kind and id.

use std::collections::BTreeMap;
use std::sync::Arc;

use fastlane_plugin_api::ComponentKind;

use super::discover::{SearchDir, plugin_files};
use super::load::{ComponentInfo, LoadError, LoadedPlugin, load_plugin};

/// A component and where it comes from.
#[derive(Debug, Clone)]
pub struct ComponentRef {
    /// The plugin providing it; `None` for components built into the host.
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// The component.
    pub info: ComponentInfo,
}

impl ComponentRef {
    /// Where it comes from, for messages: the plugin file, or `built-in`.
    pub fn origin(&self) -> String {
        match &self.plugin {
            Some(p) => p.path.display().to_string(),
            None => "built-in".to_owned(),
        }
    }
}

/// The plugins found on the search path, the failures, and the component index.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// The folders searched, in precedence order.
    pub dirs: Vec<SearchDir>,
    /// The plugins loaded, in precedence order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// The files that failed to load.
    pub failures: Vec<LoadError>,
    /// Warnings (duplicate ids).
    pub warnings: Vec<String>,
    index: BTreeMap<(ComponentKind, String), ComponentRef>,
}

impl Registry {
    /// Loads every plugin file of `dirs`, then adds the host's built-in components.
    ///
    /// Built-in components take precedence over plugins; among plugins, earlier folders win.
    pub fn load(dirs: Vec<SearchDir>, builtins: Vec<ComponentInfo>, threads: u32) -> Self {
        let mut reg = Registry {
            dirs,
            ..Registry::default()
        };
        for info in builtins {
            reg.index.insert(
                (info.kind, info.id.clone()),
                ComponentRef { plugin: None, info },
            );
        }
        let dirs = reg.dirs.clone();
        for dir in &dirs {
            for file in plugin_files(&dir.path) {
                match load_plugin(&file, dir.origin, threads) {
                    Ok(p) => reg.add(Arc::new(p)),
                    Err(e) => {
                        tracing::debug!("{e}");
                        reg.failures.push(e)
                    }
                }
            }
        }
        reg
    }

    fn add(&mut self, plugin: Arc<LoadedPlugin>) {
        tracing::debug!(
            plugin = %plugin.name,
            version = %plugin.version,
            path = %plugin.path.display(),
            "loaded plugin"
        );
        for info in &plugin.components {
            let key = (info.kind, info.id.clone());
            if let Some(existing) = self.index.get(&key) {
                self.warnings.push(format!(
                    "{} `{}` is provided by both {} and `{}`; using the first ({})",
                    info.kind,
                    info.id,
                    match &existing.plugin {
                        Some(p) => format!("`{}`", p.path.display()),
                        None => "fastlane itself".to_owned(),
                    },
                    plugin.path.display(),
                    if existing.plugin.is_some() {
                        "earlier in the plugin search order"
                    } else {
                        "built-in components take precedence"
                    }
                ));
                continue;
            }
            self.index.insert(
                key,
                ComponentRef {
                    plugin: Some(plugin.clone()),
                    info: info.clone(),
                },
            );
        }
        self.plugins.push(plugin);
    }

    /// Adds a component provided by the embedding program (a Python class, say), replacing any
    /// component of the same kind and id.
    pub fn insert_external(&mut self, info: ComponentInfo) {
        self.index.insert(
            (info.kind, info.id.clone()),
            ComponentRef { plugin: None, info },
        );
    }

    /// The component `id` of `kind`, if any.
    pub fn find(&self, kind: ComponentKind, id: &str) -> Option<&ComponentRef> {
        self.index.get(&(kind, id.to_owned()))
    }

    /// The ids available for `kind`, sorted.
    pub fn ids(&self, kind: ComponentKind) -> Vec<String> {
        self.index
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Every component, by kind then id.
    pub fn components(&self) -> impl Iterator<Item = &ComponentRef> {
        self.index.values()
    }
}
