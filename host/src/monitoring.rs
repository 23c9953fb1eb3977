//! Run reporting: every run registers itself with the monitor and reports its progress,
//! memory, queue depths, status and log lines every few seconds.
//!
//! Where reports go, first match wins:
//! 1. `--no-monitor`, `FASTLANE_MONITOR=off`, or `"monitoring": {"enabled": false}`: nowhere;
//! 2. `--monitor-url`, then `monitoring.url`, then `FASTLANE_MONITOR_URL` (or the original's
//!    `pipeline_api_host`): a monitoring service, over HTTP, with the token from
//!    `monitoring.token` or `FASTLANE_MONITOR_TOKEN`;
//! 3. `monitoring.store`, else the local store ([`fastlane_monitor::store::default_url`]):
//!    written directly, so `fastlane serve` shows the run with no setup at all.
//!
//! Reporting never fails or stalls a run (see [`fastlane_monitor::reporter`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastlane_monitor::model::{
    LogLine, PipelineType, QueueSample, ReportPipeline, ReportRun, RunStatus, Sample,
};
use fastlane_monitor::reporter::{Destination, LogSender, Reporter, ReporterOptions};
use fastlane_monitor::time::{iso, now_ms};
use fastlane_plugin_api::{ComponentKind, ReplicationMode};
use serde_json::{Value, json};

use crate::config::{MonitoringConfig, PipelineConfig};
use crate::engine::{self, Event, Observer, RunSummary, Totals};
use crate::plugins::Registry;

/// Reporting settings from the command line, which win over the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--monitor-url`.
    pub url: Option<String>,
    /// `--no-monitor`.
    pub disabled: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where a run's reports go, and how often; `None` when reporting is off.
pub fn destination(
    config: &MonitoringConfig,
    overrides: &Overrides,
) -> Option<(Destination, Duration)> {
    let off = overrides.disabled
        || config.enabled == Some(false)
        || env("FASTLANE_MONITOR").is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "0" | "off" | "false" | "no"
            )
        });
    if off {
        return None;
    }
    let interval = config
        .interval_secs
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(2));
    let url = overrides
        .url
        .clone()
        .or_else(|| config.url.clone())
        .or_else(|| env("FASTLANE_MONITOR_URL"))
        .or_else(|| env("pipeline_api_host"));
    let dest = match url {
        Some(url) => Destination::Service {
            url,
            token: config
                .token
                .clone()
                .or_else(|| env("FASTLANE_MONITOR_TOKEN")),
        },
        None => Destination::Store(
            config
                .store
                .clone()
                .unwrap_or_else(fastlane_monitor::store::default_url),
        ),
    };
    Some((dest, interval))
}

/// The pipeline's id: the configuration's `name`, else the original's
/// `<target_id>.<source_type>.<target_type>`, where the target id names the destination
/// (`<database>.<table>` or `<db>.<table>`, the bucket, the file path, …).
pub fn pipeline_id(config: &PipelineConfig) -> String {
    if let Some(name) = &config.name {
        return name.clone();
    }
    let t = &config.target.config;
    let s = |k: &str| t.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    // The original's target ids: `<db>.<table>` (mysql), `<database>.<table>` (s3, athena,
    // firehose), `<database>.<measurement>` (influxdb).
    let database = s("database").or_else(|| s("db"));
    let target_id = match (database, s("table"), s("measurement")) {
        (Some(db), Some(table), _) => format!("{db}.{table}"),
        (Some(db), None, Some(m)) => format!("{db}.{m}"),
        (None, Some(table), _) => table.to_owned(),
        _ => s("bucket")
            .map(|b| match s("prefix") {
                Some(p) => format!("{b}/{p}"),
                None => b.to_owned(),
            })
            .or_else(|| s("delivery_stream").map(str::to_owned))
            .or_else(|| s("stream_name").map(str::to_owned))
            .or_else(|| s("path").map(str::to_owned))
            .unwrap_or_else(|| config.target.id.clone()),
    };
    format!("{target_id}.{}.{}", config.source.id, config.target.id)
}

