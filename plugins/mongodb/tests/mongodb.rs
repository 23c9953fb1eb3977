//! The `mongodb` source against the MongoDB wire-protocol server of the tests (BriskDB on
//! 127.0.0.1:27017, started by `tests/services.sh`): conformance, BSON types into Arrow,
//! explicit and inferred schemas, documents that do not fit, filters and pipelines,
//! incremental reads after an ObjectId, a read cut in the middle and continued, and one clear
//! error for each kind of bad input.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use fastlane_host::engine::EngineOptions;
use fastlane_tests::conformance::{self, SourceFixture};
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use serde_json::{Value, json};

const SERVER: &str = "127.0.0.1:27017";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn client() -> mongodb::Client {
    static CLIENT: OnceLock<mongodb::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let uri = format!("mongodb://{SERVER}/?directConnection=true");
            runtime()
                .block_on(async { mongodb::Client::with_uri_str(&uri).await })
                .expect("client")
        })
        .clone()
}

/// A database name unique to `seed`.
fn unique_name(seed: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    std::process::id().hash(&mut h);
    format!("t_{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// BriskDB takes one writer at a time, and answers other calls made meanwhile with
/// WriteConflict: the tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Empties `db.coll` (creating it) and inserts `docs`.
fn fill(db: &str, coll: &str, docs: Vec<Document>) {
    let database = client().database(db);
    runtime().block_on(async {
        let _ = database.collection::<Document>(coll).drop().await;
        database
            .create_collection(coll)
            .await
            .unwrap_or_else(|e| panic!("MongoDB on {SERVER} (tests/services.sh starts it): {e}"));
        for chunk in docs.chunks(1000) {
            database
                .collection::<Document>(coll)
                .insert_many(chunk.to_vec())
                .await
                .unwrap();
        }
    });
}

fn config(db: &str, extra: Value) -> Value {
    let mut v = json!({
        "uri": format!("mongodb://{SERVER}/?directConnection=true"),
        "database": db, "collection": "c"
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Reads with the source configured by `config`; the batches, or the run's error chain.
fn read(config: &Value, offset: Option<Value>) -> std::result::Result<Vec<RecordBatch>, String> {
    let source = conformance::load("mongodb")
        .create_source("mongodb", config)
        .map_err(|e| e.to_string())?;
    conformance::read_source(
        "mongodb",
        Box::new(source),
        &EngineOptions::default(),
        offset,
    )
    .map_err(|e| fastlane_host::error::chain(&e))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

struct Fixture;

impl SourceFixture for Fixture {
    fn id(&self) -> &str {
        "mongodb"
    }

    fn columns(&self) -> Vec<&'static str> {
        vec!["int32", "int64", "float64", "text", "flag"]
    }

    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value {
        let db = unique_name(&dir.display().to_string());
        let mut docs = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let mut d = Document::new();
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    let value = if column.is_null(row) {
                        Bson::Null
                    } else {
                        match column.data_type() {
                            DataType::Int64 => Bson::Int64(
                                column
                                    .as_primitive::<arrow_array::types::Int64Type>()
                                    .value(row),
                            ),
                            DataType::Int32 => Bson::Int32(
                                column
                                    .as_primitive::<arrow_array::types::Int32Type>()
                                    .value(row),
                            ),
                            DataType::Float64 => Bson::Double(
                                column
                                    .as_primitive::<arrow_array::types::Float64Type>()
                                    .value(row),
                            ),
                            DataType::Utf8 => {
                                Bson::String(column.as_string::<i32>().value(row).to_owned())
                            }
                            DataType::Boolean => Bson::Boolean(column.as_boolean().value(row)),
                            other => panic!("no BSON for {other}"),
                        }
                    };
                    d.insert(field.name().clone(), value);
                }
                docs.push(d);
            }
        }
        fill(&db, "c", docs);
        config(
            &db,
            json!({"replication_key": "id", "batch_size": batch_rows}),
        )
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"host": "mongo.internal", "port": 27017, "user": "etl",
                   "password": "${MONGO_PASSWORD}", "database": "shop", "collection": "orders",
                   "batch_size": 5000, "filter_fields": [["status", "paid", "None", 0]]}),
            json!({"uri": "mongodb+srv://cluster0.example.net/", "database": "shop",
                   "collection": "events", "replication_key": "at",
                   "filter": {"kind": {"$in": ["click", "view"]}},
                   "schema": [{"name": "at", "type": "timestamp"},
                              {"name": "tags", "type": "list<string>"}],
                   "on_mismatch": "dead_letter", "dead_letter_path": "rejected.jsonl"}),
        ]
    }
}

