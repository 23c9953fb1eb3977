//! The `influxdb` target: each row becomes a point, written as line protocol in requests of
//! `batch_size` points, `requests_in_flight` per worker, retried with backoff when the server
//! cannot take them.
//!
//! A point is keyed by its measurement, tag set and time, so writing it again replaces it:
//! a rerun after a failure duplicates nothing. InfluxDB has no transactions, so the points an
//! aborted run already wrote stay (the run says how many); points no longer in the source are
//! not deleted by FULL_TABLE runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arrow_array::RecordBatch;
use bytes::Bytes;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result, Target, WriteContext, Writer};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::client::{Client, identifier, runtime};
use crate::config::{Api, InfluxDbTargetConfig, OffsetFormat};
use crate::line::{Encoder, Row};

/// What the run wrote, shared by its writers.
#[derive(Default)]
struct Counters {
    points: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    skipped: AtomicU64,
}

/// The `influxdb` target.
pub struct InfluxDbTarget {
    config: Arc<InfluxDbTargetConfig>,
    client: Arc<Client>,
    counters: Arc<Counters>,
    /// Rows handed out so far, for times given by position.
    sequence: Arc<AtomicI64>,
    /// The run's start, in units of the precision.
    start: i64,
}

impl InfluxDbTarget {
    /// Checks the configuration and prepares the client (no request is sent yet).
    pub fn new(config: InfluxDbTargetConfig) -> Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        let config = Arc::new(config);
        Ok(Self {
            client: Arc::new(Client::new(config.clone())?),
            config,
            counters: Arc::default(),
            sequence: Arc::default(),
            start: 0,
        })
    }

    /// The `FROM` clause naming the measurement: `"db"."rp"."m"` or `"m"`.
    fn qualified_measurement(&self, measurement: &str) -> String {
        match (&self.config.database, &self.config.retention_policy) {
            (Some(db), Some(rp)) => format!(
                "{}.{}.{}",
                identifier(db),
                identifier(rp),
                identifier(measurement)
            ),
            _ => identifier(measurement),
        }
    }

    /// The first value of the first series of a query result, if any.
    fn first_value(result: &Value, column: &str) -> Option<Value> {
        let series = result.get("series")?.get(0)?;
        let index = series
            .get("columns")?
            .as_array()?
            .iter()
            .position(|c| c.as_str() == Some(column))?;
        let value = series.get("values")?.get(0)?.get(index)?;
        (!value.is_null()).then(|| value.clone())
    }
}

/// `ns` nanoseconds since 1970 as `YYYY-MM-DD<separator>HH:MM:SS[.fraction]` (UTC).
fn utc_text(ns: i64, separator: char) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .naive_utc()
        .format(&format!("%Y-%m-%d{separator}%H:%M:%S%.f"))
        .to_string()
}