/// The pipeline as reported: its id, types and the configuration as written (before
/// interpolation, so `${VAR}` secrets are never sent; the monitor redacts the rest).
pub fn report_pipeline(config: &PipelineConfig) -> ReportPipeline {
    let mut doc = config.document.clone();
    fastlane_monitor::store::redact(&mut doc);
    ReportPipeline {
        pipeline_id: pipeline_id(config),
        source_type: config.source.id.clone(),
        target_type: config.target.id.clone(),
        pipeline_type: match config.replication_mode {
            ReplicationMode::Incremental => PipelineType::Incremental,
            ReplicationMode::FullTable => PipelineType::FullTable,
        },
        config: match doc {
            Value::Object(m) => m,
            _ => Default::default(),
        },
    }
}

/// Log lines of the running run go to its reporter while one is set.
static LOG_SINK: Mutex<Option<LogSender>> = Mutex::new(None);

/// Forwards a log line to the current run's reporter, if any (called by the logging layer).
pub fn forward_log(level: &str, target: &str, message: String) {
    if target.starts_with("fastlane_monitor")
        || target.starts_with("sqlx")
        || target.starts_with("hyper")
        || target.starts_with("reqwest")
    {
        return;
    }
    let sink = LOG_SINK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = sink.as_ref() {
        s.send(LogLine {
            seq: None,
            created_at: Some(iso(now_ms())),
            level: level.to_owned(),
            target: target.to_owned(),
            message,
        });
    }
}

/// Reports one run: an engine [`Observer`] that samples progress every interval.
pub struct RunMonitor {
    reporter: Reporter,
    interval: Duration,
    last: Option<(Instant, Duration, [u64; 3])>,
    started: String,
    start_offset: Option<String>,
    /// The CloudWatch Logs group and stream of the run's lines, when they go there.
    log_place: Option<(String, String)>,
}

