//! Connections: the plugin's tokio runtime, connecting with a timeout, telling a lost
//! connection from a failed statement, reconnecting with backoff, and the crate's errors.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fastlane_plugin_api::PluginError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::config::Connection;

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

/// The runtime every connection of this plugin runs on, sized by the host.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(fastlane_plugin_api::host_threads().clamp(1, 16))
            .thread_name("fastlane-mysql")
            .enable_all()
            .build()
            .expect("the tokio runtime of the mysql plugin could not start")
    })
}

/// Quotes an identifier with backticks.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`, quoted.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", ident(db), ident(table))
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

/// Opens connections to one server.
#[derive(Debug, Clone)]
pub struct Connector {
    settings: Connection,
}

impl Connector {
    /// A connector for `settings`.
    pub fn new(settings: Connection) -> Self {
        Self { settings }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// The reconnect budget.
    pub fn retry_budget(&self) -> Duration {
        Duration::from_secs(self.settings.retry_timeout_secs)
    }

    fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.settings.host.clone())
            .tcp_port(self.settings.port)
            .user(Some(self.settings.username.clone()))
            .pass(self.settings.password.clone())
            .db_name(Some(self.settings.db.clone()))
            .tcp_nodelay(true)
            .prefer_socket(self.settings.prefer_socket)
            .stmt_cache_size(64)
            .init(vec![
                "SET NAMES utf8mb4 COLLATE utf8mb4_bin".to_owned(),
                "SET time_zone = '+00:00'".to_owned(),
            ])
    }

    /// Opens one connection, once: wrong credentials or an unknown database are errors at once.
    pub async fn connect(&self) -> Result<Conn> {
        let timeout = Duration::from_secs(self.settings.connect_timeout_secs.max(1));
        let opened = tokio::time::timeout(timeout, Conn::new(self.opts())).await;
        let reason = match opened {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(mysql_async::Error::Server(s))) => match s.code {
                1045 => format!(
                    "access denied for user `{}` (check `username` and `password`)",
                    self.settings.username
                ),
                1044 | 1049 => format!(
                    "database `{}` does not exist or is not accessible to `{}`",
                    self.settings.db, self.settings.username
                ),
                _ => format!("ERROR {}: {}", s.code, s.message),
            },
            Ok(Err(e)) if is_lost(&e) => format!("lost: {e}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("lost: no answer within {} s", timeout.as_secs()),
        };
        Err(Error::Connect {
            address: self.address(),
            reason,
        })
    }

    /// Opens one connection, retrying a lost or refused connection with backoff until the
    /// retry budget (counted from `since`) is spent.
    pub async fn reconnect(&self, since: Instant, last: &str) -> Result<Conn> {
        let mut delay = Duration::from_millis(100);
        let mut last = last.to_owned();
        loop {
            if since.elapsed() >= self.retry_budget() {
                return Err(Error::RetriesExhausted {
                    address: self.address(),
                    secs: self.settings.retry_timeout_secs,
                    last,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            match self.connect().await {
                Ok(conn) => return Ok(conn),
                Err(e @ Error::Connect { .. }) if is_lost_error(&e) => last = e.to_string(),
                Err(e) => return Err(e),
            }
        }
    }
}

/// One connection that reconnects itself: [`Session::run`] retries an operation that failed
/// because the connection was lost, on a new connection, within the retry budget.
pub struct Session {
    connector: Connector,
    conn: Option<Conn>,
}

impl Session {
    /// Connects (once; errors at once).
    pub async fn open(connector: Connector) -> Result<Self> {
        let conn = connector.connect().await?;
        Ok(Self {
            connector,
            conn: Some(conn),
        })
    }

    /// The current connection, reconnecting if it was dropped.
    pub async fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(self.connector.reconnect(Instant::now(), "").await?);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// Forgets a broken connection; the next [`Session::conn`] opens a new one.
    pub fn drop_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing a broken socket cannot fail in a way that matters.
            drop(conn);
        }
    }

    /// Runs `op` on the connection; when it fails because the connection was lost, reconnects
    /// with backoff and runs it again, until the retry budget is spent.
    pub async fn run<T, F>(&mut self, op: F) -> Result<T>
    where
        F: for<'c> FnMut(
            &'c mut Conn,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>,
    {
        self.run_retrying(true, op).await
    }

    /// Like [`Session::run`]; with `retry` false a lost connection is an error at once (for
    /// statements that cannot safely be sent twice).
    pub async fn run_retrying<T, F>(&mut self, retry: bool, mut op: F) -> Result<T>
    where
        F: for<'c> FnMut(
            &'c mut Conn,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>,
    {
        let mut since: Option<Instant> = None;
        loop {
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => {
                    let started = *since.get_or_insert_with(Instant::now);
                    let conn = self.connector.reconnect(started, "reconnecting").await?;
                    self.conn.insert(conn)
                }
            };
            match op(conn).await {
                Ok(v) => return Ok(v),
                Err(e) if is_lost_error(&e) && !retry => {
                    self.drop_connection();
                    return Err(e);
                }
                Err(e) if is_lost_error(&e) => {
                    let started = *since.get_or_insert_with(Instant::now);
                    log::warn!(
                        "lost the connection to `{}` ({e}); reconnecting",
                        self.connector.address()
                    );
                    self.drop_connection();
                    if started.elapsed() >= self.connector.retry_budget() {
                        return Err(Error::RetriesExhausted {
                            address: self.connector.address(),
                            secs: self.connector.retry_budget().as_secs(),
                            last: e.to_string(),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects for a worker in the middle of a run: a lost or refused connection is retried
    /// with backoff within the retry budget, like any later reconnect.
    pub async fn open_retrying(connector: Connector) -> Result<Self> {
        let conn = match connector.connect().await {
            Ok(conn) => conn,
            Err(e) if is_lost_error(&e) => {
                connector.reconnect(Instant::now(), &e.to_string()).await?
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            connector,
            conn: Some(conn),
        })
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
    }

    /// The first row of a query with bound parameters, retried like [`Session::run`].
    pub async fn first<T>(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
        what: &str,
    ) -> Result<Option<T>>
    where
        T: mysql_async::prelude::FromRow + Send + 'static,
    {
        self.run(|conn| {
            let (sql, params, what) = (sql.to_owned(), params.clone(), what.to_owned());
            Box::pin(async move {
                conn.exec_first(sql, mysql_async::Params::Positional(params))
                    .await
                    .what(|| what)
            })
        })
        .await
    }

    /// Runs a statement that returns nothing.
    pub async fn execute(&mut self, sql: String, what: &str) -> Result<()> {
        self.run(|conn| {
            let sql = sql.clone();
            let what = what.to_owned();
            Box::pin(async move { conn.query_drop(sql).await.what(|| what) })
        })
        .await
    }
}
