//! CSV: header and type inference from a sample, a streaming reader (`read`: blocks of whole
//! records cut by `split` and `blocks`, parsed in parallel by `decode`) that sends bad rows to
//! the rejects with their line, column and value, and a writer.

mod blocks;
mod decode;
mod fields;
mod parsed;
mod read;
mod split;
mod text;
mod write;

pub use read::CsvBatches;
pub use write::CsvWriter;

use std::io::Read;

use arrow::datatypes::{Field, Schema};
use csv::ByteRecord;

use super::infer::Inferred;
use super::{CsvSettings, batching};
use crate::error::{Error, Result};

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
        _ => Error::bad_row(format!("{file}{position}"), message),
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

#[cfg(test)]
mod tests;
