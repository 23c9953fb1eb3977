//! Test-only plugin whose manifest breaks the rules `fastlane plugins check` enforces: a source
//! without a description whose configuration schema accepts unknown fields.

use fastlane_plugin_api::{
    BatchStream, IterStream, Partition, PluginDefinition, Result, Source, export_plugin,
};
use serde::Deserialize;

/// Configuration without `deny_unknown_fields`: a misspelt field would pass unseen.
#[derive(Deserialize, schemars::JsonSchema)]
struct LooseConfig {
    /// Rows.
    #[allow(dead_code)]
    rows: Option<u64>,
}

struct Nothing;

impl Source for Nothing {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(IterStream(std::iter::empty())))
    }
}

export_plugin!(
    PluginDefinition::new("openschema", env!("CARGO_PKG_VERSION"))
        .description("Test-only plugin with a loose manifest.")
        .source("loose", "", |_: LooseConfig| Ok(Nothing))
);
