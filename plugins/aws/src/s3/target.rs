//! The `s3` target: each worker streams its objects through multipart uploads; the commit
//! publishes the run with its manifest, then (FULL_TABLE) removes the earlier runs' objects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use aws_sdk_s3::Client;
use fastlane_plugin_api::{
    PluginError, ReplicationMode, Result, StagedRun, Target, WriteContext, Writer,
};
use fastlane_plugin_support::keys::{self, KeyMax};
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::connection::call_error;
use crate::s3::checkpoint::{self, PlanObject, Record};
use crate::s3::config::{Compression, Format, S3TargetConfig, render_partition};
use crate::s3::glue::Registration;
use crate::s3::manifest::{self, Manifest, block_on};
use crate::s3::upload::{Destination, ObjectInfo, RunState, Upload};
use fastlane_plugin_support::positions::Journal;

/// The `s3` target.
pub struct S3Target {
    config: Arc<S3TargetConfig>,
    client: Client,
    glue: Option<aws_sdk_glue::Client>,
    run: Option<Run>,
    /// What the `athena` target adds: the `_table_version` column, the view, the crawler.
    athena: Option<crate::athena::Extras>,
}

struct Run {
    id: String,
    mode: ReplicationMode,
    /// `<base>/<partition>/` with the run's start filled in.
    folder: String,
    /// The partition folder alone (`dt=2026-11-24`), or empty.
    partition: String,
    state: Arc<RunState>,
    /// Whether writers record their flushes (a checkpointed run).
    checkpointed: bool,
    /// In a resumed run: the tags its records hold.
    resumed_tags: Option<Vec<String>>,
    /// Objects are numbered after this (the highest number a resumed run's objects use).
    first_seq: u32,
    /// The value of the `_table_version` column of its rows (`athena` target).
    table_version: Option<i64>,
}

