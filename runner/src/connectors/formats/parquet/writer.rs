//! Writing one Parquet file: row groups of [`ROW_GROUP_ROWS`] rows (DuckDB's default), each
//! column encoded by its own column writer, the columns of a batch spread over the step's
//! threads. A column writer compresses each page as it fills, so what a row group holds in
//! memory until it is written out is its compressed pages plus one open page per column.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, IntervalUnit, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::basic::{BrotliLevel, Compression as ParquetCompression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use synqx_api::pipeline::Compression;

use crate::connectors::formats::write::{Counting, FileWriter, count};
use crate::engine::threads;
use crate::error::{Context, Error, Result};

/// Rows of a row group: DuckDB's default (122,880), so files of both compare like for like
/// and readers get the same parallelism from them.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// Encoded bytes at which a row group of wide rows ends before it has its rows, so that a
/// row group's buffered pages stay a bounded share of a step's memory.
const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// A Parquet codec with its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec(pub ParquetCompression);

impl Codec {
    /// The codec of a destination's `compression` and `compressionLevel` (checked against
    /// the codec's range before this; checked again here, naming `file`).
    pub fn new(compression: Compression, level: Option<i32>, file: &str) -> Result<Self> {
        let level = compression
            .level(level)
            .map_err(|e| Error::Config(format!("{file}: compressionLevel: {e}")))?;
        let unsigned = || {
            level
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or_default()
        };
        let bad_level = |e: parquet::errors::ParquetError| {
            Error::Config(format!("{file}: compressionLevel: {e}"))
        };
        Ok(Self(match compression {
            Compression::None => ParquetCompression::UNCOMPRESSED,
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Lz4 => ParquetCompression::LZ4_RAW,
            Compression::Gzip => {
                ParquetCompression::GZIP(GzipLevel::try_new(unsigned()).map_err(bad_level)?)
            }
            Compression::Brotli => {
                ParquetCompression::BROTLI(BrotliLevel::try_new(unsigned()).map_err(bad_level)?)
            }
            Compression::Zstd => {
                ParquetCompression::ZSTD(ZstdLevel::try_new(level.unwrap_or(3)).map_err(bad_level)?)
            }
        }))
    }
}

/// The row group being encoded.
struct RowGroup {
    /// One writer per leaf column, in schema order.
    columns: Vec<ArrowColumnWriter>,
    rows: usize,
}

/// Writes batches into one Parquet file.
pub struct ParquetWriter {
    file_writer: Option<SerializedFileWriter<Counting>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    open: Option<RowGroup>,
    /// Row groups written so far.
    groups: usize,
    counter: Arc<AtomicU64>,
    threads: usize,
    file: String,
}

impl ParquetWriter {
    pub fn new(schema: SchemaRef, sink: Counting, codec: Codec, file: &str) -> Result<Self> {
        if let Some(field) = schema
            .fields()
            .iter()
            .find(|f| holds_interval(f.data_type()))
        {
            return Err(Error::Config(format!(
                "{file}: column \"{}\" is an interval ({}), which Parquet cannot store; convert it in a transform first (to text, or to a number of seconds)",
                field.name(),
                field.data_type()
            )));
        }
        let properties = WriterProperties::builder()
            .set_compression(codec.0)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let counter = sink.counter();
        // ArrowWriter converts the schema and embeds it in the footer; the row groups are
        // then written through its lower-level parts.
        let (file_writer, factory) = ArrowWriter::try_new(sink, schema.clone(), Some(properties))
            .and_then(ArrowWriter::into_serialized_writer)
            .context(|| format!("creating {file}"))?;
        Ok(Self {
            file_writer: Some(file_writer),
            factory,
            schema,
            open: None,
            groups: 0,
            counter,
            threads: threads::count(),
            file: file.to_string(),
        })
    }

