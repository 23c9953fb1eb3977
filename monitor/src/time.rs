//! Times: stored as milliseconds since the Unix epoch (UTC), shown as ISO 8601 with a `Z`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `1732412786211` → `2024-11-24T01:46:26.211Z`.
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO 8601 time: with a zone (`Z`, `+02:00`), or without one (taken as UTC, as the
/// original's clients sent naive times), or a bare date (midnight UTC).
pub fn parse(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_naive_times() {
        let ms = parse("2026-11-24T01:46:26.211Z").unwrap();
        assert_eq!(iso(ms), "2026-11-24T01:46:26.211Z");
        assert_eq!(parse("2026-11-24T01:46:26.211"), Some(ms));
        assert_eq!(parse("2026-11-24T03:46:26.211+02:00"), Some(ms));
        assert_eq!(
            parse("2026-11-24"),
            parse("2026-11-24T00:00:00Z"),
            "a date is midnight UTC"
        );
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2026-13-01"), None);
    }
}
