//! The `postgres` target: every writer loads its batches with binary `COPY … FROM STDIN` into
//! one staging table; `commit` publishes the staging in one transaction (FULL_TABLE: the
//! table's rows replaced, the table itself with its indexes, constraints, grants, triggers and
//! comments kept; INCREMENTAL: rows appended, or upserted on the key); `abort` drops it, so a
//! failed run leaves the table as it was.
//!
//! In a checkpointed run each batch is loaded in one transaction with its tag, in the table's
//! checkpoint table `_fastlane_ckpt_<table hash>` (which also keeps the run's plan and staging
//! columns); a failed run is suspended with its staging kept, and the next run resumes it.
//! Staging and checkpoints are both unlogged: a server crash empties both together, and the
//! run then starts over, never trusting a tag whose rows are gone.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use fastlane_plugin_api::{
    Checksum, PluginError, ReplicationMode, StagedRun, WriteContext, Writer,
};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Client;

use crate::columns::Column;
use crate::config::{OnSchemaChange, PostgresTargetConfig, SpecialValues};
use crate::conn::{Connection, RUNTIME, connect, ident, literal, qualified};
use crate::copy::copy_batches;
use crate::encode::{Staged, copy_data, staged};
use crate::error::{Context, Error, Result};
use fastlane_plugin_support::schema::SchemaStep;

/// A staging column: its name, its type in the staging table, and the PostgreSQL type a
/// `postgres` source read it as (the type a new table gets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StagedColumn {
    name: String,
    pg_type: String,
    hint: Option<String>,
    /// The Arrow type the run wrote the column as (its `Display` form), for checksums.
    #[serde(default)]
    arrow: Option<String>,
}

type StagedColumns = Vec<StagedColumn>;

/// What the writers of a run share: where to connect, the staging table, and its columns once
/// the first batch has made it.
struct Shared {
    connection: Connection,
    schema: String,
    staging: String,
    batch_size: usize,
    columns: tokio::sync::Mutex<Option<StagedColumns>>,
    /// The checkpoint table and the run's id, in a checkpointed run.
    checkpoints: Option<(String, String)>,
    /// The target table (quoted) and its columns when the run opened (`None`: no table yet).
    table: String,
    existing: Option<Vec<String>>,
    mode: ReplicationMode,
    on_change: OnSchemaChange,
}

/// A run in progress: the connection holding the table's lock, and the shared state.
struct Run {
    control: Client,
    mode: ReplicationMode,
    shared: Arc<Shared>,
    /// The tags of a resumed run's staged rows.
    tags: Vec<String>,
}

/// The `postgres` target.
pub struct PostgresTarget {
    config: PostgresTargetConfig,
    connection: Connection,
    run: Option<Run>,
}

impl PostgresTarget {
    /// A target for `config`, checked without connecting.
    pub fn new(config: PostgresTargetConfig) -> Result<Self, PluginError> {
        config
            .validate()
            .map_err(|problems| PluginError::config(problems.join("; ")))?;
        let connection = config.connection().map_err(PluginError::config)?;
        Ok(Self {
            config,
            connection,
            run: None,
        })
    }

    fn table(&self) -> String {
        qualified(&self.config.schema, &self.config.table)
    }

    /// A short hash of the table's name, in the names of its staging and checkpoint tables.
    fn table_hash(&self) -> String {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.table().bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    }

    /// The prefix of this table's staging tables.
    fn staging_prefix(&self) -> String {
        format!("_fastlane_stage_{}_", self.table_hash())
    }

    /// The staging table of run `run_id`.
    fn staging_name(&self, run_id: &str) -> String {
        let run: String = run_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        format!("{}{run}", self.staging_prefix())
            .chars()
            .take(63)
            .collect()
    }

    /// This table's checkpoint table, quoted.
    fn checkpoint_table(&self) -> String {
        qualified(
            &self.config.schema,
            &format!("_fastlane_ckpt_{}", self.table_hash()),
        )
    }

