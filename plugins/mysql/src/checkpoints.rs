//! The `mysql` target's checkpoints: one table per target, `_fastlane_ckpt_<hash>`, beside the
//! staging tables, holding for the run being loaded its plan, the columns its data brings, and
//! one row per batch written.
//!
//! A checkpointed writer sends each batch in one transaction with the batch's tag row: after a
//! crash the staging table holds exactly the batches whose tags are there. A connection lost
//! in the middle rolls the transaction back, and the writer sends it again on a new
//! connection; a connection lost while `COMMIT` was on its way is settled by looking for the
//! tag. The staging table and this table must be InnoDB (transactional) for that to hold.
//!
//! | `id`      | `body`                                   |
//! |-----------|------------------------------------------|
//! | `plan`    | the host's plan of the run               |
//! | `columns` | the columns the data brings (JSON array) |
//! | `t:<hash>`| one batch's tag                          |

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use crate::conn::qualified;
use crate::error::{Context, Error, Result};

/// The checkpoint table of a target whose tables start with `prefix_hash`.
pub(crate) fn table_name(target_hash: &str) -> String {
    format!("_fastlane_ckpt_{target_hash}")
}

/// The row id of a tag: a 64-bit FNV-1a hash of its text (tags are unique per batch: they
/// name the partition, the read and the batch's number in it).
pub(crate) fn tag_id(tag: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("t:{h:016x}:{}", tag.len())
}

/// Where a run's checkpoints live.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    /// The database.
    pub(crate) db: String,
    /// The table's name.
    pub(crate) name: String,
    /// The run (the staging's run id).
    pub(crate) run_id: String,
}

impl Checkpoints {
    /// The qualified table name.
    pub(crate) fn table(&self) -> String {
        qualified(&self.db, &self.name)
    }

    /// Creates the table if it does not exist.
    pub(crate) async fn ensure(&self, conn: &mut Conn) -> Result<()> {
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id VARCHAR(64) NOT NULL, id VARCHAR(64) NOT \
             NULL, body LONGTEXT NOT NULL, PRIMARY KEY (run_id, id)) ENGINE=InnoDB",
            self.table()
        ))
        .await
        .what(|| "creating the checkpoint table".to_owned())
    }

    /// Starts a new run: forgets every other run's rows and stores the plan.
    pub(crate) async fn start(&self, conn: &mut Conn, plan: &Json) -> Result<()> {
        self.ensure(conn).await?;
        conn.exec_drop(format!("DELETE FROM {}", self.table()), ())
            .await
            .what(|| "clearing the checkpoint table".to_owned())?;
        conn.exec_drop(
            format!(
                "INSERT INTO {} (run_id, id, body) VALUES (?, 'plan', ?)",
                self.table()
            ),
            (self.run_id.clone(), plan.to_string()),
        )
        .await
        .what(|| "storing the run's plan".to_owned())
    }

    /// The body of row `id` of this run.
    pub(crate) async fn get(&self, conn: &mut Conn, id: &str) -> Result<Option<String>> {
        conn.exec_first(
            format!(
                "SELECT body FROM {} WHERE run_id = ? AND id = ?",
                self.table()
            ),
            (self.run_id.clone(), id.to_owned()),
        )
        .await
        .what(|| "reading the checkpoints".to_owned())
    }

    /// Stores (or replaces) row `id` of this run.
    pub(crate) async fn put(&self, conn: &mut Conn, id: &str, body: &str) -> Result<()> {
        conn.exec_drop(
            format!(
                "INSERT INTO {} (run_id, id, body) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
                 body = VALUES(body)",
                self.table()
            ),
            (self.run_id.clone(), id.to_owned(), body.to_owned()),
        )
        .await
        .what(|| "storing a checkpoint".to_owned())
    }

    /// The tags of this run.
    pub(crate) async fn tags(&self, conn: &mut Conn) -> Result<Vec<String>> {
        conn.exec(
            format!(
                "SELECT body FROM {} WHERE run_id = ? AND id LIKE 't:%'",
                self.table()
            ),
            (self.run_id.clone(),),
        )
        .await
        .what(|| "reading the checkpoints".to_owned())
    }

    /// Forgets this run (published or discarded): the table goes, since it only ever holds the
    /// run being loaded (the caller holds the target's lock).
    pub(crate) async fn forget(&self, conn: &mut Conn) -> Result<()> {
        conn.query_drop(format!("DROP TABLE IF EXISTS {}", self.table()))
            .await
            .what(|| "dropping the checkpoint table".to_owned())
    }
}

/// Whether `db`.`name` exists.
pub(crate) async fn table_exists(conn: &mut Conn, db: &str, name: &str) -> Result<bool> {
    let n: Option<u32> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND \
             TABLE_NAME = ?",
            (db, name),
        )
        .await
        .what(|| format!("looking for `{db}`.`{name}`"))?;
    Ok(n == Some(1))
}

/// The storage engine of `db`.`name`, when the table exists.
pub(crate) async fn engine_of(conn: &mut Conn, db: &str, name: &str) -> Result<Option<String>> {
    let engine: Option<Option<String>> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND \
             TABLE_NAME = ?",
            (db, name),
        )
        .await
        .what(|| format!("reading the engine of `{db}`.`{name}`"))?;
    Ok(engine.flatten())
}

/// The plans of the runs the checkpoint table `name` holds, with whether each has tags.
pub(crate) async fn plans(
    conn: &mut Conn,
    db: &str,
    name: &str,
) -> Result<Vec<(String, Json, bool)>> {
    if !table_exists(conn, db, name).await? {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, String, u64)> = conn
        .exec(
            format!(
                "SELECT p.run_id, p.body, (SELECT COUNT(*) FROM {t} x WHERE x.run_id = p.run_id \
                 AND x.id LIKE 't:%') FROM {t} p WHERE p.id = 'plan' ORDER BY p.run_id DESC",
                t = qualified(db, name)
            ),
            (),
        )
        .await
        .what(|| "reading the checkpoints".to_owned())?;
    rows.into_iter()
        .map(|(run, body, tags)| {
            let plan = serde_json::from_str(&body).map_err(|e| {
                Error::Data(format!(
                    "the plan of run `{run}` in `{name}` is damaged: {e}"
                ))
            })?;
            Ok((run, plan, tags > 0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_ids_differ_per_tag_and_fit_the_column() {
        let a = tag_id(r#"{"p":0,"s":1}"#);
        let b = tag_id(r#"{"p":0,"s":2}"#);
        assert_ne!(a, b);
        assert!(a.starts_with("t:") && a.len() <= 64, "{a}");
        assert_eq!(a, tag_id(r#"{"p":0,"s":1}"#));
    }
}
