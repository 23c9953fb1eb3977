//! What every AWS connector shares: the plugin's tokio runtime, the SDK configuration built from
//! a connector's settings, and turning SDK errors into short messages.

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use fastlane_plugin_api::{ErrorCode, PluginError};
use fastlane_plugin_support::runtime::PluginRuntime;

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 16).
pub static RUNTIME: PluginRuntime = PluginRuntime::new("aws", 16);

/// The plugin's tokio runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get()
}

/// The AWS settings of a connector, taken from its configuration.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Region; otherwise the default chain (`AWS_REGION`, the profile), then `us-east-1`.
    pub region: Option<String>,
    /// Endpoint of an AWS-compatible service (MinIO, moto, LocalStack).
    pub endpoint_url: Option<String>,
    /// Named profile of the shared configuration files.
    pub profile: Option<String>,
    /// Static access key id (with `secret_access_key`); otherwise the default chain.
    pub access_key_id: Option<String>,
    /// Static secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary static credentials.
    pub session_token: Option<String>,
    /// Attempts per request, the first included (the SDK's standard retry with backoff).
    pub max_attempts: u32,
}

impl Connection {
    /// Problems with these settings, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            problems.push(
                "`access_key_id` and `secret_access_key` go together: give both or neither"
                    .to_owned(),
            );
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            problems.push("`session_token` needs `access_key_id` and `secret_access_key`".into());
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!(
                "`endpoint_url` `{url}` must start with http:// or https://"
            ));
        }
        if self.max_attempts == 0 {
            problems.push("`max_attempts` must be at least 1".into());
        }
        problems
    }

    /// Loads the SDK configuration (no network call: credentials are resolved lazily).
    pub fn sdk_config(&self) -> SdkConfig {
        let region = RegionProviderChain::first_try(self.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                self.session_token.clone(),
                None,
                "fastlane-config",
            ));
        }
        runtime().block_on(loader.load())
    }
}

/// Defines a connector's configuration struct with the standard AWS settings appended to its
/// own fields (`region`, `endpoint_url`, `profile`, static keys, `max_attempts`), and its
/// `connection()`.
macro_rules! with_aws_settings {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            /// AWS region (default: `AWS_REGION`, the profile, then `us-east-1`).
            pub region: Option<String>,
            /// Endpoint of an AWS-compatible service (MinIO, moto, LocalStack), e.g.
            /// `http://127.0.0.1:5000`.
            pub endpoint_url: Option<String>,
            /// Named profile of the shared AWS configuration files.
            pub profile: Option<String>,
            /// Static access key id (with `secret_access_key`); by default the standard
            /// credential chain is used.
            pub access_key_id: Option<String>,
            /// Static secret access key.
            pub secret_access_key: Option<String>,
            /// Session token of temporary credentials.
            pub session_token: Option<String>,
            /// Attempts per request, with backoff between them.
            #[serde(default = "crate::connection::default_max_attempts")]
            #[schemars(range(min = 1, max = 20))]
            pub max_attempts: u32,
        }

        impl $name {
            /// The AWS settings.
            pub fn connection(&self) -> crate::connection::Connection {
                crate::connection::Connection {
                    region: self.region.clone(),
                    endpoint_url: self.endpoint_url.clone(),
                    profile: self.profile.clone(),
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                    session_token: self.session_token.clone(),
                    max_attempts: self.max_attempts,
                }
            }
        }
    };
}
pub(crate) use with_aws_settings;

/// Default of `max_attempts`.
pub fn default_max_attempts() -> u32 {
    5
}

/// A short message for an SDK error: the service's code and message when the service answered,
/// otherwise the chain of causes (connection refused, timeout, missing credentials…).
pub fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    if let SdkError::ServiceError(service) = error {
        let inner = service.err();
        return match (inner.code(), inner.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => chain(inner),
        };
    }
    chain(error)
}

/// The error and its sources, joined by `: `, without repeats.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The plugin error for a failed call: a connection problem when the request never got an
/// answer, otherwise an I/O error.
pub fn call_error<E, R>(what: &str, error: &SdkError<E, R>) -> PluginError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => ErrorCode::CONNECTION,
        SdkError::ServiceError(s)
            if matches!(
                s.err().code(),
                Some(
                    "AccessDenied"
                        | "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                        | "ExpiredToken"
                        | "UnrecognizedClientException"
                )
            ) =>
        {
            ErrorCode::CONNECTION
        }
        _ => ErrorCode::IO,
    };
    PluginError::new(code, format!("{what}: {}", describe(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_problems_are_listed() {
        let c = Connection {
            access_key_id: Some("a".into()),
            session_token: Some("t".into()),
            endpoint_url: Some("localhost:5000".into()),
            max_attempts: 0,
            ..Connection::default()
        };
        let problems = c.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`secret_access_key`"));
        assert!(problems[1].contains("http://"));
        assert!(problems[2].contains("`max_attempts`"));
        assert!(
            Connection {
                max_attempts: 3,
                ..Connection::default()
            }
            .problems()
            .is_empty()
        );
    }
}
