//! The `postgres` source against the PostgreSQL server on 127.0.0.1:5432 (user `postgres`,
//! trust; tests/services.sh starts it): every mapped type with edge values read to Parquet and
//! compared, values without an Arrow form refused by name or read as NULL, unsupported types
//! refused or read as text, partitions, INCREMENTAL runs, and bad configurations.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::{IntervalMonthDayNano, i256};
use arrow_schema::DataType;
use fastlane_plugin_api::Source;

mod common;
use common::Db;

/// Runs a pipeline with the built `fastlane`; its exit status and stderr.
fn run(dir: &Path, config: serde_json::Value) -> (bool, String) {
    common::run_pipeline(dir, &config)
}

fn read_parquet(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        out.extend(reader.map(Result::unwrap));
    }
    out
}

/// Every batch of every partition of a `postgres` source, read through the loaded plugin.
fn read_all(config: &serde_json::Value) -> Vec<RecordBatch> {
    let plugin = fastlane_tests::conformance::load("postgres");
    let source = plugin.create_source("postgres", config).expect("source");
    let mut out = Vec::new();
    for p in source
        .partitions(&fastlane_plugin_api::ReadContext::default())
        .expect("partitions")
    {
        let mut stream = source.read(&p).expect("read");
        while let Some(b) = stream.next_batch().expect("batch") {
            out.push(b);
        }
    }
    out
}

