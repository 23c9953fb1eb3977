//! Connections: the plugin's tokio runtime, connecting with a timeout and reconnecting with
//! backoff.

use std::time::{Duration, Instant};

use fastlane_plugin_support::runtime::PluginRuntime;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::config::Connection;
use crate::error::{Context, Error, Result, is_lost, is_lost_error};

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 16).
pub static RUNTIME: PluginRuntime = PluginRuntime::new("mysql", 16);

/// Quotes an identifier with backticks.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`, quoted.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", ident(db), ident(table))
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
