//! End-to-end tests of the `mysql` source and target against the real server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::{Db, run};
use fastlane_plugin_api::{ReadContext, ReplicationMode, Source, Target, WriteContext};
use serde_json::json;

/// Runs the `mysql` source with `source` (plus the connection) into Parquet files under `out`.
fn to_parquet(
    db: &Db,
    source: serde_json::Value,
    out: &std::path::Path,
) -> Result<fastlane_host::engine::RunSummary, String> {
    run(
        ("mysql", "mysql", db.config(source)),
        ("file", "file", json!({"path": out, "format": "parquet"})),
        ReplicationMode::FullTable,
    )
}

const ALL_TYPES: &str = "CREATE TABLE typed (
  id BIGINT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, ii INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(20,4), dz DECIMAL(5,0) UNSIGNED, d2 DECIMAL(50,10), f FLOAT, db DOUBLE,
  b1 BIT(1), b5 BIT(5), b64 BIT(64), bo BOOL, c CHAR(3), v VARCHAR(100), t TEXT, lt LONGTEXT,
  bn BINARY(4), vb VARBINARY(10), bl BLOB, dt DATE, dtt DATETIME, dt6 DATETIME(6),
  ts TIMESTAMP(6) NULL, tm TIME(6), y YEAR, e ENUM('a','b c'), s SET('x','y'), j JSON
) DEFAULT CHARSET=utf8mb4";

/// Columns in table order.
const TYPED_COLUMNS: &[&str] = &[
    "id", "ti", "tu", "si", "su", "mi", "mu", "ii", "iu", "bi", "bu", "d", "dz", "d2", "f", "db",
    "b1", "b5", "b64", "bo", "c", "v", "t", "lt", "bn", "vb", "bl", "dt", "dtt", "dt6", "ts", "tm",
    "y", "e", "s", "j",
];

fn fill_typed(db: &Db) {
    db.exec(ALL_TYPES);
    db.exec(
        "INSERT INTO typed VALUES
         (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
          -9223372036854775808, 18446744073709551615, -1234567890123456.7891, 99999,
          12345678901234567890123456789012345678.9012345678, 1.5, 2.2250738585072014e-308,
          b'1', b'10101', b'1111111111111111111111111111111111111111111111111111111111111111',
          TRUE, 'abc', 'héllo 😀 ünïcödé', 'tab\there\nnewline\\\\back', REPEAT('long ', 2000),
          0x00ff0102, 0xdeadbeef, 0x000102ff, '2024-02-29', '9999-12-31 23:59:59',
          '2024-02-29 23:59:59.123456', '2038-01-19 03:14:07.999999', '23:59:59.999999',
          2155, 'b c', 'x,y', '{\"a\": [1, 2, {\"b\": null}], \"é\": \"😀\"}'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', b'0', b'0', FALSE, '', '', '', '',
          0x00000000, '', '', '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000001',
          '1970-01-01 00:00:01', '00:00:00', 1901, 'a', '', '[]')",
    );
    // Many more rows of every kind, with NULLs sprinkled in every column.
    db.exec(
        "INSERT INTO typed SELECT seq + 10, seq % 100 - 50, seq % 256, seq % 30000, seq % 65536,
          seq * 3 % 8000000, seq % 16777216, seq * 7919 - 4000000, seq * 4099, seq * 1000003 - 5,
          18446744073709551615 - seq, seq * 1.2345 - 999, seq % 99999,
          IF(seq % 11 = 0, NULL, seq * 3.3333333333), seq / 7, SIN(seq) * 1e10,
          seq % 2, seq % 32, seq, seq % 2 = 0, LEFT(MD5(seq), seq % 4),
          IF(seq % 13 = 0, NULL, CONCAT('név ', seq, ' 🚀')), REPEAT('x', seq % 50),
          IF(seq % 5 = 0, NULL, MD5(seq)), UNHEX(LPAD(HEX(seq), 8, '0')), UNHEX(HEX(seq)),
          IF(seq % 9 = 0, NULL, UNHEX(MD5(seq))), DATE('2000-01-01') + INTERVAL seq DAY,
          TIMESTAMP('2000-01-01') + INTERVAL seq * 3607 SECOND,
          TIMESTAMP('2000-01-01') + INTERVAL seq * 1000003 MICROSECOND,
          IF(seq % 17 = 0, NULL, TIMESTAMP('2001-01-01') + INTERVAL seq MINUTE),
          SEC_TO_TIME(seq % 86400) + INTERVAL seq % 1000 MICROSECOND, 1901 + seq % 255,
          IF(seq % 3 = 0, 'a', 'b c'), IF(seq % 4 = 0, 'x', 'y'), JSON_OBJECT('n', seq)
         FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_2000) AS s",
    );
}

