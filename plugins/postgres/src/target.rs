//! The `postgres` target: every writer loads its batches with binary `COPY … FROM STDIN` into
//! one staging table; `commit` publishes the staging in one transaction (FULL_TABLE: the
//! table's rows replaced, the table itself with its indexes, constraints, grants, triggers and
//! comments kept; INCREMENTAL: rows appended, or upserted on the key); `abort` drops it, so a
//! failed run leaves the table as it was.

use std::sync::Arc;

use arrow_array::RecordBatch;
use fastlane_plugin_api::{PluginError, ReplicationMode, WriteContext, Writer};
use futures_util::SinkExt;
use serde_json::Value;
use tokio_postgres::Client;

use crate::config::PostgresTargetConfig;
use crate::conn::{RUNTIME, connect, ident, qualified};
use crate::encode::{Staged, copy_data, staged};
use crate::error::{Context, Error, Result};

/// The staging's columns: name, how it is staged, and the PostgreSQL type a `postgres` source
/// read it as (the type a new table gets).
type StagedColumns = Vec<(String, Staged, Option<String>)>;

/// What the writers of a run share: where to connect, the staging table, and its columns once
/// the first batch has made it.
struct Shared {
    connection: tokio_postgres::Config,
    schema: String,
    staging: String,
    batch_size: usize,
    columns: tokio::sync::Mutex<Option<StagedColumns>>,
}

/// A run in progress: the connection holding the table's lock, and the shared state.
struct Run {
    control: Client,
    mode: ReplicationMode,
    shared: Arc<Shared>,
}

/// The `postgres` target.
pub struct PostgresTarget {
    config: PostgresTargetConfig,
    connection: tokio_postgres::Config,
    run: Option<Run>,
}

impl PostgresTarget {
    /// A target for `config`, checked without connecting.
    pub fn new(config: PostgresTargetConfig) -> Result<Self, PluginError> {
        config
            .validate()
            .map_err(|problems| PluginError::config(problems.join("; ")))?;
        let connection = config.connection();
        Ok(Self {
            config,
            connection,
            run: None,
        })
    }

    fn table(&self) -> String {
        qualified(&self.config.schema, &self.config.table)
    }

    /// The prefix of this table's staging tables (a short hash of its name).
    fn staging_prefix(&self) -> String {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.table().bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        format!("_fastlane_stage_{h:08x}_")
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
        // Staging tables of earlier runs that died (this run holds the table's lock).
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
            control
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {}",
                    qualified(&self.config.schema, &name)
                ))
                .await
                .what(|| format!("dropping the stale staging table {name}"))?;
        }
        let run: String = context
            .run_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let staging: String = format!("{prefix}{run}").chars().take(63).collect();
        self.run = Some(Run {
            control,
            mode: context.mode,
            shared: Arc::new(Shared {
                connection: self.connection.clone(),
                schema: self.config.schema.clone(),
                staging,
                batch_size: self.config.batch_size,
                columns: tokio::sync::Mutex::new(None),
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
        let Some(staged) = staged else {
            // Nothing was written.
            if run.mode == ReplicationMode::FullTable && target.is_some() {
                control
                    .batch_execute(&format!("TRUNCATE {table}"))
                    .await
                    .what(|| format!("emptying {table}"))?;
            }
            return Ok(());
        };
        let staging = qualified(&run.shared.schema, &run.shared.staging);
        let (target, created) = match target {
            Some(t) => (t, None),
            None => {
                let defs: Vec<String> = staged
                    .iter()
                    .map(|(name, s, hint)| {
                        format!("{} {}", ident(name), hint.as_deref().unwrap_or(&s.pg_type))
                    })
                    .collect();
                let key = self
                    .config
                    .key
                    .as_ref()
                    .map(|k| format!(", PRIMARY KEY ({})", ident(k)))
                    .unwrap_or_default();
                let sql = format!("CREATE TABLE {table} ({}{key})", defs.join(", "));
                (
                    staged
                        .iter()
                        .map(|(n, s, hint)| (n.clone(), hint.clone().unwrap_or(s.pg_type.clone())))
                        .collect(),
                    Some(sql),
                )
            }
        };
        let missing: Vec<String> = staged
            .iter()
            .filter(|(n, ..)| !target.iter().any(|(t, _)| t == n))
            .map(|(n, ..)| format!("`{n}`"))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "{table} has no column {}: add it to the table, or leave it out of the run",
                missing.join(", ")
            )));
        }
        let names: Vec<String> = staged.iter().map(|(n, ..)| ident(n)).collect();
        // The server's assignment casts check what they convert (a text too long for a
        // varchar, a bigint too large for an integer); only text staged for a type that takes
        // no assignment from text (jsonb, inet, enums, …) is cast explicitly. An explicit cast
        // to a string type would cut a value short in silence, so none is made.
        let casts: Vec<String> = staged
            .iter()
            .map(|(n, s, _)| {
                let ty = &target.iter().find(|(t, _)| t == n).expect("checked").1;
                let stringy = ty == "text" || ty.starts_with("character");
                if s.pg_type.starts_with("text") && !stringy && ty != &s.pg_type {
                    format!("CAST({} AS {ty})", ident(n))
                } else {
                    ident(n)
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
                .filter(|(n, ..)| n != key)
                .map(|(n, ..)| format!("{c} = EXCLUDED.{c}", c = ident(n)))
                .collect();
            insert.push_str(&format!(" ON CONFLICT ({})", ident(key)));
            if updates.is_empty() {
                insert.push_str(" DO NOTHING");
            } else {
                insert.push_str(&format!(" DO UPDATE SET {}", updates.join(", ")));
            }
        }
        let mut steps = vec!["BEGIN".to_owned()];
        if let Some(create) = created {
            steps.push(create);
        } else if run.mode == ReplicationMode::FullTable {
            steps.push(format!("TRUNCATE {table}"));
        }
        steps.push(insert);
        steps.push(format!("DROP TABLE {staging}"));
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

    async fn finish(&mut self) {
        if let Some(run) = self.run.take() {
            let staging = qualified(&run.shared.schema, &run.shared.staging);
            let _ = run
                .control
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {staging}; SELECT pg_advisory_unlock_all()"
                ))
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
        self.finish().await;
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
        self.finish().await;
        published
    }

    async fn abort(&mut self) -> Result<()> {
        self.finish().await;
        Ok(())
    }
}

