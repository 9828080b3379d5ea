//! Writing batches as CSV, formatted on the step's threads (see `pieces`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use super::text::CsvText;
use crate::connectors::formats::CsvSettings;
use crate::connectors::formats::convert::nested_as_json;
use crate::connectors::formats::pieces::Pieces;
use crate::connectors::formats::write::{Encoded, FileWriter, count};
use crate::error::{Context, Result};

/// Writes batches as CSV. Nested columns are written as JSON text, which CSV can hold.
pub struct CsvWriter {
    sink: Encoded,
    counter: Arc<AtomicU64>,
    schema: SchemaRef,
    text_schema: SchemaRef,
    text: CsvText,
    /// The header line is still to be written (at the first batch, or at the end of a file
    /// without rows).
    header_due: bool,
    pieces: Pieces,
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
            Pieces::per_thread(),
        ))
    }

    /// A writer formatting with `pieces`.
    pub(super) fn with_pieces(
        schema: SchemaRef,
        sink: Encoded,
        settings: CsvSettings,
        file: &str,
        pieces: Pieces,
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
            sink,
            schema,
            text_schema: Arc::new(Schema::new(fields)),
            text: CsvText::new(settings.delimiter),
            header_due: settings.header,
            pieces,
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

    /// The header line: the column names.
    fn write_header(&mut self) -> Result<()> {
        let mut line = Vec::new();
        self.text.names(
            self.text_schema.fields().iter().map(|f| f.name().as_str()),
            &mut line,
        );
        self.sink
            .write_all(&line)
            .context(|| format!("writing {}", self.file))?;
        self.header_due = false;
        Ok(())
    }
}

impl FileWriter for CsvWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.header_due {
            self.write_header()?;
        }
        let flat = self.flat(batch)?;
        let text = &self.text;
        let sink = &mut self.sink;
        self.pieces
            .write(
                &flat,
                |piece, out| text.rows(piece, out),
                |text| sink.write_all(text).map_err(ArrowError::from),
            )
            .context(|| format!("writing {}", self.file))?;
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
        let this = *self;
        this.sink.close(&this.file)
    }
}
