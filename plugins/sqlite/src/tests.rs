//! Tests against real SQLite databases in temporary folders.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use fastlane_plugin_api::{
    ErrorCode, Partition, PluginError, ReadContext, ReplicationMode, Result, Source,
};
use rusqlite::Connection;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{SqliteSource, SqliteSourceConfig};

/// A database made by `sql` in a fresh folder.
fn db(sql: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db").to_str().unwrap().to_owned();
    Connection::open(&path).unwrap().execute_batch(sql).unwrap();
    (dir, path)
}

/// A source from `config` (a JSON object without `path`) on `path`.
fn source(path: &str, config: Value) -> Result<SqliteSource> {
    let mut config = config;
    config["path"] = json!(path);
    let config: SqliteSourceConfig = serde_json::from_value(config).unwrap();
    SqliteSource::new(config)
}

fn full() -> ReadContext {
    ReadContext::default()
}

fn incremental(offset: Option<Value>) -> ReadContext {
    ReadContext {
        mode: ReplicationMode::Incremental,
        start_offset: offset,
        parallelism: 4,
    }
}

fn read_partition(source: &SqliteSource, partition: &Partition) -> Result<Vec<RecordBatch>> {
    let mut stream = source.read(partition)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// Every batch of every partition.
fn read_all(source: &SqliteSource, context: &ReadContext) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for partition in source.partitions(context)? {
        batches.extend(read_partition(source, &partition)?);
    }
    Ok(batches)
}

/// The values of the Int64 column `name` over all batches.
fn ints(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[track_caller]
fn assert_error<T>(result: Result<T>, code: ErrorCode, message: &str) -> PluginError {
    let Err(e) = result else {
        panic!("expected an error containing {message:?}");
    };
    assert_eq!(e.code(), code, "{e}");
    assert!(e.message().contains(message), "{e}");
    e
}

const TYPES: &str = "
CREATE TABLE t (
    id INTEGER PRIMARY KEY,
    i BIGINT, f REAL, s VARCHAR(20), c CLOB, b BLOB, flag BOOLEAN, ts DATETIME, tz TIMESTAMP,
    d DATE, n NUMERIC, m DECIMAL(10,2), u, j JSON
);
INSERT INTO t VALUES (1, 42, 1.5, 'héllo 👋 世界', 'clob', x'00ff', 1, '2024-01-02 03:04:05',
    '2024-01-02T03:04:05.123456Z', '2024-01-02', 7, 2.25, 3, '{\"a\": 1}');
INSERT INTO t VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL);
INSERT INTO t VALUES (3, -7, 2, '', 'x', x'', 0, 86400, '1970-01-01T00:00:01', '1969-12-31',
    1.5, 3, 4, '[]');
";

#[test]
fn every_type_maps_and_nulls_pass() {
    let (_dir, path) = db(TYPES);
    let batches = read_all(&source(&path, json!({"table": "t"})).unwrap(), &full()).unwrap();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    let schema = batch.schema();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    assert_eq!(
        types,
        vec![
            ("id", &DataType::Int64),
            ("i", &DataType::Int64),
            ("f", &DataType::Float64),
            ("s", &DataType::Utf8),
            ("c", &DataType::Utf8),
            ("b", &DataType::Binary),
            ("flag", &DataType::Boolean),
            ("ts", &ts),
            ("tz", &ts),
            ("d", &DataType::Date32),
            ("n", &DataType::Float64),
            ("m", &DataType::Float64),
            ("u", &DataType::Int64),
            ("j", &DataType::Utf8),
        ]
    );
    assert!(schema.fields().iter().all(|f| f.is_nullable()));
    // The second row is NULL everywhere but its key.
    for (index, column) in batch.columns().iter().enumerate().skip(1) {
        assert!(column.is_null(1), "column {index}");
        assert_eq!(column.null_count(), 1, "column {index}");
    }

    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(ints(&batches, "id"), vec![Some(1), Some(2), Some(3)]);
    assert_eq!(ints(&batches, "i"), vec![Some(42), None, Some(-7)]);
    let f = col("f");
    let f = f.as_primitive::<Float64Type>();
    assert_eq!((f.value(0), f.value(2)), (1.5, 2.0));
    assert_eq!(
        strings(&batches, "s"),
        vec![Some("héllo 👋 世界".to_owned()), None, Some(String::new())]
    );
    let b = col("b");
    let b = b.as_binary::<i32>();
    assert_eq!((b.value(0), b.value(2)), (&[0u8, 0xff][..], &[][..]));
    let flag = col("flag");
    let flag = flag.as_boolean();
    assert!(flag.value(0) && !flag.value(2));
    let ts = col("ts");
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_704_164_645_000_000);
    assert_eq!(ts.value(2), 86_400_000_000);
    let tz = col("tz");
    let tz = tz.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(tz.value(0), 1_704_164_645_123_456);
    assert_eq!(tz.value(2), 1_000_000);
    let d = col("d");
    let d = d.as_primitive::<Date32Type>();
    assert_eq!((d.value(0), d.value(2)), (19_724, -1));
    let n = col("n");
    let n = n.as_primitive::<Float64Type>();
    assert_eq!((n.value(0), n.value(2)), (7.0, 1.5));
    let m = col("m");
    let m = m.as_primitive::<Float64Type>();
    assert_eq!((m.value(0), m.value(2)), (2.25, 3.0));
    assert_eq!(ints(&batches, "u"), vec![Some(3), None, Some(4)]);
    assert_eq!(
        strings(&batches, "j"),
        vec![Some("{\"a\": 1}".to_owned()), None, Some("[]".to_owned())]
    );
}