    /// Encodes `batch` into the open row group, which must have room for all its rows.
    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        let group = match self.open.take() {
            Some(group) => group,
            None => RowGroup {
                columns: self
                    .factory
                    .create_column_writers(self.groups)
                    .context(|| format!("writing {}", self.file))?,
                rows: 0,
            },
        };
        let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(group.columns.len());
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(
                compute_leaves(field, column).context(|| format!("writing {}", self.file))?,
            );
        }
        if leaves.len() != group.columns.len() {
            return Err(Error::Defect(format!(
                "writing {}: {} leaf columns for {} column writers",
                self.file,
                leaves.len(),
                group.columns.len()
            )));
        }
        let jobs: Vec<(ArrowColumnWriter, ArrowLeafColumn)> =
            group.columns.into_iter().zip(leaves).collect();
        let done = threads::map(jobs, self.threads, |(mut writer, leaf)| {
            writer.write(&leaf).map(|()| writer)
        });
        let columns = done
            .into_iter()
            .collect::<parquet::errors::Result<Vec<_>>>()
            .context(|| format!("writing {}", self.file))?;
        self.open = Some(RowGroup {
            columns,
            rows: group.rows + batch.num_rows(),
        });
        Ok(())
    }

    /// Closes the open row group (each column's last page is compressed on the threads) and
    /// appends it to the file.
    fn flush(&mut self) -> Result<()> {
        let Some(group) = self.open.take() else {
            return Ok(());
        };
        let Some(file_writer) = self.file_writer.as_mut() else {
            return Ok(());
        };
        let chunks = threads::map(group.columns, self.threads, ArrowColumnWriter::close)
            .into_iter()
            .collect::<parquet::errors::Result<Vec<ArrowColumnChunk>>>()
            .context(|| format!("writing {}", self.file))?;
        let mut row_group = file_writer
            .next_row_group()
            .context(|| format!("writing {}", self.file))?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .context(|| format!("writing {}", self.file))?;
        }
        row_group
            .close()
            .context(|| format!("writing {}", self.file))?;
        self.groups += 1;
        Ok(())
    }

    fn open_bytes(&self) -> usize {
        self.open.as_ref().map_or(0, |g| {
            g.columns
                .iter()
                .map(ArrowColumnWriter::get_estimated_total_bytes)
                .sum()
        })
    }
}

/// Whether a type is or contains an Arrow interval of months, days and nanoseconds: Parquet's
/// INTERVAL holds milliseconds, and the Parquet writer refuses it only at the first row, with
/// an error that names no column.
fn holds_interval(data_type: &DataType) -> bool {
    match data_type {
        DataType::Interval(IntervalUnit::MonthDayNano) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => holds_interval(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_interval(f.data_type())),
        DataType::Dictionary(_, value) => holds_interval(value),
        _ => false,
    }
}

