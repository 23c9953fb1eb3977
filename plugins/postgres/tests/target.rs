//! The `postgres` target against the PostgreSQL server on 127.0.0.1:5432 (user `postgres`,
//! trust; tests/services.sh starts it): PostgreSQL→PostgreSQL round trips compared row by row
//! on the server, FULL_TABLE replacing rows while keeping the table and what is on it,
//! INCREMENTAL upserts and offsets, a failed run leaving the table as it was, and refusals.

use std::path::Path;
use std::process::Command;

use serde_json::json;

mod common;
use common::{Db, mariadb, psql, run_pipeline};

fn run(
    dir: &Path,
    mode: &str,
    source: serde_json::Value,
    target: serde_json::Value,
) -> (bool, String) {
    run_with(dir, mode, source, target, json!({}))
}

/// [`run`] with more top-level settings (`resume`, `verify`, …).
fn run_with(
    dir: &Path,
    mode: &str,
    source: serde_json::Value,
    target: serde_json::Value,
    extra: serde_json::Value,
) -> (bool, String) {
    let mut pipeline = json!({
        "name": "pg-target-test", "replication_mode": mode,
        "source": source, "transform": {"add_op_fields": false},
        "target": {"postgres": target},
    });
    pipeline
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    run_pipeline(dir, &pipeline)
}

#[test]
fn postgresql_to_postgresql_keeps_every_value_of_every_type() {
    let db = Db::new("roundtrip");
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE types (
           id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
           n numeric(12,2), nbig numeric(50,10), nu numeric, t text, vc varchar(20), c char(3),
           j json, jb jsonb, by bytea, d date, tm time, tz timetz, ts timestamp,
           tstz timestamptz, iv interval, u uuid, ip inet, mac macaddr, e mood,
           ints int4[], words text[]);
         INSERT INTO types VALUES
          (1, true, -32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity',
           -9999999999.99, 1234567890123456789012345678901234567890.0123456789, 'NaN',
           '🦀 four bytes', '', 'ab', '{\"a\": [1, 2]}', '{\"b\": null}', '\\x00ff',
           '4713-01-01 BC', '23:59:59.999999', '12:30:00.5+02', '2024-02-29 12:00:00.000001',
           '2024-03-10 12:00:00+05', '1 year 2 mons 3 days 04:05:06.789',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1/64', '08:00:2b:01:02:03',
           'happy', '{1,NULL,3}', '{a,\"b c\",NULL,\"\"}'),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL),
          (3, false, 32767, 2147483647, 9223372036854775807, 3.5, 1e308, 0.01,
           -0.0000000001, '-123456789012345678901234567890.000000000000000000001',
           repeat('x', 100000), 'twenty chars long!!!', 'abc', '[]', '[]',
           decode(repeat('ab', 100000), 'hex'), '2000-01-01', '00:00:00', '00:00:00-09:30',
           '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999-01', '-1 days -00:00:00.000001',
           '00000000-0000-0000-0000-000000000000', '192.168.0.1', 'ff:ff:ff:ff:ff:ff',
           'sad', NULL, '{🦀}');",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({"postgres": {"url": db.url(), "table": "types"}}),
        json!({"url": db.url(), "table": "copy", "key": "id"}),
    );
    assert!(ok, "{err}");
    assert_eq!(db.rows("copy"), db.rows("types"));
    // The new table has the source's types, and the key as its primary key.
    assert_eq!(
        db.exec(
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = 'copy'::regclass AND attnum > 0"
        ),
        db.exec(
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = 'types'::regclass AND attnum > 0"
        )
    );
    assert_eq!(
        db.exec("SELECT count(*) FROM pg_index WHERE indrelid = 'copy'::regclass AND indisprimary"),
        "1"
    );
    // No staging table is left.
    assert_eq!(
        db.exec("SELECT count(*) FROM pg_tables WHERE tablename LIKE '\\_fastlane\\_stage%'"),
        "0"
    );
}

