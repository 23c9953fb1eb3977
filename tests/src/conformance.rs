//! The plugin conformance suite.
//!
//! Every plugin crate runs it from an integration test against its built `.so`, through the
//! real plugin loader and engine. A plugin describes how to feed its source
//! ([`SourceFixture`]) and how to read back what its target wrote ([`TargetFixture`]); the
//! suite checks:
//!
//! - the manifest: every component documented, every configuration schema valid and closed
//!   (`additionalProperties: false`), every example configuration valid;
//! - empty input;
//! - large input across many batches (every row arrives once);
//! - types round-trip (the standard columns the fixture declares);
//! - offsets: a source reads strictly after a start offset; a target's `get_offset` is the
//!   largest key it stored, and an aborted run leaves nothing behind.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use fastlane_host::config::{Problem, validate};
use fastlane_host::engine::{self, EngineOptions, Named, NoObserver, Pipeline};
use fastlane_host::plugins::{LoadedPlugin, Origin, load_plugin};
use fastlane_plugin_api::{
    BatchStream, ComponentKind, IterStream, Partition, ReplicationMode, Result, Source, Target,
    WriteContext, Writer,
};
use serde_json::Value;

/// The standard columns, beyond the `id` key every batch has.
pub const ALL_COLUMNS: &[&str] = &[
    "int32", "int64", "float64", "text", "flag", "day", "moment", "blob",
];

/// Loads a built plugin by crate suffix.
pub fn load(name: &str) -> Arc<LoadedPlugin> {
    let path = crate::plugin_lib(name);
    match load_plugin(&path, Origin::Flag, 2) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{e}"),
    }
}

/// `rows` rows of the standard columns in batches of `batch_rows`, ids `first..first+rows`.
///
/// Every column but `id` has a null every 7th row; `text` holds unicode and emoji.
pub fn standard_batches(
    first: i64,
    rows: usize,
    batch_rows: usize,
    columns: &[&str],
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < rows {
        let n = batch_rows.min(rows - start);
        let ids: Vec<i64> = (0..n).map(|i| first + (start + i) as i64).collect();
        let null = |id: i64| id % 7 == 3;
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.clone()))];
        for &c in columns {
            let (field, array): (Field, ArrayRef) = match c {
                "int32" => (
                    Field::new(c, DataType::Int32, true),
                    Arc::new(Int32Array::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then_some((i % 1000) as i32 - 500)),
                    )),
                ),
                "int64" => (
                    Field::new(c, DataType::Int64, true),
                    Arc::new(Int64Array::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i * 1_000_003 - 7)),
                    )),
                ),
                "float64" => (
                    Field::new(c, DataType::Float64, true),
                    Arc::new(Float64Array::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i as f64 / 8.0)),
                    )),
                ),
                "text" => (
                    Field::new(c, DataType::Utf8, true),
                    Arc::new(StringArray::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then(|| format!("row {i} ü 日本 🦀"))),
                    )),
                ),
                "flag" => (
                    Field::new(c, DataType::Boolean, true),
                    Arc::new(BooleanArray::from_iter(
                        ids.iter().map(|&i| (!null(i)).then_some(i % 2 == 0)),
                    )),
                ),
                "day" => (
                    Field::new(c, DataType::Date32, true),
                    Arc::new(Date32Array::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then_some(19_000 + (i % 365) as i32)),
                    )),
                ),
                "moment" => (
                    Field::new(c, DataType::Timestamp(TimeUnit::Microsecond, None), true),
                    Arc::new(TimestampMicrosecondArray::from_iter(ids.iter().map(|&i| {
                        (!null(i)).then_some(1_700_000_000_000_000 + i * 1_000_001)
                    }))),
                ),
                "blob" => (
                    Field::new(c, DataType::Binary, true),
                    Arc::new(BinaryArray::from_iter(
                        ids.iter()
                            .map(|&i| (!null(i)).then(|| i.to_le_bytes().to_vec())),
                    )),
                ),
                other => panic!("unknown standard column `{other}`"),
            };
            fields.push(field);
            arrays.push(array);
        }
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch"));
        start += n;
    }
    out
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

