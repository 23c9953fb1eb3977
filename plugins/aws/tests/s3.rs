//! The `s3` target against a real S3 server on loopback (moto's server mode, started by the
//! test command; `FASTLANE_TEST_AWS_ENDPOINT` points elsewhere): the conformance suite, every
//! format, rolling, multipart uploads, manifests, and failures.

mod common;

use std::path::Path;
use std::time::Duration;

use arrow_array::RecordBatch;
use common::{Moto, S3};
use fastlane_host::engine::{self, EngineOptions, Named, NoObserver, Pipeline};
use fastlane_plugin_api::{BatchStream, IterStream, Partition, ReplicationMode, Source, Target};
use fastlane_tests::conformance::{self, TargetFixture, standard_batches};
use serde_json::{Value, json};

/// Maps a conformance folder to a table of its own in one bucket.
struct Fixture {
    s3: S3,
}

impl Fixture {
    fn table(dir: &Path) -> String {
        common::unique_name(&dir.display().to_string())
    }
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "s3"
    }

    fn columns(&self) -> Vec<&'static str> {
        conformance::ALL_COLUMNS.to_vec()
    }

    fn config(&self, dir: &Path) -> Value {
        let mut config = self.s3.config(&Self::table(dir));
        config["key"] = json!("id");
        config
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        self.s3.read_table(&Self::table(dir))
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        self.s3.keys(&format!("{}/", Self::table(dir)))
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"bucket": "lake", "table": "orders"}),
            json!({"bucket": "lake", "prefix": "raw/shop", "table": "orders", "format": "jsonl",
                   "compression": "gzip", "partition": "{year}/{month}/{day}", "key": "id",
                   "max_rows_per_object": 1000000, "region": "eu-west-1"}),
            json!({"bucket": "lake", "table": "orders", "format": "parquet", "compression": "zstd",
                   "endpoint_url": "http://127.0.0.1:9000", "access_key_id": "minio",
                   "secret_access_key": "${MINIO_SECRET}", "part_size": 8388608,
                   "concurrency": 2}),
        ]
    }
}

#[test]
fn conformance() {
    let s3 = S3::new("conformance");
    conformance::check_target("aws", &Fixture { s3 });
}

fn options(mode: ReplicationMode, workers: usize) -> EngineOptions {
    EngineOptions {
        mode,
        target_concurrency: workers,
        max_buffered_batches: 4,
        ..EngineOptions::default()
    }
}

/// Runs `batches` into the `s3` target configured by `config`.
fn load(
    config: &Value,
    batches: Vec<RecordBatch>,
    mode: ReplicationMode,
    workers: usize,
) -> Result<(), String> {
    common::load("s3", config, batches, mode, workers)
}

/// The standard columns CSV and JSON Lines carry as text (binary has no text form there).
const TEXT_COLUMNS: &[&str] = &["int32", "int64", "float64", "text", "flag", "day", "moment"];

#[test]
fn every_format_reads_back_the_same_rows() {
    let s3 = S3::new("formats");
    let columns = TEXT_COLUMNS;
    let batches = standard_batches(1, 5_000, 1_000, columns);
    let expected = conformance::rows_as_text(&batches, columns);
    for (format, compression, suffix) in [
        ("parquet", "snappy", ".parquet"),
        ("parquet", "zstd", ".parquet"),
        ("parquet", "none", ".parquet"),
        ("jsonl", "none", ".jsonl"),
        ("jsonl", "gzip", ".jsonl.gz"),
        ("csv", "none", ".csv"),
        ("csv", "gzip", ".csv.gz"),
    ] {
        let table = format!("fmt_{format}_{compression}");
        let mut config = s3.config(&table);
        config["format"] = json!(format);
        config["compression"] = json!(compression);
        load(&config, batches.clone(), ReplicationMode::FullTable, 2)
            .unwrap_or_else(|e| panic!("{format}/{compression}: {e}"));
        let manifest = s3.manifests(&table).pop().expect("a manifest");
        assert_eq!(manifest["format"], format);
        assert_eq!(manifest["compression"], compression);
        assert_eq!(manifest["rows"], 5_000);
        for object in manifest["objects"].as_array().expect("objects") {
            let key = object["key"].as_str().expect("key");
            assert!(key.ends_with(suffix), "{key} should end with {suffix}");
            assert!(key.contains("/dt="), "{key} should be date-partitioned");
        }
        let back = s3.read_table_as(&table, &batches[0].schema());
        assert_eq!(
            conformance::rows_as_text(&back, columns),
            expected,
            "{format}/{compression}"
        );
    }
}