#[test]
fn full_table_replaces_the_rows_and_keeps_the_table_with_what_is_on_it() {
    let db = Db::new("full");
    db.exec(
        "CREATE TABLE src (id int4 PRIMARY KEY, name text, amount numeric(8,2));
         INSERT INTO src SELECT g, 'n' || g, g * 1.5 FROM generate_series(1, 5000) g;
         CREATE TABLE dst (id int8 PRIMARY KEY, name varchar(40) NOT NULL, amount numeric(10,3),
                           extra text DEFAULT 'kept');
         CREATE INDEX dst_name ON dst (name);
         COMMENT ON TABLE dst IS 'the destination';
         DO $$ BEGIN CREATE ROLE fl_reader_test NOLOGIN;
               EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT SELECT ON dst TO fl_reader_test;
         INSERT INTO dst VALUES (999999, 'old row', 1, 'x');",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({"postgres": {"url": db.url(), "table": "src", "partitions": 3}}),
        json!({"url": db.url(), "table": "dst"}),
    );
    assert!(ok, "{err}");
    assert_eq!(
        db.exec("SELECT count(*), sum(id), sum(amount) FROM dst"),
        "5000|12502500|18753750.000"
    );
    assert_eq!(
        db.exec("SELECT count(*) FROM dst WHERE extra = 'kept'"),
        "5000",
        "defaults apply"
    );
    assert_eq!(
        db.exec("SELECT obj_description('dst'::regclass)"),
        "the destination"
    );
    assert_eq!(
        db.exec("SELECT count(*) FROM pg_indexes WHERE tablename = 'dst'"),
        "2"
    );
    assert_eq!(
        db.exec("SELECT has_table_privilege('fl_reader_test', 'dst', 'SELECT')"),
        "t"
    );
    // A run that fails leaves the table as it was: a value the table refuses (too long).
    db.exec("UPDATE src SET name = repeat('y', 50) WHERE id = 4000");
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({"postgres": {"url": db.url(), "table": "src"}}),
        json!({"url": db.url(), "table": "dst"}),
    );
    assert!(!ok);
    assert!(
        err.contains("publishing the run into \"public\".\"dst\""),
        "{err}"
    );
    assert!(err.contains("value too long"), "{err}");
    assert_eq!(
        db.exec("SELECT count(*), sum(id) FROM dst"),
        "5000|12502500"
    );
    // The failed run is checkpointed: its staging is kept for a next run to resume. Its staged
    // rows hold the value that does not fit, so a fresh run is what loads the corrected data;
    // it drops the kept staging.
    let staged = "SELECT count(*) FROM pg_tables WHERE tablename LIKE '\\_fastlane\\_stage%'";
    assert_eq!(db.exec(staged), "1");
    db.exec("UPDATE src SET name = 'short again' WHERE id = 4000");
    let (ok, err) = run_with(
        dir.path(),
        "FULL_TABLE",
        json!({"postgres": {"url": db.url(), "table": "src"}}),
        json!({"url": db.url(), "table": "dst"}),
        json!({"resume": "never"}),
    );
    assert!(ok, "{err}");
    assert_eq!(
        db.exec("SELECT name FROM dst WHERE id = 4000"),
        "short again"
    );
    assert_eq!(db.exec(staged), "0");
    psql("postgres", "DROP OWNED BY fl_reader_test CASCADE");
    let _ = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg("DROP ROLE IF EXISTS fl_reader_test")
        .output();
}

