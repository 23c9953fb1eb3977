//! The `athena` target, the original fastlane's: the `s3` target writing Parquet into the
//! folder of a Glue table (its location, or `s3://<bucket>/<prefix>/<table>/` for a new
//! table), registering the table in the Glue Data Catalog, and replacing an Athena view that
//! shows exactly the published rows.
//!
//! Every row gets `_table_version`, its run's version (epoch seconds of the run's start, or
//! one more than the newest version published). The view `<view_database>.<table>` selects
//! the versions of the runs published since the last FULL_TABLE run, so that a run being
//! written, one that failed or one a FULL_TABLE run replaced is never seen through it; with
//! `pk`, it keeps each key's newest row (an INCREMENTAL run then updates rows).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use fastlane_plugin_api::{PluginError, Result, StagedRun, Target, WriteContext, Writer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connection::{call_error, with_aws_settings};
use crate::s3::block_on;
use crate::s3::{Compression, OnSchemaChange, S3Target, S3TargetConfig};

/// The column holding each row's run version.
pub const TABLE_VERSION: &str = "_table_version";

/// The Glue database of a table given without one (Athena's default).
const DEFAULT_DATABASE: &str = "default";

with_aws_settings! {
/// Configuration of the `athena` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AthenaTargetConfig {
    /// The table, in the Glue Data Catalog and in Athena.
    #[schemars(length(min = 1, max = 255))]
    pub table: String,
    /// The table's Glue database (default `default`).
    #[schemars(length(min = 1, max = 255))]
    pub database: Option<String>,
    /// The bucket of the data; by default the bucket of the Glue table's location. A table
    /// not in the catalog yet is created at `s3://<bucket>/<prefix>/<table>/`.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: Option<String>,
    /// Key prefix of a new table's folder (default: the bucket's root).
    #[serde(default)]
    pub prefix: String,
    /// The database of the view named after the table, replaced at each published run so
    /// that it shows exactly the published rows; without it, no view is made.
    #[schemars(length(min = 1, max = 255))]
    pub view_database: Option<String>,
    /// The Athena work group the view's statement runs in (default `primary`).
    #[schemars(length(min = 1, max = 128))]
    pub work_group: Option<String>,
    /// Where Athena writes the statement's result (`s3://…/`), when the work group does not
    /// set it.
    pub output_location: Option<String>,
    /// The table's primary key: INCREMENTAL runs continue after its largest value (default in
    /// them: the source's replication key), and the view keeps each key's newest row (by
    /// `_table_version`, then `_op_timestamp`).
    pub pk: Option<String>,
    /// A Glue crawler started after each published run (it must exist).
    pub crawler: Option<String>,
    /// Rows per object (the original's `batch_size`; default: objects of about 128 MB).
    #[schemars(range(min = 1))]
    pub batch_size: Option<u64>,
    /// Number of target workers, each writing its own objects.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Parquet page codec: `snappy` (the default), `zstd` or `none`.
    pub compression: Option<Compression>,
    /// Create the Glue database when it is missing.
    #[serde(default = "default_true")]
    pub create_database: bool,
    /// When the data's columns differ from the Glue table's: `fail` (the default),
    /// `add_columns` or `replace`.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
    /// Endpoint of a Glue-compatible catalog (default: AWS's; `endpoint_url` is for S3).
    pub glue_endpoint_url: Option<String>,
    /// Endpoint of an Athena-compatible service (default: AWS's).
    pub athena_endpoint_url: Option<String>,
    /// Seconds the view's statement may take.
    #[serde(default = "default_query_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub query_timeout_secs: u64,
    /// Path-style S3 addressing; default: on when `endpoint_url` is set.
    pub force_path_style: Option<bool>,
}
}

fn default_true() -> bool {
    true
}

fn default_query_timeout() -> u64 {
    300
}

impl AthenaTargetConfig {
    fn database(&self) -> &str {
        self.database.as_deref().unwrap_or(DEFAULT_DATABASE)
    }

    /// Checks everything that needs no network; lists every problem.
    fn validate(&self) -> Result<()> {
        let mut problems = self.connection().problems();
        if self.table.trim().is_empty() || self.table.contains('/') {
            problems.push(format!("`table` `{}` is not a table name", self.table));
        }
        if matches!(self.compression, Some(Compression::Gzip)) {
            problems.push("`compression` of Parquet is `snappy`, `zstd` or `none`".into());
        }
        if let Some(location) = &self.output_location
            && parse_location(location).is_none()
        {
            problems.push(format!(
                "`output_location` `{location}` is not an s3:// location"
            ));
        }
        if self.view_database.is_none() && self.work_group.is_some() {
            problems
                .push("`work_group` runs the view's statement: it needs `view_database`".into());
        }
        for (name, value) in [("pk", &self.pk), ("crawler", &self.crawler)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!("`{name}` is empty"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PluginError::config(problems.join("; ")))
        }
    }

