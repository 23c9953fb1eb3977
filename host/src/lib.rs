//! The fastlane engine and command line.
//!
//! fastlane moves data from a **source** through **transforms** into a **target**. Sources and
//! targets (and optionally transforms) live in `.so` plugins found at run time
//! ([`plugins`]); DataFrame transforms run here on polars ([`transforms`]); the [`engine`]
//! runs each stage on its own workers, joined by queues bounded in batches and bytes.
//!
//! The same [`engine::run`] serves the `fastlane` command ([`cli`]) and the language
//! bindings: build a [`engine::Pipeline`] from components, pick [`engine::EngineOptions`],
//! and run it with an [`engine::Observer`]. Every run reports itself to the monitor
//! ([`monitoring`]); `fastlane serve` serves the monitoring API and web UI.

// The JSON Schema of the configuration's top level is one `json!` literal.
#![recursion_limit = "256"]

pub mod cli;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod error;
pub mod log_sinks;
pub mod logging;
pub mod monitoring;
pub mod plugins;
pub mod problem;
pub mod progress;
pub mod runner;
pub mod scaffold;
pub mod secrets;
pub mod transforms;

pub use fastlane_plugin_api as plugin_api;
