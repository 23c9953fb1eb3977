//! Log sinks beside standard error and the log file: CloudWatch Logs (`--logs_to_cloudwatch`,
//! `logs.log_to_cloudwatch`) and a Slack incoming webhook (`--logs_to_slack`,
//! `logs.error_log_to_slack`).
//!
//! Each sink has its own thread fed through a bounded queue, so a slow or unreachable service
//! never holds up the pipeline: when a queue is full, lines are counted as dropped and the
//! count is reported at the end. [`Sinks::finish`] sends what is left, with a time limit.
//!
//! CloudWatch goes through the `cloudwatch_logs` target of the `aws` plugin (group and stream
//! created when missing, batched `PutLogEvents`). Slack gets the error lines, gathered into
//! few messages and rate-limited, and the run's summary at the end. Neither ever logs the
//! webhook URL.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fastlane_plugin_api::{ComponentKind, ReplicationMode, Target, WriteContext, Writer};
use serde_json::{Value, json};
use tracing::Level;

use crate::config::{LogsConfig, PipelineConfig, Problem};
use crate::engine::{RunStatus, RunSummary};
use crate::plugins::Registry;
use crate::progress;

/// The environment variable holding the Slack webhook URL, when neither the flag nor the
/// configuration gives one.
pub const SLACK_URL_ENV: &str = "FASTLANE_SLACK_WEBHOOK_URL";

/// Lines a sink's queue holds before further lines are dropped.
const QUEUE_LINES: usize = 10_000;

/// Log targets never forwarded to a sink: the HTTP and AWS stacks the sinks themselves use,
/// and the sinks' own messages, which would otherwise feed back into them.
const QUIET_TARGETS: &[&str] = &[
    "aws",
    "hyper",
    "reqwest",
    "rustls",
    "h2",
    "tower",
    "fastlane_plugin_aws::cloudwatch",
    "fastlane_host::log_sinks",
];

/// One log line, as a sink receives it.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// Its level.
    pub level: Level,
    /// The module or plugin that logged it.
    pub target: String,
    /// The text.
    pub message: String,
}

impl LogLine {
    fn text(&self) -> String {
        format!("{} {}: {}", self.level, self.target, self.message)
    }

    /// The length of [`LogLine::text`], without building it.
    fn text_len(&self) -> usize {
        self.level.as_str().len() + self.target.len() + self.message.len() + 3
    }
}

struct Tap {
    id: u64,
    min: Level,
    /// Lines of this plugin (`plugin::<name>`) are taken only at INFO and above: the sink
    /// sends through it, and its AWS SDK's debug lines would otherwise come back.
    quiet_plugin: Option<String>,
    tx: Sender<LogLine>,
    dropped: Arc<AtomicU64>,
}

static TAPS: RwLock<Vec<Tap>> = RwLock::new(Vec::new());
static ANY_TAP: AtomicBool = AtomicBool::new(false);
static NEXT_TAP: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Set on a sink's own thread, so that whatever it logs is not sent back into a sink.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Hands a log line to the sinks that take its level (called by the logging layer).
pub fn forward(level: Level, target: &str, message: &str) {
    if !ANY_TAP.load(Ordering::Relaxed) || IN_SINK.with(Cell::get) {
        return;
    }
    if QUIET_TARGETS.iter().any(|t| target.starts_with(t)) {
        return;
    }
    let taps = TAPS.read().unwrap_or_else(|p| p.into_inner());
    let mut line: Option<LogLine> = None;
    for tap in taps.iter().filter(|t| {
        level <= t.min
            && (level <= Level::INFO || t.quiet_plugin.as_deref().is_none_or(|p| p != target))
    }) {
        let l = line
            .get_or_insert_with(|| LogLine {
                time_ms: chrono::Utc::now().timestamp_millis(),
                level,
                target: target.to_owned(),
                message: message.to_owned(),
            })
            .clone();
        if tap.tx.try_send(l).is_err() {
            tap.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A registered queue of lines; removing it (on drop) closes the queue.
struct TapHandle {
    id: u64,
    dropped: Arc<AtomicU64>,
}

impl TapHandle {
    fn add(min: Level, quiet_plugin: Option<String>) -> (Self, Receiver<LogLine>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_LINES);
        let id = NEXT_TAP.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut taps = TAPS.write().unwrap_or_else(|p| p.into_inner());
        taps.push(Tap {
            id,
            min,
            quiet_plugin,
            tx,
            dropped: dropped.clone(),
        });
        ANY_TAP.store(true, Ordering::Relaxed);
        (Self { id, dropped }, rx)
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        let mut taps = TAPS.write().unwrap_or_else(|p| p.into_inner());
        taps.retain(|t| t.id != self.id);
        ANY_TAP.store(!taps.is_empty(), Ordering::Relaxed);
    }
}

/// A sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration or the flags are wrong.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config {
        /// What is wrong, and where.
        problems: Vec<Problem>,
    },
    /// The service could not be reached or refused the sink.
    #[error("cannot send logs to {service}: {message}")]
    Start {
        /// `CloudWatch Logs` or `Slack`.
        service: &'static str,
        /// Why.
        message: String,
    },
}