#[test]
fn incremental_runs_upsert_on_the_key_and_continue_after_the_target_offset() {
    let db = Db::new("incremental");
    db.exec(
        "CREATE TABLE src (id int8 PRIMARY KEY, v text);
         INSERT INTO src SELECT g, 'first' FROM generate_series(1, 1000) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let source = json!({"postgres": {"url": db.url(), "table": "src", "replication_key": "id"}});
    let target = json!({"url": db.url(), "table": "dst", "key": "id"});
    let (ok, err) = run(dir.path(), "INCREMENTAL", source.clone(), target.clone());
    assert!(ok, "{err}");
    assert_eq!(db.exec("SELECT count(*) FROM dst"), "1000");
    // Only rows after the target's largest key are read; a key loaded again is updated.
    db.exec("INSERT INTO src SELECT g, 'second' FROM generate_series(1001, 1500) g");
    db.exec("INSERT INTO dst VALUES (1200, 'stale')");
    let (ok, err) = run(dir.path(), "INCREMENTAL", source.clone(), target.clone());
    assert!(ok, "{err}");
    // The target's offset was 1200: rows 1201..1500 come.
    assert_eq!(db.exec("SELECT count(*) FROM dst"), "1301");
    assert_eq!(db.exec("SELECT v FROM dst WHERE id = 1200"), "stale");
    assert_eq!(
        db.exec("SELECT count(*) FROM dst WHERE v = 'second'"),
        "300"
    );
    // With rows above 1000 gone from the target, its offset is 1000 again: rows 1001..1500
    // are read again, and those still there (none here) would be updated in place.
    db.exec("DELETE FROM dst WHERE id > 1000");
    db.exec("INSERT INTO dst VALUES (1001, 'old')");
    db.exec("UPDATE src SET v = 'third' WHERE id > 1000");
    let (ok, err) = run(dir.path(), "INCREMENTAL", source, target);
    assert!(ok, "{err}");
    // The offset is now 1001: rows 1002..1500 come, and 1001 stays as it was.
    assert_eq!(db.exec("SELECT count(*) FROM dst WHERE v = 'third'"), "499");
    assert_eq!(db.exec("SELECT v FROM dst WHERE id = 1001"), "old");
    assert_eq!(db.exec("SELECT count(*) FROM dst"), "1500");
}

#[test]
fn a_file_to_postgresql_load_maps_arrow_types_and_refuses_what_it_cannot_hold() {
    let db = Db::new("file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "id,name,price,day\n1,a,1.5,2024-01-01\n2,b,,2024-01-02\n3,\"c, d\",3.25,\n",
    )
    .unwrap();
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({"file": {"path": "in.csv"}}),
        json!({"url": db.url(), "table": "from_csv"}),
    );
    assert!(ok, "{err}");
    assert_eq!(
        db.exec("SELECT string_agg(id || '/' || name || '/' || coalesce(price::text, '-'), ' ' ORDER BY id) FROM from_csv"),
        "1/a/1.5 2/b/- 3/c, d/3.25"
    );
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({"file": {"path": "in.csv"}}),
        json!({"url": db.url(), "table": "from_csv", "schema": "nowhere"}),
    );
    assert!(!ok);
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn an_incremental_load_of_keys_already_there_updates_them_in_place() {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use fastlane_plugin_api::{ReplicationMode, Target, WriteContext};
    use std::sync::Arc;

    let db = Db::new("upsert");
    db.exec(
        "CREATE TABLE dst (id int8 PRIMARY KEY, v text, untouched text DEFAULT 'd');
         INSERT INTO dst (id, v, untouched) VALUES (1, 'one', 'x'), (2, 'two', 'y');",
    );
    let plugin = fastlane_tests::conformance::load("postgres");
    let mut target = plugin
        .create_target(
            "postgres",
            &json!({"url": db.url(), "table": "dst", "key": "id"}),
        )
        .unwrap();
    target
        .open(&WriteContext {
            mode: ReplicationMode::Incremental,
            run_id: "upsert-1".into(),
            concurrency: 1,
            checkpoint: None,
        })
        .unwrap();
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from(vec![2, 3])) as arrow_array::ArrayRef,
        ),
        ("v", Arc::new(StringArray::from(vec!["TWO", "three"]))),
    ])
    .unwrap();
    let mut writer = target.writer(0).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    target.commit().unwrap();
    assert_eq!(
        db.exec("SELECT string_agg(id || '=' || v || '/' || untouched, ' ' ORDER BY id) FROM dst"),
        "1=one/x 2=TWO/y 3=three/d",
        "key 2 updated (its other columns kept), key 3 added"
    );
    // A second run holding the table's lock is refused while the first is open.
    let mut first = plugin
        .create_target("postgres", &json!({"url": db.url(), "table": "dst"}))
        .unwrap();
    let context = WriteContext {
        mode: ReplicationMode::FullTable,
        run_id: "lock-1".into(),
        concurrency: 1,
        checkpoint: None,
    };
    first.open(&context).unwrap();
    let mut second = plugin
        .create_target("postgres", &json!({"url": db.url(), "table": "dst"}))
        .unwrap();
    let err = second.open(&context).unwrap_err().to_string();
    assert!(err.contains("another run is loading"), "{err}");
    first.abort().unwrap();
    assert_eq!(
        db.exec("SELECT count(*) FROM dst"),
        "3",
        "an aborted run changes nothing"
    );
}

