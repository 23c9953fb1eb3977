//! The HTTP side: write requests with retries, and InfluxQL queries (v1 API).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastlane_plugin_api::{ErrorCode, PluginError, Result};
use fastlane_plugin_support::runtime::PluginRuntime;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::config::{Api, InfluxDbTargetConfig};

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 8).
pub static RUNTIME: PluginRuntime = PluginRuntime::new("influxdb", 8);

/// The plugin's tokio runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get()
}

/// What a write request came back with, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The server's own message (from its JSON error body, or the body's start).
        message: String,
        /// How long the server asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer.
    #[error("{0}")]
    Transport(String),
}

impl WriteError {
    /// Whether sending the same request again may succeed.
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::Transport(_) => true,
        }
    }
}

/// The server's message from an error body: `{"error": …}` (v1), `{"message": …}` (v2), or
/// the start of the text.
fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for key in ["error", "message"] {
            if let Some(m) = v.get(key).and_then(Value::as_str) {
                return cut(m);
            }
        }
    }
    cut(String::from_utf8_lossy(body).trim())
}

fn cut(text: &str) -> String {
    const MAX: usize = 600;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &text[..end])
}

/// reqwest's error reduced to its kind and cause, without the URL (it may hold credentials).
fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({cause})")
    }
}

/// A connection to one InfluxDB server, shared by the target's writers.
pub struct Client {
    config: Arc<InfluxDbTargetConfig>,
    http: reqwest::Client,
    base: String,
    write_url: Url,
    auth: Option<Auth>,
}

/// How requests authenticate.
enum Auth {
    /// HTTP basic authentication (v1).
    Basic(String, Option<String>),
    /// `Authorization: Token …` (v2).
    Token(HeaderValue),
}

impl Client {
    /// Prepares the client (nothing is sent yet).
    pub fn new(config: Arc<InfluxDbTargetConfig>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| PluginError::internal(format!("cannot build the HTTP client: {e}")))?;
        let base = config.base_url();
        let api = config.api();
        let precision = config.precision.param(api);
        let mut write_url = Url::parse(&base).map_err(PluginError::config)?;
        match api {
            Api::V1 => {
                write_url.set_path(&format!("{}/write", write_url.path().trim_end_matches('/')));
                let mut q = write_url.query_pairs_mut();
                q.append_pair("db", config.database.as_deref().unwrap_or_default());
                if let Some(rp) = &config.retention_policy {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", precision);
            }
            Api::V2 => {
                write_url.set_path(&format!(
                    "{}/api/v2/write",
                    write_url.path().trim_end_matches('/')
                ));
                let mut q = write_url.query_pairs_mut();
                if let Some(org) = &config.org {
                    q.append_pair("org", org);
                }
                q.append_pair("bucket", &config.bucket().unwrap_or_default());
                q.append_pair("precision", precision);
            }
        }
        let auth = match (api, &config.user, &config.token) {
            (Api::V1, Some(user), _) => Some(Auth::Basic(user.clone(), config.password.clone())),
            (Api::V2, _, Some(token)) => {
                let mut v = HeaderValue::from_str(&format!("Token {token}")).map_err(|_| {
                    PluginError::config("`token` holds characters an HTTP header cannot")
                })?;
                v.set_sensitive(true);
                Some(Auth::Token(v))
            }
            _ => None,
        };
        Ok(Self {
            config,
            http,
            base,
            write_url,
            auth,
        })
    }