#[test]
fn objects_roll_by_rows_and_the_layout_is_configurable() {
    let s3 = S3::new("rolling");
    let mut config = s3.config("rolled");
    config["prefix"] = json!("raw/shop/");
    config["partition"] = json!("{year}/{month}/{day}");
    config["max_rows_per_object"] = json!(1_500);
    config["format"] = json!("jsonl");
    let batches = standard_batches(1, 10_000, 1_000, &[]);
    load(&config, batches.clone(), ReplicationMode::FullTable, 1).unwrap();
    let manifest = s3.manifests("raw/shop/rolled").pop().expect("a manifest");
    let objects = manifest["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 7, "10000 rows in objects of at most 1500");
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    for o in objects {
        assert!(o["rows"].as_u64().unwrap() <= 1_500);
        let key = o["key"].as_str().unwrap();
        assert!(
            key.starts_with(&format!("raw/shop/rolled/{today}/")),
            "{key}"
        );
    }
    assert_eq!(
        s3.read_table_as("raw/shop/rolled", &batches[0].schema())
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        10_000
    );
}

#[test]
fn large_objects_go_up_in_parts() {
    let s3 = S3::new("multipart");
    let mut config = s3.config("big");
    // Uncompressed JSON Lines of about 27 MB: six parts of 5 MiB.
    config["format"] = json!("jsonl");
    config["part_size"] = json!(5 * 1024 * 1024);
    config["upload_concurrency"] = json!(2);
    let batches = standard_batches(1, 150_000, 10_000, TEXT_COLUMNS);
    load(&config, batches.clone(), ReplicationMode::FullTable, 1).unwrap();
    let manifest = s3.manifests("big").pop().expect("a manifest");
    let objects = manifest["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 1);
    let key = objects[0]["key"].as_str().unwrap();
    let bytes = objects[0]["bytes"].as_u64().unwrap();
    assert!(bytes > 10 * 1024 * 1024, "the object is {bytes} bytes");
    let (size, parts) = s3.size_and_parts(key);
    assert_eq!(size, bytes, "the manifest gives the object's size");
    assert!(parts >= 2, "uploaded in {parts} parts");
    let back = s3.read_table_as("big", &batches[0].schema());
    assert_eq!(
        conformance::rows_as_text(&back, TEXT_COLUMNS),
        conformance::rows_as_text(&batches, TEXT_COLUMNS)
    );
}

#[test]
fn a_full_load_replaces_the_previous_runs_objects_unless_kept() {
    let s3 = S3::new("replace");
    let config = s3.config("t");
    load(
        &config,
        standard_batches(1, 100, 50, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    let first = s3.keys("t/");
    load(
        &config,
        standard_batches(1, 30, 50, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    let second = s3.keys("t/");
    assert!(
        first.iter().all(|k| !second.contains(k)),
        "the first run's objects and manifest are gone: {first:?} / {second:?}"
    );
    assert_eq!(s3.manifests("t").len(), 1);

    let mut keep = config.clone();
    keep["keep_previous"] = json!(true);
    load(
        &keep,
        standard_batches(1, 10, 50, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    assert_eq!(s3.manifests("t").len(), 2, "both runs' manifests are kept");
    let rows: usize = s3.read_table("t").iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 10, "readers see only the newest full load");
}

#[test]
fn incremental_runs_need_a_key_and_continue_after_it() {
    let s3 = S3::new("incremental");
    let config = s3.config("events");
    let err = load(
        &config,
        standard_batches(1, 10, 10, &[]),
        ReplicationMode::Incremental,
        1,
    )
    .unwrap_err();
    assert!(err.contains("INCREMENTAL runs need `key`"), "{err}");
    assert!(s3.keys("events/").is_empty(), "nothing was written");

    let mut config = config;
    config["key"] = json!("id");
    let plugin = conformance::load("aws");
    let offset = || {
        plugin
            .create_target("s3", &config)
            .unwrap()
            .get_offset()
            .unwrap()
    };
    assert_eq!(offset(), None);
    load(
        &config,
        standard_batches(1, 100, 10, &[]),
        ReplicationMode::Incremental,
        2,
    )
    .unwrap();
    assert_eq!(offset(), Some(json!(100)));
    load(
        &config,
        standard_batches(101, 50, 10, &[]),
        ReplicationMode::Incremental,
        2,
    )
    .unwrap();
    assert_eq!(offset(), Some(json!(150)));
    assert_eq!(s3.manifests("events").len(), 2);
    let rows: usize = s3
        .read_table("events")
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 150);
}

#[test]
fn objects_without_a_manifest_are_ignored() {
    let s3 = S3::new("orphans");
    let mut config = s3.config("t");
    config["key"] = json!("id");
    load(
        &config,
        standard_batches(1, 20, 10, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    // What a killed run leaves: a data object no manifest lists.
    s3.put(
        "t/dt=2026-01-01/killed-000-00000.parquet",
        b"not even parquet".to_vec(),
    );
    let rows: usize = s3.read_table("t").iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 20);
    load(
        &config,
        standard_batches(21, 5, 10, &[]),
        ReplicationMode::Incremental,
        1,
    )
    .unwrap();
    let offset = conformance::load("aws")
        .create_target("s3", &config)
        .unwrap()
        .get_offset()
        .unwrap();
    assert_eq!(offset, Some(json!(25)));
    let rows: usize = s3.read_table("t").iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 25);
}

#[test]
fn a_run_written_without_the_key_makes_the_offset_unknown_not_wrong() {
    let s3 = S3::new("keyless");
    let config = s3.config("t");
    load(
        &config,
        standard_batches(1, 20, 10, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap();
    let mut keyed = config.clone();
    keyed["key"] = json!("id");
    let err = load(
        &keyed,
        standard_batches(21, 5, 10, &[]),
        ReplicationMode::Incremental,
        1,
    )
    .unwrap_err();
    assert!(err.contains("was written without the key `id`"), "{err}");
    assert_eq!(s3.manifests("t").len(), 1, "nothing more was published");
}

#[test]
fn bad_settings_and_missing_buckets_are_clear_errors() {
    let s3 = S3::new("errors");
    let plugin = conformance::load("aws");
    let mut config = s3.config("t");
    config["bucket"] = json!("no-such-bucket-fastlane");
    let err = load(
        &config,
        standard_batches(1, 10, 10, &[]),
        ReplicationMode::FullTable,
        1,
    )
    .unwrap_err();
    assert!(
        err.contains("the bucket `no-such-bucket-fastlane` does not exist"),
        "{err}"
    );

    let mut config = s3.config("t");
    config["compression"] = json!("gzip");
    config["partition"] = json!("{week}");
    let err = plugin
        .create_target("s3", &config)
        .err()
        .expect("invalid")
        .to_string();
    assert!(
        err.contains("`compression: gzip`") && err.contains("`{week}`"),
        "{err}"
    );
}

/// A source that hands out a batch, then waits, so a test can break the server meanwhile.
struct Slow(Vec<RecordBatch>, Duration);

impl Source for Slow {
    fn read(&self, _partition: &Partition) -> fastlane_plugin_api::Result<Box<dyn BatchStream>> {
        let pause = self.1;
        Ok(Box::new(IterStream(self.0.clone().into_iter().map(
            move |b| {
                std::thread::sleep(pause);
                Ok(b)
            },
        ))))
    }
}

#[test]
fn a_server_that_goes_away_mid_run_fails_the_run_clearly() {
    let mut moto = Moto::start();
    let s3 = S3::at(&moto.endpoint(), "gone");
    let mut config = s3.config("t");
    config["max_rows_per_object"] = json!(100);
    config["max_attempts"] = json!(2);
    let plugin = conformance::load("aws");
    let target = plugin.create_target("s3", &config).unwrap();
    let pipeline = Pipeline {
        source: Named::new(
            "slow",
            Box::new(Slow(
                standard_batches(1, 2_000, 100, &[]),
                Duration::from_millis(100),
            )) as Box<dyn Source>,
        ),
        transforms: vec![],
        target: Named::new("s3", Box::new(target) as Box<dyn Target>),
    };
    let run = std::thread::spawn(move || {
        engine::run(
            pipeline,
            &options(ReplicationMode::FullTable, 1),
            &mut NoObserver,
        )
        .map(|_| ())
        .map_err(|e| fastlane_host::error::chain(&e))
    });
    // Let a few objects through, then stop the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s3.keys("t/").len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no objects arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Uploaded, but not published: readers see nothing of the run yet.
    assert!(s3.manifests("t").is_empty());
    assert_eq!(s3.read_table("t").len(), 0);
    moto.stop();
    let started = std::time::Instant::now();
    let err = run.join().expect("the run thread").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it failed in bounded time"
    );
    assert!(err.contains("target `s3` failed"), "{err}");
    assert!(
        err.contains("Connection refused") || err.contains("connect"),
        "the cause is named: {err}"
    );
}

fn glue_client() -> aws_sdk_glue::Client {
    let config = aws_sdk_glue::Config::builder()
        .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
        .endpoint_url(common::endpoint())
        .region(aws_sdk_glue::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_glue::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    aws_sdk_glue::Client::from_conf(config)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn the_table_is_registered_in_glue_when_configured() {
    let s3 = S3::new("glue");
    let database = common::unique_name(&format!("glue-{}", std::process::id()));
    let mut config = s3.config("web/Orders");
    config["glue"] = json!({"database": database, "endpoint_url": common::endpoint()});
    let batches = standard_batches(
        1,
        2_000,
        500,
        &["int32", "float64", "text", "flag", "day", "moment"],
    );
    load(&config, batches.clone(), ReplicationMode::FullTable, 1).expect("load");
    let glue = glue_client();
    let table = block_on(
        glue.get_table()
            .database_name(&database)
            .name("web_orders")
            .send(),
    )
    .expect("the table is registered")
    .table
    .expect("table");
    let sd = table.storage_descriptor().expect("storage descriptor");
    assert_eq!(
        sd.location(),
        Some(format!("s3://{}/web/Orders/", s3.bucket).as_str())
    );
    let columns: Vec<(String, String)> = sd
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.r#type().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("id", "bigint"),
        ("int32", "int"),
        ("float64", "double"),
        ("text", "string"),
        ("flag", "boolean"),
        ("day", "date"),
        ("moment", "timestamp"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(columns, expected);
    assert_eq!(
        sd.serde_info().and_then(|s| s.serialization_library()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    let keys: Vec<&str> = table.partition_keys().iter().map(|c| c.name()).collect();
    assert_eq!(keys, ["dt"]);
    let partitions = block_on(
        glue.get_partitions()
            .database_name(&database)
            .table_name("web_orders")
            .send(),
    )
    .expect("partitions");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let values: Vec<Vec<String>> = partitions
        .partitions()
        .iter()
        .map(|p| p.values().to_vec())
        .collect();
    assert_eq!(values, [vec![today.clone()]]);
    assert_eq!(
        partitions.partitions()[0]
            .storage_descriptor()
            .and_then(|s| s.location()),
        Some(format!("s3://{}/web/Orders/dt={today}/", s3.bucket).as_str())
    );

    // A second run with other columns redefines the table (`on_schema_change: replace`); the
    // partition is not added twice.
    let wider = standard_batches(1, 100, 100, &["int32", "int64", "text"]);
    let mut replacing = config.clone();
    replacing["glue"]["on_schema_change"] = json!("replace");
    load(&replacing, wider, ReplicationMode::FullTable, 1).expect("second load");
    let table = block_on(
        glue.get_table()
            .database_name(&database)
            .name("web_orders")
            .send(),
    )
    .expect("table")
    .table
    .expect("table");
    let names: Vec<&str> = table
        .storage_descriptor()
        .expect("sd")
        .columns()
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(names, ["id", "int32", "int64", "text"]);

    // A column Glue cannot type fails the run before it is published; nothing is left.
    let time = {
        use std::sync::Arc;
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
            arrow_schema::Field::new(
                "at",
                arrow_schema::DataType::Time64(arrow_schema::TimeUnit::Microsecond),
                true,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow_array::Int64Array::from(vec![1])),
                Arc::new(arrow_array::Time64MicrosecondArray::from(vec![5])),
            ],
        )
        .expect("batch")
    };
    let manifests_before = s3.manifests("web/Orders").len();
    let error = load(&config, vec![time], ReplicationMode::FullTable, 1).unwrap_err();
    assert!(
        error.contains("the column `at` is Time64(µs), which has no Glue type")
            || error.contains("the column `at` is Time64"),
        "{error}"
    );
    assert_eq!(s3.manifests("web/Orders").len(), manifests_before);

    // `glue` without a database anywhere is a configuration error.
    let mut bad = s3.config("x");
    bad["glue"] = json!({});
    let error = conformance::load("aws")
        .create_target("s3", &bad)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("`glue` needs a database"), "{error}");
}

#[test]
fn a_schema_change_fails_adds_columns_or_replaces_the_glue_table() {
    let s3 = S3::new("gluechange");
    let database = common::unique_name(&format!("gluechange-{}", std::process::id()));
    let glue = glue_client();
    let columns = || -> Vec<(String, String)> {
        let table = block_on(glue.get_table().database_name(&database).name("t").send())
            .expect("the table is registered")
            .table
            .expect("table");
        table
            .storage_descriptor()
            .expect("storage descriptor")
            .columns()
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.r#type().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let config = |on_change: &str| {
        let mut config = s3.config("t");
        config["glue"] = json!({"database": database, "endpoint_url": common::endpoint(),
                                "on_schema_change": on_change});
        config
    };
    let names = |cols: Vec<(String, String)>| cols.into_iter().map(|c| c.0).collect::<Vec<_>>();
    load(
        &config("fail"),
        standard_batches(1, 100, 50, &["int32", "text"]),
        ReplicationMode::FullTable,
        1,
    )
    .expect("first load");
    assert_eq!(names(columns()), ["id", "int32", "text"]);

    // fail: nothing is published, the table is unchanged.
    let before = s3.keys("t/_fastlane/manifests/").len();
    let err = load(
        &config("fail"),
        standard_batches(1, 100, 50, &["int32", "text", "flag"]),
        ReplicationMode::FullTable,
        1,
    )
    .expect_err("a new column fails");
    assert!(err.contains("has columns the table lacks: `flag`"), "{err}");
    assert_eq!(s3.keys("t/_fastlane/manifests/").len(), before);
    assert_eq!(names(columns()), ["id", "int32", "text"]);

    // add_columns: the table's columns stay, the new one is added.
    load(
        &config("add_columns"),
        standard_batches(1, 100, 50, &["flag", "text", "int32"]),
        ReplicationMode::FullTable,
        1,
    )
    .expect("add_columns");
    assert_eq!(names(columns()), ["id", "int32", "text", "flag"]);

    // Fewer columns keep the table's definition; replace defines it by the data.
    load(
        &config("fail"),
        standard_batches(1, 100, 50, &["int32"]),
        ReplicationMode::FullTable,
        1,
    )
    .expect("fewer columns");
    assert_eq!(names(columns()), ["id", "int32", "text", "flag"]);
    load(
        &config("replace"),
        standard_batches(1, 100, 50, &["int32"]),
        ReplicationMode::FullTable,
        1,
    )
    .expect("replace");
    assert_eq!(names(columns()), ["id", "int32"]);
}
