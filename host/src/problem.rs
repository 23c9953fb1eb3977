//! Problems found in a configuration ([`Problem`]) and the error listing all of them
//! ([`ConfigError`]), shared by the configuration's validation ([`crate::config`]) and the
//! secrets it resolves ([`crate::secrets`]).

use std::fmt;

/// One problem in a configuration: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: a dotted path into the document (`source.file.batch_size`, `targets[0]`), or a
    /// command-line flag (`--source`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(document): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} in `{file}`:\n{}", plural(problems.len()), list(problems))]
pub struct ConfigError {
    /// The configuration file (or `<inline>`).
    pub file: String,
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
