//! The `postgres` source: a table (ordered by its key, split into key ranges) or a query, read
//! with binary `COPY (SELECT …) TO STDOUT` straight into Arrow builders.

use arrow_array::RecordBatch;
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginError, ReadContext, ReplicationMode,
};
use fastlane_plugin_support::keys::read_after;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Client;

use crate::columns::{Column, Kind, Rows};
use crate::config::{PostgresSourceConfig, SpecialValues, Unsupported};
use crate::conn::{Connection, RUNTIME, connect, ident, literal, qualified};
use crate::copy::{Parser, copy_batches};
use crate::error::{Context, Error, Result, is_lost};

/// What every partition of a run reads: the columns and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    /// The columns read, in order.
    columns: Vec<Column>,
    /// What follows FROM: a quoted table, or `(query) AS q`.
    from: String,
    /// The key the rows are ordered by (tables only): its first column.
    key: Option<String>,
    /// The other columns of a composite key (its primary key), in order.
    #[serde(default)]
    more_keys: Vec<String>,
    /// Rows with a key above this literal only (SQL text), when the run reads after an offset.
    after: Option<String>,
    /// Whether a unique index covers the key alone (a read can then continue after a key).
    #[serde(default)]
    key_unique: bool,
    /// The snapshot every partition reads (exported by the planning connection), so that a
    /// table under writes is read as of one moment.
    #[serde(default)]
    snapshot: Option<String>,
}

impl Plan {
    /// The key as SQL: its column, or the row of a composite key's columns.
    fn key_sql(&self) -> Option<String> {
        let first = self.key.as_ref()?;
        if self.more_keys.is_empty() {
            return Some(ident(first));
        }
        let all: Vec<String> = std::iter::once(first)
            .chain(&self.more_keys)
            .map(|k| ident(k))
            .collect();
        Some(format!("({})", all.join(", ")))
    }

    /// The key's columns, in order.
    fn key_columns(&self) -> impl Iterator<Item = &String> {
        self.key.iter().chain(&self.more_keys)
    }
}

/// One partition's part of the table: `from <= key < below` (SQL literals, rows of literals for
/// a composite key, unbounded where `None`), or for a table without a key, the rows in blocks
/// `from_block..below_block`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Range {
    from: Option<String>,
    below: Option<String>,
    #[serde(default)]
    from_block: Option<u32>,
    #[serde(default)]
    below_block: Option<u32>,
}

/// The `postgres` source.
pub struct PostgresSource {
    config: PostgresSourceConfig,
    connection: Connection,
    /// The planning connection, whose open transaction keeps the run's snapshot importable
    /// until the source is dropped.
    exporter: tokio::sync::Mutex<Option<Client>>,
    /// Whether reads have positions (asked once).
    resumable: std::sync::OnceLock<bool>,
}

impl PostgresSource {
    /// A source for `config`, checked without connecting.
    pub fn new(config: PostgresSourceConfig) -> Result<Self, PluginError> {
        config
            .validate()
            .map_err(|problems| PluginError::config(problems.join("; ")))?;
        let connection = config.connection().map_err(PluginError::config)?;
        Ok(Self {
            config,
            connection,
            exporter: tokio::sync::Mutex::new(None),
            resumable: std::sync::OnceLock::new(),
        })
    }

