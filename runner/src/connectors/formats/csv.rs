//! CSV: header and type inference from a sample, a streaming reader that sends bad rows to
//! the rejects with their line, column and value, and a writer.
//!
//! Records are split by the `csv` crate (quotes, doubled quotes, line breaks inside quotes),
//! collected as text columns and converted with Arrow's vectorised cast; only rows whose value
//! did not convert are looked at one by one. Empty fields are null, as Arrow's CSV reader and
//! writer have it.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder, new_null_array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use csv::ByteRecord;

use super::convert::{convert, nested_as_json, quote};
use super::infer::{Inferred, type_name};
use super::write::{Encoded, FileWriter, count};
use super::{CsvSettings, batching};
use crate::engine::Rejects;
use crate::error::{Context, Error, Result};

fn records<R: Read>(input: R, settings: &CsvSettings) -> csv::Reader<R> {
    // Field counts are checked per record so that a short or long row is one bad row, not
    // the end of the read.
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(settings.delimiter)
        .from_reader(input)
}

fn read_error(e: csv::Error, file: &str) -> Error {
    let position = e
        .position()
        .map(|p| format!(" at line {}", p.line()))
        .unwrap_or_default();
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(format!("reading {file}{position}"), io),
        _ => Error::BadRow(format!("{file}{position}: {message}")),
    }
}

/// The first record of a file: its column names (with a header) or, without one, its first
/// data record, which names the columns `column_1`, `column_2`... `None` for an empty file.
fn first_record<R: Read>(
    reader: &mut csv::Reader<R>,
    settings: &CsvSettings,
    file: &str,
) -> Result<Option<(Vec<String>, Option<ByteRecord>)>> {
    let mut record = ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .map_err(|e| read_error(e, file))?
    {
        return Ok(None);
    }
    if !settings.header {
        let names = (1..=record.len()).map(|i| format!("column_{i}")).collect();
        return Ok(Some((names, Some(record))));
    }
    let mut names = Vec::with_capacity(record.len());
    for (i, raw) in record.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let name = String::from_utf8_lossy(raw).trim().to_string();
        let name = if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name
        };
        if names.contains(&name) {
            return Err(Error::Config(format!(
                "{file}: the header names column \"{name}\" twice"
            )));
        }
        names.push(name);
    }
    Ok(Some((names, None)))
}

/// The column names of a file, from its first line; empty for an empty file.
pub fn header<R: Read>(input: R, settings: &CsvSettings, file: &str) -> Result<Vec<String>> {
    let mut reader = records(input, settings);
    Ok(first_record(&mut reader, settings, file)?
        .map(|(names, _)| names)
        .unwrap_or_default())
}

/// Column types inferred from the first records of one or more files.
#[derive(Default)]
pub struct CsvSampler {
    columns: Vec<(String, Inferred)>,
    rows: usize,
    bytes: u64,
}

impl CsvSampler {
    /// Records sampled so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether every one of `names` is a known column.
    pub fn knows(&self, names: &[String]) -> bool {
        names
            .iter()
            .all(|n| self.columns.iter().any(|(c, _)| c == n))
    }

    /// Reads the header and up to `budget` records of a file. Records with the wrong number
    /// of fields are left to the reader, which rejects them.
    pub fn sample<R: Read>(
        &mut self,
        input: R,
        settings: &CsvSettings,
        file: &str,
        budget: usize,
    ) -> Result<()> {
        let mut reader = records(input, settings);
        let Some((names, first)) = first_record(&mut reader, settings, file)? else {
            return Ok(());
        };
        let slots: Vec<usize> = names
            .iter()
            .map(
                |name| match self.columns.iter().position(|(c, _)| c == name) {
                    Some(i) => i,
                    None => {
                        self.columns.push((name.clone(), Inferred::default()));
                        self.columns.len() - 1
                    }
                },
            )
            .collect();
        let mut record = first.unwrap_or_default();
        let mut pending = !record.is_empty();
        let mut taken = 0;
        while taken < budget {
            if !pending
                && !reader
                    .read_byte_record(&mut record)
                    .map_err(|e| read_error(e, file))?
            {
                break;
            }
            pending = false;
            taken += 1;
            if record.len() != names.len() {
                continue;
            }
            for (slot, value) in slots.iter().zip(record.iter()) {
                if value.is_empty() {
                    continue;
                }
                match std::str::from_utf8(value) {
                    Ok(text) => self.columns[*slot].1.observe(text),
                    Err(_) => self.columns[*slot].1.observe_text(),
                }
            }
        }
        self.rows += taken;
        self.bytes += reader.position().byte();
        Ok(())
    }

