//! Host-side wrappers that call a plugin's trait objects and convert batches, so that the
//! engine sees plugin components through the same safe traits as built-in ones.

use abi_stable::std_types::{ROption, RResult, RStr};
use arrow_array::RecordBatch;
use fastlane_plugin_api::abi::{
    FfiBatchStreamBox, FfiSourceBox, FfiTargetBox, FfiTransformBox, FfiWriterBox,
};
use fastlane_plugin_api::{
    BatchStream, Checksum, FfiBatch, Partition, PluginError, ReadContext, ReadRange, Result,
    Source, StagedRun, Target, Transform, WriteContext, Writer,
};
use serde_json::Value;

use super::load::LoadedPlugin;

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
        ok((self.module.create_source())(
            RStr::from_str(id),
            RStr::from_str(&config),
        ))
        .map(PluginSource)
    }

    /// Creates the transform `id` from its JSON configuration.
    pub fn create_transform(&self, id: &str, config: &Value) -> Result<PluginTransform> {
        let config = config.to_string();
        ok((self.module.create_transform())(
            RStr::from_str(id),
            RStr::from_str(&config),
        ))
        .map(PluginTransform)
    }

    /// Creates the target `id` from its JSON configuration.
    pub fn create_target(&self, id: &str, config: &Value) -> Result<PluginTarget> {
        let config = config.to_string();
        ok((self.module.create_target())(
            RStr::from_str(id),
            RStr::from_str(&config),
        ))
        .map(PluginTarget)
    }
}

/// A source living in a plugin.
pub struct PluginSource(FfiSourceBox);

impl Source for PluginSource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let context = to_json(context)?;
        let parts = ok(self.0.partitions(RStr::from_str(&context)))?;
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
        let stream = ok(self.0.open(RStr::from_str(&partition)))?;
        Ok(Box::new(PluginStream(stream)))
    }

    fn resumable(&self) -> bool {
        self.0.resumable()
    }

    fn count(&self, partition: &Partition) -> Result<u64> {
        let partition = to_json(partition)?;
        ok(self.0.count(RStr::from_str(&partition)))
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        let (partition, range) = (to_json(partition)?, to_json(range)?);
        let stream = ok(self
            .0
            .open_range(RStr::from_str(&partition), RStr::from_str(&range)))?;
        Ok(Box::new(PluginStream(stream)))
    }

    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        let partition = to_json(partition)?;
        let text = ok(self.0.checksum(RStr::from_str(&partition)))?;
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

/// A transform living in a plugin.
pub struct PluginTransform(FfiTransformBox);

impl Transform for PluginTransform {
    fn transform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        ok(self.0.apply(FfiBatch::export(batch)?))?.import()
    }
}

/// A target living in a plugin.
pub struct PluginTarget(FfiTargetBox);

impl Target for PluginTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        match ok(self.0.get_offset())? {
            ROption::RSome(s) => serde_json::from_str(s.as_str()).map(Some).map_err(|e| {
                PluginError::internal(format!("the plugin returned a malformed offset: {e}"))
            }),
            ROption::RNone => Ok(None),
        }
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        let context = to_json(context)?;
        ok(self.0.open(RStr::from_str(&context)))
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let index = u32::try_from(index).map_err(PluginError::internal)?;
        Ok(Box::new(PluginWriter(ok(self.0.writer(index))?)))
    }

    fn commit(&mut self) -> Result<()> {
        ok(self.0.commit())
    }

    fn abort(&mut self) -> Result<()> {
        ok(self.0.abort())
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        let text = ok(self.0.resumable_runs())?;
        serde_json::from_str(text.as_str()).map_err(|e| {
            PluginError::internal(format!("the plugin returned malformed staged runs: {e}"))
        })
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        Ok(ok(self.0.checkpoints())?
            .into_iter()
            .map(|s| s.into_string())
            .collect())
    }

    fn staged_rows(&self) -> Result<u64> {
        ok(self.0.staged_rows())
    }

    fn suspend(&mut self) -> Result<()> {
        ok(self.0.suspend())
    }

    fn staged_checksum(&self) -> Result<Checksum> {
        let text = ok(self.0.staged_checksum())?;
        parse_checksum(text.as_str())
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
