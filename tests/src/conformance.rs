//! The plugin conformance suite, as the plugin crates of this repository run it.
//!
//! The suite itself ships in the host ([`fastlane_host::conformance`], behind `fastlane
//! plugins check`); here each plugin's tests describe how to feed its source
//! ([`SourceFixture`]) and how to read back what its target wrote ([`TargetFixture`]), and
//! call the same checks on their built `.so` through the real loader and engine:
//!
//! - the manifest: every component documented, every configuration schema valid and closed;
//!   every example configuration valid;
//! - a source: the suite's standard rows read back value by value, one schema, a unique key,
//!   the same rows twice, INCREMENTAL reads strictly after an offset, verification and ranges
//!   where declared, a prompt stop on cancellation; an empty source;
//! - a target: an empty run, many batches from two writers stored once with their values,
//!   FULL_TABLE replacing, INCREMENTAL appending, the offset, a failed or cancelled run leaving
//!   the target as it was (nothing half-written), resume where declared.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::DataType;
use fastlane_host::config::{Problem, validate};
use fastlane_host::conformance::{
    self as suite, CheckOptions, Expect, Outcome, Place, SourceSpec, TargetHarness,
};
use fastlane_host::plugins::{LoadedPlugin, Origin, load_plugin};
use fastlane_plugin_api::ComponentKind;
use serde_json::Value;

pub use fastlane_host::conformance::data::{ALL_COLUMNS, rows_as_text, standard_batches};
pub use fastlane_host::conformance::read_source;

/// Loads a built plugin by crate suffix.
pub fn load(name: &str) -> Arc<LoadedPlugin> {
    let path = crate::plugin_lib(name);
    match load_plugin(&path, Origin::Flag, 2) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{e}"),
    }
}

/// The batches as a printed table, timestamps shown in UTC without their zone (printing a named
/// zone needs chrono-tz, which the tests do without).
pub fn pretty(batches: &[RecordBatch]) -> String {
    let plain: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    DataType::Timestamp(unit, Some(_)) => {
                        arrow_cast::cast(c, &DataType::Timestamp(*unit, None)).expect("cast")
                    }
                    _ => c.clone(),
                })
                .collect();
            RecordBatch::try_from_iter(
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .zip(columns),
            )
            .expect("batch")
        })
        .collect();
    arrow_cast::pretty::pretty_format_batches(&plain)
        .expect("printable batches")
        .to_string()
}

/// How to feed a plugin's source.
pub trait SourceFixture {
    /// The source id.
    fn id(&self) -> &str;
    /// The standard columns this source reads back faithfully.
    fn columns(&self) -> Vec<&'static str>;
    /// Stores `batches` under `dir` where the source can read them; returns its configuration.
    /// The data always has an `id` Int64 key; `batch_rows` is the batch size to configure.
    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value;
    /// Example configurations that must validate against the source's schema.
    fn examples(&self) -> Vec<Value>;
}

/// How to read back what a plugin's target wrote.
pub trait TargetFixture {
    /// The target id.
    fn id(&self) -> &str;
    /// The standard columns this target stores faithfully.
    fn columns(&self) -> Vec<&'static str>;
    /// The configuration writing under `dir`, with `id` as the replication key.
    fn config(&self, dir: &Path) -> Value;
    /// Everything the target has published under `dir`.
    fn read_back(&self, dir: &Path) -> Vec<RecordBatch>;
    /// Whether `dir` holds anything at all (published or not), to check that an aborted run
    /// left nothing behind.
    fn leftovers(&self, dir: &Path) -> Vec<String>;
    /// Example configurations that must validate against the target's schema.
    fn examples(&self) -> Vec<Value>;
}

fn check_examples(plugin: &LoadedPlugin, kind: ComponentKind, id: &str, examples: &[Value]) {
    let c = plugin
        .components
        .iter()
        .find(|c| c.kind == kind && c.id == id)
        .unwrap_or_else(|| panic!("plugin `{}` has no {kind} `{id}`", plugin.name));
    assert!(
        !examples.is_empty(),
        "{kind} `{id}` has no example configuration"
    );
    for example in examples {
        let mut problems: Vec<Problem> = Vec::new();
        validate(&c.schema, example, "", &mut problems);
        assert!(
            problems.is_empty(),
            "example {example} of {kind} `{id}`: {problems:?}"
        );
    }
}

/// The suite's options in the repository's tests.
fn options() -> CheckOptions {
    CheckOptions::default()
}

