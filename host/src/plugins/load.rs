//! Loading one plugin file, with one sentence naming the file for every way it can fail.
//!
//! Each file is opened with its own loader (`RawLibrary::load_at` then
//! `lib_header_from_raw_library`), never `RootModule::load_from_file`, which caches one module
//! per interface type and would hand every plugin the first one's module. Libraries are never
//! unloaded.

use std::io::Read;
use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RawLibrary, RootModuleError, lib_header_from_raw_library};
use abi_stable::std_types::{RResult, RStr};
use fastlane_plugin_api::abi::{HostContext, LogLevel, PluginModRef, first_release};
use fastlane_plugin_api::{ABI_VERSION, ABI_VERSION_SYMBOL, Capability, ComponentKind, ErrorCode};
use serde_json::Value;

use super::discover::Origin;

/// Why a plugin file could not be loaded. Each message is one sentence naming the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file is not an ELF shared library.
    #[error("`{path}` is not a shared library (it has no ELF header)")]
    NotALibrary {
        /// The file.
        path: PathBuf,
    },
    /// The file is an ELF file, but truncated or damaged.
    #[error("`{path}` is a truncated or damaged shared library: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The dynamic loader refused the file.
    #[error(
        "`{path}` could not be loaded ({reason}); it may be truncated or built for another system"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// What the dynamic loader said.
        reason: String,
    },
    /// The library does not export the ABI version symbol.
    #[error("`{path}` is not a fastlane plugin: it does not export `{symbol}`")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The symbol looked for.
        symbol: &'static str,
    },
    /// The plugin was built for another ABI version.
    #[error(
        "`{path}` was built for plugin ABI {found}, but this fastlane ({}) loads plugins of ABI {expected}: {}",
        env!("CARGO_PKG_VERSION"),
        abi_advice(*.found, *.expected)
    )]
    AbiVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        found: u32,
        /// The host's ABI version.
        expected: u32,
    },
    /// A required symbol is missing.
    #[error("`{path}` is missing the symbol `{symbol}`: it was not built with `export_plugin!`")]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// The plugin's interface layout differs from the host's.
    #[error(
        "`{path}` was built against an incompatible fastlane-plugin-api ({detail}): rebuild it against the version this fastlane uses"
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// A short description of the difference.
        detail: String,
    },
    /// The plugin panicked while initialising.
    #[error("`{path}` panicked during initialisation: {message}")]
    InitPanicked {
        /// The file.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// The plugin's initialisation returned an error.
    #[error("`{path}` failed to initialise: {message}")]
    InitFailed {
        /// The file.
        path: PathBuf,
        /// The plugin's message.
        message: String,
    },
    /// The manifest is malformed.
    #[error("`{path}` has an invalid manifest: {message}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl LoadError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::NotALibrary { path }
            | Self::Damaged { path, .. }
            | Self::Open { path, .. }
            | Self::NotAPlugin { path, .. }
            | Self::AbiVersion { path, .. }
            | Self::MissingSymbol { path, .. }
            | Self::Incompatible { path, .. }
            | Self::InitPanicked { path, .. }
            | Self::InitFailed { path, .. }
            | Self::Manifest { path, .. } => path,
        }
    }
}

/// What to do about a plugin built for ABI `found` in a host of ABI `expected`.
fn abi_advice(found: u32, expected: u32) -> String {
    if found > expected {
        format!(
            "the plugin is newer than this fastlane; upgrade fastlane to a release that loads ABI \
             {found} plugins, or use a build of the plugin made against a fastlane-plugin-api of \
             ABI {expected}"
        )
    } else {
        format!(
            "the plugin is older than this fastlane; rebuild it against a fastlane-plugin-api of \
             ABI {expected} (the one released with this fastlane), or run it with a fastlane \
             release that loads ABI {found} plugins"
        )
    }
}

/// A component offered by a loaded plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    /// Source, transform or target.
    #[serde(serialize_with = "ser_kind")]
    pub kind: ComponentKind,
    /// Its id.
    pub id: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its configuration.
    #[serde(skip)]
    pub schema: Value,
    /// What it can do beyond the first contract of ABI 1 (resume, verification).
    pub capabilities: Vec<Capability>,
}