impl S3Target {
    /// Checks the configuration and prepares the client (no request is sent yet).
    pub fn new(config: S3TargetConfig) -> Result<Self> {
        config.validate()?;
        let sdk = config.connection().sdk_config();
        let path_style = config
            .force_path_style
            .unwrap_or(config.endpoint_url.is_some() || custom_endpoint_in_environment());
        let client = Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(path_style)
                .build(),
        );
        let glue = config.glue.as_ref().map(|g| {
            let mut connection = config.connection();
            connection.endpoint_url = g.endpoint_url.clone();
            aws_sdk_glue::Client::new(&connection.sdk_config())
        });
        Ok(Self {
            config: Arc::new(config),
            client,
            glue,
            run: None,
            athena: None,
        })
    }

    /// The same target, writing for the `athena` target: each row gets `_table_version`,
    /// and each published run replaces the view and starts the crawler.
    pub(crate) fn with_athena(mut self, extras: crate::athena::Extras) -> Self {
        self.athena = Some(extras);
        self
    }

    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// Fails clearly when the bucket is missing or out of reach.
    async fn check_bucket(&self) -> Result<()> {
        match self.client.head_bucket().bucket(self.bucket()).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::head_bucket::HeadBucketError::is_not_found)
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                if not_found {
                    Err(PluginError::not_found(format!(
                        "the bucket `{}` does not exist",
                        self.bucket()
                    )))
                } else {
                    Err(call_error(
                        &format!("cannot reach the bucket `{}`", self.bucket()),
                        &e,
                    ))
                }
            }
        }
    }

    /// Commits the run: its manifest, then the removal of what FULL_TABLE replaced.
    async fn publish(&self, run: &Run) -> Result<()> {
        let base = self.config.base();
        let earlier = manifest::keys(&self.client, self.bucket(), &base).await?;
        let mut objects = RunState::lock(&run.state.objects).clone();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let key_max = RunState::lock(&run.state.key_max).clone();
        let now = chrono::Utc::now();
        let manifest = Manifest {
            fastlane_manifest: manifest::MANIFEST_VERSION,
            run_id: run.id.clone(),
            mode: run.mode,
            committed_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            format: self.config.format.extension().to_owned(),
            compression: codec_name(self.config.codec()).to_owned(),
            rows: objects.iter().map(|o| o.rows).sum(),
            bytes: objects.iter().map(|o| o.bytes).sum(),
            key: self.config.key.clone(),
            key_max: key_max.map(|k| k.to_tagged()),
            objects,
            table_version: run.table_version,
        };
        let mut key = manifest::manifest_key(&base, now, &run.id);
        // Commit times order the manifests; never sort before one already published.
        if let Some(last) = earlier.last()
            && key <= *last
        {
            let later =
                manifest::commit_time(last).map_or(now, |t| t + chrono::Duration::milliseconds(1));
            key = manifest::manifest_key(&base, later.max(now), &run.id);
        }
        self.register(run).await?;
        let previous_view = match (&self.athena, run.table_version) {
            (Some(extras), Some(version)) => {
                let mut published = Vec::with_capacity(earlier.len());
                for k in &earlier {
                    published.push((
                        k.clone(),
                        manifest::read(&self.client, self.bucket(), k).await?,
                    ));
                }
                let versions: Vec<i64> = manifest::current(&published)
                    .iter()
                    .filter_map(|(_, m)| m.table_version)
                    .collect();
                let (lo, hi) = (
                    versions.iter().min().copied(),
                    versions.iter().max().copied(),
                );
                let lowest = match run.mode {
                    ReplicationMode::FullTable => version,
                    ReplicationMode::Incremental => lo.map_or(version, |l| l.min(version)),
                };
                extras
                    .replace_view(self.glue.as_ref(), lowest, version)
                    .await?;
                lo.zip(hi)
            }
            _ => None,
        };
        if let Err(e) = manifest::write(&self.client, self.bucket(), &key, &manifest).await {
            // The view already shows the run: show what was published before it again.
            if let (Some(extras), Some((lo, hi))) = (&self.athena, previous_view)
                && let Err(undo) = extras.replace_view(self.glue.as_ref(), lo, hi).await
            {
                log::warn!(
                    "the view still shows the unpublished run `{}`: {undo}",
                    run.id
                );
            }
            return Err(e);
        }
        if let Some(extras) = &self.athena {
            extras.start_crawler(self.glue.as_ref()).await;
        }
        log::info!(
            "published run `{}`: {} rows in {} objects, manifest `s3://{}/{key}`",
            run.id,
            manifest.rows,
            manifest.objects.len(),
            self.bucket()
        );
        if run.mode == ReplicationMode::FullTable && !self.config.keep_previous {
            // The new manifest already hides the older runs; removing them only saves space,
            // so a failure here is a warning, not a failed run.
            for old_key in &earlier {
                let removed = async {
                    let old = manifest::read(&self.client, self.bucket(), old_key).await?;
                    let mut doomed = vec![old_key.clone()];
                    doomed.extend(old.objects.into_iter().map(|o| o.key));
                    manifest::delete(&self.client, self.bucket(), &doomed).await
                };
                if let Err(e) = removed.await {
                    log::warn!("the run of `{old_key}` it replaces stays in place: {e}");
                }
            }
        }
        Ok(())
    }

    /// Creates or updates the Glue table and adds the run's partition, when configured.
    async fn register(&self, run: &Run) -> Result<()> {
        let (Some(client), Some((database, table))) = (&self.glue, self.config.glue_names()) else {
            return Ok(());
        };
        let Some(schema) = RunState::lock(&run.state.schema).clone() else {
            log::debug!("the run wrote no rows: the Glue table `{database}.{table}` is unchanged");
            return Ok(());
        };
        Registration {
            config: &self.config,
            database: &database,
            table: &table,
            partition: &run.partition,
        }
        .register(client, &schema)
        .await?;
        log::info!("registered the table `{database}.{table}` in the Glue Data Catalog");
        Ok(())
    }

    /// The `_table_version` of a new run: its start (epoch seconds), or one more than the
    /// newest version published, when that is later.
    async fn next_table_version(&self, start: i64) -> Result<i64> {
        // Versions grow with the commit order of the manifests: the newest is in the last one
        // that has a version (runs of the plain `s3` target have none).
        let keys = manifest::keys(&self.client, self.bucket(), &self.config.base()).await?;
        let mut newest = None;
        for k in keys.iter().rev() {
            newest = manifest::read(&self.client, self.bucket(), k)
                .await?
                .table_version;
            if newest.is_some() {
                break;
            }
        }
        Ok(newest.map_or(start, |n| start.max(n + 1)))
    }

    /// Removes everything the run uploaded.
    async fn discard(&self, state: &RunState) -> Result<()> {
        let uploads: Vec<(String, String)> = RunState::lock(&state.uploads)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, upload_id) in uploads {
            self.client
                .abort_multipart_upload()
                .bucket(self.bucket())
                .key(&key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| call_error(&format!("cannot abort the upload of `{key}`"), &e))?;
            RunState::lock(&state.uploads).remove(&key);
        }
        let keys: Vec<String> = RunState::lock(&state.objects)
            .iter()
            .map(|o| o.key.clone())
            .collect();
        manifest::delete(&self.client, self.bucket(), &keys).await?;
        RunState::lock(&state.objects).clear();
        Ok(())
    }
}