#[test]
fn every_mysql_type_maps_to_its_arrow_type() {
    let db = Db::new("type_mapping");
    fill_typed(&db);
    let out = tempfile::tempdir().expect("temp dir");
    to_parquet(
        &db,
        json!({"table": "typed", "batch_size": 500}),
        out.path(),
    )
    .expect("mysql → parquet");
    let batches = common::read_parquet(out.path());
    let schema = batches[0].schema();
    let expected: &[(&str, DataType)] = &[
        ("ti", DataType::Int8),
        ("tu", DataType::UInt8),
        ("si", DataType::Int16),
        ("su", DataType::UInt16),
        ("mi", DataType::Int32),
        ("mu", DataType::UInt32),
        ("ii", DataType::Int32),
        ("iu", DataType::UInt32),
        ("bi", DataType::Int64),
        ("bu", DataType::UInt64),
        ("d", DataType::Decimal128(20, 4)),
        ("dz", DataType::Decimal128(5, 0)),
        ("d2", DataType::Decimal256(50, 10)),
        ("f", DataType::Float32),
        ("db", DataType::Float64),
        ("b1", DataType::Boolean),
        ("b5", DataType::UInt64),
        ("b64", DataType::UInt64),
        ("bo", DataType::Boolean),
        ("c", DataType::Utf8),
        ("v", DataType::Utf8),
        ("t", DataType::Utf8),
        ("lt", DataType::Utf8),
        ("bn", DataType::Binary),
        ("vb", DataType::Binary),
        ("bl", DataType::Binary),
        ("dt", DataType::Date32),
        ("dtt", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("dt6", DataType::Timestamp(TimeUnit::Microsecond, None)),
        (
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("tm", DataType::Time64(TimeUnit::Microsecond)),
        ("y", DataType::Int16),
        ("e", DataType::Utf8),
        ("s", DataType::Utf8),
        ("j", DataType::Utf8),
    ];
    for (name, data_type) in expected {
        let field = schema.field_with_name(name).expect("field");
        assert_eq!(field.data_type(), data_type, "column `{name}`");
        assert!(field.is_nullable(), "column `{name}` is nullable");
        assert!(
            field
                .metadata()
                .contains_key(fastlane_plugin_mysql::COLUMN_TYPE_KEY),
            "column `{name}` keeps its MySQL type"
        );
    }
    assert!(!schema.field_with_name("id").expect("id").is_nullable());
    // Spot checks of exact values in the first row.
    let first = batches
        .iter()
        .find(|b| b.column(0).as_primitive::<Int64Type>().value(0) == 1)
        .expect("row 1");
    let col = |name: &str| first.column(schema.index_of(name).expect("column")).clone();
    let show = |name: &str| {
        arrow_cast::display::ArrayFormatter::try_new(
            col(name).as_ref(),
            &arrow_cast::display::FormatOptions::default(),
        )
        .expect("formatter")
        .value(0)
        .to_string()
    };
    assert_eq!(show("bu"), "18446744073709551615");
    assert_eq!(show("bi"), "-9223372036854775808");
    assert_eq!(show("d"), "-1234567890123456.7891");
    assert_eq!(
        show("d2"),
        "12345678901234567890123456789012345678.9012345678"
    );
    assert_eq!(show("b5"), "21");
    assert_eq!(show("b64"), "18446744073709551615");
    assert_eq!(show("v"), "héllo 😀 ünïcödé");
    assert_eq!(show("dt6"), "2024-02-29T23:59:59.123456");
    let ts = arrow_cast::cast(&col("ts"), &DataType::Int64).expect("cast");
    assert_eq!(
        ts.as_primitive::<Int64Type>().value(0),
        2_147_483_647_999_999
    );
    assert_eq!(show("tm"), "23:59:59.999999");
    assert_eq!(show("y"), "2155");
    assert_eq!(show("e"), "b c");
    assert_eq!(show("bn"), "00ff0102");
}

#[test]
fn round_trip_mysql_parquet_mysql_keeps_every_value() {
    let db = Db::new("round_trip");
    fill_typed(&db);
    let out = tempfile::tempdir().expect("temp dir");
    to_parquet(
        &db,
        json!({"table": "typed", "batch_size": 700}),
        out.path(),
    )
    .expect("mysql → parquet");
    for (table, method) in [
        ("back_load", "load_data"),
        ("back_insert", "insert"),
        ("back_bulk", "bulk"),
    ] {
        run(
            (
                "file",
                "file",
                json!({"path": out.path(), "format": "parquet"}),
            ),
            (
                "mysql",
                "mysql",
                db.config(json!({"table": table, "key": "id", "load_method": method})),
            ),
            ReplicationMode::FullTable,
        )
        .unwrap_or_else(|e| panic!("parquet → mysql with {method}: {e}"));
        // The same definition, column for column…
        let definition = |t: &str| {
            db.rows(&format!(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{t}' ORDER BY ORDINAL_POSITION",
                db.name
            ))
            .into_iter()
            .map(|r| {
                (
                    r.get::<String, _>(0).expect("name"),
                    r.get::<String, _>(1).expect("type"),
                    r.get::<String, _>(2).expect("nullable"),
                )
            })
            .collect::<Vec<_>>()
        };
        assert_eq!(definition(table), definition("typed"), "{method}");
        // …and the same content: the server's own checksum and a per-value one.
        let server_sum = |t: &str| {
            db.rows(&format!("CHECKSUM TABLE `{t}`"))[0]
                .get::<u64, _>(1)
                .expect("checksum")
        };
        assert_eq!(server_sum(table), server_sum("typed"), "{method}");
        assert_eq!(
            db.checksum(table, TYPED_COLUMNS),
            db.checksum("typed", TYPED_COLUMNS),
            "{method}"
        );
    }
}

/// Runs with `verify: "checksum"`, and returns the verification's summary.
fn run_checksummed(
    source: (&str, &str, serde_json::Value),
    target: (&str, &str, serde_json::Value),
) -> fastlane_host::engine::VerificationSummary {
    let summary = common::run_with(source, target, ReplicationMode::FullTable, |o| {
        o.verify = fastlane_host::engine::Verify::Checksum;
    })
    .unwrap_or_else(|e| panic!("a load verified by checksum failed: {e}"));
    summary.verification.expect("a verification summary")
}

#[test]
fn checksums_in_sql_agree_with_checksums_of_the_arrow_data_for_every_type() {
    let db = Db::new("checksums");
    fill_typed(&db);
    let out = tempfile::tempdir().expect("temp dir");
    let passed = fastlane_host::engine::VerificationStatus::Passed;

    // MySQL → Parquet: the server's checksum of each partition equals the one the run computes
    // from the batches it read; the Parquet files read back give it too.
    let v = run_checksummed(
        (
            "mysql",
            "mysql",
            db.config(json!({"table": "typed", "batch_size": 300, "partitions": 3})),
        ),
        (
            "file",
            "file",
            json!({"path": out.path(), "format": "parquet"}),
        ),
    );
    assert_eq!(v.status, passed, "{v:?}");
    assert_eq!(v.source_rows, Some(2003), "{v:?}");
    let whole = v.source_checksum.clone().expect("the source's checksum");
    assert_eq!(v.target_checksum.as_deref(), Some(whole.as_str()), "{v:?}");

    // Parquet → MySQL: the server's checksum of the staging table, over the columns as they
    // were written, equals the one of the batches written into it.
    for method in ["load_data", "bulk"] {
        let table = format!("back_{method}");
        let v = run_checksummed(
            (
                "file",
                "file",
                json!({"path": out.path(), "format": "parquet"}),
            ),
            (
                "mysql",
                "mysql",
                db.config(json!({"table": table, "key": "id", "load_method": method})),
            ),
        );
        assert_eq!(v.status, passed, "{method}: {v:?}");
        assert_eq!(v.source_checksum.as_deref(), Some(whole.as_str()), "{v:?}");
        assert_eq!(v.target_checksum.as_deref(), Some(whole.as_str()), "{v:?}");
    }

    // MySQL → MySQL, and a query (its result set's types decide the encoding).
    let v = run_checksummed(
        ("mysql", "mysql", db.config(json!({"table": "typed"}))),
        (
            "mysql",
            "mysql",
            db.config(json!({"table": "copy", "key": "id"})),
        ),
    );
    assert_eq!(v.status, passed, "{v:?}");
    assert_eq!(v.target_checksum.as_deref(), Some(whole.as_str()), "{v:?}");
    let v = run_checksummed(
        (
            "mysql",
            "mysql",
            db.config(json!({"query": "SELECT id, d, f, db, v, dt6 FROM typed WHERE id < 100"})),
        ),
        (
            "file",
            "file",
            json!({"path": out.path().join("q"), "format": "parquet"}),
        ),
    );
    assert_eq!(v.status, passed, "{v:?}");
    assert_eq!(v.source_checksum, v.target_checksum, "{v:?}");

    // Floats and doubles of every magnitude, rounded at the 30th decimal or beyond 10³⁵.
    db.exec("CREATE TABLE floats (id INT PRIMARY KEY, f FLOAT, d DOUBLE)");
    db.exec(
        "INSERT INTO floats SELECT n, (RAND(n) - 0.5) * POW(10, n % 70 - 40), \
         (RAND(n + 1) - 0.5) * POW(10, n % 90 - 45) \
         FROM (SELECT CAST(seq AS SIGNED) AS n FROM seq_1_to_20000) AS s",
    );
    let v = run_checksummed(
        ("mysql", "mysql", db.config(json!({"table": "floats"}))),
        (
            "mysql",
            "mysql",
            db.config(json!({"table": "floats_copy", "key": "id"})),
        ),
    );
    assert_eq!(v.status, passed, "{v:?}");
    assert_eq!(v.source_checksum, v.target_checksum, "{v:?}");
}

#[test]
fn zero_dates_fail_clearly_or_read_as_null() {
    let db = Db::new("zero_dates");
    db.exec("SET SESSION sql_mode = ''");
    db.exec("CREATE TABLE z (id INT PRIMARY KEY, d DATE, t DATETIME)");
    db.exec("INSERT INTO z VALUES (1, '2020-01-01', '2020-01-01 10:00:00'), (2, '0000-00-00', '0000-00-00 00:00:00'), (3, '2021-02-00', NULL)");
    let out = tempfile::tempdir().expect("temp dir");
    let err = to_parquet(&db, json!({"table": "z"}), out.path())
        .expect_err("zero dates are refused by default");
    assert!(
        err.contains("column `d` holds a zero date `0000-00-00` in the row with key 2"),
        "{err}"
    );
    assert!(err.contains("zero_dates: \"null\""), "{err}");
    to_parquet(&db, json!({"table": "z", "zero_dates": "null"}), out.path())
        .expect("zero dates as NULL");
    let batches = common::read_parquet(out.path());
    let text = fastlane_tests::conformance::rows_as_text(&batches, &["d", "t"]);
    assert_eq!(
        text,
        vec![
            vec![
                "1".to_owned(),
                "2020-01-01".into(),
                "2020-01-01T10:00:00".into()
            ],
            vec!["2".to_owned(), "NULL".into(), "NULL".into()],
            vec!["3".to_owned(), "NULL".into(), "NULL".into()],
        ]
    );
}

#[test]
fn time_beyond_a_day_needs_durations() {
    let db = Db::new("time_as");
    db.exec("CREATE TABLE tm (id INT PRIMARY KEY, t TIME(6))");
    db.exec("INSERT INTO tm VALUES (1, '-01:30:00'), (2, '838:59:59.000001'), (3, '12:00:00')");
    let out = tempfile::tempdir().expect("temp dir");
    let err = to_parquet(&db, json!({"table": "tm"}), out.path())
        .expect_err("a negative TIME is no time of day");
    assert!(err.contains("time_as: \"duration\""), "{err}");
    to_parquet(
        &db,
        json!({"table": "tm", "time_as": "duration"}),
        out.path(),
    )
    .expect("durations");
    let batches = common::read_parquet(out.path());
    let values: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_primitive::<arrow_array::types::DurationMicrosecondType>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        values,
        vec![-5_400_000_000, 3_020_399_000_001, 43_200_000_000]
    );
}

fn ids_of(batches: &[RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let c = arrow_cast::cast(b.column(0), &DataType::Int64).expect("cast");
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn read_all(db: &Db, config: serde_json::Value, context: ReadContext) -> Vec<RecordBatch> {
    let plugin = common::plugin("mysql");
    let source = plugin
        .create_source("mysql", &db.config(config))
        .expect("source");
    let partitions = source.partitions(&context).expect("partitions");
    let mut out = Vec::new();
    for p in partitions {
        let mut stream = source.read(&p).expect("read");
        while let Some(b) = stream.next_batch().expect("batch") {
            out.push(b);
        }
    }
    out
}

#[test]
fn partitioned_reads_give_the_same_rows() {
    let db = Db::new("partitions");
    db.exec(
        "CREATE TABLE p (id BIGINT PRIMARY KEY, code VARCHAR(20) NOT NULL, at DATETIME(6) NOT NULL,
         amount DECIMAL(10,2) NOT NULL, KEY (code), KEY (at), KEY (amount))",
    );
    // Ids with gaps and a skewed tail.
    db.exec(
        "INSERT INTO p SELECT seq * 3 + IF(seq > 9000, seq * 100, 0), CONCAT('k', LPAD(seq, 6, '0')),
         TIMESTAMP('2020-01-01') + INTERVAL seq * 977 SECOND, seq * 1.25 FROM seq_1_to_10000",
    );
    let all: Vec<i64> = ids_of(&read_all(
        &db,
        json!({"table": "p", "batch_size": 777}),
        ReadContext::default(),
    ));
    assert_eq!(all.len(), 10_000);
    let context = ReadContext {
        parallelism: 4,
        ..ReadContext::default()
    };
    for config in [
        json!({"table": "p", "batch_size": 500, "partitions": 2}),
        json!({"table": "p", "batch_size": 333, "partitions": 7}),
        json!({"table": "p", "batch_size": 1000, "partitions": 3, "key": "at"}),
        json!({"table": "p", "batch_size": 1000, "partitions": 4, "key": "amount"}),
        json!({"table": "p", "batch_size": 250, "key": "code", "partition_bounds": ["k000100", "k005000", "k009999"]}),
        json!({"table": "p", "batch_size": 250, "partition_bounds": [5, 30000]}),
    ] {
        let plugin = common::plugin("mysql");
        let source = plugin
            .create_source("mysql", &db.config(config.clone()))
            .expect("source");
        let partitions = source.partitions(&context).expect("partitions");
        assert!(
            partitions.len() > 1,
            "{config}: {} partitions",
            partitions.len()
        );
        let got = ids_of(&read_all(&db, config.clone(), context.clone()));
        assert_eq!(got.len(), all.len(), "{config}");
        assert!(
            got == all,
            "{config}: partitioned reads differ from one read"
        );
    }
    // The same through the engine, into Parquet, with two partitions read at once.
    let out = tempfile::tempdir().expect("temp dir");
    to_parquet(
        &db,
        json!({"table": "p", "partitions": 2, "batch_size": 600}),
        out.path(),
    )
    .expect("partitioned run");
    assert!(ids_of(&common::read_parquet(out.path())) == all);
    // A string key cannot be split without bounds.
    let plugin = common::plugin("mysql");
    let source = plugin
        .create_source(
            "mysql",
            &db.config(json!({"table": "p", "key": "code", "partitions": 3})),
        )
        .expect("source");
    let err = source.partitions(&context).expect_err("no bounds");
    assert!(err.to_string().contains("partition_bounds"), "{err}");
}

#[test]
fn a_key_with_repeated_values_loses_nothing_at_page_edges() {
    let db = Db::new("ties");
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, grp INT NOT NULL, KEY (grp))");
    // Groups of 1 to 12 rows sharing a key.
    db.exec("INSERT INTO t SELECT seq, FLOOR(SQRT(seq) * 3) FROM seq_1_to_3000");
    for batch_size in [1, 5, 7, 64, 5000] {
        let got = ids_of(&read_all(
            &db,
            json!({"table": "t", "key": "grp", "batch_size": batch_size}),
            ReadContext::default(),
        ));
        assert_eq!(got.len(), 3000, "batch_size {batch_size}");
        assert!(
            got == (1..=3000).collect::<Vec<i64>>(),
            "batch_size {batch_size}"
        );
    }
}

#[test]
fn incremental_runs_continue_after_the_target_offset() {
    let db = Db::new("incremental");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(9,2))");
    db.exec("INSERT INTO src SELECT seq, CONCAT('n', seq), seq / 4 FROM seq_1_to_1000");
    let columns = ["id", "name", "amount"];
    let go = || {
        run(
            (
                "mysql",
                "mysql",
                db.config(json!({"table": "src", "key": "id", "batch_size": 128, "partitions": 2})),
            ),
            (
                "mysql",
                "mysql",
                db.config(json!({"table": "dst", "key": "id"})),
            ),
            ReplicationMode::Incremental,
        )
        .expect("incremental run")
    };
    let first = go();
    assert_eq!(first.rows_loaded, 1000);
    assert_eq!(db.checksum("dst", &columns), db.checksum("src", &columns));
    db.exec("INSERT INTO src SELECT seq, CONCAT('m', seq), seq / 8 FROM seq_1001_to_1500");
    // A row below the offset changes: INCREMENTAL by key does not see it, by design.
    let second = go();
    assert_eq!(second.rows_loaded, 500, "only the new rows are read");
    assert_eq!(db.checksum("dst", &columns), db.checksum("src", &columns));
    let third = go();
    assert_eq!(third.rows_loaded, 0);
    assert_eq!(db.checksum("dst", &columns), db.checksum("src", &columns));
    // The target's offset is its largest key.
    let target = common::plugin("mysql")
        .create_target("mysql", &db.config(json!({"table": "dst", "key": "id"})))
        .expect("target");
    assert_eq!(target.get_offset().expect("offset"), Some(json!(1500)));
    assert!(
        db.tables().iter().all(|t| !t.starts_with("_fastlane")),
        "no staging table is left: {:?}",
        db.tables()
    );
}

