//! Writing batches into one file of a format, through any `Write` sink.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use flate2::write::GzEncoder;
use synqx_api::pipeline::{Compression, FileFormat};

use super::CsvSettings;
use crate::error::{Context, Error, Result};

/// One file being written.
pub trait FileWriter: Send {
    /// Encodes a batch (the schema given at creation).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Bytes the file holds so far, counting data still buffered in the encoder: what size
    /// rotation compares with `fileSize`.
    fn size(&self) -> u64;
    /// Ends the file (CSV header of an empty file, gzip trailer, Parquet footer) and returns
    /// the bytes written to the sink.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// How files of a destination are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteFormat {
    pub format: FileFormat,
    /// `gzip` or `none` for text formats; any codec for Parquet.
    pub compression: Compression,
    /// The codec's level (its default when none was given); `None` for codecs without.
    pub level: Option<i32>,
    pub csv: CsvSettings,
}

impl WriteFormat {
    /// Resolves the compression: the option, else `.gz` in `name` for text formats, else the
    /// format's default (none for text, zstd for Parquet); then its level.
    pub fn new(
        format: FileFormat,
        explicit: Option<Compression>,
        level: Option<i32>,
        name: &str,
        csv: CsvSettings,
    ) -> Result<Self> {
        let gz_name = name.to_ascii_lowercase().ends_with(".gz");
        let compression = match (format, explicit) {
            (FileFormat::Parquet, None) => Compression::Zstd,
            (_, None) if gz_name => Compression::Gzip,
            (_, None) => Compression::None,
            (format, Some(codec)) if codec.applies_to(format) => codec,
            (format, Some(other)) => {
                return Err(Error::Config(format!(
                    "compression {other} is not available for {format} files (use gzip or none)"
                )));
            }
        };
        let level = compression
            .level(level)
            .map_err(|e| Error::Config(format!("{name}: compressionLevel: {e}")))?;
        Ok(Self {
            format,
            compression,
            level,
            csv,
        })
    }

    /// Whether files are text compressed as a whole with gzip (Parquet compresses its pages
    /// inside the file instead).
    pub fn gzipped_text(&self) -> bool {
        self.compression == Compression::Gzip && self.format != FileFormat::Parquet
    }

    /// The extension of part files: `csv`, `csv.gz`, `jsonl`, `jsonl.gz` or `parquet`.
    pub fn extension(&self) -> String {
        let base = super::extension(self.format);
        if self.gzipped_text() {
            format!("{base}.gz")
        } else {
            base.to_string()
        }
    }

    /// Starts a file. `name` is used in messages.
    pub fn writer(
        &self,
        schema: SchemaRef,
        sink: Box<dyn Write + Send>,
        name: &str,
    ) -> Result<Box<dyn FileWriter>> {
        match self.format {
            FileFormat::Csv => Ok(Box::new(super::csv::CsvWriter::new(
                schema,
                self.encoded(sink),
                self.csv,
                name,
            )?)),
            FileFormat::Jsonl => Ok(Box::new(super::jsonl::JsonlWriter::new(
                self.encoded(sink),
                name,
            ))),
            FileFormat::Parquet => Ok(Box::new(super::parquet::ParquetWriter::new(
                schema,
                Counting::new(sink),
                super::parquet::Codec::new(self.compression, self.level, name)?,
                name,
            )?)),
        }
    }

    /// A text sink compressed as configured.
    pub fn encoded(&self, sink: Box<dyn Write + Send>) -> Encoded {
        let gzip = self.gzipped_text().then(|| {
            // Levels were checked against 0..=9 when the format was resolved.
            let level = self.level.and_then(|l| u32::try_from(l).ok()).unwrap_or(6);
            flate2::Compression::new(level)
        });
        Encoded::new(Counting::new(sink), gzip)
    }
}

/// A sink that counts the bytes that reach it.
pub struct Counting {
    inner: Box<dyn Write + Send>,
    count: Arc<AtomicU64>,
}

