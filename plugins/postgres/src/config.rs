//! The `postgres` source's configuration: where the server is, what to read, and how values
//! without an exact Arrow form are treated.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::conn::Connection;

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    5432
}

fn default_username() -> String {
    "postgres".to_owned()
}

fn default_schema() -> String {
    "public".to_owned()
}

fn default_batch_size() -> usize {
    65_536
}

fn default_partitions() -> usize {
    1
}

fn default_connect_timeout() -> u64 {
    10
}

fn default_retry_secs() -> u64 {
    60
}

fn default_application_name() -> String {
    "fastlane".to_owned()
}

/// Whether connections use TLS and how the server's certificate is checked, as libpq's
/// `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (its certificate unchecked), else none.
    #[default]
    Prefer,
    /// TLS; the certificate is unchecked unless `sslrootcert` is given (then as `verify-ca`).
    Require,
    /// TLS, the certificate's chain checked against `sslrootcert` (or the system's roots).
    VerifyCa,
    /// TLS, the chain and the host name both checked.
    VerifyFull,
}

impl SslMode {
    /// A mode by its libpq name (`allow`, which tries without TLS first, is taken as
    /// `prefer`).
    pub fn parse(name: &str) -> Option<SslMode> {
        Some(match name {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A connection string (`postgres://…?…` or `key=value …`) without its `sslmode` and
/// `sslrootcert` settings (the driver knows only some modes), and those settings.
pub fn split_tls(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(k, percent_decoded(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k.trim(), v.trim_matches('\'').to_owned())
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

/// `%XX` escapes of a URL's query value decoded (others kept as they are).
fn percent_decoded(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What becomes of a column whose type has no exact Arrow form (arrays, composites, ranges,
/// geometric types, `money`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unsupported {
    /// The run fails before reading, naming the column and its type.
    #[default]
    Error,
    /// The column is read as PostgreSQL's text form of its values (`col::text`).
    Text,
}

/// What becomes of values that Arrow's types cannot hold: `NaN` in a `numeric(p, s)` column, and
/// `infinity` / `-infinity` dates and timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpecialValues {
    /// The run fails, naming the column and the value.
    #[default]
    Error,
    /// They are read as NULL.
    Null,
}

/// Configuration of the `postgres` source.
///
/// Exactly one of `table` and `query` must be given.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// A connection URL, `postgres://user:password@host:port/database?…`, instead of the
    /// separate fields (which then must not be given).
    pub url: Option<String>,
    /// Server host name or address (default `127.0.0.1`), or a Unix socket folder.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name (default `postgres`).
    #[serde(default = "default_username", alias = "user")]
    pub username: String,
    /// Password; use `${VAR}` to take it from the environment. Never logged.
    pub password: Option<String>,
    /// The database.
    #[serde(alias = "db", alias = "dbname")]
    pub database: Option<String>,
    /// The schema of `table` (default `public`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The table to read, ordered by `key`. Exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A SELECT statement to read instead of a table, in one pass and as one partition
    /// (FULL_TABLE mode only). Exactly one of `table` and `query`.
    pub query: Option<String>,
    /// The replication key: the column the table is read in ascending order of, split into
    /// partitions on, and that INCREMENTAL runs continue after. Default: the table's
    /// single-column primary key. It must hold no NULLs.
    pub replication_key: Option<String>,
    /// The columns to read (default: all, in table order).
    #[schemars(length(min = 1))]
    pub columns: Option<Vec<String>>,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub batch_size: usize,
    /// Splits the table into this many contiguous parts read in parallel over separate
    /// connections: an integer key's range in equal widths, another key at quantiles of a
    /// sample, a table without a key by ranges of its blocks.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1024))]
    pub partitions: usize,
    /// Columns of a type without an exact Arrow form: an error naming them (the default), or
    /// read as text.
    #[serde(default)]
    pub unsupported: Unsupported,
    /// `NaN` in `numeric(p, s)` columns and infinite dates and timestamps: an error naming the
    /// column (the default), or NULL.
    #[serde(default)]
    pub special_values: SpecialValues,
    /// TLS: `disable`, `prefer` (the default: TLS when the server offers it), `require`,
    /// `verify-ca` or `verify-full`, as libpq's `sslmode` (also accepted in `url`).
    pub sslmode: Option<SslMode>,
    /// A PEM file of the root certificates that the server's certificate is checked against
    /// (`verify-ca`, `verify-full`, and `require` when given); default: the system's.
    pub sslrootcert: Option<String>,
    /// The `application_name` the server shows for the connections.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// Seconds a statement may run before the server cancels it (default: the server's).
    #[schemars(range(min = 1))]
    pub statement_timeout_secs: Option<u64>,
    /// Seconds allowed to open one connection.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1))]
    pub connect_timeout_secs: u64,
    /// After a lost connection (network error, server restart), seconds of reconnect attempts
    /// with backoff before the run fails; a partition then continues after the last key read
    /// (a key with a unique index, of an integer or text type).
    #[serde(default = "default_retry_secs")]
    pub retry_timeout_secs: u64,
    /// AWS Secrets Manager secret holding `host`, `port`, `username` and `password`.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many partitions are read at once (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Read only rows whose key is above this value (exclusive; `-1` reads from the start). In
    /// INCREMENTAL runs the target's offset takes precedence when it has one.
    pub offset: Option<Value>,
}

fn check_name(field: &str, value: &str, problems: &mut Vec<String>) {
    if value.is_empty() {
        problems.push(format!("`{field}` must not be empty"));
    } else if value.contains('\0') {
        problems.push(format!("`{field}` must not contain NUL characters"));
    }
}

/// The problems of the connection settings shared by the source and the target.
fn check_connection(
    secret: Option<&str>,
    url: Option<&str>,
    database: Option<&str>,
    sslrootcert: Option<&str>,
    problems: &mut Vec<String>,
) {
    let (url, url_mode, url_root) = match url {
        Some(u) => {
            let (rest, mode, root) = split_tls(u);
            (Some(rest), mode, root)
        }
        None => (None, None, None),
    };
    if let Some(mode) = url_mode
        && SslMode::parse(&mode).is_none()
    {
        problems.push(format!(
            "`url` has `sslmode={mode}`: use disable, prefer, require, verify-ca or verify-full"
        ));
    }
    if let Some(root) = sslrootcert.or(url_root.as_deref())
        && let Err(e) = std::fs::metadata(root)
    {
        problems.push(format!("`sslrootcert` `{root}` cannot be read: {e}"));
    }
    let url = url.as_deref();
    if let Some(secret) = secret {
        problems.push(format!(
            "`secret` `{secret}` was not resolved: run the pipeline with fastlane and the `aws` \
             plugin installed, or give `host`, `username` and `password` instead"
        ));
    }
    match url {
        Some(url) => {
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                problems.push(format!("`url` is not a PostgreSQL URL: {e}"));
            }
        }
        None => match database {
            Some(db) => check_name("database", db, problems),
            None => problems.push("`database` (or `url`) is required".to_owned()),
        },
    }
}

impl PostgresSourceConfig {
    /// Checks the configuration without connecting; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        check_connection(
            self.secret.as_deref(),
            self.url.as_deref(),
            self.database.as_deref(),
            self.sslrootcert.as_deref(),
            &mut problems,
        );
        check_name("schema", &self.schema, &mut problems);
        match (&self.table, &self.query) {
            (Some(t), None) => check_name("table", t, &mut problems),
            (None, Some(q)) => {
                if q.trim().is_empty() {
                    problems.push("`query` must not be empty".to_owned());
                }
                if fastlane_plugin_support::keys::configured_offset(self.offset.as_ref()).is_some()
                {
                    problems.push("`offset` needs `table`; a `query` is read whole".to_owned());
                }
                if self.partitions > 1 {
                    problems.push("`partitions` needs `table`, not `query`".to_owned());
                }
                if self.replication_key.is_some() || self.columns.is_some() {
                    problems.push(
                        "`replication_key` and `columns` need `table`, not `query`".to_owned(),
                    );
                }
            }
            (Some(_), Some(_)) => problems.push("give `table` or `query`, not both".to_owned()),
            (None, None) => problems.push("one of `table` and `query` is required".to_owned()),
        }
        if let Some(key) = &self.replication_key {
            check_name("replication_key", key, &mut problems);
        }
        for c in self.columns.iter().flatten() {
            check_name("columns", c, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The connection settings and TLS connector; an error for a root certificate file that
    /// cannot be used.
    pub fn connection(&self) -> Result<Connection, String> {
        connection(
            Endpoint {
                url: self.url.as_deref(),
                host: &self.host,
                port: self.port,
                username: &self.username,
                password: self.password.as_deref(),
                database: self.database.as_deref(),
                sslmode: self.sslmode,
                sslrootcert: self.sslrootcert.as_deref(),
            },
            &self.application_name,
            self.connect_timeout_secs,
            self.statement_timeout_secs,
        )
    }
}

pub use fastlane_plugin_support::schema::OnSchemaChange;

/// Configuration of the `postgres` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
    /// A connection URL, `postgres://user:password@host:port/database?…`, instead of the
    /// separate fields.
    pub url: Option<String>,
    /// Server host name or address (default `127.0.0.1`), or a Unix socket folder.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name (default `postgres`).
    #[serde(default = "default_username", alias = "user")]
    pub username: String,
    /// Password; use `${VAR}` to take it from the environment. Never logged.
    pub password: Option<String>,
    /// The database.
    #[serde(alias = "db", alias = "dbname")]
    pub database: Option<String>,
    /// The schema of `table` (default `public`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The table to load; created (with `key` as its primary key) when it does not exist.
    pub table: String,
    /// The key: INCREMENTAL runs update the rows whose key they load again (it needs a unique
    /// index) and continue after its largest value. Without it INCREMENTAL runs append.
    pub key: Option<String>,
    /// Rows per COPY (batches larger than this are sent in parts).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub batch_size: usize,
    /// TLS: `disable`, `prefer` (the default: TLS when the server offers it), `require`,
    /// `verify-ca` or `verify-full`, as libpq's `sslmode` (also accepted in `url`).
    pub sslmode: Option<SslMode>,
    /// A PEM file of the root certificates that the server's certificate is checked against
    /// (`verify-ca`, `verify-full`, and `require` when given); default: the system's.
    pub sslrootcert: Option<String>,
    /// The `application_name` the server shows for the connections.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// Seconds a statement may run before the server cancels it (default: the server's).
    #[schemars(range(min = 1))]
    pub statement_timeout_secs: Option<u64>,
    /// Seconds allowed to open one connection.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1))]
    pub connect_timeout_secs: u64,
    /// AWS Secrets Manager secret holding `host`, `port`, `username` and `password`.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many writers load at once (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// When the data has columns the table lacks: `fail` (the default) stops the run naming
    /// them; `add_columns` keeps the table and adds them; `replace` (FULL_TABLE only)
    /// replaces the table with one defined by the data.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
}

impl PostgresTargetConfig {
    /// Checks the configuration without connecting; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        check_connection(
            self.secret.as_deref(),
            self.url.as_deref(),
            self.database.as_deref(),
            self.sslrootcert.as_deref(),
            &mut problems,
        );
        check_name("schema", &self.schema, &mut problems);
        check_name("table", &self.table, &mut problems);
        if let Some(key) = &self.key {
            check_name("key", key, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The connection settings and TLS connector; an error for a root certificate file that
    /// cannot be used.
    pub fn connection(&self) -> Result<Connection, String> {
        connection(
            Endpoint {
                url: self.url.as_deref(),
                host: &self.host,
                port: self.port,
                username: &self.username,
                password: self.password.as_deref(),
                database: self.database.as_deref(),
                sslmode: self.sslmode,
                sslrootcert: self.sslrootcert.as_deref(),
            },
            &self.application_name,
            self.connect_timeout_secs,
            self.statement_timeout_secs,
        )
    }
}

/// Where to connect: a URL or the separate fields, and the TLS settings.
struct Endpoint<'a> {
    url: Option<&'a str>,
    host: &'a str,
    port: u16,
    username: &'a str,
    password: Option<&'a str>,
    database: Option<&'a str>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<&'a str>,
}

/// Connection settings from a URL or the separate fields, with the TLS they ask for (the
/// fields' `sslmode` and `sslrootcert` over the URL's).
fn connection(
    at: Endpoint<'_>,
    application_name: &str,
    connect_timeout_secs: u64,
    statement_timeout_secs: Option<u64>,
) -> Result<Connection, String> {
    let (mut config, url_mode, url_root) = match at.url {
        Some(url) => {
            let (rest, mode, root) = split_tls(url);
            (rest.parse().unwrap_or_default(), mode, root)
        }
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(at.host)
                .port(at.port)
                .user(at.username)
                .dbname(at.database.unwrap_or_default());
            if let Some(p) = at.password {
                c.password(p);
            }
            (c, None, None)
        }
    };
    let mode = at
        .sslmode
        .or_else(|| url_mode.as_deref().and_then(SslMode::parse))
        .unwrap_or_default();
    let root = at.sslrootcert.map(str::to_owned).or(url_root);
    config
        .application_name(application_name)
        .connect_timeout(std::time::Duration::from_secs(connect_timeout_secs))
        .ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    if let Some(secs) = statement_timeout_secs {
        config.options(format!("-c statement_timeout={}", secs * 1000));
    }
    let tls = crate::tls::connector(mode, root.as_deref().map(std::path::Path::new))?;
    Ok(Connection { config, tls })
}
