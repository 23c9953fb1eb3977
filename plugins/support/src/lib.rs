//! The toolkit of fastlane's built-in plugins (a plain library, never loaded as a plugin):
//! what every plugin needs besides the contract in `fastlane-plugin-api`.
//!
//! - [`runtime`]: the plugin library's tokio runtime, and the bridge that runs a source, target
//!   or writer written as async code for the host's blocking calls.
//! - [`keys`]: the largest replication key in a set of batches, as the JSON offset a target
//!   reports, and keeping the rows above an offset.
//! - [`positions`]: row-number positions of resumable sources.
//! - [`schema`]: `on_schema_change`, what a table target does with the data's new columns.

#![warn(missing_docs)]

pub mod keys;
pub mod positions;
pub mod runtime;
pub mod schema;
