//! The `file` source: CSV, JSON Lines and Parquet files, one partition per file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, Scalar};
use arrow_schema::{Schema, SchemaRef};
use fastlane_plugin_api::{
    BatchStream, Checksum, Partition, PluginError, ReadContext, ReadRange, ReplicationMode, Result,
    Source,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Compression, FileSourceConfig, Format, delimiter_byte, strip_compression};
use crate::io::open_read;
use fastlane_plugin_support::keys as offset;

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
    /// A byte range of the file, for a file split into parts: `[start, end)`, both at record
    /// boundaries; the first part holds the CSV header.
    #[serde(default)]
    range: Option<(u64, u64)>,
    /// For a Parquet file split into parts: the row groups of this part.
    #[serde(default)]
    row_groups: Option<Vec<usize>>,
}

impl FileSource {
    /// Checks the configuration.
    pub fn new(config: FileSourceConfig) -> Result<Self> {
        let delimiter = delimiter_byte(&config.delimiter)?;
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
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
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

    /// How many parts a file of `size` bytes is read in: one below `split_bytes` (at least
    /// 1 MiB), otherwise one per `split_bytes`, at least `parallelism` and at most four times it.
    fn pieces(&self, size: u64, parallelism: usize) -> u64 {
        const MIN_SPLIT: u64 = 1 << 20;
        let split = self.config.split_bytes;
        if split == 0 || parallelism <= 1 || size <= split.max(MIN_SPLIT) {
            return 1;
        }
        let parallelism = parallelism as u64;
        (size / split.max(MIN_SPLIT) + 1).clamp(parallelism, parallelism * 4)
    }

    /// Splits a Parquet file into about `parallelism` parts of contiguous row groups (one part,
    /// `None`, when there is nothing to split).
    fn row_group_parts(&self, path: &Path, parallelism: usize) -> Result<Vec<Option<Vec<usize>>>> {
        let shown = path.display().to_string();
        let file =
            File::open(path).map_err(|e| PluginError::from(e).context(format!("`{shown}`")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
        let groups = builder.metadata().num_row_groups();
        let size = std::fs::metadata(path)?.len();
        let pieces = (self.pieces(size, parallelism) as usize).min(groups);
        if pieces <= 1 {
            return Ok(vec![None]);
        }
        Ok((0..pieces)
            .map(|i| Some((groups * i / pieces..groups * (i + 1) / pieces).collect()))
            .collect())
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

/// Opens a partition's file, or its byte range.
fn open_range(spec: &FileSpec) -> Result<Box<dyn Read + Send>> {
    match spec.range {
        None => Ok(open_read(&spec.path, spec.compression)?),
        Some((start, end)) => {
            let mut file = File::open(&spec.path)?;
            file.seek(SeekFrom::Start(start))?;
            Ok(Box::new(file.take(end - start)))
        }
    }
}

/// Where CSV parsing stands at a byte: inside a quoted field or not. A quote opens a quoted
/// field only at the start of a field (after a delimiter, a line break, or at the start of the
/// file), as the CSV reader sees it; inside a quoted field a doubled quote is a quote character
/// and a single one closes the field. A stray quote inside an unquoted field (`12" pipe`)
/// changes nothing.
struct QuoteState {
    quote: u8,
    delimiter: u8,
    in_quotes: bool,
    /// A quote inside a quoted field was the last byte of the previous chunk: closing, or the
    /// first of a doubled quote, depending on the next byte.
    pending: bool,
    /// The byte before the current position (`\n` at the start of the file).
    prev: u8,
}

impl QuoteState {
    /// Advances over `chunk[from..to]`, jumping from quote to quote.
    fn advance(&mut self, chunk: &[u8], mut from: usize, to: usize) {
        if from >= to {
            return;
        }
        if self.pending {
            self.pending = false;
            if chunk[from] == self.quote {
                from += 1; // a doubled quote: still inside
            } else {
                self.in_quotes = false;
            }
            if from >= to {
                self.prev = chunk[to - 1];
                return;
            }
        }
        let mut i = from;
        while let Some(found) = memchr::memchr(self.quote, &chunk[i..to]) {
            let q = i + found;
            if self.in_quotes {
                match chunk.get(q + 1) {
                    Some(&next) if q + 1 < to && next == self.quote => {
                        i = q + 2;
                        continue;
                    }
                    Some(_) if q + 1 < to => self.in_quotes = false,
                    _ => {
                        // The quote is the last byte looked at: decide with the next one.
                        self.pending = true;
                        break;
                    }
                }
            } else {
                let before = if q == 0 { self.prev } else { chunk[q - 1] };
                if before == self.delimiter || before == b'\n' || before == b'\r' {
                    self.in_quotes = true;
                }
            }
            i = q + 1;
            if i >= to {
                break;
            }
        }
        self.prev = chunk[to - 1];
    }

    fn inside(&self) -> bool {
        self.in_quotes || self.pending
    }
}

/// Cuts a file into about `pieces` byte ranges at record boundaries: right after a line break,
/// and for CSV (`csv` holds the quote and delimiter bytes) only after one outside a quoted
/// field. Returns the boundaries, from 0 to `size`.
fn split_points(path: &Path, size: u64, pieces: u64, csv: Option<(u8, u8)>) -> Result<Vec<u64>> {
    let mut targets: Vec<u64> = (1..pieces)
        .map(|i| (size as u128 * i as u128 / pieces as u128) as u64)
        .collect();
    targets.reverse();
    let mut state = csv.map(|(quote, delimiter)| QuoteState {
        quote,
        delimiter,
        in_quotes: false,
        pending: false,
        prev: b'\n',
    });
    let mut points = vec![0u64];
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut offset = 0u64;
    while !targets.is_empty() {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut pos = 0usize;
        while let Some(&target) = targets.last() {
            if target >= offset + n as u64 {
                break;
            }
            let mut from = (target.saturating_sub(offset) as usize).max(pos);
            let cut = loop {
                let Some(found) = memchr::memchr(b'\n', &chunk[from..]) else {
                    break None;
                };
                let newline = from + found;
                if let Some(s) = state.as_mut() {
                    s.advance(chunk, pos, newline);
                    pos = newline;
                    if s.inside() {
                        from = newline + 1;
                        continue;
                    }
                }
                break Some(newline + 1);
            };
            let Some(cut) = cut else {
                break; // no boundary in this chunk: look in the next one
            };
            let point = offset + cut as u64;
            if point < size && point > *points.last().unwrap_or(&0) {
                points.push(point);
            }
            while targets.last().is_some_and(|&t| t < point) {
                targets.pop();
            }
        }
        if let Some(s) = state.as_mut() {
            s.advance(chunk, pos, n);
        }
        offset += n as u64;
    }
    points.push(size);
    Ok(points)
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
        let mut index = 0;
        for path in files {
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
            if format == Format::Parquet {
                for row_groups in self.row_group_parts(&path, context.parallelism)? {
                    let spec = FileSpec {
                        path: path.clone(),
                        format,
                        compression,
                        schema: None,
                        start_offset: context.start_offset.clone(),
                        range: None,
                        row_groups,
                    };
                    parts.push(Partition {
                        index,
                        spec: serde_json::to_value(&spec).map_err(PluginError::internal)?,
                    });
                    index += 1;
                }
                continue;
            }
            let size = std::fs::metadata(&path)?.len();
            let ranges =
                if compression == Compression::None && self.pieces(size, context.parallelism) > 1 {
                    let pieces = self.pieces(size, context.parallelism);
                    let csv = (format == Format::Csv).then_some((b'"', self.delimiter));
                    split_points(&path, size, pieces, csv)?
                        .windows(2)
                        .map(|w| Some((w[0], w[1])))
                        .collect()
                } else {
                    vec![None]
                };
            for range in ranges {
                let spec = FileSpec {
                    path: path.clone(),
                    format,
                    compression,
                    schema: schema.clone(),
                    start_offset: context.start_offset.clone(),
                    range,
                    row_groups: None,
                };
                parts.push(Partition {
                    index,
                    spec: serde_json::to_value(&spec).map_err(PluginError::internal)?,
                });
                index += 1;
            }
        }
        log::debug!("{} file(s) to read", parts.len());
        Ok(parts)
    }

    fn read(&self, partition: &Partition) -> Result<Box<dyn BatchStream>> {
        self.open_stream(partition, &ReadRange::default())
    }

    /// Positions are row numbers in the partition's file (or part of a file).
    fn resumable(&self) -> bool {
        true
    }

    /// A Parquet file's row count from its footer; otherwise the rows read again (with the
    /// offset filter of an INCREMENTAL run).
    fn count(&self, partition: &Partition) -> Result<u64> {
        let spec: FileSpec =
            serde_json::from_value(partition.spec.clone()).map_err(PluginError::internal)?;
        let filtered = spec.start_offset.is_some() && self.config.replication_key.is_some();
        if spec.format == Format::Parquet && !filtered {
            let shown = spec.path.display().to_string();
            let file = File::open(&spec.path)
                .map_err(|e| PluginError::from(e).context(format!("`{shown}`")))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
            let meta = builder.metadata();
            let rows: i64 = match &spec.row_groups {
                Some(groups) => groups.iter().map(|g| meta.row_group(*g).num_rows()).sum(),
                None => meta.row_groups().iter().map(|g| g.num_rows()).sum(),
            };
            return Ok(rows.max(0) as u64);
        }
        let mut stream = self.read(partition)?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next_batch()? {
            rows += batch.num_rows() as u64;
        }
        Ok(rows)
    }

    fn read_range(&self, partition: &Partition, range: &ReadRange) -> Result<Box<dyn BatchStream>> {
        self.open_stream(partition, range)
    }

    /// The checksum of the partition's rows, read again as Arrow (with the offset filter of
    /// an INCREMENTAL run).
    fn checksum(&self, partition: &Partition) -> Result<Checksum> {
        Checksum::of_stream(self.read(partition)?.as_mut())
    }
}

impl FileSource {
    /// Opens a partition, or the rows of it after row `range.after` and up to row
    /// `range.upto` (row numbers counted from the partition's first row, before any filter).
    fn open_stream(
        &self,
        partition: &Partition,
        range: &ReadRange,
    ) -> Result<Box<dyn BatchStream>> {
        let spec: FileSpec =
            serde_json::from_value(partition.spec.clone()).map_err(PluginError::internal)?;
        let skip =
            fastlane_plugin_support::positions::row_number(&range.after, "start")?.unwrap_or(0);
        let upto = fastlane_plugin_support::positions::row_number(&range.upto, "end")?;
        let shown = spec.path.display().to_string();
        let batches: Box<
            dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>> + Send,
        > = match spec.format {
            Format::Csv => {
                let schema = Arc::new(spec.schema.clone().unwrap_or_else(Schema::empty));
                let header = self.config.has_header && spec.range.is_none_or(|(s, _)| s == 0);
                let reader = arrow_csv::ReaderBuilder::new(schema)
                    .with_header(header)
                    .with_delimiter(self.delimiter)
                    .with_batch_size(self.config.batch_size)
                    .build(open_range(&spec)?)
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
            Format::Jsonl => {
                let schema = Arc::new(spec.schema.clone().unwrap_or_else(Schema::empty));
                let reader = arrow_json::ReaderBuilder::new(schema)
                    .with_batch_size(self.config.batch_size)
                    .build(BufReader::with_capacity(1 << 20, open_range(&spec)?))
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
            Format::Parquet => {
                let file = File::open(&spec.path)
                    .map_err(|e| PluginError::from(e).context(format!("`{shown}`")))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| {
                        let mut b = b.with_batch_size(self.config.batch_size);
                        if skip > 0 {
                            b = b.with_offset(skip as usize);
                        }
                        if let Some(upto) = upto {
                            b = b.with_limit(upto.saturating_sub(skip) as usize);
                        }
                        match &spec.row_groups {
                            Some(groups) => b.with_row_groups(groups.clone()).build(),
                            None => b.build(),
                        }
                    })
                    .map_err(|e| PluginError::data(format!("`{shown}`: {e}")))?;
                Box::new(reader)
            }
        };
        let filter = match (&spec.start_offset, &self.config.replication_key) {
            (Some(offset), Some(key)) => Some((offset.clone(), key.clone())),
            _ => None,
        };
        // Parquet skips and limits in the reader; CSV and JSON Lines rows are counted here.
        let (consumed, skip) = match spec.format {
            Format::Parquet => (skip, skip),
            _ => (0, skip),
        };
        Ok(Box::new(FileStream {
            batches,
            path: shown,
            filter,
            scalar: None,
            schema: None,
            consumed,
            skip,
            upto,
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
    /// Rows of the partition read so far (its position).
    consumed: u64,
    /// Rows at the start to leave out (a resumed read).
    skip: u64,
    /// The row number to stop at (a resumed read of a hole).
    upto: Option<u64>,
}

impl FileStream {
    /// The next batch of the partition's rows inside the range, before the offset filter.
    fn next_in_range(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.upto.is_some_and(|u| self.consumed >= u) {
                return Ok(None);
            }
            let Some(batch) = self.batches.next() else {
                return Ok(None);
            };
            let batch = batch.map_err(|e| PluginError::data(format!("`{}`: {e}", self.path)))?;
            let start = self.consumed;
            let rows = batch.num_rows() as u64;
            self.consumed += rows;
            let from = self.skip.saturating_sub(start).min(rows);
            let to = match self.upto {
                Some(u) => u.saturating_sub(start).min(rows),
                None => rows,
            };
            self.consumed = start + to;
            if from >= to {
                continue;
            }
            return Ok(Some(batch.slice(from as usize, (to - from) as usize)));
        }
    }
}

impl BatchStream for FileStream {
    fn position(&self) -> Option<Value> {
        Some(Value::from(self.consumed))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some(batch) = self.next_in_range()? else {
                return Ok(None);
            };
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use fastlane_plugin_api::ReadContext;

    use super::*;

    fn csv_with_quoted_newlines(rows: usize) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        writeln!(f, "id,note,amount").unwrap();
        for i in 0..rows {
            if i % 3 == 0 {
                writeln!(f, "{i},\"line one\nline \"\"two\"\"\n, three\",{i}.5").unwrap();
            } else if i % 3 == 1 {
                // A stray quote inside an unquoted field does not open a quoted field.
                writeln!(f, "{i},a 12\" pipe {i},{i}.25").unwrap();
            } else {
                writeln!(f, "{i},plain {i},{i}.25").unwrap();
            }
        }
        f.flush().unwrap();
        f
    }

    #[test]
    fn split_points_fall_on_record_boundaries() {
        let f = csv_with_quoted_newlines(2_000);
        let bytes = std::fs::read(f.path()).unwrap();
        let size = bytes.len() as u64;
        let points = split_points(f.path(), size, 7, Some((b'"', b','))).unwrap();
        assert_eq!(points.first(), Some(&0));
        assert_eq!(points.last(), Some(&size));
        assert!(points.len() > 3, "{points:?}");
        for p in &points[1..points.len() - 1] {
            let before = &bytes[..*p as usize];
            assert_eq!(before.last(), Some(&b'\n'));
            let after = std::str::from_utf8(&bytes[*p as usize..]).unwrap();
            let first = after.split(',').next().unwrap();
            assert!(
                first.parse::<u64>().is_ok(),
                "cut at {p} is not at a record start: {first:?}"
            );
        }
    }

    fn read_all(config: FileSourceConfig, parallelism: usize) -> (usize, Vec<RecordBatch>) {
        let source = FileSource::new(config).unwrap();
        let context = ReadContext {
            parallelism,
            ..ReadContext::default()
        };
        let parts = source.partitions(&context).unwrap();
        let mut batches = Vec::new();
        for p in &parts {
            let mut stream = source.read(p).unwrap();
            while let Some(b) = stream.next_batch().unwrap() {
                batches.push(b);
            }
        }
        (parts.len(), batches)
    }

    fn config(path: &Path, split_bytes: u64) -> FileSourceConfig {
        serde_json::from_value(serde_json::json!({
            "path": path, "split_bytes": split_bytes, "batch_size": 500
        }))
        .unwrap()
    }

    fn ids_and_notes(batches: &[RecordBatch]) -> Vec<(i64, String)> {
        let mut rows = Vec::new();
        for b in batches {
            let ids = b.column(0).as_primitive::<arrow_array::types::Int64Type>();
            let notes = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                rows.push((ids.value(i), notes.value(i).to_owned()));
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn a_split_csv_reads_the_same_rows() {
        let f = csv_with_quoted_newlines(60_000);
        let (one, whole) = read_all(config(f.path(), 0), 4);
        let (many, split) = read_all(config(f.path(), 1), 4);
        assert_eq!(one, 1);
        assert!(many >= 4, "expected several parts, got {many}");
        assert_eq!(ids_and_notes(&split).len(), 60_000);
        assert!(
            ids_and_notes(&split) == ids_and_notes(&whole),
            "split rows differ"
        );
        assert!(split.iter().all(|b| b.column(1).null_count() == 0));
    }

    #[test]
    fn a_split_parquet_reads_the_same_rows() {
        use arrow_array::{ArrayRef, Int64Array, StringArray};
        let f = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile()
            .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(1_000))
            .build();
        let ids: Vec<i64> = (0..300_000).collect();
        let notes = StringArray::from_iter_values(ids.iter().map(|i| format!("n{i}")));
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
            ("note", Arc::new(notes) as ArrayRef),
        ])
        .unwrap();
        let file = f.reopen().unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (one, whole) = read_all(config(f.path(), 0), 3);
        let (many, split) = read_all(config(f.path(), 1), 3);
        assert_eq!(one, 1);
        assert!(
            (3..=12).contains(&many),
            "between parallelism and 4x: {many}"
        );
        assert_eq!(ids_and_notes(&split).len(), 300_000);
        assert!(
            ids_and_notes(&split) == ids_and_notes(&whole),
            "split rows differ"
        );
    }

    #[test]
    fn a_split_jsonl_reads_the_same_rows() {
        let mut f = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .unwrap();
        for i in 0..60_000 {
            writeln!(f, "{{\"id\": {i}, \"note\": \"n\\n{i}\"}}").unwrap();
        }
        f.flush().unwrap();
        let (_, whole) = read_all(config(f.path(), 0), 2);
        let (many, split) = read_all(config(f.path(), 1), 2);
        assert!(many >= 2, "expected several parts, got {many}");
        assert_eq!(ids_and_notes(&split).len(), 60_000);
        assert!(
            ids_and_notes(&split) == ids_and_notes(&whole),
            "split rows differ"
        );
    }
}