/// One writer: its own connection, a COPY per batch into the staging table.
struct PostgresWriter {
    shared: Arc<Shared>,
    client: Option<Client>,
}

impl PostgresWriter {
    /// The staging's columns, making the staging table from the first batch's schema.
    async fn columns(&self, client: &Client, batch: &RecordBatch) -> Result<StagedColumns> {
        let mut columns = self.shared.columns.lock().await;
        if let Some(c) = columns.as_ref() {
            return Ok(c.clone());
        }
        let schema = batch.schema();
        let mut made = Vec::new();
        let mut refused = Vec::new();
        for f in schema.fields() {
            match staged(f) {
                Some(s) => made.push((
                    f.name().clone(),
                    s,
                    f.metadata().get(crate::columns::PG_TYPE_KEY).cloned(),
                )),
                None => refused.push(format!("`{}` ({})", f.name(), f.data_type())),
            }
        }
        if !refused.is_empty() {
            return Err(Error::Config(format!(
                "columns of types PostgreSQL cannot hold exactly: {}",
                refused.join(", ")
            )));
        }
        let defs: Vec<String> = made
            .iter()
            .map(|(n, s, _)| format!("{} {}", ident(n), s.pg_type))
            .collect();
        let staging = qualified(&self.shared.schema, &self.shared.staging);
        client
            .batch_execute(&format!(
                "CREATE UNLOGGED TABLE {staging} ({})",
                defs.join(", ")
            ))
            .await
            .what(|| format!("creating the staging table {staging}"))?;
        *columns = Some(made.clone());
        Ok(made)
    }

    async fn load(&mut self, batch: RecordBatch) -> Result<()> {
        if self.client.is_none() {
            self.client = Some(connect(&self.shared.connection).await?);
        }
        let client = self.client.as_ref().expect("connected");
        let columns = self.columns(client, &batch).await?;
        let names: Vec<&String> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name())
            .collect();
        if names.len() != columns.len() || names.iter().zip(&columns).any(|(a, (b, ..))| *a != b) {
            return Err(Error::Data(format!(
                "a batch with the columns {names:?}, where the run's first batch had {:?}",
                columns.iter().map(|(n, ..)| n).collect::<Vec<_>>()
            )));
        }
        let staged: Vec<Staged> = columns.iter().map(|(_, s, _)| s.clone()).collect();
        let list: Vec<String> = columns.iter().map(|(n, ..)| ident(n)).collect();
        let staging = qualified(&self.shared.schema, &self.shared.staging);
        let step = self.shared.batch_size.max(1);
        let mut at = 0;
        while at < batch.num_rows() || (at == 0 && batch.num_rows() == 0) {
            let part = batch.slice(at, step.min(batch.num_rows() - at));
            at += part.num_rows().max(1);
            if part.num_rows() == 0 {
                break;
            }
            let data = copy_data(&part, &staged)?;
            let sink = client
                .copy_in::<_, bytes::Bytes>(&format!(
                    "COPY {staging} ({}) FROM STDIN (FORMAT binary)",
                    list.join(", ")
                ))
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
        Ok(())
    }
}

impl fastlane_plugin_support::runtime::AsyncWriter for PostgresWriter {
    type Error = Error;

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.load(batch).await
    }

    async fn close(&mut self) -> Result<()> {
        self.client = None;
        Ok(())
    }
}
