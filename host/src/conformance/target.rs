//! The target checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{Capability, ComponentKind, ReplicationMode, Source, Target};
use serde_json::Value;

use super::data::{self, ALL_COLUMNS};
use super::engine_parts::{
    DataSource, create_source, engine_options, failure, read_through_engine, with_timeout,
};
use super::source::compare_rows;
use super::{CheckOptions, Checks, TargetSpec, check_config, find, substitute};
use crate::engine::{
    self, CheckpointOptions, Named, NoObserver, Pipeline, Resume, RunFailed, RunStatus, RunSummary,
    Verify,
};
use crate::plugins::LoadedPlugin;

/// Where one target check writes: a fresh folder and a fresh name (for a table, a prefix).
#[derive(Debug)]
pub struct Place {
    /// The folder (`{dir}` in a check file's configurations).
    pub dir: PathBuf,
    /// The name (`{name}`): letters, digits and `_`, starting with a letter.
    pub name: String,
    _keep: Option<tempfile::TempDir>,
}

impl Place {
    /// A new place, its folder removed when it is dropped.
    pub fn new() -> std::io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("fastlane-check-")
            .tempdir()?;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            dir: dir.path().to_path_buf(),
            name: format!("fl_check_{}_{n}", std::process::id()),
            _keep: Some(dir),
        })
    }
}

/// How the suite configures a target and sees what it wrote.
pub trait TargetHarness {
    /// The target's configuration writing into `place`, with `id` as the replication key.
    fn config(&self, place: &Place) -> Value;
    /// Everything the target has published in `place`; `None` when it cannot be read back.
    fn read_back(&self, place: &Place) -> Option<Result<Vec<RecordBatch>, String>>;
    /// What `place` holds, published or not, to check that a failed run leaves nothing
    /// behind: by default the files and folders under its folder.
    fn leftovers(&self, place: &Place) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        list_files(&place.dir, &place.dir, &mut out).map_err(|e| e.to_string())?;
        out.sort();
        Ok(out)
    }
    /// The standard columns the target stores faithfully.
    fn columns(&self) -> Vec<String> {
        ALL_COLUMNS.iter().map(|c| (*c).to_owned()).collect()
    }
    /// Whether the target streams into a service that keeps no offset and cannot take
    /// records back.
    fn stream(&self) -> bool {
        false
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push(format!("{}/", relative.display()));
            list_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push(relative.display().to_string());
        }
    }
    Ok(())
}

/// The harness of a check file's target entry: its configuration with `{dir}` and `{name}`
/// filled in, read back through a source of the same plugin.
pub(crate) struct SpecHarness {
    plugin: Arc<LoadedPlugin>,
    spec: TargetSpec,
    options: CheckOptions,
}

impl SpecHarness {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, spec: TargetSpec, options: &CheckOptions) -> Self {
        Self {
            plugin,
            spec,
            options: options.clone(),
        }
    }
}

impl TargetHarness for SpecHarness {
    fn config(&self, place: &Place) -> Value {
        substitute(&self.spec.config, place)
    }

    fn read_back(&self, place: &Place) -> Option<Result<Vec<RecordBatch>, String>> {
        let spec = self.spec.read_back.as_ref()?;
        let config = substitute(&spec.config, place);
        let named = match create_source(
            &self.plugin,
            &spec.source,
            &config,
            self.options.stall_timeout,
        ) {
            Ok(named) => named,
            Err(e) => return Some(Err(format!("read-back source `{}`: {e}", spec.source))),
        };
        let id = &spec.source;
        let options = engine_options(&self.options, ReplicationMode::FullTable, Verify::Off);
        let (result, collected) = read_through_engine(named, &options, None, None);
        Some(match result {
            Ok(_) => Ok(collected.take()),
            Err(e) => Err(format!(
                "reading back with source `{id}` failed: {}",
                failure(&e)
            )),
        })
    }

    fn columns(&self) -> Vec<String> {
        self.spec
            .columns
            .clone()
            .unwrap_or_else(|| ALL_COLUMNS.iter().map(|c| (*c).to_owned()).collect())
    }

    fn stream(&self) -> bool {
        self.spec.stream
    }
}