    async fn exists(&self, client: &Client, qualified_name: &str) -> Result<bool> {
        Ok(client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified_name])
            .await
            .what(|| format!("looking up {qualified_name}"))?
            .get(0))
    }

    /// The target table's columns and their types, or `None` when it does not exist.
    async fn target_columns(&self, client: &Client) -> Result<Option<Vec<(String, String)>>> {
        let oid: Option<i64> = client
            .query_one("SELECT to_regclass($1)::oid::int8", &[&self.table()])
            .await
            .what(|| format!("looking up {}", self.table()))?
            .get(0);
        let Some(oid) = oid else {
            return Ok(None);
        };
        let rows = client
            .query(
                &format!(
                    "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
                ),
                &[],
            )
            .await
            .what(|| "reading the target's columns".into())?;
        Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
    }

    async fn open_run(&mut self, context: &WriteContext) -> Result<()> {
        let control = connect(&self.connection).await?;
        let table = self.table();
        let locked: bool = control
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1))",
                &[&format!("fastlane:{table}")],
            )
            .await
            .what(|| "locking the target".into())?
            .get(0);
        if !locked {
            return Err(Error::Config(format!(
                "another run is loading {table}; two runs never load one table at once"
            )));
        }
        let staging = self.staging_name(&context.run_id);
        let resume = context.checkpoint.as_ref().is_some_and(|c| c.resume);
        // Staging tables of earlier runs that died (this run holds the table's lock), except
        // the one this run resumes.
        let prefix = self.staging_prefix();
        let stale = control
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 \
                 AND starts_with(tablename, $2)",
                &[&self.config.schema, &prefix],
            )
            .await
            .what(|| "looking for stale staging tables".into())?;
        for row in stale {
            let name: String = row.get(0);
            if resume && name == staging {
                continue;
            }
            control
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {}",
                    qualified(&self.config.schema, &name)
                ))
                .await
                .what(|| format!("dropping the stale staging table {name}"))?;
        }
        let ckpt = self.checkpoint_table();
        let mut columns = None;
        let mut tags = Vec::new();
        match &context.checkpoint {
            None => control
                .batch_execute(&format!("DROP TABLE IF EXISTS {ckpt}"))
                .await
                .what(|| "dropping the checkpoints of earlier runs".into())?,
            Some(c) => {
                control
                    .batch_execute(&format!(
                        "CREATE UNLOGGED TABLE IF NOT EXISTS {ckpt} (run_id text, id text, \
                         body text NOT NULL, PRIMARY KEY (run_id, id))"
                    ))
                    .await
                    .what(|| "creating the checkpoint table".into())?;
                if c.resume {
                    control
                        .execute(
                            &format!("DELETE FROM {ckpt} WHERE run_id <> $1"),
                            &[&context.run_id],
                        )
                        .await
                        .what(|| "forgetting other runs' checkpoints".into())?;
                    for row in control
                        .query(
                            &format!("SELECT id, body FROM {ckpt} WHERE run_id = $1"),
                            &[&context.run_id],
                        )
                        .await
                        .what(|| "reading the run's checkpoints".into())?
                    {
                        let (id, body): (String, String) = (row.get(0), row.get(1));
                        if id == "columns" {
                            columns = serde_json::from_str(&body).ok();
                        } else if let Some(tag) = id.strip_prefix("t:") {
                            tags.push(tag.to_owned());
                        }
                    }
                } else {
                    control
                        .batch_execute(&format!("DELETE FROM {ckpt}"))
                        .await
                        .what(|| "forgetting earlier checkpoints".into())?;
                    control
                        .execute(
                            &format!("INSERT INTO {ckpt} VALUES ($1, 'plan', $2)"),
                            &[&context.run_id, &c.plan.to_string()],
                        )
                        .await
                        .what(|| "recording the run's plan".into())?;
                }
            }
        }
        let existing = self
            .target_columns(&control)
            .await?
            .map(|t| t.into_iter().map(|(n, _)| n).collect());
        self.run = Some(Run {
            control,
            mode: context.mode,
            tags,
            shared: Arc::new(Shared {
                connection: self.connection.clone(),
                schema: self.config.schema.clone(),
                staging,
                batch_size: self.config.batch_size,
                columns: tokio::sync::Mutex::new(columns),
                checkpoints: context
                    .checkpoint
                    .as_ref()
                    .map(|_| (ckpt, context.run_id.clone())),
                table,
                existing,
                mode: context.mode,
                on_change: self.config.on_schema_change,
            }),
        });
        Ok(())
    }

    async fn publish(&mut self) -> Result<()> {
        let Some(run) = &self.run else {
            return Err(Error::Config("commit without open".into()));
        };
        let table = self.table();
        let staged = run.shared.columns.lock().await.clone();
        let target = self.target_columns(&run.control).await?;
        let control = &run.control;
        let forget =
            run.shared.checkpoints.as_ref().map(|(ckpt, run_id)| {
                format!("DELETE FROM {ckpt} WHERE run_id = {}", literal(run_id))
            });
        let Some(staged) = staged else {
            // Nothing was written.
            let mut steps = vec!["BEGIN".to_owned()];
            if run.mode == ReplicationMode::FullTable && target.is_some() {
                steps.push(format!("TRUNCATE {table}"));
            }
            steps.extend(forget);
            steps.push("COMMIT".to_owned());
            return control
                .batch_execute(&steps.join("; "))
                .await
                .what(|| format!("publishing the run into {table}"));
        };
        let staging = qualified(&run.shared.schema, &run.shared.staging);
        let written: Vec<String> = staged.iter().map(|c| c.name.clone()).collect();
        let step = match &target {
            None => SchemaStep::Replace,
            Some(t) => {
                let existing: Vec<String> = t.iter().map(|(n, _)| n.clone()).collect();
                schema_step(
                    run.mode,
                    self.config.on_schema_change,
                    &existing,
                    &written,
                    &table,
                )?
            }
        };
        // Each staged column's type in a table made or grown from the data: the type the
        // source read it as, when this server has it, else the staging's own.
        let mut defined = Vec::with_capacity(staged.len());
        for c in staged.iter().filter(|_| step != SchemaStep::Fits) {
            let ty = match &c.hint {
                Some(hint) if type_exists(control, hint).await => hint.clone(),
                _ => c.pg_type.clone(),
            };
            defined.push((c.name.clone(), ty));
        }
        let mut ddl = Vec::new();
        let target = match (step, target) {
            (SchemaStep::Fits, Some(t)) => t,
            (SchemaStep::AddColumns(new), Some(mut t)) => {
                let adds: Vec<String> = defined
                    .iter()
                    .filter(|(n, _)| new.contains(n))
                    .map(|(n, ty)| format!("ADD COLUMN {} {ty}", ident(n)))
                    .collect();
                log::info!("adding columns to {table}: {}", adds.join(", "));
                ddl.push(format!("ALTER TABLE {table} {}", adds.join(", ")));
                t.extend(defined.iter().filter(|(n, _)| new.contains(n)).cloned());
                t
            }
            (_, existed) => {
                if existed.is_some() {
                    ddl.push(format!("DROP TABLE {table}"));
                }
                let defs: Vec<String> = defined
                    .iter()
                    .map(|(n, ty)| format!("{} {ty}", ident(n)))
                    .collect();
                let key = self
                    .config
                    .key
                    .as_ref()
                    .map(|k| format!(", PRIMARY KEY ({})", ident(k)))
                    .unwrap_or_default();
                ddl.push(format!("CREATE TABLE {table} ({}{key})", defs.join(", ")));
                defined.clone()
            }
        };
        let names: Vec<String> = staged.iter().map(|c| ident(&c.name)).collect();
        // The server's assignment casts check what they convert (a text too long for a
        // varchar, a bigint too large for an integer); only text staged for a type that takes
        // no assignment from text (jsonb, inet, enums, …) is cast explicitly. An explicit cast
        // to a string type would cut a value short in silence, so none is made.
        let casts: Vec<String> = staged
            .iter()
            .map(|c| {
                let ty = &target
                    .iter()
                    .find(|(t, _)| *t == c.name)
                    .expect("checked")
                    .1;
                let stringy = ty == "text" || ty.starts_with("character");
                if c.pg_type.starts_with("text") && !stringy && *ty != c.pg_type {
                    format!("CAST({} AS {ty})", ident(&c.name))
                } else {
                    ident(&c.name)
                }
            })
            .collect();
        let mut insert = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {staging}",
            names.join(", "),
            casts.join(", ")
        );
        if run.mode == ReplicationMode::Incremental
            && let Some(key) = &self.config.key
        {
            let updates: Vec<String> = staged
                .iter()
                .filter(|c| c.name != *key)
                .map(|c| format!("{n} = EXCLUDED.{n}", n = ident(&c.name)))
                .collect();
            insert.push_str(&format!(" ON CONFLICT ({})", ident(key)));
            if updates.is_empty() {
                insert.push_str(" DO NOTHING");
            } else {
                insert.push_str(&format!(" DO UPDATE SET {}", updates.join(", ")));
            }
        }
        let mut steps = vec!["BEGIN".to_owned()];
        let made = ddl.iter().any(|d| d.starts_with("CREATE"));
        steps.extend(ddl);
        if !made && run.mode == ReplicationMode::FullTable {
            steps.push(format!("TRUNCATE {table}"));
        }
        steps.push(insert);
        steps.push(format!("DROP TABLE {staging}"));
        steps.extend(forget);
        steps.push("COMMIT".to_owned());
        let outcome = control.batch_execute(&steps.join("; ")).await;
        if let Err(e) = outcome {
            let _ = control.batch_execute("ROLLBACK").await;
            return Err(Error::Query {
                what: format!("publishing the run into {table}"),
                source: e,
            });
        }
        Ok(())
    }

    /// Ends the run: its staging and checkpoints dropped unless `keep`, the lock released.
    async fn finish(&mut self, keep: bool) {
        if let Some(run) = self.run.take() {
            if !keep {
                let staging = qualified(&run.shared.schema, &run.shared.staging);
                let mut steps = vec![format!("DROP TABLE IF EXISTS {staging}")];
                if let Some((ckpt, run_id)) = &run.shared.checkpoints {
                    steps.push(format!(
                        "DELETE FROM {ckpt} WHERE run_id = {}",
                        literal(run_id)
                    ));
                }
                let _ = run.control.batch_execute(&steps.join("; ")).await;
            }
            let _ = run
                .control
                .batch_execute("SELECT pg_advisory_unlock_all()")
                .await;
        }
    }
}

