//! The suite's report: every check with its outcome, printable and serialisable.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The component did what the contract asks.
    Passed,
    /// It did not; the detail says what happened.
    Failed,
    /// It passed, with something worth knowing (a feature it lacks).
    Warned,
    /// Not run; the detail says why.
    Skipped,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Passed => "ok",
            Self::Failed => "FAIL",
            Self::Warned => "warn",
            Self::Skipped => "skip",
        }
    }
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `manifest`, `source \`mysql\``…
    pub subject: String,
    /// The check.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
}

/// The checks of one subject, as they are made.
#[derive(Debug)]
pub struct Checks {
    subject: String,
    checks: Vec<Check>,
}

impl Checks {
    /// No checks yet of `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            checks: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.checks.push(Check {
            subject: self.subject.clone(),
            name: name.to_owned(),
            outcome,
            detail,
        });
    }

    /// A passed check.
    pub fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Outcome::Passed, detail.into());
    }

    /// A failed check.
    pub fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Outcome::Failed, detail.into());
    }

    /// A check passed with a warning.
    pub fn warn(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Outcome::Warned, detail.into());
    }

    /// A check not run.
    pub fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Outcome::Skipped, detail.into());
    }

    /// Records `result`: passed with its detail, or failed with its reason.
    pub fn record(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                self.pass(name, detail);
                true
            }
            Err(reason) => {
                self.fail(name, reason);
                false
            }
        }
    }

    /// The checks made.
    pub fn into_vec(self) -> Vec<Check> {
        self.checks
    }
}

/// The plugin a report is about.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The ABI version it was built for.
    pub abi_version: u32,
}

/// The suite's findings on one plugin file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file checked.
    pub path: PathBuf,
    /// The plugin, when it loaded.
    pub plugin: Option<PluginSummary>,
    /// Every check, in the order made.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Failed)
    }

    /// How many checks ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plugin {
            Some(p) => writeln!(
                f,
                "{}: plugin `{}` {} (ABI {})",
                self.path.display(),
                p.name,
                p.version,
                p.abi_version
            )?,
            None => writeln!(f, "{}", self.path.display())?,
        }
        for c in &self.checks {
            write!(f, "  {:<4}  {}: {}", c.outcome.label(), c.subject, c.name)?;
            if c.detail.is_empty() {
                writeln!(f)?;
            } else {
                writeln!(f, " — {}", c.detail)?;
            }
        }
        let failed = self.count(Outcome::Failed);
        write!(
            f,
            "{} checks: {} passed, {} failed, {} warned, {} skipped",
            self.checks.len(),
            self.count(Outcome::Passed),
            failed,
            self.count(Outcome::Warned),
            self.count(Outcome::Skipped)
        )?;
        let unexercised = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Skipped && c.name == super::NOT_CONFIGURED)
            .count();
        if failed > 0 {
            write!(f, "; the plugin does not conform")
        } else if unexercised > 0 {
            write!(
                f,
                "; no check failed, but {unexercised} components were not exercised (give them a \
                 configuration in the check file)"
            )
        } else {
            write!(f, "; the plugin conforms")
        }
    }
}