fn ser_kind<S: serde::Serializer>(k: &ComponentKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// A plugin library, loaded and initialised.
pub struct LoadedPlugin {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Why its folder was searched.
    pub origin: Origin,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The ABI version it was built for.
    pub abi_version: u32,
    /// What it is for.
    pub description: String,
    /// Its components.
    pub components: Vec<ComponentInfo>,
    pub(crate) module: Module,
}

/// A plugin's root module, in the layout it was built with.
#[derive(Clone, Copy)]
pub(crate) enum Module {
    /// The current layout of ABI 1.
    Current(PluginModRef),
    /// ABI 1 as first released: no capabilities, no resume, counts or checksums.
    FirstRelease(first_release::PluginModRef),
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

/// The host's log callback: re-emits plugin records into the host's logger as `plugin::<name>`.
extern "C" fn host_log(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>) {
    let level = match level {
        LogLevel::Error => log::Level::Error,
        LogLevel::Warn => log::Level::Warn,
        LogLevel::Info => log::Level::Info,
        LogLevel::Debug => log::Level::Debug,
        LogLevel::Trace => log::Level::Trace,
    };
    let target = format!("plugin::{}", plugin.as_str());
    log::logger().log(
        &log::Record::builder()
            .level(level)
            .target(&target)
            .args(format_args!("{}", message.as_str()))
            .build(),
    );
}

fn host_context(threads: u32) -> HostContext {
    let max_level = match log::max_level() {
        log::LevelFilter::Off | log::LevelFilter::Error => LogLevel::Error,
        log::LevelFilter::Warn => LogLevel::Warn,
        log::LevelFilter::Info => LogLevel::Info,
        log::LevelFilter::Debug => LogLevel::Debug,
        log::LevelFilter::Trace => LogLevel::Trace,
    };
    HostContext {
        abi_version: ABI_VERSION,
        log: host_log,
        max_level,
        threads,
    }
}

fn has_elf_header(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Checks, before the dynamic loader maps the file, that its ELF headers and every loadable
/// segment lie inside the file: the loader maps segments past the end of a truncated file and
/// the process would die of SIGBUS on first access.
///
/// Only the file header and the program header table are read. (Reading a whole plugin would
/// also make glibc's malloc raise its mmap threshold to the file's size for the rest of the
/// run, so that later large buffers stay in the heap instead of going back to the system.)
fn check_elf(path: &Path) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size < 64 {
        return Err(format!("only {size} bytes long"));
    }
    let mut header = [0u8; 64];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    if header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(x)
    };
    const EM_HOST: u64 = if cfg!(target_arch = "x86_64") {
        62
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        0
    };
    let machine = u16_at(&header, 18);
    if EM_HOST != 0 && machine != EM_HOST {
        return Err(format!(
            "built for another architecture (ELF machine {machine})"
        ));
    }
    let (phoff, shoff) = (u64_at(&header, 0x20), u64_at(&header, 0x28));
    let (phentsize, phnum) = (u16_at(&header, 0x36), u16_at(&header, 0x38));
    let (shentsize, shnum) = (u16_at(&header, 0x3A), u16_at(&header, 0x3C));
    let table_end = |off: u64, n: u64, each: u64| off.checked_add(n.checked_mul(each)?);
    match table_end(phoff, phnum, phentsize) {
        Some(end) if end <= size && phentsize >= 56 => {}
        _ => return Err("its program headers lie past the end of the file".into()),
    }
    if shoff != 0 && table_end(shoff, shnum, shentsize).is_none_or(|end| end > size) {
        return Err("its section headers lie past the end of the file".into());
    }
    // At most 65,535 entries of at most 65,535 bytes, all inside the file (checked above).
    let mut table = vec![0u8; (phnum * phentsize) as usize];
    file.seek(SeekFrom::Start(phoff))
        .and_then(|_| file.read_exact(&mut table))
        .map_err(|e| e.to_string())?;
    for i in 0..phnum {
        let h = (i * phentsize) as usize;
        let kind = u32_at(&table, h);
        let (offset, filesz) = (u64_at(&table, h + 8), u64_at(&table, h + 32));
        if kind == 1 && offset.checked_add(filesz).is_none_or(|end| end > size) {
            return Err(format!(
                "segment {i} ends at byte {} but the file has {size}",
                offset.saturating_add(filesz)
            ));
        }
    }
    Ok(())
}

fn loader_reason(path: &Path, err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    let shown = path.display().to_string();
    // dlerror() repeats the path ("<path>: file too short"); keep only what follows it.
    match text.find(&shown) {
        Some(i) => text[i + shown.len()..]
            .trim_start_matches(':')
            .trim()
            .to_owned(),
        None => text,
    }
}

fn library_error(path: &Path, err: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match err {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            reason: loader_reason(&path, &err),
            path,
        },
        LibraryError::GetSymbolError { symbol, .. } => LoadError::MissingSymbol {
            symbol: String::from_utf8_lossy(&symbol)
                .trim_end_matches('\0')
                .to_owned(),
            path,
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::Incompatible {
            detail: format!(
                "it uses fastlane-plugin-api {actual_version}, this fastlane {expected_version}"
            ),
            path,
        },
        LibraryError::RootModule { err, .. } => match err {
            RootModuleError::Unwound => LoadError::InitPanicked {
                message: "the root module constructor panicked".into(),
                path,
            },
            other => LoadError::InitFailed {
                message: other.to_string(),
                path,
            },
        },
        LibraryError::AbiInstability(e) => {
            tracing::debug!(path = %path.display(), "abi_stable's layout check: {e}");
            LoadError::Incompatible {
                detail: "the layout of its interface types differs".into(),
                path,
            }
        }
        LibraryError::InvalidAbiHeader(h) => LoadError::Incompatible {
            detail: format!("it was built with an incompatible abi_stable ({h:?})"),
            path,
        },
        other => LoadError::Incompatible {
            detail: other
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            path,
        },
    }
}

/// Loads and initialises one plugin file.
pub fn load_plugin(path: &Path, origin: Origin, threads: u32) -> Result<LoadedPlugin, LoadError> {
    if !has_elf_header(path) {
        return Err(LoadError::NotALibrary {
            path: path.to_path_buf(),
        });
    }
    if let Err(reason) = check_elf(path) {
        return Err(LoadError::Damaged {
            path: path.to_path_buf(),
            reason,
        });
    }
    let raw = RawLibrary::load_at(path).map_err(|e| library_error(path, e))?;
    // Never unloaded: code from it may run until the process exits.
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));

    // SAFETY: the symbol is declared by `export_plugin!` as `extern "C" fn() -> u32`.
    let abi_version = unsafe { raw.get::<extern "C" fn() -> u32>(ABI_VERSION_SYMBOL.as_bytes()) }
        .map(|f| f())
        .map_err(|_| LoadError::NotAPlugin {
            path: path.to_path_buf(),
            symbol: ABI_VERSION_SYMBOL,
        })?;
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiVersion {
            path: path.to_path_buf(),
            found: abi_version,
            expected: ABI_VERSION,
        });
    }

    // SAFETY: `raw` lives for the rest of the process.
    let header = unsafe { lib_header_from_raw_library(raw) }.map_err(|e| library_error(path, e))?;
    // The current layout first; a plugin built against an older release of ABI 1 has shorter
    // tables, which abi_stable refuses for the current layout: it is loaded with its own.
    let module = match header.init_root_module::<PluginModRef>() {
        Ok(m) => Module::Current(m),
        Err(current @ LibraryError::AbiInstability(_)) => {
            match header.init_root_module::<first_release::PluginModRef>() {
                Ok(m) => {
                    tracing::debug!(
                        path = %path.display(),
                        "loaded with the layout of ABI 1 as first released"
                    );
                    Module::FirstRelease(m)
                }
                Err(_) => return Err(library_error(path, current)),
            }
        }
        Err(e) => return Err(library_error(path, e)),
    };
    let init = match module {
        Module::Current(m) => m.init(),
        Module::FirstRelease(m) => m.init(),
    };

    let manifest = match init(host_context(threads)) {
        RResult::ROk(m) => m,
        RResult::RErr(e) if e.code() == ErrorCode::PANIC => {
            return Err(LoadError::InitPanicked {
                path: path.to_path_buf(),
                message: e
                    .message()
                    .trim_start_matches("panicked")
                    .trim_start_matches(": ")
                    .to_owned(),
            });
        }
        RResult::RErr(e) => {
            return Err(LoadError::InitFailed {
                path: path.to_path_buf(),
                message: e.message().to_owned(),
            });
        }
    };

    let capabilities = capabilities_of(&module, path)?;
    let mut components = Vec::new();
    for c in manifest.components.iter() {
        let schema: Value =
            serde_json::from_str(c.config_schema.as_str()).map_err(|e| LoadError::Manifest {
                path: path.to_path_buf(),
                message: format!("the schema of {} `{}` is not JSON: {e}", c.kind, c.id),
            })?;
        if let Err(e) = jsonschema::meta::validate(&schema) {
            return Err(LoadError::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "the schema of {} `{}` is not a valid JSON Schema: {e}",
                    c.kind, c.id
                ),
            });
        }
        components.push(ComponentInfo {
            kind: c.kind,
            id: c.id.to_string(),
            description: c.description.to_string(),
            schema,
            capabilities: capabilities
                .get(&format!("{}:{}", c.kind, c.id))
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        origin,
        name: manifest.name.to_string(),
        version: manifest.version.to_string(),
        abi_version: manifest.abi_version,
        description: manifest.description.to_string(),
        components,
        module,
    })
}

