//! The `athena` target through the `fastlane` command, against moto on loopback (S3, Glue and
//! Athena): the table's folder found from its Glue location, every row's `_table_version`, the
//! view replaced at each published run (its statement as Athena received it; moto records
//! statements without running them), the crawler started, and one clear error per mistake.

mod common;

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use common::S3;
use fastlane_tests::conformance::{self, TargetFixture};
use fastlane_tests::fastlane_with_env;
use serde_json::{Value, json};

/// Each conformance folder a table of its own, in one bucket and one Glue database.
struct Fixture {
    s3: S3,
    database: String,
}

impl Fixture {
    fn table(dir: &Path) -> String {
        common::unique_name(&dir.display().to_string())
    }
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "athena"
    }

    fn columns(&self) -> Vec<&'static str> {
        conformance::ALL_COLUMNS.to_vec()
    }

    fn config(&self, dir: &Path) -> Value {
        json!({
            "table": Self::table(dir), "database": self.database, "bucket": self.s3.bucket,
            "pk": "id", "endpoint_url": common::endpoint(), "glue_endpoint_url": common::endpoint(),
            "region": "us-east-1", "access_key_id": "test", "secret_access_key": "test",
        })
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        self.s3.read_table(&Self::table(dir))
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        self.s3.keys(&format!("{}/", Self::table(dir)))
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"table": "my_table", "database": "my-bucket", "batch_size": 100000,
                   "concurrency": 8}),
            json!({"table": "events", "bucket": "lake", "prefix": "raw", "view_database": "views",
                   "work_group": "etl", "output_location": "s3://results/athena/", "pk": "id",
                   "crawler": "events", "compression": "zstd", "on_schema_change": "add_columns"}),
        ]
    }
}

#[test]
fn conformance() {
    let database = common::unique_name(&format!("athena-conformance-{}", std::process::id()));
    conformance::check_target(
        "aws",
        &Fixture {
            s3: S3::new("athenaconf"),
            database,
        },
    );
}

