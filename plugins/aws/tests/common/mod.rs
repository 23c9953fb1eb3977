//! Talking to the S3 server of the tests directly (not through the plugin), to prepare buckets
//! and read back what the target published; and a private moto server a test may stop.

#![allow(dead_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, EncryptionConfiguration, ExtendedS3DestinationConfiguration,
    NoEncryptionConfig,
};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use fastlane_host::engine::{self, EngineOptions, Named, NoObserver, Pipeline};
use fastlane_plugin_api::{BatchStream, IterStream, Partition, ReplicationMode, Source, Target};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

/// The S3 endpoint of the shared test server.
pub fn endpoint() -> String {
    std::env::var("FASTLANE_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
}

/// A short name derived from `seed`, usable as a table or bucket name.
pub fn unique_name(seed: &str) -> String {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    format!("t_{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// The tests' runtime for SDK calls.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// One bucket of its own on an S3 server.
pub struct S3 {
    client: Client,
    endpoint: String,
    /// The bucket.
    pub bucket: String,
}

impl S3 {
    /// A new bucket on the shared server, named after `name`.
    pub fn new(name: &str) -> Self {
        Self::at(&endpoint(), name)
    }

    /// A new bucket on the server at `endpoint`.
    pub fn at(endpoint: &str, name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let bucket = format!("fastlane-{name}-{}-{nanos:09}", std::process::id())
            .to_lowercase()
            .replace('_', "-");
        let client = client(endpoint);
        runtime()
            .block_on(client.create_bucket().bucket(&bucket).send())
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create a bucket on {endpoint} (is moto running? tests/services.sh \
                     start): {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        Self {
            client,
            endpoint: endpoint.to_owned(),
            bucket,
        }
    }

    /// The `s3` target's configuration for `table` in this bucket.
    pub fn config(&self, table: &str) -> Value {
        json!({
            "bucket": self.bucket,
            "table": table,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": "test",
            "secret_access_key": "test",
        })
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        runtime().block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.expect("list objects");
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            keys.sort();
            keys
        })
    }

    /// An object's bytes.
    pub fn get(&self, key: &str) -> Vec<u8> {
        runtime().block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e}"));
            out.body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec()
        })
    }

    /// Puts an object.
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        runtime()
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(bytes))
                    .send(),
            )
            .expect("put object");
    }

    /// An object's size, and how many parts it was uploaded in (1 for a single request, from
    /// the `-N` suffix of a multipart upload's ETag).
    pub fn size_and_parts(&self, key: &str) -> (u64, u32) {
        let head = runtime()
            .block_on(
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .expect("head object");
        let etag = head.e_tag().unwrap_or("").trim_matches('"');
        let parts = etag
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(1);
        (head.content_length().unwrap_or(0) as u64, parts)
    }

    /// The manifests of the table at `base`, oldest first.
    pub fn manifests(&self, base: &str) -> Vec<Value> {
        self.keys(&format!("{base}/_fastlane/manifests/"))
            .iter()
            .map(|k| serde_json::from_slice(&self.get(k)).expect("manifest JSON"))
            .collect()
    }

    /// The rows a reader that follows the manifests sees: the objects of the newest FULL_TABLE
    /// run and of every INCREMENTAL run after it. Parquet objects only.
    pub fn read_table(&self, base: &str) -> Vec<RecordBatch> {
        self.read(base, None)
    }

    /// Like [`S3::read_table`], for any format, decoding CSV and JSON Lines with `schema`.
    pub fn read_table_as(&self, base: &str, schema: &SchemaRef) -> Vec<RecordBatch> {
        self.read(base, Some(schema.clone()))
    }

    fn read(&self, base: &str, schema: Option<SchemaRef>) -> Vec<RecordBatch> {
        let manifests = self.manifests(base);
        let start = manifests
            .iter()
            .rposition(|m| m["mode"] == "FULL_TABLE")
            .unwrap_or(0);
        let mut batches = Vec::new();
        for m in manifests.iter().skip(start) {
            for object in m["objects"].as_array().expect("objects") {
                let key = object["key"].as_str().expect("key");
                let mut bytes = self.get(key);
                if key.ends_with(".gz") {
                    let mut plain = Vec::new();
                    flate2::read::GzDecoder::new(bytes.as_slice())
                        .read_to_end(&mut plain)
                        .expect("gunzip");
                    bytes = plain;
                }
                let key = key.trim_end_matches(".gz");
                if key.ends_with(".parquet") {
                    let reader =
                        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                            .expect("parquet")
                            .build()
                            .expect("reader");
                    batches.extend(reader.map(|b| b.expect("batch")));
                } else {
                    let schema = schema.clone().expect("a schema for text formats");
                    if key.ends_with(".jsonl") {
                        let reader = arrow_json::ReaderBuilder::new(schema)
                            .build(bytes.as_slice())
                            .expect("json reader");
                        batches.extend(reader.map(|b| b.expect("json batch")));
                    } else {
                        let reader = arrow_csv::ReaderBuilder::new(schema)
                            .with_header(true)
                            .build(bytes.as_slice())
                            .expect("csv reader");
                        batches.extend(reader.map(|b| b.expect("csv batch")));
                    }
                }
            }
        }
        batches
    }
}

