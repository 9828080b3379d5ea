//! Writing batches as CSV, formatted on the step's threads: each batch is cut into pieces of
//! rows, a round of pieces (one per thread) is formatted into buffers at once, and the
//! buffers are written in order. Formatting values as text is most of the cost of writing
//! CSV, and one thread formatting while another decodes left a core idle. The buffers are
//! kept from one round to the next, so the text in memory is `threads` pieces, not a batch.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::connectors::formats::CsvSettings;
use crate::connectors::formats::convert::nested_as_json;
use crate::connectors::formats::write::{Encoded, FileWriter, count};
use crate::engine::threads;
use crate::error::{Context, Result};

/// Arrow bytes of a piece: about a megabyte of text each.
const PIECE_BYTES: usize = 1024 * 1024;

/// Writes batches as CSV. Nested columns are written as JSON text, which CSV can hold.
pub struct CsvWriter {
    sink: Option<Encoded>,
    counter: Arc<AtomicU64>,
    schema: SchemaRef,
    text_schema: SchemaRef,
    delimiter: u8,
    /// The header line is still to be written (at the first batch, or at the end of a file
    /// without rows).
    header_due: bool,
    /// One text buffer per thread, reused for every round.
    buffers: Vec<Vec<u8>>,
    piece_bytes: usize,
    file: String,
}

impl CsvWriter {
    pub fn new(
        schema: SchemaRef,
        sink: Encoded,
        settings: CsvSettings,
        file: &str,
    ) -> Result<Self> {
        Ok(Self::with_pieces(
            schema,
            sink,
            settings,
            file,
            threads::count(),
            PIECE_BYTES,
        ))
    }

    /// A writer formatting on `threads` threads, pieces of about `piece_bytes` Arrow bytes.
    pub(super) fn with_pieces(
        schema: SchemaRef,
        sink: Encoded,
        settings: CsvSettings,
        file: &str,
        threads: usize,
        piece_bytes: usize,
    ) -> Self {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type().is_nested() {
                    f.as_ref().clone().with_data_type(DataType::Utf8)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        Self {
            counter: sink.counter(),
            sink: Some(sink),
            schema,
            text_schema: Arc::new(Schema::new(fields)),
            delimiter: settings.delimiter,
            header_due: settings.header,
            buffers: (0..threads.max(1)).map(|_| Vec::new()).collect(),
            piece_bytes: piece_bytes.max(1),
            file: file.to_string(),
        }
    }

    fn flat(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.text_schema == self.schema {
            return Ok(batch.clone());
        }
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                if field.data_type().is_nested() {
                    nested_as_json(field, column)
                } else {
                    Ok(column.clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.text_schema.clone(), columns)
            .context(|| format!("writing {}", self.file))
    }

    /// The header line, as Arrow's CSV writer spells it.
    fn write_header(&mut self) -> Result<()> {
        let mut line = Vec::new();
        format(
            &RecordBatch::new_empty(self.text_schema.clone()),
            self.delimiter,
            true,
            &mut line,
        )
        .and_then(|()| self.put(&line))
        .context(|| format!("writing {}", self.file))?;
        self.header_due = false;
        Ok(())
    }

    fn put(&mut self, text: &[u8]) -> std::result::Result<(), arrow::error::ArrowError> {
        match self.sink.as_mut() {
            Some(sink) => sink.write_all(text).map_err(Into::into),
            None => Ok(()),
        }
    }
}

/// Formats `batch` as CSV into `out`, after what it holds.
fn format(
    batch: &RecordBatch,
    delimiter: u8,
    header: bool,
    out: &mut Vec<u8>,
) -> std::result::Result<(), arrow::error::ArrowError> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .with_delimiter(delimiter)
        .build(out);
    writer.write(batch)
}

impl FileWriter for CsvWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.header_due {
            self.write_header()?;
        }
        let flat = self.flat(batch)?;
        let rows = flat.num_rows();
        let pieces = (flat.get_array_memory_size() / self.piece_bytes).max(self.buffers.len());
        let piece_rows = rows.div_ceil(pieces).max(1);
        let delimiter = self.delimiter;
        let mut start = 0;
        while start < rows {
            let mut round = Vec::with_capacity(self.buffers.len());
            for buffer in self.buffers.iter_mut() {
                if start >= rows {
                    break;
                }
                let len = piece_rows.min(rows - start);
                buffer.clear();
                round.push((flat.slice(start, len), buffer));
                start += len;
            }
            let threads = round.len();
            let formatted = threads::map(round, threads, |(piece, buffer)| {
                format(&piece, delimiter, false, buffer)
            });
            for (i, done) in formatted.into_iter().enumerate() {
                done.context(|| format!("writing {}", self.file))?;
                let text = std::mem::take(&mut self.buffers[i]);
                let put = self.put(&text);
                self.buffers[i] = text;
                put.context(|| format!("writing {}", self.file))?;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        count(&self.counter)
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        if self.header_due {
            // An empty file still names its columns.
            self.write_header()?;
        }
        match self.sink.take() {
            Some(sink) => sink.close(&self.file),
            None => Ok(count(&self.counter)),
        }
    }
}