fn glue() -> aws_sdk_glue::Client {
    aws_sdk_glue::Client::from_conf(
        aws_sdk_glue::Config::builder()
            .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
            .endpoint_url(common::endpoint())
            .region(aws_sdk_glue::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_glue::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build(),
    )
}

fn athena() -> aws_sdk_athena::Client {
    aws_sdk_athena::Client::from_conf(
        aws_sdk_athena::Config::builder()
            .behavior_version(aws_sdk_athena::config::BehaviorVersion::latest())
            .endpoint_url(common::endpoint())
            .region(aws_sdk_athena::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_athena::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build(),
    )
}

/// Creates the Glue database (when missing) and `table` in it, at `location`, without columns.
fn glue_table(database: &str, table: &str, location: &str) {
    common::runtime().block_on(async {
        let glue = glue();
        let created = glue
            .create_database()
            .database_input(
                aws_sdk_glue::types::DatabaseInput::builder()
                    .name(database)
                    .build()
                    .unwrap(),
            )
            .send()
            .await;
        if let Err(e) = created {
            assert!(
                e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()),
                "create database: {e:?}"
            );
        }
        glue.create_table()
            .database_name(database)
            .table_input(
                aws_sdk_glue::types::TableInput::builder()
                    .name(table)
                    .storage_descriptor(
                        aws_sdk_glue::types::StorageDescriptor::builder()
                            .location(location)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create table");
    });
}

/// Writes `orders.csv`: ids `first..last`, each amount `id * factor`.
fn write_orders(dir: &Path, first: i64, last: i64, factor: i64) {
    let mut csv = String::from("id,name,amount\n");
    for i in first..last {
        csv.push_str(&format!("{i},item {i},{}\n", i * factor));
    }
    std::fs::write(dir.join("orders.csv"), csv).expect("write csv");
}

/// Runs file → athena with `target`; the command's output and exit code.
fn run(dir: &Path, mode: &str, target: Value) -> fastlane_tests::Output {
    let config = json!({
        "replication_mode": mode,
        "source": {"file": {"path": "orders.csv", "replication_key": "id"}},
        "target": {"athena": target},
    });
    run_config(dir, "athena", &config)
}

/// Runs the pipeline `config` (its source `file`) into target `target`.
fn run_config(dir: &Path, target: &str, config: &Value) -> fastlane_tests::Output {
    std::fs::write(dir.join("p.json"), config.to_string()).expect("config");
    fastlane_with_env(
        dir,
        &[
            "--source=file",
            &format!("--target={target}"),
            "--config=p.json",
            "--progress=off",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
}

/// The statements Athena received that mention `text`, oldest first.
fn statements(text: &str) -> Vec<String> {
    common::runtime().block_on(async {
        let client = athena();
        let ids = client
            .list_query_executions()
            .send()
            .await
            .expect("list query executions");
        let mut found = Vec::new();
        for id in ids.query_execution_ids() {
            let execution = client
                .get_query_execution()
                .query_execution_id(id)
                .send()
                .await
                .expect("query execution");
            let q = execution.query_execution().expect("execution");
            if let Some(sql) = q.query().filter(|s| s.contains(text)) {
                let at = q
                    .status()
                    .and_then(|s| s.submission_date_time())
                    .map(|t| t.as_nanos())
                    .unwrap_or_default();
                found.push((at, sql.to_owned(), q.work_group().unwrap_or("").to_owned()));
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(_, sql, wg)| format!("[{wg}] {sql}"))
            .collect()
    })
}

fn versions(batches: &[arrow_array::RecordBatch]) -> Vec<i64> {
    let mut v: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("_table_version")
                .expect("_table_version")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn an_athena_table_gets_its_rows_its_view_and_its_crawl() {
    let s3 = S3::new("athena");
    let database = common::unique_name(&format!("athena-{}", std::process::id()));
    let views = format!("{database}_views");
    let table = "orders";
    let folder = format!("lake/{database}/{table}");
    let work_group = format!("wg-{database}");
    let crawler = format!("crawl-{database}");
    // The table exists: its location says where the objects go.
    glue_table(&database, table, &format!("s3://{}/{folder}/", s3.bucket));
    common::runtime().block_on(async {
        let glue = glue();
        glue.create_crawler()
            .name(&crawler)
            .role("arn:aws:iam::123456789012:role/crawler")
            .database_name(&database)
            .targets(
                aws_sdk_glue::types::CrawlerTargets::builder()
                    .s3_targets(
                        aws_sdk_glue::types::S3Target::builder()
                            .path(format!("s3://{}/{folder}/", s3.bucket))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("create crawler");
        athena()
            .create_work_group()
            .name(&work_group)
            .send()
            .await
            .expect("create work group");
    });
    let target = json!({
        "table": table, "database": database, "view_database": views, "work_group": work_group,
        "pk": "id", "crawler": crawler, "batch_size": 400, "concurrency": 2,
        "endpoint_url": common::endpoint(), "glue_endpoint_url": common::endpoint(),
        "athena_endpoint_url": common::endpoint(), "region": "us-east-1",
    });
    let dir = tempfile::tempdir().expect("temp dir");

    write_orders(dir.path(), 0, 1000, 1);
    let out = run(dir.path(), "FULL_TABLE", target.clone());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let full = s3.read_table(&folder);
    assert_eq!(full.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
    let v1 = versions(&full);
    assert_eq!(v1.len(), 1, "one version per run: {v1:?}");
    // `batch_size` is the rows of an object, as in the original.
    let manifest = s3.manifests(&folder).pop().expect("a manifest");
    assert_eq!(manifest["table_version"], json!(v1[0]));
    for object in manifest["objects"].as_array().expect("objects") {
        assert!(object["rows"].as_u64().unwrap() <= 400, "{object}");
    }
    let columns = common::runtime().block_on(async {
        let t = glue()
            .get_table()
            .database_name(&database)
            .name(table)
            .send()
            .await
            .expect("get table");
        let sd = t.table().and_then(|t| t.storage_descriptor()).expect("sd");
        (
            sd.location().unwrap_or_default().to_owned(),
            sd.columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(columns.0, format!("s3://{}/{folder}/", s3.bucket));
    assert_eq!(
        columns.1,
        [
            "id",
            "name",
            "amount",
            "_op_type",
            "_op_timestamp",
            "_table_version"
        ]
    );
    let view = format!("\"{views}\".\"{table}\"");
    let seen = statements(&view);
    assert_eq!(
        seen,
        [format!(
            "[{work_group}] CREATE OR REPLACE VIEW {view} AS SELECT \"id\", \"name\", \"amount\", \
             \"_op_type\", \"_op_timestamp\", \"_table_version\" FROM (SELECT *, row_number() \
             OVER (PARTITION BY \"id\" ORDER BY \"_table_version\" DESC, \"_op_timestamp\" DESC) \
             AS \"_fastlane_rank\" FROM \"{database}\".\"{table}\" WHERE \"_table_version\" \
             BETWEEN {v} AND {v}) WHERE \"_fastlane_rank\" = 1",
            v = v1[0]
        )]
    );
    let state = common::runtime().block_on(async {
        glue()
            .get_crawler()
            .name(&crawler)
            .send()
            .await
            .expect("get crawler")
            .crawler()
            .and_then(|c| c.state().map(|s| s.as_str().to_owned()))
    });
    assert_eq!(state.as_deref(), Some("RUNNING"), "the crawler was started");

    // INCREMENTAL: only the rows after the largest id published are read; the view now spans
    // both runs' versions.
    write_orders(dir.path(), 500, 1500, 2);
    let out = run(dir.path(), "INCREMENTAL", target.clone());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let all = s3.read_table(&folder);
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 1500);
    let both = versions(&all);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[1] > both[0]);
    let seen = statements(&view);
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen[1].contains(&format!("BETWEEN {} AND {}", both[0], both[1])),
        "{}",
        seen[1]
    );

    // A FULL_TABLE run starts the view's range again at its own version.
    write_orders(dir.path(), 0, 10, 3);
    let out = run(dir.path(), "FULL_TABLE", target.clone());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let last = versions(&s3.read_table(&folder));
    assert_eq!(last.len(), 1);
    assert!(last[0] > both[1]);
    let seen = statements(&view);
    assert!(
        seen[2].contains(&format!("BETWEEN {v} AND {v}", v = last[0])),
        "{}",
        seen[2]
    );
}

#[test]
fn athena_mistakes_are_one_clear_error_each() {
    let s3 = S3::new("athenabad");
    let database = common::unique_name(&format!("athenabad-{}", std::process::id()));
    let dir = tempfile::tempdir().expect("temp dir");
    write_orders(dir.path(), 0, 10, 1);
    let base = json!({
        "table": "t", "database": database, "endpoint_url": common::endpoint(),
        "glue_endpoint_url": common::endpoint(), "athena_endpoint_url": common::endpoint(),
        "region": "us-east-1",
    });
    let with = |extra: Value| {
        let mut t = base.clone();
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let cases = [
        (
            base.clone(),
            format!("the Glue table `{database}.t` does not exist: give `bucket` to create it"),
        ),
        (
            with(json!({"bucket": s3.bucket, "crawler": "no-such-crawler"})),
            "the Glue crawler `no-such-crawler` does not exist".to_owned(),
        ),
        (
            with(json!({"bucket": s3.bucket, "view_database": "v", "work_group": "no-such-wg"})),
            "Athena work group `no-such-wg`".to_owned(),
        ),
        (
            with(json!({"bucket": s3.bucket, "compression": "gzip"})),
            "`compression` of Parquet is `snappy`, `zstd` or `none`".to_owned(),
        ),
    ];
    for (target, message) in cases {
        let out = run(dir.path(), "FULL_TABLE", target.clone());
        assert_ne!(out.code, 0, "{target}: {}", out.stdout);
        assert!(out.stderr.contains(&message), "{target}:\n{}", out.stderr);
    }
    // Nothing was written by the failed runs.
    assert!(s3.keys("").is_empty(), "{:?}", s3.keys(""));

    // A table at another bucket than the one given.
    glue_table(&database, "t", "s3://elsewhere/t/");
    let out = run(dir.path(), "FULL_TABLE", with(json!({"bucket": s3.bucket})));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(&format!(
            "the Glue table `{database}.t` is at `s3://elsewhere/t/`, not in the bucket `{}`",
            s3.bucket
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn a_firehose_run_tags_its_records_and_replaces_the_view_as_the_originals_did() {
    let s3 = S3::new("firehoseview");
    let database = common::unique_name(&format!("fhview-{}", std::process::id()));
    let stream = format!("fh-{database}");
    let work_group = format!("wg-{database}");
    let firehose = common::firehose_client();
    common::create_delivery_stream(&firehose, &s3.bucket, &stream);
    // The Glue table the stream delivers into, with its columns.
    glue_table(
        &database,
        "events",
        &format!("s3://{}/{stream}/", s3.bucket),
    );
    common::runtime().block_on(async {
        let columns = ["id", "name", "amount", "_table_version"].map(|c| {
            aws_sdk_glue::types::Column::builder()
                .name(c)
                .r#type("string")
                .build()
                .unwrap()
        });
        glue()
            .update_table()
            .database_name(&database)
            .table_input(
                aws_sdk_glue::types::TableInput::builder()
                    .name("events")
                    .storage_descriptor(
                        aws_sdk_glue::types::StorageDescriptor::builder()
                            .location(format!("s3://{}/{stream}/", s3.bucket))
                            .set_columns(Some(columns.to_vec()))
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("update table");
        athena()
            .create_work_group()
            .name(&work_group)
            .send()
            .await
            .expect("create work group");
    });
    let dir = tempfile::tempdir().expect("temp dir");
    write_orders(dir.path(), 0, 20, 1);
    let config = json!({
        "replication_mode": "FULL_TABLE",
        "source": {"file": {"path": "orders.csv"}},
        "transform": {"add_op_fields": false},
        "target": {"firehose": {
            "delivery_stream": stream, "database": database, "table": "events",
            "view_database": format!("{database}_views"), "work_group": work_group, "pk": "id",
            "batch_size": 8, "endpoint_url": common::endpoint(),
            "glue_endpoint_url": common::endpoint(), "athena_endpoint_url": common::endpoint(),
            "region": "us-east-1",
        }},
    });
    let out = run_config(dir.path(), "firehose", &config);
    common::delete_delivery_stream(&firehose, &stream);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Every record carries the run's version; `batch_size` 8 makes calls of at most 8 records
    // (moto writes one object per call).
    let keys = s3.keys(&format!("{stream}/"));
    assert_eq!(keys.len(), 3, "{keys:?}");
    let mut versions = std::collections::BTreeSet::new();
    let mut rows = 0;
    for key in &keys {
        for line in String::from_utf8(s3.get(key)).expect("utf-8").lines() {
            let record: Value = serde_json::from_str(line).expect("JSON record");
            versions.insert(record["_table_version"].as_i64().expect("a version"));
            rows += 1;
        }
    }
    assert_eq!(rows, 20);
    assert_eq!(versions.len(), 1, "{versions:?}");
    let v = versions.into_iter().next().unwrap();
    let view = format!("\"{database}_views\".\"events\"");
    let seen = statements(&view);
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(
        seen[0].starts_with(&format!("[{work_group}] CREATE OR REPLACE VIEW {view} AS SELECT \"id\", \"name\", \"amount\", \"_table_version\" FROM (SELECT *, row_number() OVER (PARTITION BY \"id\"")),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains(&format!("BETWEEN {v} AND {v}")),
        "{}",
        seen[0]
    );

    // The view's settings without `view_database` are refused, each by name.
    let mut bad = config.clone();
    bad["target"]["firehose"]
        .as_object_mut()
        .unwrap()
        .remove("view_database");
    let out = run_config(dir.path(), "firehose", &bad);
    assert_ne!(out.code, 0);
    for name in ["work_group", "pk"] {
        assert!(
            out.stderr.contains(&format!(
                "`{name}` is a setting of the view: it needs `view_database`"
            )),
            "{}",
            out.stderr
        );
    }
}