    /// The columns of the configured table or query, as they will be read.
    async fn columns(&self, client: &Client, relation: Option<u32>) -> Result<Vec<Column>> {
        // (name, kind, type as shown, element kind of a one-dimensional array type)
        let described: Vec<Described> = match relation {
            Some(oid) => described(client, oid).await?,
            None => {
                let query = self.config.query.as_deref().unwrap_or_default();
                let statement = client
                    .prepare(query)
                    .await
                    .what(|| "preparing `query`".into())?;
                statement
                    .columns()
                    .iter()
                    .map(|c| {
                        let t = c.type_();
                        let typtype = |t: &tokio_postgres::types::Type| match t.kind() {
                            tokio_postgres::types::Kind::Enum(_) => "e",
                            _ => "b",
                        };
                        let elem = match t.kind() {
                            tokio_postgres::types::Kind::Array(e) => {
                                Kind::of(e.oid(), -1, typtype(e))
                            }
                            _ => None,
                        };
                        (
                            c.name().to_owned(),
                            Kind::of(t.oid(), -1, typtype(t)),
                            t.name().to_owned(),
                            elem,
                        )
                    })
                    .collect()
            }
        };
        let wanted = self.config.columns.as_ref();
        if let Some(wanted) = wanted {
            let missing: Vec<&String> = wanted
                .iter()
                .filter(|w| !described.iter().any(|(n, ..)| n == *w))
                .collect();
            if !missing.is_empty() {
                return Err(Error::NotFound(format!(
                    "`columns` names columns the table does not have: {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut columns = Vec::new();
        let mut unsupported = Vec::new();
        for (name, kind, pg_type, elem) in described {
            if wanted.is_some_and(|w| !w.contains(&name)) {
                continue;
            }
            let (kind, as_text, array) = match (kind, elem, self.config.unsupported) {
                (Some(k), _, _) => (k, false, false),
                (None, Some(e), _) => (e, false, true),
                (None, None, Unsupported::Text) => (Kind::Text, true, false),
                (None, None, Unsupported::Error) => {
                    unsupported.push(format!("`{name}` ({pg_type})"));
                    continue;
                }
            };
            columns.push(Column {
                name,
                kind,
                pg_type,
                as_text,
                array,
            });
        }
        if !unsupported.is_empty() {
            return Err(Error::Config(format!(
                "columns of types without an exact Arrow form: {}; leave them out with \
                 `columns`, or read them as text with `unsupported: \"text\"`",
                unsupported.join(", ")
            )));
        }
        Ok(columns)
    }

    /// The table's oid, or an error naming it.
    async fn relation(&self, client: &Client, table: &str) -> Result<u32> {
        let name = qualified(&self.config.schema, table);
        let row = client
            .query_one("SELECT to_regclass($1)::oid::int8", &[&name])
            .await
            .what(|| format!("looking up {name}"))?;
        match row.get::<_, Option<i64>>(0) {
            Some(oid) => Ok(oid as u32),
            None => Err(Error::NotFound(format!(
                "table `{table}` does not exist in schema `{}`",
                self.config.schema
            ))),
        }
    }

    /// The key's columns: the configured one, else the table's primary key (none without
    /// either).
    async fn key(&self, client: &Client, relation: u32, columns: &[Column]) -> Result<Vec<String>> {
        let key = match &self.config.replication_key {
            Some(k) => vec![k.clone()],
            None => client
                .query(
                    &format!(
                        "SELECT a.attname::text FROM pg_index i, \
                         unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                         JOIN pg_attribute a ON a.attnum = k.attnum \
                         WHERE i.indrelid = {relation} AND a.attrelid = {relation} \
                         AND i.indisprimary AND k.n <= i.indnkeyatts ORDER BY k.n"
                    ),
                    &[],
                )
                .await
                .what(|| "reading the table's primary key".into())?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        for k in &key {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(Error::NotFound(format!(
                    "the key `{k}` is not a column read from the table"
                )));
            }
        }
        Ok(key)
    }

    async fn plan(&self, client: &Client, context: &ReadContext) -> Result<(Plan, Option<Kind>)> {
        let after = read_after(
            context.mode,
            context.start_offset.as_ref(),
            self.config.offset.as_ref(),
        );
        let Some(table) = &self.config.table else {
            if context.mode == ReplicationMode::Incremental {
                return Err(Error::Config(
                    "INCREMENTAL runs need `table` (and a key); a `query` is read whole".into(),
                ));
            }
            let columns = self.columns(client, None).await?;
            let query = self.config.query.as_deref().unwrap_or_default();
            return Ok((
                Plan {
                    columns,
                    from: format!("({}) AS q", query.trim().trim_end_matches(';')),
                    key: None,
                    more_keys: Vec::new(),
                    after: None,
                    key_unique: false,
                    snapshot: None,
                },
                None,
            ));
        };
        let relation = self.relation(client, table).await?;
        let columns = self.columns(client, Some(relation)).await?;
        let keys = self.key(client, relation, &columns).await?;
        if keys.len() != 1 && context.mode == ReplicationMode::Incremental {
            return Err(Error::Config(format!(
                "INCREMENTAL runs need a key: table `{table}` has no single-column primary key, \
                 so give `replication_key`"
            )));
        }
        let from = qualified(&self.config.schema, table);
        if let [k] = keys.as_slice() {
            // (A primary key's columns are never NULL.)
            let nulls: bool = client
                .query_one(
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM {from} WHERE {} IS NULL)",
                        ident(k)
                    ),
                    &[],
                )
                .await
                .what(|| "looking for NULL keys".into())?
                .get(0);
            if nulls {
                return Err(Error::Data(format!(
                    "the key `{k}` holds NULLs, which no key range reads: choose another key"
                )));
            }
        }
        let after = match (keys.len(), after) {
            (1, Some(v)) => Some(offset_literal(&v)?),
            (_, Some(_)) => {
                return Err(Error::Config(
                    "an offset needs a single-column key (`replication_key`)".to_owned(),
                ));
            }
            (_, None) => None,
        };
        let kind = match keys.as_slice() {
            [k] => columns
                .iter()
                .find(|c| &c.name == k)
                .filter(|c| !c.array && !c.as_text)
                .map(|c| c.kind),
            _ => None,
        };
        let key_unique = match keys.as_slice() {
            [] => false,
            [k] => key_unique(client, relation, k).await?,
            // The primary key.
            _ => true,
        };
        let mut keys = keys.into_iter();
        Ok((
            Plan {
                columns,
                from,
                key: keys.next(),
                more_keys: keys.collect(),
                after,
                key_unique,
                snapshot: None,
            },
            kind,
        ))
    }

    /// Contiguous ranges of the key (integer keys between their smallest and largest values,
    /// other keys between quantiles of a sample), or of the table's blocks when it has no key.
    async fn split(
        &self,
        client: &Client,
        plan: &Plan,
        kind: Option<Kind>,
        parts: usize,
    ) -> Result<Vec<Range>> {
        let Some(key) = &plan.key else {
            return self.split_blocks(client, plan, parts).await;
        };
        if !plan.more_keys.is_empty() {
            return self.split_rows(client, plan, parts).await;
        }
        let k = ident(key);
        let whole = conditions(plan, &Range::default(), None, None);
        if matches!(kind, Some(Kind::Int2 | Kind::Int4 | Kind::Int8)) {
            let row = client
                .query_one(
                    &format!(
                        "SELECT min({k})::int8, max({k})::int8 FROM {}{whole}",
                        plan.from
                    ),
                    &[],
                )
                .await
                .what(|| "reading the key's range".into())?;
            let (Some(lo), Some(hi)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
            else {
                return Ok(vec![Range::default()]);
            };
            return Ok(ranges(lo, hi, parts));
        }
        // Quantiles of the key over a sample of about 200,000 rows.
        let sample = self.sample_clause(client, plan).await?;
        let fractions: Vec<String> = (1..parts)
            .map(|i| format!("{}", i as f64 / parts as f64))
            .collect();
        let row = client
            .query_one(
                &format!(
                    "SELECT (percentile_disc(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY {k}))::text[] \
                     FROM {}{sample}{whole}",
                    fractions.join(", "),
                    plan.from
                ),
                &[],
            )
            .await
            .what(|| "sampling the key's quantiles".into())?;
        let mut bounds: Vec<String> = row
            .get::<_, Option<Vec<Option<String>>>>(0)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        bounds.dedup();
        Ok(between(bounds.into_iter().map(|b| literal(&b)).collect()))
    }

    /// Ranges of a composite key: rows of its columns' values that cut a sample of about
    /// 200,000 rows into `parts` equal buckets.
    async fn split_rows(&self, client: &Client, plan: &Plan, parts: usize) -> Result<Vec<Range>> {
        let whole = conditions(plan, &Range::default(), None, None);
        let columns: Vec<String> = plan.key_columns().map(|k| ident(k)).collect();
        let list = columns.join(", ");
        let texts: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
        let sample = self.sample_clause(client, plan).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT DISTINCT ON (bucket) ARRAY[{}] FROM \
                     (SELECT ntile({parts}) OVER (ORDER BY {list}) AS bucket, {list} \
                      FROM {}{sample}{whole}) AS s \
                     WHERE bucket > 1 ORDER BY bucket, {list}",
                    texts.join(", "),
                    plan.from
                ),
                &[],
            )
            .await
            .what(|| "sampling the key's quantiles".into())?;
        let mut bounds: Vec<String> = rows
            .iter()
            .map(|r| {
                let values: Vec<String> = r
                    .get::<_, Vec<String>>(0)
                    .iter()
                    .map(|v| literal(v))
                    .collect();
                format!("({})", values.join(", "))
            })
            .collect();
        bounds.dedup();
        Ok(between(bounds))
    }

    /// ` TABLESAMPLE SYSTEM (p)` reading about 200,000 rows of the table (nothing for a
    /// smaller table).
    async fn sample_clause(&self, client: &Client, plan: &Plan) -> Result<String> {
        let tuples: f64 = client
            .query_one(
                &format!(
                    "SELECT reltuples::float8 FROM pg_class WHERE oid = '{}'::regclass",
                    plan.from.replace('\'', "''")
                ),
                &[],
            )
            .await
            .what(|| "reading the table's size".into())?
            .get(0);
        Ok(if tuples > 200_000.0 {
            format!(
                " TABLESAMPLE SYSTEM ({})",
                (200_000.0 / tuples * 100.0).clamp(0.01, 100.0)
            )
        } else {
            String::new()
        })
    }

    /// Ranges of a keyless table's blocks, read by `ctid` (PostgreSQL 14 and later scan them).
    async fn split_blocks(&self, client: &Client, plan: &Plan, parts: usize) -> Result<Vec<Range>> {
        let blocks: i64 = client
            .query_one(
                &format!(
                    "SELECT (pg_relation_size('{}'::regclass) / current_setting('block_size')::int8)::int8",
                    plan.from.replace('\'', "''")
                ),
                &[],
            )
            .await
            .what(|| "reading the table's size".into())?
            .get(0);
        let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
        let parts = (parts as u32).min(blocks).max(1);
        if parts <= 1 {
            return Ok(vec![Range::default()]);
        }
        let width = blocks.div_ceil(parts);
        Ok((0..parts)
            .map(|i| Range {
                from_block: (i > 0).then_some(i * width),
                below_block: (i + 1 < parts).then_some((i + 1) * width),
                ..Range::default()
            })
            .collect())
    }
}

/// A described column: its name, its kind (`None` for a type read only as text), its type as
/// `format_type` shows it, and the kind of its elements when it is an array.
pub(crate) type Described = (String, Option<Kind>, String, Option<Kind>);

/// The columns of the table `oid`, in order (domains as their base types).
pub(crate) async fn described(client: &Client, oid: u32) -> Result<Vec<Described>> {
    Ok(client
        .query(
            &format!(
                "SELECT a.attname::text, \
                 (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END)::int8, \
                 (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)::int4, \
                 (CASE WHEN t.typtype = 'd' THEN b.typtype ELSE t.typtype END)::text, \
                 format_type(a.atttypid, a.atttypmod), \
                 COALESCE(e.oid, 0)::int8, COALESCE(e.typtype::text, '') \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_type b ON b.oid = t.typbasetype \
                 LEFT JOIN pg_type e ON e.oid = \
                   (CASE WHEN t.typtype = 'd' THEN b.typelem ELSE t.typelem END) \
                   AND (CASE WHEN t.typtype = 'd' THEN b.typcategory ELSE t.typcategory END) = 'A' \
                 WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum"
            ),
            &[],
        )
        .await
        .what(|| "reading the table's columns".into())?
        .iter()
        .map(|r| {
            let oid: i64 = r.get(1);
            let typtype: String = r.get(3);
            let elem: i64 = r.get(5);
            let elem_typtype: String = r.get(6);
            (
                r.get::<_, String>(0),
                Kind::of(oid as u32, r.get(2), &typtype),
                r.get::<_, String>(4),
                (elem != 0)
                    .then(|| Kind::of(elem as u32, r.get(2), &elem_typtype))
                    .flatten(),
            )
        })
        .collect())
}

/// Contiguous ranges split at `bounds` (ascending SQL literals); the first and last are
/// open-ended.
fn between(bounds: Vec<String>) -> Vec<Range> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for b in bounds {
        out.push(Range {
            from,
            below: Some(b.clone()),
            ..Range::default()
        });
        from = Some(b);
    }
    out.push(Range {
        from,
        ..Range::default()
    });
    out
}

/// Whether a unique index covers `key` alone (no expression, no predicate).
async fn key_unique(client: &Client, relation: u32, key: &str) -> Result<bool> {
    Ok(client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = {relation} AND i.indisunique AND i.indnkeyatts = 1 \
                 AND i.indpred IS NULL AND a.attname = $1)"
            ),
            &[&key],
        )
        .await
        .what(|| "looking for a unique index on the key".into())?
        .get(0))
}

