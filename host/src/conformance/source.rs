//! The source checks.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{
    BatchStream, Capability, ComponentKind, ReadContext, ReadRange, ReplicationMode, Source,
};
use serde_json::Value;

use super::data::{self, ALL_COLUMNS};
use super::engine_parts::{
    Key, checksum, create_source, engine_options, failure, keys, read_through_engine, rows_after,
    with_timeout,
};
use super::{CheckOptions, Checks, SourceSpec, check_config, find, total_rows};
use crate::engine::{Named, RunStatus, VerificationStatus, Verify};
use crate::plugins::LoadedPlugin;

type Made = Named<Box<dyn Source>>;

/// Runs the source checks on source `id` of `plugin` with the configuration `spec` gives.
pub fn check_source(
    plugin: &Arc<LoadedPlugin>,
    id: &str,
    spec: &SourceSpec,
    options: &CheckOptions,
) -> Vec<super::Check> {
    let mut checks = Checks::new(format!("source `{id}`"));
    let Some(info) = find(plugin, ComponentKind::Source, id) else {
        checks.fail(
            "exists",
            format!("plugin `{}` has no source `{id}`", plugin.name),
        );
        return checks.into_vec();
    };
    if !check_config(&mut checks, info, &spec.config) {
        return checks.into_vec();
    }
    let capabilities = info.capabilities.clone();
    let make = || -> Result<Made, String> {
        create_source(plugin, id, &spec.config, options.stall_timeout)
    };
    let read = |mode: ReplicationMode, verify: Verify, offset: Option<Value>| {
        let source = make()?;
        let engine_options = engine_options(options, mode, verify);
        let (result, collected) = read_through_engine(source, &engine_options, offset, None);
        match result {
            Ok(summary) => Ok((collected.take(), summary)),
            Err(e) => Err(failure(&e)),
        }
    };

    let (full, summary) = match read(ReplicationMode::FullTable, Verify::Off, None) {
        Ok(r) => r,
        Err(e) => {
            checks.fail("reads its data", e);
            return checks.into_vec();
        }
    };
    checks.pass(
        "reads its data",
        format!(
            "{} rows in {} batches from {}",
            total_rows(&full),
            full.len(),
            partitions_text(summary.partitions)
        ),
    );
    checks.record("one schema across batches", one_schema(&full));
    if let Some(expect) = &spec.expect {
        checks.record("reads the expected rows", expected_rows(&full, expect));
    }
    let key_values = match &spec.key {
        None => {
            checks.skip(
                "unique key",
                "no `key` in the check file: the key and offset checks are not run",
            );
            None
        }
        Some(key) => match keys(&full, key) {
            Ok(k) => {
                checks.record("unique key", unique(key, &k));
                Some((key.as_str(), k))
            }
            Err(e) => {
                checks.fail("unique key", e);
                None
            }
        },
    };
    match read(ReplicationMode::FullTable, Verify::Off, None) {
        Ok((again, _)) => match (checksum(&full), checksum(&again)) {
            (Ok(a), Ok(b)) if a == b => {
                checks.pass("the same rows when read twice", format!("{} rows", a.rows));
            }
            (Ok(a), Ok(b)) => checks.fail(
                "the same rows when read twice",
                format!(
                    "the first read gave {} rows (checksum {:016x}), the second {} (checksum \
                     {:016x}); the check needs data that does not change while it runs",
                    a.rows, a.sum, b.rows, b.sum
                ),
            ),
            (Err(e), _) | (_, Err(e)) => {
                checks.skip("the same rows when read twice", format!("no checksum: {e}"));
            }
        },
        Err(e) => checks.fail("the same rows when read twice", e),
    }
    if let Some((key, key_values)) = &key_values {
        let sorted = {
            let mut all: Vec<&Key> = key_values.iter().flatten().collect();
            all.sort();
            all
        };
        match (sorted.get((sorted.len().max(1) - 1) / 2), sorted.last()) {
            (Some(middle), Some(last)) => {
                let middle = (*middle).clone();
                let last = (*last).clone();
                let after = |offset: &Key| {
                    let (got, _) = read(
                        ReplicationMode::Incremental,
                        Verify::Off,
                        Some(offset.json()),
                    )?;
                    let want = rows_after(&full, key_values, offset)?;
                    same_rows_after(key, offset, &got, &want)
                };
                checks.record("INCREMENTAL reads after the start offset", after(&middle));
                checks.record("INCREMENTAL reads nothing after the last key", after(&last));
            }
            _ => checks.skip(
                "INCREMENTAL reads after the start offset",
                "the data has no rows to take an offset from",
            ),
        }
    }
    let verify = if capabilities.contains(&Capability::VerifyChecksum) {
        Some(Verify::Checksum)
    } else if capabilities.contains(&Capability::VerifyCount) {
        Some(Verify::Count)
    } else {
        None
    };
    match verify {
        None => checks.skip(
            "verification",
            "declares neither `verify_count` nor `verify_checksum`",
        ),
        Some(mode) => match read(ReplicationMode::FullTable, mode, None) {
            Ok((_, summary)) => match summary.verification {
                Some(v) if v.status == VerificationStatus::Passed => checks.pass(
                    "verification",
                    format!(
                        "{}: its own count {} = {} rows read{}",
                        mode_name(mode),
                        v.source_rows.map_or("-".into(), |n| n.to_string()),
                        v.read_rows,
                        v.source_checksum
                            .map(|c| format!(", checksum {c}"))
                            .unwrap_or_default()
                    ),
                ),
                Some(v) => checks.fail(
                    "verification",
                    format!(
                        "{} verification was {:?}: {}",
                        mode_name(mode),
                        v.status,
                        v.note.unwrap_or_default()
                    ),
                ),
                None => checks.fail("verification", "the run reported no verification"),
            },
            Err(e) => checks.fail("verification", e),
        },
    }
    if capabilities.contains(&Capability::Resume) {
        match make() {
            Ok(source) => {
                let limit = options.stall_timeout * 4;
                let result = with_timeout(limit, "reading ranges", move || {
                    ranges(source.component.as_ref())
                })
                .and_then(|r| r);
                match result {
                    Ok(Some(detail)) => checks.pass("reads ranges between positions", detail),
                    Ok(None) => checks.skip(
                        "reads ranges between positions",
                        "declares `resume`, but is not resumable as configured",
                    ),
                    Err(e) => checks.fail("reads ranges between positions", e),
                }
            }
            Err(e) => checks.fail("reads ranges between positions", e),
        }
    } else {
        checks.skip(
            "reads ranges between positions",
            "does not declare `resume`: runs reading it cannot be resumed",
        );
    }
    checks.record("stops when the run is cancelled", cancel(&make, options));
    checks.into_vec()
}