/// How one write is run.
#[derive(Clone)]
struct How {
    workers: usize,
    fail_after: Option<usize>,
    stop: bool,
    delay: Duration,
    partitions: usize,
    checkpoint: Option<CheckpointOptions>,
}

impl Default for How {
    fn default() -> Self {
        Self {
            workers: 1,
            fail_after: None,
            stop: false,
            delay: Duration::ZERO,
            partitions: 1,
            checkpoint: None,
        }
    }
}

const NOT_READ_BACK: &str = "not read back";

struct Writes<'a> {
    plugin: &'a Arc<LoadedPlugin>,
    id: &'a str,
    harness: &'a dyn TargetHarness,
    options: &'a CheckOptions,
    capabilities: Vec<Capability>,
    verify: Verify,
    columns: Vec<&'a str>,
}

type Written = Result<Result<RunSummary, Box<RunFailed>>, String>;

impl Writes<'_> {
    fn create(&self, place: &Place) -> Result<Box<dyn Target>, String> {
        let (plugin, id, config) = (
            self.plugin.clone(),
            self.id.to_owned(),
            self.harness.config(place),
        );
        with_timeout(
            self.options.stall_timeout,
            "creating the target",
            move || plugin.create_target(&id, &config),
        )?
        .map(|t| Box::new(t) as Box<dyn Target>)
        .map_err(|e| format!("creating the target failed: {e}"))
    }

    fn write(
        &self,
        place: &Place,
        batches: Vec<RecordBatch>,
        mode: ReplicationMode,
        how: How,
    ) -> Written {
        let target = self.create(place)?;
        let stop = how.stop.then(|| Arc::new(AtomicBool::new(false)));
        let mut source = DataSource::new(batches, how.partitions);
        source.fail_after = how.fail_after;
        source.delay = how.delay;
        source.stop_after_first = stop.clone();
        let pipeline = Pipeline {
            source: Named::new("suite", Box::new(source) as Box<dyn Source>)
                .with_capabilities(vec![Capability::Resume]),
            transforms: vec![],
            target: Named::new(self.id, target).with_capabilities(self.capabilities.clone()),
        };
        let options = engine::EngineOptions {
            target_concurrency: how.workers,
            stop,
            checkpoint: how.checkpoint,
            ..engine_options(self.options, mode, self.verify)
        };
        Ok(engine::run(pipeline, &options, &mut NoObserver))
    }

    fn offset(&self, place: &Place) -> Result<Option<Value>, String> {
        let target = self.create(place)?;
        with_timeout(self.options.stall_timeout, "get_offset", move || {
            target.get_offset()
        })?
        .map_err(|e| format!("get_offset failed: {e}"))
    }

    /// What the target published in `place`, as text rows; `None` when it cannot be read back.
    fn back(&self, place: &Place) -> Option<Result<Vec<Vec<String>>, String>> {
        self.harness
            .read_back(place)
            .map(|r| r.and_then(|b| data::try_rows_as_text(&b, &self.columns)))
    }

    /// The published rows of `place` are `want`'s (when it can be read back).
    fn holds(&self, place: &Place, want: &[RecordBatch]) -> Result<String, String> {
        let want = data::try_rows_as_text(want, &self.columns)?;
        match self.back(place) {
            None => Ok(NOT_READ_BACK.into()),
            Some(got) => {
                compare_rows(&got?, &want, &self.columns)?;
                Ok(format!("read back: {} rows", want.len()))
            }
        }
    }

    /// A snapshot of the place: published rows, offset and leftovers.
    fn snapshot(&self, place: &Place) -> Result<Snapshot, String> {
        Ok(Snapshot {
            rows: self.back(place).transpose()?,
            offset: self.offset(place)?,
            leftovers: self.harness.leftovers(place)?,
        })
    }
}

#[derive(PartialEq)]
struct Snapshot {
    rows: Option<Vec<Vec<String>>>,
    offset: Option<Value>,
    leftovers: Vec<String>,
}

