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
use fastlane_plugin_api::{
    Checksum, PluginError, ReplicationMode, Result, StagedRun, Target, WriteContext, Writer,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as ParquetCodec, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::Value;

use crate::checkpoint::{self, Identity, Lock, Record};
use crate::config::{
    Compression, Dictionary, FileTargetConfig, Format, Statistics, delimiter_byte,
};
use crate::io::{Counting, Out, open_read};
use fastlane_plugin_support::keys::{self as offset, KeyMax};
use fastlane_plugin_support::positions::Journal;

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
    /// Held until the run ends.
    _lock: Lock,
    /// In a checkpointed run: the tags the staging held when it was resumed.
    resumed_tags: Option<Vec<String>>,
    /// Whether writers record their flushes (a checkpointed run).
    checkpointed: bool,
    /// Data files are numbered after this (the highest number a resumed staging holds).
    first_seq: u32,
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

    fn identity(&self) -> Identity {
        Identity {
            file_prefix: self.config.file_prefix.clone(),
            extension: self.extension(),
        }
    }

    /// The data files this target has written, published ones only.
    fn data_files(&self) -> Result<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let ext = self.extension();
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| is_data_file_name(n, &self.config.file_prefix, &ext))
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    /// The rows of one data file of this target's format.
    fn file_rows(&self, path: &Path) -> Result<u64> {
        let shown = path.display().to_string();
        let data = |e: &dyn std::fmt::Display| PluginError::data(format!("`{shown}`: {e}"));
        match self.config.format {
            Format::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)
                    .map_err(|e| data(&e))?;
                let rows: i64 = builder
                    .metadata()
                    .row_groups()
                    .iter()
                    .map(|g| g.num_rows())
                    .sum();
                Ok(rows.max(0) as u64)
            }
            Format::Csv => {
                let compression = self.config.compression.unwrap_or(Compression::None);
                let mut reader = csv_count_reader(
                    open_read(path, compression)?,
                    self.config.has_header,
                    self.delimiter,
                );
                let mut rows = 0u64;
                for result in reader.byte_records() {
                    result.map_err(|e| data(&e))?;
                    rows += 1;
                }
                Ok(rows)
            }
            Format::Jsonl => {
                use std::io::BufRead;
                let compression = self.config.compression.unwrap_or(Compression::None);
                let reader = std::io::BufReader::new(open_read(path, compression)?);
                let mut rows = 0u64;
                for line in reader.lines() {
                    if !line.map_err(|e| data(&e))?.trim().is_empty() {
                        rows += 1;
                    }
                }
                Ok(rows)
            }
        }
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
                    max = offset::fold(max, offset::column_max(&batch, key)?)?;
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
                    max = offset::fold(max, offset::column_max(&batch, key)?)?;
                }
            }
        }
        Ok(max)
    }
}

/// A CSV reader that only splits records (quoted newlines included), for counting them.
fn csv_count_reader(
    read: impl std::io::Read,
    has_header: bool,
    delimiter: u8,
) -> csv::Reader<impl std::io::Read> {
    csv::ReaderBuilder::new()
        .has_headers(has_header)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(read)
}

/// Whether `name` is a data file of this target: `<prefix>-<run id>-<worker>-<seq>.<ext>`,
/// with a run id of the form `YYYYMMDDTHHMMSSZ-xxxxxx`. The full shape is checked so that a
/// prefix that is the start of another (`sales`, `sales-eu`) never claims the other's files.
pub(crate) fn is_data_file_name(name: &str, prefix: &str, ext: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(ext))
        .and_then(|r| r.strip_suffix('.'))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let [stamp, noise, worker, seq] = parts.as_slice() else {
        return false;
    };
    is_run_stamp(stamp)
        && is_noise(noise)
        && !worker.is_empty()
        && worker.chars().all(|c| c.is_ascii_digit())
        && seq.len() >= 5
        && seq.chars().all(|c| c.is_ascii_digit())
}

fn is_run_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

