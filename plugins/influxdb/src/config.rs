//! Configuration of the `influxdb` target: the original fastlane's fields (`database`,
//! `measurement`, `tag_columns`, `field_columns`, and the `host`, `port`, `user`, `password`
//! its secret held), plus the server's API version, time mapping, batching and retries.

use schemars::JsonSchema;
use serde::Deserialize;

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x: `/write?db=&rp=&precision=`, user and password.
    V1,
    /// InfluxDB 2.x, 3.x and Cloud: `/api/v2/write?org=&bucket=&precision=`, a token.
    V2,
}

/// The unit of the timestamps written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Nanoseconds (InfluxDB's own unit).
    #[default]
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds (what the original fastlane wrote).
    Ms,
    /// Seconds.
    S,
}

impl Precision {
    /// How many units make one second.
    pub fn per_second(self) -> i64 {
        match self {
            Self::Ns => 1_000_000_000,
            Self::Us => 1_000_000,
            Self::Ms => 1_000,
            Self::S => 1,
        }
    }

    /// The `precision` parameter of the write API.
    pub fn param(self, api: Api) -> &'static str {
        match (self, api) {
            (Self::Ns, _) => "ns",
            (Self::Us, Api::V1) => "u",
            (Self::Us, Api::V2) => "us",
            (Self::Ms, _) => "ms",
            (Self::S, _) => "s",
        }
    }
}

/// What to do with a row that has no non-null field (InfluxDB cannot store a point without
/// fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmptyRows {
    /// Leave the row out, count it, and report the count at the end of the run.
    #[default]
    Skip,
    /// Fail the run on the first such row.
    Error,
}

/// What to do with a NaN or infinite float (line protocol cannot carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NonFinite {
    /// Fail the run, naming the column and row.
    #[default]
    Error,
    /// Treat the value as null: the field is left out of that point.
    Null,
}

/// How `get_offset` reports the newest time when the replication key is the time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OffsetFormat {
    /// UTC text `YYYY-MM-DDTHH:MM:SS[.fraction]`, for timestamp keys.
    #[default]
    Rfc3339,
    /// UTC text `YYYY-MM-DD HH:MM:SS[.fraction]`, for keys stored as SQL datetime text
    /// (SQLite), which compare as text.
    Datetime,
    /// An integer in units of `precision`, for keys stored as epoch numbers.
    Epoch,
}

