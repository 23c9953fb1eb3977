//! The `s3` target and what it is made of.

mod checkpoint;
mod config;
mod glue;
mod manifest;
mod target;
mod upload;

pub use config::{Compression, Format, GlueConfig, OnSchemaChange, S3TargetConfig};
pub(crate) use manifest::block_on;
pub use manifest::{MANIFEST_FOLDER, Manifest};
pub use target::S3Target;
pub use upload::ObjectInfo;
