//! The frozen FFI surface: the root module every plugin exports and the trait objects it hands
//! out. Plugin authors do not use these types directly: they implement the safe traits
//! [`Source`](crate::Source), [`Transform`](crate::Transform) and [`Target`](crate::Target),
//! and [`export_plugin!`](crate::export_plugin) generates the rest.

// `sabi_trait` expands to impls inside a generated module; the lint is about that expansion.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

use crate::batch::FfiBatch;

pub mod first_release;
use crate::error::PluginError;
use crate::manifest::PluginManifest;

/// Severity of a log record forwarded from a plugin to the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors.
    Error = 1,
    /// Warnings.
    Warn = 2,
    /// Information.
    Info = 3,
    /// Debugging detail.
    Debug = 4,
    /// Very verbose detail.
    Trace = 5,
}

/// The host's log callback: level, target (module path inside the plugin) and message.
pub type LogCallback = extern "C" fn(level: LogLevel, target: RStr<'_>, message: RStr<'_>);

/// What the host gives a plugin when it initialises it.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostContext {
    /// The host's plugin ABI version.
    pub abi_version: u32,
    /// Receives the plugin's log records.
    pub log: extern "C" fn(level: LogLevel, target: RStr<'_>, message: RStr<'_>),
    /// The most verbose level the host wants to receive.
    pub max_level: LogLevel,
    /// How many threads the plugin may use for its own runtime (I/O pools and such).
    pub threads: u32,
}

/// FFI form of a [`Source`](crate::Source).
#[sabi_trait]
pub trait FfiSource: Send + Sync {
    /// Splits the data into partitions; `context` is a JSON [`ReadContext`](crate::ReadContext);
    /// each returned string is a JSON [`Partition`](crate::Partition).
    fn partitions(&self, context: RStr<'_>) -> RResult<RVec<RString>, PluginError>;

    /// Opens one partition (JSON) as a stream of batches.
    fn open(
        &self,
        partition: RStr<'_>,
    ) -> RResult<FfiBatchStream_TO<'static, RBox<()>>, PluginError>;

    /// Whether the source, as configured, can position its batches and read ranges. Added
    /// after the first release of ABI 1, like `open_range`: older plugins answer false.
    fn resumable(&self) -> bool {
        false
    }

    /// Counts the rows of one partition (JSON), for verification. Added after the first
    /// release of ABI 1: older plugins answer "unsupported".
    fn count(&self, partition: RStr<'_>) -> RResult<u64, PluginError> {
        let _ = partition;
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before verified runs",
        ))
    }

    /// Opens part of one partition (JSON): `range` is a JSON [`ReadRange`](crate::ReadRange).
    /// Added after the first release of ABI 1: older plugins answer "unsupported".
    fn open_range(
        &self,
        partition: RStr<'_>,
        range: RStr<'_>,
    ) -> RResult<FfiBatchStream_TO<'static, RBox<()>>, PluginError> {
        let _ = (partition, range);
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before resumable runs",
        ))
    }

    /// The [`Checksum`](crate::Checksum) of one partition (JSON), as JSON, for verification.
    /// Added after `open_range`: older plugins answer "unsupported".
    fn checksum(&self, partition: RStr<'_>) -> RResult<RString, PluginError> {
        let _ = partition;
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before checksum verification",
        ))
    }
}

/// FFI form of a [`BatchStream`](crate::BatchStream).
#[sabi_trait]
pub trait FfiBatchStream: Send {
    /// The next batch, or none at the end.
    fn next(&mut self) -> RResult<ROption<FfiBatch>, PluginError>;

    /// The position after the last batch (JSON), if the stream can say. Added after the first
    /// release of ABI 1: older plugins answer none.
    fn position(&self) -> ROption<RString> {
        ROption::RNone
    }
}

/// FFI form of a [`Transform`](crate::Transform).
#[sabi_trait]
pub trait FfiTransform: Send + Sync {
    /// Transforms one batch.
    fn apply(&self, batch: FfiBatch) -> RResult<FfiBatch, PluginError>;
}

