//! The `s3` target and what it is made of.

mod checkpoint;
mod config;
mod glue;
mod manifest;
mod target;
mod upload;

pub use config::{Compression, Format, GlueConfig, S3TargetConfig};
pub use manifest::{MANIFEST_FOLDER, Manifest};
pub use target::S3Target;
pub use upload::ObjectInfo;
