//! The run reporter: a run hands it samples, log lines and its state; a thread of its own
//! sends them every few seconds, to a monitoring service over HTTP or straight into a local
//! store.
//!
//! The run never waits on it: everything goes through a queue that drops what comes while
//! [`MAX_QUEUED`] messages wait, the buffers are bounded (the oldest samples and lines are
//! dropped first, and the drop is logged), a failed send is retried with back-off, and the
//! final flush at the end of the run gives up after [`ReporterOptions::final_timeout`]. A report is safe to resend: the run is
//! found by its key, samples and lines by their sequence numbers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{LogLine, Report, ReportAck, ReportPipeline, ReportRun, Sample};
use crate::store::Store;

/// Where reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A store, written directly (a SQLite file path or a database URL).
    Store(String),
    /// A monitoring service (`http://host:8001`), with its bearer token.
    Service {
        /// The service's base URL.
        url: String,
        /// The token for writes.
        token: Option<String>,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(url) => write!(f, "store {}", crate::store::display_url(url)),
            Self::Service { url, .. } => write!(f, "service {url}"),
        }
    }
}

/// How a reporter behaves.
#[derive(Debug, Clone)]
pub struct ReporterOptions {
    /// Where reports go.
    pub destination: Destination,
    /// Time between reports.
    pub interval: Duration,
    /// How long the final report may take at the end of the run.
    pub final_timeout: Duration,
    /// The most samples, and the most log lines, held while the destination is unreachable.
    pub max_buffer: usize,
}

impl ReporterOptions {
    /// Options for `destination` with the defaults: a report every 2 s, 5 s for the last one,
    /// 10,000 samples and lines buffered.
    pub fn new(destination: Destination) -> Self {
        Self {
            destination,
            interval: Duration::from_secs(2),
            final_timeout: Duration::from_secs(5),
            max_buffer: 10_000,
        }
    }
}

enum Msg {
    Sample(Sample),
    Log(LogLine),
    State(ReportRun),
    Finish(ReportRun),
}

/// The most messages waiting for the reporter's thread; later ones are dropped until it
/// catches up (it waits on the destination for up to 10 s at a time).
pub const MAX_QUEUED: usize = 50_000;

/// The sending end of the reporter's queue. The channel underneath is unbounded, so memory is
/// taken only for the messages that wait (a bounded channel of [`MAX_QUEUED`] slots would hold
/// about 11 MiB from the start); the count of waiting messages keeps the bound.
#[derive(Clone)]
struct Outbox {
    tx: Sender<Msg>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Queues `m` unless [`MAX_QUEUED`] messages wait already.
    fn offer(&self, m: Msg) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.push(m);
    }

    /// Queues `m` whatever waits already.
    fn push(&self, m: Msg) {
        if self.tx.send(m).is_err() {
            // The reporter's thread is gone; nothing will take it.
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Queues `m` past the bound (the last message of a run).
    fn force(&self, m: Msg) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.push(m);
    }
}

/// The receiving end of the reporter's queue.
struct Inbox {
    rx: Receiver<Msg>,
    queued: Arc<AtomicUsize>,
}

impl Inbox {
    fn took(&self, m: Msg) -> Msg {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        m
    }

    fn recv_timeout(&self, wait: Duration) -> Result<Msg, RecvTimeoutError> {
        self.rx.recv_timeout(wait).map(|m| self.took(m))
    }

    fn try_recv(&self) -> Result<Msg, TryRecvError> {
        self.rx.try_recv().map(|m| self.took(m))
    }
}

/// A queue to the reporter's thread.
fn queue() -> (Outbox, Inbox) {
    let (tx, rx) = std::sync::mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: queued.clone(),
        },
        Inbox { rx, queued },
    )
}

/// Sends a run's reports from a thread of its own.
pub struct Reporter {
    tx: Outbox,
    handle: Option<JoinHandle<()>>,
    run_number: Arc<AtomicI64>,
}

/// A cheap handle that forwards log lines to a reporter (for a logging layer).
#[derive(Clone)]
pub struct LogSender {
    tx: Outbox,
}

