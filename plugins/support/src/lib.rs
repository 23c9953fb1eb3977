//! Helpers shared by fastlane's built-in plugins (a plain library, never loaded as a plugin).
//!
//! - [`keys`]: the largest replication key in a set of batches, as the JSON offset a target
//!   reports, and keeping the rows above an offset.

#![warn(missing_docs)]

pub mod keys;
