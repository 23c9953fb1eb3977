//! Credentials and the BigQuery REST API: access tokens from a service-account key or the
//! application default credentials (`yup-oauth2`, as `gcp-bigquery-client` uses it), and JSON
//! requests with retries on passing failures and one clear error for the others.

use std::time::Duration;

use fastlane_plugin_api::{PluginError, Result};
use gcp_bigquery_client::yup_oauth2;
use serde_json::Value;

use crate::config::{AuthMode, BigQuerySourceConfig};

/// Google's REST endpoint.
pub const GOOGLE_REST: &str = "https://bigquery.googleapis.com";

/// The OAuth scope of every request.
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/bigquery"];

/// Where access tokens come from.
pub enum Auth {
    /// No credentials (emulators).
    None,
    /// A Google authenticator, caching and refreshing its token; `who` names the identity for
    /// messages.
    Google {
        /// The authenticator.
        inner: yup_oauth2::authenticator::DefaultAuthenticator,
        /// The account, or where the credentials came from.
        who: String,
    },
}

impl Auth {
    /// Builds the authenticator the configuration asks for (reads key files, not the network).
    pub async fn new(config: &BigQuerySourceConfig) -> Result<Self> {
        match config.auth_mode() {
            AuthMode::None => Ok(Self::None),
            AuthMode::ServiceAccount => {
                let key = match (&config.service_account_json, &config.service_account_file) {
                    (Some(json), _) => {
                        yup_oauth2::parse_service_account_key(json).map_err(|e| {
                            // Never quote the text: it holds the private key.
                            PluginError::config(format!(
                                "`service_account_json` is not a service-account key ({})",
                                e.kind()
                            ))
                        })?
                    }
                    (None, Some(path)) => yup_oauth2::read_service_account_key(path)
                        .await
                        .map_err(|e| {
                            PluginError::config(format!(
                                "`service_account_file` {path}: not a readable service-account \
                                 key: {e}"
                            ))
                        })?,
                    (None, None) => {
                        return Err(PluginError::config(
                            "`auth` is `service_account` but no key is given",
                        ));
                    }
                };
                let who = format!("service account {}", key.client_email);
                let inner = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await
                    .map_err(|e| {
                        PluginError::config(format!("the service-account key is unusable: {e}"))
                    })?;
                Ok(Self::Google { inner, who })
            }
            AuthMode::Adc => Self::adc().await,
        }
    }

    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account
    /// key or gcloud user credentials), the gcloud default file, or the metadata server.
    async fn adc() -> Result<Self> {
        let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    std::path::PathBuf::from(h)
                        .join(".config/gcloud/application_default_credentials.json")
                })
            });
        if let Some(path) = path.filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                PluginError::config(format!(
                    "application default credentials {}: {e}",
                    path.display()
                ))
            })?;
            let kind = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            let shown = path.display().to_string();
            if kind == "authorized_user" {
                let secret = serde_json::from_str(&text).map_err(|e| {
                    PluginError::config(format!("application default credentials {shown}: {e}"))
                })?;
                let inner = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                    .build()
                    .await
                    .map_err(|e| PluginError::config(format!("{shown}: {e}")))?;
                return Ok(Self::Google {
                    inner,
                    who: format!("the gcloud user credentials in {shown}"),
                });
            }
            if kind == "service_account" {
                let key = yup_oauth2::parse_service_account_key(&text).map_err(|e| {
                    PluginError::config(format!(
                        "{shown} is not a service-account key ({})",
                        e.kind()
                    ))
                })?;
                let who = format!("service account {} ({shown})", key.client_email);
                let inner = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await
                    .map_err(|e| PluginError::config(format!("{shown}: {e}")))?;
                return Ok(Self::Google { inner, who });
            }
            return Err(PluginError::config(format!(
                "application default credentials {shown}: the type `{kind}` is not supported \
                 (use a service-account key or `gcloud auth application-default login`)"
            )));
        }
        let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
        let built =
            match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
                yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::InstanceMetadata(
                    b,
                ) => b.build().await,
                yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::ServiceAccount(
                    b,
                ) => b.build().await,
            };
        let inner = built
            .map_err(|e| PluginError::config(format!("application default credentials: {e}")))?;
        Ok(Self::Google {
            inner,
            who: "the metadata server's credentials (no GOOGLE_APPLICATION_CREDENTIALS, no \
                  gcloud credentials)"
                .to_owned(),
        })
    }

    /// A bearer token, or `None` without credentials.
    pub async fn token(&self) -> Result<Option<String>> {
        let Self::Google { inner, who } = self else {
            return Ok(None);
        };
        let token = inner.token(SCOPES).await.map_err(|e| {
            PluginError::connection(format!("Google did not give {who} an access token: {e}"))
        })?;
        token
            .token()
            .map(|t| Some(t.to_owned()))
            .ok_or_else(|| PluginError::connection(format!("Google gave {who} no access token")))
    }
}

/// Retry policy shared by the REST and Storage Read paths.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Retries before giving up.
    pub max_retries: u32,
    /// The first backoff, in milliseconds.
    pub backoff_ms: u64,
}

impl Retry {
    /// The wait before retry `attempt` (from 1): exponential, capped at 30 s, with jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
            .min(30_000);
        Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
    }
}

/// The REST API of one project.
pub struct Rest {
    http: reqwest::Client,
    base: String,
    /// The project jobs run in.
    pub project: String,
    /// Credentials.
    pub auth: Auth,
    retry: Retry,
}

/// A failed REST call: whether trying again may help, and the error.
struct Failure {
    retry: bool,
    error: PluginError,
}

