//! The conformance suite, for the `file` source and target in each format.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use fastlane_tests::conformance::{self, ALL_COLUMNS, SourceFixture, TargetFixture};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

/// Text formats cannot tell binary from text, so they skip `blob`.
const TEXT_COLUMNS: &[&str] = &["int32", "int64", "float64", "text", "flag", "day", "moment"];

#[derive(Clone, Copy)]
struct Fixture(&'static str);

impl Fixture {
    fn columns(self) -> Vec<&'static str> {
        match self.0 {
            "parquet" => ALL_COLUMNS.to_vec(),
            _ => TEXT_COLUMNS.to_vec(),
        }
    }
}

fn write_files(dir: &Path, format: &str, batches: &[RecordBatch]) {
    // Two files, to exercise several partitions.
    let half = batches.len() / 2;
    for (i, part) in [&batches[..half], &batches[half..]].into_iter().enumerate() {
        let path = dir.join(format!("data-{i}.{format}"));
        let Some(first) = part.first().or(batches.first()) else {
            std::fs::write(&path, "").expect("write");
            continue;
        };
        let file = File::create(&path).expect("create");
        match format {
            "parquet" => {
                let mut w = ArrowWriter::try_new(file, first.schema(), None).expect("writer");
                for b in part {
                    w.write(b).expect("write");
                }
                w.close().expect("close");
            }
            "csv" => {
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file);
                if part.is_empty() {
                    w.write(&first.slice(0, 0)).expect("write");
                }
                for b in part {
                    w.write(b).expect("write");
                }
            }
            _ => {
                let mut w = arrow_json::LineDelimitedWriter::new(file);
                for b in part {
                    w.write(b).expect("write");
                }
                w.finish().expect("finish");
            }
        }
    }
}

impl SourceFixture for Fixture {
    fn id(&self) -> &str {
        "file"
    }

    fn columns(&self) -> Vec<&'static str> {
        Fixture::columns(*self)
    }

    fn prepare(&self, dir: &Path, batches: &[RecordBatch], batch_rows: usize) -> Value {
        if batches.is_empty() {
            let empty =
                conformance::standard_batches(1, 1, 1, &Fixture::columns(*self))[0].slice(0, 0);
            write_files(dir, self.0, &[empty]);
        } else {
            write_files(dir, self.0, batches);
        }
        json!({
            "path": format!("{}/*.{}", dir.display(), self.0),
            "batch_size": batch_rows,
            "replication_key": "id",
        })
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"path": "data/*.csv.gz"}),
            json!({"path": ["a.parquet", "b/"], "format": "parquet", "batch_size": 8192}),
            json!({"path": "events.jsonl.zst", "replication_key": "id", "concurrency": 2}),
            json!({"path": "x.tsv", "format": "csv", "delimiter": "\t", "has_header": false}),
        ]
    }
}

fn published(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    files.sort();
    files
}

impl TargetFixture for Fixture {
    fn id(&self) -> &str {
        "file"
    }

    fn columns(&self) -> Vec<&'static str> {
        Fixture::columns(*self)
    }

    fn config(&self, dir: &Path) -> Value {
        json!({"path": dir.join("out"), "format": self.0, "key": "id", "max_rows_per_file": 25_000})
    }

    fn read_back(&self, dir: &Path) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for path in published(&dir.join("out")) {
            match self.0 {
                "parquet" => {
                    let reader =
                        ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                            .unwrap()
                            .build()
                            .unwrap();
                    out.extend(reader.map(Result::unwrap));
                }
                "csv" => {
                    let (schema, _) = arrow_csv::reader::Format::default()
                        .with_header(true)
                        .infer_schema(File::open(&path).unwrap(), None)
                        .unwrap();
                    let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
                        .with_header(true)
                        .build(File::open(&path).unwrap())
                        .unwrap();
                    out.extend(reader.map(Result::unwrap));
                }
                _ => {
                    let (schema, _) = arrow_json::reader::infer_json_schema(
                        BufReader::new(File::open(&path).unwrap()),
                        None,
                    )
                    .unwrap();
                    let reader = arrow_json::ReaderBuilder::new(Arc::new(schema))
                        .build(BufReader::new(File::open(&path).unwrap()))
                        .unwrap();
                    out.extend(reader.map(Result::unwrap));
                }
            }
        }
        out
    }

    fn leftovers(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("out"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn examples(&self) -> Vec<Value> {
        vec![
            json!({"path": "out"}),
            json!({"path": "out", "format": "csv", "compression": "gzip", "max_rows_per_file": 1_000_000}),
            json!({"path": "out", "format": "parquet", "compression": "zstd", "max_bytes_per_file": 536_870_912, "key": "id", "concurrency": 2}),
        ]
    }
}

#[test]
fn parquet_source() {
    conformance::check_source("file", &Fixture("parquet"));
}

#[test]
fn csv_source() {
    conformance::check_source("file", &Fixture("csv"));
}

#[test]
fn jsonl_source() {
    conformance::check_source("file", &Fixture("jsonl"));
}

#[test]
fn parquet_target() {
    conformance::check_target("file", &Fixture("parquet"));
}

#[test]
fn csv_target() {
    conformance::check_target("file", &Fixture("csv"));
}

#[test]
fn jsonl_target() {
    conformance::check_target("file", &Fixture("jsonl"));
}