/// `count` or `checksum`.
pub(crate) fn mode_name(mode: Verify) -> &'static str {
    match mode {
        Verify::Off => "off",
        Verify::Count => "count",
        Verify::Checksum => "checksum",
    }
}

fn partitions_text(n: usize) -> String {
    if n == 1 {
        "1 partition".into()
    } else {
        format!("{n} partitions")
    }
}

fn one_schema(batches: &[RecordBatch]) -> Result<String, String> {
    let Some(first) = batches.first() else {
        return Ok("no batches".into());
    };
    let shape = data::schema_text(first);
    for (i, b) in batches.iter().enumerate().skip(1) {
        let this = data::schema_text(b);
        if this != shape {
            return Err(format!(
                "batch {i} has the columns {this}, batch 0 had {shape}: all batches of a source \
                 must share one schema"
            ));
        }
    }
    Ok(shape)
}

fn expected_rows(got: &[RecordBatch], expect: &super::Expect) -> Result<String, String> {
    let columns: Vec<&str> = match &expect.columns {
        Some(c) => c.iter().map(String::as_str).collect(),
        None => ALL_COLUMNS.to_vec(),
    };
    if let Some(unknown) = columns.iter().find(|c| !ALL_COLUMNS.contains(c)) {
        return Err(format!(
            "the check file names the column `{unknown}`, which is not a standard column ({})",
            ALL_COLUMNS.join(", ")
        ));
    }
    let want = data::standard_batches(1, expect.rows, 4096, &columns);
    let want = data::try_rows_as_text(&want, &columns)?;
    let got = data::try_rows_as_text(got, &columns)?;
    compare_rows(&got, &want, &columns)?;
    Ok(format!(
        "{} rows, columns id, {}",
        want.len(),
        columns.join(", ")
    ))
}

