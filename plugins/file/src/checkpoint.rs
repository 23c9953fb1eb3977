//! The `file` target's checkpoints: what a checkpointed run keeps in its staging folder so that
//! a later run can resume it, and the lock that keeps two runs out of one folder.
//!
//! ```text
//! <dir>/.fastlane-lock-<prefix>                     held (flock) while a run is open
//! <dir>/.fastlane-staging-<run id>/                 the run's data files, published at commit
//! <dir>/.fastlane-staging-<run id>/.checkpoints/
//!     plan.json                                     the host's plan and this target's identity
//!     record-<attempt>-<writer>-<n>.json            data files made durable, and their tags
//! ```
//!
//! A commit first writes `publishing.json` beside the plan (the files it moves aside and the
//! files it publishes), then moves them, then renames the staging folder to
//! `.fastlane-trash-<run id>` and removes it. A run killed in the middle of that is finished by
//! the next run of the target, which moves the rest and removes the folder: a staging folder
//! with `publishing.json` is published, never resumed.
//!
//! A writer's flush finishes its current file (fsync, rename from `.tmp`), then writes a record
//! naming the files finished since its last record and the tags of the batches written since,
//! atomically (a temporary file, fsync, rename, fsync of the folder). A batch is always whole
//! in the files of one record, since the host flushes between batches. When a run resumes, the
//! data files that no record names (written after the last flush of a killed writer) are
//! deleted, so the records describe the staging exactly.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fastlane_plugin_api::{PluginError, Result, StagedRun};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The folder of a staging folder holding its checkpoints.
pub(crate) const CHECKPOINTS: &str = ".checkpoints";

/// Staging folders start with this.
pub(crate) const STAGING_PREFIX: &str = ".fastlane-staging-";

/// What identifies the target that wrote a staging folder: two pipelines may share a folder
/// with different prefixes or formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) file_prefix: String,
    pub(crate) extension: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanFile {
    target: Identity,
    plan: Value,
}

/// One writer's flush: the files it finished and the tags of the batches they hold.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) files: Vec<String>,
    pub(crate) tags: Vec<String>,
}

fn io_err(context: &str, path: &Path) -> impl Fn(std::io::Error) -> PluginError {
    let text = format!("{context} `{}`", path.display());
    move |e| PluginError::io(format!("{text}: {e}"))
}

/// Writes `bytes` to `path` all at once: a temporary file, synced, renamed over `path`, and the
/// folder synced, so that a crash leaves the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut file = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
    file.write_all(bytes)
        .map_err(io_err("cannot write", &tmp))?;
    file.sync_all().map_err(io_err("cannot sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err("cannot rename", &tmp))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Syncs a folder, so that the names created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync the folder", dir))
}