#[test]
fn mysql_to_postgresql_to_mysql_gives_back_the_same_rows() {
    let db = Db::new("mysqlrt");
    let my = format!("fl_pg_rt_{}", std::process::id());
    mariadb(&format!(
        "DROP DATABASE IF EXISTS {my}; CREATE DATABASE {my} CHARACTER SET utf8mb4;
         CREATE TABLE {my}.src (id BIGINT PRIMARY KEY, i INT, d DECIMAL(12,2), f DOUBLE,
           v VARCHAR(40), t TEXT, dt DATETIME(6), dd DATE, b BOOL, bl BLOB);
         INSERT INTO {my}.src VALUES
           (1, -2147483648, -9999999999.99, 1.5e300, '🦀 ünïcode', REPEAT('t', 5000),
            '2024-02-29 12:34:56.123456', '1000-01-01', 1, X'00FF10'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (3, 2147483647, 0.01, -0.0, '', '', '9999-12-31 23:59:59.999999', '9999-12-31', 0, X'');"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mysql = |table: &str| json!({"host": "127.0.0.1", "port": 3306, "username": "root", "db": my, "table": table});
    let mut source = mysql("src");
    source["key"] = json!("id");
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        json!({ "mysql": source }),
        json!({"url": db.url(), "table": "through", "key": "id"}),
    );
    assert!(ok, "{err}");
    assert_eq!(db.exec("SELECT count(*) FROM through"), "3");
    // Back into MariaDB, through the mysql target.
    let (ok, err) = run_pipeline(
        dir.path(),
        &json!({
            "name": "pg-to-mysql", "replication_mode": "FULL_TABLE",
            "source": {"postgres": {"url": db.url(), "table": "through"}},
            "transform": {"add_op_fields": false},
            "target": {"mysql": mysql("back")},
        }),
    );
    assert!(ok, "{err}");
    let rows = |table: &str| {
        mariadb(&format!(
            "SET SESSION group_concat_max_len = 1000000;
             SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, IFNULL(i, 'N'), IFNULL(d, 'N'),
               IFNULL(f, 'N'), IFNULL(v, 'N'), IFNULL(t, 'N'), IFNULL(dt, 'N'), IFNULL(dd, 'N'),
               IFNULL(b, 'N'), IFNULL(HEX(bl), 'N')) ORDER BY id SEPARATOR '\\n'))
             FROM {my}.{table}"
        ))
    };
    assert_eq!(rows("back"), rows("src"));
    mariadb(&format!("DROP DATABASE {my}"));
}