impl RunMonitor {
    /// Registers the run (`options.run_id`) with `dest` and starts reporting; the monitor can
    /// stop the run through `stop`; `log_place` is the CloudWatch Logs group and stream of its
    /// lines, when they go there. `None`, with a warning, when the reporter cannot start.
    pub fn start(
        config: &PipelineConfig,
        run_id: &str,
        dest: Destination,
        interval: Duration,
        stop: Arc<AtomicBool>,
        log_place: Option<(&str, &str)>,
    ) -> Option<Self> {
        let log_place = log_place.map(|(g, s)| (g.to_owned(), s.to_owned()));
        let started = iso(now_ms());
        let mut opts = ReporterOptions::new(dest);
        opts.interval = interval;
        let reporter = match Reporter::start(
            opts,
            run_id.to_owned(),
            report_pipeline(config),
            running(&started, None, &Totals::default(), log_place.as_ref()),
            stop,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("monitoring is off for this run: cannot start its reporter: {e}");
                return None;
            }
        };
        *LOG_SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(reporter.log_sender());
        Some(Self {
            reporter,
            interval,
            last: None,
            started,
            start_offset: None,
            log_place,
        })
    }

    /// Records the run as failed before it started (a component could not be created).
    pub fn fail(self, error: &str) {
        *LOG_SINK.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut run = running(
            &self.started,
            None,
            &Totals::default(),
            self.log_place.as_ref(),
        );
        run.status = RunStatus::Failed;
        run.finished = Some(iso(now_ms()));
        run.error = Some(error.to_owned());
        run.peak_memory_usage = engine::memory::rss().peak as f64 / 1e6;
        self.reporter.finish(run);
    }

    /// Sends the final state from the run's summary and waits (a few seconds at most) for the
    /// last report; returns the run's number in the store when it got through.
    pub fn finish(self, summary: &RunSummary) -> Option<i64> {
        *LOG_SINK.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let status = match summary.status {
            engine::RunStatus::Succeeded => RunStatus::Completed,
            engine::RunStatus::Failed => RunStatus::Failed,
            engine::RunStatus::Stopped => RunStatus::Stopped,
        };
        let stages: Vec<Value> = summary
            .stages
            .iter()
            .map(|s| {
                json!({
                    "stage": s.stage, "component": s.component, "workers": s.workers,
                    "batches": s.totals.batches, "rows": s.totals.rows, "bytes": s.totals.bytes,
                    "busy_secs": s.totals.busy.as_secs_f64(), "rows_per_sec": s.rows_per_sec,
                })
            })
            .collect();
        let run = ReportRun {
            status,
            started: self.started.clone(),
            finished: Some(iso(now_ms())),
            rows_loaded: clamp(summary.rows_loaded),
            rows_extracted: clamp(summary.rows_extracted),
            bytes_loaded: clamp(summary.bytes_loaded),
            peak_memory_usage: summary.peak_rss_bytes as f64 / 1e6,
            start_offset: summary.start_offset.as_ref().map(offset_text),
            end_offset: None,
            error: summary.error.clone(),
            cloudwatch_log_stream: self.log_place.as_ref().map(|(_, s)| s.clone()),
            cloudwatch_log_group: self.log_place.as_ref().map(|(g, _)| g.clone()),
            stages: json!({
                "stages": stages,
                "queues": summary.queues,
                "checkpoint": summary.checkpoint,
                "verification": summary.verification,
                "duration_secs": summary.duration_secs,
                "rows_per_sec": summary.rows_per_sec,
            })
            .as_object()
            .cloned(),
        };
        self.reporter.finish(run)
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn offset_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn running(
    started: &str,
    start_offset: Option<String>,
    t: &Totals,
    log_place: Option<&(String, String)>,
) -> ReportRun {
    ReportRun {
        status: RunStatus::Running,
        started: started.to_owned(),
        finished: None,
        rows_loaded: clamp(t.target.rows),
        rows_extracted: clamp(t.source.rows),
        bytes_loaded: clamp(t.target.bytes),
        peak_memory_usage: t.rss.peak as f64 / 1e6,
        start_offset,
        end_offset: None,
        error: None,
        cloudwatch_log_stream: log_place.map(|(_, s)| s.clone()),
        cloudwatch_log_group: log_place.map(|(g, _)| g.clone()),
        stages: None,
    }
}

impl Observer for RunMonitor {
    fn event(&mut self, event: &Event, _totals: &Totals) {
        if let Event::RunStarted { start_offset, .. } = event {
            self.start_offset = start_offset.as_ref().map(offset_text);
        }
    }

    fn tick(&mut self, t: &Totals) {
        let now = Instant::now();
        let rows = [t.source.rows, t.transform.rows, t.target.rows];
        let (rates, due) = match self.last {
            None => ([None; 3], true),
            Some((at, elapsed, prev)) => {
                if now.duration_since(at) < self.interval {
                    return;
                }
                let dt = t.elapsed.saturating_sub(elapsed).as_secs_f64().max(1e-3);
                let r = |i: usize| Some(rows[i].saturating_sub(prev[i]) as f64 / dt);
                ([r(0), r(1), r(2)], true)
            }
        };
        if !due {
            return;
        }
        self.last = Some((now, t.elapsed, rows));
        let queues = t
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| QueueSample {
                name: t.queue_names.get(i).cloned().unwrap_or_default(),
                batches: q.batches as u64,
                bytes: q.bytes as u64,
            })
            .collect();
        self.reporter.sample(Sample {
            seq: None,
            created_at: Some(iso(now_ms())),
            elapsed_secs: Some(t.elapsed.as_secs_f64()),
            rps: rates[2].or(Some(0.0)),
            memory_usage: Some(t.rss.current as f64 / 1e6),
            rows_loaded: Some(clamp(t.target.rows)),
            bytes_loaded: Some(clamp(t.target.bytes)),
            source_rows: Some(clamp(t.source.rows)),
            transform_rows: Some(clamp(t.transform.rows)),
            source_rps: rates[0].or(Some(0.0)),
            transform_rps: rates[1].or(Some(0.0)),
            queues: Some(queues),
        });
        self.reporter.update(running(
            &self.started,
            self.start_offset.clone(),
            t,
            self.log_place.as_ref(),
        ));
    }
}

/// Two observers as one.
pub struct Tee<'a>(pub &'a mut dyn Observer, pub &'a mut dyn Observer);

impl Observer for Tee<'_> {
    fn event(&mut self, event: &Event, totals: &Totals) {
        self.0.event(event, totals);
        self.1.event(event, totals);
    }

    fn tick(&mut self, totals: &Totals) {
        self.0.tick(totals);
        self.1.tick(totals);
    }
}

/// The source of the `aws` plugin that reads a CloudWatch Logs stream.
pub const CLOUDWATCH_LOGS_SOURCE: &str = "cloudwatch_logs";

/// The lines of runs that logged to CloudWatch Logs, read back through the `aws` plugin for
/// `fastlane serve`: the group is the configuration's `logs.cloudwatch.log_group` or the
/// pipeline's default group, with its `region`, `endpoint_url` and `profile`.
pub struct CloudWatchRunLogs {
    registry: Registry,
}