#[test]
fn incremental_upserts_rows_already_there() {
    let db = Db::new("upsert");
    db.exec("CREATE TABLE dst (id BIGINT PRIMARY KEY, v VARCHAR(10), extra INT DEFAULT 7)");
    db.exec("INSERT INTO dst (id, v) VALUES (1, 'old'), (2, 'old')");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![2, 3])),
            Arc::new(StringArray::from(vec!["new", "new"])),
        ],
    )
    .expect("batch");
    let mut target = common::plugin("mysql")
        .create_target("mysql", &db.config(json!({"table": "dst", "key": "id"})))
        .expect("target");
    target
        .open(&WriteContext {
            mode: ReplicationMode::Incremental,
            run_id: "r1".into(),
            concurrency: 1,
            checkpoint: None,
        })
        .expect("open");
    let mut writer = target.writer(0).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
    target.commit().expect("commit");
    let rows: Vec<(i64, String, i32)> = db
        .rows("SELECT id, v, extra FROM dst ORDER BY id")
        .into_iter()
        .map(mysql_async::from_row)
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "old".into(), 7),
            (2, "new".into(), 7),
            (3, "new".into(), 7)
        ]
    );
}

#[test]
fn every_mistake_gets_one_clear_error() {
    let db = Db::new("mistakes");
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, k INT NULL, name TEXT, flags BIT(8))");
    db.exec("INSERT INTO t VALUES (1, 1, 'a', b'1'), (2, NULL, 'b', b'10')");
    let out = tempfile::tempdir().expect("temp dir");
    let attempt = |config: serde_json::Value| {
        run(
            ("mysql", "mysql", config),
            (
                "file",
                "file",
                json!({"path": out.path(), "format": "parquet"}),
            ),
            ReplicationMode::FullTable,
        )
        .expect_err("must fail")
    };
    let cases = [
        (
            db.config(json!({"table": "t", "password": "wrong"})),
            "access denied for user `root`",
        ),
        (
            db.config(json!({"table": "t", "db": "fl_no_such_database"})),
            "database `fl_no_such_database` does not exist",
        ),
        (db.config(json!({"table": "nope"})), "does not exist"),
        (
            db.config(json!({"table": "t", "key": "missing"})),
            "unknown replication key `missing`",
        ),
        (
            db.config(json!({"table": "t", "key": "k"})),
            "has NULL values",
        ),
        (
            db.config(json!({"table": "t", "key": "flags"})),
            "cannot be paged on",
        ),
        (
            db.config(json!({"table": "t", "columns": ["id", "ghost"]})),
            "lacks: `ghost`",
        ),
        (
            db.config(json!({"table": "t", "port": 1, "connect_timeout_secs": 2})),
            "cannot connect to MySQL at `127.0.0.1:1`",
        ),
        (
            db.config(json!({"table": "t", "secret": "prod/mysql", "secret_region": "eu-west-1"})),
            "`secret` `prod/mysql` was not resolved",
        ),
    ];
    for (config, expected) in cases {
        let err = attempt(config.clone());
        assert!(
            err.contains(expected),
            "{config}:\n{err}\nexpected: {expected}"
        );
        assert!(!err.contains("panic"), "{err}");
    }
}