/// The lock of the runs of one target (folder and prefix), held while a run is open. The lock
/// file is removed when the run ends; a run that takes the lock checks that the file it locked
/// is still the one at the path, so a run ending at that moment never lets two in.
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock, or says which run holds it.
    pub(crate) fn take(dir: &Path, prefix: &str) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let name = if prefix.is_empty() {
            ".fastlane-lock".to_owned()
        } else {
            format!(".fastlane-lock-{prefix}")
        };
        let path = dir.join(name);
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err("cannot open the lock", &path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(PluginError::config(format!(
                        "another run is writing `{}` with file_prefix `{prefix}` right now (it \
                         holds `{}`)",
                        dir.display(),
                        path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_err("cannot lock", &path)(e));
                }
            }
            let locked = file.metadata().map_err(io_err("cannot read", &path))?;
            let current = std::fs::metadata(&path).ok();
            if current.is_some_and(|c| c.ino() == locked.ino() && c.dev() == locked.dev()) {
                return Ok(Self { file, path });
            }
            // The run that held it ended and removed the file meanwhile: lock the new one.
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the file handle.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Stores the plan of a new checkpointed run in its staging folder.
pub(crate) fn store_plan(staging: &Path, identity: &Identity, plan: &Value) -> Result<()> {
    let dir = staging.join(CHECKPOINTS);
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    let text = serde_json::to_vec(&PlanFile {
        target: identity.clone(),
        plan: plan.clone(),
    })
    .map_err(PluginError::internal)?;
    write_atomic(&dir.join("plan.json"), &text)?;
    sync_dir(staging)
}

fn read_plan(staging: &Path) -> Option<PlanFile> {
    let text = std::fs::read(staging.join(CHECKPOINTS).join("plan.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The staging folders of `dir`, with their run ids.
fn staging_folders(dir: &Path) -> Vec<(String, PathBuf)> {
    folders_named(dir, STAGING_PREFIX)
}

/// The folders of `dir` whose names start with `prefix`, with the rest of their names.
fn folders_named(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let run = name.strip_prefix(prefix)?.to_owned();
            e.path().is_dir().then(|| (run, e.path()))
        })
        .collect()
}

/// A checkpointed staging folder is made under this name, its plan written, then renamed: a
/// staging folder always has its plan, so that a later run can tell whose it is.
pub(crate) const CREATING_PREFIX: &str = ".fastlane-creating-";

/// Creates the staging folder `staging` of run `run_id` in `dir` with its plan, at once.
pub(crate) fn create_staging(
    dir: &Path,
    staging: &Path,
    run_id: &str,
    identity: &Identity,
    plan: &Value,
) -> Result<()> {
    let creating = dir.join(format!("{CREATING_PREFIX}{run_id}"));
    std::fs::create_dir_all(&creating).map_err(io_err("cannot create", &creating))?;
    store_plan(&creating, identity, plan)?;
    std::fs::rename(&creating, staging).map_err(io_err("cannot rename", &creating))?;
    sync_dir(dir)
}

/// Staging folders being removed start with this.
pub(crate) const TRASH_PREFIX: &str = ".fastlane-trash-";

/// What a commit publishes, written before it moves anything.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Publishing {
    pub(crate) target: Identity,
    /// The data files of the folder moved aside into `<staging>/.replaced` (FULL_TABLE).
    pub(crate) aside: Vec<String>,
    /// The staged files moved into the folder.
    pub(crate) publish: Vec<String>,
}

const PUBLISHING: &str = "publishing.json";

/// Records what a commit is about to move, durably.
pub(crate) fn start_publishing(staging: &Path, publishing: &Publishing) -> Result<()> {
    let dir = staging.join(CHECKPOINTS);
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    let text = serde_json::to_vec(publishing).map_err(PluginError::internal)?;
    write_atomic(&dir.join(PUBLISHING), &text)?;
    sync_dir(staging)
}

/// Forgets a commit that failed and was undone: the staging is as before it started.
pub(crate) fn cancel_publishing(staging: &Path) {
    let path = staging.join(CHECKPOINTS).join(PUBLISHING);
    if let Err(e) = std::fs::remove_file(&path) {
        log::warn!("cannot remove `{}`: {e}", path.display());
    }
}

fn read_publishing(staging: &Path) -> Option<Publishing> {
    let text = std::fs::read(staging.join(CHECKPOINTS).join(PUBLISHING)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes a published staging folder: renamed first, in one step, so that a kill while its
/// files are removed leaves no staging behind, only trash.
pub(crate) fn trash(dir: &Path, staging: &Path) {
    let Some(name) = staging.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let run = name.strip_prefix(STAGING_PREFIX).unwrap_or(name);
    let trash = dir.join(format!("{TRASH_PREFIX}{run}"));
    let removed = match std::fs::rename(staging, &trash) {
        Ok(()) => {
            let _ = sync_dir(dir);
            std::fs::remove_dir_all(&trash)
        }
        Err(_) => std::fs::remove_dir_all(staging),
    };
    if let Err(e) = removed {
        log::warn!("published, but cannot remove `{}`: {e}", staging.display());
    }
}

/// Finishes what killed commits of this target left in `dir` (the caller holds the lock):
/// moves the rest of their files as `publishing.json` says, then removes their staging; and
/// removes leftover trash.
pub(crate) fn recover(dir: &Path, identity: &Identity) -> Result<()> {
    for (run_id, staging) in staging_folders(dir) {
        let Some(publishing) = read_publishing(&staging) else {
            continue;
        };
        if publishing.target != *identity {
            continue;
        }
        log::warn!("finishing the publication of run `{run_id}`, which was interrupted");
        let aside = staging.join(".replaced");
        std::fs::create_dir_all(&aside).map_err(io_err("cannot create", &aside))?;
        for name in &publishing.aside {
            let from = dir.join(name);
            if from.is_file() {
                let to = aside.join(name);
                std::fs::rename(&from, &to).map_err(io_err("cannot move aside", &from))?;
            }
        }
        for name in &publishing.publish {
            let from = staging.join(name);
            if from.is_file() {
                let to = dir.join(name);
                std::fs::rename(&from, &to).map_err(io_err("cannot publish", &to))?;
            }
        }
        sync_dir(dir)?;
        trash(dir, &staging);
    }
    let entries = std::fs::read_dir(dir).map_err(io_err("cannot list", dir))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TRASH_PREFIX)
            && entry.path().is_dir()
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            log::warn!("cannot remove `{}`: {e}", entry.path().display());
        }
    }
    Ok(())
}

