//! The `file` target: writes each worker's batches to its own files in a hidden staging folder,
//! and publishes them at commit by renaming them into the target folder. Readers never see a
//! partial file, and an aborted or crashed run leaves the folder as it was.
//!
//! In FULL_TABLE mode the commit then removes the files of earlier runs (files of this
//! target's naming pattern and format); in INCREMENTAL mode it keeps them. Staging folders are
//! named `.fastlane-staging-<run id>`; one left behind by a killed process is ignored by
//! readers and can be deleted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use fastlane_plugin_api::{PluginError, ReplicationMode, Result, Target, WriteContext, Writer};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as ParquetCodec, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::Value;

use crate::config::{
    Compression, Dictionary, FileTargetConfig, Format, Statistics, delimiter_byte,
};
use crate::io::{Counting, Out, open_read};
use crate::offset::{self, KeyMax};

/// The `file` target.
pub struct FileTarget {
    config: Arc<FileTargetConfig>,
    dir: PathBuf,
    delimiter: u8,
    run: Option<Run>,
}

struct Run {
    mode: ReplicationMode,
    id: String,
    staging: PathBuf,
}

impl FileTarget {
    /// Checks the configuration.
    pub fn new(config: FileTargetConfig) -> Result<Self> {
        let delimiter = delimiter_byte(&config.delimiter)?;
        if config.format == Format::Parquet || config.compression != Some(Compression::Snappy) {
        } else {
            return Err(PluginError::config(
                "`compression: snappy` is only available for parquet",
            ));
        }
        if config.file_prefix.contains(['/', '\\']) || config.file_prefix.starts_with('.') {
            return Err(PluginError::config(format!(
                "`file_prefix` `{}` must be a plain file name prefix",
                config.file_prefix
            )));
        }
        Ok(Self {
            dir: PathBuf::from(&config.path),
            config: Arc::new(config),
            delimiter,
            run: None,
        })
    }

    fn extension(&self) -> String {
        extension(&self.config)
    }

    /// The data files this target has written, published ones only.
    fn data_files(&self) -> Result<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}-", self.config.file_prefix);
        let ext = format!(".{}", self.extension());
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        Ok(files)
    }

    fn file_max(&self, path: &Path, key: &str) -> Result<Option<KeyMax>> {
        let shown = path.display().to_string();
        let mut max = None;
        match self.config.format {
            Format::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                let Some(index) = builder
                    .schema()
                    .fields()
                    .iter()
                    .position(|f| f.name() == key)
                else {
                    return Err(PluginError::not_found(format!(
                        "the key column `{key}` is not in `{shown}`"
                    )));
                };
                let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
                let reader = builder
                    .with_projection(mask)
                    .build()
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                for batch in reader {
                    let batch = batch.map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                    max = offset::fold(max, offset::column_max(&batch, key)?);
                }
            }
            Format::Csv | Format::Jsonl => {
                let compression = self.config.compression.unwrap_or(Compression::None);
                let read = || open_read(path, compression);
                let schema = match self.config.format {
                    Format::Csv => arrow_csv::reader::Format::default()
                        .with_header(self.config.has_header)
                        .with_delimiter(self.delimiter)
                        .infer_schema(read()?, None)
                        .map(|(s, _)| s),
                    _ => arrow_json::reader::infer_json_schema(
                        std::io::BufReader::new(read()?),
                        None,
                    )
                    .map(|(s, _)| s),
                }
                .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                let schema = Arc::new(schema);
                let batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, _>>> =
                    match self.config.format {
                        Format::Csv => Box::new(
                            arrow_csv::ReaderBuilder::new(schema)
                                .with_header(self.config.has_header)
                                .with_delimiter(self.delimiter)
                                .build(read()?)
                                .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?,
                        ),
                        _ => Box::new(
                            arrow_json::ReaderBuilder::new(schema)
                                .build(std::io::BufReader::new(read()?))
                                .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?,
                        ),
                    };
                for batch in batches {
                    let batch = batch.map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                    max = offset::fold(max, offset::column_max(&batch, key)?);
                }
            }
        }
        Ok(max)
    }
}

fn extension(config: &FileTargetConfig) -> String {
    let base = config.format.extension();
    match (config.format, config.compression) {
        (Format::Parquet, _) => base.to_owned(),
        (_, Some(Compression::Gzip)) => format!("{base}.gz"),
        (_, Some(Compression::Zstd)) => format!("{base}.zst"),
        _ => base.to_owned(),
    }
}

fn io_err(context: &str, path: &Path) -> impl Fn(std::io::Error) -> PluginError {
    let text = format!("{context} `{}`", path.display());
    move |e| PluginError::io(format!("{text}: {e}"))
}

