//! The safe traits a plugin implements, and the contexts the host passes them.

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;

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
}

/// A stream of record batches, pulled by the host.
pub trait BatchStream: Send {
    /// The next batch, or `None` at the end. Batches of 8k–64k rows keep overhead negligible.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
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
}

/// Writes the batches of one target worker.
pub trait Writer: Send {
    /// Writes one batch.
    fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Flushes and finishes this writer's output; it stays invisible until the target commits.
    fn close(&mut self) -> Result<()>;
}
