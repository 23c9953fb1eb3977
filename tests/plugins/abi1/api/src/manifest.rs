//! What a plugin says about itself.

use std::fmt;

use abi_stable::StableAbi;
use abi_stable::std_types::{RString, RVec};

/// The three kinds of component a plugin can provide.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Reads data and produces record batches.
    Source,
    /// Turns record batches into record batches.
    Transform,
    /// Writes record batches to a destination.
    Target,
}

impl ComponentKind {
    /// All kinds, in pipeline order.
    pub const ALL: [ComponentKind; 3] = [Self::Source, Self::Transform, Self::Target];

    /// The lowercase name: `source`, `transform` or `target`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Target => "target",
        }
    }

    /// Parses `source`, `transform` or `target`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "source" => Some(Self::Source),
            "transform" => Some(Self::Transform),
            "target" => Some(Self::Target),
            _ => None,
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component of a plugin: its kind, id and configuration schema.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ComponentManifest {
    /// Source, transform or target.
    pub kind: ComponentKind,
    /// The id users name it by (`--source=<id>`), a lowercase word.
    pub id: RString,
    /// One line saying what it does.
    pub description: RString,
    /// The JSON Schema of its configuration section, as JSON text.
    pub config_schema: RString,
}

/// What a plugin reports when the host initialises it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginManifest {
    /// The plugin's name (`file`, `mysql`, …).
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// The plugin ABI version it was built for ([`ABI_VERSION`](crate::ABI_VERSION)).
    pub abi_version: u32,
    /// One line saying what the plugin is for.
    pub description: RString,
    /// Its components.
    pub components: RVec<ComponentManifest>,
}