/// `parts` contiguous ranges over `lo..=hi` (fewer when it holds fewer values); the first
/// and last are open-ended, so that rows outside the range seen at planning are read too.
fn ranges(lo: i64, hi: i64, parts: usize) -> Vec<Range> {
    let span = hi as i128 - lo as i128 + 1;
    let parts = (parts.max(1) as i128).min(span).max(1);
    let width = (span + parts - 1) / parts;
    between(
        (1..parts)
            .map(|i| ((lo as i128 + i * width) as i64).to_string())
            .collect(),
    )
}

/// An offset as SQL: a number as it is, text as a literal the server casts to the key's type.
fn offset_literal(v: &Value) -> Result<String> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(literal(s)),
        Value::Bool(b) => Ok(b.to_string()),
        // A composite key's position: a row of its values.
        Value::Array(items) if !items.is_empty() && !items.iter().any(Value::is_array) => {
            let values: Vec<String> = items.iter().map(offset_literal).collect::<Result<_>>()?;
            Ok(format!("({})", values.join(", ")))
        }
        other => Err(Error::Config(format!(
            "an offset must be a number or a string, not {other}"
        ))),
    }
}

/// ` WHERE …` for the plan's offset, a partition's range, the key a read continues after and
/// the last key it reads (empty when none).
fn conditions(plan: &Plan, range: &Range, cursor: Option<&str>, upto: Option<&str>) -> String {
    let Some(k) = plan.key_sql() else {
        let mut parts = Vec::new();
        if let Some(b) = range.from_block {
            parts.push(format!("ctid >= '({b},0)'::tid"));
        }
        if let Some(b) = range.below_block {
            parts.push(format!("ctid < '({b},0)'::tid"));
        }
        return if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        };
    };
    let mut parts = Vec::new();
    if let Some(after) = &plan.after {
        parts.push(format!("{k} > {after}"));
    }
    if let Some(cursor) = cursor {
        parts.push(format!("{k} > {cursor}"));
    }
    if let Some(upto) = upto {
        parts.push(format!("{k} <= {upto}"));
    }
    if let Some(from) = &range.from {
        parts.push(format!("{k} >= {from}"));
    }
    if let Some(below) = &range.below {
        parts.push(format!("{k} < {below}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// The SELECT of a partition (after `cursor` and up to `upto`, when given), in key order.
fn select(plan: &Plan, range: &Range, cursor: Option<&str>, upto: Option<&str>) -> String {
    let columns: Vec<String> = plan
        .columns
        .iter()
        .map(|c| {
            if c.as_text {
                format!("{}::text AS {}", ident(&c.name), ident(&c.name))
            } else {
                ident(&c.name)
            }
        })
        .collect();
    let list = if columns.is_empty() {
        // A query whose every column was left out still has its rows.
        "1".to_owned()
    } else {
        columns.join(", ")
    };
    let keys: Vec<String> = plan.key_columns().map(|k| ident(k)).collect();
    let order = if keys.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", keys.join(", "))
    };
    format!(
        "SELECT {list} FROM {}{}{order}",
        plan.from,
        conditions(plan, range, cursor, upto)
    )
}

fn spec(plan: &Plan, range: Range) -> Value {
    serde_json::json!({"plan": plan, "range": range})
}

fn from_spec(partition: &Partition) -> Result<(Plan, Range), PluginError> {
    let plan = serde_json::from_value(partition.spec["plan"].clone())
        .map_err(|e| PluginError::internal(format!("a partition's plan: {e}")))?;
    let range = serde_json::from_value(partition.spec["range"].clone())
        .map_err(|e| PluginError::internal(format!("a partition's range: {e}")))?;
    Ok((plan, range))
}

/// A connection for reading `plan`: in the run's snapshot when it has one and the snapshot can
/// still be imported (its exporting transaction is open).
async fn reader(connection: &Connection, plan: &Plan) -> Result<Client> {
    let client = connect(connection).await?;
    if let Some(snapshot) = &plan.snapshot {
        let imported = client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                literal(snapshot)
            ))
            .await;
        if let Err(e) = imported {
            log::warn!(
                "postgres: cannot read in the run's snapshot ({}); this partition reads the \
                 table as it is now",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            );
            client
                .batch_execute("ROLLBACK")
                .await
                .what(|| "ending a failed snapshot import".into())?;
        }
    }
    Ok(client)
}

