//! The `firehose` target: rows as JSON Lines records sent to an Amazon Data Firehose delivery
//! stream with `PutRecordBatch`, within the service's limits, retrying the records a call
//! refused.
//!
//! Firehose delivers what it accepted at least once and cannot take it back: an aborted run
//! leaves the records already accepted in the stream, and the run's summary says how many.
//!
//! As the original fastlane's, with `view_database` every record gets `_table_version` (the
//! run's start, epoch seconds) and a published run replaces the Athena view
//! `view_database.table` over the Glue table `database.table` (the stream's destination) with
//! its own version, so a failed run's records are not seen through it; `pk` keeps each key's
//! newest row; `crawler` is started after.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use aws_sdk_firehose::Client;
use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use bytes::Bytes;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result, Target, WriteContext, Writer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::connection::{call_error, describe, runtime, with_aws_settings};

/// The most records one `PutRecordBatch` call takes.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// The most data bytes one `PutRecordBatch` call takes (4 MiB).
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// The largest record Firehose takes (1,000 KiB, before base64).
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

with_aws_settings! {
/// Configuration of the `firehose` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirehoseTargetConfig {
    /// The delivery stream's name; it must exist.
    #[schemars(length(min = 1, max = 64))]
    pub delivery_stream: String,
    /// The database the records belong to; part of the target's name.
    pub database: Option<String>,
    /// The table the records belong to; part of the target's name.
    pub table: Option<String>,
    /// The most records per `PutRecordBatch` call (the service takes at most 500).
    #[serde(default = "default_records_per_call")]
    #[schemars(range(min = 1, max = 500))]
    pub max_records_per_call: usize,
    /// The most data bytes per call (the service takes at most 4 MiB).
    #[serde(default = "default_bytes_per_call")]
    #[schemars(range(min = 1_024_000, max = 4_194_304))]
    pub max_bytes_per_call: usize,
    /// How many times the records a call refused (throttling, internal failure) are sent
    /// again, with exponential backoff, before the run fails.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 100))]
    pub max_record_retries: u32,
    /// The first backoff before sending refused records again, in milliseconds; it doubles
    /// at each retry (with jitter) up to `retry_max_backoff_ms`.
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 60_000))]
    pub retry_backoff_ms: u64,
    /// The longest backoff between retries, in milliseconds.
    #[serde(default = "default_max_backoff")]
    #[schemars(range(min = 1, max = 300_000))]
    pub retry_max_backoff_ms: u64,
    /// Calls each target worker keeps in flight at once.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 64))]
    pub calls_in_flight: usize,
    /// Number of target workers.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// The original fastlane's records per call: calls carry at most this many records
    /// (and never more than `max_records_per_call`, the service's limit).
    #[schemars(range(min = 1))]
    pub batch_size: Option<usize>,
    /// The database of the Athena view `view_database.table` over the Glue table
    /// `database.table` where the stream delivers, replaced by each published run (the
    /// original's); without it, no view and no `_table_version`.
    #[schemars(length(min = 1, max = 255))]
    pub view_database: Option<String>,
    /// The Athena work group of the view's statement (default `primary`).
    #[schemars(length(min = 1, max = 128))]
    pub work_group: Option<String>,
    /// Where Athena writes the statement's result, when the work group does not set it.
    pub output_location: Option<String>,
    /// The table's primary key: the view keeps each key's newest row.
    pub pk: Option<String>,
    /// A Glue crawler started after each published run (it must exist).
    pub crawler: Option<String>,
    /// Endpoint of a Glue-compatible catalog (default: AWS's).
    pub glue_endpoint_url: Option<String>,
    /// Endpoint of an Athena-compatible service (default: AWS's).
    pub athena_endpoint_url: Option<String>,
    /// Seconds the view's statement may take.
    #[serde(default = "default_query_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub query_timeout_secs: u64,
}
}

fn default_query_timeout() -> u64 {
    300
}

impl FirehoseTargetConfig {
    /// The most records one call carries: `max_records_per_call`, lowered to `batch_size`.
    pub fn records_per_call(&self) -> usize {
        self.batch_size
            .map_or(self.max_records_per_call, |b| {
                b.min(self.max_records_per_call)
            })
            .max(1)
    }
}

fn default_records_per_call() -> usize {
    MAX_RECORDS_PER_CALL
}

fn default_bytes_per_call() -> usize {
    MAX_BYTES_PER_CALL
}

fn default_retries() -> u32 {
    8
}

fn default_backoff() -> u64 {
    100
}

fn default_max_backoff() -> u64 {
    10_000
}

fn default_in_flight() -> usize {
    4
}

