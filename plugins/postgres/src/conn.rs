//! Connections: the plugin's tokio runtime, connecting, and quoting names and values for SQL.

use fastlane_plugin_support::runtime::PluginRuntime;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Context, Error, Result};

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 16).
pub static RUNTIME: PluginRuntime = PluginRuntime::new("postgres", 16);

/// Quotes an identifier with double quotes.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// A string literal (the server's `standard_conforming_strings`, checked at connect, keeps
/// backslashes as they are).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Where and how to connect: the driver's settings and the TLS connector (`None`: no TLS).
#[derive(Clone)]
pub struct Connection {
    /// The driver's settings.
    pub config: tokio_postgres::Config,
    /// The TLS connector, for every `sslmode` but `disable`.
    pub tls: Option<MakeRustlsConnect>,
}

/// Where `config` connects, for messages (never the password).
pub fn address(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Opens one connection (its I/O task runs on the plugin's runtime), in UTC, and checks that
/// the server speaks UTF-8 with standard strings.
pub async fn connect(connection: &Connection) -> Result<Client> {
    let config = &connection.config;
    let failed = |e: tokio_postgres::Error| Error::Connect {
        address: address(config),
        reason: match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => {
                // The driver's message for a TLS failure is only "error performing TLS
                // handshake": the cause (an unchecked certificate…) follows in its source.
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                text
            }
        },
    };
    let client = match &connection.tls {
        None => {
            let (client, io) = config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = io.await {
                    log::debug!("a PostgreSQL connection ended: {e}");
                }
            });
            client
        }
        Some(tls) => {
            let (client, io) = config.connect(tls.clone()).await.map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = io.await {
                    log::debug!("a PostgreSQL connection ended: {e}");
                }
            });
            client
        }
    };
    client
        .batch_execute("SET TIME ZONE 'UTC'")
        .await
        .what(|| "setting the session's time zone".into())?;
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .what(|| "reading the server's encoding".into())?
        .get(0);
    if !matches!(encoding.as_str(), "UTF8" | "SQL_ASCII") {
        return Err(Error::Config(format!(
            "the database's encoding is {encoding}: fastlane reads UTF8 databases (binary COPY \
             sends text in the database's encoding)"
        )));
    }
    let standard: String = client
        .query_one("SHOW standard_conforming_strings", &[])
        .await
        .what(|| "reading standard_conforming_strings".into())?
        .get(0);
    if standard != "on" {
        return Err(Error::Config(
            "the server has standard_conforming_strings off; fastlane needs it on".to_owned(),
        ));
    }
    Ok(client)
}