impl Counting {
    pub fn new(inner: Box<dyn Write + Send>) -> Self {
        Self {
            inner,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle on the count that stays readable after the sink moved into an encoder.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A text sink, plain or gzip.
pub enum Encoded {
    Plain(Counting),
    Gzip(Box<GzEncoder<Counting>>),
}

impl Encoded {
    /// A sink, gzip-compressed at the given level when there is one.
    pub fn new(sink: Counting, gzip: Option<flate2::Compression>) -> Self {
        match gzip {
            Some(level) => Self::Gzip(Box::new(GzEncoder::new(sink, level))),
            None => Self::Plain(sink),
        }
    }

    /// Bytes that reached the sink so far.
    pub fn counter(&self) -> Arc<AtomicU64> {
        match self {
            Self::Plain(c) => c.counter(),
            Self::Gzip(g) => g.get_ref().counter(),
        }
    }

    /// Writes the gzip trailer and flushes the sink.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Self::Plain(mut c) => c.flush(),
            Self::Gzip(g) => (*g).finish()?.flush(),
        }
    }

    /// Ends the text file `file` (its gzip trailer, a flush) and returns the bytes it holds.
    pub fn close(self, file: &str) -> Result<u64> {
        let counter = self.counter();
        self.finish().context(|| format!("writing {file}"))?;
        Ok(count(&counter))
    }
}

impl Write for Encoded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(c) => c.write(buf),
            Self::Gzip(g) => g.write(buf),
        }
    }

    /// Does nothing: a writer that flushes as it goes (the `csv` crate's, when a widened file
    /// is copied) would end a deflate block each time and hurt compression. `finish` flushes
    /// once at the end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes counted so far.
pub fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn compression_is_resolved_per_format() {
        let csv = CsvSettings::default();
        let w =
            |f, c, n| WriteFormat::new(f, c, None, n, csv).map(|w| (w.compression, w.extension()));
        assert_eq!(
            w(FileFormat::Parquet, None, "x/").ok(),
            Some((Compression::Zstd, "parquet".into()))
        );
        assert_eq!(
            w(FileFormat::Parquet, Some(Compression::Snappy), "x/").ok(),
            Some((Compression::Snappy, "parquet".into()))
        );
        assert_eq!(
            w(FileFormat::Csv, None, "a.csv.gz").ok(),
            Some((Compression::Gzip, "csv.gz".into()))
        );
        assert_eq!(
            w(FileFormat::Jsonl, Some(Compression::Gzip), "x/").ok(),
            Some((Compression::Gzip, "jsonl.gz".into()))
        );
        let err = w(FileFormat::Csv, Some(Compression::Zstd), "x/")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("compression zstd is not available for csv files (use gzip or none)")
        );
        assert_eq!(
            w(FileFormat::Parquet, Some(Compression::Gzip), "x/").ok(),
            Some((Compression::Gzip, "parquet".into()))
        );
    }

    #[test]
    fn levels_default_per_codec_and_are_checked() {
        let csv = CsvSettings::default();
        let level = |f, c, l| WriteFormat::new(f, c, l, "out/", csv).map(|w| w.level);
        assert_eq!(level(FileFormat::Parquet, None, None).ok(), Some(Some(3)));
        assert_eq!(
            level(FileFormat::Parquet, Some(Compression::Brotli), Some(11)).ok(),
            Some(Some(11))
        );
        assert_eq!(
            level(FileFormat::Csv, Some(Compression::Gzip), None).ok(),
            Some(Some(6))
        );
        assert_eq!(
            level(FileFormat::Parquet, Some(Compression::Lz4), None).ok(),
            Some(None)
        );
        let err = level(FileFormat::Parquet, Some(Compression::Zstd), Some(0))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("out/: compressionLevel: 0 is not a zstd level (use 1 to 22; default 3)")
        );
        assert!(level(FileFormat::Parquet, Some(Compression::Snappy), Some(1)).is_err());
    }

    #[test]
    fn gzip_output_is_counted_and_decodes() {
        let out = crate::connectors::formats::tests::Memory::default();
        let mut enc = Encoded::new(
            Counting::new(Box::new(out.clone())),
            Some(flate2::Compression::best()),
        );
        let counter = enc.counter();
        enc.write_all(b"hello\nworld\n")
            .unwrap_or_else(|e| panic!("{e}"));
        enc.finish().unwrap_or_else(|e| panic!("{e}"));
        let bytes = out.bytes();
        assert_eq!(count(&counter), bytes.len() as u64);
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "hello\nworld\n");
    }
}