impl FirehoseTargetConfig {
    /// Checks everything that needs no network; lists every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = self.connection().problems();
        if !(1..=MAX_RECORDS_PER_CALL).contains(&self.max_records_per_call) {
            problems.push(format!(
                "`max_records_per_call` must be between 1 and {MAX_RECORDS_PER_CALL}"
            ));
        }
        if !(MAX_RECORD_BYTES..=MAX_BYTES_PER_CALL).contains(&self.max_bytes_per_call) {
            problems.push(format!(
                "`max_bytes_per_call` must be between {MAX_RECORD_BYTES} and {MAX_BYTES_PER_CALL}"
            ));
        }
        if self.retry_max_backoff_ms < self.retry_backoff_ms {
            problems.push("`retry_max_backoff_ms` must not be below `retry_backoff_ms`".into());
        }
        if self.calls_in_flight == 0 {
            problems.push("`calls_in_flight` must be at least 1".into());
        }
        let view_fields = [
            ("work_group", self.work_group.is_some()),
            ("output_location", self.output_location.is_some()),
            ("pk", self.pk.is_some()),
            ("crawler", self.crawler.is_some()),
        ];
        if self.view_database.is_some() {
            if self.database.is_none() || self.table.is_none() {
                problems.push(
                    "`view_database` needs `database` and `table`, the Glue table the stream \
                     delivers into"
                        .into(),
                );
            }
        } else {
            for (name, _) in view_fields.iter().filter(|(_, set)| *set) {
                problems.push(format!(
                    "`{name}` is a setting of the view: it needs `view_database`"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PluginError::config(problems.join("; ")))
        }
    }
}

/// What the run sent, shared by its writers.
#[derive(Default)]
struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    calls: AtomicU64,
    retried: AtomicU64,
}

/// The `firehose` target.
pub struct FirehoseTarget {
    config: Arc<FirehoseTargetConfig>,
    client: Client,
    counters: Arc<Counters>,
    /// With `view_database`: the Glue and Athena clients.
    catalog: Option<(aws_sdk_glue::Client, aws_sdk_athena::Client)>,
    /// The view of the run, once open.
    view: Option<crate::athena::Extras>,
    /// The run's `_table_version`, with a view.
    table_version: Option<i64>,
}

impl FirehoseTarget {
    /// Checks the configuration and prepares the client (no request is sent yet).
    pub fn new(config: FirehoseTargetConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::new(&config.connection().sdk_config());
        let catalog = config.view_database.as_ref().map(|_| {
            let mut glue = config.connection();
            glue.endpoint_url = config.glue_endpoint_url.clone();
            let mut athena = config.connection();
            athena.endpoint_url = config.athena_endpoint_url.clone();
            (
                aws_sdk_glue::Client::new(&glue.sdk_config()),
                aws_sdk_athena::Client::new(&athena.sdk_config()),
            )
        });
        Ok(Self {
            config: Arc::new(config),
            client,
            counters: Arc::default(),
            catalog,
            view: None,
            table_version: None,
        })
    }

    /// Fails clearly when the stream does not exist. Other answers (no permission to
    /// describe, a description this SDK cannot read) let the run go on: the first put says
    /// whether the stream takes records.
    fn check_stream(&self) -> Result<()> {
        let name = &self.config.delivery_stream;
        let described = runtime().block_on(
            self.client
                .describe_delivery_stream()
                .delivery_stream_name(name)
                .send(),
        );
        match described {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Err(PluginError::not_found(format!(
                    "the delivery stream `{name}` does not exist"
                )))
            }
            Err(
                e @ (aws_sdk_firehose::error::SdkError::DispatchFailure(_)
                | aws_sdk_firehose::error::SdkError::TimeoutError(_)),
            ) => Err(call_error(
                &format!("cannot reach the delivery stream `{name}`"),
                &e,
            )),
            Err(e) => {
                log::debug!(
                    "the delivery stream `{name}` could not be described: {}",
                    describe(&e)
                );
                Ok(())
            }
        }
    }
}

