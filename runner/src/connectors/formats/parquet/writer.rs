//! Writing one Parquet file: row groups of [`ROW_GROUP_ROWS`] rows (DuckDB's default), each
//! column encoded by its own column writer, the columns of a batch spread over the step's
//! threads. A column writer compresses each page as it fills, so what a row group holds in
//! memory until it is written out is its compressed pages plus one open page per column.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use std::collections::HashSet;

use arrow::array::{Array, ArrayAccessor, ArrayData, AsArray, RecordBatch};
use arrow::datatypes::{DataType, IntervalUnit, SchemaRef};
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{BrotliLevel, Compression as ParquetCompression, GzipLevel, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
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

/// A column whose first batch holds more distinct values than this share of its values (a
/// comment, an id, a price) is written without a dictionary. Under zstd such a column is
/// smaller plain than as indices into a dictionary of nearly every value (TPC-H `lineitem`'s
/// part keys and prices); under snappy, within a few percent either way.
const UNIQUE_SHARE: (usize, usize) = (1, 2);

/// Values of the first batch counted for that, and the fewest that decide it.
const SAMPLE_VALUES: usize = 20_000;
const SAMPLE_MIN: usize = 1_000;

/// The file before its first batch: the sink and the settings it will be written with.
struct Pending {
    sink: Counting,
    properties: WriterPropertiesBuilder,
}

/// The file once started.
struct Started {
    file_writer: SerializedFileWriter<Counting>,
    factory: ArrowRowGroupWriterFactory,
}

/// Writes batches into one Parquet file.
pub struct ParquetWriter {
    /// Until the first batch, which decides the columns that get no dictionary.
    pending: Option<Pending>,
    started: Option<Started>,
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
        // A schema Parquet cannot hold fails here, not at the first batch.
        ArrowSchemaConverter::new()
            .convert(&schema)
            .context(|| format!("creating {file}"))?;
        let properties = WriterProperties::builder()
            .set_compression(codec.0)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        Ok(Self {
            counter: sink.counter(),
            pending: Some(Pending { sink, properties }),
            started: None,
            schema,
            open: None,
            groups: 0,
            threads: threads::count(),
            file: file.to_string(),
        })
    }

    /// Starts the file, without a dictionary for the columns that `first` (its first batch,
    /// if any) shows nearly unique: their dictionary would fill up and be given up in every
    /// row group, after every value had been looked up in it. The started file is returned.
    fn start(&mut self, first: Option<&RecordBatch>) -> Result<&mut Started> {
        if let Some(Pending {
            sink,
            mut properties,
        }) = self.pending.take()
        {
            for name in first.map(nearly_unique).unwrap_or_default() {
                properties =
                    properties.set_column_dictionary_enabled(ColumnPath::from(name), false);
            }
            // ArrowWriter converts the schema and embeds it in the footer; the row groups are
            // then written through its lower-level parts.
            let (file_writer, factory) =
                ArrowWriter::try_new(sink, self.schema.clone(), Some(properties.build()))
                    .and_then(ArrowWriter::into_serialized_writer)
                    .context(|| format!("creating {}", self.file))?;
            self.started = Some(Started {
                file_writer,
                factory,
            });
        }
        self.started.as_mut().ok_or_else(|| {
            Error::Defect(format!(
                "writing {}: the file was already finished",
                self.file
            ))
        })
    }

    /// Encodes `batch` into the open row group, which must have room for all its rows.
    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        let groups = self.groups;
        let group = match self.open.take() {
            Some(group) => group,
            None => RowGroup {
                columns: self
                    .start(Some(batch))?
                    .factory
                    .create_column_writers(groups)
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
        let Some(Started { file_writer, .. }) = self.started.as_mut() else {
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

/// The top-level columns of `batch` (text, binary or of fixed width) whose first values are
/// more than `UNIQUE_SHARE` distinct; none when the batch has too few values to tell.
fn nearly_unique(batch: &RecordBatch) -> Vec<String> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, column)| {
            // Declared first: the sample of a column of fixed width borrows from it.
            let data = column.to_data();
            let mut seen: HashSet<&[u8]> = HashSet::new();
            let mut values = 0;
            let mut count = |value| {
                values += 1;
                seen.insert(value);
            };
            match column.data_type() {
                DataType::Utf8 => sample(column.as_string::<i32>(), |v| count(v.as_bytes())),
                DataType::LargeUtf8 => sample(column.as_string::<i64>(), |v| count(v.as_bytes())),
                DataType::Utf8View => sample(column.as_string_view(), |v| count(v.as_bytes())),
                DataType::Binary => sample(column.as_binary::<i32>(), count),
                DataType::LargeBinary => sample(column.as_binary::<i64>(), count),
                DataType::BinaryView => sample(column.as_binary_view(), count),
                data_type => match data_type.primitive_width() {
                    Some(width) => sample_fixed(&data, width, count),
                    None => return false,
                },
            }
            values >= SAMPLE_MIN && seen.len() * UNIQUE_SHARE.1 > values * UNIQUE_SHARE.0
        })
        .map(|(field, _)| field.name().clone())
        .collect()
}

/// Hands the first `SAMPLE_VALUES` non-null values of `array` to `count`.
fn sample<'a, T: ?Sized + 'a>(
    array: impl ArrayAccessor<Item = &'a T>,
    mut count: impl FnMut(&'a T),
) {
    (0..array.len())
        .filter(|i| array.is_valid(*i))
        .take(SAMPLE_VALUES)
        .for_each(|i| count(array.value(i)));
}

/// Hands the bytes of the first `SAMPLE_VALUES` non-null values of a column of fixed
/// `width` (numbers, dates, times) to `count`.
fn sample_fixed<'a>(data: &'a ArrayData, width: usize, count: impl FnMut(&'a [u8])) {
    let Some(values) = data.buffers().first() else {
        return;
    };
    let bytes = data
        .offset()
        .checked_mul(width)
        .and_then(|at| values.as_slice().get(at..))
        .unwrap_or_default();
    (0..data.len())
        .filter(|i| data.is_valid(*i))
        .take(SAMPLE_VALUES)
        .filter_map(|i| bytes.get(i * width..(i + 1) * width))
        .for_each(count);
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
            .started
            .as_ref()
            .map_or(0, |s| s.file_writer.bytes_written());
        (written + self.open_bytes()) as u64
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.flush()?;
        // A file without rows still has its schema.
        self.start(None)?;
        if let Some(Started { file_writer, .. }) = self.started.take() {
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

    use arrow::array::{Int32Array, Int64Array, StringArray};
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

    /// Every batch of the file at `path`.
    fn read_back(path: &std::path::Path) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap_or_else(|e| panic!("{e}")))
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<std::result::Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"))
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
        let batches = read_back(&path);
        assert_eq!(
            id_values(&batches),
            (0..rows as i64).map(Some).collect::<Vec<_>>()
        );
    }

    /// A file of `batches` (unique ids, a unique comment, a flag of three values, a quantity
    /// of fifty), written with snappy; returns, per column, whether its first row group has a
    /// dictionary page.
    fn dictionaries(dir: &std::path::Path, batches: &[usize]) -> Vec<(String, bool)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("comment", DataType::Utf8, true),
            Field::new("flag", DataType::Utf8, true),
            Field::new("quantity", DataType::Int32, true),
        ]));
        let path = dir.join("d.parquet");
        let file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let codec =
            Codec::new(Compression::Snappy, None, "d.parquet").unwrap_or_else(|e| panic!("{e}"));
        let mut writer = ParquetWriter::new(
            schema.clone(),
            Counting::new(Box::new(file)),
            codec,
            "d.parquet",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut written = Vec::new();
        let mut from = 0i64;
        for rows in batches {
            let ids: Vec<i64> = (from..from + *rows as i64).collect();
            from += *rows as i64;
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from_iter(ids.iter().map(|i| {
                        (i % 10 != 0).then(|| format!("carefully final deposits {i}"))
                    }))),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| ["A", "N", "R"][(i % 3) as usize]),
                    )),
                    Arc::new(Int32Array::from_iter(
                        ids.iter().map(|i| (i % 7 != 0).then_some((i % 50) as i32)),
                    )),
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
            written.push(batch);
        }
        Box::new(writer).finish().unwrap_or_else(|e| panic!("{e}"));
        let read = read_back(&path);
        let concat = |batches: &[RecordBatch]| {
            arrow::compute::concat_batches(&schema, batches).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            concat(&read),
            concat(&written),
            "the file reads back as written"
        );
        let file = reader(&path);
        let Some(group) = file.metadata().row_groups().first() else {
            return Vec::new();
        };
        group
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn a_sliced_column_of_fixed_width_is_sampled_from_its_own_first_value() {
        // 2,000 zeros, then 2,000 distinct values: the slice past the zeros is all distinct.
        let values: Int64Array = (0..4_000i64)
            .map(|i| if i < 2_000 { 0 } else { i })
            .collect();
        let distinct = |data: &ArrayData| {
            let mut seen = HashSet::new();
            sample_fixed(data, 8, |v| {
                seen.insert(i64::from_le_bytes(v.try_into().unwrap_or_default()));
            });
            seen
        };
        let data = values.to_data();
        assert_eq!(distinct(&data).len(), 2_001);
        // A slice of the data keeps the whole buffer and says where it starts.
        let sliced = data.slice(2_000, 2_000);
        assert_eq!(sliced.offset(), 2_000);
        assert_eq!(distinct(&sliced), (2_000..4_000).collect());
    }

    #[test]
    fn a_nearly_unique_column_is_written_without_a_dictionary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let with = |unique: bool| {
            vec![
                ("id".to_string(), unique),
                ("comment".to_string(), unique),
                ("flag".to_string(), true),
                ("quantity".to_string(), true),
            ]
        };
        // The first batch decides, for the whole file.
        assert_eq!(dictionaries(dir.path(), &[30_000, 100_000]), with(false));
        // Too few values to tell: the default, a dictionary for every column.
        assert_eq!(dictionaries(dir.path(), &[500, 100_000]), with(true));
        // No rows at all: a file with the schema and no row group.
        assert_eq!(dictionaries(dir.path(), &[]), Vec::new());
    }
}
