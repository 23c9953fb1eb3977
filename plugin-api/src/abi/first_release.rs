//! The root module and trait objects of plugin ABI 1 as it was first released (fastlane-plugin-api
//! 0.1.0), frozen. A host loads a plugin with the current layout ([`super::PluginModRef`]) and,
//! when abi_stable finds the plugin's layout older, with this one: abi_stable refuses a plugin
//! whose tables are shorter than the host's, so every layout ABI 1 has had stays here for the
//! host to try. Never change this module; a later release that lengthens a table freezes the
//! layout it replaces in a module of its own.
//!
//! The transform, the manifest, the host context, batches and errors are unchanged since the
//! first release and shared with the current layout.

// `sabi_trait` expands to impls inside a generated module; the lint is about that expansion.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, sabi_trait};

use super::{FfiTransformBox, HostContext};
use crate::batch::FfiBatch;
use crate::error::PluginError;
use crate::manifest::PluginManifest;

/// FFI form of a source, as first released: partitions and whole-partition reads.
#[sabi_trait]
pub trait FfiSource: Send + Sync {
    /// Splits the data into partitions (JSON in, JSON out).
    fn partitions(&self, context: RStr<'_>) -> RResult<RVec<RString>, PluginError>;

    /// Opens one partition (JSON) as a stream of batches.
    fn open(
        &self,
        partition: RStr<'_>,
    ) -> RResult<FfiBatchStream_TO<'static, RBox<()>>, PluginError>;
}

/// FFI form of a batch stream, as first released: batches without positions.
#[sabi_trait]
pub trait FfiBatchStream: Send {
    /// The next batch, or none at the end.
    fn next(&mut self) -> RResult<ROption<FfiBatch>, PluginError>;
}

/// FFI form of a target, as first released: no checkpoints, counts or checksums.
#[sabi_trait]
pub trait FfiTarget: Send + Sync {
    /// The largest replication key already stored (JSON), if any.
    fn get_offset(&self) -> RResult<ROption<RString>, PluginError>;

    /// Prepares a run; `context` is a JSON write context.
    fn open(&mut self, context: RStr<'_>) -> RResult<(), PluginError>;

    /// A writer for target worker `index`.
    fn writer(&self, index: u32) -> RResult<FfiWriter_TO<'static, RBox<()>>, PluginError>;

    /// Makes everything the writers wrote visible.
    fn commit(&mut self) -> RResult<(), PluginError>;

    /// Discards everything written since `open`.
    fn abort(&mut self) -> RResult<(), PluginError>;
}

/// FFI form of a writer, as first released: untagged writes.
#[sabi_trait]
pub trait FfiWriter: Send {
    /// Writes one batch.
    fn write(&mut self, batch: FfiBatch) -> RResult<(), PluginError>;

    /// Flushes and finishes this writer's output (still invisible until commit).
    fn close(&mut self) -> RResult<(), PluginError>;
}

/// A boxed [`FfiSource`] trait object.
pub type FfiSourceBox = FfiSource_TO<'static, RBox<()>>;
/// A boxed [`FfiBatchStream`] trait object.
pub type FfiBatchStreamBox = FfiBatchStream_TO<'static, RBox<()>>;
/// A boxed [`FfiTarget`] trait object.
pub type FfiTargetBox = FfiTarget_TO<'static, RBox<()>>;
/// A boxed [`FfiWriter`] trait object.
pub type FfiWriterBox = FfiWriter_TO<'static, RBox<()>>;

/// The root module as first released: four entry points.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Initialises the plugin and returns its manifest.
    pub init: extern "C" fn(host: HostContext) -> RResult<PluginManifest, PluginError>,
    /// Creates the source `id` from its JSON configuration.
    pub create_source:
        extern "C" fn(id: RStr<'_>, config: RStr<'_>) -> RResult<FfiSourceBox, PluginError>,
    /// Creates the transform `id` from its JSON configuration.
    pub create_transform:
        extern "C" fn(id: RStr<'_>, config: RStr<'_>) -> RResult<FfiTransformBox, PluginError>,
    /// Creates the target `id` from its JSON configuration.
    #[sabi(last_prefix_field)]
    pub create_target:
        extern "C" fn(id: RStr<'_>, config: RStr<'_>) -> RResult<FfiTargetBox, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "fastlane_plugin";
    const NAME: &'static str = "fastlane plugin";
    // The version of the first release: abi_stable refuses a library older than the interface.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.1.0");
}
