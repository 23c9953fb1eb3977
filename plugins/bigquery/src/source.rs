//! The `bigquery` source: plans the read (table or query, incremental restriction, read
//! path), then reads each partition: a Storage Read stream, or a range of rows paged through
//! REST.

use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use fastlane_plugin_api::{
    BatchStream, IterStream, Partition, PluginError, ReadContext, ReadRange, ReplicationMode,
    Result, Source,
};
use fastlane_plugin_support::runtime::PluginRuntime;
use serde_json::{Value, json};

use crate::client::{Auth, Rest, Retry};
use crate::config::{BigQuerySourceConfig, ReadApi};
use crate::storage::{GOOGLE_STORAGE, Storage, StreamReader};
use crate::types::{BqField, arrow_schema, ident, offset_literal, rows_to_batch};

/// The plugin's tokio runtime, from the plugin toolkit: built on first use, with as many
/// worker threads as the host runs (at most 8).
static RUNTIME: PluginRuntime = PluginRuntime::new("bigquery", 8);

/// The plugin's tokio runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get()
}

/// How the planned rows are read.
enum Reader {
    /// Storage Read streams.
    Storage { storage: Storage, schema: Vec<u8> },
    /// `tabledata.list` of a table.
    Table {
        dataset: String,
        table: String,
        selected: Option<String>,
    },
    /// `jobs.getQueryResults` of a finished query job.
    Query {
        job: String,
        location: Option<String>,
    },
}

/// What the run reads and how.
struct Plan {
    fields: Vec<BqField>,
    schema: SchemaRef,
    reader: Reader,
}

impl Plan {
    /// The plan as JSON, kept in every partition's spec, so that a resumed run reads the
    /// same session, table or job without planning again.
    fn describe(&self) -> Value {
        use base64::Engine;
        let reader = match &self.reader {
            Reader::Storage { storage, schema } => json!({"storage": {
                "endpoint": storage.endpoint(),
                "schema": base64::engine::general_purpose::STANDARD.encode(schema),
            }}),
            Reader::Table {
                dataset,
                table,
                selected,
            } => json!({"table": {"dataset": dataset, "table": table, "selected": selected}}),
            Reader::Query { job, location } => {
                json!({"query": {"job": job, "location": location}})
            }
        };
        json!({"fields": self.fields, "reader": reader})
    }

    /// A plan from [`Plan::describe`]'s JSON.
    fn restore(value: &Value) -> Result<Self> {
        use base64::Engine;
        let bad = |what: &str| PluginError::internal(format!("bad partition plan: {what}"));
        let fields: Vec<BqField> =
            serde_json::from_value(value["fields"].clone()).map_err(|e| bad(&e.to_string()))?;
        let schema = arrow_schema(&fields)?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let reader = &value["reader"];
        let reader = if let Some(s) = reader.get("storage") {
            let endpoint = text(&s["endpoint"]).ok_or_else(|| bad("no endpoint"))?;
            let schema = base64::engine::general_purpose::STANDARD
                .decode(s["schema"].as_str().unwrap_or_default())
                .map_err(|e| bad(&e.to_string()))?;
            Reader::Storage {
                storage: Storage::new(&endpoint)?,
                schema,
            }
        } else if let Some(t) = reader.get("table") {
            Reader::Table {
                dataset: text(&t["dataset"]).ok_or_else(|| bad("no dataset"))?,
                table: text(&t["table"]).ok_or_else(|| bad("no table"))?,
                selected: text(&t["selected"]),
            }
        } else if let Some(q) = reader.get("query") {
            Reader::Query {
                job: text(&q["job"]).ok_or_else(|| bad("no job"))?,
                location: text(&q["location"]),
            }
        } else {
            return Err(bad("no reader"));
        };
        Ok(Self {
            fields,
            schema,
            reader,
        })
    }
}

/// A finished query job.
struct Job {
    id: String,
    location: Option<String>,
    fields: Vec<BqField>,
    total_rows: u64,
    destination: Option<String>,
}

/// The `bigquery` source.
pub struct BigQuerySource {
    config: Arc<BigQuerySourceConfig>,
    rest: OnceLock<Arc<Rest>>,
    plan: Mutex<Option<Arc<Plan>>>,
}

