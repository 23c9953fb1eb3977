//! Where plugins are searched for, in order of precedence.
//!
//! 1. `--plugin-dir` folders, in the order given;
//! 2. folders listed in `FASTLANE_PLUGIN_PATH` (colon-separated);
//! 3. the `plugins` folder of the installed Python package, when fastlane runs from Python
//!    ([`set_package_dir`]);
//! 4. the folder of the running executable (so `target/release/fastlane` finds the plugins
//!    built beside it);
//! 5. the user folder, `$XDG_DATA_HOME/fastlane/plugins` or `~/.local/share/fastlane/plugins`.
//!
//! Only files named `libfastlane_plugin_*.so` are considered. When two plugins provide a
//! component with the same kind and id, the one found first in this order wins and a warning
//! names both files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static PACKAGE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the plugin folder of the Python package (once per process; later calls are ignored).
pub fn set_package_dir(dir: PathBuf) {
    let _ = PACKAGE_DIR.set(dir);
}

/// Why a folder is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Given with `--plugin-dir`.
    Flag,
    /// Listed in `FASTLANE_PLUGIN_PATH`.
    Env,
    /// The `plugins` folder of the installed Python package.
    Package,
    /// The folder of the running executable.
    Executable,
    /// The user's plugin folder.
    User,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "--plugin-dir",
            Self::Env => "FASTLANE_PLUGIN_PATH",
            Self::Package => "Python package",
            Self::Executable => "executable folder",
            Self::User => "user folder",
        })
    }
}

/// A folder to search, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDir {
    /// The folder.
    pub path: PathBuf,
    /// Why it is searched.
    pub origin: Origin,
}

/// The folders to search, in precedence order, without duplicates.
pub fn search_dirs(flag_dirs: &[PathBuf], include_defaults: bool) -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    for d in flag_dirs {
        dirs.push(SearchDir {
            path: d.clone(),
            origin: Origin::Flag,
        });
    }
    if let Some(env) = std::env::var_os("FASTLANE_PLUGIN_PATH") {
        for d in std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(SearchDir {
                path: d,
                origin: Origin::Env,
            });
        }
    }
    if include_defaults {
        if let Some(dir) = PACKAGE_DIR.get() {
            dirs.push(SearchDir {
                path: dir.clone(),
                origin: Origin::Package,
            });
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            dirs.push(SearchDir {
                path: dir,
                origin: Origin::Executable,
            });
        }
        if let Some(dir) = user_dir() {
            dirs.push(SearchDir {
                path: dir,
                origin: Origin::User,
            });
        }
    }
    let mut seen = Vec::<PathBuf>::new();
    dirs.retain(|d| {
        let key = d.path.canonicalize().unwrap_or_else(|_| d.path.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

fn user_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("fastlane/plugins"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/fastlane/plugins"))
}

/// Whether a file name follows the plugin naming convention `libfastlane_plugin_*.so`.
pub fn is_plugin_file_name(name: &str) -> bool {
    name.strip_prefix("libfastlane_plugin_")
        .and_then(|rest| rest.strip_suffix(".so"))
        .is_some_and(|stem| !stem.is_empty())
}

/// The plugin files of one folder, sorted by name. A missing folder has none.
pub(crate) fn plugin_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_plugin_file_name))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention() {
        assert!(is_plugin_file_name("libfastlane_plugin_file.so"));
        assert!(!is_plugin_file_name("libfastlane_plugin_.so"));
        assert!(!is_plugin_file_name("libfastlane_plugin_file.so.1"));
        assert!(!is_plugin_file_name("libother.so"));
        assert!(!is_plugin_file_name("libfastlane_testplugin_x.so"));
    }

    #[test]
    fn flag_dirs_come_first_and_duplicates_are_dropped() {
        let a = PathBuf::from("/nonexistent/a");
        let dirs = search_dirs(&[a.clone(), a.clone()], false);
        assert_eq!(dirs[0].path, a);
        assert_eq!(dirs.iter().filter(|d| d.path == a).count(), 1);
    }
}