#[test]
fn new_columns_fail_the_run_or_are_added_or_replace_the_table_as_on_schema_change_says() {
    let db = Db::new("schemachange");
    db.exec(
        "CREATE TABLE src (id int8 PRIMARY KEY, name text, added numeric(6,2), tags text[]);
         INSERT INTO src SELECT g, 'n' || g, g / 4.0, ARRAY['t' || g]
           FROM generate_series(1, 300) g;
         CREATE TABLE dst (id int8 PRIMARY KEY, name text, gone text DEFAULT 'dflt');
         CREATE INDEX dst_name ON dst (name);
         INSERT INTO dst VALUES (1, 'old', 'x');",
    );
    let dir = tempfile::tempdir().unwrap();
    let source = json!({"postgres": {"url": db.url(), "table": "src"}});
    let target = |extra: serde_json::Value| {
        let mut t = json!({"url": db.url(), "table": "dst", "key": "id"});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let columns = |table: &str| {
        db.exec(&format!(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' \
             ORDER BY attnum) FROM pg_attribute WHERE attrelid = '{table}'::regclass \
             AND attnum > 0 AND NOT attisdropped"
        ))
    };
    // `fail`, the default: the new columns and the missing one are named, nothing changes.
    let (ok, err) = run(dir.path(), "FULL_TABLE", source.clone(), target(json!({})));
    assert!(!ok);
    assert!(
        err.contains("lacks: `added`, `tags`, and lacks `gone` that the table has"),
        "{err}"
    );
    assert!(err.contains("on_schema_change"), "{err}");
    assert_eq!(db.exec("SELECT string_agg(name, ',') FROM dst"), "old");
    assert_eq!(columns("dst"), "id bigint, name text, gone text");
    // `add_columns`: the table keeps its index and defaults and gains the source's types.
    let (ok, err) = run_with(
        dir.path(),
        "FULL_TABLE",
        source.clone(),
        target(json!({"on_schema_change": "add_columns"})),
        json!({"resume": "never"}),
    );
    assert!(ok, "{err}");
    assert_eq!(
        columns("dst"),
        "id bigint, name text, gone text, added numeric(6,2), tags text[]"
    );
    assert_eq!(
        db.exec("SELECT count(*), sum(added), count(*) FILTER (WHERE gone = 'dflt') FROM dst"),
        "300|11287.50|300"
    );
    assert_eq!(
        db.exec("SELECT count(*) FROM pg_indexes WHERE tablename = 'dst'"),
        "2"
    );
    // INCREMENTAL: `replace` is refused; `add_columns` adds in the upsert's transaction.
    db.exec(
        "ALTER TABLE src ADD COLUMN later date;
         INSERT INTO src (id, name, later) SELECT g, 'new', '2024-01-01'
           FROM generate_series(301, 310) g;",
    );
    let incremental =
        json!({"postgres": {"url": db.url(), "table": "src", "replication_key": "id"}});
    let (ok, err) = run(
        dir.path(),
        "INCREMENTAL",
        incremental.clone(),
        target(json!({"on_schema_change": "replace"})),
    );
    assert!(!ok);
    assert!(err.contains("cannot replace"), "{err}");
    let (ok, err) = run(
        dir.path(),
        "INCREMENTAL",
        incremental,
        target(json!({"on_schema_change": "add_columns"})),
    );
    assert!(ok, "{err}");
    assert_eq!(db.exec("SELECT count(*), count(later) FROM dst"), "310|10");
    assert!(columns("dst").ends_with("later date"), "{}", columns("dst"));
    // `replace` (FULL_TABLE): a table defined by the data, its index gone.
    db.exec("ALTER TABLE src ADD COLUMN z int2 DEFAULT 7");
    let (ok, err) = run(
        dir.path(),
        "FULL_TABLE",
        source,
        target(json!({"on_schema_change": "replace"})),
    );
    assert!(ok, "{err}");
    assert_eq!(columns("dst"), columns("src"));
    assert_eq!(db.exec("SELECT count(*), sum(z) FROM dst"), "310|2170");
    assert_eq!(
        db.exec("SELECT string_agg(indexname, ',') FROM pg_indexes WHERE tablename = 'dst'"),
        "dst_pkey"
    );
}

#[test]
fn checksums_of_the_source_and_the_staging_agree_for_every_type() {
    let db = Db::new("checksums");
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE types (
           id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8,
           n numeric(12,2), nbig numeric(50,10), nu numeric, t text, c char(3), j json,
           jb jsonb, by bytea, d date, tm time, tz timetz, ts timestamp, tstz timestamptz,
           u uuid, ip inet, mac macaddr, e mood, ints int4[], words text[]);
         INSERT INTO types VALUES
          (1, true, -32768, -2147483648, 'NaN', '-Infinity', -9999999999.99,
           1234567890123456789012345678901234567890.0123456789, 'NaN', '🦀 four bytes', 'ab',
           '{\"a\": [1, 2]}', '{\"b\": null}', '\\x00ff', '4713-01-01 BC', '23:59:59.999999',
           '12:30:00.5+02', '2024-02-29 12:00:00.000001', '2024-03-10 12:00:00+05',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1/64', '08:00:2b:01:02:03',
           'happy', '{1,NULL,3}', '{a,\"b c\",NULL,\"\"}'),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL);
         INSERT INTO types (id, b, i4, f4, f8, n, t, d, ts, e, ints)
           SELECT g, g % 2 = 0, g, g / 7.0, 1.0 / g, g * 1.25, 'row ' || g,
                  '2000-01-01'::date + g, '2000-01-01'::timestamp + g * interval '1 second',
                  (ARRAY['sad', 'happy'])[g % 2 + 1]::mood, ARRAY[g, -g]
           FROM generate_series(3, 4000) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let checked = json!({"verify": "checksum"});
    let verification = |dir: &Path| common::summary(dir)["verification"].clone();
    // PostgreSQL → PostgreSQL in 3 partitions.
    let (ok, err) = run_with(
        dir.path(),
        "FULL_TABLE",
        json!({"postgres": {"url": db.url(), "table": "types", "partitions": 3}}),
        json!({"url": db.url(), "table": "copy", "key": "id"}),
        checked.clone(),
    );
    assert!(ok, "{err}");
    let v = verification(dir.path());
    assert_eq!(v["status"], "passed", "{v}");
    assert_eq!(v["source_rows"], 4000, "{v}");
    let whole = v["source_checksum"]
        .as_str()
        .expect("a source checksum")
        .to_owned();
    assert_eq!(v["target_checksum"], whole.as_str(), "{v}");
    assert_eq!(db.rows("copy"), db.rows("types"));
    // PostgreSQL → Parquet, then Parquet → PostgreSQL: the same checksum all along.
    let out = dir.path().join("out");
    let mut pipeline = json!({
        "name": "pg-to-parquet", "replication_mode": "FULL_TABLE", "verify": "checksum",
        "source": {"postgres": {"url": db.url(), "table": "types"}},
        "transform": {"add_op_fields": false},
        "target": {"file": {"path": out, "format": "parquet"}},
    });
    let (ok, err) = run_pipeline(dir.path(), &pipeline);
    assert!(ok, "{err}");
    let v = verification(dir.path());
    assert_eq!(v["status"], "passed", "{v}");
    assert_eq!(v["source_checksum"], whole.as_str(), "{v}");
    assert_eq!(v["target_checksum"], whole.as_str(), "{v}");
    pipeline["name"] = json!("parquet-to-pg");
    pipeline["source"] = json!({"file": {"path": out, "format": "parquet"}});
    pipeline["target"] =
        json!({"postgres": {"url": db.url(), "table": "from_parquet", "key": "id"}});
    let (ok, err) = run_pipeline(dir.path(), &pipeline);
    assert!(ok, "{err}");
    let v = verification(dir.path());
    assert_eq!(v["status"], "passed", "{v}");
    assert_eq!(v["target_checksum"], whole.as_str(), "{v}");
    assert_eq!(db.rows("from_parquet"), db.rows("types"));
}
