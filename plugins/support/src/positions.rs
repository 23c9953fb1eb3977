//! Helpers of resumable components (see `fastlane_plugin_api::checkpoint`): row-number
//! positions of sources that count rows, and the [`Journal`] of a target writer's records.

use fastlane_plugin_api::{PluginError, Result};
use serde_json::Value;

/// A row-number position given back by the host: `None` (the partition's start or end), or a
/// non-negative integer; `what` names it in the error (`start`, `end`).
pub fn row_number(position: &Option<Value>, what: &str) -> Result<Option<u64>> {
    match position {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            PluginError::internal(format!("the {what} position `{v}` is not a row number"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn row_numbers_are_non_negative_integers() {
        assert_eq!(row_number(&None, "start").unwrap(), None);
        assert_eq!(row_number(&Some(json!(42)), "start").unwrap(), Some(42));
        let err = row_number(&Some(json!("x")), "end").unwrap_err();
        assert!(err.message().contains("end position"), "{err}");
    }
}

/// What one writer of a checkpointed run has written since its last record, and the names of
/// its records: a target whose writes become durable by files or objects keeps one per writer,
/// adds the files it finishes and the tags of the batches it writes, and at each flush, once
/// the files are durable, stores [`Journal::take`]'s record.
#[derive(Debug)]
pub struct Journal<T> {
    /// Tells this process's records from those of the run it resumes.
    attempt: String,
    writer: usize,
    records: u64,
    items: Vec<T>,
    tags: Vec<String>,
}

impl<T> Journal<T> {
    /// The journal of writer `writer`.
    pub fn new(writer: usize) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            attempt: format!("{nanos:x}{:x}", std::process::id()),
            writer,
            records: 0,
            items: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// A file or object finished (durable at the next flush).
    pub fn add_item(&mut self, item: T) {
        self.items.push(item);
    }

    /// The tag of a batch written.
    pub fn add_tag(&mut self, tag: &str) {
        self.tags.push(tag.to_owned());
    }

    /// The next record: its name (`record-<attempt>-<writer>-<n>.json`, unique across runs and
    /// resumes), the items and the tags since the last one; none when nothing was written.
    pub fn take(&mut self) -> Option<(String, Vec<T>, Vec<String>)> {
        if self.items.is_empty() && self.tags.is_empty() {
            return None;
        }
        let name = format!(
            "record-{}-{}-{:06}.json",
            self.attempt, self.writer, self.records
        );
        self.records += 1;
        Some((
            name,
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.tags),
        ))
    }
}

#[cfg(test)]
mod journal_tests {
    use super::Journal;

    #[test]
    fn records_hold_what_was_written_since_the_last_one() {
        let mut j: Journal<&str> = Journal::new(3);
        assert!(j.take().is_none());
        j.add_item("f1");
        j.add_tag("t1");
        j.add_tag("t2");
        let (name, items, tags) = j.take().unwrap();
        assert!(
            name.starts_with("record-") && name.ends_with("-3-000000.json"),
            "{name}"
        );
        assert_eq!(
            (items, tags),
            (vec!["f1"], vec!["t1".to_owned(), "t2".to_owned()])
        );
        j.add_tag("t3");
        let (second, items, _) = j.take().unwrap();
        assert!(second.ends_with("-3-000001.json") && items.is_empty());
    }
}
