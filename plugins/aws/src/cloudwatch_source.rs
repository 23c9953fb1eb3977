//! The `cloudwatch_logs` source: the events of one CloudWatch Logs stream, oldest first, as
//! batches of `timestamp` (milliseconds, UTC) and `message`. The monitoring service reads a
//! run's log lines through it when they went to CloudWatch (`--logs_to_cloudwatch`).

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use aws_sdk_cloudwatchlogs::Client;
use fastlane_plugin_api::{BatchStream, Partition, PluginError, Result, Source};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::connection::{call_error, runtime, with_aws_settings};

with_aws_settings! {
/// Configuration of the `cloudwatch_logs` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsSourceConfig {
    /// The log group.
    #[schemars(length(min = 1, max = 512))]
    pub log_group: String,
    /// The log stream in the group.
    #[schemars(length(min = 1, max = 512))]
    pub log_stream: String,
    /// The most events read in all (the oldest first).
    #[schemars(range(min = 1))]
    pub max_events: Option<u64>,
}
}

/// The `cloudwatch_logs` source.
pub struct CloudWatchLogsSource {
    config: Arc<CloudWatchLogsSourceConfig>,
    client: Client,
}

impl CloudWatchLogsSource {
    /// Checks the settings and prepares the client (no request is sent yet).
    pub fn new(config: CloudWatchLogsSourceConfig) -> Result<Self> {
        let mut problems = config.connection().problems();
        if config.log_group.is_empty() || config.log_stream.is_empty() {
            problems.push("`log_group` and `log_stream` must not be empty".into());
        }
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        let client = Client::new(&config.connection().sdk_config());
        Ok(Self {
            config: Arc::new(config),
            client,
        })
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("message", DataType::Utf8, false),
    ]))
}

impl Source for CloudWatchLogsSource {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(Events {
            config: self.config.clone(),
            client: self.client.clone(),
            token: None,
            read: 0,
            done: false,
        }))
    }
}

/// Pages of `GetLogEvents`, forward from the stream's start.
struct Events {
    config: Arc<CloudWatchLogsSourceConfig>,
    client: Client,
    token: Option<String>,
    read: u64,
    done: bool,
}

impl BatchStream for Events {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let max = self.config.max_events.unwrap_or(u64::MAX);
        while !self.done && self.read < max {
            let mut request = self
                .client
                .get_log_events()
                .log_group_name(&self.config.log_group)
                .log_stream_name(&self.config.log_stream)
                .start_from_head(true);
            if let Some(t) = &self.token {
                request = request.next_token(t);
            }
            let page = runtime().block_on(request.send()).map_err(|e| {
                let missing = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if missing {
                    PluginError::not_found(format!(
                        "the log stream `{}` of the group `{}` does not exist",
                        self.config.log_stream, self.config.log_group
                    ))
                } else {
                    call_error(
                        &format!(
                            "cannot read the log stream `{}` of the group `{}`",
                            self.config.log_stream, self.config.log_group
                        ),
                        &e,
                    )
                }
            })?;
            // The forward token stays the same once the end is reached.
            let next = page.next_forward_token().map(str::to_owned);
            self.done = next.is_none() || next == self.token;
            self.token = next;
            let room = (max - self.read) as usize;
            let events: Vec<_> = page.events().iter().take(room).collect();
            if events.is_empty() {
                continue;
            }
            self.read += events.len() as u64;
            let times: TimestampMillisecondArray = events
                .iter()
                .map(|e| e.timestamp().unwrap_or_default())
                .collect::<Vec<i64>>()
                .into();
            let messages: StringArray = events
                .iter()
                .map(|e| Some(e.message().unwrap_or_default()))
                .collect();
            let batch = RecordBatch::try_new(
                schema(),
                vec![Arc::new(times.with_timezone("UTC")), Arc::new(messages)],
            )
            .map_err(PluginError::data)?;
            return Ok(Some(batch));
        }
        Ok(None)
    }
}
