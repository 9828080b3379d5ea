//! Parsing one block of whole CSV records into a batch of the read's schema.
//!
//! Fields are copied straight into one byte buffer per column and each column's bytes are
//! checked as UTF-8 once (not field by field); a block with invalid UTF-8 is parsed again
//! field by field to find the rows to reject. Text columns are then converted to their types
//! with Arrow's vectorised cast; only rows whose value did not convert are looked at one by
//! one. Empty fields are null, as Arrow's CSV reader and writer have it.

use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use super::blocks::Block;
use super::fields::{Records, Span, value};
use crate::connectors::formats::convert::convert;
use crate::connectors::formats::infer::type_name;
use crate::error::{BadRow, Context, Error, Result};

/// How a file's records map onto the schema of the read.
pub struct Layout {
    pub file: String,
    pub schema: SchemaRef,
    /// The file's column names (from its header, or `column_N`).
    pub names: Vec<String>,
    /// For each schema column, its field in this file's records.
    pub positions: Vec<Option<usize>>,
    pub delimiter: u8,
}

/// A row that cannot be read, before it goes to the rejects: its line, and what is wrong
/// (placed within the file by the reader).
pub struct BadLine {
    pub line: u64,
    pub bad: BadRow,
}

/// A parsed block: its good rows, and its bad rows in line order.
pub struct Decoded {
    pub batch: RecordBatch,
    pub bad: Vec<BadLine>,
}

/// One text column being collected.
struct TextColumn {
    values: Vec<u8>,
    offsets: Vec<i32>,
    valid: BooleanBufferBuilder,
}

impl TextColumn {
    fn new(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            values: Vec::with_capacity(bytes),
            offsets,
            valid: BooleanBufferBuilder::new(rows),
        }
    }

    fn push(&mut self, value: &[u8], file: &str) -> Result<()> {
        self.values.extend_from_slice(value);
        let end = i32::try_from(self.values.len()).map_err(|_| {
            Error::bad_row(
                file,
                "a column of one batch holds more than 2 GiB of text; set a smaller batchSize",
            )
        })?;
        self.offsets.push(end);
        self.valid.append(!value.is_empty());
        Ok(())
    }

    /// The column as text; `None` when its bytes are not valid UTF-8.
    fn finish(mut self) -> Option<ArrayRef> {
        let nulls = NullBuffer::new(self.valid.finish());
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        StringArray::try_new(offsets, self.values.into(), nulls)
            .ok()
            .map(|a| Arc::new(a) as ArrayRef)
    }
}

/// A record written back as one CSV line, for the dead-letter file.
pub fn raw_line<'a>(delimiter: u8, fields: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut out = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    let written = out
        .write_record(fields)
        .ok()
        .and_then(|_| out.into_inner().ok())
        .unwrap_or_default();
    String::from_utf8_lossy(&written)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

/// Parses a block: fast (UTF-8 checked per column) and, only when that finds invalid bytes,
/// again field by field.
pub fn decode(block: &Block, layout: &Layout) -> Result<Decoded> {
    match collect(block, layout, false)? {
        Some(decoded) => Ok(decoded),
        None => collect(block, layout, true)?
            .ok_or_else(|| Error::bad_row(&layout.file, "a block is not valid UTF-8")),
    }
}