/// What the command line adds to the `logs` section.
#[derive(Debug, Clone, Default)]
pub struct SinkFlags {
    /// `--logs_to_cloudwatch`.
    pub cloudwatch: bool,
    /// `--cloudwatch_log_group`.
    pub cloudwatch_log_group: Option<String>,
    /// `--cloudwatch_log_stream`.
    pub cloudwatch_log_stream: Option<String>,
    /// `--logs_to_slack`, with its URL when given (`--logs_to_slack=URL`).
    pub slack: Option<Option<String>>,
}

/// How a run ended, for the Slack summary.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// The engine ran and produced this summary.
    Ran(&'a RunSummary),
    /// The pipeline could not be built (a component failed to connect), with the error.
    NotStarted(&'a str),
}

/// The sinks of one run.
#[derive(Default)]
pub struct Sinks {
    cloudwatch: Option<CloudWatchSink>,
    slack: Option<SlackSink>,
}

impl Sinks {
    /// Starts the sinks that the configuration and the flags ask for. A CloudWatch group or
    /// stream that cannot be created is an error: the run should not go on without the logs
    /// it was asked to keep.
    pub fn start(
        config: &PipelineConfig,
        flags: &SinkFlags,
        registry: &Registry,
        pipeline_id: &str,
        run_id: &str,
    ) -> Result<Self, SinkError> {
        let logs = &config.logs;
        let mut problems = Vec::new();
        let slack = slack_settings(logs, flags, &mut problems);
        let cloudwatch = (flags.cloudwatch || logs.log_to_cloudwatch == Some(true))
            .then(|| cloudwatch_settings(logs, flags, pipeline_id, run_id, &mut problems));
        if !problems.is_empty() {
            return Err(SinkError::Config { problems });
        }
        let mut sinks = Sinks::default();
        if let Some(settings) = cloudwatch {
            sinks.cloudwatch = Some(CloudWatchSink::start(settings, registry, run_id)?);
        }
        if let Some(settings) = slack {
            sinks.slack = Some(SlackSink::start(settings, pipeline_id, run_id)?);
        }
        Ok(sinks)
    }

    /// Whether any sink is running.
    pub fn is_empty(&self) -> bool {
        self.cloudwatch.is_none() && self.slack.is_none()
    }

    /// The CloudWatch Logs group and stream the run's lines go to, when they do.
    pub fn cloudwatch_place(&self) -> Option<(&str, &str)> {
        self.cloudwatch
            .as_ref()
            .map(|c| (c.group.as_str(), c.stream.as_str()))
    }

    /// Sends what is left and the summary, waiting at most `limit` for each sink.
    pub fn finish(self, end: RunEnd<'_>, limit: Duration) {
        if let Some(s) = self.slack {
            s.finish(end, limit);
        }
        if let Some(c) = self.cloudwatch {
            c.finish(limit);
        }
    }
}

fn level(text: Option<&str>, default: Level) -> Level {
    match text.map(str::to_ascii_lowercase).as_deref() {
        Some("error") => Level::ERROR,
        Some("warn") => Level::WARN,
        Some("info") => Level::INFO,
        Some("debug") => Level::DEBUG,
        Some("trace") => Level::TRACE,
        _ => default,
    }
}

/// A log group name made of the characters CloudWatch takes (the default group of a
/// pipeline's lines).
pub fn group_name(pipeline_id: &str) -> String {
    let name: String = pipeline_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_/#".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(512)
        .collect();
    if name.is_empty() {
        "fastlane".to_owned()
    } else {
        name
    }
}

// ---------------------------------------------------------------------------------------------
// CloudWatch Logs

struct CloudWatchSettings {
    group: String,
    stream: String,
    level: Level,
    flush_interval: Duration,
    target_config: Value,
}

fn cloudwatch_settings(
    logs: &LogsConfig,
    flags: &SinkFlags,
    pipeline_id: &str,
    run_id: &str,
    problems: &mut Vec<Problem>,
) -> CloudWatchSettings {
    let c = &logs.cloudwatch;
    let group = flags
        .cloudwatch_log_group
        .clone()
        .or_else(|| c.log_group.clone())
        .unwrap_or_else(|| group_name(pipeline_id));
    if group.is_empty()
        || group.len() > 512
        || !group
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ".-_/#".contains(ch))
    {
        problems.push(Problem {
            path: "--cloudwatch_log_group".into(),
            message: format!(
                "`{group}` is not a log group name: 1 to 512 of the characters A-Z a-z 0-9 . - _ / #"
            ),
        });
    }
    let stream = flags
        .cloudwatch_log_stream
        .clone()
        .or_else(|| c.log_stream.clone())
        .unwrap_or_else(|| {
            format!(
                "{}-{run_id}",
                chrono::Utc::now().format("%Y.%m.%d-%H.%M.%S")
            )
        });
    if stream.is_empty() || stream.len() > 512 || stream.contains([':', '*']) {
        problems.push(Problem {
            path: "--cloudwatch_log_stream".into(),
            message: format!(
                "`{stream}` is not a log stream name: 1 to 512 characters, without `:` or `*`"
            ),
        });
    }
    let mut target_config = json!({
        "log_group": group,
        "log_stream": stream,
        "create": true,
        "timestamp_column": "timestamp",
        "message_column": "message",
    });
    for (key, value) in [
        ("region", c.region.as_ref().map(|v| json!(v))),
        ("endpoint_url", c.endpoint_url.as_ref().map(|v| json!(v))),
        ("profile", c.profile.as_ref().map(|v| json!(v))),
        ("retention_days", c.retention_days.map(|v| json!(v))),
    ] {
        if let Some(v) = value {
            target_config[key] = v;
        }
    }
    CloudWatchSettings {
        group,
        stream,
        level: level(c.level.as_deref(), Level::INFO),
        flush_interval: Duration::from_secs_f64(c.flush_interval_secs.unwrap_or(5.0).max(0.1)),
        target_config,
    }
}