impl Rest {
    /// A client for `config`'s endpoint and project.
    pub fn new(config: &BigQuerySourceConfig, auth: Auth) -> Result<Self> {
        let root = config.endpoint.as_deref().unwrap_or(GOOGLE_REST);
        let root = root.trim_end_matches('/');
        let base = if root.ends_with("/bigquery/v2") {
            root.to_owned()
        } else {
            format!("{root}/bigquery/v2")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_secs))
            .user_agent(concat!("fastlane/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PluginError::internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            project: config.gcp_project.clone(),
            auth,
            retry: Retry {
                max_retries: config.max_retries,
                backoff_ms: config.retry_backoff_ms,
            },
        })
    }

    /// `{base}/projects/{project}/…` with each path segment escaped.
    pub fn url(&self, segments: &[&str]) -> String {
        let mut url = format!("{}/projects/{}", self.base, escape(&self.project));
        for s in segments {
            url.push('/');
            url.push_str(&escape(s));
        }
        url
    }

    /// The host the requests go to, for messages.
    pub fn place(&self) -> &str {
        &self.base
    }

    /// GET `url` with `query`, retried; `doing` says what for, in errors.
    pub async fn get(&self, url: &str, query: &[(&str, String)], doing: &str) -> Result<Value> {
        self.send(doing, || self.http.get(url).query(query)).await
    }

    /// POST `body` to `url`, retried.
    pub async fn post(&self, url: &str, body: &Value, doing: &str) -> Result<Value> {
        self.send(doing, || self.http.post(url).json(body)).await
    }

    async fn send(
        &self,
        doing: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value> {
        let mut attempt = 0;
        loop {
            let token = self.auth.token().await?;
            let mut builder = request();
            if let Some(token) = token {
                builder = builder.bearer_auth(token);
            }
            match self.once(builder).await {
                Ok(value) => return Ok(value),
                Err(Failure { retry: true, error }) if attempt < self.retry.max_retries => {
                    attempt += 1;
                    let wait = self.retry.backoff(attempt);
                    log::warn!(
                        "BigQuery: {doing} failed ({}); retry {attempt} of {} in {} ms",
                        error.message(),
                        self.retry.max_retries,
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(Failure { error, .. }) => {
                    return Err(error.context(format!("BigQuery: {doing}")));
                }
            }
        }
    }

    async fn once(&self, builder: reqwest::RequestBuilder) -> std::result::Result<Value, Failure> {
        let response = builder.send().await.map_err(|e| Failure {
            retry: true,
            error: PluginError::connection(format!(
                "cannot reach BigQuery at {}: {}",
                self.base,
                error_chain(&e)
            )),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| Failure {
            retry: true,
            error: PluginError::connection(format!(
                "the answer of BigQuery at {} broke off: {}",
                self.base,
                error_chain(&e)
            )),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| Failure {
                retry: false,
                error: PluginError::io(format!("BigQuery answered with invalid JSON: {e}")),
            });
        }
        Err(http_failure(status.as_u16(), &body))
    }
}

/// The error BigQuery sends with a failed status, classified.
fn http_failure(status: u16, body: &[u8]) -> Failure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!(
                    "HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                )
            }
        });
    let reason = error
        .and_then(|e| e.get("errors"))
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let transient_reason = matches!(
        reason,
        "backendError" | "rateLimitExceeded" | "internalError" | "jobRateLimitExceeded"
    );
    let (retry, error) = match status {
        401 => (
            false,
            PluginError::connection(format!("BigQuery refused the credentials: {message}")),
        ),
        403 if !transient_reason => (
            false,
            PluginError::connection(format!("BigQuery denied access: {message}")),
        ),
        404 => (false, PluginError::not_found(message)),
        408 | 429 | 500 | 502 | 503 | 504 => (true, PluginError::io(message)),
        _ if transient_reason => (true, PluginError::io(message)),
        400..=499 => (false, PluginError::config(message)),
        _ => (false, PluginError::io(message)),
    };
    Failure { retry, error }
}

/// An error and its sources, joined.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Percent-escapes one path segment.
fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'$' | b'@' | b':')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastlane_plugin_api::ErrorCode;

    #[test]
    fn failures_are_classified_by_status_and_reason() {
        let body = |reason: &str, message: &str| {
            serde_json::json!({"error": {"code": 0, "message": message,
                "errors": [{"reason": reason, "message": message}]}})
            .to_string()
        };
        let f = http_failure(404, body("notFound", "Not found: Dataset p:d").as_bytes());
        assert!(!f.retry);
        assert_eq!(f.error.code(), ErrorCode::NOT_FOUND);
        assert_eq!(f.error.message(), "Not found: Dataset p:d");
        let f = http_failure(403, body("rateLimitExceeded", "slow down").as_bytes());
        assert!(f.retry);
        let f = http_failure(403, body("accessDenied", "no").as_bytes());
        assert!(!f.retry && f.error.code() == ErrorCode::CONNECTION);
        let f = http_failure(401, b"");
        assert!(f.error.message().contains("HTTP 401"), "{}", f.error);
        let f = http_failure(503, b"<html>unavailable</html>");
        assert!(f.retry && f.error.message().contains("unavailable"));
        let f = http_failure(400, body("invalidQuery", "Syntax error").as_bytes());
        assert!(!f.retry && f.error.code() == ErrorCode::CONFIG);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            max_retries: 5,
            backoff_ms: 100,
        };
        assert!(r.backoff(1) <= Duration::from_millis(100));
        assert!(r.backoff(3) >= Duration::from_millis(200));
        assert!(r.backoff(40) <= Duration::from_secs(30));
        assert_eq!(escape("my table/1"), "my%20table%2F1");
    }
}
