//! The `secretsmanager` source: reads one secret from AWS Secrets Manager as a one-row batch
//! (`secret`, `value`). The host uses it to resolve the `secret` / `secret_region` settings of
//! any connector; the value never reaches a log line or an error message.

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use aws_sdk_secretsmanager::Client;
use fastlane_plugin_api::{BatchStream, IterStream, Partition, PluginError, Result, Source};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::connection::{call_error, runtime, with_aws_settings};

with_aws_settings! {
/// Configuration of the `secretsmanager` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerConfig {
    /// The secret's name or ARN.
    #[schemars(length(min = 1))]
    pub secret: String,
    /// The version stage to read (default `AWSCURRENT`).
    pub version_stage: Option<String>,
}
}

/// The `secretsmanager` source.
pub struct SecretsManagerSource {
    config: SecretsManagerConfig,
    client: Client,
}

impl SecretsManagerSource {
    /// Checks the settings and prepares the client.
    pub fn new(config: SecretsManagerConfig) -> Result<Self> {
        let connection = config.connection();
        let problems = connection.problems();
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        let client = Client::new(&connection.sdk_config());
        Ok(Self { config, client })
    }

    /// The secret's text: `SecretString`, or `SecretBinary` when it is UTF-8.
    pub fn fetch(&self) -> Result<String> {
        let name = &self.config.secret;
        let mut request = self.client.get_secret_value().secret_id(name);
        if let Some(stage) = &self.config.version_stage {
            request = request.version_stage(stage);
        }
        let out = runtime().block_on(request.send()).map_err(|e| {
            let not_found = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception());
            if not_found {
                PluginError::not_found(format!("the secret `{name}` does not exist"))
            } else {
                call_error(&format!("cannot read the secret `{name}`"), &e)
            }
        })?;
        if let Some(text) = out.secret_string() {
            return Ok(text.to_owned());
        }
        if let Some(blob) = out.secret_binary() {
            return String::from_utf8(blob.as_ref().to_vec()).map_err(|_| {
                PluginError::data(format!("the secret `{name}` is binary, not text"))
            });
        }
        Err(PluginError::data(format!(
            "the secret `{name}` has no value"
        )))
    }
}

impl Source for SecretsManagerSource {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let value = self.fetch()?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("secret", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![self.config.secret.clone()])),
                Arc::new(StringArray::from(vec![value])),
            ],
        )?;
        Ok(Box::new(IterStream(std::iter::once(Ok(batch)))))
    }
}
