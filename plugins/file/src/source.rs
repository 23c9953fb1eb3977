//! The `file` source: CSV, JSON Lines and Parquet files, one partition per file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, Scalar};
use arrow_schema::{Schema, SchemaRef};
use fastlane_plugin_api::{
    BatchStream, Partition, PluginError, ReadContext, ReplicationMode, Result, Source,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Compression, FileSourceConfig, Format, strip_compression};
use crate::io::open_read;
use crate::offset;

/// The `file` source.
pub struct FileSource {
    config: FileSourceConfig,
    delimiter: u8,
}

/// What a partition (one file) carries.
#[derive(Debug, Serialize, Deserialize)]
struct FileSpec {
    path: PathBuf,
    format: Format,
    compression: Compression,
    /// The schema every CSV/JSON Lines file is read with (inferred from the first file).
    schema: Option<Schema>,
    start_offset: Option<Value>,
}

impl FileSource {
    /// Checks the configuration.
    pub fn new(config: FileSourceConfig) -> Result<Self> {
        let delimiter = match config.delimiter.as_bytes() {
            [d] => *d,
            _ => {
                return Err(PluginError::config(format!(
                    "`delimiter` must be one ASCII character, not `{}`",
                    config.delimiter
                )));
            }
        };
        Ok(Self { config, delimiter })
    }

    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for pattern in self.config.path.list() {
            let path = Path::new(&pattern);
            if path.is_dir() {
                let mut inside: Vec<PathBuf> = std::fs::read_dir(path)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && !is_hidden(p))
                    .collect();
                inside.sort();
                files.extend(inside);
            } else if pattern.contains(['*', '?', '[']) {
                let matches = glob::glob(&pattern)
                    .map_err(|e| PluginError::config(format!("invalid glob `{pattern}`: {e}")))?;
                let mut found: Vec<PathBuf> = matches
                    .filter_map(|m| m.ok())
                    .filter(|p| p.is_file() && !is_hidden(p))
                    .collect();
                found.sort();
                if found.is_empty() {
                    return Err(PluginError::not_found(format!(
                        "no file matches `{pattern}`"
                    )));
                }
                files.extend(found);
            } else if path.is_file() {
                files.push(path.to_path_buf());
            } else {
                return Err(PluginError::not_found(format!(
                    "`{pattern}` does not exist"
                )));
            }
        }
        files.dedup();
        Ok(files)
    }

    fn format_of(&self, path: &Path) -> Result<(Format, Compression)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let guessed = strip_compression(name).1;
        let compression = self.config.compression.unwrap_or(guessed);
        let format = match self.config.format {
            Some(f) => f,
            None => Format::from_name(name).ok_or_else(|| {
                PluginError::config(format!(
                    "cannot tell the format of `{}` from its name; set `format`",
                    path.display()
                ))
            })?,
        };
        Ok((format, compression))
    }

    fn infer_schema(
        &self,
        path: &Path,
        format: Format,
        compression: Compression,
    ) -> Result<Schema> {
        let context = |e: &dyn std::fmt::Display| {
            PluginError::data(format!(
                "cannot infer the columns of `{}`: {e}",
                path.display()
            ))
        };
        let reader = open_read(path, compression)?;
        match format {
            Format::Csv => arrow_csv::reader::Format::default()
                .with_header(self.config.has_header)
                .with_delimiter(self.delimiter)
                .infer_schema(reader, Some(self.config.infer_schema_rows))
                .map(|(s, _)| s)
                .map_err(|e| context(&e)),
            Format::Jsonl => arrow_json::reader::infer_json_schema(
                BufReader::new(reader),
                Some(self.config.infer_schema_rows),
            )
            .map(|(s, _)| s)
            .map_err(|e| context(&e)),
            Format::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)
                    .map_err(|e| context(&e))?;
                Ok(builder.schema().as_ref().clone())
            }
        }
    }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