fn unchanged(before: &Snapshot, after: &Snapshot, what: &str) -> Result<String, String> {
    if before.rows != after.rows {
        let n = |s: &Snapshot| s.rows.as_ref().map_or(0, Vec::len);
        return Err(format!(
            "{what} changed the published rows ({} rows before, {} after): a run that does \
             not finish must leave the target as it was",
            n(before),
            n(after)
        ));
    }
    if before.offset != after.offset {
        return Err(format!(
            "{what} changed the offset from {:?} to {:?}",
            before.offset, after.offset
        ));
    }
    if before.leftovers != after.leftovers {
        let new: Vec<&String> = after
            .leftovers
            .iter()
            .filter(|f| !before.leftovers.contains(f))
            .collect();
        return Err(format!("{what} left files behind: {new:?}"));
    }
    Ok("the target is as it was".into())
}

fn ids(first: i64, rows: usize, batch: usize, columns: &[&str]) -> Vec<RecordBatch> {
    data::standard_batches(first, rows, batch, columns)
}

/// Runs the target checks on target `id` of `plugin`, configured and read back by `harness`.
pub fn check_target(
    plugin: &Arc<LoadedPlugin>,
    id: &str,
    harness: &dyn TargetHarness,
    options: &CheckOptions,
) -> Vec<super::Check> {
    let mut checks = Checks::new(format!("target `{id}`"));
    let Some(info) = find(plugin, ComponentKind::Target, id) else {
        checks.fail(
            "exists",
            format!("plugin `{}` has no target `{id}`", plugin.name),
        );
        return checks.into_vec();
    };
    let columns = harness.columns();
    if let Some(unknown) = columns.iter().find(|c| !ALL_COLUMNS.contains(&c.as_str())) {
        checks.fail(
            "configuration",
            format!(
                "the check names the column `{unknown}`, which is not a standard column ({})",
                ALL_COLUMNS.join(", ")
            ),
        );
        return checks.into_vec();
    }
    let place = |checks: &mut Checks| match Place::new() {
        Ok(p) => Some(p),
        Err(e) => {
            checks.fail(
                "a place to write",
                format!("cannot make a temporary folder: {e}"),
            );
            None
        }
    };
    let Some(empty_place) = place(&mut checks) else {
        return checks.into_vec();
    };
    if !check_config(&mut checks, info, &harness.config(&empty_place)) {
        return checks.into_vec();
    }
    let capabilities = info.capabilities.clone();
    let verify = if capabilities.contains(&Capability::VerifyChecksum) {
        Verify::Checksum
    } else if capabilities.contains(&Capability::VerifyCount) {
        Verify::Count
    } else {
        Verify::Off
    };
    let writes = Writes {
        plugin,
        id,
        harness,
        options,
        capabilities: capabilities.clone(),
        verify,
        columns: columns.iter().map(String::as_str).collect(),
    };
    let cols = writes.columns.clone();
    let stream = harness.stream();

    // An empty run.
    let empty = (|| {
        writes
            .write(
                &empty_place,
                vec![],
                ReplicationMode::FullTable,
                How::default(),
            )?
            .map_err(|e| failure(&e))?;
        let mut detail = Vec::new();
        match writes.back(&empty_place) {
            Some(Ok(rows)) if rows.is_empty() => detail.push("nothing to read back".to_owned()),
            Some(Ok(rows)) => {
                return Err(format!("{} rows read back after an empty run", rows.len()));
            }
            Some(Err(e)) => detail.push(format!("nothing readable ({e})")),
            None => {}
        }
        match writes.offset(&empty_place)? {
            None => detail.push("no offset".into()),
            Some(o) => return Err(format!("an empty target reports the offset {o}")),
        }
        Ok(detail.join(", "))
    })();
    checks.record("an empty run", empty);

    // Many batches from two writers.
    let Some(main) = place(&mut checks) else {
        return checks.into_vec();
    };
    let many = ids(1, 20_000, 500, &cols);
    let loaded = writes.write(
        &main,
        many.clone(),
        ReplicationMode::FullTable,
        How {
            workers: 2,
            partitions: 2,
            ..How::default()
        },
    );
    match loaded {
        Ok(Ok(summary)) => {
            let verified = summary
                .verification
                .map(|v| {
                    format!(
                        ", verified by {}: {:?}",
                        super::source::mode_name(v.mode),
                        v.status
                    )
                    .to_lowercase()
                })
                .unwrap_or_default();
            checks.pass(
                "loads many batches from two writers",
                format!(
                    "{} rows in {} batches{verified}",
                    summary.rows_loaded,
                    many.len()
                ),
            );
        }
        Ok(Err(e)) => {
            checks.fail("loads many batches from two writers", failure(&e));
            return checks.into_vec();
        }
        Err(e) => {
            checks.fail("loads many batches from two writers", e);
            return checks.into_vec();
        }
    }
    match writes.holds(&main, &many) {
        Ok(d) if d == NOT_READ_BACK => checks.warn(
            "stores every row once, with its values",
            "no way to read back what it wrote was given: only its own word was checked",
        ),
        other => {
            checks.record("stores every row once, with its values", other);
        }
    }
    let offset_check = |checks: &mut Checks, place: &Place, last: i64| match writes.offset(place) {
        Ok(Some(o)) if o == last => checks.pass("offset is the largest key stored", format!("{o}")),
        Ok(Some(o)) => checks.fail(
            "offset is the largest key stored",
            format!("it reports {o} after storing keys up to {last}"),
        ),
        Ok(None) if stream => checks.pass(
            "offset is the largest key stored",
            "a stream target keeps none",
        ),
        Ok(None) => checks.warn(
            "offset is the largest key stored",
            "it keeps no offset: INCREMENTAL runs into it cannot start after what it holds",
        ),
        Err(e) => checks.fail("offset is the largest key stored", e),
    };
    offset_check(&mut checks, &main, 20_000);

    if stream {
        stream_checks(&mut checks, &writes, &place, &cols);
        return checks.into_vec();
    }

    // FULL_TABLE replaces what was there.
    let replacement = ids(30_001, 1_000, 250, &cols);
    let replaced = writes
        .write(
            &main,
            replacement.clone(),
            ReplicationMode::FullTable,
            How::default(),
        )
        .and_then(|r| r.map_err(|e| failure(&e)))
        .and_then(|_| writes.holds(&main, &replacement));
    checks.record("FULL_TABLE replaces what was there", replaced);

    // INCREMENTAL appends after the offset.
    let more = ids(31_001, 500, 200, &cols);
    let mut all = replacement.clone();
    all.extend(more.iter().cloned());
    match writes.write(&main, more, ReplicationMode::Incremental, How::default()) {
        Ok(Ok(_)) => {
            checks.record("INCREMENTAL appends", writes.holds(&main, &all));
            offset_check(&mut checks, &main, 31_500);
        }
        Ok(Err(e)) if failure(&e).contains("FULL_TABLE") => {
            checks.skip(
                "INCREMENTAL appends",
                format!("it refuses INCREMENTAL: {}", failure(&e)),
            );
        }
        Ok(Err(e)) => checks.fail("INCREMENTAL appends", failure(&e)),
        Err(e) => checks.fail("INCREMENTAL appends", e),
    }

    // A failed run, then a cancelled one, leave the target as it was.
    for (name, how) in [
        (
            "a failed run leaves it as it was",
            How {
                fail_after: Some(3),
                ..How::default()
            },
        ),
        (
            "a cancelled run leaves it as it was",
            How {
                stop: true,
                delay: Duration::from_millis(50),
                ..How::default()
            },
        ),
    ] {
        let cancelled = how.stop;
        let result = (|| {
            let before = writes.snapshot(&main)?;
            let run = writes.write(
                &main,
                ids(40_001, 3_000, 250, &cols),
                ReplicationMode::FullTable,
                how,
            )?;
            match run {
                Ok(_) => {
                    return Err(
                        "the run succeeded although its source failed or it was cancelled".into(),
                    );
                }
                Err(e) if cancelled && e.summary.status != RunStatus::Stopped => {
                    return Err(format!("the cancelled run failed: {}", failure(&e)));
                }
                Err(_) => {}
            }
            let after = writes.snapshot(&main)?;
            unchanged(
                &before,
                &after,
                if cancelled {
                    "the cancelled run"
                } else {
                    "the failed run"
                },
            )
        })();
        checks.record(name, result);
    }

    // A killed checkpointed run resumes to exactly its rows.
    if capabilities.contains(&Capability::Resume) {
        let result = match place(&mut checks) {
            Some(p) => resume(&writes, &p, &cols),
            None => Err("no place to write".into()),
        };
        checks.record(
            "a failed checkpointed run resumes to exactly its rows",
            result,
        );
    } else {
        checks.skip(
            "a failed checkpointed run resumes to exactly its rows",
            "does not declare `resume`: a failed run into it starts over",
        );
    }
    checks.into_vec()
}

