//! The conformance suite, for the `mysql` source and target, against the real server.

mod common;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use common::Db;
use fastlane_plugin_api::{ReadContext, Source};
use fastlane_tests::conformance::{self, SourceFixture, TargetFixture};
use mysql_async::Value as Sql;
use serde_json::{Value, json};

const COLUMNS: &[(&str, &str)] = &[
    ("int32", "INT"),
    ("int64", "BIGINT"),
    ("float64", "DOUBLE"),
    ("text", "TEXT"),
    ("flag", "BOOL"),
    ("day", "DATE"),
    ("moment", "DATETIME(6)"),
    ("blob", "BLOB"),
];

fn table_for(dir: &Path) -> String {
    let mut h = DefaultHasher::new();
    dir.hash(&mut h);
    format!("t_{:012x}", h.finish() & 0xffff_ffff_ffff)
}

fn cell(array: &dyn Array, row: usize) -> Sql {
    if array.is_null(row) {
        return Sql::NULL;
    }
    match array.data_type() {
        DataType::Binary => Sql::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::Boolean => Sql::Int(i64::from(array.as_boolean().value(row))),
        _ => {
            let options = arrow_cast::display::FormatOptions::default();
            let text = arrow_cast::display::ArrayFormatter::try_new(array, &options)
                .expect("formatter")
                .value(row)
                .to_string();
            Sql::Bytes(text.into_bytes())
        }
    }
}

struct SourceSide(Db);

impl SourceFixture for SourceSide {
    fn id(&self) -> &str {
        "mysql"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.iter().map(|(c, _)| *c).collect()
    }

    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value {
        let table = table_for(dir);
        let present: Vec<&(&str, &str)> = COLUMNS
            .iter()
            .filter(|(c, _)| {
                batches
                    .first()
                    .is_none_or(|b| b.column_by_name(c).is_some())
            })
            .collect();
        let mut ddl = format!("CREATE TABLE `{table}` (id BIGINT PRIMARY KEY");
        for (c, t) in &present {
            ddl.push_str(&format!(", `{c}` {t}"));
        }
        ddl.push(')');
        self.0.exec(&ddl);
        let names: Vec<&str> = std::iter::once("id")
            .chain(present.iter().map(|(c, _)| *c))
            .collect();
        let marks = format!("({})", vec!["?"; names.len()].join(", "));
        common::rt().block_on(async {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(
                mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(common::port())
                    .user(Some("root"))
                    .db_name(Some(self.0.name.clone())),
            )
            .await
            .expect("connect");
            for batch in batches {
                let mut start = 0;
                while start < batch.num_rows() {
                    let end = batch.num_rows().min(start + 1000);
                    let mut params = Vec::new();
                    for row in start..end {
                        for name in &names {
                            params.push(cell(batch.column_by_name(name).expect("column"), row));
                        }
                    }
                    let sql = format!(
                        "INSERT INTO `{table}` (`{}`) VALUES {}",
                        names.join("`, `"),
                        vec![marks.as_str(); end - start].join(", ")
                    );
                    conn.exec_drop(sql, mysql_async::Params::Positional(params))
                        .await
                        .expect("insert");
                    start = end;
                }
            }
            conn.disconnect().await.expect("disconnect");
        });
        self.0
            .config(json!({"table": table, "key": "id", "batch_size": batch_rows}))
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"host": "db.example.com", "username": "etl", "password": "${MYSQL_PASSWORD}", "db": "shop", "table": "orders", "key": "id", "batch_size": 10000}),
            json!({"db": "shop", "table": "orders", "partitions": 4, "concurrency": 4}),
            json!({"db": "shop", "table": "events", "key": "code", "partition_bounds": ["g", "p"]}),
            json!({"db": "shop", "query": "SELECT id, total FROM orders WHERE total > 10", "zero_dates": "null", "time_as": "duration"}),
        ]
    }
}

struct TargetSide(Db);

impl TargetFixture for TargetSide {
    fn id(&self) -> &str {
        "mysql"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.iter().map(|(c, _)| *c).collect()
    }

    fn config(&self, dir: &Path) -> Value {
        // The suite checks that FULL_TABLE replaces a table, whatever its columns were.
        self.0
            .config(json!({"table": table_for(dir), "key": "id", "on_schema_change": "replace"}))
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        let table = table_for(dir);
        if !self.0.tables().contains(&table) {
            return vec![];
        }
        let plugin = common::plugin("mysql");
        let source = plugin
            .create_source("mysql", &self.0.config(json!({"table": table})))
            .expect("source");
        let mut out = Vec::new();
        for p in source
            .partitions(&ReadContext::default())
            .expect("partitions")
        {
            let mut stream = source.read(&p).expect("read");
            while let Some(b) = stream.next_batch().expect("batch") {
                out.push(b);
            }
        }
        out
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        let table = table_for(dir);
        self.0
            .tables()
            .into_iter()
            .filter(|t| t == &table || t.starts_with("_fastlane"))
            .collect()
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"host": "db.example.com", "username": "etl", "password": "${MYSQL_PASSWORD}", "db": "shop", "table": "orders", "key": "id"}),
            json!({"db": "shop", "table": "orders", "load_method": "insert", "batch_size": 5000, "concurrency": 2}),
            json!({"db": "shop", "table": "orders", "on_schema_change": "add_columns"}),
        ]
    }
}

#[test]
fn mysql_source() {
    conformance::check_source("mysql", &SourceSide(Db::new("conformance_source")));
}

#[test]
fn mysql_target() {
    conformance::check_target("mysql", &TargetSide(Db::new("conformance_target")));
}
