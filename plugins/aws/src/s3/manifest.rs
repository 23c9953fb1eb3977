//! Run manifests: the record that publishes a run.
//!
//! A run's data objects are uploaded first; at commit one JSON manifest listing them is put at
//! `<prefix>/<table>/_fastlane/manifests/<commit time>-<run id>.json`. A `PutObject` is atomic,
//! so a run is either listed whole or not at all. The table's current contents are the runs of
//! the newest FULL_TABLE manifest and of every INCREMENTAL manifest after it (all manifests
//! when there is no FULL_TABLE one); objects that no manifest lists belong to runs that failed
//! or were killed, and readers ignore them.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::{call_error, runtime};
use crate::s3::upload::ObjectInfo;

/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// The folder of the manifests under the table's folder.
pub const MANIFEST_FOLDER: &str = "_fastlane/manifests";

/// What a committed run published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format's version (1).
    pub fastlane_manifest: u32,
    /// The run's id.
    pub run_id: String,
    /// FULL_TABLE (replaces what came before) or INCREMENTAL (adds to it).
    pub mode: ReplicationMode,
    /// When the run was committed (RFC 3339, UTC).
    pub committed_at: String,
    /// `parquet`, `jsonl` or `csv`.
    pub format: String,
    /// The codec (`snappy`, `zstd`, `gzip`, `none`).
    pub compression: String,
    /// Rows in all objects.
    pub rows: u64,
    /// Bytes in all objects.
    pub bytes: u64,
    /// The replication key column, if configured.
    pub key: Option<String>,
    /// The largest key written, tagged with its kind (see `KeyMax::to_tagged`).
    pub key_max: Option<Value>,
    /// The data objects, in no particular order.
    pub objects: Vec<ObjectInfo>,
    /// The run's `_table_version` (`athena` target): the value of that column in its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
}

/// A manifest's key for a run committed at `at`.
pub fn manifest_key(base: &str, at: chrono::DateTime<chrono::Utc>, run_id: &str) -> String {
    format!(
        "{base}/{MANIFEST_FOLDER}/{}-{run_id}.json",
        at.format("%Y%m%dT%H%M%S%3fZ")
    )
}

/// Every key under `prefix`, sorted.
pub async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| call_error(&format!("cannot list `s3://{bucket}/{prefix}`"), &e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    Ok(keys)
}

/// Reads one manifest.
pub async fn read(client: &Client, bucket: &str, key: &str) -> Result<Manifest> {
    let bytes = get_bytes(client, bucket, key).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        PluginError::data(format!(
            "`s3://{bucket}/{key}` is not a fastlane manifest: {e}"
        ))
    })?;
    if manifest.fastlane_manifest > MANIFEST_VERSION {
        return Err(PluginError::unsupported(format!(
            "`s3://{bucket}/{key}` is a version {} manifest; this fastlane reads up to version \
             {MANIFEST_VERSION}",
            manifest.fastlane_manifest
        )));
    }
    Ok(manifest)
}

/// The whole body of an object.
pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Result<bytes::Bytes> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| call_error(&format!("cannot read `s3://{bucket}/{key}`"), &e))?;
    Ok(out
        .body
        .collect()
        .await
        .map_err(|e| PluginError::io(format!("cannot read `s3://{bucket}/{key}`: {e}")))?
        .into_bytes())
}

/// Writes a manifest (one atomic `PutObject`).
pub async fn write(client: &Client, bucket: &str, key: &str, manifest: &Manifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| PluginError::internal(format!("cannot encode the manifest: {e}")))?;
    put_json(client, bucket, key, body, "publish").await
}

/// Writes a JSON document as an object (one atomic `PutObject`); `doing` names the step in the
/// error (`cannot publish …`).
pub async fn put_json(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    doing: &str,
) -> Result<()> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| call_error(&format!("cannot {doing} `s3://{bucket}/{key}`"), &e))?;
    Ok(())
}

/// The keys of the table's manifests, oldest first (without reading them).
pub async fn keys(client: &Client, bucket: &str, base: &str) -> Result<Vec<String>> {
    let prefix = format!("{base}/{MANIFEST_FOLDER}/");
    let mut keys = list_keys(client, bucket, &prefix).await?;
    keys.retain(|k| k.ends_with(".json"));
    Ok(keys)
}

/// All manifests of the table at `base`, oldest first, with their keys.
pub async fn all(client: &Client, bucket: &str, base: &str) -> Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for key in keys(client, bucket, base).await? {
        let manifest = read(client, bucket, &key).await?;
        out.push((key, manifest));
    }
    Ok(out)
}

/// The commit time a manifest's key starts with (see [`manifest_key`]).
pub fn commit_time(key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let name = key.rsplit('/').next()?;
    let stamp = name.get(..19)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The manifests that make up the table now: from the newest FULL_TABLE one on.
pub fn current(manifests: &[(String, Manifest)]) -> &[(String, Manifest)] {
    let start = manifests
        .iter()
        .rposition(|(_, m)| m.mode == ReplicationMode::FullTable)
        .unwrap_or(0);
    &manifests[start..]
}

/// Deletes `keys` (up to 1000 per request); fails with the first key S3 could not delete.
pub async fn delete(client: &Client, bucket: &str, keys: &[String]) -> Result<()> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    for chunk in keys.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| PluginError::internal(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| PluginError::internal(e.to_string()))?;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| call_error(&format!("cannot delete objects in `{bucket}`"), &e))?;
        if let Some(failed) = out.errors().first() {
            return Err(PluginError::io(format!(
                "cannot delete `s3://{bucket}/{}`: {}",
                failed.key().unwrap_or("?"),
                failed.message().unwrap_or("unknown error")
            )));
        }
    }
    Ok(())
}

/// Runs a future on the plugin's runtime from a host thread.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn manifest(mode: ReplicationMode, run: &str) -> (String, Manifest) {
        (
            run.to_owned(),
            Manifest {
                fastlane_manifest: 1,
                run_id: run.to_owned(),
                mode,
                committed_at: String::new(),
                format: "parquet".into(),
                compression: "snappy".into(),
                rows: 0,
                bytes: 0,
                key: None,
                key_max: None,
                objects: vec![],
                table_version: None,
            },
        )
    }

    #[test]
    fn the_current_table_starts_at_the_newest_full_load() {
        use ReplicationMode::*;
        let all = vec![
            manifest(Incremental, "a"),
            manifest(FullTable, "b"),
            manifest(Incremental, "c"),
            manifest(FullTable, "d"),
            manifest(Incremental, "e"),
        ];
        let runs: Vec<&str> = current(&all).iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(runs, ["d", "e"]);
        let only_incremental = vec![manifest(Incremental, "a"), manifest(Incremental, "b")];
        assert_eq!(current(&only_incremental).len(), 2);
        assert!(current(&[]).is_empty());
    }

    #[test]
    fn manifest_keys_sort_by_commit_time() {
        let a = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let b = a + chrono::Duration::milliseconds(1);
        let (ka, kb) = (manifest_key("t", a, "zz"), manifest_key("t", b, "aa"));
        assert_eq!(ka, "t/_fastlane/manifests/20260102T030405000Z-zz.json");
        assert!(ka < kb);
        assert_eq!(commit_time(&kb), Some(b));
        assert_eq!(commit_time("t/_fastlane/manifests/junk.json"), None);
    }
}
