//! The `mongodb` plugin of fastlane: the `mongodb` source.
//!
//! Reads a collection with `find` (filter, projection) or a simple aggregation pipeline,
//! sorted on the replication key (`_id` by default) and read through one cursor in batches.
//! Documents are converted from raw BSON straight into Arrow columns: ObjectId as text,
//! Decimal128 as an exact decimal, dates as UTC timestamps, embedded documents and arrays as
//! Arrow structs and lists (or JSON text). The columns come from `schema` or from a sample of
//! documents; a document that does not fit fails the run or goes to a dead-letter file.
//! Incremental runs continue after the target's offset; a read that loses its connection
//! continues after the last document it read.
//!
//! See `README.md` beside this crate for every option.

#![warn(missing_docs)]

pub mod config;
pub mod convert;
pub mod kinds;
mod source;

pub use config::MongoSourceConfig;
pub use source::MongoSource;

fastlane_plugin_api::export_plugin!(
    fastlane_plugin_api::PluginDefinition::new("mongodb", env!("CARGO_PKG_VERSION"))
        .description("MongoDB: collections read in key order, BSON converted to Arrow.")
        .source(
            "mongodb",
            "Reads a MongoDB collection (find or aggregate) in key order, incrementally.",
            MongoSource::new,
        )
);
