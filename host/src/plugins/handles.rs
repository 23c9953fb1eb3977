//! Host-side wrappers that call a plugin's trait objects and convert batches, so that the
//! engine sees plugin components through the same safe traits as built-in ones.

use abi_stable::std_types::{ROption, RResult, RStr};
use arrow_array::RecordBatch;
use fastlane_plugin_api::abi::{
    FfiBatchStreamBox, FfiSourceBox, FfiTargetBox, FfiTransformBox, FfiWriterBox, first_release,
};
use fastlane_plugin_api::{
    BatchStream, Checksum, FfiBatch, Partition, PluginError, ReadContext, ReadRange, Result,
    Source, StagedRun, Target, Transform, WriteContext, Writer,
};
use serde_json::Value;

use super::load::{LoadedPlugin, Module};

fn ok<T>(r: RResult<T, PluginError>) -> Result<T> {
    r.into_result()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(PluginError::internal)
}

impl LoadedPlugin {
    /// Creates the source `id` from its JSON configuration.
    pub fn create_source(&self, id: &str, config: &Value) -> Result<PluginSource> {
        let config = config.to_string();
        let (id, config) = (RStr::from_str(id), RStr::from_str(&config));
        match self.module {
            Module::Current(m) => ok((m.create_source())(id, config)).map(PluginSource::Current),
            Module::FirstRelease(m) => {
                ok((m.create_source())(id, config)).map(PluginSource::FirstRelease)
            }
        }
    }

    /// Creates the transform `id` from its JSON configuration.
    pub fn create_transform(&self, id: &str, config: &Value) -> Result<PluginTransform> {
        let config = config.to_string();
        let (id, config) = (RStr::from_str(id), RStr::from_str(&config));
        let create = match self.module {
            Module::Current(m) => m.create_transform(),
            Module::FirstRelease(m) => m.create_transform(),
        };
        ok(create(id, config)).map(PluginTransform)
    }

    /// Creates the target `id` from its JSON configuration.
    pub fn create_target(&self, id: &str, config: &Value) -> Result<PluginTarget> {
        let config = config.to_string();
        let (id, config) = (RStr::from_str(id), RStr::from_str(&config));
        match self.module {
            Module::Current(m) => ok((m.create_target())(id, config)).map(PluginTarget::Current),
            Module::FirstRelease(m) => {
                ok((m.create_target())(id, config)).map(PluginTarget::FirstRelease)
            }
        }
    }
}

/// What a plugin built against the first release of ABI 1 answers to a later method.
fn first_release(what: &str) -> PluginError {
    PluginError::unsupported(format!(
        "the plugin was built against the first release of plugin ABI 1, before {what}"
    ))
}

/// A source living in a plugin.
pub enum PluginSource {
    /// Built against the current layout of ABI 1.
    Current(FfiSourceBox),
    /// Built against ABI 1 as first released.
    FirstRelease(first_release::FfiSourceBox),
}

impl Source for PluginSource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let context = to_json(context)?;
        let context = RStr::from_str(&context);
        let parts = match self {
            Self::Current(s) => ok(s.partitions(context))?,
            Self::FirstRelease(s) => ok(s.partitions(context))?,
        };
        parts
            .iter()
            .map(|p| {
                serde_json::from_str(p.as_str()).map_err(|e| {
                    PluginError::internal(format!("the plugin returned a malformed partition: {e}"))
                })
            })
            .collect()
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let partition = to_json(partition)?;
        let partition = RStr::from_str(&partition);
        Ok(match self {
            Self::Current(s) => Box::new(PluginStream(ok(s.open(partition))?)),
            Self::FirstRelease(s) => Box::new(FirstReleaseStream(ok(s.open(partition))?)),
        })
    }

    fn resumable(&self) -> bool {
        match self {
            Self::Current(s) => s.resumable(),
            Self::FirstRelease(_) => false,
        }
    }

    fn count(&self, partition: &Partition) -> Result<u64> {
        let Self::Current(s) = self else {
            return Err(first_release("verified runs"));
        };
        let partition = to_json(partition)?;
        ok(s.count(RStr::from_str(&partition)))
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        let Self::Current(s) = self else {
            return Err(first_release("resumable runs"));
        };
        let (partition, range) = (to_json(partition)?, to_json(range)?);
        let stream = ok(s.open_range(RStr::from_str(&partition), RStr::from_str(&range)))?;
        Ok(Box::new(PluginStream(stream)))
    }

    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        let Self::Current(s) = self else {
            return Err(first_release("checksum verification"));
        };
        let partition = to_json(partition)?;
        let text = ok(s.checksum(RStr::from_str(&partition)))?;
        parse_checksum(text.as_str())
    }
}