/// Whether the environment points S3 at another endpoint (`AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, which the SDK follows): an S3-compatible store, addressed by path.
fn custom_endpoint_in_environment() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|u| !u.is_empty()))
}

fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Snappy => "snappy",
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
    }
}

impl Target for S3Target {
    fn get_offset(&self) -> Result<Option<Value>> {
        let Some(key) = &self.config.key else {
            return Ok(None);
        };
        let manifests = block_on(manifest::all(
            &self.client,
            self.bucket(),
            &self.config.base(),
        ))?;
        let mut max: Option<KeyMax> = None;
        for (name, m) in manifest::current(&manifests) {
            if m.key.as_deref() != Some(key.as_str()) {
                if m.rows > 0 {
                    return Err(PluginError::data(format!(
                        "the run in `{name}` was written without the key `{key}`; \
                         its largest key is unknown"
                    )));
                }
                continue;
            }
            if let Some(stored) = &m.key_max {
                max = keys::fold(max, Some(KeyMax::from_tagged(stored)?))?;
            }
        }
        Ok(max.map(|k| k.to_json()))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        if context.mode == ReplicationMode::Incremental && self.config.key.is_none() {
            return Err(PluginError::config(
                "INCREMENTAL runs need `key`, the replication key column, so that a rerun \
                 continues after the rows already published",
            ));
        }
        block_on(self.check_bucket())?;
        let base = self.config.base();
        let state = Arc::new(RunState::default());
        let (folder, partition, resumed_tags, first_seq, table_version) = match &context.checkpoint
        {
            Some(c) if c.resume => {
                let (plan, records) = block_on(checkpoint::reopen(
                    &self.client,
                    self.bucket(),
                    &base,
                    &context.run_id,
                ))?;
                let mut tags = Vec::new();
                let mut max_seq = 0u32;
                for record in records {
                    for object in &record.objects {
                        max_seq = max_seq.max(object_seq(&object.key).unwrap_or(0));
                    }
                    RunState::lock(&state.objects).extend(record.objects);
                    tags.extend(record.tags);
                    if let Some(tagged) = &record.key_max {
                        let mut acc = RunState::lock(&state.key_max);
                        *acc = keys::fold(acc.take(), Some(KeyMax::from_tagged(tagged)?))?;
                    }
                    if let Some(schema) = record.schema {
                        RunState::lock(&state.schema).get_or_insert_with(|| Arc::new(schema));
                    }
                }
                let version = plan.table_version;
                (
                    plan.folder,
                    plan.partition,
                    Some(tags),
                    max_seq + 1,
                    version,
                )
            }
            other => {
                let start = chrono::Utc::now();
                let partition = render_partition(&self.config.partition, start, &context.run_id)
                    .map_err(PluginError::config)?;
                let folder = if partition.is_empty() {
                    format!("{base}/")
                } else {
                    format!("{base}/{partition}/")
                };
                // A new run discards the staging of unfinished runs (a run without checkpoints
                // never resumes them; a checkpointed one was not given them to resume).
                block_on(checkpoint::discard_others(
                    &self.client,
                    self.bucket(),
                    &base,
                    &context.run_id,
                ))?;
                let table_version = match &self.athena {
                    Some(_) => Some(block_on(self.next_table_version(start.timestamp()))?),
                    None => None,
                };
                if let Some(c) = other {
                    let plan = PlanObject {
                        plan: c.plan.clone(),
                        folder: folder.clone(),
                        partition: partition.clone(),
                        table_version,
                    };
                    block_on(checkpoint::store_plan(
                        &self.client,
                        self.bucket(),
                        &base,
                        &context.run_id,
                        &plan,
                    ))?;
                }
                (folder, partition, None, 0, table_version)
            }
        };
        let table_version = match (&self.athena, table_version) {
            (Some(_), None) => Some(block_on(
                self.next_table_version(chrono::Utc::now().timestamp()),
            )?),
            (_, v) => v,
        };
        self.run = Some(Run {
            id: context.run_id.clone(),
            mode: context.mode,
            folder,
            partition,
            state,
            checkpointed: context.checkpoint.is_some(),
            resumed_tags,
            first_seq,
            table_version,
        });
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let Some(run) = &self.run else {
            return Err(PluginError::internal("writer requested before open"));
        };
        let content_type = match self.config.format {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv",
        };
        Ok(Box::new(S3Writer {
            config: self.config.clone(),
            to: Destination {
                client: self.client.clone(),
                bucket: self.config.bucket.clone(),
                part_size: self.config.part_size as usize,
                concurrency: self.config.upload_concurrency,
                content_type,
            },
            stem: format!("{}{}-{index:03}", run.folder, run.id),
            seq: run.first_seq,
            table_version: run.table_version,
            current: None,
            state: run.state.clone(),
            checkpoints: run.checkpointed.then(|| WriterCheckpoints {
                base: self.config.base(),
                run_id: run.id.clone(),
                journal: Journal::new(index),
            }),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Err(PluginError::internal("commit without open"));
        };
        let published = block_on(self.publish(&run));
        if published.is_err() {
            if run.checkpointed {
                // The host suspends the run: its objects and checkpoints stay for a resume.
                self.run = Some(run);
                return published;
            }
            // Nothing was published: remove what the run uploaded.
            if let Err(e) = block_on(self.discard(&run.state)) {
                log::warn!("objects of the failed run `{}` remain: {e}", run.id);
            }
        } else if run.checkpointed
            && let Err(e) = block_on(checkpoint::forget(
                &self.client,
                self.bucket(),
                &self.config.base(),
                &run.id,
            ))
        {
            log::warn!("the run is published, but its checkpoints remain: {e}");
        }
        published
    }

    fn abort(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        block_on(self.discard(&run.state))
            .map_err(|e| e.context(format!("removing the objects of run `{}`", run.id)))?;
        if run.checkpointed {
            block_on(checkpoint::forget(
                &self.client,
                self.bucket(),
                &self.config.base(),
                &run.id,
            ))?;
        }
        Ok(())
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        block_on(checkpoint::staged_runs(
            &self.client,
            self.bucket(),
            &self.config.base(),
        ))
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        self.run
            .as_ref()
            .and_then(|r| r.resumed_tags.clone())
            .ok_or_else(|| PluginError::internal("checkpoints asked of a run that did not resume"))
    }

    /// The rows of the run's objects, once every one of them is found in the bucket.
    fn staged_rows(&self) -> Result<u64> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("staged_rows before open"))?;
        let objects = RunState::lock(&run.state.objects).clone();
        let stored: std::collections::HashSet<String> = block_on(manifest::list_keys(
            &self.client,
            self.bucket(),
            &format!("{}{}-", run.folder, run.id),
        ))?
        .into_iter()
        .collect();
        if let Some(lost) = objects.iter().find(|o| !stored.contains(&o.key)) {
            return Err(PluginError::data(format!(
                "the run's object `s3://{}/{}` is missing from the bucket",
                self.bucket(),
                lost.key
            )));
        }
        Ok(objects.iter().map(|o| o.rows).sum())
    }

