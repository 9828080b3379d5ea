//! Parquet: the schema from the footer, a reader that arranges each file's columns into the
//! schema of the read, and a writer (`writer`) that encodes columns in parallel.

mod writer;

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;

pub use writer::{Codec, ParquetWriter, ROW_GROUP_ROWS};

use super::batching;
use super::convert::{convert, value_text};
use super::infer::type_name;
use crate::engine::Rejects;
use crate::error::{BadRow, Context, Result};

/// The Arrow schema of a file (every column nullable, so files written with and without
/// nulls agree) and the uncompressed bytes of a row.
pub fn file_schema<R: ChunkReader>(reader: &R, file: &str) -> Result<(Schema, f64)> {
    let meta = ArrowReaderMetadata::load(reader, ArrowReaderOptions::default())
        .context(|| format!("reading the footer of {file}"))?;
    let fields: Vec<_> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let groups = meta.metadata().row_groups();
    let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
    let bytes: i64 = groups.iter().map(|g| g.total_byte_size()).sum();
    let row_bytes = batching::row_bytes(bytes.max(0) as u64, rows.max(0) as usize, 0);
    Ok((Schema::new(fields), row_bytes))
}

/// Rows a probe decodes to measure a file's in-memory row size.
const PROBE_ROWS: usize = 1024;

/// `batch_rows` shrunk by how much more memory decoded rows take than the footer's
/// uncompressed sizes suggest (the estimate `batch_rows` came from): dictionary-encoded
/// strings expand several times when decoded, and batches must stay within their byte budget.
fn calibrated<R: ChunkReader + 'static>(
    reader: &Shared<R>,
    file: &str,
    batch_rows: usize,
) -> Result<usize> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader.clone())
        .context(|| format!("opening {file}"))?;
    let groups = builder.metadata().row_groups();
    let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
    let bytes: i64 = groups.iter().map(|g| g.total_byte_size()).sum();
    // A file this small fits any budget, and its buffers' fixed minimum sizes would make the
    // probe overstate the size of a row.
    if rows < PROBE_ROWS as i64 {
        return Ok(batch_rows);
    }
    let estimated = batching::row_bytes(bytes.max(0) as u64, rows.max(0) as usize, 0);
    let mut probe = builder
        .with_batch_size(PROBE_ROWS)
        .with_limit(PROBE_ROWS)
        .build()
        .context(|| format!("opening {file}"))?;
    let Some(first) = probe
        .next()
        .transpose()
        .context(|| format!("reading {file}"))?
    else {
        return Ok(batch_rows);
    };
    if first.num_rows() == 0 {
        return Ok(batch_rows);
    }
    let measured = first.get_array_memory_size() as f64 / first.num_rows() as f64;
    let ratio = measured / estimated;
    if ratio <= 1.0 || !ratio.is_finite() {
        return Ok(batch_rows);
    }
    Ok(((batch_rows as f64 / ratio) as usize).max(1))
}

/// One open file read by several readers (the calibration probe, then the stream).
struct Shared<R>(Arc<R>);

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<R: ChunkReader> parquet::file::reader::Length for Shared<R> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<R: ChunkReader> ChunkReader for Shared<R> {
    type T = R::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// Streams one Parquet file as batches of `schema`: columns by name, the file's missing
/// columns null, and overridden types cast (values that do not convert are bad rows).
pub struct ParquetBatches {
    inner: ParquetRecordBatchReader,
    file: String,
    schema: SchemaRef,
    rejects: Rejects,
    rows_before: u64,
}

impl ParquetBatches {
    pub fn new<R: ChunkReader + 'static>(
        reader: R,
        file: &str,
        schema: SchemaRef,
        batch_rows: usize,
        rejects: Rejects,
    ) -> Result<Self> {
        let reader = Shared(Arc::new(reader));
        let batch_rows = calibrated(&reader, file, batch_rows)?;
        let inner = ParquetRecordBatchReaderBuilder::try_new(reader)
            .context(|| format!("opening {file}"))?
            .with_batch_size(batch_rows.max(1))
            .build()
            .context(|| format!("opening {file}"))?;
        Ok(Self {
            inner,
            file: file.to_string(),
            schema,
            rejects,
            rows_before: 0,
        })
    }

    fn arrange(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let mut failed: Vec<Option<usize>> = vec![None; rows];
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, field) in self.schema.fields().iter().enumerate() {
            let Ok(index) = batch.schema().index_of(field.name()) else {
                columns.push(new_null_array(field.data_type(), rows));
                continue;
            };
            let converted = convert(batch.column(index), field.data_type())
                .context(|| format!("{}: column \"{}\"", self.file, field.name()))?;
            for row in converted.failed {
                failed[row].get_or_insert(i);
            }
            columns.push(converted.array);
        }
        for (row, column) in failed.iter().enumerate() {
            let Some(i) = column else { continue };
            let field = self.schema.field(*i);
            let location = format!("{}: row {}", self.file, self.rows_before + row as u64 + 1);
            let mut bad = BadRow::new(
                location,
                format!(
                    "cannot convert the value to {}",
                    type_name(field.data_type())
                ),
            )
            .column(field.name());
            if let Some(c) = batch.column_by_name(field.name()) {
                bad = bad.value(value_text(c.as_ref(), row));
            }
            if let Some(json) = row_as_json(&batch, row) {
                bad = bad.row(json);
            }
            self.rejects.reject(bad)?;
        }
        self.rows_before += rows as u64;
        let arranged = RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| format!("reading {}", self.file))?;
        if failed.iter().all(Option::is_none) {
            return Ok(arranged);
        }
        let keep: BooleanArray = failed.iter().map(|f| Some(f.is_none())).collect();
        filter_record_batch(&arranged, &keep).context(|| format!("reading {}", self.file))
    }
}