fn one_batch(dir: &Path) -> RecordBatch {
    let batches = read_parquet(dir);
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn source(db: &Db, extra: serde_json::Value) -> serde_json::Value {
    let mut s = serde_json::json!({"url": db.url()});
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s
}

fn to_parquet(db: &Db, dir: &Path, mode: &str, extra: serde_json::Value) -> (bool, String) {
    run(
        dir,
        serde_json::json!({
            "name": "pg-test", "replication_mode": mode,
            "source": {"postgres": source(db, extra)},
            "target": {"file": {"path": "out", "format": "parquet", "key": "id"}},
        }),
    )
}

#[test]
fn every_mapped_type_reads_exactly_edge_values_and_nulls_included() {
    let db = Db::new("types");
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE TABLE types (
           id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
           n numeric(12,2), nbig numeric(50,10), nu numeric, t text, vc varchar(20), c char(3),
           nm name, j json, jb jsonb, by bytea, d date, tm time, tz timetz, ts timestamp,
           tstz timestamptz, iv interval, u uuid, ip inet, net cidr, mac macaddr, e mood,
           dom posint, o oid);
         INSERT INTO types VALUES
          (1, true, -32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity',
           -9999999999.99, 1234567890123456789012345678901234567890.0123456789,
           'NaN', '🦀 four bytes', '', 'ab', 'pg_name', '{\"a\": [1, 2]}', '{\"b\": null}',
           '\\x00ff', '4713-01-01 BC', '23:59:59.999999', '12:30:00.5+02',
           '294247-01-10 04:00:54.775807', '2024-03-10 12:00:00+05',
           '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '2001:db8::1/64', '10.0.0.0/8', '08:00:2b:01:02:03', 'happy', 5, 4294967295),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL),
          (3, false, 32767, 2147483647, 9223372036854775807, 3.5, 1e308, 0.01,
           -0.0000000001, '-123456789012345678901234567890.000000000000000000001',
           repeat('x', 1048576), 'twenty chars long!!!', 'abc', 'n', '[]', '[]',
           decode(repeat('ab', 1048576), 'hex'), '2000-01-01', '00:00:00', '00:00:00-09:30',
           '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999-01', '-1 days -00:00:00.000001',
           '00000000-0000-0000-0000-000000000000', '192.168.0.1', '::/0', 'ff:ff:ff:ff:ff:ff',
           'sad', 1, 0);",
    );
    // Read through the plugin itself, as the engine does: Parquet cannot hold every Arrow type
    // read here (month-day-nano intervals).
    let batches = read_all(&source(
        &db,
        serde_json::json!({"table": "types", "batch_size": 2}),
    ));
    assert_eq!(batches.len(), 2, "batches of batch_size rows");
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 3);
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let schema = batch.schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("n"), DataType::Decimal128(12, 2));
    assert_eq!(ty("nbig"), DataType::Decimal256(50, 10));
    assert_eq!(
        ty("nu"),
        DataType::Utf8,
        "unconstrained numeric is its exact text"
    );
    assert_eq!(ty("u"), DataType::FixedSizeBinary(16));
    assert_eq!(
        schema.field_with_name("n").unwrap().metadata()["fastlane.postgres.type"],
        "numeric(12,2)"
    );
    // Rows in key order.
    assert_eq!(col("id").as_primitive::<Int64Type>().values(), &[1, 2, 3]);
    // Row 2: every column NULL.
    for field in schema.fields().iter().filter(|f| f.name() != "id") {
        assert!(
            batch.column_by_name(field.name()).unwrap().is_null(1),
            "{}",
            field.name()
        );
    }
    assert!(col("b").as_boolean().value(0));
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(0), i16::MIN);
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(2), i16::MAX);
    assert_eq!(col("i4").as_primitive::<Int32Type>().value(0), i32::MIN);
    assert_eq!(col("i8").as_primitive::<Int64Type>().value(0), i64::MIN);
    assert_eq!(col("i8").as_primitive::<Int64Type>().value(2), i64::MAX);
    assert!(col("f4").as_primitive::<Float32Type>().value(0).is_nan());
    assert_eq!(
        col("f8").as_primitive::<Float64Type>().value(0),
        f64::NEG_INFINITY
    );
    assert_eq!(col("f8").as_primitive::<Float64Type>().value(2), 1e308);
    let n = col("n");
    assert_eq!(
        n.as_primitive::<Decimal128Type>().value(0),
        -999_999_999_999
    );
    assert_eq!(n.as_primitive::<Decimal128Type>().value(2), 1);
    let nbig = col("nbig");
    assert_eq!(
        nbig.as_primitive::<Decimal256Type>().value(0),
        i256::from_string("12345678901234567890123456789012345678900123456789").unwrap()
    );
    assert_eq!(
        nbig.as_primitive::<Decimal256Type>().value(2),
        i256::from_i128(-1)
    );
    let nu = col("nu");
    assert_eq!(nu.as_string::<i32>().value(0), "NaN");
    assert_eq!(
        nu.as_string::<i32>().value(2),
        "-123456789012345678901234567890.000000000000000000001"
    );
    let t = col("t");
    assert_eq!(t.as_string::<i32>().value(0), "🦀 four bytes");
    assert_eq!(t.as_string::<i32>().value(2).len(), 1 << 20);
    assert_eq!(col("vc").as_string::<i32>().value(0), "");
    assert_eq!(
        col("c").as_string::<i32>().value(0),
        "ab ",
        "char(n) keeps its padding"
    );
    assert_eq!(col("nm").as_string::<i32>().value(0), "pg_name");
    assert_eq!(col("j").as_string::<i32>().value(0), "{\"a\": [1, 2]}");
    assert_eq!(col("jb").as_string::<i32>().value(0), "{\"b\": null}");
    assert_eq!(col("by").as_binary::<i32>().value(0), &[0x00, 0xff]);
    assert_eq!(col("by").as_binary::<i32>().value(2).len(), 1 << 20);
    // 4713-01-01 BC, as many days before 1970 as the server counts, and 2000-01-01.
    let d = col("d");
    let server_days: i32 = db
        .exec("SELECT d - '1970-01-01'::date FROM types WHERE id = 1")
        .parse()
        .unwrap();
    assert_eq!(d.as_primitive::<Date32Type>().value(0), server_days);
    assert_eq!(d.as_primitive::<Date32Type>().value(2), 10_957);
    assert_eq!(
        col("tm").as_primitive::<Time64MicrosecondType>().value(0),
        86_399_999_999
    );
    assert_eq!(col("tz").as_string::<i32>().value(0), "12:30:00.5+02");
    assert_eq!(col("tz").as_string::<i32>().value(2), "00:00:00-09:30");
    let ts = col("ts");
    // 294247-01-10 04:00:54.775807 is the last microsecond Arrow's 64 bits hold.
    assert_eq!(
        ts.as_primitive::<TimestampMicrosecondType>().value(0),
        i64::MAX
    );
    assert_eq!(ts.as_primitive::<TimestampMicrosecondType>().value(2), 0);
    assert_eq!(
        ty("tstz"),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        col("tstz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_710_054_000_000_000,
        "2024-03-10 07:00:00 UTC"
    );
    let iv = col("iv");
    assert_eq!(
        iv.as_primitive::<IntervalMonthDayNanoType>().value(0),
        IntervalMonthDayNano {
            months: 14,
            days: 3,
            nanoseconds: 14_706_789_000_000
        }
    );
    assert_eq!(
        iv.as_primitive::<IntervalMonthDayNanoType>().value(2),
        IntervalMonthDayNano {
            months: 0,
            days: -1,
            nanoseconds: -1000
        }
    );
    assert_eq!(
        col("u").as_fixed_size_binary().value(0),
        &[
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11
        ]
    );
    assert_eq!(col("ip").as_string::<i32>().value(0), "2001:db8::1/64");
    assert_eq!(col("ip").as_string::<i32>().value(2), "192.168.0.1");
    assert_eq!(col("net").as_string::<i32>().value(0), "10.0.0.0/8");
    assert_eq!(col("net").as_string::<i32>().value(2), "::/0");
    assert_eq!(col("mac").as_string::<i32>().value(0), "08:00:2b:01:02:03");
    assert_eq!(
        ty("e"),
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        "enums as dictionaries of their labels"
    );
    let e = arrow_cast::cast(&col("e"), &DataType::Utf8).unwrap();
    assert_eq!(e.as_string::<i32>().value(0), "happy");
    assert_eq!(e.as_string::<i32>().value(2), "sad");
    assert_eq!(col("dom").as_primitive::<Int32Type>().value(0), 5);
    assert_eq!(col("o").as_primitive::<Int64Type>().value(0), 4_294_967_295);
    assert!(t.as_string::<i32>().value(2).bytes().all(|b| b == b'x'));
}