#[test]
fn a_value_the_table_cannot_hold_fails_the_load_and_changes_nothing() {
    let db = Db::new("warnings");
    db.exec("CREATE TABLE dst (id BIGINT PRIMARY KEY, code VARCHAR(3))");
    db.exec("INSERT INTO dst VALUES (1, 'old')");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("code", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![5, 6])),
            Arc::new(StringArray::from(vec!["ok", "too long"])),
        ],
    )
    .expect("batch");
    for method in ["load_data", "insert", "bulk"] {
        let mut target = common::plugin("mysql")
            .create_target(
                "mysql",
                &db.config(json!({"table": "dst", "key": "id", "load_method": method})),
            )
            .expect("target");
        target
            .open(&WriteContext {
                mode: ReplicationMode::FullTable,
                run_id: format!("r-{method}"),
                concurrency: 1,
                checkpoint: None,
            })
            .expect("open");
        let mut writer = target.writer(0).expect("writer");
        let err = writer.write(batch.clone()).expect_err("too long");
        assert!(err.to_string().contains("code"), "{method}: {err}");
        target.abort().expect("abort");
        assert_eq!(db.value("SELECT GROUP_CONCAT(code) FROM dst"), "old");
        assert_eq!(db.tables(), vec!["dst".to_owned()]);
    }
}