/// The checkpointed runs of this target whose staging is kept in `dir`, newest first. A run
/// killed while it published is not one of them: the next open finishes its publication.
pub(crate) fn resumable_runs(dir: &Path, identity: &Identity) -> Vec<StagedRun> {
    let mut runs: Vec<StagedRun> = staging_folders(dir)
        .into_iter()
        .filter(|(_, path)| read_publishing(path).is_none())
        .filter_map(|(run_id, path)| {
            let plan = read_plan(&path)?;
            (plan.target == *identity).then_some(StagedRun {
                run_id,
                plan: plan.plan,
            })
        })
        .collect();
    // Run ids start with their UTC start time.
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    runs
}

/// Removes the staging folders that earlier checkpointed runs of this target left, but for
/// `keep`: a new run that does not resume them discards them (the caller holds the lock).
pub(crate) fn discard_others(dir: &Path, identity: &Identity, keep: &str) {
    // Folders a killed process left while creating a staging: this target's, or empty ones
    // (killed before its plan was written; no one can resume them).
    for (run_id, path) in folders_named(dir, CREATING_PREFIX) {
        let plan = read_plan(&path);
        let empty = plan.is_none() && walk_is_empty(&path);
        if run_id != keep && (empty || plan.is_some_and(|p| p.target == *identity)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    for (run_id, path) in staging_folders(dir) {
        if run_id == keep {
            continue;
        }
        if read_plan(&path).is_some_and(|p| p.target == *identity) {
            log::info!("discarding the staging of unfinished run `{run_id}`");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                log::warn!("cannot remove `{}`: {e}", path.display());
            }
        }
    }
}

/// Whether a folder holds no file, at any depth.
fn walk_is_empty(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).all(|e| {
        let p = e.path();
        p.is_dir() && walk_is_empty(&p)
    })
}

/// Reopens the staging of a run being resumed: reads its records, deletes the data files no
/// record names, and returns the kept tags and the highest file number used.
pub(crate) fn reopen(staging: &Path, run_id: &str) -> Result<(Vec<String>, u32)> {
    if read_plan(staging).is_none() {
        return Err(PluginError::not_found(format!(
            "run `{run_id}` left no checkpointed staging in `{}`",
            staging.display()
        )));
    }
    let dir = staging.join(CHECKPOINTS);
    let mut kept_files = std::collections::HashSet::new();
    let mut tags = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(io_err("cannot list", &dir))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("record-") {
            continue;
        }
        if !name.ends_with(".json") {
            // A record whose writing was cut short.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let text = std::fs::read(entry.path()).map_err(io_err("cannot read", &entry.path()))?;
        let record: Record = serde_json::from_slice(&text).map_err(|e| {
            PluginError::data(format!(
                "the checkpoint `{}` is damaged ({e}); start afresh with --fresh",
                entry.path().display()
            ))
        })?;
        kept_files.extend(record.files);
        tags.extend(record.tags);
    }
    let mut max_seq = 0u32;
    let entries = std::fs::read_dir(staging).map_err(io_err("cannot list", staging))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !kept_files.contains(&name) {
            log::debug!("removing `{name}`, written after the last checkpoint");
            std::fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
            continue;
        }
        max_seq = max_seq.max(file_seq(&name).unwrap_or(0));
    }
    for name in &kept_files {
        if !staging.join(name).is_file() {
            return Err(PluginError::data(format!(
                "the staging of run `{run_id}` lacks `{name}`, which its checkpoints name; \
                 start afresh with --fresh"
            )));
        }
    }
    sync_dir(staging)?;
    Ok((tags, max_seq))
}

/// The number of a data file: the digits after its last `-`, before the extension.
fn file_seq(name: &str) -> Option<u32> {
    let stem = name.split('.').next()?;
    stem.rsplit('-').next()?.parse().ok()
}