/// Renders rows as text (sorted by `id`), so that values compare across equivalent types.
pub fn rows_as_text(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<String>> {
    use arrow_schema::ArrowError;
    let options = arrow_cast::display::FormatOptions::default().with_null("NULL");
    let mut rows: Vec<(i64, Vec<String>)> = Vec::new();
    for batch in batches {
        let id = batch.column_by_name("id").expect("id column");
        let id = arrow_cast::cast(id, &DataType::Int64).expect("id as int64");
        let id = id.as_any().downcast_ref::<Int64Array>().expect("int64");
        let formatters: Vec<_> = columns
            .iter()
            .map(|c| {
                let column = batch
                    .column_by_name(c)
                    .unwrap_or_else(|| panic!("column `{c}` missing from {:?}", batch.schema()));
                arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
            })
            .collect::<std::result::Result<Vec<_>, ArrowError>>()
            .expect("formatters");
        for r in 0..batch.num_rows() {
            rows.push((
                id.value(r),
                formatters.iter().map(|f| f.value(r).to_string()).collect(),
            ));
        }
    }
    rows.sort_by_key(|(id, _)| *id);
    rows.into_iter()
        .map(|(id, mut values)| {
            values.insert(0, id.to_string());
            values
        })
        .collect()
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

struct MemorySource(Vec<RecordBatch>);

impl Source for MemorySource {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        Ok(Box::new(IterStream(self.0.clone().into_iter().map(Ok))))
    }
}

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<RecordBatch>>>);

struct CollectTarget(Collected);

impl Target for CollectTarget {
    fn open(&mut self, _context: &WriteContext) -> Result<()> {
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(CollectWriter(self.0.clone())))
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        self.0.0.lock().expect("lock").clear();
        Ok(())
    }
}

struct CollectWriter(Collected);

impl Writer for CollectWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.0.lock().expect("lock").push(batch);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A source that fails after handing out its batches, to exercise abort paths.
struct FailingSource(Vec<RecordBatch>);

impl Source for FailingSource {
    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let batches = self
            .0
            .clone()
            .into_iter()
            .map(Ok)
            .chain(std::iter::once(Err(fastlane_plugin_api::PluginError::io(
                "source failed on purpose",
            ))));
        Ok(Box::new(IterStream(batches)))
    }
}

/// Runs `batches` (followed by a source failure when `fail`) into the fixture's target
/// configured for `dir`, with `workers` target workers.
fn write_into(
    plugin: &LoadedPlugin,
    fixture: &dyn TargetFixture,
    dir: &Path,
    batches: Vec<RecordBatch>,
    mode: ReplicationMode,
    fail: bool,
    workers: usize,
) -> std::result::Result<(), Box<engine::RunFailed>> {
    let config = fixture.config(dir);
    let target = plugin
        .create_target(fixture.id(), &config)
        .unwrap_or_else(|e| panic!("create target with {config}: {e}"));
    let source: Box<dyn Source> = if fail {
        Box::new(FailingSource(batches))
    } else {
        Box::new(MemorySource(batches))
    };
    let pipeline = Pipeline {
        source: Named::new("memory", source),
        transforms: vec![],
        target: Named::new(fixture.id(), Box::new(target) as Box<dyn Target>),
    };
    let options = EngineOptions {
        target_concurrency: workers,
        ..options(mode)
    };
    engine::run(pipeline, &options, &mut NoObserver).map(|_| ())
}

fn options(mode: ReplicationMode) -> EngineOptions {
    EngineOptions {
        mode,
        max_buffered_batches: 4,
        ..EngineOptions::default()
    }
}

/// Checks the manifest of a plugin: documented components, valid and closed schemas.
pub fn check_manifest(plugin: &LoadedPlugin) {
    assert!(
        !plugin.description.is_empty(),
        "plugin `{}` has no description",
        plugin.name
    );
    assert!(
        !plugin.components.is_empty(),
        "plugin `{}` has no components",
        plugin.name
    );
    for c in &plugin.components {
        assert!(
            !c.description.is_empty(),
            "{} `{}` has no description",
            c.kind,
            c.id
        );
        assert!(
            jsonschema::meta::is_valid(&c.schema),
            "{} `{}`: schema is not a valid JSON Schema",
            c.kind,
            c.id
        );
        assert_eq!(
            c.schema.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{} `{}`: the schema must reject unknown fields",
            c.kind,
            c.id
        );
        assert_eq!(
            c.schema.get("type"),
            Some(&Value::from("object")),
            "{} `{}`",
            c.kind,
            c.id
        );
    }
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

fn total_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Runs every source check.
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
    let read = |batches: &[RecordBatch], batch_rows: usize, mode, offset: Option<Value>| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = fixture.prepare(dir.path(), batches, batch_rows);
        let source = plugin
            .create_source(fixture.id(), &config)
            .unwrap_or_else(|e| panic!("create source with {config}: {e}"));
        read_source(fixture.id(), Box::new(source), &options(mode), offset)
            .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)))
    };

    // Empty input.
    let empty = standard_batches(1, 0, 10, &columns);
    let got = read(&empty, 100, ReplicationMode::FullTable, None);
    assert_eq!(total_rows(&got), 0, "empty input must give no rows");

    // Large input across many batches.
    let large = standard_batches(1, 50_000, 5_000, &[]);
    let got = read(&large, 1_000, ReplicationMode::FullTable, None);
    assert_eq!(total_rows(&got), 50_000, "every row must arrive once");
    assert!(got.len() >= 50, "expected many batches, got {}", got.len());
    let ids = rows_as_text(&got, &[]);
    assert_eq!(ids.first().map(|r| r[0].as_str()), Some("1"));
    assert_eq!(ids.last().map(|r| r[0].as_str()), Some("50000"));
    let distinct: std::collections::BTreeSet<_> = ids.iter().map(|r| r[0].clone()).collect();
    assert_eq!(distinct.len(), 50_000, "rows must not repeat");

    // Types round-trip.
    let typed = standard_batches(1, 1_000, 300, &columns);
    let got = read(&typed, 256, ReplicationMode::FullTable, None);
    assert_eq!(rows_as_text(&got, &columns), rows_as_text(&typed, &columns));

    // Offsets: strictly after the start offset.
    let got = read(
        &typed,
        256,
        ReplicationMode::Incremental,
        Some(Value::from(600)),
    );
    let ids = rows_as_text(&got, &[]);
    assert_eq!(ids.len(), 400, "rows after offset 600");
    assert_eq!(ids[0][0], "601");
}

