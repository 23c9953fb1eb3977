//! The `cloudwatch_logs` target: rows as CloudWatch Logs events, sent with `PutLogEvents` in
//! chronological calls within the service's limits. The host's `--logs_to_cloudwatch` sends
//! the run's own log lines through it; a pipeline can use it as its target too.
//!
//! Each row is one event: its time from `timestamp_column` (a timestamp, or milliseconds since
//! the epoch; the time of writing when the column is absent or null), its text from
//! `message_column`, or the whole row as a JSON object when there is no such column.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result, Target, WriteContext, Writer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::connection::{call_error, runtime, with_aws_settings};

/// The most events one `PutLogEvents` call takes.
pub const MAX_EVENTS_PER_CALL: usize = 10_000;
/// The most bytes one call takes: messages in UTF-8 plus 26 bytes per event.
pub const MAX_BYTES_PER_CALL: usize = 1_048_576;
/// What each event counts on top of its message.
const EVENT_OVERHEAD: usize = 26;
/// The longest message kept whole; longer ones are cut, with a marker.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD;
/// The widest span of time one call may cover (24 hours, in milliseconds).
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;

with_aws_settings! {
/// Configuration of the `cloudwatch_logs` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsConfig {
    /// The log group.
    #[schemars(length(min = 1, max = 512))]
    pub log_group: String,
    /// The log stream in the group.
    #[schemars(length(min = 1, max = 512))]
    pub log_stream: String,
    /// Create the group and the stream when they are missing.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Retention of a group this target creates, in days (one of CloudWatch's values:
    /// 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, …).
    pub retention_days: Option<i32>,
    /// The column holding each event's time.
    #[serde(default = "default_timestamp_column")]
    pub timestamp_column: String,
    /// The column holding each event's text; without it, each row is sent as a JSON object.
    #[serde(default = "default_message_column")]
    pub message_column: String,
    /// The most events per `PutLogEvents` call (the service takes at most 10,000).
    #[serde(default = "default_events_per_call")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_events_per_call: usize,
    /// Number of target workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}
}

fn default_true() -> bool {
    true
}

fn default_timestamp_column() -> String {
    "timestamp".to_owned()
}

fn default_message_column() -> String {
    "message".to_owned()
}

fn default_events_per_call() -> usize {
    MAX_EVENTS_PER_CALL
}

/// The `cloudwatch_logs` target.
pub struct CloudWatchLogsTarget {
    config: Arc<CloudWatchLogsConfig>,
    client: Client,
    sent: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    empty: Arc<AtomicU64>,
}

impl CloudWatchLogsTarget {
    /// Checks the configuration and prepares the client (no request is sent yet).
    pub fn new(config: CloudWatchLogsConfig) -> Result<Self> {
        let mut problems = config.connection().problems();
        if !(1..=MAX_EVENTS_PER_CALL).contains(&config.max_events_per_call) {
            problems.push(format!(
                "`max_events_per_call` must be between 1 and {MAX_EVENTS_PER_CALL}"
            ));
        }
        if config.log_group.is_empty() || config.log_stream.is_empty() {
            problems.push("`log_group` and `log_stream` must not be empty".into());
        }
        if config.log_stream.contains(':') || config.log_stream.contains('*') {
            problems.push(format!(
                "`log_stream` `{}` must not contain `:` or `*`",
                config.log_stream
            ));
        }
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        let client = Client::new(&config.connection().sdk_config());
        Ok(Self {
            config: Arc::new(config),
            client,
            sent: Arc::default(),
            rejected: Arc::default(),
            empty: Arc::default(),
        })
    }

