//! Appending rows whose columns differ from the files already there, as `schemaEvolution`
//! says: `addColumns` writes the new columns (readers see them as null in older files),
//! `ignore` keeps the existing columns only, `fail` refuses. Also the copies that put an
//! existing single file's content in front of appended rows. Files are read through an
//! [`Opener`] and written to any `Write`, so every file store shares this.

use std::io::{self, Read, Write};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use flate2::write::GzEncoder;
use synqx_api::pipeline::{FileFormat, SchemaEvolution};

use super::convert::quote;
use super::infer::type_name;
use super::scan::Opener;
use super::write::WriteFormat;
use super::{csv, jsonl, parquet, text_input};
use crate::error::{Context, Error, Result};

/// A column of existing files; its type when the file records it (Parquet).
pub type Column = (String, Option<DataType>);

/// The columns of existing files (named as the opener knows them, each with whether it is
/// gzip-compressed) in first-seen order: CSV headers, the keys of each JSONL file's first
/// object, Parquet footers. `None` when the files do not name their columns (CSV without
/// header) or there are none.
pub fn existing_columns<O: Opener>(
    opener: &O,
    files: &[(String, bool)],
    format: &WriteFormat,
) -> Result<Option<Vec<Column>>> {
    if files.is_empty() || (format.format == FileFormat::Csv && !format.csv.header) {
        return Ok(None);
    }
    let mut columns: Vec<Column> = Vec::new();
    for (name, gzip) in files {
        let found: Vec<Column> = match format.format {
            FileFormat::Csv => {
                csv::header(text_input(opener.stream(name)?, *gzip), &format.csv, name)?
                    .into_iter()
                    .map(|c| (c, None))
                    .collect()
            }
            FileFormat::Jsonl => jsonl::first_keys(text_input(opener.stream(name)?, *gzip), name)?
                .into_iter()
                .map(|c| (c, None))
                .collect(),
            FileFormat::Parquet => {
                let (schema, _) = parquet::file_schema(&opener.footer(name)?, name)?;
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), Some(f.data_type().clone())))
                    .collect()
            }
        };
        for (column, data_type) in found {
            if !columns.iter().any(|(c, _)| *c == column) {
                columns.push((column, data_type));
            }
        }
    }
    Ok((!columns.is_empty()).then_some(columns))
}

/// The schema new rows are written with, and whether the existing rows of a single CSV file
/// must be rewritten with the added columns (its header is fixed at the top).
#[derive(Debug)]
pub struct Evolved {
    pub schema: SchemaRef,
    pub widen_old: bool,
}

fn names(list: &[&str]) -> String {
    list.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
}

/// Decides how new rows are written next to `existing` columns. `fixed_order`: the file
/// keeps the existing column order (a CSV appended to in place).
pub fn evolve(
    incoming: &SchemaRef,
    existing: &[Column],
    policy: SchemaEvolution,
    destination: &str,
    fixed_order: bool,
) -> Result<Evolved> {
    let has = |name: &str| existing.iter().any(|(c, _)| c == name);
    let extra: Vec<&str> = incoming
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !has(n))
        .collect();
    let missing: Vec<&str> = existing
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| incoming.field_with_name(c).is_err())
        .collect();
    if policy == SchemaEvolution::Fail && !(extra.is_empty() && missing.is_empty()) {
        let mut parts = Vec::new();
        if !extra.is_empty() {
            parts.push(format!("new columns {}", names(&extra)));
        }
        if !missing.is_empty() {
            parts.push(format!("missing columns {}", names(&missing)));
        }
        return Err(Error::Config(format!(
            "destination {destination}: schemaEvolution is fail and the rows differ from the existing files: {}",
            parts.join("; ")
        )));
    }
    if policy != SchemaEvolution::Ignore {
        for (column, known) in existing {
            let (Some(old), Ok(new)) = (known, incoming.field_with_name(column)) else {
                continue;
            };
            if old != new.data_type() {
                return Err(Error::Config(format!(
                    "destination {destination}: column \"{column}\" is {} in the existing files but {} in the new rows (cast it, or set schemaEvolution: ignore to convert)",
                    type_name(old),
                    type_name(new.data_type())
                )));
            }
        }
    }
    let kept = |(column, known): &Column| {
        let data_type = known.clone().or_else(|| {
            incoming
                .field_with_name(column)
                .ok()
                .map(|f| f.data_type().clone())
        });
        Field::new(column, data_type.unwrap_or(DataType::Utf8), true)
    };
    let fields: Vec<Field> = match policy {
        SchemaEvolution::Ignore => existing.iter().map(kept).collect(),
        _ if fixed_order => existing
            .iter()
            .map(kept)
            .chain(
                incoming
                    .fields()
                    .iter()
                    .filter(|f| !has(f.name()))
                    .map(|f| f.as_ref().clone()),
            )
            .collect(),
        _ => {
            return Ok(Evolved {
                schema: incoming.clone(),
                widen_old: false,
            });
        }
    };
    Ok(Evolved {
        schema: Arc::new(Schema::new(fields)),
        widen_old: fixed_order && policy == SchemaEvolution::AddColumns && !extra.is_empty(),
    })
}