/// The most lines kept for a retry after a failed send; older ones are given up.
const CLOUDWATCH_KEEP: usize = 50_000;
/// Lines that make a send before the interval is up.
const CLOUDWATCH_BATCH: usize = 1_000;

struct CloudWatchSink {
    group: String,
    stream: String,
    tap: Option<TapHandle>,
    done: Receiver<CloudWatchTotals>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct CloudWatchTotals {
    sent: u64,
    lost: u64,
    last_error: Option<String>,
}

impl CloudWatchSink {
    fn start(
        settings: CloudWatchSettings,
        registry: &Registry,
        run_id: &str,
    ) -> Result<Self, SinkError> {
        let start_err = |message: String| SinkError::Start {
            service: "CloudWatch Logs",
            message,
        };
        let component = registry
            .find(ComponentKind::Target, "cloudwatch_logs")
            .ok_or_else(|| {
                start_err(
                    "no plugin provides the `cloudwatch_logs` target; the `aws` plugin must be \
                     installed (see `fastlane plugins list`)"
                        .into(),
                )
            })?;
        let plugin = component.plugin.as_ref().ok_or_else(|| {
            start_err("the `cloudwatch_logs` target is not a plugin target".into())
        })?;
        let mut target = plugin
            .create_target("cloudwatch_logs", &settings.target_config)
            .map_err(|e| start_err(e.to_string()))?;
        target
            .open(&WriteContext {
                mode: ReplicationMode::FullTable,
                run_id: run_id.to_owned(),
                concurrency: 1,
                checkpoint: None,
            })
            .map_err(|e| start_err(e.to_string()))?;
        let writer = target.writer(0).map_err(|e| start_err(e.to_string()))?;
        let quiet = format!("plugin::{}", plugin.name);
        let (tap, lines) = TapHandle::add(settings.level, Some(quiet));
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let interval = settings.flush_interval;
        let thread = std::thread::Builder::new()
            .name("fastlane-cloudwatch-logs".into())
            .spawn(move || {
                IN_SINK.with(|f| f.set(true));
                let mut target: Box<dyn Target> = Box::new(target);
                let totals = cloudwatch_loop(lines, writer, &mut target, interval);
                let _ = done_tx.send(totals);
            })
            .map_err(|e| start_err(format!("cannot start its thread: {e}")))?;
        tracing::info!(
            "sending log lines to CloudWatch Logs: group `{}`, stream `{}`",
            settings.group,
            settings.stream
        );
        Ok(Self {
            group: settings.group,
            stream: settings.stream,
            tap: Some(tap),
            done,
            thread: Some(thread),
        })
    }