/// A checksum a plugin returned, as JSON.
fn parse_checksum(text: &str) -> Result<Checksum> {
    serde_json::from_str(text).map_err(|e| {
        PluginError::internal(format!("the plugin returned a malformed checksum: {e}"))
    })
}

struct PluginStream(FfiBatchStreamBox);

impl BatchStream for PluginStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match ok(self.0.next())? {
            ROption::RSome(b) => b.import().map(Some),
            ROption::RNone => Ok(None),
        }
    }

    fn position(&self) -> Option<Value> {
        match self.0.position() {
            ROption::RSome(s) => serde_json::from_str(s.as_str()).ok(),
            ROption::RNone => None,
        }
    }
}

/// A stream of a plugin built against ABI 1 as first released: batches without positions.
struct FirstReleaseStream(first_release::FfiBatchStreamBox);

impl BatchStream for FirstReleaseStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match ok(self.0.next())? {
            ROption::RSome(b) => b.import().map(Some),
            ROption::RNone => Ok(None),
        }
    }
}

/// A transform living in a plugin.
pub struct PluginTransform(FfiTransformBox);

impl Transform for PluginTransform {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        ok(self.0.apply(FfiBatch::export(batch)?))?.import()
    }
}

/// A target living in a plugin.
pub enum PluginTarget {
    /// Built against the current layout of ABI 1.
    Current(FfiTargetBox),
    /// Built against ABI 1 as first released.
    FirstRelease(first_release::FfiTargetBox),
}

impl PluginTarget {
    fn current(&self, what: &str) -> Result<&FfiTargetBox> {
        match self {
            Self::Current(t) => Ok(t),
            Self::FirstRelease(_) => Err(first_release(what)),
        }
    }
}

impl Target for PluginTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        let offset = match self {
            Self::Current(t) => ok(t.get_offset())?,
            Self::FirstRelease(t) => ok(t.get_offset())?,
        };
        match offset {
            ROption::RSome(s) => serde_json::from_str(s.as_str()).map(Some).map_err(|e| {
                PluginError::internal(format!("the plugin returned a malformed offset: {e}"))
            }),
            ROption::RNone => Ok(None),
        }
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let context = to_json(context)?;
        let context = RStr::from_str(&context);
        match self {
            Self::Current(t) => ok(t.open(context)),
            Self::FirstRelease(t) => ok(t.open(context)),
        }
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let index = u32::try_from(index).map_err(PluginError::internal)?;
        Ok(match self {
            Self::Current(t) => Box::new(PluginWriter(ok(t.writer(index))?)),
            Self::FirstRelease(t) => Box::new(FirstReleaseWriter(ok(t.writer(index))?)),
        })
    }

    fn commit(&mut self) -> Result<()> {
        match self {
            Self::Current(t) => ok(t.commit()),
            Self::FirstRelease(t) => ok(t.commit()),
        }
    }

    fn abort(&mut self) -> Result<()> {
        match self {
            Self::Current(t) => ok(t.abort()),
            Self::FirstRelease(t) => ok(t.abort()),
        }
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        let text = ok(self.current("resumable runs")?.resumable_runs())?;
        serde_json::from_str(text.as_str()).map_err(|e| {
            PluginError::internal(format!("the plugin returned malformed staged runs: {e}"))
        })
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        Ok(ok(self.current("resumable runs")?.checkpoints())?
            .into_iter()
            .map(|s| s.into_string())
            .collect())
    }

    fn staged_rows(&self) -> Result<u64> {
        ok(self.current("verified runs")?.staged_rows())
    }

    fn suspend(&mut self) -> Result<()> {
        match self {
            Self::Current(t) => ok(t.suspend()),
            Self::FirstRelease(_) => Err(first_release("resumable runs")),
        }
    }

    fn staged_checksum(&self) -> Result<Checksum> {
        let text = ok(self.current("checksum verification")?.staged_checksum())?;
        parse_checksum(text.as_str())
    }
}

/// A writer of a plugin built against ABI 1 as first released: untagged writes.
struct FirstReleaseWriter(first_release::FfiWriterBox);

impl Writer for FirstReleaseWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        ok(self.0.write(FfiBatch::export(batch)?))
    }

    fn close(&mut self) -> Result<()> {
        ok(self.0.close())
    }

    fn write_tagged(&mut self, _batch: RecordBatch, _tag: &str) -> Result<()> {
        Err(first_release("resumable runs"))
    }
}

struct PluginWriter(FfiWriterBox);

impl Writer for PluginWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        ok(self.0.write(FfiBatch::export(batch)?))
    }

    fn close(&mut self) -> Result<()> {
        ok(self.0.close())
    }

    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        ok(self
            .0
            .write_tagged(FfiBatch::export(batch)?, RStr::from_str(tag)))
    }

    fn flush(&mut self) -> Result<()> {
        ok(self.0.flush())
    }
}