impl Target for FirehoseTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        Ok(None)
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        if context.mode == ReplicationMode::Incremental {
            return Err(PluginError::unsupported(
                "the firehose target takes FULL_TABLE runs only: a delivery stream keeps no \
                 offset to continue from (the s3 target does, through its manifests)",
            ));
        }
        self.counters = Arc::default();
        self.check_stream()?;
        let config = &self.config;
        if let (Some((glue, athena)), Some(view_database), Some(database), Some(table)) = (
            &self.catalog,
            &config.view_database,
            &config.database,
            &config.table,
        ) {
            self.view = Some(runtime().block_on(crate::athena::Extras::checked(
                glue,
                athena.clone(),
                database,
                table,
                view_database,
                config.work_group.as_deref(),
                config.output_location.clone(),
                config.pk.clone(),
                config.crawler.clone(),
                config.query_timeout_secs,
            ))?);
            self.table_version = Some(chrono::Utc::now().timestamp());
        }
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(FirehoseWriter {
            config: self.config.clone(),
            client: self.client.clone(),
            counters: self.counters.clone(),
            records: Vec::new(),
            bytes: 0,
            in_flight: JoinSet::new(),
            table_version: self.table_version,
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let c = &self.counters;
        log::info!(
            "sent {} records ({} bytes) to the delivery stream `{}` in {} calls; {} records \
             were sent again after being refused",
            c.records.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            self.config.delivery_stream,
            c.calls.load(Ordering::Relaxed),
            c.retried.load(Ordering::Relaxed),
        );
        if let (Some(view), Some(version)) = (self.view.take(), self.table_version.take()) {
            let glue = self.catalog.as_ref().map(|(g, _)| g);
            runtime().block_on(async {
                view.replace_view(glue, version, version).await?;
                view.start_crawler(glue).await;
                Ok::<_, PluginError>(())
            })?;
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        let sent = self.counters.records.load(Ordering::Relaxed);
        if sent > 0 {
            log::warn!(
                "{sent} records of the aborted run were already accepted by the delivery \
                 stream `{}`; Firehose cannot take them back",
                self.config.delivery_stream
            );
        }
        Ok(())
    }
}

/// The writer of one target worker: fills calls and keeps up to `calls_in_flight` of them
/// going.
struct FirehoseWriter {
    config: Arc<FirehoseTargetConfig>,
    client: Client,
    counters: Arc<Counters>,
    /// Records of the call being filled.
    records: Vec<Bytes>,
    bytes: usize,
    in_flight: JoinSet<Result<()>>,
    /// The `_table_version` every record gets, with a view.
    table_version: Option<i64>,
}

impl FirehoseWriter {
    /// Sends the call being filled, first waiting for a slot.
    fn dispatch(&mut self) -> Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.config.calls_in_flight {
            self.join_one()?;
        }
        let records = std::mem::take(&mut self.records);
        self.bytes = 0;
        let call = Call {
            client: self.client.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        };
        self.in_flight
            .spawn_on(async move { call.send(records).await }, runtime().handle());
        Ok(())
    }

    fn join_one(&mut self) -> Result<()> {
        match runtime().block_on(self.in_flight.join_next()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(PluginError::internal(format!(
                "a Firehose call panicked: {e}"
            ))),
        }
    }

    fn push(&mut self, record: Bytes, row: usize) -> Result<()> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(PluginError::data(format!(
                "row {row} of the batch is {} bytes as JSON, over Firehose's limit of {} \
                 bytes per record",
                record.len(),
                MAX_RECORD_BYTES
            )));
        }
        if self.records.len() >= self.config.records_per_call()
            || self.bytes + record.len() > self.config.max_bytes_per_call
        {
            self.dispatch()?;
        }
        self.bytes += record.len();
        self.records.push(record);
        Ok(())
    }
}