impl fastlane_plugin_support::runtime::AsyncTarget for PostgresTarget {
    type Error = Error;

    async fn get_offset(&self) -> Result<Option<Value>> {
        let Some(key) = &self.config.key else {
            return Ok(None);
        };
        let client = connect(&self.connection).await?;
        if self.target_columns(&client).await?.is_none() {
            return Ok(None);
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT max({k})::text, pg_typeof(max({k}))::text FROM {}",
                    self.table(),
                    k = ident(key)
                ),
                &[],
            )
            .await
            .what(|| "reading the target's offset".into())?;
        let (value, ty): (Option<String>, String) = (row.get(0), row.get(1));
        Ok(value.map(|v| match ty.as_str() {
            "smallint" | "integer" | "bigint" => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(v)),
            _ => Value::String(v),
        }))
    }

    async fn open(&mut self, context: &WriteContext) -> Result<()> {
        self.finish(false).await;
        self.open_run(context).await
    }

    fn writer(&self, _index: usize) -> Result<Box<dyn Writer>, PluginError> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("a writer before open"))?;
        Ok(Box::new(RUNTIME.on(PostgresWriter {
            shared: run.shared.clone(),
            client: None,
        })))
    }

    async fn commit(&mut self) -> Result<()> {
        let published = self.publish().await;
        // A checkpointed run whose publication failed keeps its staging: the host suspends it,
        // and the next run resumes it instead of loading everything again.
        let keep = published.is_err()
            && self
                .run
                .as_ref()
                .is_some_and(|r| r.shared.checkpoints.is_some());
        self.finish(keep).await;
        published
    }

    async fn abort(&mut self) -> Result<()> {
        self.finish(false).await;
        Ok(())
    }

    async fn resumable_runs(&self) -> Result<Vec<StagedRun>, PluginError> {
        let client = connect(&self.connection).await?;
        let ckpt = self.checkpoint_table();
        if !self.exists(&client, &ckpt).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT p.run_id, p.body, EXISTS (SELECT 1 FROM {ckpt} c \
                     WHERE c.run_id = p.run_id AND c.id = 'columns') \
                     FROM {ckpt} p WHERE p.id = 'plan' ORDER BY p.run_id DESC"
                ),
                &[],
            )
            .await
            .what(|| "reading the checkpointed runs".into())?;
        let mut runs = Vec::new();
        for row in rows {
            let (run_id, plan, staged): (String, String, bool) =
                (row.get(0), row.get(1), row.get(2));
            let staging = qualified(&self.config.schema, &self.staging_name(&run_id));
            // A run that staged rows keeps its staging table; one that staged none has none.
            if staged && !self.exists(&client, &staging).await? {
                continue;
            }
            if let Ok(plan) = serde_json::from_str(&plan) {
                runs.push(StagedRun { run_id, plan });
            }
        }
        Ok(runs)
    }

    async fn checkpoints(&self) -> Result<Vec<String>, PluginError> {
        Ok(self
            .run
            .as_ref()
            .map(|r| r.tags.clone())
            .unwrap_or_default())
    }

    async fn staged_rows(&self) -> Result<u64, PluginError> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("staged_rows before open"))?;
        let staging = qualified(&run.shared.schema, &run.shared.staging);
        if !self.exists(&run.control, &staging).await? {
            return Ok(0);
        }
        let n: i64 = run
            .control
            .query_one(&format!("SELECT count(*) FROM {staging}"), &[])
            .await
            .what(|| "counting the staged rows".into())?
            .get(0);
        Ok(n as u64)
    }

    async fn suspend(&mut self) -> Result<(), PluginError> {
        self.finish(true).await;
        Ok(())
    }

    /// The checksum of the staged rows, read back from the staging table and hashed as the
    /// Arrow types the run wrote them as.
    async fn staged_checksum(&self) -> Result<Checksum, PluginError> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("staged_checksum before open"))?;
        let Some(staged) = run.shared.columns.lock().await.clone() else {
            return Ok(Checksum::default());
        };
        let written: Option<Vec<Field>> = staged
            .iter()
            .map(|c| {
                let t: DataType = c.arrow.as_deref()?.parse().ok()?;
                Some(Field::new(&c.name, t, true))
            })
            .collect();
        let Some(written) = written else {
            return Err(PluginError::unsupported(
                "this staging was made before checksums: the types its columns were written \
                 as are unknown",
            ));
        };
        let empty = RecordBatch::new_empty(Arc::new(Schema::new(written)));
        if let Err(e) = Checksum::of_batch(&empty) {
            return Err(PluginError::unsupported(e.to_string()));
        }
        Ok(staged_checksum(&run.control, &run.shared, &staged).await?)
    }
}