/// FFI form of a [`Target`](crate::Target).
#[sabi_trait]
pub trait FfiTarget: Send + Sync {
    /// The largest replication key already stored (JSON), if any.
    fn get_offset(&self) -> RResult<ROption<RString>, PluginError>;

    /// Prepares a run; `context` is a JSON [`WriteContext`](crate::WriteContext).
    fn open(&mut self, context: RStr<'_>) -> RResult<(), PluginError>;

    /// A writer for target worker `index`.
    fn writer(&self, index: u32) -> RResult<FfiWriter_TO<'static, RBox<()>>, PluginError>;

    /// Makes everything the writers wrote visible, atomically where the destination allows.
    fn commit(&mut self) -> RResult<(), PluginError>;

    /// Discards everything written since `open`.
    fn abort(&mut self) -> RResult<(), PluginError>;

    /// The unfinished runs whose staging the target keeps: a JSON array of
    /// [`StagedRun`](crate::StagedRun). Added after the first release of ABI 1, like the
    /// methods below: older plugins answer "unsupported".
    fn resumable_runs(&self) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before resumable runs",
        ))
    }

    /// The tags kept with the rows of a resumed run's staging.
    fn checkpoints(&self) -> RResult<RVec<RString>, PluginError> {
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before resumable runs",
        ))
    }

    /// Counts the rows of the run's staging, for verification.
    fn staged_rows(&self) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before verified runs",
        ))
    }

    /// Ends a failed run keeping its staging for a resume.
    fn suspend(&mut self) -> RResult<(), PluginError> {
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before resumable runs",
        ))
    }

    /// The [`Checksum`](crate::Checksum) of the run's staging, as JSON, for verification.
    /// Added after `suspend`: older plugins answer "unsupported".
    fn staged_checksum(&self) -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before checksum verification",
        ))
    }
}

/// FFI form of a [`Writer`](crate::Writer).
#[sabi_trait]
pub trait FfiWriter: Send {
    /// Writes one batch.
    fn write(&mut self, batch: FfiBatch) -> RResult<(), PluginError>;

    /// Flushes and finishes this writer's output (still invisible until commit).
    fn close(&mut self) -> RResult<(), PluginError>;

    /// Writes one batch and keeps `tag` with its rows. Added after the first release of ABI 1,
    /// like `flush`: older plugins answer "unsupported".
    fn write_tagged(&mut self, batch: FfiBatch, tag: RStr<'_>) -> RResult<(), PluginError> {
        let _ = (batch, tag);
        RResult::RErr(PluginError::unsupported(
            "this plugin was built before resumable runs",
        ))
    }

    /// Makes what was written so far durable, with its tags.
    fn flush(&mut self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }
}

/// A boxed [`FfiSource`] trait object.
pub type FfiSourceBox = FfiSource_TO<'static, RBox<()>>;
/// A boxed [`FfiBatchStream`] trait object.
pub type FfiBatchStreamBox = FfiBatchStream_TO<'static, RBox<()>>;
/// A boxed [`FfiTransform`] trait object.
pub type FfiTransformBox = FfiTransform_TO<'static, RBox<()>>;
/// A boxed [`FfiTarget`] trait object.
pub type FfiTargetBox = FfiTarget_TO<'static, RBox<()>>;
/// A boxed [`FfiWriter`] trait object.
pub type FfiWriterBox = FfiWriter_TO<'static, RBox<()>>;

/// The root module: the table of entry points every plugin library exports.
///
/// Frozen within an ABI major version: growing it is a new [`ABI_VERSION`](crate::ABI_VERSION).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Initialises the plugin (logging, thread budget) and returns its manifest.
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
    /// What each component can do beyond the first contract of ABI 1: a JSON object from
    /// `"<kind>:<id>"` to a list of [`Capability`](crate::Capability) names. Added after the
    /// first release of ABI 1: absent from older plugins, whose components can do none of it.
    #[sabi(missing_field(option))]
    pub capabilities: extern "C" fn() -> RString,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "fastlane_plugin";
    const NAME: &'static str = "fastlane plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
