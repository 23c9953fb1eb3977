//! Logging: `tracing` to standard error, and optionally appended to a file
//! (`--logs_to_file`, or `logs.log_file` in the configuration).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static LOG_FILE: Mutex<Option<File>> = Mutex::new(None);

fn log_file() -> std::sync::MutexGuard<'static, Option<File>> {
    LOG_FILE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes to the log file once one is set, and nowhere before.
#[derive(Clone, Copy)]
struct FileSink;

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match log_file().as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match log_file().as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = FileSink;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the global subscriber. `verbosity`: 0 = info, 1 = debug, 2+ = trace, -1 = warn,
/// -2 = error. `RUST_LOG` overrides it.
pub fn init(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(true);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(FileSink)
        .with_ansi(false)
        .with_target(true);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .with(Forward)
        .try_init();
}

/// Hands each log line to the log sinks ([`crate::log_sinks::forward`]) and to the running
/// run's reporter ([`crate::monitoring::forward_log`]).
struct Forward;

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
    /// The `log` crate's target, for lines bridged from `log` (plugins log that way).
    log_target: Option<String>,
}

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        } else if field.name().starts_with("log.") {
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if field.name().starts_with("log.") {
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let target = text.log_target.as_deref().unwrap_or(meta.target());
        crate::log_sinks::forward(*meta.level(), target, &text.message);
        crate::monitoring::forward_log(meta.level().as_str(), target, text.message);
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Starts appending log lines to `path` (once per process; later calls are ignored).
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    let mut current = log_file();
    if current.is_none() {
        *current = Some(open_log(path)?);
    }
    Ok(())
}

/// Log lines go to a run's own file until this is dropped, then to the file before it, if any
/// (runs of a long-lived process, such as the Python package's, each with its `log_file`).
#[must_use = "the log file is given back when this is dropped"]
pub struct RunLogFile {
    previous: Option<File>,
}

/// Appends log lines to `path` for as long as the returned value lives.
pub fn log_run_to_file(path: &Path) -> std::io::Result<RunLogFile> {
    let file = open_log(path)?;
    let previous = log_file().replace(file);
    Ok(RunLogFile { previous })
}

impl Drop for RunLogFile {
    fn drop(&mut self) {
        let mut current = log_file();
        if let Some(f) = current.as_mut() {
            let _ = f.flush();
        }
        *current = self.previous.take();
    }
}