/// How a pass over a partition ended.
enum Pass {
    /// Every row was read.
    Done,
    /// The host stopped reading.
    Stopped,
}

/// Whether a key column's values are positions a read can continue after (an integer, text
/// or uuid, read as such).
fn gives_positions(c: &Column) -> bool {
    !c.as_text
        && !c.array
        && matches!(
            c.kind,
            Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Text | Kind::Uuid
        )
}

/// One key value as JSON: a number, or text the server casts to the key's type.
fn key_value(kind: Kind, v: &[u8]) -> Option<Value> {
    Some(match (kind, v.len()) {
        (Kind::Int2, 2) => Value::from(i16::from_be_bytes([v[0], v[1]])),
        (Kind::Int4, 4) => Value::from(i32::from_be_bytes(v[..4].try_into().ok()?)),
        (Kind::Int8, 8) => Value::from(i64::from_be_bytes(v[..8].try_into().ok()?)),
        (Kind::Text, _) => Value::String(std::str::from_utf8(v).ok()?.to_owned()),
        (Kind::Uuid, 16) => {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        _ => return None,
    })
}

/// The key of the last row read, as a SQL literal a read can continue after.
#[derive(Default)]
struct Cursor {
    /// Where the key's columns are among the columns, and their kinds, when a read can
    /// continue after them (empty otherwise).
    key: Vec<(usize, Kind)>,
    last: Vec<Vec<u8>>,
    seen: bool,
    /// Where the read starts (a resumed range's `after`), until a row is read.
    start: Option<String>,
}

impl Cursor {
    /// The position after the last row read: its key (a composite key's values in an array),
    /// as JSON.
    fn position(&self) -> Option<Value> {
        if self.key.is_empty() || !self.seen {
            return None;
        }
        let mut values = self
            .key
            .iter()
            .zip(&self.last)
            .map(|((_, kind), v)| key_value(*kind, v))
            .collect::<Option<Vec<Value>>>()?;
        Some(if values.len() == 1 {
            values.remove(0)
        } else {
            Value::Array(values)
        })
    }

    fn new(plan: &Plan) -> Cursor {
        let key: Option<Vec<(usize, Kind)>> = plan
            .key_columns()
            .map(|k| {
                let i = plan.columns.iter().position(|c| &c.name == k)?;
                gives_positions(&plan.columns[i]).then_some((i, plan.columns[i].kind))
            })
            .collect();
        let key = key.filter(|_| plan.key_unique).unwrap_or_default();
        Cursor {
            last: vec![Vec::new(); key.len()],
            key,
            ..Cursor::default()
        }
    }

    fn note(&mut self, fields: &[Option<&[u8]>]) {
        for ((i, _), last) in self.key.iter().zip(&mut self.last) {
            if let Some(Some(v)) = fields.get(*i) {
                last.clear();
                last.extend_from_slice(v);
                self.seen = true;
            }
        }
    }

    fn literal(&self) -> Option<String> {
        if !self.seen {
            return self.start.clone();
        }
        offset_literal(&self.position()?).ok()
    }
}

/// Sends a batch with the position after it, when the read has positions.
async fn send(
    tx: &fastlane_plugin_support::runtime::BatchSender,
    rows: &mut Rows,
    cursor: &Cursor,
) -> Result<bool> {
    let batch = rows.finish()?;
    Ok(match cursor.position() {
        Some(p) => tx.send_at(batch, p).await,
        None => tx.send(batch).await,
    })
}

/// One COPY over the partition, after the cursor's key when it has one.
#[allow(clippy::too_many_arguments)]
async fn copy_pass(
    connection: &Connection,
    plan: &Plan,
    range: &Range,
    upto: Option<&str>,
    cursor: &mut Cursor,
    rows: &mut Rows,
    batch_size: usize,
    tx: &fastlane_plugin_support::runtime::BatchSender,
) -> Result<Pass> {
    let client = reader(connection, plan).await?;
    let after = cursor.literal();
    let sql = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        select(plan, range, after.as_deref(), upto)
    );
    let stream = client
        .copy_out(&sql)
        .await
        .what(|| "starting the COPY".into())?;
    let mut stream = std::pin::pin!(stream);
    let mut parser = Parser::default();
    let width = plan.columns.len();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.what(|| "reading the COPY".into())?;
        parser.feed(&chunk);
        while let Some(row) = parser.next_row()? {
            let fields = row.fields();
            // A query without columns reads `1` for each row.
            let fields = &fields[..width.min(fields.len())];
            rows.push(fields)?;
            cursor.note(fields);
            if rows.len() >= batch_size && !send(tx, rows, cursor).await? {
                return Ok(Pass::Stopped);
            }
        }
    }
    if !parser.ended() {
        return Err(Error::Data(
            "the server's COPY ended before its trailer".to_owned(),
        ));
    }
    Ok(Pass::Done)
}