#[test]
fn untyped_columns_are_inferred_from_the_first_value() {
    let (_dir, path) = db("CREATE TABLE t (a, b, c);
         INSERT INTO t VALUES (NULL, NULL, NULL), (NULL, 'x', NULL), (2.5, 'y', NULL);");
    let batches = read_all(&source(&path, json!({"table": "t"})).unwrap(), &full()).unwrap();
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Float64);
    assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
    // Never anything but NULL: a text column.
    assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
    assert_eq!(
        strings(&batches, "b"),
        vec![None, Some("x".to_owned()), Some("y".to_owned())]
    );
}

#[test]
fn values_that_do_not_fit_are_data_errors() {
    let (_dir, path) = db(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER, d DATE);
         INSERT INTO t VALUES (1, 5, '2024-01-01'), (2, 'abc', '2024-01-01');
         CREATE TABLE u (id INTEGER PRIMARY KEY, d DATE);
         INSERT INTO u VALUES (7, 'soon');",
    );
    let e = assert_error(
        read_all(&source(&path, json!({"table": "t"})).unwrap(), &full()),
        ErrorCode::DATA,
        "column `qty` at key `2`",
    );
    assert!(e.message().contains("TEXT"), "{e}");
    let e = assert_error(
        read_all(&source(&path, json!({"table": "u"})).unwrap(), &full()),
        ErrorCode::DATA,
        "column `d` at key `7`",
    );
    assert!(e.message().contains("`soon`"), "{e}");
}

#[test]
fn paging_reads_every_row_once() {
    let (_dir, path) = db("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000)
         INSERT INTO t SELECT x, 'v' || x FROM n;");
    let s = source(
        &path,
        json!({"table": "t", "replication_key": "id", "batch_size": 1000}),
    )
    .unwrap();
    let batches = read_all(&s, &full()).unwrap();
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.num_rows() == 1000));
    let ids: Vec<i64> = ints(&batches, "id").into_iter().flatten().collect();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids.iter().sum::<i64>(), 10_000 * 10_001 / 2);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // On the rowid (the default) with a batch size that does not divide the row count; the
    // rowid is not part of the output.
    let s = source(
        &path,
        json!({"table": "t", "columns": ["v"], "batch_size": 999}),
    )
    .unwrap();
    let batches = read_all(&s, &full()).unwrap();
    assert_eq!(batches.len(), 11);
    assert_eq!(rows(&batches), 10_000);
    assert_eq!(batches[0].num_columns(), 1);
    assert_eq!(batches[0].schema().field(0).name(), "v");
    let values = strings(&batches, "v");
    assert_eq!(values[0].as_deref(), Some("v1"));
    assert_eq!(values[9_999].as_deref(), Some("v10000"));
}

