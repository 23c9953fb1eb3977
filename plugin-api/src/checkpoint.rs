//! Resumable runs: what a source, a target and the host exchange so that a run killed halfway
//! continues where it stopped, with no row lost or written twice.
//!
//! The contract, in three parts:
//!
//! 1. **A source positions its batches.** After each batch, [`BatchStream::position`] says
//!    where the partition's read stands (the last key read, a row number…): a JSON value the
//!    host keeps as it is. [`Source::read_range`] reads the rows of a partition strictly after
//!    one position and up to another one, included: the part a killed run had not finished.
//! 2. **A target stores tags with its rows.** In a checkpointed run the host writes every batch
//!    with [`Writer::write_tagged`], giving a tag (opaque text: the partition, the batch's
//!    range of positions, its row count). The target keeps each tag in the same transaction as
//!    the batch's rows, or in a record written after them once they are on disk: a tag that
//!    [`Target::checkpoints`] returns always means "these rows are in the staging, once".
//!    Rows whose tag was not kept are discarded when the run is resumed.
//! 3. **The host plans and resumes.** When a run opens the target it passes
//!    [`WriteContext::checkpoint`]: the run's plan, which the target stores with its staging.
//!    A failed run ends with [`Target::suspend`] (keep the staging) instead of
//!    [`Target::abort`]. The next run asks [`Target::resumable_runs`], opens the one it resumes
//!    with `resume: true`, reads its tags back, and reads only the ranges they do not cover.
//!
//! A component says it implements the contract by declaring [`Capability::Resume`] in its
//! [`PluginDefinition`](crate::PluginDefinition); the host never calls these methods on one
//! that does not. A plugin built before the contract existed loads and runs as before, without
//! resume.
//!
//! [`BatchStream::position`]: crate::BatchStream::position
//! [`Source::read_range`]: crate::Source::read_range
//! [`Writer::write_tagged`]: crate::Writer::write_tagged
//! [`Target::checkpoints`]: crate::Target::checkpoints
//! [`Target::suspend`]: crate::Target::suspend
//! [`Target::abort`]: crate::Target::abort
//! [`Target::resumable_runs`]: crate::Target::resumable_runs
//! [`WriteContext::checkpoint`]: crate::WriteContext::checkpoint

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A part of one partition: the rows strictly after `after` and up to `upto`, included.
///
/// Both are positions the source gave through [`BatchStream::position`](crate::BatchStream::position);
/// `None` means the partition's own start or end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReadRange {
    /// Read rows after this position; from the partition's start when `None`.
    pub after: Option<Value>,
    /// Read rows up to this position, included; to the partition's end when `None`.
    pub upto: Option<Value>,
}

/// What a component can do beyond the basic contract, declared in its plugin's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// A source positions its batches and reads ranges; a target stores tags with its rows,
    /// keeps its staging when a run is suspended and reopens it.
    Resume,
    /// A source counts the rows of a range of a partition, for verification.
    VerifyCount,
    /// A source computes the [`Checksum`](crate::Checksum) of a partition; a target, of its
    /// staging.
    VerifyChecksum,
}

impl Capability {
    /// The name used in manifests and listings: `resume`, `verify_count`, `verify_checksum`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resume => "resume",
            Self::VerifyCount => "verify_count",
            Self::VerifyChecksum => "verify_checksum",
        }
    }

    /// Parses a name given by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resume" => Some(Self::Resume),
            "verify_count" => Some(Self::VerifyCount),
            "verify_checksum" => Some(Self::VerifyChecksum),
            _ => None,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host tells a target about checkpoints when a run opens it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpointing {
    /// The run's plan (the host's JSON): stored with the staging and given back by
    /// [`Target::resumable_runs`](crate::Target::resumable_runs).
    pub plan: Value,
    /// Whether the run continues the staging that the run of the same id left.
    pub resume: bool,
}

/// An unfinished run whose staging a target keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedRun {
    /// The run's id.
    pub run_id: String,
    /// The plan the run opened the target with.
    pub plan: Value,
}
