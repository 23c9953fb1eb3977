//! The stable plugin ABI of fastlane.
//!
//! A fastlane plugin is a `cdylib` named `libfastlane_plugin_<name>.so` that provides sources,
//! transforms and targets. The host finds it in a plugin folder at run time, checks its ABI
//! version, initialises it and asks it for components by id. Data crosses the boundary only as
//! Arrow record batches through the Arrow C Data Interface, zero-copy.
//!
//! A plugin author:
//! 1. implements the safe traits [`Source`] (with [`BatchStream`]), [`Transform`], or
//!    [`Target`] (with [`Writer`]);
//! 2. gives each component a configuration struct deriving `serde::Deserialize` and
//!    `schemars::JsonSchema` (the host validates users' configuration against its schema before
//!    anything runs);
//! 3. lists them in a [`PluginDefinition`] passed to [`export_plugin!`].
//!
//! Everything else is generated: the ABI version symbol, the abi_stable root module, panic
//! guards around every entry point (a panic becomes an error value with the panic message,
//! never an unwind across the boundary), and forwarding of the `log` crate's records to the
//! host's logger.
//!
//! # A complete plugin
//!
//! ```
//! use std::sync::Arc;
//!
//! use fastlane_plugin_api::arrow_array::{Int64Array, RecordBatch};
//! use fastlane_plugin_api::arrow_schema::{DataType, Field, Schema};
//! use fastlane_plugin_api::{
//!     BatchStream, IterStream, Partition, PluginDefinition, Result, Source, export_plugin,
//! };
//!
//! /// Configuration of the `counter` source.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct CounterConfig {
//!     /// How many rows to produce.
//!     rows: i64,
//!     /// Rows per batch.
//!     #[serde(default = "default_batch")]
//!     batch_size: i64,
//! }
//!
//! fn default_batch() -> i64 {
//!     8192
//! }
//!
//! /// Produces the integers `0..rows` in a column `n`.
//! struct Counter(CounterConfig);
//!
//! impl Source for Counter {
//!     fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
//!         let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
//!         let (rows, step) = (self.0.rows, self.0.batch_size.max(1));
//!         let batches = (0..rows).step_by(step as usize).map(move |start| {
//!             let column = Int64Array::from_iter_values(start..(start + step).min(rows));
//!             Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])?)
//!         });
//!         Ok(Box::new(IterStream(batches)))
//!     }
//! }
//!
//! export_plugin!(
//!     PluginDefinition::new("counter", env!("CARGO_PKG_VERSION"))
//!         .description("Counts.")
//!         .source("counter", "Produces the integers 0..rows.", |config: CounterConfig| {
//!             Ok(Counter(config))
//!         })
//! );
//! # fn main() {
//! #     let mut stream = Counter(CounterConfig { rows: 10, batch_size: 4 })
//! #         .read(&Partition { index: 0, spec: serde_json::Value::Null })
//! #         .unwrap();
//! #     let mut total = 0;
//! #     while let Some(batch) = stream.next_batch().unwrap() {
//! #         total += batch.num_rows();
//! #     }
//! #     assert_eq!(total, 10);
//! # }
//! ```
//!
//! Build it with `crate-type = ["cdylib"]` in a crate named `fastlane-plugin-counter` and drop
//! `libfastlane_plugin_counter.so` into a plugin folder (`--plugin-dir`, or a folder listed in
//! `FASTLANE_PLUGIN_PATH`): `fastlane plugins list` shows it.
//!
//! # Versioning
//!
//! [`ABI_VERSION`] is the major version of this contract. The host refuses a plugin built for
//! another version with a sentence naming the file and both versions; within a version the root
//! module and trait objects are frozen, and their layout is checked by abi_stable at load time.
//!
//! ABI 1 grows without breaking plugins built against its first release. Every change to this
//! crate follows these rules:
//! - the root module ([`abi::PluginMod`]) and the trait objects ([`abi::FfiSource`] and the
//!   others) gain entry points and methods only at their end (root module fields after
//!   `last_prefix_field`, marked `missing_field(option)`; methods with a default body); nothing
//!   is removed, reordered or given other argument or return types;
//! - abi_stable refuses a plugin whose tables are shorter than the host's, so the layout that a
//!   release lengthens is kept, frozen, beside the current one ([`abi::first_release`] is ABI 1
//!   as first released). The host loads each plugin with the newest layout that fits it; what
//!   the plugin's layout lacks answers "unsupported";
//! - a component declares what it implements beyond the first release ([`Capability`]), and
//!   the host calls the new methods only on components that declared them: an older plugin
//!   runs as before, without the new features, and `fastlane plugins list` says so;
//! - messages that cross as JSON ([`ReadContext`], [`WriteContext`], [`Partition`]) gain only
//!   optional fields, which older plugins ignore;
//! - this crate's version stays `0.1.x` while ABI 1 lasts: abi_stable compares the version of
//!   the crate that defines the types, and refuses another `0.minor`;
//! - anything else (a changed layout, a removed method) is a new major version: [`ABI_VERSION`]
//!   changes, and hosts and plugins of different versions refuse each other with a sentence
//!   naming both versions and what to do.
//!
//! The fastlane repository keeps a frozen copy of this crate as ABI 1 was first released and a
//! plugin built against it; every host is tested to load it, run it both ways and pass it
//! through the conformance suite (`fastlane plugins check`).
//!
//! The first additions are the [`checkpoint`] contract of resumable runs, the [`Capability`]
//! list of each component, and the [`checksum`]s of verified runs (`Source::checksum`,
//! `Target::staged_checksum`).

#![deny(missing_docs)]

pub mod abi;
mod adapter;
mod batch;
pub mod checkpoint;
pub mod checksum;
mod component;
mod definition;
mod error;
mod export;
mod logging;
mod manifest;

pub use abi_stable;
pub use arrow_array;
pub use arrow_schema;
pub use log;
pub use schemars;
pub use serde_json;

pub use batch::FfiBatch;
pub use checkpoint::{Capability, Checkpointing, ReadRange, StagedRun};
pub use checksum::Checksum;
pub use component::{
    BatchStream, IterStream, Partition, ReadContext, ReplicationMode, Source, Target, Transform,
    WriteContext, Writer,
};
pub use definition::PluginDefinition;
pub use error::{ErrorCode, PluginError, Result};
pub use export::{ABI_VERSION_SYMBOL, ROOT_MODULE_SYMBOL};
pub use logging::host_threads;
pub use manifest::{ComponentKind, ComponentManifest, PluginManifest};

/// The plugin ABI version (major) this crate implements.
pub const ABI_VERSION: u32 = 1;

#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::guard;
    pub use crate::export::root_module;
}
