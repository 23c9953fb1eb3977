//! Plugin-side shims: the safe traits behind the FFI trait objects, every call guarded so that
//! a panic becomes a [`PluginError`] instead of unwinding across the boundary.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};

use crate::abi::{
    FfiBatchStream, FfiBatchStream_TO, FfiBatchStreamBox, FfiSource, FfiTarget, FfiTransform,
    FfiWriter, FfiWriter_TO, FfiWriterBox,
};
use crate::batch::FfiBatch;
use crate::component::{
    BatchStream, Partition, ReadContext, Source, Target, Transform, WriteContext, Writer,
};
use crate::error::{ErrorCode, PluginError, Result};

thread_local! {
    /// Location of the last panic on this thread, recorded by the plugin's panic hook.
    pub(crate) static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// Runs `f`, turning an `Err` or a panic into an `RResult` error.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e),
        Err(payload) => {
            let location = LAST_PANIC_LOCATION
                .with(|l| l.borrow_mut().take())
                .map(|l| format!(" (at {l})"))
                .unwrap_or_default();
            RResult::RErr(PluginError::new(
                ErrorCode::PANIC,
                format!("panicked: {}{location}", panic_message(payload.as_ref())),
            ))
        }
    }
}

fn json_err(e: serde_json::Error) -> PluginError {
    PluginError::internal(format!("malformed message from the host: {e}"))
}

pub(crate) struct SourceAdapter(pub(crate) Box<dyn Source>);

impl FfiSource for SourceAdapter {
    fn partitions(&self, context: RStr<'_>) -> RResult<RVec<RString>, PluginError> {
        guard(|| {
            let context: ReadContext = serde_json::from_str(context.as_str()).map_err(json_err)?;
            self.0
                .partitions(&context)?
                .iter()
                .map(|p| {
                    serde_json::to_string(p)
                        .map(RString::from)
                        .map_err(PluginError::internal)
                })
                .collect()
        })
    }

    fn open(&self, partition: RStr<'_>) -> RResult<FfiBatchStreamBox, PluginError> {
        guard(|| {
            let partition: Partition =
                serde_json::from_str(partition.as_str()).map_err(json_err)?;
            let stream = self.0.read(&partition)?;
            Ok(FfiBatchStream_TO::from_value(
                StreamAdapter(stream),
                TD_Opaque,
            ))
        })
    }
}

struct StreamAdapter(Box<dyn BatchStream>);

impl FfiBatchStream for StreamAdapter {
    fn next(&mut self) -> RResult<ROption<FfiBatch>, PluginError> {
        guard(|| match self.0.next_batch()? {
            Some(batch) => Ok(ROption::RSome(FfiBatch::export(batch)?)),
            None => Ok(ROption::RNone),
        })
    }
}

pub(crate) struct TransformAdapter(pub(crate) Box<dyn Transform>);

impl FfiTransform for TransformAdapter {
    fn apply(&self, batch: FfiBatch) -> RResult<FfiBatch, PluginError> {
        guard(|| FfiBatch::export(self.0.transform(batch.import()?)?))
    }
}

pub(crate) struct TargetAdapter(pub(crate) Box<dyn Target>);

impl FfiTarget for TargetAdapter {
    fn get_offset(&self) -> RResult<ROption<RString>, PluginError> {
        guard(|| {
            Ok(match self.0.get_offset()? {
                Some(v) => ROption::RSome(RString::from(v.to_string())),
                None => ROption::RNone,
            })
        })
    }

    fn open(&mut self, context: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| {
            let context: WriteContext = serde_json::from_str(context.as_str()).map_err(json_err)?;
            self.0.open(&context)
        })
    }

    fn writer(&self, index: u32) -> RResult<FfiWriterBox, PluginError> {
        guard(|| {
            let writer = self.0.writer(index as usize)?;
            Ok(FfiWriter_TO::from_value(WriterAdapter(writer), TD_Opaque))
        })
    }

    fn commit(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.commit())
    }

    fn abort(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.abort())
    }
}

struct WriterAdapter(Box<dyn Writer>);

impl FfiWriter for WriterAdapter {
    fn write(&mut self, batch: FfiBatch) -> RResult<(), PluginError> {
        guard(|| self.0.write(batch.import()?))
    }

    fn close(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.close())
    }
}
