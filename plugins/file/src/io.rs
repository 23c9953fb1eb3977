//! Compressed readers and writers, and a byte-counting file writer.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Compression;

/// Opens a file for reading through its compression.
pub fn open_read(path: &Path, compression: Compression) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    Ok(match compression {
        Compression::None | Compression::Snappy => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Compression::Zstd => Box::new(zstd::Decoder::new(file)?),
    })
}

/// A buffered file writer that counts the bytes written to it (before buffering, so the count
/// is current).
pub struct Counting {
    file: BufWriter<File>,
    written: Arc<AtomicU64>,
}

impl Counting {
    /// Wraps a file; the count is shared through `written`.
    pub fn new(file: File, written: Arc<AtomicU64>) -> Self {
        Self {
            file: BufWriter::with_capacity(1 << 20, file),
            written,
        }
    }

    /// Flushes the buffer and returns the file.
    pub fn into_file(self) -> io::Result<File> {
        self.file.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A writer through an optional stream compression; `finish` completes the stream and returns
/// the file.
pub enum Out {
    /// Uncompressed.
    Plain(Counting),
    /// gzip.
    Gzip(flate2::write::GzEncoder<Counting>),
    /// Zstandard.
    Zstd(zstd::Encoder<'static, Counting>),
}

impl Out {
    /// A writer into `file` with `compression`.
    pub fn new(file: Counting, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::None | Compression::Snappy => Self::Plain(file),
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Self::Zstd(zstd::Encoder::new(file, 3)?),
        })
    }

    /// Completes the stream, flushes, and returns the file.
    pub fn finish(self) -> io::Result<File> {
        let counting = match self {
            Self::Plain(w) => w,
            Self::Gzip(w) => w.finish()?,
            Self::Zstd(w) => w.finish()?,
        };
        counting.into_file()
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(w) => w.write(buf),
            Self::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::Zstd(w) => w.flush(),
        }
    }
}
