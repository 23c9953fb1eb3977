//! Test-only plugin whose definition panics while the host initialises it.

fn definition() -> fastlane_plugin_api::PluginDefinition {
    panic!("deliberate panic during initialisation")
}

fastlane_plugin_api::export_plugin!(definition());