#[test]
fn values_without_an_arrow_form_are_refused_by_name_or_read_as_null() {
    let db = Db::new("special");
    db.exec(
        "CREATE TABLE s (id int4 PRIMARY KEY, d date, ts timestamptz, n numeric(6,2),
                         far timestamp);
         INSERT INTO s VALUES (1, 'infinity', '-infinity', 'NaN', '294276-12-31 23:59:59'),
                              (2, '2024-01-01', NULL, 1.5, '2024-01-01');",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "s"}),
    );
    assert!(!ok);
    assert!(err.contains("column `d` (date)"), "{err}");
    assert!(err.contains("infinity"), "{err}");
    assert!(err.contains("special_values"), "{err}");
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "s", "special_values": "null"}),
    );
    assert!(ok, "{err}");
    let batch = one_batch(&dir.path().join("out"));
    for c in ["d", "ts", "n", "far"] {
        assert!(batch.column_by_name(c).unwrap().is_null(0), "{c}");
    }
    assert_eq!(
        batch
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .value(1),
        150
    );
}

#[test]
fn unsupported_types_are_refused_by_name_or_read_as_text() {
    let db = Db::new("unsupported");
    db.exec(
        "CREATE TYPE pair AS (a int4, b text);
         CREATE TABLE u (id int4 PRIMARY KEY, pr pair, r int4range, p point, m money);
         INSERT INTO u VALUES (1, '(1,\"x y\")', '[1,5)', '(1,2)', 12.5);",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "u"}),
    );
    assert!(!ok);
    for named in [
        "`pr` (pair)",
        "`r` (int4range)",
        "`p` (point)",
        "`m` (money)",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }
    assert!(
        err.contains("unsupported: \\\"text\\\"") || err.contains("unsupported: \"text\""),
        "{err}"
    );
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "u", "unsupported": "text"}),
    );
    assert!(ok, "{err}");
    let batch = one_batch(&dir.path().join("out"));
    let text = |c: &str| {
        batch
            .column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_owned()
    };
    assert_eq!(text("pr"), "(1,\"x y\")");
    assert_eq!(text("r"), "[1,5)");
    assert_eq!(text("p"), "(1,2)");
    // Only the columns asked for are read.
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "u", "columns": ["id"]}),
    );
    assert!(ok, "{err}");
    let batch = one_batch(&dir.path().join("out"));
    let read: Vec<&String> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| !n.starts_with("_op_"))
        .collect();
    assert_eq!(read, ["id"]);
}