impl Target for InfluxDbTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        let config = &self.config;
        let Some(key) = config.key() else {
            return Err(PluginError::config(
                "INCREMENTAL runs need `key` or `time_column` in the influxdb target: the \
                 offset is the newest time or the largest value of a numeric field",
            ));
        };
        let Some(measurement) = &config.measurement else {
            return Err(PluginError::unsupported(
                "INCREMENTAL runs need a fixed `measurement`: with `measurement_column` the \
                 points are spread over measurements the target cannot list on its own",
            ));
        };
        if config.api() == Api::V2 {
            return Err(PluginError::unsupported(
                "INCREMENTAL runs need the v1 API (InfluxQL) to read the offset back; with an \
                 InfluxDB 2.x server, use its v1-compatible endpoints (`api`: `v1`, `database` \
                 mapped to the bucket, the token as the password)",
            ));
        }
        let from = self.qualified_measurement(measurement);
        let is_time = Some(key) == config.time_column.as_deref();
        let run = |statement: String| {
            let result = runtime().block_on(self.client.influxql(&statement, false));
            match result {
                Err(e)
                    if config.create_database
                        && e.code() == fastlane_plugin_api::ErrorCode::NOT_FOUND =>
                {
                    Ok(Value::Null)
                }
                other => other,
            }
        };
        if is_time {
            let result = run(format!("SELECT * FROM {from} ORDER BY time DESC LIMIT 1"))?;
            let Some(ns) = Self::first_value(&result, "time") else {
                return Ok(None);
            };
            let ns = ns.as_i64().ok_or_else(|| {
                PluginError::io(format!(
                    "InfluxDB answered a time that is not a number: {ns}"
                ))
            })?;
            return Ok(Some(match config.offset_format {
                OffsetFormat::Rfc3339 => Value::from(utc_text(ns, 'T')),
                OffsetFormat::Datetime => Value::from(utc_text(ns, ' ')),
                OffsetFormat::Epoch => {
                    Value::from(ns.div_euclid(1_000_000_000 / config.precision.per_second()))
                }
            }));
        }
        let result = run(format!("SELECT MAX({}) FROM {from}", identifier(key)))?;
        Ok(Self::first_value(&result, "max"))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        if context.mode == ReplicationMode::Incremental && self.config.key().is_none() {
            return Err(PluginError::config(
                "INCREMENTAL runs need `key` or `time_column` in the influxdb target",
            ));
        }
        self.counters = Arc::default();
        self.sequence = Arc::default();
        let now = chrono::Utc::now();
        let per_second = self.config.precision.per_second();
        self.start = now.timestamp() * per_second
            + i64::from(now.timestamp_subsec_nanos()) / (1_000_000_000 / per_second);
        if self.config.create_database {
            let db = self.config.database.as_deref().unwrap_or_default();
            runtime().block_on(
                self.client
                    .influxql(&format!("CREATE DATABASE {}", identifier(db)), true),
            )?;
        }
        runtime().block_on(self.client.check())?;
        log::debug!("writing points to {}", self.client.write_url());
        Ok(())
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>> {
        Ok(Box::new(InfluxDbWriter {
            config: self.config.clone(),
            client: self.client.clone(),
            counters: self.counters.clone(),
            sequence: self.sequence.clone(),
            start: self.start,
            encoder: Encoder::new(self.config.clone()),
            pending: Vec::new(),
            points: 0,
            in_flight: JoinSet::new(),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let c = &self.counters;
        log::info!(
            "wrote {} points ({} bytes of line protocol) to {} of {} in {} requests ({} \
             retried)",
            c.points.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            self.client.place(),
            self.config.base_url(),
            c.requests.load(Ordering::Relaxed),
            c.retries.load(Ordering::Relaxed),
        );
        let skipped = c.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            log::warn!(
                "{skipped} rows had no non-null field and were not written (InfluxDB cannot \
                 store a point without fields; `empty_rows: error` makes this an error)"
            );
        }
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        let written = self.counters.points.load(Ordering::Relaxed);
        if written > 0 {
            log::warn!(
                "{written} points of the aborted run were already written to {}; InfluxDB \
                 cannot take them back, and running again rewrites the same points",
                self.client.place()
            );
        }
        Ok(())
    }
}

/// The writer of one target worker: fills requests and keeps up to `requests_in_flight` of
/// them going.
struct InfluxDbWriter {
    config: Arc<InfluxDbTargetConfig>,
    client: Arc<Client>,
    counters: Arc<Counters>,
    sequence: Arc<AtomicI64>,
    start: i64,
    encoder: Encoder,
    /// Lines of the request being filled.
    pending: Vec<u8>,
    points: usize,
    in_flight: JoinSet<Result<()>>,
}

impl InfluxDbWriter {
    /// Sends the request being filled, first waiting for a slot.
    fn dispatch(&mut self) -> Result<()> {
        if self.points == 0 {
            return Ok(());
        }
        while self.in_flight.len() >= self.config.requests_in_flight {
            self.join_one()?;
        }
        let lines = std::mem::take(&mut self.pending);
        let points = std::mem::take(&mut self.points);
        let size = lines.len() as u64;
        let body = if self.config.gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(lines.len() / 4),
                flate2::Compression::fast(),
            );
            gz.write_all(&lines).map_err(PluginError::internal)?;
            Bytes::from(gz.finish().map_err(PluginError::internal)?)
        } else {
            Bytes::from(lines)
        };
        let client = self.client.clone();
        let counters = self.counters.clone();
        let gzip = self.config.gzip;
        self.in_flight.spawn_on(
            async move {
                let retries = client.write(body, points, gzip).await?;
                counters.points.fetch_add(points as u64, Ordering::Relaxed);
                counters.bytes.fetch_add(size, Ordering::Relaxed);
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters
                    .retries
                    .fetch_add(u64::from(retries), Ordering::Relaxed);
                Ok(())
            },
            runtime().handle(),
        );
        Ok(())
    }

    fn join_one(&mut self) -> Result<()> {
        match runtime().block_on(self.in_flight.join_next()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(PluginError::internal(format!(
                "an InfluxDB write panicked: {e}"
            ))),
        }
    }
}

impl Writer for InfluxDbWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let first = self.sequence.fetch_add(rows as i64, Ordering::Relaxed);
        let prepared = self.encoder.prepare(&batch, self.start + first)?;
        for row in 0..rows {
            let before = self.pending.len();
            match self.encoder.row(&prepared, row, &mut self.pending)? {
                Row::Written => {}
                Row::Skipped => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            if self.pending.len() > self.config.max_request_bytes && self.points > 0 {
                // This line goes into the next request.
                let line = self.pending.split_off(before);
                self.dispatch()?;
                self.pending = line;
            }
            self.points += 1;
            if self.points >= self.config.batch_size
                || self.pending.len() >= self.config.max_request_bytes
            {
                self.dispatch()?;
            }
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

impl Drop for InfluxDbWriter {
    fn drop(&mut self) {
        self.in_flight.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_text() {
        assert_eq!(utc_text(0, 'T'), "1970-01-01T00:00:00");
        assert_eq!(
            utc_text(1_700_000_000_123_000_000, ' '),
            "2023-11-14 22:13:20.123"
        );
        assert_eq!(utc_text(-1, 'T'), "1969-12-31T23:59:59.999999999");
    }

    #[test]
    fn query_results_are_read() {
        let result = serde_json::json!({"series": [{
            "name": "m", "columns": ["time", "max"], "values": [[0, 41]]
        }]});
        assert_eq!(
            InfluxDbTarget::first_value(&result, "max"),
            Some(Value::from(41))
        );
        assert_eq!(
            InfluxDbTarget::first_value(&serde_json::json!({}), "max"),
            None
        );
    }
}