/// A moto server of the test's own, on a free port.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FASTLANE_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    fastlane_tests::services_venv().join("bin/moto_server")
}

impl Moto {
    /// Starts it and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let binary = moto_binary();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); tests/services.sh start installs it",
                    binary.display()
                )
            });
        let moto = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let c = client(&moto.endpoint());
        while runtime().block_on(c.list_buckets().send()).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Its endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A source of the given batches.
pub struct Batches(pub Vec<RecordBatch>);

impl Source for Batches {
    fn read(&self, _partition: &Partition) -> fastlane_plugin_api::Result<Box<dyn BatchStream>> {
        Ok(Box::new(IterStream(self.0.clone().into_iter().map(Ok))))
    }
}

/// Runs `batches` through the engine into the `aws` plugin's target `id` configured by
/// `config`, with `workers` target workers; the error chain as text when it fails.
pub fn load(
    id: &str,
    config: &Value,
    batches: Vec<RecordBatch>,
    mode: ReplicationMode,
    workers: usize,
) -> Result<(), String> {
    let plugin = fastlane_tests::conformance::load("aws");
    let target = plugin
        .create_target(id, config)
        .map_err(|e| e.to_string())?;
    let pipeline = Pipeline {
        source: Named::new("memory", Box::new(Batches(batches)) as Box<dyn Source>),
        transforms: vec![],
        target: Named::new(id, Box::new(target) as Box<dyn Target>),
    };
    let options = EngineOptions {
        mode,
        target_concurrency: workers,
        max_buffered_batches: 4,
        ..EngineOptions::default()
    };
    engine::run(pipeline, &options, &mut NoObserver)
        .map(|_| ())
        .map_err(|e| fastlane_host::error::chain(&e))
}

/// A Firehose client of the shared test server.
pub fn firehose_client() -> aws_sdk_firehose::Client {
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

/// Creates a DirectPut delivery stream writing under `<name>/` of `bucket`, with every setting
/// moto needs to describe it back.
pub fn create_delivery_stream(client: &aws_sdk_firehose::Client, bucket: &str, name: &str) {
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::123456789012:role/firehose")
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .prefix(format!("{name}/"))
        .compression_format(CompressionFormat::Uncompressed)
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(1)
                .interval_in_seconds(60)
                .build(),
        )
        .encryption_configuration(
            EncryptionConfiguration::builder()
                .no_encryption_config(NoEncryptionConfig::NoEncryption)
                .build(),
        )
        .build()
        .expect("destination");
    runtime()
        .block_on(
            client
                .create_delivery_stream()
                .delivery_stream_name(name)
                .extended_s3_destination_configuration(destination)
                .send(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "create delivery stream {name}: {}",
                aws_sdk_firehose::error::DisplayErrorContext(&e)
            )
        });
}

/// Deletes a delivery stream (moto allows 50 per account).
pub fn delete_delivery_stream(client: &aws_sdk_firehose::Client, name: &str) {
    let _ = runtime().block_on(
        client
            .delete_delivery_stream()
            .delivery_stream_name(name)
            .send(),
    );
}