    fn finish(mut self, limit: Duration) {
        let dropped = self.tap.as_ref().map_or(0, TapHandle::dropped);
        // Removing the tap closes the queue: the thread sends what is left and ends.
        self.tap = None;
        match self.done.recv_timeout(limit) {
            Ok(t) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                let lost = t.lost + dropped;
                if lost > 0 {
                    tracing::warn!(
                        "CloudWatch Logs: {} lines sent to `{}/{}`, {lost} lost{}",
                        t.sent,
                        self.group,
                        self.stream,
                        t.last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    );
                } else {
                    tracing::debug!(
                        "CloudWatch Logs: {} lines sent to `{}/{}`",
                        t.sent,
                        self.group,
                        self.stream
                    );
                }
            }
            Err(_) => tracing::warn!(
                "CloudWatch Logs did not take the last lines of `{}/{}` within {:.0} s; they are lost",
                self.group,
                self.stream,
                limit.as_secs_f64()
            ),
        }
    }
}

fn cloudwatch_loop(
    lines: Receiver<LogLine>,
    mut writer: Box<dyn Writer>,
    target: &mut Box<dyn Target>,
    interval: Duration,
) -> CloudWatchTotals {
    let mut totals = CloudWatchTotals::default();
    let mut pending: Vec<LogLine> = Vec::new();
    let mut deadline = Instant::now() + interval;
    // After a failed send, nothing is sent again before this (growing) backoff has passed.
    let mut backoff = Duration::ZERO;
    let mut retry_at: Option<Instant> = None;
    let mut open = true;
    while open {
        let wake = retry_at.map_or(deadline, |r| r.max(deadline));
        match lines.recv_deadline(wake) {
            Ok(line) => {
                pending.push(line);
                if pending.len() > CLOUDWATCH_KEEP {
                    // Beyond the limit the oldest lines are given up.
                    let excess = pending.len() - CLOUDWATCH_KEEP;
                    pending.drain(..excess);
                    totals.lost += excess as u64;
                }
                let waiting = retry_at.is_some_and(|r| Instant::now() < r);
                if pending.len() < CLOUDWATCH_BATCH || waiting {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        deadline = Instant::now() + interval;
        if open && retry_at.is_some_and(|r| Instant::now() < r) {
            continue;
        }
        // One call's worth at a time, so that a failure never sends accepted lines again.
        while !pending.is_empty() {
            let n = one_call(&pending);
            match writer.write(log_batch(&pending[..n])) {
                Ok(()) => {
                    totals.sent += n as u64;
                    pending.drain(..n);
                    backoff = Duration::ZERO;
                    retry_at = None;
                }
                Err(e) => {
                    let message = e.to_string();
                    if totals.last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(
                            "CloudWatch Logs: {message}; the lines are kept for a retry"
                        );
                    }
                    totals.last_error = Some(message);
                    backoff = (backoff * 2).clamp(Duration::from_secs(2), Duration::from_secs(60));
                    retry_at = Some(Instant::now() + backoff);
                    break;
                }
            }
        }
        if !open {
            totals.lost += pending.len() as u64;
        }
    }
    if let Err(e) = writer.close().and_then(|()| target.commit()) {
        totals.last_error = Some(e.to_string());
    }
    totals
}

/// How many of `lines` fit one `PutLogEvents` call (10,000 events, 1 MiB with 26 bytes per
/// event; the target cuts a longer message to 256 KiB); at least one.
fn one_call(lines: &[LogLine]) -> usize {
    let mut bytes = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let size = line.text_len().min(256 * 1024) + 26;
        if i > 0 && (i >= 10_000 || bytes + size > 1_000_000) {
            return i;
        }
        bytes += size;
    }
    lines.len()
}

/// The lines as the `cloudwatch_logs` target takes them: `timestamp` (ms) and `message`.
fn log_batch(lines: &[LogLine]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Int64, false),
        Field::new("message", DataType::Utf8, false),
    ]));
    let times: ArrayRef = Arc::new(Int64Array::from_iter_values(
        lines.iter().map(|l| l.time_ms),
    ));
    let messages: ArrayRef = Arc::new(StringArray::from_iter_values(
        lines.iter().map(LogLine::text),
    ));
    RecordBatch::try_new(schema, vec![times, messages]).expect("both columns match the schema")
}