/// Sorted `(id, v)` pairs of a read.
fn pairs(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    let mut pairs: Vec<(i64, String)> = ints(batches, "id")
        .into_iter()
        .flatten()
        .zip(strings(batches, "v").into_iter().flatten())
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn partitions_cover_exactly_one_partition() {
    // Sparse, negative and extreme keys.
    let (_dir, path) = db("CREATE TABLE t (id INTEGER, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000)
         INSERT INTO t SELECT x * 3 - 1000, 'v' || x FROM n;
         INSERT INTO t VALUES (9223372036854775807, 'max'), (-9223372036854775808, 'min');");
    for offset in [None, Some(json!(500))] {
        let context = incremental(offset.clone());
        let config = |p: usize| json!({"table": "t", "replication_key": "id", "batch_size": 100, "partitions": p});
        let one = source(&path, config(1)).unwrap();
        let four = source(&path, config(4)).unwrap();
        let one_parts = one.partitions(&context).unwrap();
        let four_parts = four.partitions(&context).unwrap();
        assert_eq!(one_parts.len(), 1);
        assert_eq!(four_parts.len(), 4);
        for (i, p) in four_parts.iter().enumerate() {
            assert_eq!(p.index, i);
            assert_eq!(
                p.spec["start_offset"],
                offset.clone().unwrap_or(Value::Null)
            );
        }
        assert!(four_parts[0].spec["lower"].is_null());
        assert!(four_parts[3].spec["upper"].is_null());
        for w in four_parts.windows(2) {
            assert_eq!(w[0].spec["upper"], w[1].spec["lower"]);
        }
        let one_batches = read_all(&one, &context).unwrap();
        let mut four_rows = 0;
        let mut four_batches = Vec::new();
        for p in &four_parts {
            let batches = read_partition(&four, p).unwrap();
            let n = rows(&batches);
            if offset.is_none() {
                assert!(n > 0, "partition {} is empty", p.index);
            }
            four_rows += n;
            four_batches.extend(batches);
        }
        assert_eq!(four_rows, rows(&one_batches));
        assert_eq!(pairs(&four_batches), pairs(&one_batches));
        let expected = if offset.is_some() { 2501 } else { 3002 };
        assert_eq!(rows(&one_batches), expected);
    }
}

#[test]
fn partitions_fall_back_to_one() {
    let (_dir, path) = db("CREATE TABLE e (id INTEGER);
         CREATE TABLE f (id REAL); INSERT INTO f VALUES (1.5), (2.5), (3.5);
         CREATE TABLE s (id TEXT); INSERT INTO s VALUES ('a'), ('b');
         CREATE TABLE two (id INTEGER); INSERT INTO two VALUES (1), (2);");
    let count = |table: &str| {
        let s = source(
            &path,
            json!({"table": table, "replication_key": "id", "partitions": 8}),
        )
        .unwrap();
        let parts = s.partitions(&full()).unwrap();
        let n = parts
            .iter()
            .map(|p| rows(&read_partition(&s, p).unwrap()))
            .sum::<usize>();
        (parts.len(), n)
    };
    assert_eq!(count("e"), (1, 0));
    assert_eq!(count("f"), (1, 3));
    assert_eq!(count("s"), (1, 2));
    // Never more partitions than keys.
    assert_eq!(count("two"), (2, 2));
}

#[test]
fn incremental_reads_after_the_offset() {
    let (_dir, path) = db("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100)
         INSERT INTO t SELECT x, 'v' || x FROM n;");
    let s = source(
        &path,
        json!({"table": "t", "replication_key": "id", "batch_size": 7}),
    )
    .unwrap();
    let ids = |offset| -> Vec<i64> {
        ints(&read_all(&s, &incremental(offset)).unwrap(), "id")
            .into_iter()
            .flatten()
            .collect()
    };
    assert_eq!(ids(Some(json!(90))), (91..=100).collect::<Vec<_>>());
    assert_eq!(ids(Some(json!(89.5))), (90..=100).collect::<Vec<_>>());
    assert_eq!(ids(Some(json!(100))), Vec::<i64>::new());
    assert_eq!(ids(None).len(), 100);
    // FULL_TABLE ignores an offset.
    let context = ReadContext {
        start_offset: Some(json!(90)),
        ..full()
    };
    assert_eq!(rows(&read_all(&s, &context).unwrap()), 100);
}

#[test]
fn string_keys() {
    let (_dir, path) = db(
        "CREATE TABLE t (code TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 250)
         INSERT INTO t SELECT printf('k%04d', x), x FROM n;
         INSERT INTO t VALUES ('ключ 🔑', 1000);",
    );
    let s = source(
        &path,
        json!({"table": "t", "replication_key": "code", "batch_size": 16, "partitions": 3}),
    )
    .unwrap();
    let batches = read_all(&s, &full()).unwrap();
    assert_eq!(rows(&batches), 251);
    let codes: Vec<String> = strings(&batches, "code").into_iter().flatten().collect();
    assert!(codes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(codes.last().map(String::as_str), Some("ключ 🔑"));
    let after = read_all(&s, &incremental(Some(json!("k0245")))).unwrap();
    assert_eq!(
        strings(&after, "code")
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        vec!["k0246", "k0247", "k0248", "k0249", "k0250", "ключ 🔑"]
    );
}

#[test]
fn query_mode() {
    let (_dir, path) = db("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2500)
         INSERT INTO t SELECT x, 'v' || x FROM n;");
    let s = source(
        &path,
        json!({"query": "SELECT id, v, id * 2 AS twice, NULL AS empty, id / 2.0 AS half FROM t WHERE id % 2 = 0 ORDER BY id", "batch_size": 500, "partitions": 4}),
    )
    .unwrap();
    let parts = s.partitions(&full()).unwrap();
    assert_eq!(parts.len(), 1);
    let batches = read_all(&s, &full()).unwrap();
    assert_eq!(batches.len(), 3);
    assert_eq!(rows(&batches), 1250);
    let schema = batches[0].schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Float64
        ]
    );
    assert!(batches.iter().all(|b| b.schema() == schema));
    assert_eq!(
        ints(&batches, "twice").into_iter().flatten().sum::<i64>(),
        2 * (1..=1250).map(|x| 2 * x).sum::<i64>()
    );
}

#[test]
fn query_mode_mixed_values_and_bad_sql() {
    let (_dir, path) = db("CREATE TABLE t (id INTEGER PRIMARY KEY, x);
         INSERT INTO t VALUES (1, 5), (2, 'five');");
    assert_error(
        source(&path, json!({"query": "SELECT x FROM t ORDER BY id"}))
            .and_then(|s| read_all(&s, &full())),
        ErrorCode::DATA,
        "cannot read column `x` at row `2`: a TEXT value does not fit Int64",
    );
    assert_error(
        source(&path, json!({"query": "SELEC x FROM t"})).and_then(|s| read_all(&s, &full())),
        ErrorCode::CONFIG,
        "invalid `query`",
    );
    assert_error(
        source(&path, json!({"query": "SELECT x FROM t"}))
            .and_then(|s| s.partitions(&incremental(None))),
        ErrorCode::CONFIG,
        "INCREMENTAL mode needs `table` and `replication_key`",
    );
}

#[test]
fn configuration_errors() {
    let (_dir, path) = db("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    assert_error(
        source(&path, json!({"table": "t", "query": "SELECT 1"})),
        ErrorCode::CONFIG,
        "set either `table` or `query`, not both",
    );
    assert_error(
        source(&path, json!({})),
        ErrorCode::CONFIG,
        "set `table` or `query`",
    );
    assert_error(
        source(&path, json!({"table": "t", "batch_size": 0})),
        ErrorCode::CONFIG,
        "`batch_size` must be at least 1",
    );
    assert_error(
        source(&path, json!({"table": "t", "partitions": 0})),
        ErrorCode::CONFIG,
        "`partitions` must be at least 1",
    );
    assert_error(
        source(&path, json!({"query": "SELECT 1", "columns": ["a"]})),
        ErrorCode::CONFIG,
        "`columns` applies to `table` only",
    );
    assert_error(
        source(&path, json!({"table": "t"})).and_then(|s| s.partitions(&incremental(None))),
        ErrorCode::CONFIG,
        "INCREMENTAL mode needs `table` and `replication_key`",
    );
    let unknown: std::result::Result<SqliteSourceConfig, _> =
        serde_json::from_value(json!({"path": path, "table": "t", "tabel": "t"}));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `tabel`")
    );
    let defaults: SqliteSourceConfig =
        serde_json::from_value(json!({"path": path, "table": "t", "concurrency": 3})).unwrap();
    assert_eq!((defaults.batch_size, defaults.partitions), (65_536, 1));
}

#[test]
fn missing_things_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db").to_str().unwrap().to_owned();
    let s = source(&missing, json!({"table": "t"})).unwrap();
    assert_error(
        s.partitions(&full()),
        ErrorCode::NOT_FOUND,
        &format!("`{missing}` does not exist"),
    );
    let spec = serde_json::to_value(crate::plan::RangeSpec::default()).unwrap();
    assert_error(
        s.read(&Partition { index: 0, spec }),
        ErrorCode::NOT_FOUND,
        "does not exist",
    );
    assert!(!dir.path().join("nope.db").exists(), "a file was created");

    let (_dir, path) = db("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);");
    assert_error(
        source(&path, json!({"table": "order"})).and_then(|s| s.partitions(&full())),
        ErrorCode::NOT_FOUND,
        "table `order` does not exist; tables: `orders`, `users`",
    );
    assert_error(
        source(&path, json!({"table": "orders", "columns": ["id", "totl"]}))
            .and_then(|s| s.partitions(&full())),
        ErrorCode::NOT_FOUND,
        "column `totl` does not exist in table `orders`; columns: `id`, `total`",
    );
    assert_error(
        source(&path, json!({"table": "orders", "replication_key": "ts"}))
            .and_then(|s| s.partitions(&full())),
        ErrorCode::NOT_FOUND,
        "the replication key `ts` does not exist in table `orders`; columns: `id`, `total`",
    );

    let (_dir, empty) = db("");
    assert_error(
        source(&empty, json!({"table": "t"})).and_then(|s| s.partitions(&full())),
        ErrorCode::NOT_FOUND,
        "has no tables",
    );
}

#[test]
fn null_keys_and_missing_rowids() {
    let (_dir, path) = db("CREATE TABLE t (k INTEGER, v TEXT);
         INSERT INTO t VALUES (1, 'a'), (NULL, 'b');
         CREATE TABLE w (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
         INSERT INTO w VALUES ('a', 'b');");
    assert_error(
        source(&path, json!({"table": "t", "replication_key": "k"}))
            .and_then(|s| s.partitions(&full())),
        ErrorCode::DATA,
        "the replication key `k` has NULL values; keyset paging would skip those rows",
    );
    assert_error(
        source(&path, json!({"table": "w"})).and_then(|s| s.partitions(&full())),
        ErrorCode::CONFIG,
        "table `w` has no rowid; set `replication_key`",
    );
    // On the rowid, the NULL key row is read.
    let batches = read_all(&source(&path, json!({"table": "t"})).unwrap(), &full()).unwrap();
    assert_eq!(ints(&batches, "k"), vec![Some(1), None]);
}

#[test]
fn identifiers_are_quoted() {
    let (_dir, path) = db(
        "CREATE TABLE \"my \"\"odd\"\" table\" (\"key col\" INTEGER, \"select\" TEXT);
         INSERT INTO \"my \"\"odd\"\" table\" VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    let s = source(
        &path,
        json!({"table": "my \"odd\" table", "replication_key": "key col", "columns": ["select"], "batch_size": 2, "partitions": 2}),
    )
    .unwrap();
    let batches = read_all(&s, &full()).unwrap();
    assert_eq!(
        strings(&batches, "select")
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
    assert!(batches.iter().all(|b| b.num_columns() == 1));
}

#[test]
fn schema_documents_every_option() {
    let schema = serde_json::to_value(schemars::schema_for!(SqliteSourceConfig)).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for name in [
        "path",
        "table",
        "query",
        "replication_key",
        "columns",
        "batch_size",
        "partitions",
        "concurrency",
    ] {
        let description = properties[name]["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "{name} has no description");
    }
    assert_eq!(schema["required"], json!(["path"]));
    assert_eq!(
        properties["concurrency"]["description"],
        json!("How many partitions are read at once (host setting).")
    );
}
