//! The crate's errors, in the words the host shows, and how each maps to the host's codes.

use fastlane_plugin_api::PluginError;

/// Errors of the PostgreSQL connectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, or refused the login.
    #[error("cannot connect to PostgreSQL at `{address}`: {reason}")]
    Connect {
        /// `host:port`.
        address: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// A statement failed.
    #[error("{what}: {}", describe(.source))]
    Query {
        /// What the statement was for.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A table or column that the configuration names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The configuration does not fit the table.
    #[error("{0}")]
    Config(String),
    /// A value cannot be converted without changing it.
    #[error("{0}")]
    Data(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The server's own message (with its detail and hint) rather than the driver's "db error".
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => e.to_string(),
    }
}

/// Whether a driver error means the connection is gone (worth reconnecting), rather than a
/// statement the server refused.
pub fn is_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // admin_shutdown, crash_shutdown, cannot_connect_now
        Some(db) => matches!(db.code().code(), "57P01" | "57P02" | "57P03"),
        // An I/O error, not an answer of the server.
        None => e.code().is_none(),
    }
}

impl From<Error> for PluginError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Connect { .. } => PluginError::connection(message),
            Error::Query { source, .. } if is_lost(&source) => PluginError::connection(message),
            Error::Query { .. } => PluginError::data(message),
            Error::NotFound(_) => PluginError::not_found(message),
            Error::Config(_) => PluginError::config(message),
            Error::Data(_) => PluginError::data(message),
        }
    }
}

/// Names what a failed statement was for.
pub trait Context<T> {
    /// `Error::Query` with `what`.
    fn what(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, tokio_postgres::Error> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Query {
            what: what(),
            source,
        })
    }
}
