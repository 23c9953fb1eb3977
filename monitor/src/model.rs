//! What the API and the store exchange: pipelines, runs, samples, log lines and run reports.
//!
//! Field names follow the original fastlane's API (`pipeline_id`, `pipeline_type`,
//! `rows_loaded`, `start_offset`, `memory_usage` in MB, …). Times are ISO 8601 in UTC with a
//! `Z` (the original sent naive local times); inputs without a zone are taken as UTC.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// Full table or incremental, as the original's `pipeline_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PipelineType {
    /// Rows after the target's offset.
    #[serde(rename = "INCREMENTAL")]
    Incremental,
    /// The whole table.
    #[serde(rename = "FULL_TABLE")]
    FullTable,
}

impl PipelineType {
    /// The stored and serialised value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incremental => "INCREMENTAL",
            Self::FullTable => "FULL_TABLE",
        }
    }

    /// Parses a stored or query value (case-insensitive, as the original's enum names and
    /// values were both in use).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "INCREMENTAL" => Some(Self::Incremental),
            "FULL_TABLE" => Some(Self::FullTable),
            _ => None,
        }
    }
}

/// The status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Running now (or stopped reporting; see `last_report_at`).
    Running,
    /// Finished; the target committed.
    Completed,
    /// A stage failed; the target was aborted.
    Failed,
    /// Ended by its process without a result (the original's status, kept for its clients).
    Exited,
    /// Stopped on request (signal or the API); the target was aborted or committed cleanly.
    Stopped,
}

impl RunStatus {
    /// The stored and serialised value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Exited => "exited",
            Self::Stopped => "stopped",
        }
    }

    /// Parses a stored or query value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "exited" => Self::Exited,
            "stopped" => Self::Stopped,
            _ => return None,
        })
    }

    /// Every status.
    pub const ALL: [RunStatus; 5] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Exited,
        Self::Stopped,
    ];
}

/// A pipeline: one source, transform and target, identified as the original did
/// (`<target_id>.<source_type>.<target_type>`, or the configuration's `name`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    /// The pipeline id.
    pub id: String,
    /// The source's type (`mysql`, `file`, …).
    pub source_type: String,
    /// The target's type.
    pub target_type: String,
    /// `FULL_TABLE` or `INCREMENTAL`.
    pub pipeline_type: PipelineType,
    /// The pipeline's configuration, with secrets redacted.
    #[schema(value_type = Object)]
    pub config: Value,
    /// When it was registered.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Its latest run, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_run: Option<Box<PipelineRun>>,
}

/// A run of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PipelineRun {
    /// The run's number.
    pub id: i64,
    /// Its pipeline.
    pub pipeline_id: String,
    /// The engine's run id (`20261124T014626Z-3fa2c1`), when the run reported itself.
    pub run_key: Option<String>,
    /// Its status.
    pub status: RunStatus,
    /// The CloudWatch log stream, or `""`.
    pub cloudwatch_log_stream: String,
    /// The CloudWatch Logs group of that stream, when the run said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudwatch_log_group: Option<String>,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub finished: Option<String>,
    /// Seconds from `started` to `finished` (or to its last report while running).
    pub duration_secs: Option<f64>,
    /// Rows written to the target.
    pub rows_loaded: i64,
    /// Rows read from the source.
    pub rows_extracted: i64,
    /// Bytes written to the target (Arrow memory).
    pub bytes_loaded: i64,
    /// Peak resident memory, MB (10^6 bytes).
    pub peak_memory_usage: f64,
    /// Where an incremental run started (exclusive).
    pub start_offset: Option<String>,
    /// Where it ended.
    pub end_offset: Option<String>,
    /// The error of a failed run, with its causes.
    pub error: Option<String>,
    /// Per-stage totals: rows, bytes, batches, busy seconds, rows/s.
    #[schema(value_type = Option<Object>)]
    pub stages: Option<Value>,
    /// A stop was requested through the API.
    pub stop_requested: bool,
    /// When the run last reported.
    pub last_report_at: Option<String>,
    /// When the record was created.
    pub created_at: String,
    /// When the record last changed.
    pub updated_at: String,
}

/// Depth of one queue at a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSample {
    /// `source→transform` or `transform→target`.
    pub name: String,
    /// Batches waiting.
    pub batches: u64,
    /// Bytes waiting.
    pub bytes: u64,
}

