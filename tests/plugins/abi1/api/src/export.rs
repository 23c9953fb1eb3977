//! The plugin side of the root module, used by [`export_plugin!`](crate::export_plugin).

use std::sync::OnceLock;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};

use crate::abi::{
    FfiSource_TO, FfiSourceBox, FfiTarget_TO, FfiTargetBox, FfiTransform_TO, FfiTransformBox,
    HostContext, PluginMod, PluginModRef,
};
use crate::adapter::{LAST_PANIC_LOCATION, SourceAdapter, TargetAdapter, TransformAdapter, guard};
use crate::definition::PluginDefinition;
use crate::error::{PluginError, Result};
use crate::manifest::PluginManifest;

/// The symbol every plugin exports first: `extern "C" fn() -> u32` returning its ABI version.
pub const ABI_VERSION_SYMBOL: &str = "fastlane_plugin_abi_version";

/// The symbol under which the abi_stable library header is exported.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

static CONSTRUCTOR: OnceLock<fn() -> PluginDefinition> = OnceLock::new();
static DEFINITION: OnceLock<PluginDefinition> = OnceLock::new();

fn definition() -> Result<&'static PluginDefinition> {
    DEFINITION
        .get()
        .ok_or_else(|| PluginError::internal("the host did not initialise the plugin"))
}

/// Builds the root module of the plugin whose components `constructor` defines.
#[doc(hidden)]
pub fn root_module(constructor: fn() -> PluginDefinition) -> PluginModRef {
    let _ = CONSTRUCTOR.set(constructor);
    abi_stable::prefix_type::PrefixTypeTrait::leak_into_prefix(PluginMod {
        init,
        create_source,
        create_transform,
        create_target,
    })
}

extern "C" fn init(host: HostContext) -> RResult<PluginManifest, PluginError> {
    guard(|| {
        if host.abi_version != crate::ABI_VERSION {
            return Err(PluginError::unsupported(format!(
                "the host speaks plugin ABI {}, this plugin ABI {}",
                host.abi_version,
                crate::ABI_VERSION
            )));
        }
        install_panic_hook();
        let constructor = CONSTRUCTOR
            .get()
            .ok_or_else(|| PluginError::internal("root module not constructed"))?;
        let definition = match DEFINITION.get() {
            Some(d) => d,
            None => {
                let built = constructor();
                DEFINITION.get_or_init(|| built)
            }
        };
        crate::logging::install(host, definition.name());
        Ok(definition.manifest())
    })
}

/// Records the location of panics for the error value instead of printing them: the host
/// reports the panic as an error of the call that panicked.
fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            LAST_PANIC_LOCATION.with(|l| *l.borrow_mut() = location);
        }));
    });
}

extern "C" fn create_source(id: RStr<'_>, config: RStr<'_>) -> RResult<FfiSourceBox, PluginError> {
    guard(|| {
        let source = definition()?.create_source(id.as_str(), config.as_str())?;
        Ok(FfiSource_TO::from_value(SourceAdapter(source), TD_Opaque))
    })
}

extern "C" fn create_transform(
    id: RStr<'_>,
    config: RStr<'_>,
) -> RResult<FfiTransformBox, PluginError> {
    guard(|| {
        let transform = definition()?.create_transform(id.as_str(), config.as_str())?;
        Ok(FfiTransform_TO::from_value(
            TransformAdapter(transform),
            TD_Opaque,
        ))
    })
}

extern "C" fn create_target(id: RStr<'_>, config: RStr<'_>) -> RResult<FfiTargetBox, PluginError> {
    guard(|| {
        let target = definition()?.create_target(id.as_str(), config.as_str())?;
        Ok(FfiTarget_TO::from_value(TargetAdapter(target), TD_Opaque))
    })
}

/// Exports a plugin from a `cdylib` crate.
///
/// Takes an expression that evaluates to a [`PluginDefinition`](crate::PluginDefinition). It is
/// evaluated when the host initialises the plugin, inside a panic guard: a panic there is
/// reported by the host as a load error naming the file.
///
/// It generates two exported symbols: `fastlane_plugin_abi_version` (checked by the host before
/// it touches anything else) and the abi_stable library header holding the root module.
#[macro_export]
macro_rules! export_plugin {
    ($definition:expr $(,)?) => {
        /// Reports the plugin ABI version this library was built for.
        #[unsafe(no_mangle)]
        pub extern "C" fn fastlane_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// The abi_stable library header holding this plugin's root module.
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static FASTLANE_PLUGIN_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            fn __fastlane_plugin_definition() -> $crate::PluginDefinition {
                $definition
            }
            fn __fastlane_plugin_root_module() -> $crate::abi::PluginModRef {
                $crate::__private::root_module(__fastlane_plugin_definition)
            }
            extern "C" fn __fastlane_plugin_constructor()
            -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(
                    __fastlane_plugin_root_module,
                )
            }
            // SAFETY: `constructor` returns the root module of type `PluginModRef`.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                    __fastlane_plugin_constructor,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            super::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
