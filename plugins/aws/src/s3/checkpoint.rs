//! The `s3` target's checkpoints: what a checkpointed run keeps beside the table so that a
//! later run can resume it.
//!
//! ```text
//! <base>/_fastlane/runs/<run id>/plan.json                  the host's plan, the run's folder
//! <base>/_fastlane/runs/<run id>/record-<attempt>-<w>-<n>.json   objects completed, their tags
//! ```
//!
//! A writer's flush completes its current object (its multipart upload), then writes a record
//! naming the objects completed since its last record and the tags of the batches they hold
//! (one `PutObject`, atomic). Readers only see objects a manifest names, so a run's objects
//! are invisible until it commits. When a run resumes, its objects that no record names
//! (completed after the last flush of a killed writer) are deleted and its unfinished multipart
//! uploads aborted, so the records describe what is stored exactly.

use std::collections::HashSet;

use arrow_schema::Schema;
use aws_sdk_s3::Client;
use fastlane_plugin_api::{PluginError, Result, StagedRun};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::call_error;
use crate::s3::manifest::{self, list_keys};
use crate::s3::upload::ObjectInfo;

/// Where the runs' checkpoints live, under the table's base.
pub const RUNS_FOLDER: &str = "_fastlane/runs";

/// What a checkpointed run stores when it opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanObject {
    /// The host's plan.
    pub plan: Value,
    /// The run's folder (`<base>/<partition>/`).
    pub folder: String,
    /// The partition folder alone, or empty.
    pub partition: String,
    /// The run's `_table_version` (`athena` target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
}

/// One writer's flush.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// Objects completed since the writer's last record.
    pub objects: Vec<ObjectInfo>,
    /// The tags of the batches they hold.
    pub tags: Vec<String>,
    /// The largest replication key written so far by the run (tagged form).
    #[serde(default)]
    pub key_max: Option<Value>,
    /// The schema of the rows.
    #[serde(default)]
    pub schema: Option<Schema>,
}

fn run_prefix(base: &str, run_id: &str) -> String {
    format!("{base}/{RUNS_FOLDER}/{run_id}/")
}

async fn put_json<T: Serialize>(client: &Client, bucket: &str, key: &str, value: &T) -> Result<()> {
    let body = serde_json::to_vec(value).map_err(PluginError::internal)?;
    manifest::put_json(client, bucket, key, body, "write").await
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<T> {
    let bytes = manifest::get_bytes(client, bucket, key).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        PluginError::data(format!(
            "the checkpoint `s3://{bucket}/{key}` is damaged ({e}); start afresh with --fresh"
        ))
    })
}

/// Stores the plan of a new checkpointed run.
pub async fn store_plan(
    client: &Client,
    bucket: &str,
    base: &str,
    run_id: &str,
    plan: &PlanObject,
) -> Result<()> {
    put_json(
        client,
        bucket,
        &format!("{}plan.json", run_prefix(base, run_id)),
        plan,
    )
    .await
}

/// The unfinished checkpointed runs of the table at `base`, newest first. A run that a
/// manifest names was published (its checkpoints outlived the commit): it is forgotten here,
/// never resumed or discarded.
pub async fn runs(client: &Client, bucket: &str, base: &str) -> Result<Vec<(String, PlanObject)>> {
    let prefix = format!("{base}/{RUNS_FOLDER}/");
    let published = manifest::keys(client, bucket, base).await?;
    let mut runs = Vec::new();
    for key in list_keys(client, bucket, &prefix).await? {
        let Some(run_id) = key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("/plan.json"))
        else {
            continue;
        };
        if published
            .iter()
            .any(|m| m.ends_with(&format!("-{run_id}.json")))
        {
            forget(client, bucket, base, run_id).await?;
            continue;
        }
        let plan: PlanObject = get_json(client, bucket, &key).await?;
        runs.push((run_id.to_owned(), plan));
    }
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(runs)
}

/// The staged runs, as the host asks for them.
pub async fn staged_runs(client: &Client, bucket: &str, base: &str) -> Result<Vec<StagedRun>> {
    Ok(runs(client, bucket, base)
        .await?
        .into_iter()
        .map(|(run_id, p)| StagedRun {
            run_id,
            plan: p.plan,
        })
        .collect())
}

/// Writes one writer's record.
pub async fn write_record(
    client: &Client,
    bucket: &str,
    base: &str,
    run_id: &str,
    name: &str,
    record: &Record,
) -> Result<()> {
    put_json(
        client,
        bucket,
        &format!("{}{name}", run_prefix(base, run_id)),
        record,
    )
    .await
}

/// Reopens a run being resumed: its plan and records. The run's objects that no record names
/// are deleted, and its unfinished multipart uploads aborted.
pub async fn reopen(
    client: &Client,
    bucket: &str,
    base: &str,
    run_id: &str,
) -> Result<(PlanObject, Vec<Record>)> {
    let prefix = run_prefix(base, run_id);
    let keys = list_keys(client, bucket, &prefix).await?;
    if !keys.iter().any(|k| k.ends_with("/plan.json")) {
        return Err(PluginError::not_found(format!(
            "run `{run_id}` left no checkpoints in `s3://{bucket}/{prefix}`"
        )));
    }
    let plan: PlanObject = get_json(client, bucket, &format!("{prefix}plan.json")).await?;
    let mut records = Vec::new();
    for key in keys.iter().filter(|k| {
        k.rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("record-") && n.ends_with(".json"))
    }) {
        records.push(get_json::<Record>(client, bucket, key).await?);
    }
    let kept: HashSet<&str> = records
        .iter()
        .flat_map(|r| r.objects.iter().map(|o| o.key.as_str()))
        .collect();
    let own = format!("{}{run_id}-", plan.folder);
    let stray: Vec<String> = list_keys(client, bucket, &own)
        .await?
        .into_iter()
        .filter(|k| !kept.contains(k.as_str()))
        .collect();
    if !stray.is_empty() {
        log::debug!(
            "removing {} object(s) written after the last checkpoint",
            stray.len()
        );
        manifest::delete(client, bucket, &stray).await?;
    }
    abort_uploads(client, bucket, &own).await?;
    Ok((plan, records))
}

/// Aborts the multipart uploads in progress under `prefix`.
async fn abort_uploads(client: &Client, bucket: &str, prefix: &str) -> Result<()> {
    let out = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .map_err(|e| call_error(&format!("cannot list the uploads of `{bucket}`"), &e))?;
    for upload in out.uploads() {
        let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
            continue;
        };
        client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await
            .map_err(|e| call_error(&format!("cannot abort the upload of `{key}`"), &e))?;
    }
    Ok(())
}

/// Forgets a run's checkpoints (published, or discarded).
pub async fn forget(client: &Client, bucket: &str, base: &str, run_id: &str) -> Result<()> {
    let keys = list_keys(client, bucket, &run_prefix(base, run_id)).await?;
    manifest::delete(client, bucket, &keys).await
}

/// Discards the staging of every other checkpointed run of the table: its objects (which no
/// manifest names), uploads and checkpoints. A new run that does not resume them does this.
pub async fn discard_others(client: &Client, bucket: &str, base: &str, keep: &str) -> Result<()> {
    for (run_id, plan) in runs(client, bucket, base).await? {
        if run_id == keep {
            continue;
        }
        log::info!("discarding the staging of unfinished run `{run_id}`");
        let own = format!("{}{run_id}-", plan.folder);
        let objects = list_keys(client, bucket, &own).await?;
        manifest::delete(client, bucket, &objects).await?;
        abort_uploads(client, bucket, &own).await?;
        forget(client, bucket, base, &run_id).await?;
    }
    Ok(())
}