/// A sink that counts what reaches it and remembers the last byte.
struct Tally<W> {
    out: W,
    bytes: u64,
    last: Option<u8>,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        if n > 0 {
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Copies the records of an existing CSV file (`name`, for messages) under a wider header,
/// empty in the added columns, compressed like the original. Returns the bytes written.
pub fn widen_csv(
    input: Box<dyn Read + Send>,
    gzip: bool,
    header: &[String],
    format: &WriteFormat,
    out: &mut dyn Write,
    name: &str,
) -> Result<u64> {
    let reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(format.csv.delimiter)
        .from_reader(text_input(input, gzip));
    let tally = Tally {
        out,
        bytes: 0,
        last: None,
    };
    let done = |e: io::Error| Error::io(format!("writing {name}"), e);
    let tally = if gzip {
        let encoder = GzEncoder::new(tally, flate2::Compression::default());
        rewrite(reader, encoder, header, format, name)?
            .finish()
            .map_err(done)?
    } else {
        rewrite(reader, tally, header, format, name)?
    };
    Ok(tally.bytes)
}

fn rewrite<R: Read, W: Write>(
    mut reader: ::csv::Reader<R>,
    out: W,
    header: &[String],
    format: &WriteFormat,
    name: &str,
) -> Result<W> {
    let mut writer = ::csv::WriterBuilder::new()
        .delimiter(format.csv.delimiter)
        .flexible(true)
        .from_writer(out);
    let failed = |e: ::csv::Error| {
        Error::bad_row(
            format!("rewriting {name} with the added columns"),
            e.to_string(),
        )
    };
    writer.write_record(header).map_err(failed)?;
    let mut record = ::csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(failed)? {
        let padding = header.len().saturating_sub(record.len());
        writer
            .write_record(record.iter().chain(std::iter::repeat_n(&b""[..], padding)))
            .map_err(failed)?;
    }
    writer.flush().context(|| format!("writing {name}"))?;
    writer
        .into_inner()
        .map_err(|e| Error::io(format!("writing {name}"), e.into_error()))
}

/// Copies an existing file (`name`, for messages) byte for byte, ending it with a line
/// break if the last line has none (plain text only: gzip members are appended as they
/// are). Returns the bytes written.
pub fn copy_file(mut input: impl Read, gzip: bool, out: &mut dyn Write, name: &str) -> Result<u64> {
    let mut tally = Tally {
        out,
        bytes: 0,
        last: None,
    };
    io::copy(&mut input, &mut tally).context(|| format!("copying {name}"))?;
    if !gzip && tally.last.is_some_and(|b| b != b'\n') {
        tally
            .write_all(b"\n")
            .context(|| format!("copying {name}"))?;
    }
    Ok(tally.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    fn col(name: &str, t: Option<DataType>) -> Column {
        (name.to_string(), t)
    }

    #[test]
    fn fail_names_new_and_missing_columns() {
        let incoming = schema(&[("id", DataType::Int64), ("x", DataType::Utf8)]);
        let existing = vec![col("id", None), col("y", None)];
        let err = evolve(
            &incoming,
            &existing,
            SchemaEvolution::Fail,
            "raw/orders/",
            false,
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "destination raw/orders/: schemaEvolution is fail and the rows differ from the existing files: new columns \"x\"; missing columns \"y\""
            )
        );
        let same = vec![col("x", None), col("id", None)];
        let ok = evolve(&incoming, &same, SchemaEvolution::Fail, "d", true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            vec!["x", "id"]
        );
        assert!(!ok.widen_old);
    }

    #[test]
    fn ignore_keeps_existing_columns_and_types() {
        let incoming = schema(&[("id", DataType::Int32), ("x", DataType::Utf8)]);
        let existing = vec![
            col("id", Some(DataType::Int64)),
            col("y", Some(DataType::Float64)),
        ];
        let out = evolve(&incoming, &existing, SchemaEvolution::Ignore, "d", false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.schema.as_ref(),
            schema(&[("id", DataType::Int64), ("y", DataType::Float64)]).as_ref()
        );
        let err = evolve(
            &incoming,
            &existing,
            SchemaEvolution::AddColumns,
            "d/",
            false,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("destination d/: column \"id\" is int64 in the existing files but int32 in the new rows"), "{err}");
    }

    #[test]
    fn add_columns_widens_a_fixed_order_file() {
        let incoming = schema(&[("x", DataType::Utf8), ("id", DataType::Int64)]);
        let existing = vec![col("id", None)];
        let folder = evolve(
            &incoming,
            &existing,
            SchemaEvolution::AddColumns,
            "d/",
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(folder.schema, incoming);
        let file = evolve(
            &incoming,
            &existing,
            SchemaEvolution::AddColumns,
            "d.csv",
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            file.schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            vec!["id", "x"]
        );
        assert!(file.widen_old);
    }
}