/// One sample of a run's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The reporter's sequence number (a resent sample is stored once).
    #[serde(default)]
    pub seq: Option<i64>,
    /// When it was taken.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Seconds since the run started.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub elapsed_secs: Option<f64>,
    /// Rows written per second since the previous sample.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rps: Option<f64>,
    /// Resident memory, MB (10^6 bytes).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub memory_usage: Option<f64>,
    /// Rows written so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_loaded: Option<i64>,
    /// Bytes written so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub bytes_loaded: Option<i64>,
    /// Rows read so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub source_rows: Option<i64>,
    /// Rows transformed so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub transform_rows: Option<i64>,
    /// Rows read per second since the previous sample.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub source_rps: Option<f64>,
    /// Rows transformed per second since the previous sample.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub transform_rps: Option<f64>,
    /// Queue depths.
    #[serde(default, deserialize_with = "crate::strict::optional_objects")]
    #[schema(max_items = 16)]
    pub queues: Option<Vec<QueueSample>>,
}

/// A log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The reporter's sequence number (a resent line is stored once).
    #[serde(default)]
    pub seq: Option<i64>,
    /// When it was logged.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    #[serde(default = "default_level")]
    #[schema(value_type = LogLevel)]
    pub level: String,
    /// The module or plugin that logged it.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub target: String,
    /// The message.
    #[schema(max_length = 65536)]
    pub message: String,
}

/// A log level, most severe first (any case is accepted).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Progress.
    Info,
    /// Details.
    Debug,
    /// Everything.
    Trace,
}

fn default_level() -> String {
    "INFO".into()
}

/// The body of `POST /api/pipeline`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPipeline {
    /// The pipeline id.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub pipeline_id: String,
    /// The source's type.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub source_type: String,
    /// The target's type.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub target_type: String,
    /// `FULL_TABLE` or `INCREMENTAL`.
    pub pipeline_type: PipelineType,
    /// The configuration (secrets are redacted before it is stored).
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// The body of `PUT /api/pipeline`: the fields present are changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineUpdate {
    /// The pipeline id.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub pipeline_id: String,
    /// The source's type.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub source_type: Option<String>,
    /// The target's type.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub target_type: Option<String>,
    /// `FULL_TABLE` or `INCREMENTAL`.
    #[serde(default)]
    pub pipeline_type: Option<PipelineType>,
    /// The configuration.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
}

/// The body of `POST /api/pipeline/run`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The pipeline (it must exist).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub pipeline_id: String,
    /// The status [default: running].
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// The CloudWatch log stream [default: ""].
    #[serde(default)]
    pub cloudwatch_log_stream: Option<String>,
    /// When it started [default: now].
    #[serde(default)]
    #[schema(format = DateTime)]
    pub started: Option<String>,
    /// When it ended.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub finished: Option<String>,
    /// Rows written [default: 0].
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_loaded: Option<i64>,
    /// Where it starts (a string, or any JSON value stored as its text).
    #[serde(default)]
    #[schema(value_type = Value)]
    pub start_offset: Option<Value>,
    /// Where it ended.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub end_offset: Option<Value>,
}

/// The body of `PUT /api/pipeline/run`: the fields present are changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunUpdate {
    /// The run.
    pub pipeline_run_id: i64,
    /// A new status.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// The CloudWatch log stream.
    #[serde(default)]
    pub cloudwatch_log_stream: Option<String>,
    /// When it started.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub started: Option<String>,
    /// When it ended.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub finished: Option<String>,
    /// Rows written.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_loaded: Option<i64>,
    /// Where it started.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub start_offset: Option<Value>,
    /// Where it ended.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub end_offset: Option<Value>,
    /// The error of a failed run.
    #[serde(default)]
    pub error: Option<String>,
}

/// The body of `POST /api/pipeline/run/rps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRps {
    /// The run.
    pub pipeline_run_id: i64,
    /// Records per second.
    #[schema(minimum = 0)]
    pub rps: f64,
}

/// The body of `POST /api/pipeline/run/memory_usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemory {
    /// The run.
    pub pipeline_run_id: i64,
    /// Resident memory, MB (10^6 bytes).
    #[schema(minimum = 0)]
    pub memory_usage: f64,
}

/// A log line in `POST /api/pipeline/run/logs`: a bare message or a structured line.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LogInput {
    /// A message logged at INFO, now.
    Message(String),
    /// A structured line.
    Line(LogLine),
}

impl<'de> Deserialize<'de> for LogInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(m) => Ok(Self::Message(m)),
            v @ Value::Object(_) => crate::strict::from_object(v)
                .map(Self::Line)
                .map_err(|e| D::Error::custom(e.trim_start_matches(": "))),
            v => Err(D::Error::custom(format!(
                "invalid type: {}, expected a message or a log line object",
                crate::strict::kind(&v)
            ))),
        }
    }
}

/// The body of `POST /api/pipeline/run/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLogs {
    /// The run.
    pub pipeline_run_id: i64,
    /// The lines.
    #[schema(max_items = 10000)]
    pub logs: Vec<LogInput>,
}

