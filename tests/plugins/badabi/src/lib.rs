//! Test-only plugin that reports an ABI version no host supports.

/// Reports plugin ABI 999.
#[unsafe(no_mangle)]
pub extern "C" fn fastlane_plugin_abi_version() -> u32 {
    999
}