impl FileWriter for ParquetWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let open_rows = self.open.as_ref().map_or(0, |g| g.rows);
            let room = ROW_GROUP_ROWS.saturating_sub(open_rows).max(1);
            let take = room.min(batch.num_rows() - offset);
            self.encode(&batch.slice(offset, take))?;
            offset += take;
            let rows = self.open.as_ref().map_or(0, |g| g.rows);
            if rows >= ROW_GROUP_ROWS || self.open_bytes() >= ROW_GROUP_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        let written = self
            .file_writer
            .as_ref()
            .map_or(0, SerializedFileWriter::bytes_written);
        (written + self.open_bytes()) as u64
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.flush()?;
        if let Some(file_writer) = self.file_writer.take() {
            let mut sink = file_writer
                .into_inner()
                .context(|| format!("writing the footer of {}", self.file))?;
            sink.flush().context(|| format!("writing {}", self.file))?;
        }
        Ok(count(&self.counter))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::connectors::formats::tests::id_values;

    fn batch(from: i64, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, true),
        ]));
        let ids: Vec<i64> = (from..from + rows as i64).collect();
        let text: Vec<Option<String>> = ids
            .iter()
            .map(|i| (i % 7 != 0).then(|| format!("row {} of a repetitive text", i % 1000)))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(text)),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes `rows` rows in batches of `per_batch` and returns the file's path and size.
    fn write(
        dir: &std::path::Path,
        name: &str,
        codec: Codec,
        rows: usize,
        per_batch: usize,
    ) -> (std::path::PathBuf, u64) {
        let path = dir.join(name);
        let file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = ParquetWriter::new(
            batch(0, 0).schema(),
            Counting::new(Box::new(file)),
            codec,
            name,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut at = 0;
        while at < rows {
            let n = per_batch.min(rows - at);
            writer
                .write(&batch(at as i64, n))
                .unwrap_or_else(|e| panic!("{e}"));
            at += n;
        }
        let size = Box::new(writer).finish().unwrap_or_else(|e| panic!("{e}"));
        (path, size)
    }

    fn reader(path: &std::path::Path) -> SerializedFileReader<File> {
        SerializedFileReader::new(File::open(path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_codec_is_written_as_asked_and_reads_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (compression, level, expected) in [
            (Compression::None, None, "UNCOMPRESSED"),
            (Compression::Snappy, None, "SNAPPY"),
            (Compression::Gzip, Some(9), "GZIP"),
            (Compression::Zstd, Some(3), "ZSTD"),
            (Compression::Lz4, None, "LZ4_RAW"),
            (Compression::Brotli, Some(5), "BROTLI"),
        ] {
            let codec =
                Codec::new(compression, level, "t.parquet").unwrap_or_else(|e| panic!("{e}"));
            let name = format!("{compression}.parquet");
            let (path, size) = write(dir.path(), &name, codec, 5_000, 1_000);
            assert_eq!(
                size,
                std::fs::metadata(&path)
                    .map(|m| m.len())
                    .unwrap_or_default()
            );
            let file = reader(&path);
            for group in file.metadata().row_groups() {
                for column in group.columns() {
                    let found = format!("{:?}", column.compression());
                    assert!(found.starts_with(expected), "{name}: {found}");
                }
            }
            let rows: usize = ParquetRecordBatchReaderBuilder::try_new(
                File::open(&path).unwrap_or_else(|e| panic!("{e}")),
            )
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|b| b.map(|b| b.num_rows()).unwrap_or_else(|e| panic!("{e}")))
            .sum();
            assert_eq!(rows, 5_000, "{name}");
        }
    }

    #[test]
    fn a_higher_level_compresses_more() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sizes: Vec<u64> = [(Compression::Gzip, 1, 9), (Compression::Zstd, 1, 19)]
            .into_iter()
            .flat_map(|(compression, low, high)| [(compression, low), (compression, high)])
            .map(|(compression, level)| {
                let codec = Codec::new(compression, Some(level), "t.parquet")
                    .unwrap_or_else(|e| panic!("{e}"));
                write(
                    dir.path(),
                    &format!("{compression}-{level}.parquet"),
                    codec,
                    50_000,
                    10_000,
                )
                .1
            })
            .collect();
        assert!(sizes[1] < sizes[0], "gzip 9 vs 1: {sizes:?}");
        assert!(sizes[3] < sizes[2], "zstd 19 vs 1: {sizes:?}");
        let refused = Codec::new(Compression::Zstd, Some(23), "out/t.parquet")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some(
                "out/t.parquet: compressionLevel: 23 is not a zstd level (use 1 to 22; default 3)"
            )
        );
    }

    #[test]
    fn row_groups_hold_row_group_rows_whatever_the_batches() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let codec =
            Codec::new(Compression::Snappy, None, "t.parquet").unwrap_or_else(|e| panic!("{e}"));
        let rows = 2 * ROW_GROUP_ROWS + 1_000;
        let (path, _) = write(dir.path(), "groups.parquet", codec, rows, 50_000);
        let file = reader(&path);
        let groups: Vec<i64> = file
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let full = ROW_GROUP_ROWS as i64;
        assert_eq!(groups, vec![full, full, 1_000]);
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap_or_else(|e| panic!("{e}")),
        )
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<std::result::Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            id_values(&batches),
            (0..rows as i64).map(Some).collect::<Vec<_>>()
        );
    }
}