#[test]
fn two_runs_never_load_one_table_at_once() {
    let db = Db::new("locked");
    db.exec(&format!("SELECT GET_LOCK('fastlane:{}.dst', 10)", db.name));
    let out = tempfile::tempdir().expect("temp dir");
    std::fs::write(out.path().join("a.csv"), "id\n1\n").expect("write");
    let err = run(
        (
            "file",
            "file",
            json!({"path": out.path().join("a.csv"), "format": "csv"}),
        ),
        (
            "mysql",
            "mysql",
            db.config(json!({"table": "dst", "key": "id"})),
        ),
        ReplicationMode::FullTable,
    )
    .expect_err("locked");
    assert!(err.contains("another run is loading"), "{err}");
    db.exec(&format!("SELECT RELEASE_LOCK('fastlane:{}.dst')", db.name));
}

#[test]
fn the_source_resumes_after_its_connection_is_killed() {
    let db = Db::new("source_kill");
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))");
    db.exec("INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_20000");
    let plugin = common::plugin("mysql");
    let source = plugin
        .create_source(
            "mysql",
            &db.config(json!({"table": "t", "batch_size": 500, "retry_timeout_secs": 30})),
        )
        .expect("source");
    let partitions = source
        .partitions(&ReadContext::default())
        .expect("partitions");
    let mut stream = source.read(&partitions[0]).expect("read");
    let mut ids = Vec::new();
    let mut kills = 0;
    let mut batches = 0;
    while let Some(b) = stream.next_batch().expect("batch after reconnecting") {
        ids.extend(
            b.column(0)
                .as_primitive::<arrow_array::types::Int32Type>()
                .values()
                .iter()
                .map(|&v| i64::from(v)),
        );
        batches += 1;
        if batches % 8 == 3 {
            kills += db.kill_plugin_connections();
        }
    }
    assert!(kills >= 3, "connections were killed {kills} times");
    assert_eq!(ids.len(), 20_000, "no row lost or repeated");
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 20_000);
}