    /// Keeps the run's objects and checkpoints for a resume.
    fn suspend(&mut self) -> Result<()> {
        if let Some(run) = self.run.take() {
            log::info!(
                "kept the objects of run `{}` under `s3://{}/{}` for the next run to resume",
                run.id,
                self.bucket(),
                run.folder
            );
        }
        Ok(())
    }
}

/// An encoder writing into an upload.
enum Sink {
    Parquet(Box<ArrowWriter<Upload>>),
    Csv(Box<arrow_csv::Writer<Stream>>),
    Jsonl(Box<arrow_json::LineDelimitedWriter<Stream>>),
}

/// The byte stream under CSV and JSON Lines: plain or gzip.
enum Stream {
    Plain(Upload),
    Gzip(GzEncoder<Upload>),
}

impl std::io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(u) => u.write(buf),
            Self::Gzip(g) => g.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(u) => u.flush(),
            Self::Gzip(g) => g.flush(),
        }
    }
}

impl Stream {
    fn into_upload(self) -> std::io::Result<Upload> {
        match self {
            Self::Plain(u) => Ok(u),
            Self::Gzip(g) => g.finish(),
        }
    }
}

struct OpenObject {
    sink: Sink,
    key: String,
    written: Arc<AtomicU64>,
    rows: u64,
}