impl Target for FileTarget {
    fn get_offset(&self) -> Result<Option<Value>> {
        let Some(key) = &self.config.key else {
            return Err(PluginError::config(
                "INCREMENTAL mode needs `key` (the replication key column) in the file target",
            ));
        };
        let mut max = None;
        for file in self.data_files()? {
            max = offset::fold(max, self.file_max(&file, key)?);
        }
        Ok(max.map(|m| m.to_json()))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err("cannot create the folder", &self.dir))?;
        let staging = self
            .dir
            .join(format!(".fastlane-staging-{}", context.run_id));
        std::fs::create_dir_all(&staging).map_err(io_err("cannot create", &staging))?;
        self.run = Some(Run {
            mode: context.mode,
            id: context.run_id.clone(),
            staging,
        });
        Ok(())
    }

    fn writer(&self, index: usize) -> Result<Box<dyn Writer>> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("writer requested before open"))?;
        Ok(Box::new(FileWriter {
            config: self.config.clone(),
            delimiter: self.delimiter,
            staging: run.staging.clone(),
            name_stem: format!("{}-{}-{index}", self.config.file_prefix, run.id),
            seq: 0,
            current: None,
            finished: Arc::new(Mutex::new(Vec::new())),
        }))
    }

    fn commit(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Err(PluginError::internal("commit without open"));
        };
        let old = match run.mode {
            ReplicationMode::FullTable => self.data_files()?,
            ReplicationMode::Incremental => Vec::new(),
        };
        let mut staged: Vec<PathBuf> = std::fs::read_dir(&run.staging)
            .map_err(io_err("cannot list", &run.staging))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        staged.sort();
        for file in &staged {
            let Some(name) = file.file_name() else {
                continue;
            };
            let dest = self.dir.join(name);
            std::fs::rename(file, &dest).map_err(io_err("cannot publish", &dest))?;
        }
        for file in old {
            std::fs::remove_file(&file).map_err(io_err("cannot remove the earlier file", &file))?;
        }
        std::fs::remove_dir_all(&run.staging).map_err(io_err("cannot remove", &run.staging))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        log::info!(
            "published {} file(s) into `{}`",
            staged.len(),
            self.dir.display()
        );
        Ok(())
    }

    fn abort(&mut self) -> Result<()> {
        if let Some(run) = self.run.take()
            && run.staging.exists()
        {
            std::fs::remove_dir_all(&run.staging).map_err(io_err("cannot remove", &run.staging))?;
        }
        Ok(())
    }
}

/// The top-level primitive columns whose values repeat in a sample of `batch` (fewer than a
/// quarter distinct), for which Parquet dictionary encoding pays off. Dictionary encoding of
/// mostly-unique columns costs a hash per value and then falls back to plain encoding.
fn repetitive_columns(batch: &RecordBatch) -> Vec<String> {
    const SAMPLE: usize = 8192;
    let rows = batch.num_rows().min(SAMPLE);
    if rows == 0 {
        return Vec::new();
    }
    let options = arrow_cast::display::FormatOptions::default();
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            continue;
        }
        let Ok(formatter) = arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
        else {
            continue;
        };
        let mut distinct = std::collections::HashSet::with_capacity(rows);
        for i in 0..rows {
            distinct.insert(formatter.value(i).to_string());
        }
        if distinct.len() * 4 < rows {
            out.push(field.name().clone());
        }
    }
    out
}

enum Sink {
    Parquet(Box<ArrowWriter<Counting>>),
    Csv(Box<arrow_csv::Writer<Out>>),
    Jsonl(Box<arrow_json::LineDelimitedWriter<Out>>),
}

struct OpenFile {
    sink: Sink,
    path: PathBuf,
    rows: u64,
    written: Arc<AtomicU64>,
}

impl OpenFile {
    fn bytes(&self) -> u64 {
        match &self.sink {
            Sink::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
            _ => self.written.load(Ordering::Relaxed),
        }
    }
}

struct FileWriter {
    config: Arc<FileTargetConfig>,
    delimiter: u8,
    staging: PathBuf,
    name_stem: String,
    seq: u32,
    current: Option<OpenFile>,
    finished: Arc<Mutex<Vec<PathBuf>>>,
}