    /// Creates the group (with its retention) and the stream, unless they exist.
    async fn create(&self) -> Result<()> {
        let group = &self.config.log_group;
        let stream = &self.config.log_stream;
        match self
            .client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
        {
            Ok(_) => {
                if let Some(days) = self.config.retention_days {
                    self.client
                        .put_retention_policy()
                        .log_group_name(group)
                        .retention_in_days(days)
                        .send()
                        .await
                        .map_err(|e| {
                            call_error(&format!("cannot set the retention of `{group}`"), &e)
                        })?;
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            // A role may write to an existing group without the right to create groups: the
            // stream's creation says whether the group is there.
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata::code)
                    == Some("AccessDeniedException") =>
            {
                log::debug!("not allowed to create the log group `{group}`; using it as it is");
            }
            Err(e) => {
                return Err(call_error(
                    &format!("cannot create the log group `{group}`"),
                    &e,
                ));
            }
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(call_error(
                &format!("cannot create the log stream `{group}/{stream}`"),
                &e,
            )),
        }
    }
}

impl Target for CloudWatchLogsTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(None)
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        if context.mode == ReplicationMode::Incremental {
            return Err(PluginError::unsupported(
                "the cloudwatch_logs target takes FULL_TABLE runs only: a log stream keeps no \
                 offset to continue from",
            ));
        }
        if self.config.create {
            runtime().block_on(self.create())?;
        }
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(LogsWriter {
            config: self.config.clone(),
            client: self.client.clone(),
            sent: self.sent.clone(),
            rejected: self.rejected.clone(),
            empty: self.empty.clone(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let empty = self.empty.load(Ordering::Relaxed);
        if empty > 0 {
            log::warn!(
                "{empty} rows with an empty or null `{}` were not sent: CloudWatch Logs takes no \
                 empty events",
                self.config.message_column
            );
        }
        let rejected = self.rejected.load(Ordering::Relaxed);
        if rejected > 0 {
            log::warn!(
                "CloudWatch Logs refused {rejected} events of `{}/{}` as too old or too new",
                self.config.log_group,
                self.config.log_stream
            );
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One event, before it is sent.
#[derive(Debug, PartialEq)]
struct Event {
    timestamp: i64,
    message: String,
}

struct LogsWriter {
    config: Arc<CloudWatchLogsConfig>,
    client: Client,
    sent: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    empty: Arc<AtomicU64>,
}

impl LogsWriter {
    async fn put(&self, events: Vec<InputLogEvent>) -> Result<()> {
        let group = &self.config.log_group;
        let stream = &self.config.log_stream;
        let n = events.len();
        let out = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    PluginError::not_found(format!(
                        "the log stream `{group}/{stream}` does not exist"
                    ))
                } else {
                    call_error(&format!("cannot put log events to `{group}/{stream}`"), &e)
                }
            })?;
        let mut rejected = 0usize;
        if let Some(info) = out.rejected_log_events_info() {
            let old = info
                .too_old_log_event_end_index()
                .max(info.expired_log_event_end_index())
                .map_or(0, |i| i as usize + 1);
            let new = info
                .too_new_log_event_start_index()
                .map_or(0, |i| n.saturating_sub(i as usize));
            rejected = (old + new).min(n);
        }
        self.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        self.sent
            .fetch_add((n - rejected) as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Writer for LogsWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut events = events(&batch, &self.config)?;
        let empty = batch.num_rows() - events.len();
        self.empty.fetch_add(empty as u64, Ordering::Relaxed);
        // One call must be in chronological order; a stable sort keeps lines of the same
        // millisecond in the order they came.
        events.sort_by_key(|e| e.timestamp);
        for call in calls(events, self.config.max_events_per_call) {
            runtime().block_on(self.put(call))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Splits chronological events into calls within the service's limits.
fn calls(events: Vec<Event>, max_events: usize) -> Vec<Vec<InputLogEvent>> {
    let mut calls = Vec::new();
    let mut current: Vec<InputLogEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut first = 0i64;
    for e in events {
        let size = e.message.len() + EVENT_OVERHEAD;
        if !current.is_empty()
            && (current.len() >= max_events
                || bytes + size > MAX_BYTES_PER_CALL
                || e.timestamp - first > MAX_SPAN_MS)
        {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        if current.is_empty() {
            first = e.timestamp;
        }
        bytes += size;
        // Both fields are set, so building cannot fail.
        if let Ok(event) = InputLogEvent::builder()
            .timestamp(e.timestamp)
            .message(e.message)
            .build()
        {
            current.push(event);
        }
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

/// Cuts a message to what one event takes, at a character boundary, with a marker.
fn clip(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    const MARK: &str = " …[cut]";
    let mut end = MAX_MESSAGE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(MARK);
    message
}

/// The events of a batch.
fn events(batch: &RecordBatch, config: &CloudWatchLogsConfig) -> Result<Vec<Event>> {
    let now = chrono::Utc::now().timestamp_millis();
    let rows = batch.num_rows();
    let times: Vec<Option<i64>> = match batch.column_by_name(&config.timestamp_column) {
        None => vec![None; rows],
        Some(col) => millis(col.as_ref(), &config.timestamp_column)?,
    };
    let messages: Vec<String> = match batch.column_by_name(&config.message_column) {
        Some(col) => match col.data_type() {
            DataType::Utf8 => col
                .as_string::<i32>()
                .iter()
                .map(|m| m.unwrap_or("").to_owned())
                .collect(),
            DataType::LargeUtf8 => col
                .as_string::<i64>()
                .iter()
                .map(|m| m.unwrap_or("").to_owned())
                .collect(),
            DataType::Utf8View => col
                .as_string_view()
                .iter()
                .map(|m| m.unwrap_or("").to_owned())
                .collect(),
            other => {
                return Err(PluginError::data(format!(
                    "the message column `{}` is {other}, not text",
                    config.message_column
                )));
            }
        },
        None => {
            let mut text = Vec::new();
            {
                let mut json = arrow_json::LineDelimitedWriter::new(&mut text);
                json.write(batch).map_err(PluginError::data)?;
                json.finish().map_err(PluginError::data)?;
            }
            String::from_utf8(text)
                .map_err(PluginError::data)?
                .lines()
                .map(str::to_owned)
                .collect()
        }
    };
    // CloudWatch refuses a whole call for one empty message: such rows are left out, and
    // counted.
    Ok(times
        .into_iter()
        .zip(messages)
        .filter(|(_, m)| !m.is_empty())
        .map(|(t, m)| Event {
            timestamp: t.unwrap_or(now),
            message: clip(m),
        })
        .collect())
}

/// A time column in milliseconds since the epoch.
fn millis(col: &dyn Array, name: &str) -> Result<Vec<Option<i64>>> {
    let out = match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().iter().collect(),
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.map(|s| s.saturating_mul(1000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| v.map(|us| us.div_euclid(1000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => col
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|ns| ns.div_euclid(1_000_000)))
            .collect(),
        other => {
            return Err(PluginError::data(format!(
                "the time column `{name}` is {other}; it must be a timestamp or an Int64 of \
                 milliseconds since the epoch"
            )));
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int32Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn config() -> CloudWatchLogsConfig {
        serde_json::from_value(serde_json::json!({"log_group": "g", "log_stream": "s"})).unwrap()
    }

    #[test]
    fn rows_become_events() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("message", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![Some(2_000_999), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
            ],
        )
        .unwrap();
        let e = events(&batch, &config()).unwrap();
        assert_eq!(
            e[0],
            Event {
                timestamp: 2000,
                message: "a".into()
            }
        );
        assert_eq!(e[1].message, "b");
        assert!(e[1].timestamp > 1_700_000_000_000);
    }

    #[test]
    fn rows_without_text_are_left_out() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "message",
            DataType::Utf8,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some(""), None, Some("x")]))],
        )
        .unwrap();
        let e = events(&batch, &config()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].message, "x");
    }

    #[test]
    fn rows_without_a_message_column_are_json() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        let e = events(&batch, &config()).unwrap();
        assert_eq!(e[1].message, r#"{"n":2}"#);
    }

    #[test]
    fn calls_respect_the_limits() {
        let many: Vec<Event> = (0..25_000)
            .map(|i| Event {
                timestamp: i,
                message: "x".into(),
            })
            .collect();
        let sizes: Vec<usize> = calls(many, MAX_EVENTS_PER_CALL)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10_000, 10_000, 5_000]);

        let big: Vec<Event> = (0..10)
            .map(|i| Event {
                timestamp: i,
                message: "y".repeat(200_000),
            })
            .collect();
        let split = calls(big, MAX_EVENTS_PER_CALL);
        assert!(split.iter().all(|c| c.len() <= 5), "{}", split.len());

        let wide = vec![
            Event {
                timestamp: 0,
                message: "a".into(),
            },
            Event {
                timestamp: MAX_SPAN_MS + 1,
                message: "b".into(),
            },
        ];
        assert_eq!(calls(wide, 10).len(), 2);
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let cut = clip("é".repeat(MAX_MESSAGE_BYTES));
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.ends_with("[cut]"));
        assert_eq!(clip("short".into()), "short");
    }
}
