//! Resident memory of this process, from `/proc/self/status`.

/// Current and peak resident set size, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rss {
    /// Resident now (`VmRSS`).
    pub current: u64,
    /// Highest resident so far (`VmHWM`).
    pub peak: u64,
}

/// Reads the process's resident memory; zeros where `/proc` is unavailable.
pub fn rss() -> Rss {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Rss::default();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Rss {
        current: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_nonzero_on_linux() {
        let r = super::rss();
        assert!(r.current > 0 && r.peak >= r.current);
    }
}