    fn glue_client(&self) -> aws_sdk_glue::Client {
        let mut connection = self.connection();
        connection.endpoint_url = self.glue_endpoint_url.clone();
        aws_sdk_glue::Client::new(&connection.sdk_config())
    }

    fn athena_client(&self) -> aws_sdk_athena::Client {
        let mut connection = self.connection();
        connection.endpoint_url = self.athena_endpoint_url.clone();
        aws_sdk_athena::Client::new(&connection.sdk_config())
    }

    /// The `s3` target's configuration for data in `s3://<bucket>/<folder>/`.
    fn s3_config(&self, bucket: &str, folder: &str) -> Result<S3TargetConfig> {
        let folder = folder.trim_matches('/');
        let (prefix, name) = match folder.rsplit_once('/') {
            Some((prefix, name)) => (prefix, name),
            None => ("", folder),
        };
        let value = json!({
            "bucket": bucket,
            "prefix": prefix,
            "table": name,
            "database": self.database(),
            "partition": "",
            "format": "parquet",
            "compression": self.compression,
            "key": self.pk,
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "force_path_style": self.force_path_style,
            "glue": {
                "database": self.database(),
                "table": self.table,
                "create_database": self.create_database,
                "endpoint_url": self.glue_endpoint_url,
                "on_schema_change": self.on_schema_change,
            },
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "profile": self.profile,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "session_token": self.session_token,
            "max_attempts": self.max_attempts,
        });
        let without_nulls: serde_json::Map<String, Value> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(Value::Object(without_nulls)).map_err(PluginError::internal)
    }
}

/// The bucket and the key path of an `s3://bucket/path/` location.
fn parse_location(location: &str) -> Option<(String, String)> {
    let rest = ["s3://", "s3a://", "s3n://"]
        .iter()
        .find_map(|scheme| location.strip_prefix(scheme))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), path.trim_matches('/').to_owned()))
}

/// An identifier quoted for Athena (Trino) SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `batch` with the `_table_version` column set to `version` (replacing one it had).
pub fn with_table_version(batch: RecordBatch, version: i64) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = Vec::with_capacity(schema.fields().len() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.name().eq_ignore_ascii_case(TABLE_VERSION) {
            fields.push(field.clone());
            columns.push(column.clone());
        }
    }
    fields.push(Arc::new(Field::new(TABLE_VERSION, DataType::Int64, false)));
    columns.push(Arc::new(Int64Array::from_value(version, batch.num_rows())));
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
    .map_err(PluginError::data)
}

/// What the `athena` target adds to the `s3` target's commit.
pub(crate) struct Extras {
    database: String,
    table: String,
    view: Option<View>,
    crawler: Option<String>,
}

/// The Athena view and where its statement runs.
struct View {
    client: aws_sdk_athena::Client,
    database: String,
    work_group: String,
    output_location: Option<String>,
    pk: Option<String>,
    timeout: Duration,
}

impl Extras {
    /// Replaces the view by one showing the rows of versions `lowest` to `highest`.
    pub(crate) async fn replace_view(
        &self,
        glue: Option<&aws_sdk_glue::Client>,
        lowest: i64,
        highest: i64,
    ) -> Result<()> {
        let (Some(view), Some(glue)) = (&self.view, glue) else {
            return Ok(());
        };
        let columns = match glue
            .get_table()
            .database_name(&self.database)
            .name(&self.table)
            .send()
            .await
        {
            Ok(found) => {
                let table = found.table();
                let mut names: Vec<String> = table
                    .and_then(|t| t.storage_descriptor())
                    .map(|sd| sd.columns().iter().map(|c| c.name().to_owned()).collect())
                    .unwrap_or_default();
                names.extend(
                    table
                        .map(|t| t.partition_keys())
                        .unwrap_or_default()
                        .iter()
                        .map(|c| c.name().to_owned()),
                );
                names
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                log::debug!(
                    "no rows were ever written: the table `{}.{}` and its view do not exist yet",
                    self.database,
                    self.table
                );
                return Ok(());
            }
            Err(e) => {
                return Err(call_error(
                    &format!(
                        "cannot read the Glue table `{}.{}`",
                        self.database, self.table
                    ),
                    &e,
                ));
            }
        };
        let sql = view_sql(
            &view.database,
            &self.database,
            &self.table,
            &columns,
            view.pk.as_deref(),
            lowest,
            highest,
        )?;
        view.run(&sql).await?;
        log::info!(
            "replaced the view `{}.{}` (versions {lowest} to {highest})",
            view.database,
            self.table
        );
        Ok(())
    }