/// One `rps` point of `GET /api/pipeline/run/rps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RpsPoint {
    /// The run.
    pub pipeline_run_id: i64,
    /// Records per second.
    pub rps: f64,
    /// When it was taken.
    pub created_at: String,
}

/// One point of `GET /api/pipeline/run/memory_usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoryPoint {
    /// The run.
    pub pipeline_run_id: i64,
    /// Resident memory, MB (10^6 bytes).
    pub memory_usage: f64,
    /// When it was taken.
    pub created_at: String,
}

/// `GET /api/pipeline/run/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Logs {
    /// The messages, oldest first (the original's field).
    pub logs: Vec<String>,
    /// The same lines with their time, level and origin.
    pub entries: Vec<LogEntry>,
    /// Pass as `after` to get the lines logged since.
    pub next_after: Option<i64>,
    /// Where the lines were read: `store`, or `cloudwatch` for a run whose lines went to
    /// CloudWatch Logs.
    #[serde(default = "store_source")]
    pub source: String,
    /// Why lines kept in CloudWatch Logs were read from the store instead, when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn store_source() -> String {
    "store".to_owned()
}

/// A stored log line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// Its position in the store.
    pub id: i64,
    /// When it was logged.
    pub created_at: String,
    /// The level.
    pub level: String,
    /// The module or plugin that logged it.
    pub target: String,
    /// The message.
    pub message: String,
}

/// The pipeline part of a run report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportPipeline {
    /// The pipeline id.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub pipeline_id: String,
    /// The source's type.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub source_type: String,
    /// The target's type.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub target_type: String,
    /// `FULL_TABLE` or `INCREMENTAL`.
    pub pipeline_type: PipelineType,
    /// The configuration (redacted again by the service).
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// The state of a run in a report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRun {
    /// Its status.
    pub status: RunStatus,
    /// When it started.
    #[schema(format = DateTime)]
    pub started: String,
    /// When it ended.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub finished: Option<String>,
    /// Rows written so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_loaded: i64,
    /// Rows read so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_extracted: i64,
    /// Bytes written so far.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub bytes_loaded: i64,
    /// Peak resident memory, MB.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub peak_memory_usage: f64,
    /// Where it started.
    #[serde(default)]
    pub start_offset: Option<String>,
    /// Where it ended.
    #[serde(default)]
    pub end_offset: Option<String>,
    /// The error of a failed run.
    #[serde(default)]
    pub error: Option<String>,
    /// The CloudWatch Logs stream holding the run's log lines, when they were sent there.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub cloudwatch_log_stream: Option<String>,
    /// The CloudWatch Logs group of that stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub cloudwatch_log_group: Option<String>,
    /// Per-stage totals (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub stages: Option<Map<String, Value>>,
}

/// What a run sends every few seconds (`POST /api/pipeline/run/report`): it registers the
/// pipeline and the run on first contact, and is safe to resend (samples and log lines carry
/// sequence numbers, the run its key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The engine's run id.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub run_key: String,
    /// The pipeline.
    #[serde(deserialize_with = "crate::strict::object")]
    pub pipeline: ReportPipeline,
    /// The run's state now.
    #[serde(deserialize_with = "crate::strict::object")]
    pub run: ReportRun,
    /// Samples since the last report.
    #[serde(default, deserialize_with = "crate::strict::objects")]
    pub samples: Vec<Sample>,
    /// Log lines since the last report.
    #[serde(default, deserialize_with = "crate::strict::objects")]
    pub logs: Vec<LogLine>,
}

/// The answer to a report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportAck {
    /// The run's number.
    pub pipeline_run_id: i64,
    /// The run should stop (a stop was requested through the API).
    pub stop_requested: bool,
}

/// Query of `GET /api/pipelines`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PipelineFilter {
    /// Only pipelines whose latest run has this status.
    pub pipeline_status: Option<RunStatus>,
    /// Only pipelines of this type (`FULL_TABLE`, `INCREMENTAL`).
    #[param(value_type = Option<PipelineType>)]
    pub pipeline_type: Option<String>,
    /// Only pipelines with this source type.
    pub source_type: Option<String>,
    /// Only pipelines with this target type.
    pub target_type: Option<String>,
    /// Only pipelines whose id contains this text.
    pub q: Option<String>,
    /// At most this many (1–1000) [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    pub offset: Option<i64>,
}

/// Query of `GET /api/pipeline/runs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    /// Only runs of this pipeline.
    pub pipeline_id: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs started at or after this time.
    #[param(format = DateTime)]
    pub start_date: Option<String>,
    /// Only runs started before this time.
    #[param(format = DateTime)]
    pub end_date: Option<String>,
    /// At most this many (1–1000) [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "crate::strict::query_int")]
    pub offset: Option<i64>,
}
