//! The safe traits a plugin implements, and the contexts the host passes them.

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{Checkpointing, ReadRange, StagedRun};
use crate::checksum::Checksum;
use crate::error::{PluginError, Result};

/// How a pipeline replicates: the whole table every run, or only what is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicationMode {
    /// Copy everything; the target replaces its previous contents at commit.
    #[default]
    FullTable,
    /// Copy only rows whose replication key is above the target's offset; the target appends.
    Incremental,
}

impl ReplicationMode {
    /// The configuration spelling: `FULL_TABLE` or `INCREMENTAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullTable => "FULL_TABLE",
            Self::Incremental => "INCREMENTAL",
        }
    }
}

impl std::fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host tells a source before it splits its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReadContext {
    /// The replication mode of the run.
    pub mode: ReplicationMode,
    /// In incremental mode, the largest key already in the target: read strictly after it.
    pub start_offset: Option<Value>,
    /// How many partitions the host can read in parallel (a hint).
    pub parallelism: usize,
}

/// One independently readable part of a source's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// Position of the partition, from 0.
    pub index: usize,
    /// Anything the source needs to read it again (a file name, a key range…).
    pub spec: Value,
}

/// What the host tells a target when a run starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WriteContext {
    /// The replication mode of the run.
    pub mode: ReplicationMode,
    /// A unique id for the run, usable in object or file names.
    pub run_id: String,
    /// How many writers the host will ask for.
    pub concurrency: usize,
    /// Set when the run is checkpointed (the target declared
    /// [`Capability::Resume`](crate::Capability::Resume)): the plan to store with the staging,
    /// and whether this run continues the staging of `run_id`.
    #[serde(default)]
    pub checkpoint: Option<Checkpointing>,
}

/// Reads data as record batches.
///
/// `partitions` is called once; then each partition is read with `read`, possibly in parallel
/// from several threads, hence `Sync`.
pub trait Source: Send + Sync + 'static {
    /// Splits the data into partitions. The default is a single partition with a null spec.
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let _ = context;
        Ok(vec![Partition {
            index: 0,
            spec: Value::Null,
        }])
    }

    /// Opens one partition as a stream of batches.
    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>>;

    /// Whether this source, as configured, positions its batches and reads ranges (a table
    /// read by key can, a one-pass query may not). Asked only of sources declaring
    /// [`Capability::Resume`](crate::Capability::Resume); a run whose source answers false is
    /// not checkpointed.
    fn resumable(&self) -> bool {
        false
    }

    /// How many rows `partition` holds now, counted by the source's system (`SELECT COUNT(*)`
    /// over the partition's range, a file's row count…), for verification. Sources declaring
    /// [`Capability::VerifyCount`](crate::Capability::VerifyCount) implement it.
    fn count(&self, partition: &Partition) -> Result<u64> {
        let _ = partition;
        Err(PluginError::unsupported(
            "this source cannot count its rows",
        ))
    }

    /// Opens a part of one partition: the rows after `range.after` and up to `range.upto`,
    /// positions that this source's streams gave. Sources declaring
    /// [`Capability::Resume`](crate::Capability::Resume) implement it, and give a
    /// [`BatchStream::position`] after every batch.
    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        let _ = (partition, range);
        Err(PluginError::unsupported(
            "this source cannot read part of a partition",
        ))
    }

    /// The [`Checksum`] of `partition`'s rows, computed by the source's system where it can
    /// (in SQL, following the encoding of [`checksum`](crate::checksum)), for verification.
    /// Sources declaring [`Capability::VerifyChecksum`](crate::Capability::VerifyChecksum)
    /// implement it.
    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        let _ = partition;
        Err(PluginError::unsupported(
            "this source cannot compute checksums",
        ))
    }
}

/// A stream of record batches, pulled by the host.
pub trait BatchStream: Send {
    /// The next batch, or `None` at the end. Batches of 8k–64k rows keep overhead negligible.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;