    /// Starts the crawler, if one is configured; the run is already published, so a
    /// failure is a warning.
    pub(crate) async fn start_crawler(&self, glue: Option<&aws_sdk_glue::Client>) {
        let (Some(name), Some(glue)) = (&self.crawler, glue) else {
            return;
        };
        match glue.start_crawler().name(name).send().await {
            Ok(_) => log::info!("started the Glue crawler `{name}`"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_crawler_running_exception()) =>
            {
                log::info!("the Glue crawler `{name}` is already running");
            }
            Err(e) => log::warn!(
                "{}",
                call_error(&format!("cannot start the Glue crawler `{name}`"), &e)
            ),
        }
    }
}

/// The statement creating the view.
fn view_sql(
    view_database: &str,
    database: &str,
    table: &str,
    columns: &[String],
    pk: Option<&str>,
    lowest: i64,
    highest: i64,
) -> Result<String> {
    let source = format!(
        "{}.{} WHERE {} BETWEEN {lowest} AND {highest}",
        quote(database),
        quote(table),
        quote(TABLE_VERSION)
    );
    let has = |name: &str| columns.iter().any(|c| c.eq_ignore_ascii_case(name));
    let select = match pk {
        None => format!("SELECT * FROM {source}"),
        Some(pk) => {
            if !has(pk) {
                return Err(PluginError::config(format!(
                    "`pk` `{pk}` is not a column of the table `{database}.{table}` (its columns: {})",
                    columns.join(", ")
                )));
            }
            let mut order = vec![format!("{} DESC", quote(TABLE_VERSION))];
            if has("_op_timestamp") {
                order.push(format!("{} DESC", quote("_op_timestamp")));
            }
            let list = columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {list} FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {}) \
                 AS \"_fastlane_rank\" FROM {source}) WHERE \"_fastlane_rank\" = 1",
                quote(&pk.to_ascii_lowercase()),
                order.join(", ")
            )
        }
    };
    Ok(format!(
        "CREATE OR REPLACE VIEW {}.{} AS {select}",
        quote(view_database),
        quote(table)
    ))
}

/// Fails clearly when the Glue crawler `name` does not exist.
async fn check_crawler(glue: &aws_sdk_glue::Client, name: &str) -> Result<()> {
    glue.get_crawler().name(name).send().await.map_err(|e| {
        if e.as_service_error()
            .is_some_and(|s| s.is_entity_not_found_exception())
        {
            PluginError::config(format!("the Glue crawler `{name}` does not exist"))
        } else {
            call_error(&format!("cannot read the Glue crawler `{name}`"), &e)
        }
    })?;
    Ok(())
}

impl Extras {
    /// The view `view_database.table` over the Glue table `database.table` (and the crawler to
    /// start), for a target other than `athena` (the `firehose` target): checks that the work
    /// group and the crawler exist.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn checked(
        glue: &aws_sdk_glue::Client,
        athena: aws_sdk_athena::Client,
        database: &str,
        table: &str,
        view_database: &str,
        work_group: Option<&str>,
        output_location: Option<String>,
        pk: Option<String>,
        crawler: Option<String>,
        timeout_secs: u64,
    ) -> Result<Self> {
        if let Some(name) = &crawler {
            check_crawler(glue, name).await?;
        }
        let view = View::checked(
            athena,
            view_database,
            work_group,
            output_location,
            pk,
            timeout_secs,
        )
        .await?;
        Ok(Self {
            database: database.to_owned(),
            table: table.to_owned(),
            view: Some(view),
            crawler,
        })
    }
}

impl View {
    /// The view's settings, once the work group (default `primary`) is found.
    async fn checked(
        client: aws_sdk_athena::Client,
        view_database: &str,
        work_group: Option<&str>,
        output_location: Option<String>,
        pk: Option<String>,
        timeout_secs: u64,
    ) -> Result<Self> {
        let work_group = work_group.unwrap_or("primary").to_owned();
        let found = client
            .get_work_group()
            .work_group(&work_group)
            .send()
            .await
            .map_err(|e| {
                call_error(
                    &format!("cannot use the Athena work group `{work_group}`"),
                    &e,
                )
            })?;
        if found.work_group().is_none() {
            return Err(PluginError::config(format!(
                "the Athena work group `{work_group}` does not exist"
            )));
        }
        Ok(Self {
            client,
            database: view_database.to_owned(),
            work_group,
            output_location,
            pk,
            timeout: Duration::from_secs(timeout_secs),
        })
    }

