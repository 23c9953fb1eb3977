//! The `mongodb` source: `find` (or `aggregate`) sorted on the replication key, read through one
//! cursor in batches, each document converted from raw BSON into Arrow columns. A read that
//! loses its connection or cursor starts again after the last document it read (keyset
//! paging on the key, then `_id`), so nothing is read twice or skipped.

use std::future::IntoFuture;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fastlane_plugin_api::{
    BatchStream, ErrorCode, Partition, PluginError, ReadContext, Result, Source,
};
use fastlane_plugin_support::runtime::PluginRuntime;
use mongodb::bson::{self, Bson, Document, RawBson, RawBsonRef, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, Credential};
use mongodb::{Client, Collection, Cursor};
use serde_json::Value;

use crate::config::{MongoSourceConfig, OnMismatch};
use crate::convert::BatchBuilder;
use crate::kinds::Kind;

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 8).
static RUNTIME: PluginRuntime = PluginRuntime::new("mongodb", 8);

/// The plugin's tokio runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get()
}

/// What the run reads: the columns, and the filter with the offset applied.
#[derive(Clone)]
struct Plan {
    fields: Vec<(String, Kind)>,
    filter: Document,
}

/// The `mongodb` source.
pub struct MongoSource {
    config: Arc<MongoSourceConfig>,
    client: OnceLock<Client>,
    plan: Mutex<Option<Plan>>,
}