#[test]
fn partitions_read_every_row_once_and_incremental_runs_continue_after_the_offset() {
    let db = Db::new("parts");
    db.exec(
        "CREATE TABLE big (id int8 PRIMARY KEY, v text);
         INSERT INTO big SELECT g * 7, 'row ' || g FROM generate_series(1, 20000) g;",
    );
    let sum = |dir: &Path| -> (usize, i64) {
        let batches = read_parquet(dir);
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let total = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .sum();
        (rows, total)
    };
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "big", "partitions": 4, "batch_size": 1000}),
    );
    assert!(ok, "{err}");
    assert_eq!(
        sum(&dir.path().join("out")),
        (20_000, 7 * 20_000 * 20_001 / 2)
    );

    // INCREMENTAL: all rows, then none, then the new ones only.
    let inc = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({"table": "big", "replication_key": "id", "partitions": 3});
    let (ok, err) = to_parquet(&db, inc.path(), "INCREMENTAL", cfg.clone());
    assert!(ok, "{err}");
    assert_eq!(sum(&inc.path().join("out")).0, 20_000);
    let (ok, err) = to_parquet(&db, inc.path(), "INCREMENTAL", cfg.clone());
    assert!(ok, "{err}");
    assert_eq!(sum(&inc.path().join("out")).0, 20_000);
    db.exec("INSERT INTO big SELECT g * 7, 'new' FROM generate_series(20001, 20005) g");
    let (ok, err) = to_parquet(&db, inc.path(), "INCREMENTAL", cfg);
    assert!(ok, "{err}");
    assert_eq!(
        sum(&inc.path().join("out")),
        (20_005, 7 * 20_005 * 20_006 / 2)
    );
}

#[test]
fn a_query_is_read_whole_and_bad_configurations_say_what_is_wrong() {
    let db = Db::new("query");
    db.exec(
        "CREATE TABLE q (id int4 PRIMARY KEY, x numeric(5,1));
         INSERT INTO q VALUES (1, 1.5), (2, 2.5), (3, NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"query": "SELECT id, x * 2 AS twice FROM q WHERE id < 3"}),
    );
    assert!(ok, "{err}");
    let batch = one_batch(&dir.path().join("out"));
    assert_eq!(batch.num_rows(), 2);
    // A computed numeric has no declared precision: its exact text.
    let mut twice: Vec<String> = (0..2)
        .map(|i| {
            batch
                .column_by_name("twice")
                .unwrap()
                .as_string::<i32>()
                .value(i)
                .to_owned()
        })
        .collect();
    twice.sort();
    assert_eq!(twice, ["3.0", "5.0"]);

    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "nope"}),
    );
    assert!(!ok);
    assert!(
        err.contains("table `nope` does not exist in schema `public`"),
        "{err}"
    );
    let (ok, err) = to_parquet(
        &db,
        dir.path(),
        "FULL_TABLE",
        serde_json::json!({"table": "q", "query": "SELECT 1"}),
    );
    assert!(!ok);
    assert!(err.contains("not both"), "{err}");
    let (ok, err) = run(
        dir.path(),
        serde_json::json!({
            "name": "pg-bad", "replication_mode": "FULL_TABLE",
            "source": {"postgres": {"url": "postgres://nobody@127.0.0.1:5432/nothing", "table": "q"}},
            "target": {"file": {"path": "out", "format": "parquet"}},
        }),
    );
    assert!(!ok);
    assert!(
        err.contains("cannot connect to PostgreSQL at `127.0.0.1:5432`"),
        "{err}"
    );
}