// ---------------------------------------------------------------------------------------------
// Slack

struct SlackSettings {
    url: String,
    level: Level,
    per_minute: u32,
    summary: bool,
    extra: serde_json::Map<String, Value>,
}

fn slack_settings(
    logs: &LogsConfig,
    flags: &SinkFlags,
    problems: &mut Vec<Problem>,
) -> Option<SlackSettings> {
    let s = &logs.slack;
    if flags.slack.is_none() && logs.error_log_to_slack != Some(true) {
        return None;
    }
    let (url, path) = match flags.slack.clone().flatten() {
        Some(url) => (Some(url), "--logs_to_slack"),
        None => match s.webhook_url.clone() {
            Some(url) => (Some(url), "logs.slack.webhook_url"),
            None => (
                std::env::var(SLACK_URL_ENV).ok().filter(|u| !u.is_empty()),
                SLACK_URL_ENV,
            ),
        },
    };
    let url = match url {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => u,
        Some(_) => {
            problems.push(Problem {
                path: path.into(),
                message: "the Slack webhook URL must start with https:// (or http://)".into(),
            });
            return None;
        }
        None => {
            problems.push(Problem {
                path: "logs.slack.webhook_url".into(),
                message: format!(
                    "Slack logging needs an incoming-webhook URL: `logs.slack.webhook_url` \
                     (e.g. \"${{SLACK_WEBHOOK_URL}}\"), --logs_to_slack=URL or {SLACK_URL_ENV}"
                ),
            });
            return None;
        }
    };
    let mut extra = serde_json::Map::new();
    for (key, value) in [
        ("username", &s.username),
        ("channel", &s.channel),
        ("icon_emoji", &s.icon_emoji),
    ] {
        if let Some(v) = value {
            extra.insert(key.into(), json!(v));
        }
    }
    if !extra.contains_key("username") {
        extra.insert("username".into(), json!("fastlane"));
    }
    Some(SlackSettings {
        url,
        level: level(s.level.as_deref(), Level::ERROR),
        per_minute: s.max_messages_per_minute.unwrap_or(10).clamp(1, 60),
        summary: s.summary.unwrap_or(true),
        extra,
    })
}

