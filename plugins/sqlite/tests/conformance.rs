//! The conformance suite, for the `sqlite` source and target.

use std::path::Path;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use fastlane_tests::conformance::{self, SourceFixture};
use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

struct Fixture;

const COLUMNS: &[(&str, &str)] = &[
    ("int32", "INTEGER"),
    ("int64", "BIGINT"),
    ("float64", "REAL"),
    ("text", "TEXT"),
    ("flag", "BOOLEAN"),
    ("day", "DATE"),
    ("moment", "TIMESTAMP"),
    ("blob", "BLOB"),
];

fn cell(array: &dyn Array, row: usize) -> Sql {
    if array.is_null(row) {
        return Sql::Null;
    }
    let as_text = || {
        let options = arrow_cast::display::FormatOptions::default();
        arrow_cast::display::ArrayFormatter::try_new(array, &options)
            .expect("formatter")
            .value(row)
            .to_string()
    };
    match array.data_type() {
        DataType::Int32 | DataType::Int64 => Sql::Integer(as_text().parse().expect("int")),
        DataType::Float64 => Sql::Real(as_text().parse().expect("float")),
        DataType::Boolean => Sql::Integer(i64::from(as_text() == "true")),
        DataType::Binary => {
            let b = array
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .expect("binary");
            Sql::Blob(b.value(row).to_vec())
        }
        _ => Sql::Text(as_text()),
    }
}

impl SourceFixture for Fixture {
    fn id(&self) -> &str {
        "sqlite"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.iter().map(|(c, _)| *c).collect()
    }

    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value {
        let path = dir.join("conformance.db");
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        let present: Vec<&(&str, &str)> = COLUMNS
            .iter()
            .filter(|(c, _)| {
                batches
                    .first()
                    .is_none_or(|b| b.column_by_name(c).is_some())
            })
            .collect();
        let mut ddl = String::from("CREATE TABLE t (id INTEGER PRIMARY KEY");
        for (c, t) in &present {
            ddl.push_str(&format!(", \"{c}\" {t}"));
        }
        ddl.push(')');
        conn.execute_batch(&ddl).expect("create");
        let tx = conn.transaction().expect("tx");
        {
            let placeholders = vec!["?"; present.len() + 1].join(", ");
            let mut insert = tx
                .prepare(&format!("INSERT INTO t VALUES ({placeholders})"))
                .expect("prepare");
            for batch in batches {
                for row in 0..batch.num_rows() {
                    let mut values =
                        vec![cell(batch.column_by_name("id").expect("id").as_ref(), row)];
                    for (c, _) in &present {
                        values.push(cell(batch.column_by_name(c).expect("column").as_ref(), row));
                    }
                    insert
                        .execute(rusqlite::params_from_iter(values))
                        .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
        json!({"path": path, "table": "t", "replication_key": "id", "batch_size": batch_rows})
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"path": "shop.db", "table": "orders"}),
            json!({"path": "shop.db", "table": "orders", "replication_key": "id", "partitions": 4, "batch_size": 10000}),
            json!({"path": "shop.db", "query": "SELECT id, total FROM orders WHERE total > 10"}),
            json!({"path": "shop.db", "table": "orders", "columns": ["id", "total"], "concurrency": 2}),
        ]
    }
}

#[test]
fn sqlite_source() {
    conformance::check_source("sqlite", &Fixture);
}

/// The `sqlite` target, read back through the `sqlite` source.
struct TargetFixture;

impl conformance::TargetFixture for TargetFixture {
    fn id(&self) -> &str {
        "sqlite"
    }

    fn columns(&self) -> Vec<&'static str> {
        COLUMNS.iter().map(|(c, _)| *c).collect()
    }

    fn config(&self, dir: &Path) -> Value {
        json!({"path": dir.join("out.db"), "table": "loaded", "key": "id", "on_schema_change": "replace"})
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        let path = dir.join("out.db");
        if !path.exists() {
            return vec![];
        }
        let conn = rusqlite::Connection::open(&path).expect("open");
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'loaded'",
                [],
                |r| r.get(0),
            )
            .expect("tables");
        if tables == 0 {
            return vec![];
        }
        let config = json!({"path": path, "table": "loaded", "replication_key": "id"});
        let source = fastlane_plugin_sqlite::SqliteSource::new(
            serde_json::from_value(config).expect("config"),
        )
        .expect("source");
        conformance::read_source(
            "sqlite",
            Box::new(source),
            &fastlane_host::engine::EngineOptions::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("{}", fastlane_host::error::chain(&e)))
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let path = dir.join("out.db");
        if path.exists() {
            let conn = rusqlite::Connection::open(&path).expect("open");
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master ORDER BY name")
                .expect("prepare");
            found.extend(
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .expect("query")
                    .map(|n| format!("table {}", n.expect("name"))),
            );
        }
        found.sort();
        found
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"path": "shop.db", "table": "orders"}),
            json!({"path": "shop.db", "table": "orders", "key": "id", "on_schema_change": "add_columns"}),
            json!({"path": "out/copy.db", "table": "orders", "key": "id", "busy_timeout_secs": 60, "concurrency": 2}),
        ]
    }
}

#[test]
fn sqlite_target() {
    conformance::check_target("sqlite", &TargetFixture);
}