impl OpenObject {
    /// Bytes so far, counting what the Parquet writer holds for its current row group.
    fn bytes(&self) -> u64 {
        match &self.sink {
            Sink::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
            _ => self.written.load(Ordering::Relaxed),
        }
    }
}

/// The writer of one target worker.
struct S3Writer {
    config: Arc<S3TargetConfig>,
    to: Destination,
    /// `<folder><run id>-<worker>`; objects are `<stem>-<sequence>.<ext>`.
    stem: String,
    seq: u32,
    /// The `_table_version` every row gets (`athena` target).
    table_version: Option<i64>,
    current: Option<OpenObject>,
    state: Arc<RunState>,
    /// In a checkpointed run: what the next record holds.
    checkpoints: Option<WriterCheckpoints>,
}

/// A writer's records in a checkpointed run.
struct WriterCheckpoints {
    base: String,
    run_id: String,
    /// The objects and tags of the next record.
    journal: Journal<ObjectInfo>,
}

/// The number of an object of a run: the digits after its last `-`, before the extension.
fn object_seq(key: &str) -> Option<u32> {
    let name = key.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    stem.rsplit('-').next()?.parse().ok()
}

impl S3Writer {
    fn object_key(&self) -> String {
        let suffix = match (self.config.format, self.config.codec()) {
            (Format::Parquet, _) | (_, Compression::None) => "",
            _ => ".gz",
        };
        format!(
            "{}-{:05}.{}{suffix}",
            self.stem,
            self.seq,
            self.config.format.extension()
        )
    }

    fn open_object(&mut self, batch: &RecordBatch) -> Result<OpenObject> {
        let key = self.object_key();
        self.seq += 1;
        let upload = Upload::new(self.to.clone(), key.clone(), self.state.clone());
        let written = upload.counter();
        let codec = self.config.codec();
        let stream = |upload| match codec {
            Compression::Gzip => {
                Stream::Gzip(GzEncoder::new(upload, flate2::Compression::default()))
            }
            _ => Stream::Plain(upload),
        };
        let sink = match self.config.format {
            Format::Parquet => {
                let codec = match codec {
                    Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
                    Compression::None => Codec::UNCOMPRESSED,
                    _ => Codec::SNAPPY,
                };
                let props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_max_row_group_row_count(Some(self.config.row_group_rows))
                    .build();
                Sink::Parquet(Box::new(
                    ArrowWriter::try_new(upload, batch.schema(), Some(props))
                        .map_err(PluginError::data)?,
                ))
            }
            Format::Csv => Sink::Csv(Box::new(
                arrow_csv::WriterBuilder::new()
                    .with_header(self.config.has_header)
                    .with_delimiter(self.config.delimiter.as_bytes()[0])
                    .build(stream(upload)),
            )),
            Format::Jsonl => Sink::Jsonl(Box::new(arrow_json::LineDelimitedWriter::new(stream(
                upload,
            )))),
        };
        Ok(OpenObject {
            sink,
            key,
            written,
            rows: 0,
        })
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let rows = open.rows;
        let mut upload = match open.sink {
            Sink::Parquet(w) => (*w).into_inner().map_err(PluginError::io)?,
            Sink::Csv(w) => w.into_inner().into_upload().map_err(PluginError::io)?,
            Sink::Jsonl(mut w) => {
                w.finish().map_err(PluginError::io)?;
                w.into_inner().into_upload().map_err(PluginError::io)?
            }
        };
        let bytes = upload.finish()?;
        let info = ObjectInfo {
            key: upload.key().to_owned(),
            rows,
            bytes,
        };
        if let Some(c) = self.checkpoints.as_mut() {
            c.journal.add_item(info.clone());
        }
        RunState::lock(&self.state.objects).push(info);
        Ok(())
    }