impl Source for FileSource {
    fn partitions(&self, context: &ReadContext) -> Result<Vec<Partition>> {
        if context.mode == ReplicationMode::Incremental && self.config.replication_key.is_none() {
            return Err(PluginError::config(
                "INCREMENTAL mode needs `replication_key` in the file source",
            ));
        }
        let files = self.files()?;
        let mut shared_schema: Option<Schema> = None;
        let mut parts = Vec::with_capacity(files.len());
        for (index, path) in files.into_iter().enumerate() {
            let (format, compression) = self.format_of(&path)?;
            let schema = match format {
                Format::Parquet => None,
                _ => {
                    if shared_schema.is_none() {
                        shared_schema = Some(self.infer_schema(&path, format, compression)?);
                    }
                    shared_schema.clone()
                }
            };
            let spec = FileSpec {
                path,
                format,
                compression,
                schema,
                start_offset: context.start_offset.clone(),
            };
            parts.push(Partition {
                index,
                spec: serde_json::to_value(&spec).map_err(PluginError::internal)?,
            });
        }
        log::debug!("{} file(s) to read", parts.len());
        Ok(parts)
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        let spec: FileSpec =
            serde_json::from_value(partition.spec.clone()).map_err(PluginError::internal)?;
        let shown = spec.path.display().to_string();
        let batches: Box<
            dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>> + Send,
        > = match spec.format {
            Format::Csv => {
                let schema = Arc::new(spec.schema.clone().unwrap_or_else(Schema::empty));
                let reader = arrow_csv::ReaderBuilder::new(schema)
                    .with_header(self.config.has_header)
                    .with_delimiter(self.delimiter)
                    .with_batch_size(self.config.batch_size)
                    .build(open_read(&spec.path, spec.compression)?)
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
            Format::Jsonl => {
                let schema = Arc::new(spec.schema.clone().unwrap_or_else(Schema::empty));
                let reader = arrow_json::ReaderBuilder::new(schema)
                    .with_batch_size(self.config.batch_size)
                    .build(BufReader::with_capacity(
                        1 << 20,
                        open_read(&spec.path, spec.compression)?,
                    ))
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
            Format::Parquet => {
                let file = File::open(&spec.path)
                    .map_err(|e| PluginError::from(e).context(format!("`{shown}`")))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(self.config.batch_size).build())
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
        };
        let filter = match (&spec.start_offset, &self.config.replication_key) {
            (Some(offset), Some(key)) => Some((offset.clone(), key.clone())),
            _ => None,
        };
        Ok(Box::new(FileStream {
            batches,
            path: shown,
            filter,
            scalar: None,
            schema: None,
        }))
    }
}

struct FileStream {
    batches:
        Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>> + Send>,
    path: String,
    filter: Option<(Value, String)>,
    scalar: Option<Scalar<ArrayRef>>,
    schema: Option<SchemaRef>,
}

impl BatchStream for FileStream {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some(batch) = self.batches.next() else {
                return Ok(None);
            };
            let batch = batch.map_err(|e| PluginError::data(format!("`{}`: {e}", self.path)))?;
            if self.schema.is_none() {
                self.schema = Some(batch.schema());
            }
            let Some((offset, key)) = &self.filter else {
                return Ok(Some(batch));
            };
            if self.scalar.is_none() {
                let column = batch.column_by_name(key).ok_or_else(|| {
                    PluginError::not_found(format!(
                        "the replication key `{key}` is not a column of `{}`",
                        self.path
                    ))
                })?;
                self.scalar = Some(offset::offset_scalar(offset, column.data_type())?);
            }
            let scalar = self
                .scalar
                .as_ref()
                .ok_or_else(|| PluginError::internal("no offset"))?;
            let kept = offset::keep_after(&batch, key, scalar)?;
            if kept.num_rows() > 0 {
                return Ok(Some(kept));
            }
        }
    }
}
