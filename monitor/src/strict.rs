//! Strict JSON objects: serde's derived structs also accept a JSON array of their fields in
//! order (`[1, "x"]` for `{"id": 1, "name": "x"}`), which the API documents as objects only.
//! Fields holding objects or lists of objects go through these functions, which take objects
//! and nothing else, and name the item and field of a problem.

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Converts one JSON value that must be an object; the error starts with the path inside it.
pub(crate) fn from_object<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    if !v.is_object() {
        return Err(format!(": invalid type: {}, expected an object", kind(&v)));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        if path == "." {
            join("", &inner)
        } else {
            join(&format!(".{path}"), &inner)
        }
    })
}

/// `path: message`, or `path[1].field: message` when the message starts with a path itself.
pub(crate) fn join(path: &str, message: &str) -> String {
    if message.starts_with('.') || message.starts_with('[') {
        format!("{path}{message}")
    } else {
        format!("{path}: {message}")
    }
}

/// What a JSON value is, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field holding one object.
pub(crate) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    from_object(Value::deserialize(d)?).map_err(|e| D::Error::custom(e.trim_start_matches(": ")))
}

/// A field holding a list of objects.
pub(crate) fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Vec::<Value>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| from_object(v).map_err(|e| D::Error::custom(format!("[{i}]{e}"))))
        .collect()
}

/// A field holding a list of objects, or null.
pub(crate) fn optional_objects<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(v) => objects(v).map(Some).map_err(D::Error::custom),
    }
}

/// An integer written in a query string: `42`, or an integral float such as `42.0` or `4.2e1`
/// (JSON Schema's integers), up to 2^53 included.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    t.parse::<i64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}

/// An optional integer query parameter (see [`parse_int`]).
pub(crate) fn query_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_int(&text).map(Some).ok_or_else(|| {
        D::Error::custom(format!(
            "expected an integer, not `{}`",
            text.chars().take(40).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: i64,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[serde(deserialize_with = "super::objects")]
        items: Vec<Item>,
        #[serde(default, deserialize_with = "super::optional_objects")]
        more: Option<Vec<Item>>,
        #[serde(deserialize_with = "super::object")]
        one: Item,
    }

    #[test]
    fn integers_in_query_strings() {
        assert_eq!(super::parse_int("42"), Some(42));
        assert_eq!(super::parse_int(" 42.0 "), Some(42));
        assert_eq!(super::parse_int("4.2e1"), Some(42));
        assert_eq!(super::parse_int("-7"), Some(-7));
        assert_eq!(super::parse_int("4.5"), None);
        assert_eq!(super::parse_int("1e300"), None);
        assert_eq!(super::parse_int("NaN"), None);
        assert_eq!(super::parse_int(""), None);
    }

    #[test]
    fn objects_only_with_the_path_of_a_problem() {
        let ok: Outer =
            serde_json::from_value(json!({"items": [{"id": 1}], "more": null, "one": {"id": 2}}))
                .unwrap();
        assert_eq!(ok.items, vec![Item { id: 1 }]);
        assert_eq!(ok.more, None);
        assert_eq!(ok.one, Item { id: 2 });
        let e = serde_json::from_value::<Outer>(json!({"items": [[1]], "one": {"id": 2}}))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "[0]: invalid type: an array, expected an object");
        let e = serde_json::from_value::<Outer>(json!({"items": [], "one": [2]}))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid type: an array, expected an object");
        let e = serde_json::from_value::<Outer>(
            json!({"items": [{"id": 1}, {"id": "x"}], "one": {"id": 2}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("[1].id: invalid type: string"), "{e}");
        let e = serde_json::from_value::<Outer>(
            json!({"items": [], "more": [{"id": 1}, 5], "one": {"id": 2}}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "[1]: invalid type: a number, expected an object");
    }
}