impl MongoSource {
    /// Checks the configuration (the server is contacted when the run starts).
    pub fn new(config: MongoSourceConfig) -> Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        Ok(Self {
            config: Arc::new(config),
            client: OnceLock::new(),
            plan: Mutex::new(None),
        })
    }

    /// Where the server is, for messages (never with credentials).
    fn place(&self) -> String {
        match &self.config.uri {
            Some(uri) => {
                let rest = uri.split_once("://").map_or(uri.as_str(), |(_, r)| r);
                let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                hosts.split(['/', '?']).next().unwrap_or(hosts).to_owned()
            }
            None => format!(
                "{}:{}",
                self.config.host.as_deref().unwrap_or_default(),
                self.config.port.unwrap_or(27017)
            ),
        }
    }

    fn client(&self) -> Result<&Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let config = &self.config;
        let uri = match &config.uri {
            Some(uri) => uri.clone(),
            None => format!(
                "mongodb://{}:{}/",
                config.host.as_deref().unwrap_or_default(),
                config.port.unwrap_or(27017)
            ),
        };
        let mut options = runtime()
            .block_on(ClientOptions::parse(&uri).into_future())
            .map_err(|e| PluginError::config(format!("`uri`: {}", e.kind)))?;
        options.app_name = Some("fastlane".into());
        options.server_selection_timeout = Some(Duration::from_secs(config.connect_timeout_secs));
        options.connect_timeout = Some(Duration::from_secs(config.connect_timeout_secs));
        if config.direct_connection {
            options.direct_connection = Some(true);
        }
        if let Some(user) = &config.user {
            options.credential = Some(
                Credential::builder()
                    .username(user.clone())
                    .password(config.password.clone())
                    .source(config.auth_source.clone())
                    .build(),
            );
        }
        let _context = runtime().enter();
        let client = Client::with_options(options).map_err(|e| self.error("connect", &e))?;
        Ok(self.client.get_or_init(|| client))
    }

    fn collection(&self) -> Result<Collection<RawDocumentBuf>> {
        Ok(self
            .client()?
            .database(&self.config.database)
            .collection::<RawDocumentBuf>(&self.config.collection))
    }

    /// A driver error as a plugin error, with the server and what was being done.
    fn error(&self, doing: &str, e: &mongodb::error::Error) -> PluginError {
        let place = self.place();
        match e.kind.as_ref() {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::DnsResolve { .. } => {
                PluginError::connection(format!(
                    "cannot reach MongoDB at {place} to {doing}: {}",
                    e.kind
                ))
            }
            ErrorKind::Authentication { .. } => PluginError::connection(format!(
                "MongoDB at {place} refused the credentials: {}",
                e.kind
            )),
            _ => PluginError::io(format!("MongoDB at {place} failed to {doing}: {}", e.kind)),
        }
    }

    /// Fails clearly when the collection does not exist.
    fn check_collection(&self) -> Result<()> {
        let db = self.client()?.database(&self.config.database);
        let names = match runtime().block_on(db.list_collection_names().into_future()) {
            Ok(names) => names,
            // A user allowed to read the collection but not to list the database's
            // collections: the query itself will say whether it may read.
            Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 13) => {
                log::debug!(
                    "cannot list the collections of `{}`: {}",
                    self.config.database,
                    e.kind
                );
                return Ok(());
            }
            Err(e) => return Err(self.error("list the collections", &e)),
        };
        if names.iter().any(|n| *n == self.config.collection) {
            return Ok(());
        }
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(20).collect();
        shown.sort_unstable();
        Err(PluginError::not_found(format!(
            "MongoDB at {} has no collection `{}` in the database `{}` ({})",
            self.place(),
            self.config.collection,
            self.config.database,
            if shown.is_empty() {
                "the database has no collections: check its name".to_owned()
            } else {
                format!("its collections: {}", shown.join(", "))
            }
        )))
    }

    /// The configured filter as BSON.
    fn base_filter(&self) -> Result<Document> {
        let json = self.config.filter_json().map_err(PluginError::config)?;
        Document::try_from(json).map_err(|e| PluginError::config(format!("`filter`: {e}")))
    }

    /// The kind of the replication key, from the document with the largest key.
    fn key_kind(&self, filter: &Document) -> Result<Option<Kind>> {
        let key = &self.config.replication_key;
        let collection = self.collection()?;
        let newest = runtime()
            .block_on(
                collection
                    .find_one(filter.clone())
                    .sort(doc! { key: -1 })
                    .projection(doc! { key: 1 })
                    .into_future(),
            )
            .map_err(|e| self.error("read the newest key", &e))?;
        Ok(newest.and_then(|d| d.get(key).ok().flatten().map(|v| Kind::of(v, false))))
    }

    /// The offset the target reported, as a BSON value of the key's kind.
    fn offset_bson(&self, offset: &Value, kind: &Kind) -> Result<Bson> {
        let key = &self.config.replication_key;
        let bad = |why: String| {
            PluginError::data(format!(
                "the offset {offset} does not fit the replication key `{key}` ({kind}): {why}"
            ))
        };
        let text = match offset {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(match kind {
            Kind::ObjectId => Bson::ObjectId(
                bson::oid::ObjectId::parse_str(&text).map_err(|e| bad(e.to_string()))?,
            ),
            Kind::Int32 | Kind::Int64 => Bson::Int64(
                text.parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            ),
            Kind::Double => Bson::Double(
                text.parse()
                    .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
            ),
            Kind::Decimal(..) => Bson::Decimal128(
                text.parse::<bson::Decimal128>()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            Kind::Timestamp | Kind::Date => {
                let millis = parse_utc_millis(&text).ok_or_else(|| {
                    bad("expected a UTC time like 2026-03-01T12:00:00.5".to_owned())
                })?;
                Bson::DateTime(bson::DateTime::from_millis(millis))
            }
            Kind::String => Bson::String(text),
            other => return Err(bad(format!("a {other} key cannot carry an offset"))),
        })
    }

    /// Reads the sample the columns are inferred from.
    fn infer(&self, filter: &Document) -> Result<Vec<(String, Kind)>> {
        let config = &self.config;
        let mut kind = Kind::Struct(Vec::new());
        let mut cursor = self.open(filter.clone(), None, Some(config.sample_size))?;
        while runtime()
            .block_on(cursor.advance())
            .map_err(|e| self.error("read the sample", &e))?
        {
            kind = kind.merge(Kind::of_document(cursor.current(), config.infer_nested));
        }
        match kind.settle() {
            Kind::Struct(fields) => Ok(fields),
            _ => Err(PluginError::data(
                "the sampled documents could not be read as documents",
            )),
        }
    }

    /// The sort: the key, then `_id` so that equal keys have an order.
    fn sort(&self) -> Document {
        let key = &self.config.replication_key;
        if key == "_id" {
            doc! { "_id": 1 }
        } else {
            doc! { key: 1, "_id": 1 }
        }
    }

    /// Opens a cursor over `filter`, after `after` (the last key and `_id` read), at most
    /// `limit` documents.
    fn open(
        &self,
        filter: Document,
        after: Option<&(RawBson, Option<RawBson>)>,
        limit: Option<usize>,
    ) -> Result<Cursor<RawDocumentBuf>> {
        let config = &self.config;
        let key = config.replication_key.as_str();
        let mut filter = filter;
        if let Some((last, id)) = after {
            let last = Bson::try_from(last.clone()).map_err(PluginError::internal)?;
            let resume = match id {
                Some(id) if key != "_id" => {
                    let id = Bson::try_from(id.clone()).map_err(PluginError::internal)?;
                    doc! { "$or": [
                        { key: { "$gt": last.clone() } },
                        { key: last, "_id": { "$gt": id } },
                    ] }
                }
                _ => doc! { key: { "$gt": last } },
            };
            filter = doc! { "$and": [filter, resume] };
        }
        let collection = self.collection()?;
        let batch = u32::try_from(config.batch_size).unwrap_or(u32::MAX);
        let projection = match &config.projection {
            Some(p) => {
                let mut p = Document::try_from(p.clone())
                    .map_err(|e| PluginError::config(format!("`projection`: {e}")))?;
                let including = p.iter().any(|(_, v)| {
                    matches!(
                        v,
                        Bson::Int32(1) | Bson::Int64(1) | Bson::Boolean(true) | Bson::Double(1.0)
                    )
                });
                if including {
                    p.insert(key, 1);
                } else {
                    p.remove(key);
                }
                Some(p)
            }
            None => None,
        };
        let cursor = match &config.pipeline {
            None => {
                let mut find = collection.find(filter).sort(self.sort()).batch_size(batch);
                if let Some(p) = projection {
                    find = find.projection(p);
                }
                if let Some(limit) = limit {
                    find = find.limit(i64::try_from(limit).unwrap_or(i64::MAX));
                }
                runtime().block_on(find.into_future())
            }
            Some(stages) => {
                let mut pipeline = vec![doc! { "$match": filter }, doc! { "$sort": self.sort() }];
                if let Some(p) = projection {
                    pipeline.push(doc! { "$project": p });
                }
                for stage in stages {
                    pipeline.push(
                        Document::try_from(stage.clone())
                            .map_err(|e| PluginError::config(format!("`pipeline`: {e}")))?,
                    );
                }
                if let Some(limit) = limit {
                    pipeline.push(doc! { "$limit": i64::try_from(limit).unwrap_or(i64::MAX) });
                }
                runtime()
                    .block_on(
                        collection
                            .aggregate(pipeline)
                            .batch_size(batch)
                            .into_future(),
                    )
                    .map(Cursor::with_type::<RawDocumentBuf>)
            }
        };
        cursor.map_err(|e| {
            self.error(
                &format!("query `{}.{}`", config.database, config.collection),
                &e,
            )
        })
    }
}

/// `2026-03-01T12:00:00.5`, `2026-03-01 12:00:00Z` or `2026-03-01` as UTC milliseconds.
fn parse_utc_millis(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let text = text.trim_end_matches('Z');
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_millis()
        })
}

