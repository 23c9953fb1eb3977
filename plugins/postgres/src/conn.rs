//! Connections: the plugin's tokio runtime, connecting, and quoting names and values for SQL.

use fastlane_plugin_support::runtime::PluginRuntime;
use tokio_postgres::{Client, NoTls};

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
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| Error::Connect {
        address: address(config),
        reason: match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        },
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("a PostgreSQL connection ended: {e}");
        }
    });
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