impl BigQuerySource {
    /// Checks the configuration (BigQuery is contacted when the run starts).
    pub fn new(config: BigQuerySourceConfig) -> Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(PluginError::config(problems.join("; ")));
        }
        Ok(Self {
            config: Arc::new(config),
            rest: OnceLock::new(),
            plan: Mutex::new(None),
        })
    }

    /// The REST client, made on first use (reading key files; Google is not contacted).
    async fn rest(&self) -> Result<Arc<Rest>> {
        if let Some(rest) = self.rest.get() {
            return Ok(rest.clone());
        }
        let auth = Auth::new(&self.config).await?;
        let rest = Arc::new(Rest::new(&self.config, auth)?);
        Ok(self.rest.get_or_init(|| rest).clone())
    }

    fn retry(&self) -> Retry {
        Retry {
            max_retries: self.config.max_retries,
            backoff_ms: self.config.retry_backoff_ms,
        }
    }

    /// The Storage Read endpoint, when the Storage Read API is to be tried.
    fn storage_endpoint(&self) -> Option<&str> {
        let c = &self.config;
        match (c.read_api, &c.storage_endpoint, &c.endpoint) {
            (ReadApi::Rest, _, _) => None,
            (_, Some(url), _) => Some(url),
            (_, None, None) => Some(GOOGLE_STORAGE),
            // A custom REST endpoint without a gRPC one: an emulator with REST only.
            (_, None, Some(_)) => None,
        }
    }

    /// The table's metadata; a missing table says whether its dataset exists.
    async fn table(&self, rest: &Rest, dataset: &str, table: &str) -> Result<Value> {
        let url = rest.url(&["datasets", dataset, "tables", table]);
        match rest
            .get(&url, &[], &format!("read the table `{dataset}.{table}`"))
            .await
        {
            Ok(value) => Ok(value),
            Err(e) if e.code() == fastlane_plugin_api::ErrorCode::NOT_FOUND => {
                let url = rest.url(&["datasets", dataset]);
                let project = &rest.project;
                match rest.get(&url, &[], "read the dataset").await {
                    Ok(_) => Err(PluginError::not_found(format!(
                        "BigQuery has no table `{table}` in the dataset `{project}.{dataset}`"
                    ))),
                    Err(d) if d.code() == fastlane_plugin_api::ErrorCode::NOT_FOUND => {
                        Err(PluginError::not_found(format!(
                            "BigQuery has no dataset `{dataset}` in the project `{project}` \
                             (check `dataset_id`, `gcp_project` and the dataset's location)"
                        )))
                    }
                    Err(d) => Err(d),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `sql` to completion and returns the job.
    async fn run_query(&self, rest: &Rest, sql: &str) -> Result<Job> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "maxResults": 0,
            "timeoutMs": 10_000,
            "formatOptions": {"useInt64Timestamp": true},
        });
        if let Some(location) = &self.config.location {
            body["location"] = json!(location);
        }
        let mut response = rest
            .post(&rest.url(&["queries"]), &body, "start the query")
            .await?;
        check_query_errors(&response)?;
        let job = response
            .pointer("/jobReference/jobId")
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::io("BigQuery started the query without a job id"))?
            .to_owned();
        let location = response
            .pointer("/jobReference/location")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.config.location.clone());
        while response.get("jobComplete") != Some(&Value::Bool(true)) {
            let mut query = vec![
                ("maxResults", "0".to_owned()),
                ("timeoutMs", "10000".to_owned()),
            ];
            if let Some(location) = &location {
                query.push(("location", location.clone()));
            }
            response = rest
                .get(&rest.url(&["queries", &job]), &query, "wait for the query")
                .await?;
            check_query_errors(&response)?;
        }
        let mut query = Vec::new();
        if let Some(location) = &location {
            query.push(("location", location.clone()));
        }
        let meta = rest
            .get(&rest.url(&["jobs", &job]), &query, "read the query job")
            .await?;
        if let Some(error) = meta.pointer("/status/errorResult") {
            return Err(query_error(error));
        }
        let destination = meta
            .pointer("/configuration/query/destinationTable")
            .and_then(|t| {
                Some(format!(
                    "projects/{}/datasets/{}/tables/{}",
                    t.get("projectId")?.as_str()?,
                    t.get("datasetId")?.as_str()?,
                    t.get("tableId")?.as_str()?
                ))
            });
        let fields = schema_fields(&response)?;
        let total_rows = response
            .get("totalRows")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
            .unwrap_or(0);
        Ok(Job {
            id: job,
            location,
            fields,
            total_rows,
            destination,
        })
    }

    /// The result columns of `sql`, without running it.
    async fn dry_run(&self, rest: &Rest, sql: &str) -> Result<Vec<BqField>> {
        let mut body = json!({"query": sql, "useLegacySql": false, "dryRun": true});
        if let Some(location) = &self.config.location {
            body["location"] = json!(location);
        }
        let response = rest
            .post(&rest.url(&["queries"]), &body, "check the query")
            .await?;
        check_query_errors(&response)?;
        schema_fields(&response)
    }

    /// Tries a Storage Read session; `None` when `auto` falls back to REST.
    async fn storage_session(
        &self,
        rest: &Rest,
        table: &str,
        columns: &[String],
        restriction: Option<&str>,
        context: &ReadContext,
    ) -> Result<Option<(Reader, Vec<Partition>)>> {
        let Some(endpoint) = self.storage_endpoint() else {
            return Ok(None);
        };
        let storage = Storage::new(endpoint)?;
        let streams = self
            .config
            .max_streams
            .unwrap_or(context.parallelism)
            .max(1);
        match storage
            .create_session(
                &rest.auth,
                &rest.project,
                table,
                columns,
                restriction,
                streams,
            )
            .await
        {
            Ok(session) => {
                log::info!(
                    "BigQuery: reading {table} through the Storage Read API in {} stream(s)",
                    session.streams.len()
                );
                let partitions = stream_partitions(session.streams);
                Ok(Some((
                    Reader::Storage {
                        storage,
                        schema: session.schema,
                    },
                    partitions,
                )))
            }
            Err(e) if self.config.read_api == ReadApi::Auto => {
                log::warn!("{}; reading through the REST API instead", e.message());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn plan(&self, context: &ReadContext) -> Result<(Plan, Vec<Partition>)> {
        let rest = self.rest().await?;
        // Fails early, and clearly, on credentials Google refuses.
        rest.auth.token().await?;
        let config = &self.config;
        let after = fastlane_plugin_support::keys::read_after(
            context.mode,
            context.start_offset.as_ref(),
            config.offset.as_ref(),
        );
        let offset = after.as_ref();
        if context.mode == ReplicationMode::Incremental && config.replication_key.is_none() {
            return Err(PluginError::config(
                "an INCREMENTAL run needs `replication_key`: the column it continues after",
            ));
        }
        let key_literal = |fields: &[BqField]| -> Result<Option<String>> {
            let (Some(offset), Some(key)) = (offset, &config.replication_key) else {
                return Ok(None);
            };
            let field = fields.iter().find(|f| &f.name == key).ok_or_else(|| {
                PluginError::not_found(format!(
                    "the replication key `{key}` is not a column of the result (its columns: {})",
                    names(fields)
                ))
            })?;
            Ok(Some(format!(
                "{} > {}",
                ident(key),
                offset_literal(field, offset)?
            )))
        };
        let sql = match (&config.query, &config.dataset_id, &config.table_id) {
            (Some(query), _, _) => {
                let query = query.trim().trim_end_matches(';');
                match offset {
                    Some(_) => {
                        let fields = self.dry_run(&rest, query).await?;
                        let condition = key_literal(&fields)?.expect("an offset");
                        format!("SELECT * FROM ({query}) AS fastlane_source WHERE {condition}")
                    }
                    None => query.to_owned(),
                }
            }
            (None, Some(dataset), Some(table)) => {
                let meta = self.table(&rest, dataset, table).await?;
                let all = schema_fields(&meta)?;
                let fields = match &config.columns {
                    Some(columns) => {
                        let mut missing = columns
                            .iter()
                            .filter(|c| !all.iter().any(|f| &f.name == *c))
                            .peekable();
                        if missing.peek().is_some() {
                            return Err(PluginError::not_found(format!(
                                "the table `{dataset}.{table}` has no column {} (its columns: {})",
                                missing
                                    .map(|c| format!("`{c}`"))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                names(&all)
                            )));
                        }
                        all.into_iter()
                            .filter(|f| columns.contains(&f.name))
                            .collect()
                    }
                    None => all,
                };
                let mut conditions: Vec<String> = Vec::new();
                if let Some(filter) = &config.filter {
                    conditions.push(format!("({filter})"));
                }
                if let Some(condition) = key_literal(&fields)? {
                    conditions.push(condition);
                }
                let restriction = (!conditions.is_empty()).then(|| conditions.join(" AND "));
                let kind = meta.get("type").and_then(Value::as_str).unwrap_or("TABLE");
                let direct = matches!(kind, "TABLE" | "SNAPSHOT" | "CLONE");
                let path = format!(
                    "projects/{}/datasets/{dataset}/tables/{table}",
                    rest.project
                );
                let schema = arrow_schema(&fields)?;
                let selected: Vec<String> = match &config.columns {
                    Some(_) => fields.iter().map(|f| f.name.clone()).collect(),
                    None => Vec::new(),
                };
                if direct
                    && let Some((reader, partitions)) = self
                        .storage_session(&rest, &path, &selected, restriction.as_deref(), context)
                        .await?
                {
                    return Ok((
                        Plan {
                            fields,
                            schema,
                            reader,
                        },
                        partitions,
                    ));
                }
                if direct && restriction.is_none() {
                    let total = meta
                        .get("numRows")
                        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                        .unwrap_or(0);
                    // The last range reads on to the end: rows still in the streaming buffer
                    // are listed but not counted in `numRows`.
                    let partitions = self.row_partitions(total, context, true);
                    let selected = (!selected.is_empty()).then(|| selected.join(","));
                    return Ok((
                        Plan {
                            fields,
                            schema,
                            reader: Reader::Table {
                                dataset: dataset.clone(),
                                table: table.clone(),
                                selected,
                            },
                        },
                        partitions,
                    ));
                }
                // Views, external tables and restricted reads over REST go through a query.
                let columns = match &config.columns {
                    Some(_) => fields
                        .iter()
                        .map(|f| ident(&f.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "*".to_owned(),
                };
                let mut sql = format!(
                    "SELECT {columns} FROM {}.{}.{}",
                    ident(&rest.project),
                    ident(dataset),
                    ident(table)
                );
                if let Some(restriction) = &restriction {
                    sql.push_str(" WHERE ");
                    sql.push_str(restriction);
                }
                sql
            }
            _ => {
                return Err(PluginError::config(
                    "give `table_id` (with `dataset_id`) or `query`",
                ));
            }
        };
        log::debug!("BigQuery: running {sql}");
        let job = self.run_query(&rest, &sql).await?;
        let schema = arrow_schema(&job.fields)?;
        if let Some(destination) = &job.destination
            && let Some((reader, partitions)) = self
                .storage_session(&rest, destination, &[], None, context)
                .await?
        {
            return Ok((
                Plan {
                    fields: job.fields,
                    schema,
                    reader,
                },
                partitions,
            ));
        }
        let partitions = self.row_partitions(job.total_rows, context, false);
        Ok((
            Plan {
                fields: job.fields,
                schema,
                reader: Reader::Query {
                    job: job.id,
                    location: job.location,
                },
            },
            partitions,
        ))
    }

    /// `total` rows split into ranges of whole pages, at most one per parallel reader; with
    /// `open_end`, the last range has no end.
    fn row_partitions(&self, total: u64, context: &ReadContext, open_end: bool) -> Vec<Partition> {
        let page = self.config.page_size as u64;
        let wanted = self
            .config
            .max_streams
            .unwrap_or(context.parallelism)
            .max(1) as u64;
        let count = total.div_ceil(page).clamp(1, wanted);
        let pages = total.div_ceil(page);
        let per = pages.div_ceil(count).max(1) * page;
        let mut partitions: Vec<Partition> = (0..count)
            .map(|i| {
                let start = (i * per).min(total);
                let end = ((i + 1) * per).min(total);
                Partition {
                    index: i as usize,
                    spec: json!({ "start": start, "end": end }),
                }
            })
            .filter(|p| p.index == 0 || p.spec["start"] != p.spec["end"])
            .collect();
        if open_end && let Some(last) = partitions.last_mut() {
            last.spec["end"] = Value::Null;
        }
        partitions
    }
}

/// One partition per Storage Read stream; one empty partition when the session has no stream
/// (an empty table).
fn stream_partitions(names: Vec<String>) -> Vec<Partition> {
    if names.is_empty() {
        return vec![Partition {
            index: 0,
            spec: json!({ "empty": true }),
        }];
    }
    names
        .into_iter()
        .enumerate()
        .map(|(index, name)| Partition {
            index,
            spec: json!({ "stream": name }),
        })
        .collect()
}

/// The column names, for messages.
fn names(fields: &[BqField]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `schema.fields` of a table or query answer.
fn schema_fields(value: &Value) -> Result<Vec<BqField>> {
    let fields = value
        .pointer("/schema/fields")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    serde_json::from_value(fields)
        .map_err(|e| PluginError::io(format!("BigQuery sent a schema fastlane cannot read: {e}")))
}

/// A query answer that reports errors: a failed query (real BigQuery answers these with an
/// HTTP error; emulators may answer 200 with `errors`).
fn check_query_errors(response: &Value) -> Result<()> {
    if let Some(error) = response.pointer("/status/errorResult") {
        return Err(query_error(error));
    }
    let errors = response.get("errors").and_then(Value::as_array);
    let complete = response.get("jobComplete") == Some(&Value::Bool(true));
    let no_schema = response
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    match errors.and_then(|e| e.first()) {
        Some(first) if complete && no_schema => Err(query_error(first)),
        _ => Ok(()),
    }
}

fn query_error(error: &Value) -> PluginError {
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the query failed");
    let message = format!("BigQuery: the query failed: {message}");
    match reason {
        "notFound" => PluginError::not_found(message),
        "accessDenied" => PluginError::connection(message),
        "invalidQuery" | "invalid" => PluginError::config(message),
        _ => PluginError::io(message),
    }
}

impl Source for BigQuerySource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let (plan, mut partitions) = runtime().block_on(self.plan(context))?;
        let described = plan.describe();
        for p in &mut partitions {
            p.spec["plan"] = described.clone();
        }
        *self.plan.lock().expect("lock") = Some(Arc::new(plan));
        Ok(partitions)
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        self.open_stream(partition, &ReadRange::default())
    }

    /// Positions are row numbers: in a Storage Read stream, or in the table or query result.
    fn resumable(&self) -> bool {
        true
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        self.open_stream(partition, range)
    }
}

impl BigQuerySource {
    /// The run's plan: the one planned by this process, or the one in the partition's spec (a
    /// resumed run does not plan again).
    fn plan_for(&self, partition: &Partition) -> Result<Arc<Plan>> {
        let mut slot = self.plan.lock().expect("lock");
        if let Some(plan) = slot.as_ref() {
            return Ok(plan.clone());
        }
        // The gRPC channel of a Storage Read plan is made inside the plugin's runtime.
        let _inside = runtime().enter();
        let plan = Arc::new(Plan::restore(&partition.spec["plan"])?);
        *slot = Some(plan.clone());
        Ok(plan)
    }

    /// Opens a partition, or its rows after row `range.after` and up to row `range.upto`.
    fn open_stream(
        &self,
        partition: &Partition,
        range: &ReadRange,
    ) -> Result<Box<dyn BatchStream>> {
        let plan = self.plan_for(partition)?;
        let after = fastlane_plugin_support::positions::row_number(&range.after, "start")?;
        let upto = fastlane_plugin_support::positions::row_number(&range.upto, "end")?;
        let rest = runtime().block_on(self.rest())?;
        match &plan.reader {
            Reader::Storage { storage, schema } => {
                let Some(name) = partition.spec.get("stream").and_then(Value::as_str) else {
                    return Ok(Box::new(IterStream(std::iter::empty())));
                };
                let start = i64::try_from(after.unwrap_or(0)).unwrap_or(i64::MAX);
                let reader =
                    StreamReader::new(storage.clone(), name.to_owned(), schema, self.retry())?
                        .starting_at(start);
                Ok(Box::new(StorageBatches {
                    reader,
                    rest,
                    plan: plan.clone(),
                    upto,
                }))
            }
            Reader::Table { .. } | Reader::Query { .. } => {
                let bound = |k: &str| partition.spec.get(k).and_then(Value::as_u64);
                let end = match (bound("end"), upto) {
                    (Some(e), Some(u)) => Some(e.min(u)),
                    (e, u) => e.or(u),
                };
                Ok(Box::new(RestBatches {
                    rest,
                    plan: plan.clone(),
                    next: after.unwrap_or_else(|| bound("start").unwrap_or(0)),
                    end,
                    page_size: self.config.page_size as u64,
                    done: false,
                }))
            }
        }
    }
}

/// The batches of one Storage Read stream, in the plan's schema.
struct StorageBatches {
    reader: StreamReader,
    rest: Arc<Rest>,
    plan: Arc<Plan>,
    /// The row of the stream to stop at (a resumed read of a hole).
    upto: Option<u64>,
}

impl BatchStream for StorageBatches {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let before = self.reader.offset().max(0) as u64;
            if self.upto.is_some_and(|u| before >= u) {
                return Ok(None);
            }
            let Some(mut batch) = runtime().block_on(self.reader.next(&self.rest.auth))? else {
                return Ok(None);
            };
            if let Some(u) = self.upto {
                // Rows past the end are dropped; the position stops at the end too.
                let keep = u.saturating_sub(before).min(batch.num_rows() as u64) as usize;
                batch = batch.slice(0, keep);
            }
            if batch.num_rows() == 0 {
                continue;
            }
            return conform(&batch, &self.plan.schema).map(Some);
        }
    }

    fn position(&self) -> Option<Value> {
        let read = self.reader.offset().max(0) as u64;
        Some(Value::from(self.upto.map_or(read, |u| read.min(u))))
    }
}

/// `batch` with `schema`'s columns, names and types: picked by name, cast where the server's
/// Arrow type differs (list item names, metadata, an emulator's type choices).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| PluginError::data(e.to_string()));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            PluginError::data(format!(
                "the Storage Read API sent no column `{}`",
                field.name()
            ))
        })?;
        columns.push(if column.data_type() == field.data_type() {
            column.clone()
        } else {
            arrow_cast::cast(column, field.data_type()).map_err(|e| {
                PluginError::data(format!(
                    "the column `{}` came as {} and cannot be read as {}: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ))
            })?
        });
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| PluginError::data(format!("the rows do not fit the table's schema: {e}")))
}