    /// The inferred schema (every column nullable) and the estimated bytes of a row; `None`
    /// when no file had even a header.
    pub fn finish(self) -> Option<(Schema, f64)> {
        if self.columns.is_empty() {
            return None;
        }
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect();
        Some((
            Schema::new(fields),
            batching::row_bytes(self.bytes, self.rows.max(1), self.columns.len()),
        ))
    }
}

/// A row that cannot be read, before it goes to the rejects.
struct BadRow {
    line: u64,
    reason: String,
    raw: String,
}

/// Streams one CSV file as batches of `schema`, mapping the file's columns by header name
/// (by position without a header); columns the file lacks are null.
pub struct CsvBatches<R: Read> {
    reader: csv::Reader<R>,
    file: String,
    schema: SchemaRef,
    names: Vec<String>,
    /// For each schema column, its field in this file's records.
    positions: Vec<Option<usize>>,
    pending: Option<ByteRecord>,
    batch_rows: usize,
    delimiter: u8,
    rejects: Rejects,
    done: bool,
}

impl<R: Read> CsvBatches<R> {
    pub fn new(
        input: R,
        settings: &CsvSettings,
        file: &str,
        schema: SchemaRef,
        batch_rows: usize,
        rejects: Rejects,
    ) -> Result<Self> {
        let mut reader = records(input, settings);
        let (names, pending, done) = match first_record(&mut reader, settings, file)? {
            Some((names, first)) => (names, first, false),
            None => (Vec::new(), None, true),
        };
        let positions = schema
            .fields()
            .iter()
            .map(|f| names.iter().position(|n| n == f.name()))
            .collect();
        Ok(Self {
            reader,
            file: file.to_string(),
            schema,
            names,
            positions,
            pending,
            batch_rows: batch_rows.max(1),
            delimiter: settings.delimiter,
            rejects,
            done,
        })
    }