/// The capabilities a plugin declares per `"<kind>:<id>"`; none for a plugin built before the
/// root module had the entry. Unknown names (from a newer plugin) are skipped.
fn capabilities_of(
    module: &Module,
    path: &Path,
) -> Result<std::collections::HashMap<String, Vec<Capability>>, LoadError> {
    let Module::Current(module) = module else {
        return Ok(Default::default());
    };
    let Some(entry) = module.capabilities() else {
        return Ok(Default::default());
    };
    let text = entry();
    let map: std::collections::HashMap<String, Vec<String>> = serde_json::from_str(text.as_str())
        .map_err(|e| LoadError::Manifest {
        path: path.to_path_buf(),
        message: format!("its list of capabilities is not valid: {e}"),
    })?;
    Ok(map
        .into_iter()
        .map(|(k, names)| {
            let caps = names.iter().filter_map(|n| Capability::parse(n)).collect();
            (k, caps)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_abi_is_refused_naming_both_versions_and_what_to_do() {
        let newer = LoadError::AbiVersion {
            path: PathBuf::from("/p/libfastlane_plugin_x.so"),
            found: 2,
            expected: 1,
        }
        .to_string();
        assert!(
            newer.starts_with(
                "`/p/libfastlane_plugin_x.so` was built for plugin ABI 2, but this fastlane ("
            ),
            "{newer}"
        );
        assert!(
            newer.contains(") loads plugins of ABI 1: the plugin is newer"),
            "{newer}"
        );
        assert!(
            newer.contains("upgrade fastlane to a release that loads ABI 2 plugins"),
            "{newer}"
        );

        // An ABI 2 host meeting a plugin built for ABI 1.
        let older = LoadError::AbiVersion {
            path: PathBuf::from("/p/libfastlane_plugin_x.so"),
            found: 1,
            expected: 2,
        }
        .to_string();
        assert!(older.contains("was built for plugin ABI 1"), "{older}");
        assert!(
            older.contains("loads plugins of ABI 2: the plugin is older"),
            "{older}"
        );
        assert!(
            older.contains("rebuild it against a fastlane-plugin-api of ABI 2"),
            "{older}"
        );
    }
}