/// Runs `source` through the engine into a target that keeps every batch, and returns them.
/// With `offset`, the run is INCREMENTAL and the source reads after that offset.
pub fn read_source(
    id: &str,
    source: Box<dyn Source>,
    options: &EngineOptions,
    offset: Option<Value>,
) -> std::result::Result<Vec<RecordBatch>, Box<engine::RunFailed>> {
    let collected = Collected::default();
    let pipeline = Pipeline {
        source: Named::new(id, source),
        transforms: vec![],
        target: Named::new(
            "collect",
            Box::new(CollectTarget(collected.clone())) as Box<dyn Target>,
        ),
    };
    match offset {
        Some(o) => {
            let options = EngineOptions {
                mode: ReplicationMode::Incremental,
                ..options.clone()
            };
            // The collect target has no offset; the source sees the one given here instead.
            run_with_offset(pipeline, &options, o)?;
        }
        None => {
            engine::run(pipeline, options, &mut NoObserver)?;
        }
    }
    Ok(collected.0.lock().expect("lock").clone())
}

fn run_with_offset(
    pipeline: Pipeline,
    options: &EngineOptions,
    offset: Value,
) -> std::result::Result<engine::RunSummary, Box<engine::RunFailed>> {
    // Swap the collect target for one that reports `offset`, keeping the same collection.
    let Pipeline {
        source,
        transforms,
        target,
    } = pipeline;
    let id = target.id.clone();
    let inner = target.component;
    let wrapped: Box<dyn Target> = Box::new(Forward(inner, offset));
    engine::run(
        Pipeline {
            source,
            transforms,
            target: Named::new(id, wrapped),
        },
        options,
        &mut NoObserver,
    )
}

struct Forward(Box<dyn Target>, Value);

impl Target for Forward {
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(Some(self.1.clone()))
    }
    fn open(&mut self, context: &WriteContext) -> Result<()> {
        self.0.open(context)
    }
    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        self.0.writer(index)
    }
    fn commit(&mut self) -> Result<()> {
        self.0.commit()
    }
    fn abort(&mut self) -> Result<()> {
        self.0.abort()
    }
}