#[test]
fn the_target_resumes_after_its_connection_is_killed() {
    let db = Db::new("target_kill");
    let mut target = common::plugin("mysql")
        .create_target(
            "mysql",
            &db.config(json!({"table": "dst", "key": "id", "batch_size": 300})),
        )
        .expect("target");
    target
        .open(&WriteContext {
            mode: ReplicationMode::FullTable,
            run_id: "r".into(),
            concurrency: 1,
            checkpoint: None,
        })
        .expect("open");
    let mut writer = target.writer(0).expect("writer");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let mut kills = 0;
    for chunk in 0..10i64 {
        let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
        let text: Vec<String> = ids.iter().map(|i| format!("v{i}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(text)),
            ],
        )
        .expect("batch");
        writer.write(batch).expect("write after reconnecting");
        kills += db.kill_plugin_connections();
    }
    writer.close().expect("close");
    target.commit().expect("commit");
    assert!(kills >= 10, "killed {kills}");
    assert_eq!(db.value("SELECT COUNT(*) FROM dst"), "10000");
    assert_eq!(db.value("SELECT COUNT(DISTINCT id) FROM dst"), "10000");
    assert_eq!(
        db.value("SELECT SUM(id) FROM dst"),
        (0..10_000i64).sum::<i64>().to_string()
    );
}

/// A TCP relay in front of the server, so a test can cut the network and bring it back.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    fn start() -> Self {
        let listener = common::rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        common::rt().spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", common::port())).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                open2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Self { port, up, open }
    }

    /// Drops every open connection; new ones are refused until `restore`.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.open.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_network_outage_is_survived_or_reported_after_the_retry_budget() {
    let db = Db::new("outage");
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))");
    db.exec("INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_5000");
    let relay = Relay::start();
    let plugin = common::plugin("mysql");
    let config = |budget: u64| {
        db.config(json!({"table": "t", "port": relay.port, "prefer_socket": false, "batch_size": 250, "retry_timeout_secs": budget}))
    };
    // A short outage: reading resumes where it stopped.
    let source = plugin.create_source("mysql", &config(30)).expect("source");
    let partitions = source
        .partitions(&ReadContext::default())
        .expect("partitions");
    let mut stream = source.read(&partitions[0]).expect("read");
    let mut rows = stream
        .next_batch()
        .expect("first")
        .expect("batch")
        .num_rows();
    relay.cut();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relay.restore();
    while let Some(b) = stream.next_batch().expect("resumed after the outage") {
        rows += b.num_rows();
    }
    assert_eq!(rows, 5000);
    // An outage longer than the budget: a clear error naming it.
    let source = plugin.create_source("mysql", &config(2)).expect("source");
    let partitions = source
        .partitions(&ReadContext::default())
        .expect("partitions");
    let mut stream = source.read(&partitions[0]).expect("read");
    stream.next_batch().expect("first").expect("batch");
    relay.cut();
    let started = std::time::Instant::now();
    let err = loop {
        match stream.next_batch() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended as if complete"),
            Err(e) => break e,
        }
    };
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("could not resume within 2 s"), "{text}");
    assert!(text.contains("retry_timeout_secs"), "{text}");
}