/// Lines listed in one message; the rest are counted.
const SLACK_LINES: usize = 20;
/// Characters kept of each line.
const SLACK_LINE_CHARS: usize = 1_500;
/// How long lines are gathered into one message after the first.
const SLACK_GATHER: Duration = Duration::from_millis(1_500);
/// Attempts of one message (429 and 5xx answers, connection errors).
const SLACK_ATTEMPTS: u32 = 4;

struct SlackSink {
    tap: Option<TapHandle>,
    summary: Sender<String>,
    done: Receiver<SlackTotals>,
    thread: Option<JoinHandle<()>>,
    pipeline_id: String,
    wants_summary: bool,
}

#[derive(Debug, Default)]
struct SlackTotals {
    messages: u64,
    failed: u64,
    lines_not_sent: u64,
    last_error: Option<String>,
}

impl SlackSink {
    fn start(settings: SlackSettings, pipeline_id: &str, run_id: &str) -> Result<Self, SinkError> {
        let start_err = |message: String| SinkError::Start {
            service: "Slack",
            message,
        };
        let (tap, lines) = TapHandle::add(settings.level, None);
        let (summary, summaries) = crossbeam_channel::bounded::<String>(1);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let heading = format!("*{}* run `{run_id}`", escape(pipeline_id));
        let wants_summary = settings.summary;
        let thread = std::thread::Builder::new()
            .name("fastlane-slack".into())
            .spawn(move || {
                IN_SINK.with(|f| f.set(true));
                let poster = match Poster::new(settings) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = done_tx.send(SlackTotals {
                            last_error: Some(e),
                            ..SlackTotals::default()
                        });
                        return;
                    }
                };
                let totals = slack_loop(&lines, &summaries, poster, &heading);
                let _ = done_tx.send(totals);
            })
            .map_err(|e| start_err(format!("cannot start its thread: {e}")))?;
        tracing::info!("sending error lines and the run summary to Slack");
        Ok(Self {
            tap: Some(tap),
            summary,
            done,
            thread: Some(thread),
            pipeline_id: pipeline_id.to_owned(),
            wants_summary,
        })
    }

    fn finish(mut self, end: RunEnd<'_>, limit: Duration) {
        let dropped = self.tap.as_ref().map_or(0, TapHandle::dropped);
        if self.wants_summary {
            let _ = self.summary.try_send(summary_text(&self.pipeline_id, end));
        }
        // Closes the queue of lines: the thread sends what is left, then the summary.
        self.tap = None;
        match self.done.recv_timeout(limit) {
            Ok(t) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                let unsent = t.lines_not_sent + dropped;
                if t.failed > 0 || unsent > 0 || t.last_error.is_some() {
                    tracing::warn!(
                        "Slack: {} messages sent, {} failed, {unsent} lines not sent{}",
                        t.messages,
                        t.failed,
                        t.last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    );
                }
            }
            Err(_) => tracing::warn!(
                "Slack did not take the last messages within {:.0} s",
                limit.as_secs_f64()
            ),
        }
    }
}

/// Escapes the three characters Slack's message format reserves.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn summary_text(pipeline_id: &str, end: RunEnd<'_>) -> String {
    let name = escape(pipeline_id);
    match end {
        RunEnd::NotStarted(error) => {
            format!(":x: *{name}* failed before it started: {}", escape(error))
        }
        RunEnd::Ran(s) => {
            let figures = format!(
                "{} rows loaded in {:.1} s ({}), peak memory {}",
                progress::count(s.rows_loaded),
                s.duration_secs,
                progress::rate(s.rows_per_sec),
                progress::bytes(s.peak_rss_bytes)
            );
            match s.status {
                RunStatus::Succeeded => {
                    format!(
                        ":white_check_mark: *{name}* run `{}` succeeded: {figures}",
                        s.run_id
                    )
                }
                RunStatus::Stopped => {
                    format!(
                        ":octagonal_sign: *{name}* run `{}` was stopped: {figures}",
                        s.run_id
                    )
                }
                RunStatus::Failed => format!(
                    ":x: *{name}* run `{}` failed: {}\n{figures}",
                    s.run_id,
                    escape(s.error.as_deref().unwrap_or("unknown error"))
                ),
            }
        }
    }
}