    /// The write URL (it holds no credentials).
    pub fn write_url(&self) -> &Url {
        &self.write_url
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(Auth::Basic(user, password)) => request.basic_auth(user, password.as_ref()),
            Some(Auth::Token(token)) => request.header(AUTHORIZATION, token.clone()),
            None => request,
        }
    }

    /// Sends one write request once.
    async fn write_once(&self, body: Bytes, gzip: bool) -> std::result::Result<(), WriteError> {
        let mut request = self
            .authorize(self.http.post(self.write_url.clone()))
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = request
            .send()
            .await
            .map_err(|e| WriteError::Transport(transport(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        Err(WriteError::Status {
            status,
            message: server_message(&body),
            retry_after,
        })
    }

    /// The backoff before retry `attempt` (1-based): exponential with jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .retry_backoff_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.config.retry_max_backoff_ms);
        let floor = ceiling / 2;
        Duration::from_millis(floor + fastrand::u64(0..=ceiling - floor))
    }

    /// Writes one request of `points` points, retrying what the server could not take.
    /// Returns how many retries it took.
    pub async fn write(&self, body: Bytes, points: usize, gzip: bool) -> Result<u32> {
        let mut retries = 0u32;
        loop {
            let error = match self.write_once(body.clone(), gzip).await {
                Ok(()) => return Ok(retries),
                Err(e) => e,
            };
            if !error.retryable() {
                return Err(self.refusal(&error, points));
            }
            if retries >= self.config.max_retries {
                return Err(PluginError::new(
                    ErrorCode::IO,
                    format!(
                        "InfluxDB at {} did not take a write of {points} points after {} \
                         attempts; the last answer: {error}",
                        self.base,
                        retries + 1
                    ),
                ));
            }
            retries += 1;
            let mut wait = self.backoff(retries);
            if let WriteError::Status {
                retry_after: Some(after),
                ..
            } = &error
            {
                wait =
                    wait.max((*after).min(Duration::from_millis(self.config.retry_max_backoff_ms)));
            }
            log::debug!("write of {points} points failed ({error}); retry {retries} in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    /// The error for an answer that retrying cannot change.
    fn refusal(&self, error: &WriteError, points: usize) -> PluginError {
        let WriteError::Status {
            status, message, ..
        } = error
        else {
            return PluginError::io(error.to_string());
        };
        let place = self.place();
        match *status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PluginError::connection(format!(
                "InfluxDB at {} refused the credentials for {place} (HTTP {status}): {message}",
                self.base
            )),
            StatusCode::NOT_FOUND => PluginError::not_found(format!(
                "InfluxDB at {} has no {place} (HTTP 404: {message}){}",
                self.base,
                if self.config.api() == Api::V1 && !self.config.create_database {
                    "; create it, or set `create_database`"
                } else {
                    ""
                }
            )),
            StatusCode::PAYLOAD_TOO_LARGE => PluginError::data(format!(
                "InfluxDB at {} refused a write of {points} points as too large: {message}; \
                 lower `max_request_bytes` or `batch_size`",
                self.base
            )),
            s if s.is_client_error() => PluginError::data(format!(
                "InfluxDB at {} refused a write of {points} points to {place} (HTTP {status}): \
                 {message}",
                self.base
            )),
            _ => PluginError::io(format!(
                "InfluxDB at {} failed a write of {points} points (HTTP {status}): {message}",
                self.base
            )),
        }
    }

    /// `database `x`` or `bucket `x``, for messages.
    pub fn place(&self) -> String {
        match self.config.api() {
            Api::V1 => format!(
                "database `{}`",
                self.config.database.as_deref().unwrap_or_default()
            ),
            Api::V2 => format!("bucket `{}`", self.config.bucket().unwrap_or_default()),
        }
    }

    /// Checks that the server answers before any data is read. With the v1 API an empty
    /// write also checks the credentials and the database; the v2 API's servers differ in
    /// how they answer an empty write, so there `GET /health` checks that the server answers
    /// and the first write checks the rest.
    pub async fn check(&self) -> Result<()> {
        if self.config.api() == Api::V2 {
            let url = format!("{}/health", self.base);
            return match self.authorize(self.http.get(url)).send().await {
                Ok(response) => {
                    if !response.status().is_success() {
                        log::debug!(
                            "InfluxDB at {} answered /health with {}",
                            self.base,
                            response.status()
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(PluginError::connection(format!(
                    "cannot reach InfluxDB at {}: {}",
                    self.base,
                    transport(&e)
                ))),
            };
        }
        match self.write_once(Bytes::new(), false).await {
            Ok(()) => Ok(()),
            Err(WriteError::Transport(e)) => Err(PluginError::connection(format!(
                "cannot reach InfluxDB at {}: {e}",
                self.base
            ))),
            Err(e) => Err(self.refusal(&e, 0)),
        }
    }

    /// Runs an InfluxQL statement (v1 `/query`) and returns the first statement's result.
    /// Statements that change the server are sent with POST.
    pub async fn influxql(&self, statement: &str, change: bool) -> Result<Value> {
        let mut url = Url::parse(&format!("{}/query", self.base)).map_err(PluginError::config)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(db) = &self.config.database {
                q.append_pair("db", db);
            }
            q.append_pair("epoch", "ns");
        }
        let form = [("q", statement)];
        let request = if change {
            self.http.post(url).form(&form)
        } else {
            self.http.get(url).query(&form)
        };
        let response = self.authorize(request).send().await.map_err(|e| {
            PluginError::connection(format!(
                "cannot reach InfluxDB at {}: {}",
                self.base,
                transport(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            PluginError::io(format!(
                "InfluxDB at {} sent an unreadable answer: {}",
                self.base,
                transport(&e)
            ))
        })?;
        if !status.is_success() {
            let error = WriteError::Status {
                status,
                message: server_message(&body),
                retry_after: None,
            };
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.refusal(&error, 0),
                _ => PluginError::io(format!(
                    "InfluxDB at {} refused the query `{statement}`: {error}",
                    self.base
                )),
            });
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            PluginError::io(format!(
                "InfluxDB at {} answered the query `{statement}` with something that is not \
                 JSON: {e}",
                self.base
            ))
        })?;
        let result = value
            .get("results")
            .and_then(|r| r.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(error) = result.get("error").and_then(Value::as_str) {
            return Err(if error.contains("database not found") {
                PluginError::not_found(format!("InfluxDB at {} has no {}", self.base, self.place()))
            } else {
                PluginError::io(format!(
                    "InfluxDB at {} could not run `{statement}`: {error}",
                    self.base
                ))
            });
        }
        Ok(result)
    }
}

/// Quotes an InfluxQL identifier: `"name"`, with `"` and `\` escaped.
pub fn identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_read() {
        assert_eq!(
            server_message(br#"{"error":"database not found"}"#),
            "database not found"
        );
        assert_eq!(
            server_message(br#"{"code":"invalid","message":"bad"}"#),
            "bad"
        );
        assert_eq!(server_message(b"  plain text \n"), "plain text");
        assert!(cut(&"é".repeat(1000)).ends_with(" …"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(identifier(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }

    #[test]
    fn urls_follow_the_api() {
        let v1: InfluxDbTargetConfig = serde_json::from_value(serde_json::json!({
            "url": "http://h:1/base", "database": "d b", "retention_policy": "rp",
            "measurement": "m", "precision": "us", "user": "u", "password": "p"
        }))
        .unwrap();
        let c = Client::new(Arc::new(v1)).unwrap();
        assert_eq!(
            c.write_url().as_str(),
            "http://h:1/base/write?db=d+b&rp=rp&precision=u"
        );
        let v2: InfluxDbTargetConfig = serde_json::from_value(serde_json::json!({
            "url": "http://h:1", "bucket": "b", "org": "o", "token": "t", "measurement": "m"
        }))
        .unwrap();
        let c = Client::new(Arc::new(v2)).unwrap();
        assert_eq!(
            c.write_url().as_str(),
            "http://h:1/api/v2/write?org=o&bucket=b&precision=ns"
        );
        assert!(matches!(&c.auth, Some(Auth::Token(t)) if t.to_str().unwrap() == "Token t"));
    }
}
