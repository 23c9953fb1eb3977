//! Forwards the plugin's `log` records to the host through the callback given at init.

use abi_stable::std_types::RStr;

use crate::abi::{HostContext, LogCallback, LogLevel};

struct Forwarder {
    callback: LogCallback,
    plugin: String,
    max_level: log::LevelFilter,
}

fn to_abi(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

fn to_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        (self.callback)(
            to_abi(record.level()),
            RStr::from_str(&self.plugin),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}

/// Installs the forwarder as this plugin image's `log` logger (once; later calls are no-ops).
pub(crate) fn install(host: HostContext, plugin: &str) {
    let max_level = to_filter(host.max_level);
    let forwarder = Forwarder {
        callback: host.log,
        plugin: plugin.to_owned(),
        max_level,
    };
    if log::set_boxed_logger(Box::new(forwarder)).is_ok() {
        log::set_max_level(max_level);
    }
}