impl FileWriter {
    fn open_file(&mut self, batch: &RecordBatch) -> Result<OpenFile> {
        let name = format!(
            "{}-{:05}.{}",
            self.name_stem,
            self.seq,
            extension(&self.config)
        );
        self.seq += 1;
        // Written as `<name>.tmp` and renamed when complete, so a commit never publishes a
        // file a worker was still writing.
        let path = self.staging.join(format!("{name}.tmp"));
        let file = File::create(&path).map_err(io_err("cannot create", &path))?;
        let written = Arc::new(AtomicU64::new(0));
        let counting = Counting::new(file, written.clone());
        let sink = match self.config.format {
            Format::Parquet => {
                let codec = match self.config.compression {
                    None | Some(Compression::Snappy) => ParquetCodec::SNAPPY,
                    Some(Compression::Zstd) => ParquetCodec::ZSTD(ZstdLevel::default()),
                    Some(Compression::Gzip) => ParquetCodec::GZIP(Default::default()),
                    Some(Compression::None) => ParquetCodec::UNCOMPRESSED,
                };
                let statistics = match self.config.statistics {
                    Statistics::None => EnabledStatistics::None,
                    Statistics::Chunk => EnabledStatistics::Chunk,
                    Statistics::Page => EnabledStatistics::Page,
                };
                let mut props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_statistics_enabled(statistics)
                    .set_max_row_group_row_count(Some(self.config.row_group_rows));
                props = match self.config.dictionary {
                    Dictionary::Always => props.set_dictionary_enabled(true),
                    Dictionary::Never => props.set_dictionary_enabled(false),
                    Dictionary::Auto => {
                        let mut props = props.set_dictionary_enabled(false);
                        for name in repetitive_columns(batch) {
                            props =
                                props.set_column_dictionary_enabled(ColumnPath::from(name), true);
                        }
                        props
                    }
                };
                let props = props.build();
                Sink::Parquet(Box::new(
                    ArrowWriter::try_new(counting, batch.schema(), Some(props))
                        .map_err(PluginError::data)?,
                ))
            }
            Format::Csv => {
                let out = Out::new(
                    counting,
                    self.config.compression.unwrap_or(Compression::None),
                )
                .map_err(io_err("cannot write", &path))?;
                Sink::Csv(Box::new(
                    arrow_csv::WriterBuilder::new()
                        .with_header(self.config.has_header)
                        .with_delimiter(self.delimiter)
                        .build(out),
                ))
            }
            Format::Jsonl => {
                let out = Out::new(
                    counting,
                    self.config.compression.unwrap_or(Compression::None),
                )
                .map_err(io_err("cannot write", &path))?;
                Sink::Jsonl(Box::new(arrow_json::LineDelimitedWriter::new(out)))
            }
        };
        Ok(OpenFile {
            sink,
            path,
            rows: 0,
            written,
        })
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let path = open.path.clone();
        let file = match open.sink {
            Sink::Parquet(w) => (*w)
                .into_inner()
                .map_err(|e| PluginError::io(format!("cannot finish `{}`: {e}", path.display())))?
                .into_file()
                .map_err(io_err("cannot finish", &path))?,
            Sink::Csv(w) => w
                .into_inner()
                .finish()
                .map_err(io_err("cannot finish", &path))?,
            Sink::Jsonl(mut w) => {
                w.finish().map_err(PluginError::io)?;
                w.into_inner()
                    .finish()
                    .map_err(io_err("cannot finish", &path))?
            }
        };
        file.sync_all().map_err(io_err("cannot sync", &path))?;
        let done = path.with_extension("");
        std::fs::rename(&path, &done).map_err(io_err("cannot rename", &path))?;
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(done);
        Ok(())
    }

    fn write_part(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(self.open_file(batch)?);
        }
        let Some(open) = self.current.as_mut() else {
            return Ok(());
        };
        let result = match &mut open.sink {
            Sink::Parquet(w) => w.write(batch).map_err(PluginError::data),
            Sink::Csv(w) => w.write(batch).map_err(PluginError::data),
            Sink::Jsonl(w) => w.write(batch).map_err(PluginError::data),
        };
        result.map_err(|e| e.context(format!("writing `{}`", open.path.display())))?;
        open.rows += batch.num_rows() as u64;
        let full_rows = self
            .config
            .max_rows_per_file
            .is_some_and(|m| open.rows >= m);
        let full_bytes = self
            .config
            .max_bytes_per_file
            .is_some_and(|m| open.bytes() >= m);
        if full_rows || full_bytes {
            self.finish_current()?;
        }
        Ok(())
    }
}

impl Writer for FileWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(max_rows) = self.config.max_rows_per_file else {
            return self.write_part(&batch);
        };
        let mut offset = 0usize;
        while offset < batch.num_rows() {
            let in_file = self.current.as_ref().map_or(0, |o| o.rows);
            let room = (max_rows - in_file.min(max_rows)).max(1) as usize;
            let len = room.min(batch.num_rows() - offset);
            self.write_part(&batch.slice(offset, len))?;
            offset += len;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.finish_current()
    }
}