/// Whether an error means the server went away (worth reconnecting).
fn lost(e: &Error) -> bool {
    match e {
        Error::Connect { .. } => true,
        Error::Query { source, .. } => is_lost(source),
        _ => false,
    }
}

/// Reads one partition into batches of `batch_size` rows. After a lost connection it
/// reconnects with backoff, for up to `retry_secs`, and continues after the last key read
/// (the rows read before are kept, none is read twice) when the key allows it.
#[allow(clippy::too_many_arguments)]
async fn read_partition(
    connection: Connection,
    plan: Plan,
    range: Range,
    part: Part,
    batch_size: usize,
    special: SpecialValues,
    retry_secs: u64,
    tx: fastlane_plugin_support::runtime::BatchSender,
) -> Result<()> {
    let mut rows = Rows::new(&plan.columns, batch_size.min(65_536), special);
    let mut cursor = Cursor::new(&plan);
    cursor.start = part.after;
    let mut lost_at: Option<std::time::Instant> = None;
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match copy_pass(
            &connection,
            &plan,
            &range,
            part.upto.as_deref(),
            &mut cursor,
            &mut rows,
            batch_size,
            &tx,
        )
        .await
        {
            Ok(Pass::Done) => break,
            Ok(Pass::Stopped) => return Ok(()),
            Err(e) if lost(&e) && !cursor.key.is_empty() => {
                let since = *lost_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed().as_secs() >= retry_secs {
                    return Err(e);
                }
                log::warn!("postgres: {e}; reconnecting to continue after the last key read");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
    if !rows.is_empty() {
        send(&tx, &mut rows, &cursor).await?;
    }
    Ok(())
}

/// The part of a partition a read covers: after one key and up to another (SQL literals),
/// where a resumed run continues.
#[derive(Debug, Clone, Default)]
struct Part {
    after: Option<String>,
    upto: Option<String>,
}

impl PostgresSource {
    fn stream(
        &self,
        partition: &Partition,
        part: Part,
    ) -> Result<Box<dyn BatchStream>, PluginError> {
        let (plan, range) = from_spec(partition)?;
        let (connection, batch_size, special, retry) = (
            self.connection.clone(),
            self.config.batch_size,
            self.config.special_values,
            self.config.retry_timeout_secs,
        );
        Ok(RUNTIME.stream(
            2,
            format!("the reader of partition {}", partition.index),
            move |tx| {
                read_partition(
                    connection, plan, range, part, batch_size, special, retry, tx,
                )
            },
        ))
    }

    /// Whether the table's key gives positions a read can continue after: the configured key
    /// with a unique index of its own, or the primary key, of integers, text or uuids.
    async fn positionable(&self) -> Result<bool> {
        let Some(table) = &self.config.table else {
            return Ok(false);
        };
        let client = connect(&self.connection).await?;
        let relation = self.relation(&client, table).await?;
        let columns = self.columns(&client, Some(relation)).await?;
        let keys = self.key(&client, relation, &columns).await?;
        let typed = !keys.is_empty()
            && keys
                .iter()
                .all(|k| columns.iter().any(|c| &c.name == k && gives_positions(c)));
        Ok(typed
            && match keys.as_slice() {
                [k] => key_unique(&client, relation, k).await?,
                _ => true,
            })
    }
}

impl fastlane_plugin_support::runtime::AsyncSource for PostgresSource {
    type Error = Error;

    async fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        let client = connect(&self.connection).await?;
        // One snapshot for every partition: this connection's transaction exports it and stays
        // open (until the source is dropped) so that readers can import it.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .what(|| "starting the planning transaction".into())?;
        let snapshot = match client.query_one("SELECT pg_export_snapshot()", &[]).await {
            Ok(row) => Some(row.get::<_, String>(0)),
            Err(e) => {
                log::warn!(
                    "postgres: cannot export a snapshot ({}); partitions read the table each \
                     as of its own start",
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                );
                client
                    .batch_execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .what(|| "restarting the planning transaction".into())?;
                None
            }
        };
        let (mut plan, key_kind) = self.plan(&client, context).await?;
        plan.snapshot = snapshot;
        let ranges = if self.config.partitions > 1 && self.config.table.is_some() {
            self.split(&client, &plan, key_kind, self.config.partitions)
                .await?
        } else {
            vec![Range::default()]
        };
        *self.exporter.lock().await = Some(client);
        Ok(ranges
            .into_iter()
            .enumerate()
            .map(|(index, range)| Partition {
                index,
                spec: spec(&plan, range),
            })
            .collect())
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>, PluginError> {
        self.stream(partition, Part::default())
    }

    fn resumable(&self) -> bool {
        *self.resumable.get_or_init(|| {
            RUNTIME.block_on(self.positionable()).unwrap_or_else(|e| {
                log::warn!("postgres: cannot tell whether the table's key gives positions: {e}");
                false
            })
        })
    }

    fn read_range(
        &self,
        partition: &Partition,
        range: &fastlane_plugin_api::ReadRange,
    ) -> Result<Box<dyn BatchStream>, PluginError> {
        let literal = |v: &Option<Value>| -> Result<Option<String>, PluginError> {
            v.as_ref()
                .map(offset_literal)
                .transpose()
                .map_err(PluginError::from)
        };
        self.stream(
            partition,
            Part {
                after: literal(&range.after)?,
                upto: literal(&range.upto)?,
            },
        )
    }

    /// The checksum of the partition's rows, read again in the run's snapshot and hashed from
    /// the Arrow batches they decode to.
    async fn checksum(&self, partition: &Partition) -> Result<Checksum, PluginError> {
        let (plan, range) = from_spec(partition)?;
        let empty = RecordBatch::new_empty(crate::columns::schema_of(&plan.columns));
        if let Err(e) = Checksum::of_batch(&empty) {
            return Err(PluginError::unsupported(e.to_string()));
        }
        let client = reader(&self.connection, &plan).await?;
        let sql = format!(
            "COPY ({}) TO STDOUT (FORMAT binary)",
            select(&plan, &range, None, None)
        );
        let mut sum = Checksum::default();
        copy_batches(
            &client,
            &sql,
            &plan.columns,
            self.config.special_values,
            self.config.batch_size,
            |batch| {
                sum.add(Checksum::of_batch(&batch).map_err(|e| Error::Data(e.to_string()))?);
                Ok(())
            },
        )
        .await?;
        Ok(sum)
    }

    async fn count(&self, partition: &Partition) -> Result<u64, PluginError> {
        let (plan, range) = from_spec(partition)?;
        let client = reader(&self.connection, &plan).await?;
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*)::int8 FROM {}{}",
                    plan.from,
                    conditions(&plan, &range, None, None)
                ),
                &[],
            )
            .await
            .what(|| "counting the partition's rows".into())?
            .get(0);
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges_cover_everything_once() {
        let r = ranges(1, 100, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].from, None);
        assert_eq!(r[0].below.as_deref(), Some("26"));
        assert_eq!(r[3].from.as_deref(), Some("76"));
        assert_eq!(r[3].below, None);
        assert_eq!(ranges(5, 6, 8).len(), 2, "no more ranges than values");
        assert_eq!(ranges(i64::MIN, i64::MAX, 2).len(), 2);
        assert_eq!(ranges(7, 7, 3), vec![Range::default()]);
    }
}