/// The source of `config`, loaded from the built plugin, and its partitions.
fn planned(
    config: &serde_json::Value,
) -> (
    std::sync::Arc<fastlane_host::plugins::LoadedPlugin>,
    fastlane_host::plugins::PluginSource,
    Vec<fastlane_plugin_api::Partition>,
) {
    let plugin = fastlane_tests::conformance::load("postgres");
    let source = plugin.create_source("postgres", config).expect("source");
    let partitions = source
        .partitions(&fastlane_plugin_api::ReadContext::default())
        .expect("partitions");
    (plugin, source, partitions)
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn every_partition_reads_the_table_as_of_one_moment() {
    let db = Db::new("snapshot");
    db.exec(
        "CREATE TABLE t (id int8 PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'before' FROM generate_series(1, 10000) g;",
    );
    let (_plugin, source, partitions) = planned(&source(
        &db,
        serde_json::json!({"table": "t", "partitions": 4, "batch_size": 1000}),
    ));
    assert_eq!(partitions.len(), 4);
    // Writes after planning, before any partition starts.
    db.exec(
        "DELETE FROM t WHERE id <= 100;
         INSERT INTO t SELECT g, 'new' FROM generate_series(10001, 10100) g;
         UPDATE t SET v = 'after' WHERE id = 5000;",
    );
    let mut batches = Vec::new();
    for p in &partitions {
        let mut stream = source.read(p).expect("read");
        while let Some(b) = stream.next_batch().expect("batch") {
            batches.push(b);
        }
    }
    assert_eq!(ids(&batches), (1..=10000).collect::<Vec<_>>());
    let values: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let v = b.column_by_name("v").unwrap().as_string::<i32>();
            (0..v.len())
                .map(|i| v.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(values.iter().all(|v| v == "before"), "no write is seen");
    // Counts for verification see the same moment.
    let counted: u64 = partitions.iter().map(|p| source.count(p).unwrap()).sum();
    assert_eq!(counted, 10_000);
    drop(source);
    // Once the source is gone, the table is read as it is.
    let (_plugin, source, partitions) = planned(&source_config_of(&db));
    let counted: u64 = partitions.iter().map(|p| source.count(p).unwrap()).sum();
    assert_eq!(counted, 10_000);
}

fn source_config_of(db: &Db) -> serde_json::Value {
    source(db, serde_json::json!({"table": "t"}))
}

#[test]
fn a_connection_lost_mid_partition_continues_after_the_last_key_read() {
    let db = Db::new("lost");
    db.exec(
        "CREATE TABLE t (id int8 PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('v', 50) FROM generate_series(1, 200000) g;",
    );
    let (_plugin, source, partitions) = planned(&source(
        &db,
        serde_json::json!({"table": "t", "batch_size": 5000, "application_name": "fl-lost-test"}),
    ));
    let mut stream = source.read(&partitions[0]).expect("read");
    let mut batches = vec![stream.next_batch().unwrap().unwrap()];
    // The reader's COPY is cut off by the server while it waits for the host.
    let killed = db.exec(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'fl-lost-test' AND query LIKE 'COPY%'",
    );
    assert_eq!(killed, "1");
    while let Some(b) = stream.next_batch().expect("the read continues") {
        batches.push(b);
    }
    assert_eq!(ids(&batches), (1..=200_000).collect::<Vec<_>>());
}

#[test]
fn one_dimensional_arrays_read_as_lists_and_other_arrays_are_refused_by_name() {
    let db = Db::new("arrays");
    db.exec(
        "CREATE TYPE color AS ENUM ('red', 'green');
         CREATE TABLE a (id int4 PRIMARY KEY, ints int4[], words text[], money numeric(5,2)[],
                         times timestamptz[], colors color[]);
         INSERT INTO a VALUES
           (1, '{1,NULL,3}', '{a,\"b c\",NULL,\"\"}', '{1.25,NULL}', '{\"2024-01-01 00:00:00+00\"}',
            '{green,NULL,red,green}'),
           (2, '{}', '{}', NULL, '{}', '{}'),
           (3, NULL, '{🦀}', '{-999.99}', NULL, NULL);",
    );
    let config = source(&db, serde_json::json!({"table": "a"}));
    let batches = read_all(&config);
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let schema = batch.schema();
    assert_eq!(
        schema.field_with_name("ints").unwrap().data_type(),
        &DataType::List(std::sync::Arc::new(arrow_schema::Field::new_list_field(
            DataType::Int32,
            true
        )))
    );
    let ints = batch.column_by_name("ints").unwrap().as_list::<i32>();
    let row0 = ints.value(0);
    let row0 = row0.as_primitive::<Int32Type>();
    assert_eq!(row0.iter().collect::<Vec<_>>(), [Some(1), None, Some(3)]);
    assert_eq!(ints.value(1).len(), 0, "an empty array is an empty list");
    assert!(ints.is_null(2), "a NULL array is a NULL list");
    let words = batch.column_by_name("words").unwrap().as_list::<i32>();
    let w0 = words.value(0);
    let w0 = w0.as_string::<i32>();
    assert_eq!(
        w0.iter().collect::<Vec<_>>(),
        [Some("a"), Some("b c"), None, Some("")]
    );
    assert_eq!(words.value(2).as_string::<i32>().value(0), "🦀");
    let money = batch.column_by_name("money").unwrap().as_list::<i32>();
    assert_eq!(
        money.value(0).data_type(),
        &DataType::Decimal128(5, 2),
        "elements keep their precision"
    );
    assert_eq!(
        money.value(0).as_primitive::<Decimal128Type>().value(0),
        125
    );
    assert_eq!(
        money.value(2).as_primitive::<Decimal128Type>().value(0),
        -99_999
    );
    let times = batch.column_by_name("times").unwrap().as_list::<i32>();
    assert_eq!(
        times
            .value(0)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_704_067_200_000_000
    );
    let colors = batch.column_by_name("colors").unwrap().as_list::<i32>();
    let c0 = arrow_cast::cast(&colors.value(0), &DataType::Utf8).unwrap();
    assert_eq!(
        c0.as_string::<i32>().iter().collect::<Vec<_>>(),
        [Some("green"), None, Some("red"), Some("green")],
        "arrays of enums are lists of dictionaries"
    );
    assert!(matches!(
        colors.value(0).data_type(),
        DataType::Dictionary(..)
    ));

    // A two-dimensional array, or one indexed from 0, has no exact list form.
    let first_error = |config: &serde_json::Value| -> String {
        let plugin = fastlane_tests::conformance::load("postgres");
        let source = plugin.create_source("postgres", config).unwrap();
        let partitions = source
            .partitions(&fastlane_plugin_api::ReadContext::default())
            .unwrap();
        let mut stream = source.read(&partitions[0]).unwrap();
        loop {
            match stream.next_batch() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("read without an error"),
                Err(e) => break e.to_string(),
            }
        }
    };
    db.exec("INSERT INTO a (id, ints) VALUES (4, '{{1,2},{3,4}}')");
    let err = first_error(&config);
    assert!(err.contains("column `ints` (integer[])"), "{err}");
    assert!(err.contains("2-dimensional"), "{err}");
    db.exec("UPDATE a SET ints = '[0:1]={5,6}' WHERE id = 4");
    let err = first_error(&config);
    assert!(err.contains("indexed from 0"), "{err}");
}

#[test]
fn text_uuid_and_keyless_tables_split_into_partitions_that_read_every_row_once() {
    let db = Db::new("keys");
    db.exec(
        "CREATE TABLE by_text (code text PRIMARY KEY, n int4);
         -- Skewed: most codes start with 'a'.
         INSERT INTO by_text SELECT CASE WHEN g % 10 < 8 THEN 'a' ELSE chr(98 + g % 20) END
                                    || lpad(g::text, 7, '0'), g
                             FROM generate_series(1, 30000) g;
         CREATE TABLE by_uuid (u uuid PRIMARY KEY, n int4);
         INSERT INTO by_uuid SELECT md5(g::text)::uuid, g FROM generate_series(1, 20000) g;
         CREATE TABLE keyless (n int4, v text);
         INSERT INTO keyless SELECT g, repeat('k', 50) FROM generate_series(1, 50000) g;",
    );
    for (table, extra, rows) in [
        ("by_text", json_key("code"), 30000),
        ("by_uuid", json_key("u"), 20000),
        ("keyless", serde_json::json!({}), 50000),
    ] {
        let mut config = source(&db, serde_json::json!({"table": table, "partitions": 4}));
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (_plugin, source, partitions) = planned(&config);
        assert!(
            partitions.len() >= 3,
            "{table}: {} partitions",
            partitions.len()
        );
        let mut ns = Vec::new();
        let mut counted = 0;
        for p in &partitions {
            counted += source.count(p).unwrap();
            let mut stream = source.read(p).expect("read");
            while let Some(b) = stream.next_batch().expect("batch") {
                let n = b.column_by_name("n").unwrap().as_primitive::<Int32Type>();
                ns.extend(n.values().iter().copied());
            }
        }
        ns.sort_unstable();
        assert_eq!(
            ns,
            (1..=rows).collect::<Vec<i32>>(),
            "{table}: every row once"
        );
        assert_eq!(counted, rows as u64, "{table}: counts per partition");
    }
}

fn json_key(key: &str) -> serde_json::Value {
    serde_json::json!({ "replication_key": key })
}

/// The server's certificate: the Debian package's self-signed `snakeoil` one, whose name is
/// its subject's common name.
const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn certificate_name() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline",
            "-in",
            SERVER_CERT,
        ])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))
        .map(|v| v.trim().trim_start_matches('=').trim().to_owned())
        .expect("the certificate's common name")
}