#[test]
fn a_killed_process_leaves_the_target_as_it_was_and_a_rerun_loads_exactly_the_source() {
    let db = Db::new("kill_process");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64), n DOUBLE)");
    db.exec("INSERT INTO src SELECT seq, MD5(seq), seq / 3 FROM seq_1_to_400000");
    db.exec("CREATE TABLE dst (id BIGINT PRIMARY KEY, v VARCHAR(64), n DOUBLE)");
    db.exec("INSERT INTO dst SELECT seq, MD5(seq), seq / 3 FROM seq_1_to_1000");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pipeline.json");
    std::fs::write(
        &config,
        json!({
            "name": "kill",
            "replication_mode": "INCREMENTAL",
            "source": {"mysql": db.config(json!({"table": "src", "batch_size": 2000}))},
            "transform": {"add_op_fields": false},
            "target": {"mysql": db.config(json!({"table": "dst", "key": "id", "batch_size": 2000}))}
        })
        .to_string(),
    )
    .expect("config");
    let before = db.checksum("dst", &["id", "v", "n"]);
    let mut child = std::process::Command::new(fastlane_tests::fastlane_bin())
        .args(["--progress=off", "--source=mysql", "--target=mysql"])
        .arg(format!("--config={}", config.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn fastlane");
    // Kill it once the staging table holds rows.
    let started = std::time::Instant::now();
    loop {
        let staged: Vec<String> = db
            .tables()
            .into_iter()
            .filter(|t| t.starts_with("_fastlane_stage"))
            .collect();
        if let Some(s) = staged.first() {
            let n: u64 = db
                .value(&format!("SELECT COUNT(*) FROM `{s}`"))
                .parse()
                .unwrap_or(0);
            if n > 0 {
                break;
            }
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "fastlane finished before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 60, "nothing was staged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        db.checksum("dst", &["id", "v", "n"]),
        before,
        "the target is untouched"
    );
    // The rerun drops the stale staging table and loads exactly the source.
    let out = fastlane_tests::fastlane(
        dir.path(),
        &[
            "--progress=off",
            "--source=mysql",
            "--target=mysql",
            &format!("--config={}", config.display()),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        db.checksum("dst", &["id", "v", "n"]),
        db.checksum("src", &["id", "v", "n"])
    );
    assert_eq!(db.tables(), vec!["dst".to_owned(), "src".to_owned()]);
}

#[test]
fn decimal_keys_beyond_double_precision_page_exactly() {
    let db = Db::new("decimal_key");
    db.exec("CREATE TABLE d (id DECIMAL(20,0) PRIMARY KEY, v INT)");
    // Consecutive keys above 2^53, which doubles cannot tell apart.
    db.exec("INSERT INTO d SELECT 9007199254740990 + seq, seq FROM seq_1_to_500");
    let got = read_all(
        &db,
        json!({"table": "d", "batch_size": 7}),
        ReadContext::default(),
    );
    let rows: usize = got.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 500);
    let context = ReadContext {
        mode: ReplicationMode::Incremental,
        start_offset: Some(json!("9007199254741000")),
        parallelism: 1,
    };
    let after: usize = read_all(&db, json!({"table": "d", "batch_size": 3}), context)
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(after, 490, "strictly after the offset, digit for digit");
}

#[test]
fn duplicate_keys_in_the_data_fail_the_load_instead_of_collapsing() {
    let db = Db::new("duplicate_keys");
    let out = tempfile::tempdir().expect("temp dir");
    std::fs::write(out.path().join("a.csv"), "id,v\n1,a\n2,b\n1,c\n").expect("write");
    for method in ["load_data", "insert", "bulk"] {
        let err = run(
            (
                "file",
                "file",
                json!({"path": out.path().join("a.csv"), "format": "csv"}),
            ),
            (
                "mysql",
                "mysql",
                db.config(json!({"table": "dst", "key": "id", "load_method": method})),
            ),
            ReplicationMode::FullTable,
        )
        .expect_err("a duplicate key must not be dropped silently");
        assert!(err.contains("Duplicate entry"), "{method}: {err}");
        assert!(db.tables().is_empty(), "{method}: {:?}", db.tables());
    }
}

#[test]
fn descending_partition_bounds_are_refused() {
    let err = common::plugin("mysql")
        .create_source(
            "mysql",
            &json!({"db": "x", "table": "t", "partition_bounds": [100, 50]}),
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("strictly ascending"), "{err}");
}

#[test]
fn a_run_that_lost_its_lock_to_another_publishes_nothing() {
    let db = Db::new("lost_lock");
    let mut target = common::plugin("mysql")
        .create_target("mysql", &db.config(json!({"table": "dst", "key": "id"})))
        .expect("target");
    target
        .open(&WriteContext {
            mode: ReplicationMode::FullTable,
            run_id: "r".into(),
            concurrency: 1,
            checkpoint: None,
        })
        .expect("open");
    let mut writer = target.writer(0).expect("writer");
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
        .expect("batch");
    writer.write(batch).expect("write");
    writer.close().expect("close");
    // The control connection dies, and another run takes the lock meanwhile.
    assert!(db.kill_plugin_connections() >= 1);
    db.exec(&format!("SELECT GET_LOCK('fastlane:{}.dst', 10)", db.name));
    let err = target
        .commit()
        .expect_err("must not publish without the lock");
    assert!(err.to_string().contains("lost its lock"), "{err}");
    db.exec(&format!("SELECT RELEASE_LOCK('fastlane:{}.dst')", db.name));
    assert!(
        db.tables().is_empty(),
        "nothing published, staging dropped: {:?}",
        db.tables()
    );
}

#[test]
fn text_keys_equal_by_collation_are_paged_exactly() {
    let db = Db::new("collation_ties");
    db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, k VARCHAR(10) COLLATE utf8mb4_general_ci NOT NULL, \
         KEY (k))",
    );
    // `a`, `A` and `a ` are one key for this collation; so are `b`/`B`.
    db.exec(
        "INSERT INTO t SELECT seq, ELT(1 + seq % 5, 'a', 'A', 'a ', 'b', 'B') FROM seq_1_to_400",
    );
    for batch_size in [3, 7, 50, 1000] {
        let got = ids_of(&read_all(
            &db,
            json!({"table": "t", "key": "k", "batch_size": batch_size}),
            ReadContext::default(),
        ));
        assert_eq!(got.len(), 400, "batch_size {batch_size}");
        assert!(
            got == (1..=400).collect::<Vec<i64>>(),
            "batch_size {batch_size}"
        );
    }
}

