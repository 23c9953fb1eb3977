//! The crate's errors: what went wrong, in the words the host shows, how each maps to the
//! host's error codes, and telling a lost connection (worth reconnecting) from a failed
//! statement.

use fastlane_plugin_api::PluginError;

/// Errors of the MySQL connectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, or refused the login.
    #[error("cannot connect to MySQL at `{address}`: {reason}")]
    Connect {
        /// `host:port`.
        address: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// The connection was lost and could not be re-established in time.
    #[error(
        "lost the connection to MySQL at `{address}` and could not resume within {secs} s \
         (`retry_timeout_secs`): {last}"
    )]
    RetriesExhausted {
        /// `host:port`.
        address: String,
        /// The retry budget.
        secs: u64,
        /// The last error.
        last: String,
    },
    /// A statement failed.
    #[error("{what}: {source}")]
    Query {
        /// What the statement was for.
        what: String,
        /// The driver's error.
        source: mysql_async::Error,
    },
    /// A table, database or column that the configuration names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The configuration does not fit the table.
    #[error("{0}")]
    Config(String),
    /// A value cannot be converted.
    #[error("{0}")]
    Data(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for PluginError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Connect { .. } | Error::RetriesExhausted { .. } => {
                PluginError::connection(message)
            }
            Error::Query { source, .. } if is_lost(&source) => PluginError::connection(message),
            Error::Query { .. } => PluginError::io(message),
            Error::NotFound(_) => PluginError::not_found(message),
            Error::Config(_) => PluginError::config(message),
            Error::Data(_) => PluginError::data(message),
        }
    }
}

/// Adds what a statement was for to a driver error.
pub trait Context<T> {
    /// Wraps the error as [`Error::Query`].
    fn what(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, mysql_async::Error> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Query {
            what: what(),
            source,
        })
    }
}

/// Server error codes that mean the connection is gone (the server is shutting down, or the
/// connection was killed), as opposed to a failed statement.
const LOST_CODES: &[u16] = &[
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1317, // ER_QUERY_INTERRUPTED (the connection was killed)
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    4031, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24+: an idle connection was closed)
];

/// Whether an error means the connection was lost, so that reconnecting can help.
pub fn is_lost(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected
        ),
        mysql_async::Error::Server(s) => LOST_CODES.contains(&s.code),
        _ => false,
    }
}

/// Whether an [`Error`] means the connection was lost.
pub fn is_lost_error(error: &Error) -> bool {
    match error {
        Error::Query { source, .. } => is_lost(source),
        Error::Connect { reason, .. } => reason.starts_with("lost:"),
        _ => false,
    }
}