    fn raw(&self, fields: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
        let mut out = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
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

    /// Reads up to `batch_rows` good records. `Ok(None)` at the end of the file.
    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        let width = self.names.len();
        let capacity = self.batch_rows.min(8192);
        let mut text: Vec<StringBuilder> = (0..width)
            .map(|_| StringBuilder::with_capacity(capacity, capacity * 8))
            .collect();
        let mut lines = Vec::with_capacity(capacity);
        let mut bad = Vec::new();
        let mut record = ByteRecord::new();
        while lines.len() < self.batch_rows {
            match self.pending.take() {
                Some(first) => record = first,
                None => {
                    if !self
                        .reader
                        .read_byte_record(&mut record)
                        .map_err(|e| read_error(e, &self.file))?
                    {
                        self.done = true;
                        break;
                    }
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != width {
                let reason = format!("expected {width} fields, found {}", record.len());
                bad.push(BadRow {
                    line,
                    reason,
                    raw: self.raw(record.iter()),
                });
                continue;
            }
            if let Some(column) = record.iter().position(|v| std::str::from_utf8(v).is_err()) {
                let reason = format!(
                    "column \"{}\": value is not valid UTF-8",
                    self.names[column]
                );
                bad.push(BadRow {
                    line,
                    reason,
                    raw: self.raw(record.iter()),
                });
                continue;
            }
            for (builder, value) in text.iter_mut().zip(record.iter()) {
                match std::str::from_utf8(value) {
                    Ok("") | Err(_) => builder.append_null(),
                    Ok(v) => builder.append_value(v),
                }
            }
            lines.push(line);
        }
        if lines.is_empty() && bad.is_empty() {
            return Ok(None);
        }
        let text: Vec<ArrayRef> = text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let mut failed: Vec<Option<usize>> = vec![None; lines.len()];
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, field) in self.schema.fields().iter().enumerate() {
            let Some(p) = self.positions[i] else {
                columns.push(new_null_array(field.data_type(), lines.len()));
                continue;
            };
            let converted = convert(&text[p], field.data_type())
                .context(|| format!("{}: column \"{}\"", self.file, field.name()))?;
            for row in converted.failed {
                failed[row].get_or_insert(i);
            }
            columns.push(converted.array);
        }
        for (row, column) in failed.iter().enumerate() {
            let Some(i) = column else { continue };
            let (field, p) = (self.schema.field(*i), self.positions[*i].unwrap_or(0));
            let value = text[p]
                .as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(row))
                .unwrap_or_default();
            let reason = format!(
                "column \"{}\": cannot parse {} as {}",
                field.name(),
                quote(value),
                type_name(field.data_type())
            );
            let raw = self.raw(text.iter().map(|a| string_at(a, row)));
            bad.push(BadRow {
                line: lines[row],
                reason,
                raw,
            });
        }
        bad.sort_by_key(|b| b.line);
        for b in &bad {
            self.rejects.reject(
                &format!("{}: line {}", self.file, b.line),
                &b.reason,
                Some(&b.raw),
            )?;
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| format!("reading {}", self.file))?;
        if failed.iter().all(Option::is_none) {
            return Ok(Some(batch));
        }
        let keep: BooleanArray = failed.iter().map(|f| Some(f.is_none())).collect();
        filter_record_batch(&batch, &keep)
            .map(Some)
            .context(|| format!("reading {}", self.file))
    }
}

fn string_at(array: &ArrayRef, row: usize) -> String {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .filter(|a| a.is_valid(row))
        .map(|a| a.value(row).to_string())
        .unwrap_or_default()
}

impl<R: Read> Iterator for CsvBatches<R> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut done = self.done;
        let next = super::next_batch(&mut done, || self.read_batch());
        self.done = done;
        next
    }
}

/// Writes batches as CSV. Nested columns are written as JSON text, which CSV can hold.
pub struct CsvWriter {
    writer: Option<arrow::csv::Writer<Encoded>>,
    counter: Arc<AtomicU64>,
    schema: SchemaRef,
    text_schema: SchemaRef,
    header: bool,
    wrote: bool,
    file: String,
}

impl CsvWriter {
    pub fn new(
        schema: SchemaRef,
        sink: Encoded,
        settings: CsvSettings,
        file: &str,
    ) -> Result<Self> {
        let counter = sink.counter();
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
        let writer = arrow::csv::WriterBuilder::new()
            .with_header(settings.header)
            .with_delimiter(settings.delimiter)
            .build(sink);
        Ok(Self {
            writer: Some(writer),
            counter,
            schema,
            text_schema: Arc::new(Schema::new(fields)),
            header: settings.header,
            wrote: false,
            file: file.to_string(),
        })
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
}

impl FileWriter for CsvWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let flat = self.flat(batch)?;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer
            .write(&flat)
            .context(|| format!("writing {}", self.file))?;
        self.wrote = true;
        Ok(())
    }

    fn size(&self) -> u64 {
        count(&self.counter)
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        if !self.wrote && self.header {
            // An empty file still names its columns.
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.write(&empty)?;
        }
        if let Some(writer) = self.writer.take() {
            writer
                .into_inner()
                .finish()
                .context(|| format!("writing {}", self.file))?;
        }
        Ok(count(&self.counter))
    }
}

#[cfg(test)]
mod tests;
