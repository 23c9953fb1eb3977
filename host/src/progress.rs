//! Shows a run's progress: a live line on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Observer, Totals};

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A row rate: `12,345 rows/s` or `1.20M rows/s`.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M rows/s", per_sec / 1e6)
    } else {
        format!("{} rows/s", count(per_sec as u64))
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A live line on a terminal, log lines otherwise.
    Auto,
    /// Always the live line.
    Bar,
    /// Periodic log lines.
    Log,
    /// Nothing.
    Off,
}

/// The progress observer.
pub struct Progress {
    bar: Option<ProgressBar>,
    log_every: Option<Duration>,
    last_log: Instant,
}

impl Progress {
    /// A progress display in `mode`, logging every `interval` when not on a terminal.
    pub fn new(mode: ProgressMode, interval: Duration) -> Self {
        let bar = match mode {
            ProgressMode::Bar => true,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Log | ProgressMode::Off => false,
        };
        let bar = bar.then(|| {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        let log_every = match (mode, &bar) {
            (ProgressMode::Off, _) | (_, Some(_)) => None,
            _ => Some(interval),
        };
        Self {
            bar,
            log_every,
            last_log: Instant::now(),
        }
    }

    fn line(totals: &Totals) -> String {
        let secs = totals.elapsed.as_secs_f64().max(1e-3);
        format!(
            "{} rows loaded ({}), {} read, {} loaded, partitions {}/{}, memory {}",
            count(totals.target.rows),
            rate(totals.target.rows as f64 / secs),
            count(totals.source.rows),
            bytes(totals.target.bytes),
            totals.partitions_done,
            totals.partitions,
            bytes(totals.rss.current),
        )
    }

    /// Clears the live line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&mut self, event: &Event, _totals: &Totals) {
        if let Event::StageFailed { stage, error } = event {
            tracing::error!(%stage, "{error}");
        }
    }

    fn tick(&mut self, totals: &Totals) {
        if let Some(bar) = &self.bar {
            bar.set_message(Self::line(totals));
        }
        if let Some(every) = self.log_every
            && self.last_log.elapsed() >= every
        {
            self.last_log = Instant::now();
            tracing::info!("progress: {}", Self::line(totals));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(rate(2_500_000.0), "2.50M rows/s");
        assert_eq!(rate(812.4), "812 rows/s");
    }
}
