//! Finding, loading and calling plugins.

mod discover;
mod handles;
mod load;
mod registry;

pub use discover::{Origin, SearchDir, is_plugin_file_name, search_dirs, set_package_dir};
pub use handles::{PluginSource, PluginTarget, PluginTransform};
pub use load::{ComponentInfo, LoadError, LoadedPlugin, load_plugin};
pub use registry::{ComponentRef, Registry};