/// One row as a JSON object, for the dead-letter file.
fn row_as_json(batch: &RecordBatch, row: usize) -> Option<String> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&batch.slice(row, 1)).ok()?;
    writer.finish().ok()?;
    String::from_utf8(writer.into_inner())
        .ok()
        .map(|s| s.trim_end().to_string())
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let batch = match self.inner.next()? {
                Ok(batch) => batch,
                Err(e) => {
                    return Some(Err(crate::error::Error::arrow(
                        format!("reading {}", self.file),
                        e,
                    )));
                }
            };
            match self.arrange(batch) {
                Ok(b) if b.num_rows() == 0 => continue,
                other => return Some(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Int64Type};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression as ParquetCompression;
    use synqx_api::pipeline::OnError;

    use super::*;
    use crate::connectors::formats::tests::{err, row_counts};
    use crate::connectors::formats::write::{Counting, FileWriter};
    use crate::engine::Counters;

    fn sample() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("code", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("10"), Some("x"), None])),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (schema, batch)
    }

    /// Writes the sample into `dir/t.parquet` and opens it again.
    fn encode(dir: &std::path::Path) -> File {
        let (schema, batch) = sample();
        let path = dir.join("t.parquet");
        let file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = ParquetWriter::new(
            schema,
            Counting::new(Box::new(file)),
            Codec(ParquetCompression::SNAPPY),
            "t.parquet",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        assert!(writer.size() > 0);
        let written = Box::new(writer).finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written,
            std::fs::metadata(&path)
                .map(|m| m.len())
                .unwrap_or_default()
        );
        File::open(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_interval_column_is_refused_by_name_before_any_row() {
        use arrow::datatypes::IntervalUnit;
        let item = Arc::new(Field::new(
            "item",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        ));
        for data_type in [
            DataType::Interval(IntervalUnit::MonthDayNano),
            DataType::List(item),
        ] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("waited", data_type, true),
            ]));
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let file = File::create(dir.path().join("t.parquet")).unwrap_or_else(|e| panic!("{e}"));
            let error = err(ParquetWriter::new(
                schema,
                Counting::new(Box::new(file)),
                Codec(ParquetCompression::SNAPPY),
                "out/t.parquet",
            )
            .map(drop));
            assert!(
                error.contains("out/t.parquet: column \"waited\" is an interval"),
                "{error}"
            );
            assert!(error.contains("convert it in a transform"), "{error}");
        }
    }

    #[test]
    fn batches_are_calibrated_to_decoded_row_size() {
        // Three long strings repeated: dictionary encoding makes the footer's uncompressed
        // size a small fraction of the decoded Arrow data.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dict.parquet");
        let values: Vec<String> = (0..20_000)
            .map(|i| format!("{}{}", "x".repeat(100), i % 3))
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::StringArray::from(values))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = ArrowWriter::try_new(out, schema, None).unwrap_or_else(|e| panic!("{e}"));
        writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        writer.close().unwrap_or_else(|e| panic!("{e}"));
        let reader = Shared(Arc::new(
            File::open(&path).unwrap_or_else(|e| panic!("{e}")),
        ));
        let rows = calibrated(&reader, "dict.parquet", 10_000).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            rows < 1_000,
            "decoded rows are ~100 bytes, the footer says a few: got {rows}"
        );
        assert!(rows >= 1);
    }

    #[test]
    fn footer_schema_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = encode(dir.path());
        let (read, row_bytes) = file_schema(&file, "t.parquet").unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = read
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.is_nullable()))
            .collect();
        assert_eq!(names, vec![("id", true), ("code", true)]);
        assert!(row_bytes > 1.0);
        let target = Arc::new(Schema::new(vec![
            Field::new("extra", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
        ]));
        let out: Vec<RecordBatch> =
            ParquetBatches::new(file, "t.parquet", target, 2, Rejects::failing())
                .unwrap_or_else(|e| panic!("{e}"))
                .collect::<Result<_>>()
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row_counts(&out), [2, 1]);
        assert_eq!(out[0].column(0).null_count(), 2);
        assert_eq!(out[1].column(1).as_primitive::<Int64Type>().value(0), 3);
    }

    #[test]
    fn overridden_types_reject_values_that_do_not_convert() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("code", DataType::Int32, true),
        ]));
        let failing = ParquetBatches::new(
            encode(dir.path()),
            "t.parquet",
            target.clone(),
            10,
            Rejects::failing(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<Vec<_>>>();
        assert_eq!(
            failing.err().map(|e| e.to_string()).as_deref(),
            Some(
                "t.parquet: row 2, column \"code\": cannot convert the value to int32; set onError: skip to skip such rows into the rejected file"
            )
        );
        let dead = dir.path().join("dead.jsonl");
        let counters = Arc::new(Counters::default());
        let skip = Rejects::new(OnError::Skip, Some(dead.clone()), counters.clone());
        let out: Vec<RecordBatch> =
            ParquetBatches::new(encode(dir.path()), "t.parquet", target, 10, skip)
                .unwrap_or_else(|e| panic!("{e}"))
                .collect::<Result<_>>()
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            vec![1, 3]
        );
        assert_eq!(out[0].column(1).as_primitive::<Int32Type>().value(0), 10);
        assert!(out[0].column(1).is_null(1));
        assert_eq!(counters.snapshot().rows_rejected, 1);
        let line = std::fs::read_to_string(&dead).unwrap_or_default();
        assert!(
            line.contains(r#""row":"{\"id\":2,\"code\":\"x\"}""#),
            "{line}"
        );
    }
}