    /// Runs `sql` in the work group and waits for it to succeed.
    async fn run(&self, sql: &str) -> Result<()> {
        let context = QueryExecutionContext::builder()
            .catalog("AwsDataCatalog")
            .database(&self.database)
            .build();
        let mut request = self
            .client
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.work_group)
            .query_execution_context(context);
        if let Some(location) = &self.output_location {
            request = request.result_configuration(
                ResultConfiguration::builder()
                    .output_location(location)
                    .build(),
            );
        }
        let started = request.send().await.map_err(|e| {
            call_error(
                &format!(
                    "Athena refused the view's statement in the work group `{}`",
                    self.work_group
                ),
                &e,
            )
        })?;
        let id = started
            .query_execution_id()
            .ok_or_else(|| PluginError::io("Athena gave no query execution id"))?
            .to_owned();
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let execution = self
                .client
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| call_error(&format!("cannot follow the Athena query `{id}`"), &e))?;
            let status = execution.query_execution().and_then(|q| q.status());
            let reason = status
                .and_then(|s| s.state_change_reason())
                .unwrap_or("no reason given");
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => return Ok(()),
                Some(QueryExecutionState::Failed) => {
                    return Err(PluginError::data(format!(
                        "Athena failed the view's statement (query `{id}`): {reason}"
                    )));
                }
                Some(QueryExecutionState::Cancelled) => {
                    return Err(PluginError::io(format!(
                        "the view's statement was cancelled (query `{id}`): {reason}"
                    )));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let _ = self
                    .client
                    .stop_query_execution()
                    .query_execution_id(&id)
                    .send()
                    .await;
                return Err(PluginError::io(format!(
                    "the view's statement (query `{id}`) did not finish within {} s",
                    self.timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// The `athena` target.
pub struct AthenaTarget {
    config: AthenaTargetConfig,
    /// The `s3` target doing the writing, made once the table's location is known.
    inner: OnceLock<Result<S3Target>>,
}

impl AthenaTarget {
    /// Checks the configuration (no request is sent yet).
    pub fn new(config: AthenaTargetConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            inner: OnceLock::new(),
        })
    }

    /// Finds the table's folder (the Glue table's location, else from `bucket`) and makes the
    /// `s3` target writing into it. (The SDK clients are made outside the async block: making
    /// one blocks on the plugin's runtime.)
    fn resolve(&self) -> Result<S3Target> {
        let config = &self.config;
        let glue = config.glue_client();
        let athena = config
            .view_database
            .as_ref()
            .map(|_| config.athena_client());
        let (bucket, folder, view) = block_on(self.locate(&glue, athena))?;
        let database = config.database();
        let s3 = S3Target::new(config.s3_config(&bucket, &folder)?)?;
        Ok(s3.with_athena(Extras {
            database: database.to_owned(),
            table: config.table.clone(),
            view,
            crawler: config.crawler.clone(),
        }))
    }

    /// The table's bucket and folder, after checking the crawler and the work group.
    async fn locate(
        &self,
        glue: &aws_sdk_glue::Client,
        athena: Option<aws_sdk_athena::Client>,
    ) -> Result<(String, String, Option<View>)> {
        let config = &self.config;
        let database = config.database();
        let location = match glue
            .get_table()
            .database_name(database)
            .name(&config.table)
            .send()
            .await
        {
            Ok(found) => found
                .table()
                .and_then(|t| t.storage_descriptor())
                .and_then(|sd| sd.location())
                .map(str::to_owned),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => {
                return Err(call_error(
                    &format!("cannot read the Glue table `{database}.{}`", config.table),
                    &e,
                ));
            }
        };
        let (bucket, folder) = match (location, &config.bucket) {
            (Some(location), given) => {
                let (bucket, folder) = parse_location(&location).ok_or_else(|| {
                    PluginError::config(format!(
                        "the Glue table `{database}.{}` is at `{location}`, not an s3:// location",
                        config.table
                    ))
                })?;
                if let Some(given) = given
                    && *given != bucket
                {
                    return Err(PluginError::config(format!(
                        "the Glue table `{database}.{}` is at `{location}`, not in the bucket `{given}`",
                        config.table
                    )));
                }
                if folder.is_empty() {
                    return Err(PluginError::config(format!(
                        "the Glue table `{database}.{}` is at the root of its bucket (`{location}`); \
                         its objects need a folder of their own",
                        config.table
                    )));
                }
                (bucket, folder)
            }
            (None, Some(bucket)) => {
                let prefix = config.prefix.trim_matches('/');
                let folder = if prefix.is_empty() {
                    config.table.clone()
                } else {
                    format!("{prefix}/{}", config.table)
                };
                (bucket.clone(), folder)
            }
            (None, None) => {
                return Err(PluginError::config(format!(
                    "the Glue table `{database}.{}` does not exist: give `bucket` to create it",
                    config.table
                )));
            }
        };
        if let Some(name) = &config.crawler {
            check_crawler(glue, name).await?;
        }
        let view = match (&config.view_database, athena) {
            (Some(view_database), Some(client)) => Some(
                View::checked(
                    client,
                    view_database,
                    config.work_group.as_deref(),
                    config.output_location.clone(),
                    config.pk.clone(),
                    config.query_timeout_secs,
                )
                .await?,
            ),
            _ => None,
        };
        Ok((bucket, folder, view))
    }

    fn inner(&self) -> Result<&S3Target> {
        self.inner
            .get_or_init(|| self.resolve())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn inner_mut(&mut self) -> Result<&mut S3Target> {
        self.inner()?;
        match self.inner.get_mut() {
            Some(Ok(target)) => Ok(target),
            Some(Err(e)) => Err(e.clone()),
            None => Err(PluginError::internal("the athena target is not resolved")),
        }
    }
}

impl Target for AthenaTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        self.inner()?.get_offset()
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        if context.mode == fastlane_plugin_api::ReplicationMode::Incremental
            && self.config.pk.is_none()
        {
            return Err(PluginError::config(
                "INCREMENTAL runs need `pk`, the key column whose largest value they continue after",
            ));
        }
        self.inner_mut()?.open(context)
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        self.inner()?.writer(index)
    }

    fn commit(&mut self) -> Result<()> {
        self.inner_mut()?.commit()
    }

    fn abort(&mut self) -> Result<()> {
        match self.inner.get_mut() {
            Some(Ok(target)) => target.abort(),
            _ => Ok(()),
        }
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        self.inner()?.resumable_runs()
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        self.inner()?.checkpoints()
    }

    fn staged_rows(&self) -> Result<u64> {
        self.inner()?.staged_rows()
    }

    fn suspend(&mut self) -> Result<()> {
        match self.inner.get_mut() {
            Some(Ok(target)) => target.suspend(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("s3://b/data/t/"),
            Some(("b".into(), "data/t".into()))
        );
        assert_eq!(parse_location("s3a://b"), Some(("b".into(), String::new())));
        assert_eq!(parse_location("https://b/x"), None);
        assert_eq!(parse_location("s3:///x"), None);
    }

    #[test]
    fn view_statements() {
        let cols = vec!["id".to_owned(), "v".to_owned(), "_table_version".to_owned()];
        let plain = view_sql("views", "db", "t", &cols, None, 5, 9).unwrap();
        assert_eq!(
            plain,
            "CREATE OR REPLACE VIEW \"views\".\"t\" AS SELECT * FROM \"db\".\"t\" \
             WHERE \"_table_version\" BETWEEN 5 AND 9"
        );
        let keyed = view_sql("views", "db", "t", &cols, Some("ID"), 5, 9).unwrap();
        assert!(
            keyed.contains("PARTITION BY \"id\" ORDER BY \"_table_version\" DESC)"),
            "{keyed}"
        );
        assert!(keyed.starts_with("CREATE OR REPLACE VIEW \"views\".\"t\" AS SELECT \"id\", \"v\", \"_table_version\" FROM"), "{keyed}");
        let err = view_sql("views", "db", "t", &cols, Some("nope"), 5, 9).unwrap_err();
        assert!(err.to_string().contains("`pk` `nope`"), "{err}");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn the_version_column_is_added_or_replaced() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                TABLE_VERSION,
                Arc::new(Int64Array::from(vec![0, 0])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = with_table_version(batch, 42).unwrap();
        assert_eq!(out.num_columns(), 2);
        assert_eq!(out.schema().field(1).name(), TABLE_VERSION);
        let v = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(v.values(), &[42, 42]);
    }
}