#[test]
fn conformance() {
    let _serial = serial();
    conformance::check_source("mongodb", &Fixture);
}

fn typed_docs() -> Vec<Document> {
    let price = |s: &str| Bson::Decimal128(s.parse().unwrap());
    vec![
        doc! {
            "_id": ObjectId::parse_str("65f000000000000000000001").unwrap(),
            "n": 1i32, "big": 5_000_000_000i64, "x": 0.25, "ok": true, "name": "Zoë 🦀",
            "price": price("12.50"), "at": bson::DateTime::from_millis(1_700_000_000_123),
            "tags": ["a", "b"], "address": {"city": "Delft", "zip": "2611"},
            "raw": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0, 255] }),
            "odd": Bson::RegularExpression(bson::Regex { pattern: "^a".into(), options: "i".into() }),
        },
        doc! {
            "_id": ObjectId::parse_str("65f000000000000000000002").unwrap(),
            "n": null, "big": 7i32, "x": 3i32, "ok": false, "name": null,
            "price": price("-0.001"), "at": null, "tags": [], "address": {"city": "Leiden"},
        },
    ]
}

#[test]
fn bson_types_become_arrow_columns() {
    let _serial = serial();
    let db = unique_name("types");
    fill(&db, "c", typed_docs());
    let batches = read(&config(&db, json!({})), None).unwrap();
    assert_eq!(rows(&batches), 2);
    let schema = batches[0].schema();
    use arrow_schema::{Field, TimeUnit};
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
    let expected = vec![
        utf8("_id"),
        Field::new("n", DataType::Int32, true),
        Field::new("big", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        utf8("name"),
        Field::new("price", DataType::Decimal128(38, 3), true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("tags", DataType::List(Arc::new(utf8("item"))), true),
        Field::new(
            "address",
            DataType::Struct(vec![utf8("city"), utf8("zip")].into()),
            true,
        ),
        Field::new("raw", DataType::Binary, true),
        utf8("odd"),
    ];
    let got: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    assert_eq!(got, expected);
    let text = conformance::pretty(&batches);
    for part in [
        "65f000000000000000000001",
        "5000000000",
        "Zoë 🦀",
        "12.500",
        "-0.001",
        "2023-11-14T22:13:20.123",
        "[a, b]",
        "{city: Delft, zip: 2611}",
        "{city: Leiden, zip: }",
        "00ff",
        r#"{"$regularExpression":{"pattern":"^a","options":"i"}}"#,
    ] {
        assert!(text.contains(part), "{part} missing from\n{text}");
    }
    // The same data with an explicit schema: dates as days, decimals at scale 2 fail for -0.001.
    let explicit = config(
        &db,
        json!({"schema": [
            {"name": "_id", "type": "objectid"}, {"name": "n", "type": "int64"},
            {"name": "big", "type": "int64"}, {"name": "x", "type": "double"},
            {"name": "ok", "type": "bool"}, {"name": "name", "type": "string"},
            {"name": "price", "type": "decimal(10,3)"}, {"name": "at", "type": "date"},
            {"name": "tags", "type": "json"}, {"name": "address", "type": "json"},
            {"name": "raw", "type": "binary"}, {"name": "odd", "type": "json"}
        ]}),
    );
    let batches = read(&explicit, None).unwrap();
    let text = conformance::pretty(&batches);
    for part in [
        "2023-11-14",
        r#"["a","b"]"#,
        r#"{"city":"Delft","zip":"2611"}"#,
    ] {
        assert!(text.contains(part), "{part} missing from\n{text}");
    }
}

#[test]
fn documents_that_do_not_fit_fail_or_go_to_the_dead_letter_file() {
    let _serial = serial();
    let db = unique_name("mismatch");
    let mut docs: Vec<Document> = (0..10i64).map(|i| doc! {"_id": i, "v": i * 2}).collect();
    docs.push(doc! {"_id": 10i64, "v": "ten"});
    docs.push(doc! {"_id": 11i64, "v": 22i64, "extra": true});
    fill(&db, "c", docs);
    let schema = json!([{"name": "_id", "type": "int64"}, {"name": "v", "type": "int64"}]);
    let error = read(&config(&db, json!({"schema": schema})), None).unwrap_err();
    assert!(
        error.contains("the document 10 of")
            && error.contains("`v`: expected int64, found string")
            && error.contains("dead_letter"),
        "{error}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dead = tmp.path().join("dead.jsonl");
    let batches = read(
        &config(
            &db,
            json!({"schema": schema, "on_mismatch": "dead_letter", "dead_letter_path": dead}),
        ),
        None,
    )
    .unwrap();
    assert_eq!(rows(&batches), 10);
    let lines: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["reason"],
        json!("`v`: expected int64, found string")
    );
    assert_eq!(lines[0]["document"], json!({"_id": 10, "v": "ten"}));
    assert_eq!(lines[1]["reason"], json!("`extra` is not in the schema"));
    // Inferred from a sample of 5, later documents with new fields do not fit either.
    let error = read(&config(&db, json!({"sample_size": 5})), None).unwrap_err();
    assert!(
        error.contains("`v`: expected int64, found string"),
        "{error}"
    );
}

#[test]
fn filters_projections_and_pipelines_select_documents() {
    let _serial = serial();
    let db = unique_name("filters");
    let docs: Vec<Document> = (0..100i64)
        .map(|i| doc! {"_id": i, "kind": if i % 2 == 0 { "even" } else { "odd" }, "n": i, "secret": "x"})
        .collect();
    fill(&db, "c", docs);
    let ids = |batches: &[RecordBatch]| -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("_id")
                    .unwrap()
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    let got = read(
        &config(
            &db,
            json!({"filter": {"kind": "even"}, "filter_fields": [["n", "$gte", 90, 0]],
                   "projection": {"n": 1}, "batch_size": 2}),
        ),
        None,
    )
    .unwrap();
    assert_eq!(ids(&got), vec![90, 92, 94, 96, 98]);
    let names: Vec<String> = got[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["_id", "n"]);
    let got = read(
        &config(
            &db,
            json!({"pipeline": [{"$match": {"kind": "odd"}}, {"$limit": 3}],
                   "projection": {"kind": 1}}),
        ),
        None,
    )
    .unwrap();
    assert_eq!(ids(&got), vec![1, 3, 5]);
}

#[test]
fn incremental_reads_continue_after_the_offset() {
    let _serial = serial();
    let db = unique_name("incremental");
    let docs: Vec<Document> = (1..=300u32)
        .map(|i| {
            let mut bytes = [0u8; 12];
            bytes[8..].copy_from_slice(&i.to_be_bytes());
            doc! {"_id": ObjectId::from_bytes(bytes), "n": i64::from(i),
            "at": bson::DateTime::from_millis(1_700_000_000_000 + i64::from(i) * 1000)}
        })
        .collect();
    fill(&db, "c", docs);
    // By `_id` (ObjectId), the default key: the offset is the hex text a target stores.
    let got = read(
        &config(&db, json!({"batch_size": 64})),
        Some(json!("0000000000000000000000fa")),
    )
    .unwrap();
    assert_eq!(rows(&got), 50);
    // By a date key, with the offset as UTC text.
    let got = read(
        &config(&db, json!({"replication_key": "at"})),
        Some(json!("2023-11-14T22:15:00")),
    )
    .unwrap();
    assert_eq!(rows(&got), 200);
    // An offset that does not fit the key.
    let error = read(&config(&db, json!({})), Some(json!("not an id"))).unwrap_err();
    assert!(
        error.contains("does not fit the replication key `_id` (objectid)"),
        "{error}"
    );
}

#[test]
fn bad_input_gets_one_clear_error_each() {
    let _serial = serial();
    let db = unique_name("bad input");
    fill(&db, "c", vec![doc! {"_id": 1}]);
    let error = read(&config(&db, json!({"collection": "nope"})), None).unwrap_err();
    assert!(
        error.contains("no collection `nope` in the database")
            && error.contains("its collections: c"),
        "{error}"
    );
    let error = read(
        &json!({"uri": "mongodb://127.0.0.1:9/?directConnection=true", "database": "d",
                "collection": "c", "connect_timeout_secs": 1}),
        None,
    )
    .unwrap_err();
    assert!(
        error.contains("cannot reach MongoDB at 127.0.0.1:9"),
        "{error}"
    );
    let error = read(
        &json!({"host": "h", "database": "a b", "collection": "", "schema": [{"name": "v", "type": "int"}]}),
        None,
    )
    .unwrap_err();
    for part in [
        "`database` `a b`",
        "`collection` must not be empty",
        "replication key `_id`",
    ] {
        assert!(error.contains(part), "{part} missing from {error}");
    }
}

#[test]
fn a_read_cut_in_the_middle_continues_after_the_last_document() {
    let _serial = serial();
    let db = unique_name("cut");
    let docs: Vec<Document> = (0..3_000i64)
        .map(|i| doc! {"_id": i, "group": i % 4, "pad": "x".repeat(100)})
        .collect();
    fill(&db, "c", docs);
    // Keyed on a non-unique field: the read continues after (group, _id).
    let cutter = fastlane_tests::TcpCutter::start(SERVER, 60_000, 1);
    let cfg = json!({
        "uri": format!("mongodb://127.0.0.1:{}/?directConnection=true", cutter.port),
        "database": db, "collection": "c", "replication_key": "group", "batch_size": 200,
        "sample_size": 10,
        "retry_backoff_ms": 10
    });
    let batches = read(&cfg, None).unwrap();
    assert_eq!(cutter.stats()["cuts"], json!(1));
    let mut seen: Vec<(i64, i64)> = batches
        .iter()
        .flat_map(|b| {
            let g = b
                .column_by_name("group")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>();
            let id = b
                .column_by_name("_id")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>();
            (0..b.num_rows())
                .map(|r| (g.value(r), id.value(r)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seen.len(), 3_000, "every document once");
    let sorted = {
        let mut s = seen.clone();
        s.sort();
        s
    };
    assert_eq!(seen, sorted, "in key order");
    seen.dedup();
    assert_eq!(seen.len(), 3_000, "no document twice");

    // A server that keeps cutting: a clear error once the retries are spent.
    let always = fastlane_tests::TcpCutter::start(SERVER, 20_000, -1);
    let cfg = json!({
        "uri": format!("mongodb://127.0.0.1:{}/?directConnection=true", always.port),
        "database": db, "collection": "c", "batch_size": 200, "max_retries": 2,
        "sample_size": 10,
        "retry_backoff_ms": 10
    });
    let error = read(&cfg, None).unwrap_err();
    assert!(
        error.contains("cannot reach MongoDB") || error.contains("attempts to continue"),
        "{error}"
    );
    assert!(
        error.contains("after") && error.contains("2 attempts"),
        "{error}"
    );
}