    /// Where the read stands after the last batch [`next_batch`](Self::next_batch) returned:
    /// reading the partition again with [`ReadRange::after`] set to it continues with the
    /// next row. `None` when the stream cannot say (the default).
    fn position(&self) -> Option<Value> {
        None
    }
}

/// A [`BatchStream`] over any iterator of batches.
pub struct IterStream<I>(pub I);

impl<I> BatchStream for IterStream<I>
where
    I: Iterator<Item = Result<RecordBatch>> + Send,
{
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.0.next().transpose()
    }
}

/// Turns record batches into record batches (Arrow only; DataFrame transforms run in the host).
pub trait Transform: Send + Sync + 'static {
    /// Transforms one batch. Called from several threads at once.
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch>;
}

/// Writes record batches to a destination, all-or-nothing per run.
///
/// The host calls `get_offset` (incremental runs), then `open`, then `writer` once per target
/// worker; the workers write and close their writers in parallel; finally the host calls
/// `commit` when every stage succeeded, or `abort` when anything failed.
pub trait Target: Send + Sync + 'static {
    /// The largest replication key already stored, for incremental runs. Default: none.
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(None)
    }

    /// Prepares a run.
    fn open(&mut self, context: &WriteContext) -> Result<()>;

    /// A writer for target worker `index` (from 0 to `concurrency - 1`).
    fn writer(&self, index: usize) -> Result<Box<dyn Writer>>;

    /// Publishes everything the writers wrote.
    fn commit(&mut self) -> Result<()>;

    /// Discards everything written since `open`, leaving the destination as it was.
    fn abort(&mut self) -> Result<()>;

    /// The unfinished checkpointed runs whose staging this destination keeps, newest first.
    /// Called before `open`.
    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        Err(PluginError::unsupported("this target cannot resume a run"))
    }

    /// After an `open` that resumes a run: the tags kept with the rows of its staging. Rows
    /// written without a kept tag are discarded by the time this returns.
    fn checkpoints(&self) -> Result<Vec<String>> {
        Err(PluginError::unsupported("this target cannot resume a run"))
    }

    /// How many rows the run's staging holds, counted by the destination itself (after the
    /// writers closed, or when a resumed run opens it), for verification. Targets declaring
    /// [`Capability::VerifyCount`](crate::Capability::VerifyCount) implement it.
    fn staged_rows(&self) -> Result<u64> {
        Err(PluginError::unsupported(
            "this target cannot count its staged rows",
        ))
    }

    /// Ends a failed checkpointed run keeping its staging, so that a later run can resume it;
    /// the destination itself stays as it was.
    fn suspend(&mut self) -> Result<()> {
        Err(PluginError::unsupported(
            "this target cannot keep a run's staging",
        ))
    }

    /// The [`Checksum`] of the run's staging (after the writers closed, or when a resumed run
    /// opens it), over the columns the run writes, for verification. Targets declaring
    /// [`Capability::VerifyChecksum`](crate::Capability::VerifyChecksum) implement it.
    fn staged_checksum(&self) -> Result<Checksum> {
        Err(PluginError::unsupported(
            "this target cannot compute checksums of its staging",
        ))
    }
}

/// Writes the batches of one target worker.
pub trait Writer: Send {
    /// Writes one batch.
    fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Flushes and finishes this writer's output; it stays invisible until the target commits.
    fn close(&mut self) -> Result<()>;

    /// Writes one batch (possibly without rows) and keeps `tag` with its rows: the tag is
    /// stored in the same transaction, or recorded once the rows are on disk, so that
    /// [`Target::checkpoints`] returns it only for rows that are there. Used in checkpointed
    /// runs instead of [`write`](Self::write).
    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        let _ = (batch, tag);
        Err(PluginError::unsupported(
            "this target cannot keep checkpoints",
        ))
    }

    /// Makes what was written so far durable, with its tags. The host calls it every
    /// checkpoint interval; the default does nothing (for writers whose every write is durable).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