/// The checksum of the staging table's rows: each column decoded as its staging type, then
/// cast back to the Arrow type it was written as.
async fn staged_checksum(
    client: &Client,
    shared: &Shared,
    staged: &[StagedColumn],
) -> Result<Checksum> {
    let staging = qualified(&shared.schema, &shared.staging);
    let oid: Option<i64> = client
        .query_one("SELECT to_regclass($1)::oid::int8", &[&staging])
        .await
        .what(|| format!("looking up {staging}"))?
        .get(0);
    let Some(oid) = oid else {
        return Ok(Checksum::default());
    };
    let written: Vec<DataType> = staged
        .iter()
        .map(|c| c.arrow.as_deref().and_then(|t| t.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::Config(
                "this staging was made before checksums: the types its columns were written \
                 as are unknown"
                    .into(),
            )
        })?;
    let described = crate::source::described(client, oid as u32).await?;
    let mut columns = Vec::with_capacity(staged.len());
    for c in staged {
        let Some((name, kind, pg_type, elem)) = described.iter().find(|d| d.0 == c.name) else {
            return Err(Error::NotFound(format!(
                "the staging table {staging} has no column `{}`",
                c.name
            )));
        };
        let (kind, array) = match (kind, elem) {
            (Some(k), _) => (*k, false),
            (None, Some(e)) => (*e, true),
            (None, None) => {
                return Err(Error::Config(format!(
                    "the staging column `{name}` ({pg_type}) cannot be read back"
                )));
            }
        };
        columns.push(Column {
            name: name.clone(),
            kind,
            pg_type: pg_type.clone(),
            as_text: false,
            array,
        });
    }
    let schema = Arc::new(Schema::new(
        staged
            .iter()
            .zip(&written)
            .map(|(c, t)| Field::new(&c.name, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let list: Vec<String> = staged.iter().map(|c| ident(&c.name)).collect();
    let sql = format!(
        "COPY (SELECT {} FROM {staging}) TO STDOUT (FORMAT binary)",
        list.join(", ")
    );
    let mut sum = Checksum::default();
    copy_batches(
        client,
        &sql,
        &columns,
        SpecialValues::Error,
        shared.batch_size,
        |batch| {
            let arrays = batch
                .columns()
                .iter()
                .zip(&written)
                .zip(staged)
                .map(|((a, t), c)| {
                    if a.data_type() == t || !arrow_cast::can_cast_types(a.data_type(), t) {
                        return Ok(a.clone());
                    }
                    arrow_cast::cast(a, t).map_err(|e| {
                        Error::Data(format!(
                            "the staged column `{}` read back as {} cannot be compared as {t}: {e}",
                            c.name,
                            a.data_type()
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let batch = RecordBatch::try_new_with_options(
                schema.clone(),
                arrays,
                &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|e| Error::Data(format!("cannot rebuild a staged batch: {e}")))?;
            sum.add(Checksum::of_batch(&batch).map_err(|e| Error::Data(e.to_string()))?);
            Ok(())
        },
    )
    .await?;
    Ok(sum)
}

/// What to do when the data (`written` columns) has columns the table (`existing`) lacks, as
/// `on_schema_change` says (names compare exactly, as PostgreSQL's quoted names do).
fn schema_step(
    mode: ReplicationMode,
    on_change: OnSchemaChange,
    existing: &[String],
    written: &[String],
    table: &str,
) -> Result<SchemaStep> {
    fastlane_plugin_support::schema::schema_step(
        mode,
        on_change,
        existing,
        written,
        table,
        |a, b| a == b,
    )
    .map_err(Error::Config)
}

/// Whether `ty` (a type as `format_type` shows it) names a type this server has.
async fn type_exists(client: &Client, ty: &str) -> bool {
    client
        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&ty])
        .await
        .is_ok_and(|r| r.get(0))
}

/// One writer: its own connection, a COPY per batch into the staging table.
struct PostgresWriter {
    shared: Arc<Shared>,
    client: Option<Client>,
}

/// The staging's columns, making the staging table from the first batch's schema.
async fn staging_columns(
    shared: &Shared,
    client: &Client,
    batch: &RecordBatch,
) -> Result<StagedColumns> {
    let mut columns = shared.columns.lock().await;
    if let Some(c) = columns.as_ref() {
        return Ok(c.clone());
    }
    let schema = batch.schema();
    let mut made = Vec::new();
    let mut refused = Vec::new();
    for f in schema.fields() {
        match staged(f) {
            Some(s) => made.push(StagedColumn {
                name: f.name().clone(),
                pg_type: s.pg_type,
                hint: f.metadata().get(crate::columns::PG_TYPE_KEY).cloned(),
                arrow: Some(f.data_type().to_string()),
            }),
            None => refused.push(format!("`{}` ({})", f.name(), f.data_type())),
        }
    }
    if !refused.is_empty() {
        return Err(Error::Config(format!(
            "columns of types PostgreSQL cannot hold exactly: {}",
            refused.join(", ")
        )));
    }
    // Refused before any row is loaded; checked again at publication (the table may change).
    if let Some(existing) = &shared.existing {
        let written: Vec<String> = made.iter().map(|c| c.name.clone()).collect();
        schema_step(
            shared.mode,
            shared.on_change,
            existing,
            &written,
            &shared.table,
        )?;
    }
    let defs: Vec<String> = made
        .iter()
        .map(|c| format!("{} {}", ident(&c.name), c.pg_type))
        .collect();
    let staging = qualified(&shared.schema, &shared.staging);
    client
        .batch_execute(&format!(
            "CREATE UNLOGGED TABLE IF NOT EXISTS {staging} ({})",
            defs.join(", ")
        ))
        .await
        .what(|| format!("creating the staging table {staging}"))?;
    if let Some((ckpt, run_id)) = &shared.checkpoints {
        let body = serde_json::to_string(&made).unwrap_or_default();
        client
            .execute(
                &format!("INSERT INTO {ckpt} VALUES ($1, 'columns', $2) ON CONFLICT DO NOTHING"),
                &[run_id, &body],
            )
            .await
            .what(|| "recording the staging's columns".into())?;
    }
    *columns = Some(made.clone());
    Ok(made)
}

impl PostgresWriter {
    /// Loads `batch` into the staging table; with `tag`, in one transaction with the tag.
    async fn load(&mut self, batch: RecordBatch, tag: Option<&str>) -> Result<()> {
        if self.client.is_none() {
            self.client = Some(connect(&self.shared.connection).await?);
        }
        let client = self.client.as_mut().expect("connected");
        if batch.num_rows() == 0 {
            // Nothing to stage (the host may send a batch without rows, or even columns, to
            // keep a tag): only the tag is recorded.
            if let (Some(tag), Some((ckpt, run_id))) = (tag, &self.shared.checkpoints) {
                client
                    .execute(
                        &format!("INSERT INTO {ckpt} VALUES ($1, $2, '') ON CONFLICT DO NOTHING"),
                        &[run_id, &format!("t:{tag}")],
                    )
                    .await
                    .what(|| "recording a checkpoint".into())?;
            }
            return Ok(());
        }
        let columns = staging_columns(&self.shared, client, &batch).await?;
        let schema = batch.schema();
        let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        if names.len() != columns.len() || names.iter().zip(&columns).any(|(a, c)| **a != c.name) {
            return Err(Error::Data(format!(
                "a batch with the columns {names:?}, where the run's first batch had {:?}",
                columns.iter().map(|c| &c.name).collect::<Vec<_>>()
            )));
        }
        let encoders: Vec<Staged> = schema
            .fields()
            .iter()
            .map(|f| staged(f).expect("checked when the staging was made"))
            .collect();
        let list: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
        let staging = qualified(&self.shared.schema, &self.shared.staging);
        let copy = format!(
            "COPY {staging} ({}) FROM STDIN (FORMAT binary)",
            list.join(", ")
        );
        let tx = client
            .transaction()
            .await
            .what(|| "starting a load into the staging table".into())?;
        let step = self.shared.batch_size.max(1);
        let mut at = 0;
        while at < batch.num_rows() {
            let part = batch.slice(at, step.min(batch.num_rows() - at));
            at += part.num_rows();
            let data = copy_data(&part, &encoders)?;
            let sink = tx
                .copy_in::<_, bytes::Bytes>(&copy)
                .await
                .what(|| "starting the COPY into the staging table".into())?;
            let mut sink = std::pin::pin!(sink);
            sink.send(bytes::Bytes::from(data))
                .await
                .what(|| "sending rows to the staging table".into())?;
            sink.as_mut()
                .finish()
                .await
                .what(|| "loading rows into the staging table".into())?;
        }
        if let (Some(tag), Some((ckpt, run_id))) = (tag, &self.shared.checkpoints) {
            tx.execute(
                &format!("INSERT INTO {ckpt} VALUES ($1, $2, '') ON CONFLICT DO NOTHING"),
                &[run_id, &format!("t:{tag}")],
            )
            .await
            .what(|| "recording a checkpoint".into())?;
        }
        tx.commit()
            .await
            .what(|| "committing a load into the staging table".into())
    }
}

impl fastlane_plugin_support::runtime::AsyncWriter for PostgresWriter {
    type Error = Error;

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.load(batch, None).await
    }

    async fn close(&mut self) -> Result<()> {
        self.client = None;
        Ok(())
    }

    async fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<(), PluginError> {
        Ok(self.load(batch, Some(tag)).await?)
    }
}