/// A range of rows paged through `tabledata.list` or `jobs.getQueryResults`; without `end`,
/// up to the last page.
struct RestBatches {
    rest: Arc<Rest>,
    plan: Arc<Plan>,
    next: u64,
    end: Option<u64>,
    page_size: u64,
    done: bool,
}

impl RestBatches {
    /// The rows from `next` on, and whether the server has more after them.
    async fn page(&self) -> Result<(Vec<Value>, bool)> {
        let rest = &self.rest;
        let count = match self.end {
            Some(end) => self.page_size.min(end - self.next),
            None => self.page_size,
        };
        let mut query = vec![
            ("startIndex", self.next.to_string()),
            ("maxResults", count.to_string()),
            ("formatOptions.useInt64Timestamp", "true".to_owned()),
        ];
        let (url, doing) = match &self.plan.reader {
            Reader::Table {
                dataset,
                table,
                selected,
            } => {
                if let Some(selected) = selected {
                    query.push(("selectedFields", selected.clone()));
                }
                (
                    rest.url(&["datasets", dataset, "tables", table, "data"]),
                    format!(
                        "list the rows of `{dataset}.{table}` from row {}",
                        self.next
                    ),
                )
            }
            Reader::Query { job, location } => {
                if let Some(location) = location {
                    query.push(("location", location.clone()));
                }
                query.push(("timeoutMs", "60000".to_owned()));
                (
                    rest.url(&["queries", job]),
                    format!("read the query results from row {}", self.next),
                )
            }
            Reader::Storage { .. } => unreachable!("REST pages of a Storage Read plan"),
        };
        let mut response = rest.get(&url, &query, &doing).await?;
        check_query_errors(&response)?;
        let more = response.get("pageToken").is_some_and(|t| !t.is_null());
        Ok(match response.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) => (rows, more),
            _ => (Vec::new(), more),
        })
    }
}

impl BatchStream for RestBatches {
    fn position(&self) -> Option<Value> {
        Some(Value::from(self.next))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done || self.end.is_some_and(|end| self.next >= end) {
            return Ok(None);
        }
        let (rows, more) = runtime().block_on(self.page())?;
        if rows.is_empty() {
            if let Some(end) = self.end {
                // Rows counted when the read was planned are missing: never end quietly.
                return Err(PluginError::io(format!(
                    "BigQuery sent no rows from row {} on, where the read expected rows up to \
                     {end}; the table may have changed while it was read",
                    self.next
                )));
            }
            self.done = true;
            return Ok(None);
        }
        self.next += rows.len() as u64;
        if self.end.is_none() && !more {
            self.done = true;
        }
        let batch = rows_to_batch(&self.plan.fields, &self.plan.schema, &rows)?;
        // Let a slow consumer not hold a page's JSON and its batch at once.
        drop(rows);
        Ok(Some(batch))
    }
}