impl CloudWatchRunLogs {
    /// A reader over the plugins of `registry`; `None` when no plugin reads CloudWatch Logs.
    pub fn new(registry: Registry) -> Option<Self> {
        registry
            .find(ComponentKind::Source, CLOUDWATCH_LOGS_SOURCE)
            .is_some()
            .then_some(Self { registry })
    }
}

impl fastlane_monitor::server::ExternalLogs for CloudWatchRunLogs {
    fn read(
        &self,
        pipeline: &fastlane_monitor::model::Pipeline,
        run: &fastlane_monitor::model::PipelineRun,
    ) -> Option<Result<Vec<(i64, String)>, String>> {
        if run.cloudwatch_log_stream.is_empty() {
            return None;
        }
        let settings = pipeline.config.pointer("/logs/cloudwatch");
        // The configuration is stored as written: `${VAR}` is filled from this environment,
        // and a redacted value is no value.
        let setting = |key: &str| {
            settings
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
                .and_then(|v| crate::config::substitute(v, |k| std::env::var(k).ok()).ok())
                .filter(|v| !v.is_empty() && v != "***")
        };
        let group = run
            .cloudwatch_log_group
            .clone()
            .filter(|g| !g.is_empty())
            .or_else(|| setting("log_group"))
            .unwrap_or_else(|| crate::log_sinks::group_name(&pipeline.id));
        let mut config = serde_json::json!({
            "log_group": group,
            "log_stream": run.cloudwatch_log_stream,
            "max_events": 1_000_000,
        });
        for key in ["region", "endpoint_url", "profile"] {
            if let Some(v) = setting(key) {
                config[key] = Value::String(v);
            }
        }
        Some(
            self.read_stream(&config)
                .map_err(|e| e.message().to_owned()),
        )
    }
}

impl CloudWatchRunLogs {
    fn read_stream(&self, config: &Value) -> fastlane_plugin_api::Result<Vec<(i64, String)>> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::TimestampMillisecondType;
        use fastlane_plugin_api::{Partition, PluginError, Source};

        let component = self
            .registry
            .find(ComponentKind::Source, CLOUDWATCH_LOGS_SOURCE)
            .ok_or_else(|| PluginError::not_found("no plugin reads CloudWatch Logs"))?;
        let plugin = component
            .plugin
            .as_ref()
            .ok_or_else(|| PluginError::internal("`cloudwatch_logs` is not a plugin component"))?;
        let source = plugin.create_source(CLOUDWATCH_LOGS_SOURCE, config)?;
        let mut stream = source.read(&Partition {
            index: 0,
            spec: Value::Null,
        })?;
        let mut lines = Vec::new();
        while let Some(batch) = stream.next_batch()? {
            let times = batch
                .column_by_name("timestamp")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
                .ok_or_else(|| PluginError::data("no `timestamp` column"))?;
            let messages = batch
                .column_by_name("message")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| PluginError::data("no `message` column"))?;
            for i in 0..batch.num_rows() {
                lines.push((times.value(i), messages.value(i).to_owned()));
            }
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_then_config_then_environment() {
        let cfg = MonitoringConfig {
            url: Some("http://cfg:8001".into()),
            ..Default::default()
        };
        let o = Overrides {
            url: Some("http://cli:8001".into()),
            disabled: false,
        };
        let (d, _) = destination(&cfg, &o).unwrap();
        assert_eq!(
            d,
            Destination::Service {
                url: "http://cli:8001".into(),
                token: None
            }
        );
        let (d, _) = destination(&cfg, &Overrides::default()).unwrap();
        assert!(matches!(d, Destination::Service { url, .. } if url == "http://cfg:8001"));
        let off = MonitoringConfig {
            enabled: Some(false),
            ..cfg.clone()
        };
        assert!(destination(&off, &Overrides::default()).is_none());
        assert!(
            destination(
                &cfg,
                &Overrides {
                    disabled: true,
                    url: None
                }
            )
            .is_none()
        );
        let store = MonitoringConfig {
            store: Some("/tmp/x.db".into()),
            interval_secs: Some(0.5),
            ..Default::default()
        };
        if std::env::var_os("FASTLANE_MONITOR_URL").is_none()
            && std::env::var_os("pipeline_api_host").is_none()
            && std::env::var_os("FASTLANE_MONITOR").is_none()
        {
            let (d, i) = destination(&store, &Overrides::default()).unwrap();
            assert_eq!(d, Destination::Store("/tmp/x.db".into()));
            assert_eq!(i, Duration::from_millis(500));
        }
    }
}