/// Whether the connection that read `config` used TLS (`Err`: why it could not connect).
fn read_over_tls(config: serde_json::Value) -> Result<bool, String> {
    let plugin = fastlane_tests::conformance::load("postgres");
    let source = plugin
        .create_source("postgres", &config)
        .map_err(|e| e.to_string())?;
    let partitions = source
        .partitions(&fastlane_plugin_api::ReadContext::default())
        .map_err(|e| e.to_string())?;
    let mut stream = source.read(&partitions[0]).map_err(|e| e.to_string())?;
    let batch = stream
        .next_batch()
        .map_err(|e| e.to_string())?
        .expect("a row");
    Ok(batch.column(0).as_boolean().value(0))
}

#[test]
fn connections_use_tls_as_sslmode_says_and_check_certificates_when_asked() {
    assert_eq!(
        common::psql("postgres", "SHOW ssl"),
        "on",
        "the test server offers TLS (Debian's package turns it on with its own certificate)"
    );
    let db = Db::new("tls");
    let query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let with = |extra: serde_json::Value| {
        let mut c = source(&db, serde_json::json!({"query": query}));
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    assert_eq!(
        read_over_tls(with(serde_json::json!({}))),
        Ok(true),
        "prefer"
    );
    assert_eq!(
        read_over_tls(with(serde_json::json!({"sslmode": "disable"}))),
        Ok(false)
    );
    assert_eq!(
        read_over_tls(with(serde_json::json!({"sslmode": "require"}))),
        Ok(true)
    );
    // The chain is checked against the given root; with verify-ca the name is not.
    assert_eq!(
        read_over_tls(with(
            serde_json::json!({"sslmode": "verify-ca", "sslrootcert": SERVER_CERT})
        )),
        Ok(true)
    );
    // verify-full: the certificate names another host than 127.0.0.1.
    let err = read_over_tls(with(
        serde_json::json!({"sslmode": "verify-full", "sslrootcert": SERVER_CERT}),
    ))
    .unwrap_err();
    assert!(
        err.contains("cannot connect to PostgreSQL at `127.0.0.1:5432`"),
        "{err}"
    );
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    // Another authority's root does not vouch for the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another authority", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let err = read_over_tls(with(
        serde_json::json!({"sslmode": "verify-ca", "sslrootcert": other}),
    ))
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // In a URL, with the host the certificate names (connecting to 127.0.0.1 all the same).
    let url = format!(
        "postgres://postgres@{}:5432/{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        certificate_name(),
        db.name,
        SERVER_CERT.replace('/', "%2F")
    );
    assert_eq!(
        read_over_tls(serde_json::json!({"url": url, "query": query})),
        Ok(true)
    );
    // Mistakes are named before connecting.
    let err = read_over_tls(serde_json::json!({
        "url": format!("{}?sslmode=sometimes", db.url()), "query": query,
        "sslrootcert": "/nowhere/root.crt",
    }))
    .unwrap_err();
    assert!(err.contains("`sslmode=sometimes`"), "{err}");
    assert!(
        err.contains("`sslrootcert` `/nowhere/root.crt` cannot be read"),
        "{err}"
    );
}

