//! Error helpers shared by the engine and the command line.

use std::error::Error;

/// Renders an error and its causes as one line: `a: b: c`.
pub fn chain(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The causes of an error, outermost first, without the error itself.
pub fn causes(error: &dyn Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out
}