impl Writer for FirehoseWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = match self.table_version {
            Some(v) => crate::athena::with_table_version(batch, v)?,
            None => batch,
        };
        let mut text = Vec::with_capacity(batch.get_array_memory_size());
        {
            let mut json = arrow_json::LineDelimitedWriter::new(&mut text);
            json.write(&batch).map_err(PluginError::data)?;
            json.finish().map_err(PluginError::data)?;
        }
        // JSON escapes newlines inside values, so each line is one row, ending with its `\n`.
        let text = Bytes::from(text);
        let mut start = 0;
        let mut row = 0;
        while start < text.len() {
            let end = memchr_newline(&text[start..]).map_or(text.len(), |i| start + i + 1);
            self.push(text.slice(start..end), row)?;
            start = end;
            row += 1;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.dispatch()?;
        let mut first_error = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.join_one() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for FirehoseWriter {
    fn drop(&mut self) {
        self.in_flight.abort_all();
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// One `PutRecordBatch` call and its retries.
struct Call {
    client: Client,
    config: Arc<FirehoseTargetConfig>,
    counters: Arc<Counters>,
}

impl Call {
    /// The backoff before retry `attempt` (1-based): exponential with full jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .retry_backoff_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.config.retry_max_backoff_ms);
        let floor = ceiling / 2;
        Duration::from_millis(floor + fastrand::u64(0..=ceiling - floor))
    }

    async fn send(self, mut pending: Vec<Bytes>) -> Result<()> {
        let stream = self.config.delivery_stream.as_str();
        let total = pending.len();
        let mut retries = 0u32;
        loop {
            let records = pending
                .iter()
                .map(|r| Record::builder().data(Blob::new(r.to_vec())).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(PluginError::internal)?;
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            let answer = self
                .client
                .put_record_batch()
                .delivery_stream_name(stream)
                .set_records(Some(records))
                .send()
                .await;
            let (refused, reason) = match answer {
                Ok(out) => {
                    let mut refused = Vec::new();
                    let mut reason = None;
                    for (record, entry) in pending.iter().zip(out.request_responses()) {
                        if let Some(code) = entry.error_code() {
                            refused.push(record.clone());
                            reason.get_or_insert_with(|| {
                                format!("{code}: {}", entry.error_message().unwrap_or(""))
                            });
                        } else {
                            self.counters.records.fetch_add(1, Ordering::Relaxed);
                            self.counters
                                .bytes
                                .fetch_add(record.len() as u64, Ordering::Relaxed);
                        }
                    }
                    // Entries the answer left out were not accepted either.
                    let answered = out.request_responses().len();
                    if answered < pending.len() {
                        refused.extend(pending[answered..].iter().cloned());
                        reason.get_or_insert_with(|| {
                            "the answer listed fewer records than were sent".to_owned()
                        });
                    }
                    if refused.is_empty() && out.failed_put_count() > 0 {
                        return Err(PluginError::io(format!(
                            "the delivery stream `{stream}` reported {} failed records but \
                             named none",
                            out.failed_put_count()
                        )));
                    }
                    (refused, reason)
                }
                Err(e) => {
                    let retryable = matches!(
                        e.as_service_error().and_then(|s| s.code()),
                        Some("ServiceUnavailableException" | "ThrottlingException")
                    ) || matches!(
                        e,
                        aws_sdk_firehose::error::SdkError::DispatchFailure(_)
                            | aws_sdk_firehose::error::SdkError::TimeoutError(_)
                            | aws_sdk_firehose::error::SdkError::ResponseError(_)
                    );
                    if !retryable || retries >= self.config.max_record_retries {
                        let what = if e
                            .as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception())
                        {
                            format!("the delivery stream `{stream}` does not exist")
                        } else {
                            format!("cannot put {} records to `{stream}`", pending.len())
                        };
                        return Err(call_error(&what, &e));
                    }
                    let reason = describe(&e);
                    (std::mem::take(&mut pending), Some(reason))
                }
            };
            if refused.is_empty() {
                return Ok(());
            }
            if retries >= self.config.max_record_retries {
                return Err(PluginError::io(format!(
                    "the delivery stream `{stream}` refused {} of {total} records after {} \
                     attempts; the last refusal: {}",
                    refused.len(),
                    retries + 1,
                    reason.unwrap_or_default()
                )));
            }
            retries += 1;
            self.counters
                .retried
                .fetch_add(refused.len() as u64, Ordering::Relaxed);
            log::debug!(
                "{} of {} records refused by `{stream}` ({}); retry {retries}",
                refused.len(),
                pending.len(),
                reason.as_deref().unwrap_or("")
            );
            tokio::time::sleep(self.backoff(retries)).await;
            pending = refused;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> FirehoseTargetConfig {
        let mut v = serde_json::json!({"delivery_stream": "s"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_problem_is_listed() {
        let c = config(serde_json::json!({
            "max_records_per_call": 501, "max_bytes_per_call": 5_000_000,
            "retry_backoff_ms": 500, "retry_max_backoff_ms": 100, "access_key_id": "a"
        }));
        let message = c.validate().unwrap_err().message().to_owned();
        for part in [
            "`secret_access_key`",
            "`max_records_per_call`",
            "`max_bytes_per_call`",
            "`retry_max_backoff_ms`",
        ] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
        assert!(config(serde_json::json!({})).validate().is_ok());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let call = Call {
            client: Client::from_conf(
                aws_sdk_firehose::Config::builder()
                    .behavior_version(aws_config::BehaviorVersion::latest())
                    .build(),
            ),
            config: Arc::new(config(serde_json::json!({
                "retry_backoff_ms": 100, "retry_max_backoff_ms": 1000
            }))),
            counters: Arc::default(),
        };
        for _ in 0..50 {
            let first = call.backoff(1).as_millis();
            assert!((100..=200).contains(&first), "{first}");
            let late = call.backoff(12).as_millis();
            assert!((500..=1000).contains(&late), "{late}");
        }
    }
}