impl Source for MongoSource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        self.check_collection()?;
        let mut filter = self.base_filter()?;
        let key = self.config.replication_key.clone();
        let after = fastlane_plugin_support::keys::read_after(
            context.mode,
            context.start_offset.as_ref(),
            self.config.offset.as_ref(),
        );
        if let Some(offset) = &after {
            let Some(kind) = self.key_kind(&filter)? else {
                // An empty collection: there is nothing after any offset.
                *self.plan.lock().expect("lock") = Some(Plan {
                    fields: Vec::new(),
                    filter,
                });
                return Ok(vec![Partition {
                    index: 0,
                    spec: Value::Null,
                }]);
            };
            let after = self.offset_bson(offset, &kind)?;
            filter = doc! { "$and": [filter, { key.as_str(): { "$gt": after } }] };
        }
        let fields = match self
            .config
            .schema_fields()
            .map_err(|p| PluginError::config(p.join("; ")))?
        {
            Some(fields) => fields,
            None => self.infer(&filter)?,
        };
        log::debug!(
            "reading `{}.{}` as {}",
            self.config.database,
            self.config.collection,
            Kind::Struct(fields.clone())
        );
        *self.plan.lock().expect("lock") = Some(Plan { fields, filter });
        Ok(vec![Partition {
            index: 0,
            spec: Value::Null,
        }])
    }

    fn read(&self, _partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let plan = self
            .plan
            .lock()
            .expect("lock")
            .clone()
            .ok_or_else(|| PluginError::internal("read before partitions"))?;
        let empty = plan.fields.is_empty();
        Ok(Box::new(MongoStream {
            source: MongoSource {
                config: self.config.clone(),
                client: self.client.clone(),
                plan: Mutex::new(None),
            },
            builder: BatchBuilder::new(plan.fields.clone()),
            plan,
            cursor: None,
            last: None,
            done: empty,
            retries: 0,
            read: 0,
            dead_letters: None,
            mismatches: 0,
        }))
    }
}