    fn write_part(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(key) = &self.config.key {
            let max = keys::column_max(batch, key)?;
            let mut acc = RunState::lock(&self.state.key_max);
            *acc = keys::fold(acc.take(), max)?;
        }
        if self.current.is_none() {
            self.current = Some(self.open_object(batch)?);
        }
        let Some(open) = self.current.as_mut() else {
            return Ok(());
        };
        let result = match &mut open.sink {
            Sink::Parquet(w) => w.write(batch).map_err(PluginError::data),
            Sink::Csv(w) => w.write(batch).map_err(PluginError::data),
            Sink::Jsonl(w) => w.write(batch).map_err(PluginError::data),
        };
        let key = open.key.clone();
        result.map_err(|e| e.context(format!("writing `s3://{}/{key}`", self.config.bucket)))?;
        open.rows += batch.num_rows() as u64;
        let full_rows = self
            .config
            .rows_per_object()
            .is_some_and(|m| open.rows >= m);
        let full_bytes = open.bytes() >= self.config.max_bytes_per_object;
        if full_rows || full_bytes {
            self.finish_current()?;
        }
        Ok(())
    }
}

impl Writer for S3Writer {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = match self.table_version {
            Some(version) => crate::athena::with_table_version(batch, version)?,
            None => batch,
        };
        if batch.num_rows() > 0 {
            RunState::lock(&self.state.schema).get_or_insert_with(|| batch.schema());
        }
        let Some(max_rows) = self.config.rows_per_object() else {
            return self.write_part(&batch);
        };
        let mut offset = 0usize;
        while offset < batch.num_rows() {
            let in_object = self.current.as_ref().map_or(0, |o| o.rows);
            let room = (max_rows - in_object.min(max_rows)).max(1) as usize;
            let len = room.min(batch.num_rows() - offset);
            self.write_part(&batch.slice(offset, len))?;
            offset += len;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.finish_current()?;
        if self.checkpoints.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        if self.checkpoints.is_none() {
            return Err(PluginError::internal(
                "a tagged write in a run without checkpoints",
            ));
        }
        if batch.num_rows() > 0 {
            self.write(batch)?;
        }
        if let Some(c) = self.checkpoints.as_mut() {
            c.journal.add_tag(tag);
        }
        Ok(())
    }

    /// Completes the current object, then records it, with the objects completed before it and
    /// the tags of the batches they hold.
    fn flush(&mut self) -> Result<()> {
        self.finish_current()?;
        let key_max = RunState::lock(&self.state.key_max)
            .as_ref()
            .map(|k| k.to_tagged());
        let schema = RunState::lock(&self.state.schema)
            .as_ref()
            .map(|s| s.as_ref().clone());
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let Some((name, objects, tags)) = c.journal.take() else {
            return Ok(());
        };
        let record = Record {
            objects,
            tags,
            key_max,
            schema,
        };
        block_on(checkpoint::write_record(
            &self.to.client,
            &self.to.bucket,
            &c.base,
            &c.run_id,
            &name,
            &record,
        ))
    }
}
