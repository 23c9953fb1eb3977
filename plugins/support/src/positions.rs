//! Positions of sources that count rows: a partition's row number as the JSON position a
//! resumed read starts after (see `fastlane_plugin_api::checkpoint`).

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