fn resume(writes: &Writes<'_>, place: &Place, cols: &[&str]) -> Result<String, String> {
    let batches = ids(1, 4_000, 250, cols);
    let checkpoint = CheckpointOptions {
        resume: Resume::Auto,
        fingerprint: format!("conformance-{}", place.name),
        interval: Duration::from_millis(10),
    };
    let first = writes.write(
        place,
        batches.clone(),
        ReplicationMode::FullTable,
        How {
            fail_after: Some(10),
            delay: Duration::from_millis(20),
            partitions: 2,
            checkpoint: Some(checkpoint.clone()),
            ..How::default()
        },
    )?;
    let failed = match first {
        Ok(_) => return Err("the first run succeeded although its source failed".into()),
        Err(e) => e,
    };
    if !failed.summary.checkpoint.as_ref().is_some_and(|c| c.kept) {
        return Err(format!(
            "the failed run did not keep its staging for a resume ({})",
            failure(&failed)
        ));
    }
    if let Some(Ok(rows)) = writes.back(place)
        && !rows.is_empty()
    {
        return Err(format!("the failed run published {} rows", rows.len()));
    }
    let second = writes.write(
        place,
        batches.clone(),
        ReplicationMode::FullTable,
        How {
            partitions: 2,
            checkpoint: Some(checkpoint),
            ..How::default()
        },
    )?;
    let summary = second.map_err(|e| format!("the resumed run failed: {}", failure(&e)))?;
    let Some(ck) = summary.checkpoint.filter(|c| c.resumed) else {
        return Err("the next run of the same pipeline did not resume the failed one".into());
    };
    let held = writes.holds(place, &batches)?;
    match writes.offset(place)? {
        Some(o) if o == 4_000 => {}
        other => {
            return Err(format!(
                "after the resumed run the offset is {other:?}, not 4000"
            ));
        }
    }
    Ok(format!(
        "{} rows already loaded, {} read again; {held}",
        ck.rows_already_loaded, summary.rows_extracted
    ))
}