impl LogSender {
    /// Queues a log line; drops it when the queue is full.
    pub fn send(&self, line: LogLine) {
        self.tx.offer(Msg::Log(line));
    }
}

impl Reporter {
    /// Starts reporting run `run_key` of `pipeline`, whose state is `run` now. `stop` is set
    /// when the service asks the run to stop.
    pub fn start(
        opts: ReporterOptions,
        run_key: String,
        pipeline: ReportPipeline,
        run: ReportRun,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = queue();
        let run_number = Arc::new(AtomicI64::new(0));
        let number = run_number.clone();
        let handle = std::thread::Builder::new()
            .name("fastlane-reporter".into())
            .spawn(move || {
                let worker = Worker {
                    opts,
                    report: Report {
                        run_key,
                        pipeline,
                        run,
                        samples: Vec::new(),
                        logs: Vec::new(),
                    },
                    samples: VecDeque::new(),
                    logs: VecDeque::new(),
                    next_sample_seq: 0,
                    next_log_seq: 0,
                    dropped_samples: 0,
                    dropped_logs: 0,
                    stop,
                    number,
                    failing_since: None,
                    last_warning: None,
                };
                worker.run(rx);
            })?;
        Ok(Self {
            tx,
            handle: Some(handle),
            run_number,
        })
    }

    /// Queues a sample.
    pub fn sample(&self, s: Sample) {
        self.tx.offer(Msg::Sample(s));
    }

    /// Queues a log line.
    pub fn log(&self, l: LogLine) {
        self.tx.offer(Msg::Log(l));
    }

    /// Replaces the run's state sent with the next report.
    pub fn update(&self, run: ReportRun) {
        self.tx.offer(Msg::State(run));
    }

    /// A handle for a logging layer.
    pub fn log_sender(&self) -> LogSender {
        LogSender {
            tx: self.tx.clone(),
        }
    }

    /// The run's number in the store, once a report got through (0 before).
    pub fn run_number(&self) -> i64 {
        self.run_number.load(Ordering::SeqCst)
    }

    /// Sends the final state and what is buffered, waiting at most the final timeout;
    /// returns the run's number in the store when the report got through.
    pub fn finish(mut self, run: ReportRun) -> Option<i64> {
        // Never dropped: the worker ends on it.
        self.tx.force(Msg::Finish(run));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        Some(self.run_number.load(Ordering::SeqCst)).filter(|n| *n > 0)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        // Dropped without `finish` (a panic in the run): the worker ends when the channel
        // closes; it is not waited for.
        self.handle.take();
    }
}

enum Sink {
    Store(Option<Store>, String),
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
    },
}

#[derive(Debug)]
enum SendError {
    /// Worth retrying: the destination is down or overloaded.
    Retry(String),
    /// The destination refused the report; resending it will not help.
    Refused(String),
}

impl Sink {
    async fn send(&mut self, report: &Report) -> Result<ReportAck, SendError> {
        match self {
            Sink::Store(store, url) => {
                if store.is_none() {
                    *store = Some(Store::open(url).await.map_err(|e| {
                        SendError::Retry(format!(
                            "cannot open the store: {}",
                            crate::error_chain(&e)
                        ))
                    })?);
                }
                let s = store.as_ref().expect("opened above");
                s.apply_report(report).await.map_err(|e| match e {
                    crate::store::StoreError::Invalid(m) => SendError::Refused(m),
                    e => SendError::Retry(crate::error_chain(&e)),
                })
            }
            Sink::Http { client, url, token } => {
                let mut req = client
                    .post(format!(
                        "{}/api/pipeline/run/report",
                        url.trim_end_matches('/')
                    ))
                    .json(report);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| SendError::Retry(crate::error_chain(&e)))?;
                let status = resp.status();
                if status.is_success() {
                    resp.json::<ReportAck>()
                        .await
                        .map_err(|e| SendError::Retry(crate::error_chain(&e)))
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    let text: String = text.chars().take(300).collect();
                    let msg = format!("the service answered {status}: {text}");
                    if status.is_client_error()
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                        && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    {
                        Err(SendError::Refused(msg))
                    } else {
                        Err(SendError::Retry(msg))
                    }
                }
            }
        }
    }
}

