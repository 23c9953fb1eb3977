//! The text rules of line protocol: which names and values can be written, and how they are
//! escaped. Shared by the configuration's checks ([`crate::config`]) and the encoder
//! ([`crate::line`]).

/// The characters escaped in a measurement.
pub(crate) const MEASUREMENT_SPECIALS: &[u8] = b", ";
/// The characters escaped in tag keys, tag values and field keys.
pub(crate) const KEY_SPECIALS: &[u8] = b",= ";

/// Why a name or value cannot be written as line protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// The name is empty.
    #[error("`{0}` is empty; InfluxDB names and tag values cannot be empty")]
    Empty(String),
    /// The text holds a newline.
    #[error("{0:?} holds a newline, which line protocol cannot carry")]
    Newline(String),
    /// A backslash at the end or before a character that is escaped.
    #[error(
        "{0:?} has a backslash at its end or before a comma, space or equals sign, which \
         line protocol cannot write unambiguously"
    )]
    Backslash(String),
    /// `time` is reserved.
    #[error("`time` is InfluxDB's own time column and cannot be a tag or field key")]
    Time,
    /// A measurement starting with `#` would be read as a comment.
    #[error("{0:?} starts with `#`, which line protocol reads as a comment")]
    Comment(String),
}

/// Checks that `text` can be written with the characters in `specials` escaped.
pub(crate) fn check_text(text: &str, specials: &[u8]) -> std::result::Result<(), LineError> {
    if text.is_empty() {
        return Err(LineError::Empty(text.to_owned()));
    }
    let bytes = text.as_bytes();
    if bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(LineError::Newline(text.to_owned()));
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' && bytes.get(i + 1).is_none_or(|next| specials.contains(next)) {
            return Err(LineError::Backslash(text.to_owned()));
        }
    }
    Ok(())
}

/// Checks that `name` can be written as a measurement.
pub fn check_measurement(name: &str) -> std::result::Result<(), LineError> {
    check_text(name, MEASUREMENT_SPECIALS)?;
    if name.starts_with('#') {
        return Err(LineError::Comment(name.to_owned()));
    }
    Ok(())
}

/// Checks that `key` can be written as a tag or field key.
pub fn check_key(key: &str) -> std::result::Result<(), LineError> {
    if key == "time" {
        return Err(LineError::Time);
    }
    check_text(key, KEY_SPECIALS)
}

/// Appends `text` with the characters in `specials` escaped (the text was checked).
pub(crate) fn escape(out: &mut Vec<u8>, text: &str, specials: &[u8]) {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|b| specials.contains(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if specials.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends `text` as a quoted string field value.
pub(crate) fn quote(out: &mut Vec<u8>, text: &str) -> std::result::Result<(), LineError> {
    let bytes = text.as_bytes();
    out.push(b'"');
    if bytes
        .iter()
        .any(|&b| matches!(b, b'"' | b'\\' | b'\n' | b'\r'))
    {
        for &b in bytes {
            match b {
                b'"' | b'\\' => {
                    out.push(b'\\');
                    out.push(b);
                }
                b'\n' | b'\r' => return Err(LineError::Newline(text.to_owned())),
                _ => out.push(b),
            }
        }
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_escaped() {
        let mut out = Vec::new();
        escape(&mut out, "a b,c=d", KEY_SPECIALS);
        assert_eq!(out, br"a\ b\,c\=d");
        out.clear();
        escape(&mut out, "a b,c=d", MEASUREMENT_SPECIALS);
        assert_eq!(out, br"a\ b\,c=d");
        out.clear();
        quote(&mut out, r#"say "hi" \o/"#).unwrap();
        assert_eq!(out, br#""say \"hi\" \\o/""#);
        assert!(check_key("time").is_err());
        assert!(check_key("a\\").is_err());
        assert!(check_key("a\\,b").is_err());
        assert!(check_key("a\\b").is_ok());
        assert!(check_key("日本 🦀").is_ok());
        assert!(check_measurement("#x").is_err());
        assert!(check_measurement("a\nb").is_err());
        assert!(quote(&mut out, "a\nb").is_err());
    }
}