/// Sends messages to the webhook, retrying what Slack asks to be retried.
struct Poster {
    client: reqwest::blocking::Client,
    settings: SlackSettings,
    totals: SlackTotals,
    /// When the next message may go, by the rate limit (a token bucket refilled evenly).
    tokens: f64,
    refilled: Instant,
}

impl Poster {
    fn new(settings: SlackSettings) -> Result<Self, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(Self {
            client,
            tokens: f64::from(settings.per_minute),
            refilled: Instant::now(),
            settings,
            totals: SlackTotals::default(),
        })
    }

    /// The wait until a message may go by the rate limit.
    fn wait(&mut self) -> Duration {
        let rate = f64::from(self.settings.per_minute) / 60.0;
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate)
            .min(f64::from(self.settings.per_minute));
        self.refilled = now;
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }

    /// Posts one message. `closing` (the run has ended) allows fewer attempts and shorter
    /// waits, so that the summary still goes within the time the run's end allows.
    fn post(&mut self, text: String, closing: bool) {
        self.tokens -= 1.0;
        let mut body = self.settings.extra.clone();
        body.insert("text".into(), json!(text));
        let body = Value::Object(body);
        let attempts = if closing { 2 } else { SLACK_ATTEMPTS };
        for attempt in 1..=attempts {
            let answer = self.client.post(&self.settings.url).json(&body).send();
            let retry_after = match answer {
                Ok(r) if r.status().is_success() => {
                    self.totals.messages += 1;
                    return;
                }
                Ok(r) => {
                    let status = r.status();
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    let text: String = r.text().unwrap_or_default().chars().take(200).collect();
                    let error = format!("Slack answered {status}: {}", text.trim());
                    if status.as_u16() != 429 && !status.is_server_error() {
                        // invalid_payload, no_service, channel_not_found…: retrying won't help.
                        tracing::warn!("{error}");
                        self.totals.last_error = Some(error);
                        self.totals.failed += 1;
                        return;
                    }
                    self.totals.last_error = Some(error);
                    wait
                }
                // The error names the URL; only its kind is kept.
                Err(e) => {
                    self.totals.last_error = Some(if e.is_timeout() {
                        "the webhook did not answer in time".to_owned()
                    } else if e.is_connect() {
                        "cannot connect to the webhook".to_owned()
                    } else {
                        "the request to the webhook failed".to_owned()
                    });
                    None
                }
            };
            if attempt < attempts {
                let mut pause = retry_after.unwrap_or(Duration::from_millis(500 << attempt.min(5)));
                if closing {
                    pause = pause.min(Duration::from_secs(2));
                }
                std::thread::sleep(pause);
            }
        }
        tracing::warn!(
            "Slack: a message was not delivered after {attempts} attempts ({})",
            self.totals.last_error.as_deref().unwrap_or("")
        );
        self.totals.failed += 1;
    }
}

fn lines_text(heading: &str, lines: &[LogLine], more: usize) -> String {
    use std::fmt::Write;
    let worst = lines.iter().map(|l| l.level).min().unwrap_or(Level::ERROR);
    let icon = if worst == Level::ERROR {
        ":rotating_light:"
    } else {
        ":warning:"
    };
    let mut text = format!("{icon} {heading} logged:\n");
    for l in lines {
        let time = chrono::DateTime::from_timestamp_millis(l.time_ms)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        let mut message: String = l.message.chars().take(SLACK_LINE_CHARS).collect();
        if message.len() < l.message.len() {
            message.push('…');
        }
        let _ = writeln!(
            text,
            "`{time}` *{}* {}: {}",
            l.level,
            escape(&l.target),
            escape(&message)
        );
    }
    if more > 0 {
        let _ = writeln!(text, "… and {more} more");
    }
    text
}