struct Worker {
    opts: ReporterOptions,
    report: Report,
    samples: VecDeque<Sample>,
    logs: VecDeque<LogLine>,
    next_sample_seq: i64,
    next_log_seq: i64,
    dropped_samples: u64,
    dropped_logs: u64,
    stop: Arc<AtomicBool>,
    number: Arc<AtomicI64>,
    failing_since: Option<Instant>,
    last_warning: Option<Instant>,
}

/// The most samples and lines sent in one report.
const PER_REPORT: usize = 5_000;

impl Worker {
    fn run(mut self, rx: Inbox) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(target: "fastlane_monitor", "monitoring is off: cannot start its runtime: {e}");
                // Senders never block: from now on what they send is dropped.
                drop(rx);
                return;
            }
        };
        let mut sink = match &self.opts.destination {
            Destination::Store(url) => Sink::Store(None, url.clone()),
            Destination::Service { url, token } => Sink::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .connect_timeout(Duration::from_secs(2))
                    .build()
                    .unwrap_or_default(),
                url: url.clone(),
                token: token.clone(),
            },
        };
        let mut backoff = Duration::ZERO;
        let mut next_send = Instant::now();
        let mut finish_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wait = next_send.saturating_duration_since(now);
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    if self.take(m) {
                        finish_deadline = Some(Instant::now() + self.opts.final_timeout);
                        next_send = Instant::now();
                    }
                    // Take whatever else is queued before sending.
                    while let Ok(m) = rx.try_recv() {
                        if self.take(m) {
                            finish_deadline = Some(Instant::now() + self.opts.final_timeout);
                            next_send = Instant::now();
                        }
                    }
                    if Instant::now() < next_send {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if finish_deadline.is_none() {
                        // The run went away without finishing: one last try, then stop.
                        finish_deadline = Some(Instant::now() + self.opts.final_timeout);
                    }
                }
            }
            let timeout = match finish_deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(10),
            };
            let sent = self.send_once(&rt, &mut sink, timeout);
            match sent {
                Ok(more) => {
                    backoff = Duration::ZERO;
                    next_send = if more {
                        Instant::now()
                    } else {
                        Instant::now() + self.opts.interval
                    };
                    if finish_deadline.is_some() && !more {
                        return;
                    }
                }
                Err(()) => {
                    backoff = (backoff * 2).clamp(self.opts.interval, Duration::from_secs(30));
                    next_send = Instant::now() + backoff;
                }
            }
            if let Some(d) = finish_deadline {
                if Instant::now() >= d {
                    let pending = self.samples.len() + self.logs.len();
                    tracing::warn!(
                        target: "fastlane_monitor",
                        "the run's final report did not reach the {} ({} samples and lines not sent)",
                        self.opts.destination,
                        pending
                    );
                    return;
                }
                next_send = next_send.min(d);
            }
        }
    }

    /// Takes a message; `true` when it is the last one.
    fn take(&mut self, m: Msg) -> bool {
        match m {
            Msg::Sample(mut s) => {
                s.seq = Some(self.next_sample_seq);
                self.next_sample_seq += 1;
                if self.samples.len() >= self.opts.max_buffer {
                    self.samples.pop_front();
                    self.dropped_samples += 1;
                }
                self.samples.push_back(s);
                false
            }
            Msg::Log(mut l) => {
                l.seq = Some(self.next_log_seq);
                self.next_log_seq += 1;
                if self.logs.len() >= self.opts.max_buffer {
                    self.logs.pop_front();
                    self.dropped_logs += 1;
                }
                self.logs.push_back(l);
                false
            }
            Msg::State(run) => {
                self.report.run = run;
                false
            }
            Msg::Finish(run) => {
                self.report.run = run;
                true
            }
        }
    }

    /// Sends one report; `Ok(true)` when more is buffered than one report carries.
    fn send_once(
        &mut self,
        rt: &tokio::runtime::Runtime,
        sink: &mut Sink,
        timeout: Duration,
    ) -> Result<bool, ()> {
        if self.dropped_logs + self.dropped_samples > 0 {
            let line = LogLine {
                seq: Some(self.next_log_seq),
                created_at: Some(crate::time::iso(crate::time::now_ms())),
                level: "WARN".into(),
                target: "fastlane_monitor".into(),
                message: format!(
                    "{} samples and {} log lines were dropped while the monitor was unreachable",
                    self.dropped_samples, self.dropped_logs
                ),
            };
            self.next_log_seq += 1;
            self.logs.push_back(line);
            self.dropped_logs = 0;
            self.dropped_samples = 0;
        }
        let ns = self.samples.len().min(PER_REPORT);
        let nl = self.logs.len().min(PER_REPORT);
        self.report.samples = self.samples.iter().take(ns).cloned().collect();
        self.report.logs = self.logs.iter().take(nl).cloned().collect();
        let result = rt.block_on(async {
            tokio::time::timeout(
                timeout.max(Duration::from_millis(10)),
                sink.send(&self.report),
            )
            .await
            .unwrap_or_else(|_| Err(SendError::Retry("timed out".into())))
        });
        self.report.samples.clear();
        self.report.logs.clear();
        match result {
            Ok(ack) => {
                self.samples.drain(..ns);
                self.logs.drain(..nl);
                self.number.store(ack.pipeline_run_id, Ordering::SeqCst);
                if ack.stop_requested && !self.stop.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        target: "fastlane_monitor",
                        "a stop was requested through the monitoring service; stopping the run"
                    );
                }
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        target: "fastlane_monitor",
                        "reporting to the {} again after {:.0} s",
                        self.opts.destination,
                        since.elapsed().as_secs_f64()
                    );
                }
                Ok(self.samples.len() + self.logs.len() > 0)
            }
            Err(SendError::Refused(m)) => {
                // Resending the same report will not help: drop what it carried.
                self.samples.drain(..ns);
                self.logs.drain(..nl);
                tracing::warn!(
                    target: "fastlane_monitor",
                    "the {} refused the run's report: {m}",
                    self.opts.destination
                );
                Err(())
            }
            Err(SendError::Retry(m)) => {
                let now = Instant::now();
                self.failing_since.get_or_insert(now);
                if self
                    .last_warning
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                {
                    self.last_warning = Some(now);
                    tracing::warn!(
                        target: "fastlane_monitor",
                        "cannot report to the {} (will retry; the run goes on): {m}",
                        self.opts.destination
                    );
                }
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Msg {
        Msg::Log(LogLine {
            seq: None,
            created_at: None,
            level: "INFO".into(),
            target: "test".into(),
            message: n.to_string(),
        })
    }

    fn message(m: Msg) -> String {
        match m {
            Msg::Log(l) => l.message,
            _ => "(not a line)".into(),
        }
    }

    #[test]
    fn the_queue_drops_what_comes_while_it_is_full_and_takes_again_once_drained() {
        let (tx, rx) = queue();
        for n in 0..MAX_QUEUED + 10 {
            tx.offer(line(n));
        }
        // The last message of a run passes the bound.
        tx.force(line(usize::MAX));
        let mut taken = Vec::new();
        while let Ok(m) = rx.try_recv() {
            taken.push(m);
        }
        assert_eq!(taken.len(), MAX_QUEUED + 1);
        let forced = taken.pop().map(message);
        assert_eq!(forced, Some(usize::MAX.to_string()));
        let last = taken.pop().map(message);
        assert_eq!(last.as_deref(), Some((MAX_QUEUED - 1).to_string().as_str()));
        assert_eq!(rx.queued.load(Ordering::Acquire), 0);

        tx.offer(line(7));
        let next = rx.recv_timeout(Duration::from_secs(1)).map(message);
        assert_eq!(next.as_deref().ok(), Some("7"));
    }

    #[test]
    fn sending_after_the_reporter_thread_has_gone_keeps_the_count_right() {
        let (tx, rx) = queue();
        let queued = rx.queued.clone();
        drop(rx);
        for n in 0..5 {
            tx.offer(line(n));
        }
        tx.force(line(5));
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }
}
