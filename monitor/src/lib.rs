//! The fastlane monitoring service and the run reporter.
//!
//! - [`store`]: pipelines, runs, samples and log lines in SQLite (the embedded default),
//!   PostgreSQL or MySQL/MariaDB, through sqlx, migrated at open.
//! - [`server`]: `fastlane serve`, the REST API (the original fastlane's resources and more),
//!   `/metrics`, `/healthz`, the OpenAPI document and the web UI, with warp.
//! - [`reporter`]: what a run uses to report itself every few seconds, to a service over HTTP
//!   or straight into a local store, buffered and retried so that the run never waits on it.
//! - [`model`]: the types they exchange.

pub mod model;
pub mod reporter;
pub mod server;
pub mod store;
mod strict;
pub mod time;

pub use store::Store;

/// An error and its causes, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