/// Compares rows rendered by [`data::try_rows_as_text`]: the same ids, once each, with the
/// same values; or the first difference.
pub(crate) fn compare_rows(
    got: &[Vec<String>],
    want: &[Vec<String>],
    columns: &[&str],
) -> Result<(), String> {
    let id = |r: &Vec<String>| r[0].clone();
    if got.len() != want.len() {
        let got_ids: std::collections::BTreeSet<String> = got.iter().map(id).collect();
        let want_ids: std::collections::BTreeSet<String> = want.iter().map(id).collect();
        let missing: Vec<&String> = want_ids.difference(&got_ids).take(3).collect();
        let extra: Vec<&String> = got_ids.difference(&want_ids).take(3).collect();
        let repeated = got.len() - got_ids.len();
        return Err(format!(
            "{} rows where {} were expected (missing ids {missing:?}, unexpected ids {extra:?}, \
             {repeated} repeated rows)",
            got.len(),
            want.len()
        ));
    }
    for (g, w) in got.iter().zip(want) {
        if g[0] != w[0] {
            return Err(format!(
                "the row with id {} is missing (id {} came instead, or twice)",
                w[0], g[0]
            ));
        }
        for (i, column) in columns.iter().enumerate() {
            if g[i + 1] != w[i + 1] {
                return Err(format!(
                    "row id {}, column `{column}`: `{}` where `{}` was expected",
                    w[0],
                    g[i + 1],
                    w[i + 1]
                ));
            }
        }
    }
    Ok(())
}

fn unique(key: &str, keys: &[Vec<Key>]) -> Result<String, String> {
    let mut all: Vec<&Key> = keys.iter().flatten().collect();
    all.sort();
    for pair in all.windows(2) {
        if pair[0] == pair[1] {
            let n = all.iter().filter(|k| **k == pair[0]).count();
            return Err(format!(
                "`{key}` = {} is read {n} times: a key must be unique (a row read twice, or \
                 not a key)",
                pair[0]
            ));
        }
    }
    Ok(format!("`{key}`: {} distinct values", all.len()))
}

fn same_rows_after(
    key: &str,
    offset: &Key,
    got: &[RecordBatch],
    want: &[RecordBatch],
) -> Result<String, String> {
    let got_keys = keys(got, key)?;
    if let Some(early) = got_keys.iter().flatten().find(|k| *k <= offset) {
        return Err(format!(
            "after the start offset {offset} it read `{key}` = {early}: an INCREMENTAL read \
             must start strictly after the offset"
        ));
    }
    let (n, m) = (total_rows(got), total_rows(want));
    if n != m {
        return Err(format!(
            "{n} rows after the start offset {offset}, where the full read has {m}"
        ));
    }
    if let (Ok(a), Ok(b)) = (checksum(got), checksum(want))
        && a != b
    {
        return Err(format!(
            "the {n} rows after the start offset {offset} differ from the same rows of the \
             full read (checksums {:016x} and {:016x})",
            a.sum, b.sum
        ));
    }
    Ok(format!("{n} rows after `{key}` = {offset}"))
}