fn is_noise(s: &str) -> bool {
    s.len() == 6 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether a run id has the shape the file names need (`YYYYMMDDTHHMMSSZ-xxxxxx`).
fn is_run_id(id: &str) -> bool {
    id.split_once('-')
        .is_some_and(|(stamp, noise)| is_run_stamp(stamp) && is_noise(noise))
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

/// The finished data files of a staging folder (not its `.tmp` files nor its folders).
fn staged_files(staging: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(staging).map_err(io_err("cannot list", staging))?;
    Ok(entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "tmp"))
        .collect())
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
            max = offset::fold(max, self.file_max(&file, key)?)?;
        }
        Ok(max.map(|m| m.to_json()))
    }

    fn open(&mut self, context: &WriteContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err("cannot create the folder", &self.dir))?;
        if !is_run_id(&context.run_id) {
            return Err(PluginError::internal(format!(
                "run id `{}` is not of the form YYYYMMDDTHHMMSSZ-xxxxxx",
                context.run_id
            )));
        }
        let lock = Lock::take(&self.dir, &self.config.file_prefix)?;
        checkpoint::recover(&self.dir, &self.identity())?;
        let staging = self
            .dir
            .join(format!("{}{}", checkpoint::STAGING_PREFIX, context.run_id));
        let (resumed_tags, first_seq) = match &context.checkpoint {
            Some(c) if c.resume => {
                let (tags, max_seq) = checkpoint::reopen(&staging, &context.run_id)?;
                (Some(tags), max_seq + 1)
            }
            Some(c) => {
                checkpoint::discard_others(&self.dir, &self.identity(), &context.run_id);
                checkpoint::create_staging(
                    &self.dir,
                    &staging,
                    &context.run_id,
                    &self.identity(),
                    &c.plan,
                )?;
                (None, 0)
            }
            None => {
                // A run without checkpoints never resumes: unfinished runs are garbage now.
                checkpoint::discard_others(&self.dir, &self.identity(), &context.run_id);
                std::fs::create_dir_all(&staging).map_err(io_err("cannot create", &staging))?;
                (None, 0)
            }
        };
        self.run = Some(Run {
            mode: context.mode,
            id: context.run_id.clone(),
            staging,
            _lock: lock,
            resumed_tags,
            checkpointed: context.checkpoint.is_some(),
            first_seq,
        });
        Ok(())
    }

    fn resumable_runs(&self) -> Result<Vec<StagedRun>> {
        Ok(checkpoint::resumable_runs(&self.dir, &self.identity()))
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        self.run
            .as_ref()
            .and_then(|r| r.resumed_tags.clone())
            .ok_or_else(|| PluginError::internal("checkpoints asked of a run that did not resume"))
    }

    /// The rows of the staged data files: from Parquet footers, or by reading CSV and JSON Lines
    /// files again.
    fn staged_rows(&self) -> Result<u64> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("staged_rows before open"))?;
        let mut rows = 0u64;
        for path in staged_files(&run.staging)? {
            rows += self.file_rows(&path)?;
        }
        Ok(rows)
    }

    /// The checksum of the staged Parquet files, read back as Arrow. CSV and JSON Lines files
    /// keep no types to read them back as written, so they have none.
    fn staged_checksum(&self) -> Result<Checksum> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| PluginError::internal("staged_checksum before open"))?;
        if self.config.format != Format::Parquet {
            return Err(PluginError::unsupported(
                "only Parquet files keep the types a checksum needs",
            ));
        }
        let mut checksum = Checksum::default();
        for path in staged_files(&run.staging)? {
            let shown = path.display().to_string();
            let data = |e: &dyn std::fmt::Display| PluginError::data(format!("`{shown}`: {e}"));
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)
                .and_then(|b| b.build())
                .map_err(|e| data(&e))?;
            for batch in reader {
                let batch = batch.map_err(|e| data(&e))?;
                checksum.add(Checksum::of_batch(&batch).map_err(|e| data(&e))?);
            }
        }
        Ok(checksum)
    }

    /// Keeps the staging folder and its checkpoints, and releases the lock.
    fn suspend(&mut self) -> Result<()> {
        if let Some(run) = self.run.take() {
            log::info!(
                "kept `{}` for the next run to resume",
                run.staging.display()
            );
        }
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
            seq: run.first_seq,
            current: None,
            finished: Arc::new(Mutex::new(Vec::new())),
            journal: run.checkpointed.then(|| Journal::new(index)),
        }))
    }

    /// Publishes the staged files. In FULL_TABLE mode the earlier files are first moved aside
    /// into the staging folder; if any step fails, every step taken is undone in reverse, so the
    /// folder is as it was and `abort` can still remove the staging folder.
    fn commit(&mut self) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Err(PluginError::internal("commit without open"));
        };
        let mut staged = staged_files(&run.staging)?;
        staged.sort();
        let replaced = match run.mode {
            ReplicationMode::FullTable => self.data_files()?,
            _ => Vec::new(),
        };
        let name_of = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
        // Written first: a run killed while it moves the files is finished by the next one.
        checkpoint::start_publishing(
            &run.staging,
            &checkpoint::Publishing {
                target: self.identity(),
                aside: replaced.iter().filter_map(name_of).collect(),
                publish: staged.iter().filter_map(name_of).collect(),
            },
        )?;
        let mut undo: Vec<(PathBuf, PathBuf)> = Vec::new();
        let result = (|| {
            if run.mode == ReplicationMode::FullTable {
                let aside = run.staging.join(".replaced");
                std::fs::create_dir_all(&aside).map_err(io_err("cannot create", &aside))?;
                for file in &replaced {
                    let Some(name) = file.file_name() else {
                        continue;
                    };
                    let to = aside.join(name);
                    std::fs::rename(file, &to).map_err(io_err("cannot move aside", file))?;
                    undo.push((to, file.clone()));
                }
            }
            for file in &staged {
                let Some(name) = file.file_name() else {
                    continue;
                };
                let dest = self.dir.join(name);
                if dest.exists() {
                    return Err(PluginError::io(format!(
                        "`{}` already exists; refusing to overwrite it",
                        dest.display()
                    )));
                }
                std::fs::rename(file, &dest).map_err(io_err("cannot publish", &dest))?;
                undo.push((dest, file.clone()));
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (now, was) in undo.iter().rev() {
                if let Err(undo_error) = std::fs::rename(now, was) {
                    log::error!(
                        "cannot move `{}` back to `{}`: {undo_error}",
                        now.display(),
                        was.display()
                    );
                }
            }
            checkpoint::cancel_publishing(&run.staging);
            return Err(e);
        }
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        checkpoint::trash(&self.dir, &run.staging);
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
    /// In a checkpointed run: the files and tags of the next record.
    journal: Option<Journal<String>>,
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
                if let Some(name) = without_parquet_form(batch) {
                    return Err(PluginError::data(format!(
                        "column `{name}` holds intervals of months, days and nanoseconds, which \
                         Parquet cannot store exactly (its INTERVAL has no sign and no time \
                         below the millisecond): leave the column out, or write `jsonl` or `csv`"
                    )));
                }
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
        if let Some(journal) = self.journal.as_mut()
            && let Some(name) = done.file_name()
        {
            journal.add_item(name.to_string_lossy().into_owned());
        }
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
        self.finish_current()?;
        if self.journal.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    fn write_tagged(&mut self, batch: RecordBatch, tag: &str) -> Result<()> {
        if self.journal.is_none() {
            return Err(PluginError::internal(
                "a tagged write in a run without checkpoints",
            ));
        }
        if batch.num_rows() > 0 {
            self.write(batch)?;
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.add_tag(tag);
        }
        Ok(())
    }

    /// Finishes the current file, then records it, with the files finished before it and the
    /// tags of the batches they hold.
    fn flush(&mut self) -> Result<()> {
        self.finish_current()?;
        let Some((name, files, tags)) = self.journal.as_mut().and_then(Journal::take) else {
            return Ok(());
        };
        crate::checkpoint::sync_dir(&self.staging)?;
        checkpoint::write_record(&self.staging, &name, &Record { files, tags })
    }
}

/// The first column of `batch` holding Arrow's month-day-nano intervals (also inside lists or
/// structs), which Parquet cannot store.
fn without_parquet_form(batch: &RecordBatch) -> Option<String> {
    fn has_interval(t: &arrow_schema::DataType) -> bool {
        use arrow_schema::DataType as T;
        match t {
            T::Interval(arrow_schema::IntervalUnit::MonthDayNano) => true,
            T::List(f) | T::LargeList(f) | T::FixedSizeList(f, _) | T::Map(f, _) => {
                has_interval(f.data_type())
            }
            T::Struct(fields) => fields.iter().any(|f| has_interval(f.data_type())),
            T::Dictionary(_, v) => has_interval(v),
            _ => false,
        }
    }
    batch
        .schema()
        .fields()
        .iter()
        .find(|f| has_interval(f.data_type()))
        .map(|f| f.name().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_refused_for_parquet_by_the_column_name() {
        let dir = tempfile::tempdir().unwrap();
        let config: FileTargetConfig =
            serde_json::from_value(serde_json::json!({"path": dir.path(), "format": "parquet"}))
                .unwrap();
        let mut target = FileTarget::new(config).unwrap();
        target
            .open(&WriteContext {
                mode: ReplicationMode::FullTable,
                run_id: "20260101T000000Z-abcdef".into(),
                concurrency: 1,
                checkpoint: None,
            })
            .unwrap();
        let column: arrow_array::ArrayRef =
            Arc::new(arrow_array::IntervalMonthDayNanoArray::from(vec![
                arrow_array::types::IntervalMonthDayNano::new(1, 2, 3_000),
            ]));
        let batch = RecordBatch::try_from_iter([("waited", column)]).unwrap();
        let mut writer = target.writer(0).unwrap();
        let err = writer.write(batch).unwrap_err().to_string();
        assert!(err.contains("column `waited`"), "{err}");
        assert!(err.contains("Parquet cannot store"), "{err}");
        target.abort().unwrap();
    }

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let column: arrow_array::ArrayRef =
            Arc::new(arrow_array::Int64Array::from_iter_values(ids));
        RecordBatch::try_from_iter([("id", column)]).unwrap()
    }

    fn run(
        target: &mut FileTarget,
        run_id: &str,
        mode: ReplicationMode,
        ids: std::ops::Range<i64>,
    ) {
        let context = WriteContext {
            mode,
            run_id: run_id.to_owned(),
            concurrency: 1,
            checkpoint: None,
        };
        target.open(&context).unwrap();
        let mut writer = target.writer(0).unwrap();
        writer.write(batch(ids)).unwrap();
        writer.close().unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_commit_that_fails_midway_restores_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config: FileTargetConfig =
            serde_json::from_value(serde_json::json!({"path": dir.path(), "key": "id"})).unwrap();
        let mut target = FileTarget::new(config).unwrap();
        run(
            &mut target,
            "20260101T000000Z-aaaaaa",
            ReplicationMode::FullTable,
            0..10,
        );
        target.commit().unwrap();
        let before = listing(dir.path());
        assert_eq!(before.len(), 1);

        // The next FULL_TABLE run cannot publish: its file name is taken.
        run(
            &mut target,
            "20260101T000001Z-bbbbbb",
            ReplicationMode::FullTable,
            10..20,
        );
        let taken = dir
            .path()
            .join("part-20260101T000001Z-bbbbbb-0-00000.parquet");
        std::fs::create_dir(&taken).unwrap();
        let err = target.commit().unwrap_err();
        assert!(err.message().contains("already exists"), "{err}");
        std::fs::remove_dir(&taken).unwrap();
        let mut with_staging = before.clone();
        with_staging.insert(0, ".fastlane-staging-20260101T000001Z-bbbbbb".to_owned());
        // The run still holds its lock until it is aborted.
        with_staging.insert(0, ".fastlane-lock-part".to_owned());
        assert_eq!(
            listing(dir.path()),
            with_staging,
            "the earlier file is back"
        );
        target.abort().unwrap();
        assert_eq!(listing(dir.path()), before);
        assert_eq!(target.get_offset().unwrap(), Some(serde_json::json!(9)));
    }

    #[test]
    fn data_file_names_match_exactly() {
        let ok = "sales-20261124T042557Z-23a85a-0-00000.parquet";
        assert!(is_data_file_name(ok, "sales", "parquet"));
        assert!(!is_data_file_name(ok, "sales", "csv"));
        let other = "sales-eu-20261124T042557Z-23a85a-0-00000.parquet";
        assert!(!is_data_file_name(other, "sales", "parquet"));
        assert!(is_data_file_name(other, "sales-eu", "parquet"));
        assert!(!is_data_file_name(
            "sales-notes.parquet",
            "sales",
            "parquet"
        ));
        let gz = "part-20261124T042557Z-23a85a-1-00012.csv.gz";
        assert!(is_data_file_name(gz, "part", "csv.gz"));
        assert!(is_run_id("20261124T042557Z-23a85a"));
        assert!(!is_run_id("run-1"));
    }
}