#[test]
fn a_tinyint1_holding_other_numbers_is_not_read_as_a_boolean() {
    let db = Db::new("tinyint1");
    db.exec("CREATE TABLE b (id INT PRIMARY KEY, f TINYINT(1))");
    db.exec("INSERT INTO b VALUES (1, 0), (2, 1), (3, 2)");
    let err = common::plugin("mysql")
        .create_source("mysql", &db.config(json!({"table": "b"})))
        .expect("source");
    let partitions = err.partitions(&ReadContext::default()).expect("partitions");
    let mut stream = err.read(&partitions[0]).expect("read");
    let e = stream.next_batch().expect_err("2 is no boolean");
    assert!(e.to_string().contains("tinyint1_as_bool"), "{e}");
    let got = read_all(
        &db,
        json!({"table": "b", "tinyint1_as_bool": false}),
        ReadContext::default(),
    );
    assert_eq!(got[0].schema().field(1).data_type(), &DataType::Int8);
}

#[test]
fn offset_starts_after_the_configured_key() {
    let db = Db::new("offset");
    db.exec("CREATE TABLE o (id INT PRIMARY KEY, v VARCHAR(5))");
    db.exec("INSERT INTO o SELECT seq, 'x' FROM seq_0_to_99");
    let from_minus_one = ids_of(&read_all(
        &db,
        json!({"table": "o", "key": "id", "batch_size": 30, "offset": -1}),
        ReadContext::default(),
    ));
    assert_eq!(from_minus_one, (0..100).collect::<Vec<_>>());
    let after_89 = ids_of(&read_all(
        &db,
        json!({"table": "o", "key": "id", "batch_size": 30, "offset": 89}),
        ReadContext::default(),
    ));
    assert_eq!(after_89, (90..100).collect::<Vec<_>>());
    // In INCREMENTAL runs the target's offset wins over the configured one.
    let incremental = ids_of(&read_all(
        &db,
        json!({"table": "o", "key": "id", "batch_size": 30, "offset": 10}),
        ReadContext {
            mode: ReplicationMode::Incremental,
            start_offset: Some(json!(95)),
            parallelism: 1,
        },
    ));
    assert_eq!(incremental, vec![96, 97, 98, 99]);
}

#[test]
fn a_schema_change_fails_by_default_or_adds_columns_keeping_indexes_or_replaces_the_table() {
    let db = Db::new("schema_change");
    db.exec("CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR(64), extra INT)");
    db.exec("INSERT INTO src VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', NULL)");
    db.exec("CREATE TABLE dst (id BIGINT PRIMARY KEY, v VARCHAR(64), old TEXT, KEY by_v (v))");
    db.exec("INSERT INTO dst VALUES (9, 'z', 'kept')");
    let index_count = || {
        db.value("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'dst' AND INDEX_NAME = 'by_v'")
    };
    let load = |target: serde_json::Value, mode| {
        run(
            ("mysql", "mysql", db.config(json!({"table": "src"}))),
            ("mysql", "mysql", db.config(target)),
            mode,
        )
    };

    // fail (the default): nothing changes, and the error names the new and missing columns.
    let err = load(json!({"table": "dst"}), ReplicationMode::FullTable).expect_err("must fail");
    assert!(err.contains("lacks: `extra`"), "{err}");
    assert!(
        err.contains("`old`") && err.contains("on_schema_change"),
        "{err}"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM dst"), "1");
    assert_eq!(
        db.value("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'dst' AND COLUMN_NAME = 'extra'"),
        "0"
    );

    // add_columns: the table keeps its index and types, and gains the column.
    load(
        json!({"table": "dst", "on_schema_change": "add_columns"}),
        ReplicationMode::FullTable,
    )
    .expect("add_columns");
    assert_eq!(
        db.value("SELECT GROUP_CONCAT(id ORDER BY id) FROM dst"),
        "1,2,3"
    );
    assert_eq!(db.value("SELECT extra FROM dst WHERE id = 2"), "20");
    assert_eq!(index_count(), "1");
    assert_eq!(
        db.value("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'dst' AND COLUMN_NAME = 'v'"),
        "varchar(64)"
    );

    // INCREMENTAL with add_columns alters the table itself before the upsert.
    db.exec("CREATE TABLE inc (id BIGINT PRIMARY KEY, v VARCHAR(64))");
    db.exec("INSERT INTO inc VALUES (1, 'old')");
    load(
        json!({"table": "inc", "key": "id", "on_schema_change": "add_columns"}),
        ReplicationMode::Incremental,
    )
    .expect("incremental add_columns");
    assert_eq!(
        db.value("SELECT GROUP_CONCAT(id ORDER BY id) FROM inc"),
        "1,2,3"
    );
    assert_eq!(db.value("SELECT extra FROM inc WHERE id = 3"), "NULL");
    // An INCREMENTAL run never replaces the table.
    db.exec("CREATE TABLE inc2 (id BIGINT PRIMARY KEY, v VARCHAR(64))");
    let err = load(
        json!({"table": "inc2", "key": "id", "on_schema_change": "replace"}),
        ReplicationMode::Incremental,
    )
    .expect_err("must fail");
    assert!(err.contains("cannot replace"), "{err}");

    // replace: a table defined by the data; the index is gone.
    db.exec("ALTER TABLE src ADD COLUMN more DOUBLE");
    load(
        json!({"table": "dst", "key": "id", "on_schema_change": "replace"}),
        ReplicationMode::FullTable,
    )
    .expect("replace");
    assert_eq!(index_count(), "0");
    assert_eq!(db.value("SELECT COUNT(*) FROM dst"), "3");
}
