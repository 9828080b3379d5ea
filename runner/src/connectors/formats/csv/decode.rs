//! Parsing one block of whole CSV records into a batch of the read's schema.
//!
//! The block is checked as UTF-8 once. Numbers and dates are parsed from the field's text as
//! they are collected, with the parser Arrow's cast uses (`parsed`). Other fields are copied
//! straight into one byte buffer per column, then converted with Arrow's vectorised cast;
//! fields of no column of the read are not collected. A block with invalid UTF-8 is parsed
//! again field by field to find the rows to reject; a rejected row is read again from the
//! block for its line. Empty fields are null, as Arrow's
//! CSV reader and writer have it.

use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use super::blocks::Block;
use super::fields::{Records, Span, value};
use super::parsed::{ParsedColumn, parsed_column};
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

/// Parses a block: fast (the block's UTF-8 checked at once) and, only when that finds invalid
/// bytes, again field by field.
pub fn decode(block: &Block, layout: &Layout) -> Result<Decoded> {
    match collect(block, layout, false)? {
        Some(decoded) => Ok(decoded),
        None => collect(block, layout, true)?
            .ok_or_else(|| Error::bad_row(&layout.file, "a block is not valid UTF-8")),
    }
}

/// How one field of the file's records is collected.
enum Collector {
    /// Not in the read's schema: a rejected row is read again from the block for its line.
    Skip,
    /// As text, cast to the schema's type afterwards.
    Text(TextColumn),
    /// Parsed into the schema's type as it is collected.
    Parsed(Box<dyn ParsedColumn>),
}

/// A collected field, as a column.
enum Collected {
    Skip,
    Text(ArrayRef),
    Parsed(ArrayRef, Vec<usize>),
}

/// The collector of each field of the file's records, by the type of the schema column that
/// reads it. Columns find their field by name and a read's column names are distinct, so no
/// two columns read one field.
fn collectors(layout: &Layout, rows: usize, bytes_per_column: usize) -> Vec<Collector> {
    (0..layout.names.len())
        .map(|p| {
            let Some(i) = layout.positions.iter().position(|&q| q == Some(p)) else {
                return Collector::Skip;
            };
            match parsed_column(layout.schema.field(i).data_type(), rows) {
                Some(parsed) => Collector::Parsed(parsed),
                None => Collector::Text(TextColumn::new(rows, bytes_per_column)),
            }
        })
        .collect()
}

/// A record's fields (`spans` of `input`) as values, for a row that goes to the rejects.
fn field_values(input: &[u8], spans: &[Span]) -> Vec<Vec<u8>> {
    let mut scratch = Vec::new();
    spans
        .iter()
        .map(|&s| value(input, s, &mut scratch).to_vec())
        .collect()
}

/// The fields of the record that starts at `start` in `input`, as values.
fn record_at(input: &[u8], start: usize, delimiter: u8) -> Vec<Vec<u8>> {
    let input = input.get(start..).unwrap_or_default();
    let mut spans = Vec::new();
    Records::new(input, delimiter, 0).next_into(&mut spans);
    field_values(input, &spans)
}

/// Collects the block's records into columns. `careful` checks each field's UTF-8 and rejects
/// the rows where it fails; otherwise `None` is returned when the block is not UTF-8.
fn collect(block: &Block, layout: &Layout, careful: bool) -> Result<Option<Decoded>> {
    let width = layout.names.len();
    let input = block.bytes.as_slice();
    let rows = block.records.max(1);
    let mut columns = collectors(layout, rows, input.len() / width.max(1));
    // The line and the start in the block of every row kept.
    let (mut lines, mut starts) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut bad = Vec::new();
    // Unless rows are checked one by one, the whole block is checked as UTF-8 at once: its
    // fields, cut at ASCII delimiters, quotes and line ends, are then text too. A block that
    // is not is read again carefully, whichever field (read or not) holds the bad bytes.
    let text = if careful {
        None
    } else {
        match std::str::from_utf8(input) {
            Ok(text) => Some(text),
            Err(_) => return Ok(None),
        }
    };
    let mut records = Records::new(input, layout.delimiter, block.first_line);
    let (mut spans, mut scratch) = (Vec::with_capacity(width), Vec::new());
    loop {
        let start = records.offset();
        let Some(line) = records.next_into(&mut spans) else {
            break;
        };
        if spans.len() != width {
            let fields = field_values(input, &spans);
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
            let fields = field_values(input, &spans);
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
        for (column, &span) in columns.iter_mut().zip(&spans) {
            match column {
                Collector::Skip => {}
                Collector::Text(text) => {
                    text.push(value(input, span, &mut scratch), &layout.file)?
                }
                Collector::Parsed(parsed) => {
                    let field = match text {
                        Some(text) if span.plain => text.get(span.start..span.end),
                        _ => std::str::from_utf8(value(input, span, &mut scratch)).ok(),
                    };
                    match field {
                        Some(field) => parsed.push(field),
                        None => return Ok(None),
                    }
                }
            }
        }
        lines.push(line);
        starts.push(start);
    }
    let mut collected = Vec::with_capacity(width);
    for column in columns {
        collected.push(match column {
            Collector::Skip => Collected::Skip,
            Collector::Text(text) => match text.finish() {
                Some(array) => Collected::Text(array),
                None => return Ok(None),
            },
            Collector::Parsed(parsed) => {
                let (array, failed) = parsed
                    .finish()
                    .context(|| format!("reading {}", layout.file))?;
                Collected::Parsed(array, failed)
            }
        });
    }
    typed(layout, input, collected, &lines, &starts, bad).map(Some)
}

/// Converts the text columns to the schema's types; rows with a value that does not convert
/// (or did not parse) join the bad rows.
fn typed(
    layout: &Layout,
    input: &[u8],
    collected: Vec<Collected>,
    lines: &[u64],
    starts: &[usize],
    mut bad: Vec<BadLine>,
) -> Result<Decoded> {
    let rows = lines.len();
    let mut failed: Vec<Option<usize>> = vec![None; rows];
    let mut columns = Vec::with_capacity(layout.schema.fields().len());
    for (i, field) in layout.schema.fields().iter().enumerate() {
        let here = || format!("{}: column \"{}\"", layout.file, field.name());
        let (array, rejected) = match layout.positions[i].and_then(|p| collected.get(p)) {
            None => {
                columns.push(new_null_array(field.data_type(), rows));
                continue;
            }
            Some(Collected::Text(text)) => {
                let converted = convert(text, field.data_type()).context(here)?;
                (converted.array, converted.failed)
            }
            Some(Collected::Parsed(array, rejected)) => (array.clone(), rejected.clone()),
            Some(Collected::Skip) => {
                return Err(Error::Defect(format!("{}: not collected", here())));
            }
        };
        for row in rejected {
            failed[row].get_or_insert(i);
        }
        columns.push(array);
    }
    for (row, column) in failed.iter().enumerate() {
        let Some(i) = column else { continue };
        let field = layout.schema.field(*i);
        let fields = record_at(input, starts[row], layout.delimiter);
        let value = layout.positions[*i]
            .and_then(|p| fields.get(p))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        bad.push(BadLine {
            line: lines[row],
            bad: BadRow::new(
                "",
                format!("cannot parse the value as {}", type_name(field.data_type())),
            )
            .column(field.name())
            .value(value)
            .row(raw_line(layout.delimiter, fields.iter().map(Vec::as_slice))),
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