/// Collects the block's records as text columns. `careful` checks each field's UTF-8 and
/// rejects the rows where it fails; otherwise `None` is returned when a column is not UTF-8.
fn collect(block: &Block, layout: &Layout, careful: bool) -> Result<Option<Decoded>> {
    let width = layout.names.len();
    let input = block.bytes.as_slice();
    let bytes_per_column = input.len() / width.max(1);
    let mut text: Vec<TextColumn> = (0..width)
        .map(|_| TextColumn::new(1024, bytes_per_column))
        .collect();
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    let mut records = Records::new(input, layout.delimiter, block.first_line);
    let (mut spans, mut scratch) = (Vec::with_capacity(width), Vec::new());
    // The record's fields as values, for a row that goes to the rejects.
    let values = |spans: &[Span]| -> Vec<Vec<u8>> {
        let mut scratch = Vec::new();
        spans
            .iter()
            .map(|&s| value(input, s, &mut scratch).to_vec())
            .collect()
    };
    while let Some(line) = records.next_into(&mut spans) {
        if spans.len() != width {
            let fields = values(&spans);
            bad.push(BadLine {
                line,
                bad: BadRow::new(
                    "",
                    format!("expected {width} fields, found {}", spans.len()),
                )
                .row(raw_line(layout.delimiter, fields.iter().map(Vec::as_slice))),
            });
            continue;
        }
        if careful {
            let fields = values(&spans);
            if let Some(column) = fields.iter().position(|v| std::str::from_utf8(v).is_err()) {
                bad.push(BadLine {
                    line,
                    bad: BadRow::new("", "the value is not valid UTF-8")
                        .column(&layout.names[column])
                        .value(String::from_utf8_lossy(&fields[column]))
                        .row(raw_line(layout.delimiter, fields.iter().map(Vec::as_slice))),
                });
                continue;
            }
        }
        for (column, &span) in text.iter_mut().zip(&spans) {
            column.push(value(input, span, &mut scratch), &layout.file)?;
        }
        lines.push(line);
    }
    let mut columns = Vec::with_capacity(width);
    for column in text {
        match column.finish() {
            Some(array) => columns.push(array),
            None => return Ok(None),
        }
    }
    typed(layout, &columns, &lines, bad).map(Some)
}

/// Converts the text columns to the schema's types; rows with a value that does not convert
/// join the bad rows.
fn typed(
    layout: &Layout,
    text: &[ArrayRef],
    lines: &[u64],
    mut bad: Vec<BadLine>,
) -> Result<Decoded> {
    let rows = lines.len();
    let mut failed: Vec<Option<usize>> = vec![None; rows];
    let mut columns = Vec::with_capacity(layout.schema.fields().len());
    for (i, field) in layout.schema.fields().iter().enumerate() {
        let Some(p) = layout.positions[i] else {
            columns.push(new_null_array(field.data_type(), rows));
            continue;
        };
        let converted = convert(&text[p], field.data_type())
            .context(|| format!("{}: column \"{}\"", layout.file, field.name()))?;
        for row in converted.failed {
            failed[row].get_or_insert(i);
        }
        columns.push(converted.array);
    }
    for (row, column) in failed.iter().enumerate() {
        let Some(i) = column else { continue };
        let (field, p) = (layout.schema.field(*i), layout.positions[*i].unwrap_or(0));
        let value = text[p]
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| a.value(row))
            .unwrap_or_default();
        let values: Vec<String> = text.iter().map(|a| string_at(a, row)).collect();
        bad.push(BadLine {
            line: lines[row],
            bad: BadRow::new(
                "",
                format!("cannot parse the value as {}", type_name(field.data_type())),
            )
            .column(field.name())
            .value(value)
            .row(raw_line(
                layout.delimiter,
                values.iter().map(String::as_bytes),
            )),
        });
    }
    bad.sort_by_key(|b| b.line);
    let batch = RecordBatch::try_new(layout.schema.clone(), columns)
        .context(|| format!("reading {}", layout.file))?;
    if failed.iter().all(Option::is_none) {
        return Ok(Decoded { batch, bad });
    }
    let keep: BooleanArray = failed.iter().map(|f| Some(f.is_none())).collect();
    let batch =
        filter_record_batch(&batch, &keep).context(|| format!("reading {}", layout.file))?;
    Ok(Decoded { batch, bad })
}

fn string_at(array: &ArrayRef, row: usize) -> String {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .filter(|a| a.is_valid(row))
        .map(|a| a.value(row).to_string())
        .unwrap_or_default()
}