fn stream_checks(
    checks: &mut Checks,
    writes: &Writes<'_>,
    place: &dyn Fn(&mut Checks) -> Option<Place>,
    cols: &[&str],
) {
    let Some(p) = place(checks) else { return };
    let few = ids(1, 10, 10, cols);
    match writes.write(
        &p,
        few.clone(),
        ReplicationMode::Incremental,
        How::default(),
    ) {
        Ok(Ok(_)) => {
            checks.record(
                "INCREMENTAL",
                writes.holds(&p, &few).map(|d| format!("taken; {d}")),
            );
        }
        Ok(Err(e)) if failure(&e).contains("FULL_TABLE") => {
            checks.pass("INCREMENTAL", format!("refused: {}", failure(&e)))
        }
        Ok(Err(e)) => checks.fail(
            "INCREMENTAL",
            format!("refused without naming FULL_TABLE: {}", failure(&e)),
        ),
        Err(e) => checks.fail("INCREMENTAL", e),
    };
    let Some(p) = place(checks) else { return };
    let result = writes
        .write(
            &p,
            ids(1, 3_000, 250, cols),
            ReplicationMode::FullTable,
            How {
                fail_after: Some(3),
                ..How::default()
            },
        )
        .and_then(|run| match run {
            Ok(_) => Err("the run succeeded although its source failed".into()),
            Err(_) => match writes.back(&p) {
                None => Ok("failed; not read back".into()),
                Some(rows) => {
                    let rows = rows?;
                    let mut seen = std::collections::BTreeSet::new();
                    match rows.iter().find(|r| !seen.insert(r[0].clone())) {
                        Some(r) => Err(format!("the row with id {} was sent twice", r[0])),
                        None => Ok(format!("failed; {} rows sent, none twice", rows.len())),
                    }
                }
            },
        });
    checks.record("a failed run sends no row twice", result);
}