/// The documents of one read, batch by batch.
struct MongoStream {
    source: MongoSource,
    plan: Plan,
    builder: BatchBuilder,
    cursor: Option<Cursor<RawDocumentBuf>>,
    /// The last document's key and `_id`, to continue after it.
    last: Option<(RawBson, Option<RawBson>)>,
    done: bool,
    retries: u32,
    read: u64,
    dead_letters: Option<std::io::BufWriter<std::fs::File>>,
    mismatches: u64,
}

impl MongoStream {
    /// Whether the read may start again after `e`.
    fn resumable(&self, e: &mongodb::error::Error) -> bool {
        let transient = match e.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. } => true,
            // CursorNotFound: the server dropped the cursor (restart, timeout).
            ErrorKind::Command(c) => c.code == 43,
            _ => {
                e.contains_label("RetryableReadError")
                    || e.contains_label("ResumableChangeStreamError")
            }
        };
        transient && self.source.config.pipeline.is_none()
    }

    fn mismatch(&mut self, doc: &bson::RawDocument, reason: String) -> Result<()> {
        let config = &self.source.config;
        let id = doc
            .get("_id")
            .ok()
            .flatten()
            .map(|v| json_of(v).to_string())
            .unwrap_or_else(|| "(no _id)".into());
        if config.on_mismatch == OnMismatch::Error {
            return Err(PluginError::data(format!(
                "the document {id} of `{}.{}` does not fit the schema: {reason} (set \
                 `on_mismatch: dead_letter` to set such documents aside, or give `schema`)",
                config.database, config.collection
            )));
        }
        let path = config.dead_letter_path.clone().unwrap_or_default();
        if self.dead_letters.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| {
                    PluginError::io(format!("cannot open the dead-letter file `{path}`: {e}"))
                })?;
            self.dead_letters = Some(std::io::BufWriter::new(file));
        }
        let line = serde_json::json!({
            "reason": reason,
            "collection": format!("{}.{}", config.database, config.collection),
            "document": json_of(RawBsonRef::Document(doc)),
        });
        let out = self.dead_letters.as_mut().expect("opened");
        writeln!(out, "{line}").map_err(|e| {
            PluginError::io(format!("cannot write the dead-letter file `{path}`: {e}"))
        })?;
        self.mismatches += 1;
        Ok(())
    }

    fn finish_dead_letters(&mut self) -> Result<()> {
        if let Some(mut out) = self.dead_letters.take() {
            out.flush()
                .map_err(|e| PluginError::io(format!("cannot write the dead-letter file: {e}")))?;
            log::warn!(
                "{} documents of `{}.{}` did not fit the schema and were written to `{}`",
                self.mismatches,
                self.source.config.database,
                self.source.config.collection,
                self.source
                    .config
                    .dead_letter_path
                    .as_deref()
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Handles the cursor's current document.
    fn take_current(&mut self) -> Result<()> {
        let cursor = self.cursor.take().expect("a cursor is open");
        let result = self.take(cursor.current());
        self.cursor = Some(cursor);
        result
    }

    /// Appends `doc`, or sets it aside as not fitting.
    fn take(&mut self, doc: &bson::RawDocument) -> Result<()> {
        let key = self.source.config.replication_key.as_str();
        let key_value = doc.get(key).ok().flatten();
        let in_pipeline = self.source.config.pipeline.is_some();
        match key_value {
            Some(v) if !matches!(v, RawBsonRef::Null | RawBsonRef::Undefined) => {
                let id = if key == "_id" {
                    None
                } else {
                    doc.get("_id").ok().flatten().map(|v| v.to_raw_bson())
                };
                match self.builder.push(doc) {
                    Ok(()) => {
                        self.last = Some((v.to_raw_bson(), id));
                        Ok(())
                    }
                    Err(reason) => self.mismatch(doc, reason),
                }
            }
            _ if in_pipeline => match self.builder.push(doc) {
                Ok(()) => Ok(()),
                Err(reason) => self.mismatch(doc, reason),
            },
            _ => {
                let reason = format!("the replication key `{key}` is missing or null");
                self.mismatch(doc, reason)
            }
        }
    }
}

fn json_of(value: RawBsonRef<'_>) -> Value {
    Bson::try_from(value.to_raw_bson())
        .map(Bson::into_relaxed_extjson)
        .unwrap_or(Value::Null)
}

impl BatchStream for MongoStream {
    fn next_batch(&mut self) -> Result<Option<arrow_array::RecordBatch>> {
        let batch_size = self.source.config.batch_size;
        while !self.done {
            if self.cursor.is_none() {
                match self
                    .source
                    .open(self.plan.filter.clone(), self.last.as_ref(), None)
                {
                    Ok(cursor) => self.cursor = Some(cursor),
                    Err(e)
                        if e.code() == ErrorCode::CONNECTION
                            && self.retries < self.source.config.max_retries
                            && self.source.config.pipeline.is_none() =>
                    {
                        self.retries += 1;
                        log::warn!(
                            "{}; trying again ({}/{})",
                            e.message(),
                            self.retries,
                            self.source.config.max_retries
                        );
                        std::thread::sleep(backoff(
                            self.source.config.retry_backoff_ms,
                            self.retries,
                        ));
                        continue;
                    }
                    Err(e) if self.retries > 0 => {
                        return Err(e.context(format!(
                            "after {} documents and {} attempts to continue",
                            self.read, self.retries
                        )));
                    }
                    Err(e) => return Err(e),
                }
            }
            let advanced = {
                let cursor = self.cursor.as_mut().expect("opened above");
                runtime().block_on(cursor.advance())
            };
            match advanced {
                Ok(true) => {
                    self.take_current()?;
                    self.read += 1;
                    if self.builder.len() >= batch_size {
                        return Ok(Some(self.builder.finish()));
                    }
                }
                Ok(false) => {
                    self.done = true;
                    self.cursor = None;
                    self.finish_dead_letters()?;
                }
                Err(e) => {
                    self.cursor = None;
                    let config = &self.source.config;
                    if !self.resumable(&e) || self.retries >= config.max_retries {
                        let mut error = self.source.error(
                            &format!("read `{}.{}`", config.database, config.collection),
                            &e,
                        );
                        if self.retries > 0 {
                            error = error.context(format!(
                                "after {} documents and {} attempts to continue",
                                self.read, self.retries
                            ));
                        }
                        return Err(error);
                    }
                    self.retries += 1;
                    log::warn!(
                        "the read of `{}.{}` was cut after {} documents ({}); continuing after \
                         the last one ({}/{})",
                        config.database,
                        config.collection,
                        self.read,
                        e.kind,
                        self.retries,
                        config.max_retries
                    );
                    std::thread::sleep(backoff(config.retry_backoff_ms, self.retries));
                }
            }
        }
        if self.builder.is_empty() {
            Ok(None)
        } else {
            Ok(Some(self.builder.finish()))
        }
    }
}

/// The backoff before retry `attempt` (1-based): exponential, capped at 30 s, with jitter.
fn backoff(first_ms: u64, attempt: u32) -> Duration {
    let ceiling = first_ms.saturating_mul(1u64 << attempt.min(16)).min(30_000);
    Duration::from_millis(ceiling / 2 + fastrand::u64(0..=ceiling / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_as_utc_times() {
        assert_eq!(parse_utc_millis("1970-01-01T00:00:01.5"), Some(1_500));
        assert_eq!(parse_utc_millis("1970-01-01 00:00:02Z"), Some(2_000));
        assert_eq!(
            parse_utc_millis("1970-01-02T00:00:00+01:00"),
            Some(82_800_000)
        );
        assert_eq!(parse_utc_millis("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_utc_millis("soon"), None);
    }

    #[test]
    fn the_place_never_shows_credentials() {
        let source = MongoSource::new(
            serde_json::from_value(serde_json::json!({
                "uri": "mongodb://etl:s3cret@db1:27017,db2/?replicaSet=rs",
                "database": "d", "collection": "c"
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(source.place(), "db1:27017,db2");
    }
}
