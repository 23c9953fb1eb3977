//! Test-only plugin that reports the right ABI version but exports no root module.

/// Reports the current plugin ABI version.
#[unsafe(no_mangle)]
pub extern "C" fn fastlane_plugin_abi_version() -> u32 {
    fastlane_plugin_api::ABI_VERSION
}