fn slack_loop(
    lines: &Receiver<LogLine>,
    summaries: &Receiver<String>,
    mut poster: Poster,
    heading: &str,
) -> SlackTotals {
    let mut open = true;
    while open {
        // Wait for a first line.
        let first = match lines.recv() {
            Ok(l) => l,
            Err(_) => break,
        };
        let mut batch = vec![first];
        let mut more = 0usize;
        // Gather for a moment, and for as long as the rate limit holds the message back; the
        // end of the run cuts the wait short (the last lines go at once, whatever the limit).
        let until = Instant::now() + SLACK_GATHER.max(poster.wait());
        loop {
            match lines.recv_deadline(until) {
                Ok(l) if batch.len() < SLACK_LINES => batch.push(l),
                Ok(_) => more += 1,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        poster.post(lines_text(heading, &batch, more), !open);
    }
    if let Ok(summary) = summaries.try_recv() {
        poster.post(summary, true);
    }
    poster.totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_keep_only_allowed_characters() {
        assert_eq!(group_name("shop.orders"), "shop.orders");
        assert_eq!(group_name("my pipeline: v2"), "my_pipeline__v2");
        assert_eq!(group_name(""), "fastlane");
    }

    #[test]
    fn slack_text_is_escaped_and_capped() {
        let lines: Vec<LogLine> = (0..3)
            .map(|i| LogLine {
                time_ms: 0,
                level: Level::ERROR,
                target: "t".into(),
                message: format!("<b>{i}</b> & x"),
            })
            .collect();
        let text = lines_text("*p*", &lines, 7);
        assert!(text.contains("&lt;b&gt;0&lt;/b&gt; &amp; x"), "{text}");
        assert!(text.contains("… and 7 more"), "{text}");
        assert!(text.starts_with(":rotating_light:"));
    }

    #[test]
    fn the_rate_limit_spaces_messages() {
        let mut p = Poster::new(SlackSettings {
            url: "http://127.0.0.1:9/".into(),
            level: Level::ERROR,
            per_minute: 2,
            summary: false,
            extra: Default::default(),
        })
        .unwrap();
        assert_eq!(p.wait(), Duration::ZERO);
        p.tokens -= 2.0;
        let w = p.wait();
        assert!(
            w > Duration::from_secs(25) && w <= Duration::from_secs(30),
            "{w:?}"
        );
    }

    #[test]
    fn taps_take_their_levels_and_quiet_the_sinks_own_plugin() {
        let (tap, lines) = TapHandle::add(Level::DEBUG, Some("plugin::quiet_test".into()));
        forward(Level::DEBUG, "plugin::quiet_test", "sdk detail");
        forward(Level::INFO, "plugin::quiet_test", "published");
        forward(Level::DEBUG, "fastlane_host::engine", "engine detail");
        forward(Level::TRACE, "fastlane_host::engine", "too fine");
        forward(Level::ERROR, "hyper::client", "never forwarded");
        let got: Vec<String> = lines.try_iter().map(|l| l.message).collect();
        assert_eq!(got, ["published", "engine detail"]);
        drop(tap);
        forward(Level::ERROR, "fastlane_host::engine", "after");
        assert!(lines.try_recv().is_err(), "a removed tap's queue is closed");
    }

    #[test]
    fn text_len_is_the_texts_length() {
        let line = LogLine {
            time_ms: 0,
            level: Level::WARN,
            target: "plugin::aws".into(),
            message: "é ok".into(),
        };
        assert_eq!(line.text_len(), line.text().len());
    }

    #[test]
    fn levels_parse() {
        assert_eq!(level(Some("WARN"), Level::ERROR), Level::WARN);
        assert_eq!(level(None, Level::INFO), Level::INFO);
    }
}