/// Runs every target check.
pub fn check_target(plugin_name: &str, fixture: &dyn TargetFixture) {
    let plugin = load(plugin_name);
    check_manifest(&plugin);
    check_examples(
        &plugin,
        ComponentKind::Target,
        fixture.id(),
        &fixture.examples(),
    );
    let columns = fixture.columns();
    let write = |dir: &Path, batches: Vec<RecordBatch>, mode, fail: bool| {
        write_into(&plugin, fixture, dir, batches, mode, fail, 1)
    };
    let offset = |dir: &Path| {
        plugin
            .create_target(fixture.id(), &fixture.config(dir))
            .expect("create target")
            .get_offset()
            .unwrap_or_else(|e| panic!("get_offset: {e}"))
    };

    // Empty input.
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), vec![], ReplicationMode::FullTable, false)
        .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    assert_eq!(total_rows(&fixture.read_back(dir.path())), 0);
    assert_eq!(offset(dir.path()), None, "an empty target has no offset");

    // Large input across many batches.
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        standard_batches(1, 60_000, 1_000, &[]),
        ReplicationMode::FullTable,
        false,
    )
    .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    let back = fixture.read_back(dir.path());
    assert_eq!(total_rows(&back), 60_000);
    assert_eq!(offset(dir.path()), Some(Value::from(60_000)));

    // Types round-trip; FULL_TABLE replaces what was there.
    let typed = standard_batches(1, 1_000, 300, &columns);
    write(dir.path(), typed.clone(), ReplicationMode::FullTable, false)
        .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    let back = fixture.read_back(dir.path());
    assert_eq!(
        rows_as_text(&back, &columns),
        rows_as_text(&typed, &columns)
    );

    // INCREMENTAL appends; the offset follows.
    write(
        dir.path(),
        standard_batches(1_001, 500, 200, &columns),
        ReplicationMode::Incremental,
        false,
    )
    .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    assert_eq!(total_rows(&fixture.read_back(dir.path())), 1_500);
    assert_eq!(offset(dir.path()), Some(Value::from(1_500)));

    // A failed run leaves the target as it was, with nothing half-written.
    let before = rows_as_text(&fixture.read_back(dir.path()), &columns);
    let leftovers_before = fixture.leftovers(dir.path());
    let failed = write(
        dir.path(),
        standard_batches(5_000, 3_000, 500, &columns),
        ReplicationMode::FullTable,
        true,
    );
    assert!(failed.is_err(), "the run must fail");
    assert_eq!(
        rows_as_text(&fixture.read_back(dir.path()), &columns),
        before
    );
    assert_eq!(
        fixture.leftovers(dir.path()),
        leftovers_before,
        "an aborted run must leave nothing"
    );
}

/// Checks a target that streams rows into a service which keeps no offset and cannot take
/// records back (a delivery stream, a log stream): every row arrives exactly once with its
/// values, an empty run sends nothing, several workers lose nothing, `get_offset` is `None`,
/// INCREMENTAL is refused with a clear error (unless `incremental` says the target takes it),
/// and a failed run fails cleanly. `leftovers` is not used: what the service accepted stays.
pub fn check_stream_target(plugin_name: &str, fixture: &dyn TargetFixture, incremental: bool) {
    let plugin = load(plugin_name);
    check_manifest(&plugin);
    check_examples(
        &plugin,
        ComponentKind::Target,
        fixture.id(),
        &fixture.examples(),
    );
    let columns = fixture.columns();
    let write = |dir: &Path, batches: Vec<RecordBatch>, mode, fail: bool, workers: usize| {
        write_into(&plugin, fixture, dir, batches, mode, fail, workers)
    };

    // Empty input sends nothing; there is no offset.
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), vec![], ReplicationMode::FullTable, false, 1)
        .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    assert_eq!(total_rows(&fixture.read_back(dir.path())), 0);
    let offset = plugin
        .create_target(fixture.id(), &fixture.config(dir.path()))
        .expect("create target")
        .get_offset()
        .unwrap_or_else(|e| panic!("get_offset: {e}"));
    assert_eq!(offset, None, "a stream target keeps no offset");

    // Many batches from two workers: every row exactly once, with its values.
    let dir = tempfile::tempdir().expect("temp dir");
    let batches = standard_batches(1, 20_000, 700, &columns);
    write(
        dir.path(),
        batches.clone(),
        ReplicationMode::FullTable,
        false,
        2,
    )
    .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)));
    assert_eq!(
        rows_as_text(&fixture.read_back(dir.path()), &columns),
        rows_as_text(&batches, &columns)
    );

    // INCREMENTAL: refused up front, nothing sent.
    if !incremental {
        let dir = tempfile::tempdir().expect("temp dir");
        let refused = write(
            dir.path(),
            standard_batches(1, 10, 10, &columns),
            ReplicationMode::Incremental,
            false,
            1,
        );
        let message = fastlane_host::error::chain(&refused.expect_err("INCREMENTAL must fail"));
        assert!(message.contains("FULL_TABLE"), "{message}");
        assert_eq!(total_rows(&fixture.read_back(dir.path())), 0);
    }

    // A failed run fails, and no row is sent twice.
    let dir = tempfile::tempdir().expect("temp dir");
    let failed = write(
        dir.path(),
        standard_batches(1, 3_000, 500, &columns),
        ReplicationMode::FullTable,
        true,
        1,
    );
    assert!(failed.is_err(), "the run must fail");
    let back = rows_as_text(&fixture.read_back(dir.path()), &columns);
    let mut ids: Vec<&String> = back.iter().map(|r| &r[0]).collect();
    ids.dedup();
    assert_eq!(ids.len(), back.len(), "a row was sent twice");
}