/// Configuration of the `influxdb` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfluxDbTargetConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8086`; otherwise built from `host`,
    /// `port` and `ssl`.
    pub url: Option<String>,
    /// The server's host name, when `url` is not given.
    pub host: Option<String>,
    /// The server's port, when `url` is not given (8086).
    pub port: Option<u16>,
    /// Use HTTPS with `host` and `port`.
    #[serde(default)]
    pub ssl: bool,
    /// The write API: `v1` or `v2`. Default: `v2` when `token`, `org` or `bucket` is given,
    /// otherwise `v1`.
    pub api: Option<Api>,
    /// The database (v1). With the v2 API it names the bucket when `bucket` is absent.
    pub database: Option<String>,
    /// The retention policy (v1); the database's default when absent.
    pub retention_policy: Option<String>,
    /// User name (v1), sent with HTTP basic authentication.
    #[serde(alias = "username")]
    pub user: Option<String>,
    /// Password (v1); use `${VAR}` or `secret` rather than writing it into the file.
    pub password: Option<String>,
    /// Create the database (v1) at the start of a run when it does not exist.
    #[serde(default)]
    pub create_database: bool,
    /// The organization (v2).
    pub org: Option<String>,
    /// The bucket (v2).
    pub bucket: Option<String>,
    /// The API token (v2), sent as `Authorization: Token …`; use `${VAR}` or `secret`.
    pub token: Option<String>,
    /// The measurement every point is written to.
    pub measurement: Option<String>,
    /// A column naming each row's measurement, instead of `measurement`.
    pub measurement_column: Option<String>,
    /// Columns written as tags (indexed strings). Null and empty values are left out.
    #[serde(default)]
    pub tag_columns: Vec<String>,
    /// Columns written as fields. Default: every column that is not a tag, the time or the
    /// measurement column. Null values are left out of the point.
    pub field_columns: Option<Vec<String>>,
    /// The column holding each point's time: a timestamp (any unit, UTC), a date, ISO 8601
    /// text (UTC unless it carries an offset), or an integer in units of `precision`. Without it, each row gets the run's start time plus
    /// its position in the run, in units of `precision`, so no two points of a run collide.
    pub time_column: Option<String>,
    /// The unit of the times written: `ns` (default), `us`, `ms` or `s`. Finer times are
    /// truncated towards the past.
    #[serde(default)]
    pub precision: Precision,
    /// The replication key for INCREMENTAL runs: the time column (default when
    /// `time_column` is set) or a numeric field; `get_offset` asks the server for its newest
    /// time or largest value (v1 API).
    pub key: Option<String>,
    /// How the newest time is reported as an offset: `rfc3339` (default), `datetime` (a
    /// space instead of the `T`, for SQL datetime text) or `epoch`.
    #[serde(default)]
    pub offset_format: OffsetFormat,
    /// A row whose fields are all null: `skip` (counted and reported) or `error`.
    #[serde(default)]
    pub empty_rows: EmptyRows,
    /// A NaN or infinite float: `error` (default) or `null` (the field is left out).
    #[serde(default)]
    pub non_finite: NonFinite,
    /// Write unsigned integers with the `u` suffix (InfluxDB 1.8+ and 2.x). Otherwise they
    /// are signed integers, and a value above 2^63-1 is an error.
    #[serde(default)]
    pub unsigned_integers: bool,
    /// Points per write request (InfluxDB recommends 5,000 to 10,000).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub batch_size: usize,
    /// The most bytes of line protocol per request, before compression.
    #[serde(default = "default_request_bytes")]
    #[schemars(range(min = 1024))]
    pub max_request_bytes: usize,
    /// Compress request bodies with gzip.
    #[serde(default)]
    pub gzip: bool,
    /// Write requests each target worker keeps in flight at once.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 64))]
    pub requests_in_flight: usize,
    /// How many times a request the server could not take (5xx, 429, connection lost,
    /// timeout) is sent again, with exponential backoff, before the run fails.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// The first backoff before a retry, in milliseconds; it doubles at each retry (with
    /// jitter) up to `retry_max_backoff_ms`.
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 60_000))]
    pub retry_backoff_ms: u64,
    /// The longest backoff between retries, in milliseconds.
    #[serde(default = "default_max_backoff")]
    #[schemars(range(min = 1, max = 600_000))]
    pub retry_max_backoff_ms: u64,
    /// Timeout of one request, in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_secs: u64,
    /// AWS Secrets Manager secret holding `host`, `port`, `user` and `password` (or `token`);
    /// resolved by the fastlane host.
    pub secret: Option<String>,
    /// AWS region of `secret`.
    pub secret_region: Option<String>,
    /// How many target workers write in parallel (host setting).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

fn default_batch_size() -> usize {
    5_000
}

fn default_request_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_in_flight() -> usize {
    2
}

fn default_retries() -> u32 {
    8
}

fn default_backoff() -> u64 {
    100
}

fn default_max_backoff() -> u64 {
    10_000
}

fn default_timeout() -> u64 {
    60
}