#[test]
fn a_composite_primary_key_splits_evenly_however_skewed_and_reads_resume_after_a_position() {
    let db = Db::new("composite");
    // 90% of the rows under one tenant: splitting on the first column alone would put them in
    // one partition.
    db.exec(
        "CREATE TABLE comp (tenant int4, code text, n int4, PRIMARY KEY (tenant, code));
         INSERT INTO comp SELECT CASE WHEN g <= 27000 THEN 1 ELSE 2 + g % 3 END,
                                 'c' || lpad((30001 - g)::text, 6, '0'), g
                          FROM generate_series(1, 30000) g;",
    );
    let config = source(
        &db,
        serde_json::json!({"table": "comp", "partitions": 4, "batch_size": 1000,
                           "application_name": "fl-composite-test"}),
    );
    let (_plugin, source, partitions) = planned(&config);
    assert_eq!(partitions.len(), 4);
    assert!(source.resumable(), "the primary key gives positions");
    let key_of = |b: &RecordBatch, i: usize| {
        (
            b.column_by_name("tenant")
                .unwrap()
                .as_primitive::<Int32Type>()
                .value(i),
            b.column_by_name("code")
                .unwrap()
                .as_string::<i32>()
                .value(i)
                .to_owned(),
        )
    };
    let mut all = Vec::new();
    let mut last_key = None;
    for p in &partitions {
        let mut stream = source.read(p).expect("read");
        let mut rows = 0;
        while let Some(b) = stream.next_batch().expect("batch") {
            for i in 0..b.num_rows() {
                let key = key_of(&b, i);
                assert!(
                    last_key.as_ref() < Some(&key),
                    "rows in key order across partitions"
                );
                last_key = Some(key);
            }
            rows += b.num_rows();
            let n = b.column_by_name("n").unwrap().as_primitive::<Int32Type>();
            all.extend(n.values().iter().copied());
        }
        assert!(
            (3_000..=12_000).contains(&rows),
            "partition {}: {rows} rows of 30,000",
            p.index
        );
        assert_eq!(source.count(p).unwrap(), rows as u64);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=30000).collect::<Vec<i32>>(), "every row once");

    // A position is the row of the key's values; a read continues after it.
    let mut stream = source.read(&partitions[1]).expect("read");
    let first = stream.next_batch().unwrap().unwrap();
    let position = stream.position().expect("a position");
    let (tenant, code) = key_of(&first, first.num_rows() - 1);
    assert_eq!(position, serde_json::json!([tenant, code]));
    let mut rest = source
        .read_range(
            &partitions[1],
            &fastlane_plugin_api::ReadRange {
                after: Some(position),
                upto: None,
            },
        )
        .expect("read after the position");
    let mut resumed = first.num_rows();
    let next = rest.next_batch().unwrap().unwrap();
    assert!(
        key_of(&next, 0) > (tenant, code),
        "the next row, not a repeat"
    );
    resumed += next.num_rows();
    while let Some(b) = rest.next_batch().unwrap() {
        resumed += b.num_rows();
    }
    assert_eq!(resumed as u64, source.count(&partitions[1]).unwrap());

    // A connection lost mid-partition continues after the last key read.
    let mut config = config;
    config["application_name"] = serde_json::json!("fl-composite-lost");
    let (_plugin, source, partitions) = planned(&config);
    let mut stream = source.read(&partitions[0]).expect("read");
    let mut rows = stream.next_batch().unwrap().unwrap().num_rows();
    let killed = db.exec(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'fl-composite-lost' AND query LIKE 'COPY%'",
    );
    assert_eq!(killed, "1");
    while let Some(b) = stream.next_batch().expect("the read continues") {
        rows += b.num_rows();
    }
    assert_eq!(rows as u64, source.count(&partitions[0]).unwrap());
}