/// Writes one writer's record into the staging folder.
pub(crate) fn write_record(staging: &Path, name: &str, record: &Record) -> Result<()> {
    let text = serde_json::to_vec(record).map_err(PluginError::internal)?;
    write_atomic(&staging.join(CHECKPOINTS).join(name), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_numbers_are_read_from_data_file_names() {
        assert_eq!(
            file_seq("part-20260101T000000Z-abcdef-0-00042.parquet"),
            Some(42)
        );
        assert_eq!(
            file_seq("part-20260101T000000Z-abcdef-1-00007.csv.gz"),
            Some(7)
        );
        assert_eq!(file_seq("weird"), None);
    }

    #[test]
    fn a_resumed_staging_keeps_recorded_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join(".fastlane-staging-r");
        std::fs::create_dir_all(&staging).unwrap();
        let identity = Identity {
            file_prefix: "part".into(),
            extension: "csv".into(),
        };
        store_plan(&staging, &identity, &serde_json::json!({"p": 1})).unwrap();
        for name in ["p-0-00001.csv", "p-0-00002.csv", "p-1-00003.csv"] {
            std::fs::write(staging.join(name), "x").unwrap();
        }
        std::fs::write(staging.join("p-1-00004.csv.tmp"), "x").unwrap();
        let record = Record {
            files: vec!["p-0-00001.csv".into(), "p-1-00003.csv".into()],
            tags: vec!["a".into(), "b".into()],
        };
        write_record(&staging, "record-1-0-0.json", &record).unwrap();
        std::fs::write(staging.join(CHECKPOINTS).join("record-1-0-1.partial"), "{").unwrap();

        let (mut tags, max) = reopen(&staging, "r").unwrap();
        tags.sort();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(max, 3);
        let mut left: Vec<String> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".checkpoints", "p-0-00001.csv", "p-1-00003.csv"]);

        let runs = resumable_runs(tmp.path(), &identity);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run_id, "r");
        let other = Identity {
            file_prefix: "other".into(),
            ..identity.clone()
        };
        assert!(resumable_runs(tmp.path(), &other).is_empty());
        discard_others(tmp.path(), &identity, "x");
        assert!(!staging.exists());
    }

    #[test]
    fn a_staging_is_created_with_its_plan_and_half_created_ones_are_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let identity = Identity {
            file_prefix: "part".into(),
            extension: "parquet".into(),
        };
        let other = Identity {
            file_prefix: "other".into(),
            ..identity.clone()
        };
        let staging = dir.join(format!("{STAGING_PREFIX}r1"));
        create_staging(dir, &staging, "r1", &identity, &serde_json::json!({"p": 1})).unwrap();
        assert!(read_plan(&staging).is_some_and(|p| p.target == identity));
        assert!(folders_named(dir, CREATING_PREFIX).is_empty());

        // Processes killed while creating: before the plan (an empty folder), after it (this
        // target's), and another target's.
        let creating = |run: &str| dir.join(format!("{CREATING_PREFIX}{run}"));
        std::fs::create_dir_all(creating("k1").join(CHECKPOINTS)).unwrap();
        std::fs::create_dir_all(creating("k2")).unwrap();
        store_plan(&creating("k2"), &identity, &serde_json::json!({})).unwrap();
        std::fs::create_dir_all(creating("k3")).unwrap();
        store_plan(&creating("k3"), &other, &serde_json::json!({})).unwrap();
        discard_others(dir, &identity, "r2");
        let left: Vec<String> = folders_named(dir, CREATING_PREFIX)
            .into_iter()
            .map(|(run, _)| run)
            .collect();
        assert_eq!(left, ["k3"]);
    }

    #[test]
    fn a_publication_killed_halfway_is_finished_by_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let identity = Identity {
            file_prefix: "part".into(),
            extension: "parquet".into(),
        };
        let staging = dir.join(format!("{STAGING_PREFIX}r1"));
        std::fs::create_dir_all(&staging).unwrap();
        store_plan(&staging, &identity, &serde_json::json!({"p": 1})).unwrap();
        for name in ["part-r1-0-00000.parquet", "part-r1-0-00001.parquet"] {
            std::fs::write(staging.join(name), name).unwrap();
        }
        for name in ["part-r0-0-00000.parquet", "part-r0-0-00001.parquet"] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        start_publishing(
            &staging,
            &Publishing {
                target: identity.clone(),
                aside: vec![
                    "part-r0-0-00000.parquet".into(),
                    "part-r0-0-00001.parquet".into(),
                ],
                publish: vec![
                    "part-r1-0-00000.parquet".into(),
                    "part-r1-0-00001.parquet".into(),
                ],
            },
        )
        .unwrap();
        // Killed after one old file was moved aside and one new one published.
        std::fs::create_dir_all(staging.join(".replaced")).unwrap();
        std::fs::rename(
            dir.join("part-r0-0-00000.parquet"),
            staging.join(".replaced/part-r0-0-00000.parquet"),
        )
        .unwrap();
        std::fs::rename(
            staging.join("part-r1-0-00000.parquet"),
            dir.join("part-r1-0-00000.parquet"),
        )
        .unwrap();
        assert!(
            resumable_runs(dir, &identity).is_empty(),
            "published, not resumable"
        );

        recover(dir, &identity).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["part-r1-0-00000.parquet", "part-r1-0-00001.parquet"]
        );
    }

    #[test]
    fn a_second_run_is_refused_while_the_lock_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Lock::take(tmp.path(), "part").unwrap();
        let err = Lock::take(tmp.path(), "part").unwrap_err();
        assert!(err.message().contains("another run"), "{err}");
        assert!(Lock::take(tmp.path(), "other").is_ok());
        drop(first);
        let again = Lock::take(tmp.path(), "part").unwrap();
        drop(again);
        // The lock files go with their runs.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