impl InfluxDbTargetConfig {
    /// The write API in use.
    pub fn api(&self) -> Api {
        self.api.unwrap_or(
            if self.token.is_some() || self.org.is_some() || self.bucket.is_some() {
                Api::V2
            } else {
                Api::V1
            },
        )
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{}:{}",
                if self.ssl { "https" } else { "http" },
                self.host.as_deref().unwrap_or("127.0.0.1"),
                self.port.unwrap_or(8086)
            ),
        }
    }

    /// The v2 bucket: `bucket`, else `database` (with `/retention_policy` when given).
    pub fn bucket(&self) -> Option<String> {
        self.bucket.clone().or_else(|| {
            self.database
                .as_ref()
                .map(|db| match &self.retention_policy {
                    Some(rp) => format!("{db}/{rp}"),
                    None => db.clone(),
                })
        })
    }

    /// The replication key: `key`, else the time column.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref().or(self.time_column.as_deref())
    }

    /// The name of the target in the run's summary: `<database or bucket>.<measurement>`.
    pub fn target_name(&self) -> String {
        let place = match self.api() {
            Api::V1 => self.database.clone(),
            Api::V2 => self.bucket(),
        }
        .unwrap_or_default();
        let measurement = self
            .measurement
            .clone()
            .or_else(|| self.measurement_column.as_ref().map(|c| format!("<{c}>")))
            .unwrap_or_default();
        format!("{place}.{measurement}")
    }

    /// Checks everything that needs no server, and lists every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret {
            problems.push(format!(
                "`secret` `{secret}` was not resolved: run the pipeline with fastlane and the \
                 `aws` plugin installed, or give `host`, `user` and `password` (use `${{VAR}}` \
                 for the password) instead"
            ));
        }
        match &self.url {
            Some(url) => {
                if self.host.is_some() || self.port.is_some() {
                    problems.push("give either `url` or `host`/`port`, not both".into());
                }
                match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                        if u.query().is_some() {
                            problems.push("`url` must not have a query string".into());
                        }
                    }
                    _ => problems.push(format!(
                        "`url` `{url}` is not an http:// or https:// URL with a host"
                    )),
                }
            }
            None => {
                if self.host.as_deref().is_none_or(str::is_empty) {
                    problems.push("`url` or `host` is required".into());
                }
            }
        }
        match self.api() {
            Api::V1 => {
                if self.database.as_deref().is_none_or(str::is_empty) {
                    problems.push("`database` is required with the v1 API".into());
                }
                if self.token.is_some() || self.org.is_some() || self.bucket.is_some() {
                    problems.push(
                        "`token`, `org` and `bucket` belong to the v2 API; set `api` to `v2` \
                         or leave them out"
                            .into(),
                    );
                }
                if self.password.is_some() && self.user.is_none() {
                    problems.push("`password` is given without `user`".into());
                }
            }
            Api::V2 => {
                if self.bucket().is_none_or(|b| b.is_empty()) {
                    problems.push("`bucket` (or `database`) is required with the v2 API".into());
                }
                if self.user.is_some() || self.password.is_some() {
                    problems.push(
                        "the v2 API authenticates with `token`, not `user`/`password`".into(),
                    );
                }
                if self.create_database {
                    problems.push("`create_database` works with the v1 API only".into());
                }
            }
        }
        match (&self.measurement, &self.measurement_column) {
            (None, None) => {
                problems.push("`measurement` or `measurement_column` is required".into())
            }
            (Some(_), Some(_)) => {
                problems.push("give `measurement` or `measurement_column`, not both".into())
            }
            (Some(m), None) => {
                if let Err(e) = crate::names::check_measurement(m) {
                    problems.push(format!("`measurement`: {e}"));
                }
            }
            (None, Some(_)) => {}
        }
        for tag in &self.tag_columns {
            if let Err(e) = crate::names::check_key(tag) {
                problems.push(format!("`tag_columns`: {e}"));
            }
            if Some(tag) == self.time_column.as_ref() {
                problems.push(format!("`tag_columns`: `{tag}` is the time column"));
            }
            if Some(tag) == self.measurement_column.as_ref() {
                problems.push(format!("`tag_columns`: `{tag}` is the measurement column"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for tag in &self.tag_columns {
            if !seen.insert(tag) {
                problems.push(format!("`tag_columns` names `{tag}` twice"));
            }
        }
        if let Some(fields) = &self.field_columns {
            if fields.is_empty() {
                problems.push("`field_columns` must name at least one column".into());
            }
            for field in fields {
                if let Err(e) = crate::names::check_key(field) {
                    problems.push(format!("`field_columns`: {e}"));
                }
                if !seen.insert(field) {
                    problems.push(format!(
                        "`field_columns`: `{field}` is named twice or is also a tag"
                    ));
                }
                if Some(field) == self.time_column.as_ref() {
                    problems.push(format!("`field_columns`: `{field}` is the time column"));
                }
            }
        }
        if let Some(key) = &self.key {
            let is_time = Some(key) == self.time_column.as_ref();
            if self.tag_columns.contains(key) {
                problems.push(format!(
                    "`key` `{key}` is a tag; the key must be the time column or a numeric field"
                ));
            } else if !is_time
                && self
                    .field_columns
                    .as_ref()
                    .is_some_and(|fields| !fields.contains(key))
            {
                problems.push(format!(
                    "`key` `{key}` is neither the time column nor one of `field_columns`"
                ));
            }
        }
        if self.retry_max_backoff_ms < self.retry_backoff_ms {
            problems.push("`retry_max_backoff_ms` must not be below `retry_backoff_ms`".into());
        }
        if self.batch_size == 0 {
            problems.push("`batch_size` must be at least 1".into());
        }
        if self.max_request_bytes < 1024 {
            problems.push("`max_request_bytes` must be at least 1024".into());
        }
        if self.requests_in_flight == 0 {
            problems.push("`requests_in_flight` must be at least 1".into());
        }
        if self.timeout_secs == 0 {
            problems.push("`timeout_secs` must be at least 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> InfluxDbTargetConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_problem_is_listed() {
        let c = config(json!({
            "url": "ftp://x", "port": 1, "database": "", "token": "t",
            "api": "v1", "tag_columns": ["a", "time", "a"], "field_columns": ["b", "a"],
            "time_column": "time", "key": "a", "retry_backoff_ms": 9, "retry_max_backoff_ms": 1
        }));
        let problems = c.problems().join("\n");
        for part in [
            "`url` or `host`/`port`",
            "ftp://x",
            "`database` is required",
            "belong to the v2 API",
            "`measurement` or `measurement_column` is required",
            "`time` is the time column",
            "names `a` twice",
            "`a` is named twice or is also a tag",
            "`key` `a` is a tag",
            "`retry_max_backoff_ms`",
        ] {
            assert!(problems.contains(part), "{part} missing from:\n{problems}");
        }
    }

    #[test]
    fn api_and_places_follow_the_settings() {
        let v1 = config(json!({"host": "h", "database": "db", "measurement": "m"}));
        assert_eq!(v1.api(), Api::V1);
        assert_eq!(v1.base_url(), "http://h:8086");
        assert!(v1.problems().is_empty(), "{:?}", v1.problems());
        assert_eq!(v1.target_name(), "db.m");
        let v2 = config(json!({
            "url": "https://eu.example.com/", "token": "t", "org": "o",
            "database": "db", "retention_policy": "week", "measurement": "m"
        }));
        assert_eq!(v2.api(), Api::V2);
        assert_eq!(v2.base_url(), "https://eu.example.com");
        assert_eq!(v2.bucket().as_deref(), Some("db/week"));
        assert!(v2.problems().is_empty(), "{:?}", v2.problems());
        assert_eq!(Precision::Us.param(Api::V1), "u");
        assert_eq!(Precision::Us.param(Api::V2), "us");
    }

    #[test]
    fn an_unresolved_secret_is_explained() {
        let c = config(json!({
            "host": "h", "database": "db", "measurement": "m", "secret": "influx"
        }));
        assert!(c.problems()[0].contains("was not resolved"));
    }
}