/// Panics with the report of the checks when one failed.
fn assert_passed(plugin: &LoadedPlugin, checks: Vec<suite::Check>) -> Vec<suite::Check> {
    let report = suite::Report {
        path: plugin.path.clone(),
        plugin: None,
        checks,
    };
    assert!(report.passed(), "{report}");
    if std::env::var_os("FASTLANE_PRINT_CHECKS").is_some() {
        eprintln!("{report}");
    }
    report.checks
}

/// Runs every source check: the manifest and examples, then the suite on the standard rows
/// (20,000 of them with the fixture's columns) and on an empty source.
pub fn check_source(plugin_name: &str, fixture: &dyn SourceFixture) {
    let plugin = load(plugin_name);
    check_manifest(&plugin);
    check_examples(
        &plugin,
        ComponentKind::Source,
        fixture.id(),
        &fixture.examples(),
    );
    let columns = fixture.columns();
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = 20_000;
    let config = fixture.prepare(
        dir.path(),
        &standard_batches(1, rows, 2_500, &columns),
        1_000,
    );
    let spec = SourceSpec {
        config,
        key: Some("id".into()),
        expect: Some(Expect {
            rows,
            columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        }),
    };
    let checks = assert_passed(
        &plugin,
        suite::check_source(&plugin, fixture.id(), &spec, &options()),
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "reads the expected rows" && c.outcome == Outcome::Passed),
        "the rows were not compared: {checks:?}"
    );

    // An empty source.
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = standard_batches(1, 0, 10, &columns);
    let spec = SourceSpec {
        config: fixture.prepare(dir.path(), &empty, 100),
        key: None,
        expect: Some(Expect {
            rows: 0,
            columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        }),
    };
    assert_passed(
        &plugin,
        suite::check_source(&plugin, fixture.id(), &spec, &options()),
    );
}

/// Checks the manifest of a plugin: documented components, valid and closed schemas.
pub fn check_manifest(plugin: &LoadedPlugin) {
    assert_passed(plugin, suite::check_manifest(plugin));
}

/// A [`TargetFixture`] as the suite's harness.
struct Harness<'a> {
    fixture: &'a dyn TargetFixture,
    stream: bool,
}

impl TargetHarness for Harness<'_> {
    fn config(&self, place: &Place) -> Value {
        self.fixture.config(&place.dir)
    }

    fn read_back(&self, place: &Place) -> Option<std::result::Result<Vec<RecordBatch>, String>> {
        Some(Ok(self.fixture.read_back(&place.dir)))
    }

    fn leftovers(&self, place: &Place) -> std::result::Result<Vec<String>, String> {
        Ok(self.fixture.leftovers(&place.dir))
    }

    fn columns(&self) -> Vec<String> {
        self.fixture
            .columns()
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    }

    fn stream(&self) -> bool {
        self.stream
    }
}

/// Runs every target check: the manifest and examples, then the suite with the fixture's
/// configuration and read-back.
pub fn check_target(plugin_name: &str, fixture: &dyn TargetFixture) {
    let plugin = load(plugin_name);
    check_manifest(&plugin);
    check_examples(
        &plugin,
        ComponentKind::Target,
        fixture.id(),
        &fixture.examples(),
    );
    let harness = Harness {
        fixture,
        stream: false,
    };
    let checks = assert_passed(
        &plugin,
        suite::check_target(&plugin, fixture.id(), &harness, &options()),
    );
    for name in [
        "stores every row once, with its values",
        "FULL_TABLE replaces what was there",
        "a failed run leaves it as it was",
        "a cancelled run leaves it as it was",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c.name == name && c.outcome == Outcome::Passed),
            "`{name}` did not pass: {checks:#?}"
        );
    }
}

/// Checks a target that streams rows into a service which keeps no offset and cannot take
/// records back (a delivery stream, a log stream): every row arrives exactly once with its
/// values, an empty run sends nothing, several workers lose nothing, there is no offset, and
/// a failed run sends no row twice. INCREMENTAL is taken when `incremental`, else refused
/// naming FULL_TABLE. `leftovers` is not used: what the service accepted stays.
pub fn check_stream_target(plugin_name: &str, fixture: &dyn TargetFixture, incremental: bool) {
    let plugin = load(plugin_name);
    check_manifest(&plugin);
    check_examples(
        &plugin,
        ComponentKind::Target,
        fixture.id(),
        &fixture.examples(),
    );
    let harness = Harness {
        fixture,
        stream: true,
    };
    let checks = assert_passed(
        &plugin,
        suite::check_target(&plugin, fixture.id(), &harness, &options()),
    );
    let check = checks
        .iter()
        .find(|c| c.name == "INCREMENTAL")
        .expect("the INCREMENTAL check");
    let expected = if incremental { "taken" } else { "refused" };
    assert!(check.detail.starts_with(expected), "{check:?}");
}