/// Reads a partition batch by batch with positions, then reads it again as two ranges split
/// at a position: the head up to it and the tail after it must be the same rows.
fn ranges(source: &dyn Source) -> Result<Option<String>, String> {
    if !source.resumable() {
        return Ok(None);
    }
    let context = ReadContext {
        mode: ReplicationMode::FullTable,
        start_offset: None,
        parallelism: 2,
    };
    let partitions = source
        .partitions(&context)
        .map_err(|e| format!("planning partitions failed: {e}"))?;
    let mut best: Option<(usize, Vec<RecordBatch>, Vec<Value>)> = None;
    for partition in &partitions {
        let mut stream = source
            .read(partition)
            .map_err(|e| format!("reading partition {} failed: {e}", partition.index))?;
        let mut batches = Vec::new();
        let mut positions = Vec::new();
        while let Some(batch) = next(stream.as_mut(), partition.index)? {
            if batch.num_rows() == 0 {
                continue;
            }
            let position = stream.position().ok_or_else(|| {
                format!(
                    "partition {}: no position after batch {}; a source declaring `resume` \
                     positions every batch",
                    partition.index,
                    batches.len()
                )
            })?;
            batches.push(batch);
            positions.push(position);
        }
        let enough = batches.len() >= 2;
        if best
            .as_ref()
            .is_none_or(|(_, b, _)| batches.len() > b.len())
        {
            best = Some((partition.index, batches, positions));
        }
        if enough {
            break;
        }
    }
    let Some((index, batches, positions)) = best.filter(|(_, b, _)| !b.is_empty()) else {
        return Ok(Some("no rows to read in ranges".into()));
    };
    let partition = &partitions[index];
    let split = (batches.len() - 1) / 2;
    let at = positions[split].clone();
    let read_range = |range: ReadRange| -> Result<Vec<RecordBatch>, String> {
        let mut stream = source
            .read_range(partition, &range)
            .map_err(|e| format!("reading partition {index} in {range:?} failed: {e}"))?;
        let mut out = Vec::new();
        while let Some(b) = next(stream.as_mut(), index)? {
            out.push(b);
        }
        Ok(out)
    };
    let head = read_range(ReadRange {
        after: None,
        upto: Some(at.clone()),
    })?;
    let tail = read_range(ReadRange {
        after: Some(at.clone()),
        upto: None,
    })?;
    for (what, got, want) in [
        ("up to", &head, &batches[..=split]),
        ("after", &tail, &batches[split + 1..]),
    ] {
        let (n, m) = (total_rows(got), total_rows(want));
        if n != m {
            return Err(format!(
                "partition {index}: the range {what} position {at} has {n} rows, where the \
                 batches {what} it held {m}"
            ));
        }
        if let (Ok(a), Ok(b)) = (checksum(got), checksum(want))
            && a != b
        {
            return Err(format!(
                "partition {index}: the range {what} position {at} holds other rows than the \
                 batches {what} it (checksums {:016x} and {:016x})",
                a.sum, b.sum
            ));
        }
    }
    Ok(Some(format!(
        "partition {index} split at position {at}: {} + {} rows",
        total_rows(&head),
        total_rows(&tail)
    )))
}

fn next(stream: &mut dyn BatchStream, index: usize) -> Result<Option<RecordBatch>, String> {
    stream
        .next_batch()
        .map_err(|e| format!("reading partition {index} failed: {e}"))
}

fn cancel(
    make: &dyn Fn() -> Result<Made, String>,
    options: &CheckOptions,
) -> Result<String, String> {
    let source = make()?;
    let stop = Arc::new(AtomicBool::new(false));
    let engine_options = engine_options(options, ReplicationMode::FullTable, Verify::Off);
    let (result, collected) =
        read_through_engine(source, &engine_options, None, Some(stop.clone()));
    let ended = Instant::now();
    let stopped_at = *collected
        .stopped_at
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(_) => Ok("the read ended before the stop took effect".into()),
        Err(e) if e.summary.status == RunStatus::Stopped => {
            let took = stopped_at.map_or(0.0, |t| ended.duration_since(t).as_secs_f64());
            if took >= options.cancel_grace.as_secs_f64() {
                Err(format!(
                    "the run took {took:.1} s to stop after it was cancelled (its workers were \
                     abandoned): a read call must return within moments, so that a cancelled \
                     run ends"
                ))
            } else {
                Ok(format!("stopped {took:.2} s after the request"))
            }
        }
        Err(e) => Err(failure(&e)),
    }
}
