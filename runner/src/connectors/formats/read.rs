//! Reading the files an FQN selects as one stream, for every file store: the store lists the
//! files and opens them (an [`Opener`]); this decides the format, infers the schema on a
//! blocking thread before the stream is returned, then decodes file after file on another
//! blocking thread into a bounded channel, so neither parsing nor I/O runs on the async
//! runtime and at most a channel's worth of batches is in memory.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use synqx_api::pipeline::FileFormat;
use tokio::sync::mpsc;

use super::infer::{UTC, column_list};
use super::scan::{self, Opener, ReadSpec};
use super::{CsvSettings, Selection, batching, format_of};
use crate::engine::cursor::filter_batch;
use crate::engine::{CursorFilter, FILE_MODIFIED_COLUMN, ReadRequest, Rejects, SchemaStream};
use crate::error::{Context, Error, Result};

/// One selected file (or object).
#[derive(Clone, Debug)]
pub struct Listed {
    /// Path relative to the connection's root, `/`-separated: the name in messages and the
    /// name the opener opens.
    pub name: String,
    pub modified: SystemTime,
    pub size: u64,
}

/// Why a folder read without `format` has no one format; the caller names the asset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("no file has a csv, jsonl or parquet extension")]
    NoneKnown,
    #[error("the files have several formats ({})", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Several(Vec<FileFormat>),
}

/// The one format of the listed files' extensions, for a folder read without `format`.
pub fn common_format(files: &[Listed]) -> std::result::Result<FileFormat, FormatError> {
    let mut found: Vec<FileFormat> = files
        .iter()
        .filter_map(|f| FileFormat::from_path(&f.name))
        .collect();
    found.sort_by_key(|f| f.to_string());
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(FormatError::NoneKnown),
        many => Err(FormatError::Several(many.to_vec())),
    }
}

/// A blocking task that panicked or was cancelled by the runtime shutting down.
pub fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::internal("a file I/O task", e)
}

/// Everything the reading thread needs, decided before the first row.
pub struct Prepared<O> {
    opener: O,
    spec: ReadSpec,
    files: Vec<Listed>,
    /// Columns of the files.
    data_schema: SchemaRef,
    /// `data_schema` plus `_file_modified` when that is the cursor.
    schema: SchemaRef,
    with_modified: bool,
    filter: Option<CursorFilter>,
    batch_rows: usize,
    rejects: Rejects,
}

/// Decides how `files` are read (blocking: it opens files to infer the schema). `explicit`:
/// the FQN named one file, whose extension then does not have to match the format.
/// `location` says where the files are in messages (a directory, a bucket and prefix).
pub fn prepare<O: Opener>(
    opener: O,
    selection: &Selection,
    mut files: Vec<Listed>,
    explicit: bool,
    location: &str,
    request: &ReadRequest,
) -> Result<Prepared<O>> {
    let spec = &request.spec;
    let fqn = spec.asset.fqn.as_str();
    let no_match = |format: Option<FileFormat>| {
        let kind = format.map(|f| format!("{f} ")).unwrap_or_default();
        Error::Config(format!(
            "no {kind}file matches `{}` in {location}",
            selection.pattern()
        ))
    };
    let format = match format_of(spec.format, fqn) {
        Some(format) => format,
        None if files.is_empty() => return Err(no_match(None)),
        None if explicit => {
            return Err(Error::Config(format!(
                "asset {fqn}: set `format` (csv, jsonl or parquet); the extension does not tell"
            )));
        }
        None => common_format(&files).map_err(|why| {
            Error::Config(format!(
                "asset {fqn} in {location}: set `format` (csv, jsonl or parquet); {why}"
            ))
        })?,
    };
    if !explicit {
        files.retain(|f| FileFormat::from_path(&f.name) == Some(format));
    }
    if files.is_empty() {
        return Err(no_match(Some(format)));
    }
    let read_spec = ReadSpec {
        format,
        compression: spec.compression,
        csv: CsvSettings::from_options(spec.csv.as_ref())?,
        overrides: spec.columns.clone(),
    };
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let scanned = scan::infer(&read_spec, &names, &opener, fqn)?;
    let with_modified = spec
        .incremental
        .as_ref()
        .is_some_and(|i| i.cursor == FILE_MODIFIED_COLUMN);
    let schema = if with_modified {
        let mut fields: Vec<Field> = scanned
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(modified_field());
        Arc::new(Schema::new(fields))
    } else {
        scanned.schema.clone()
    };
    if let Some(filter) = &request.filter {
        if schema.index_of(&filter.column).is_err() {
            return Err(Error::Config(format!(
                "incremental cursor column \"{}\" is not in {fqn} (columns: {})",
                filter.column,
                column_list(&schema)
            )));
        }
        if filter.column == FILE_MODIFIED_COLUMN {
            let mut kept = Vec::with_capacity(files.len());
            for file in files {
                if modified_after(file.modified, filter)? {
                    kept.push(file);
                }
            }
            files = kept;
        }
    }
    let row_bytes = scanned.row_bytes + if with_modified { 8.0 } else { 0.0 };
    Ok(Prepared {
        opener,
        spec: read_spec,
        files,
        data_schema: scanned.schema,
        schema,
        with_modified,
        filter: request.filter.clone(),
        batch_rows: batching::rows_per_batch(request.batch_bytes, row_bytes),
        rejects: request.rejects.clone(),
    })
}

/// Batches decoded ahead of the one the step works on, as every source has: the thread
/// decodes the next while this one waits, which keeps both busy; each more would only be
/// memory (a decoded Parquet batch is about a `batchSize`, 2 MiB by default).
const AHEAD: usize = 1;

/// The stream of a prepared read: a blocking thread decodes the files into a bounded
/// channel. Detached: the thread ends at the last file, or when the stream is dropped and
/// its next send fails.
pub fn stream<O: Opener + 'static>(prepared: Prepared<O>) -> SchemaStream {
    let schema = prepared.schema.clone();
    let (tx, rx) = mpsc::channel(AHEAD);
    let producer = tokio::task::spawn_blocking(move || produce(&prepared, &tx));
    SchemaStream::received(schema, rx, producer, "the file reader")
}

fn modified_field() -> Field {
    Field::new(
        FILE_MODIFIED_COLUMN,
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        false,
    )
}

fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn modified_column(time: SystemTime, rows: usize) -> Arc<TimestampMicrosecondArray> {
    Arc::new(TimestampMicrosecondArray::from_value(micros(time), rows).with_timezone(UTC))
}

/// Whether a file changed after the bound, compared exactly as rows are.
fn modified_after(time: SystemTime, filter: &CursorFilter) -> Result<bool> {
    let schema = Arc::new(Schema::new(vec![modified_field()]));
    let batch = RecordBatch::try_new(schema, vec![modified_column(time, 1)])
        .context(|| "comparing modification times".into())?;
    Ok(filter_batch(&batch, filter)?.num_rows() == 1)
}

impl<O> Prepared<O> {
    /// Adds `_file_modified` and applies the cursor filter.
    fn finish(&self, batch: RecordBatch, file: &Listed) -> Result<RecordBatch> {
        let batch = if self.with_modified {
            let mut columns = batch.columns().to_vec();
            columns.push(modified_column(file.modified, batch.num_rows()));
            RecordBatch::try_new(self.schema.clone(), columns)
                .context(|| format!("reading {}", file.name))?
        } else {
            batch
        };
        match &self.filter {
            // Whole files were already kept or skipped by their time.
            Some(filter) if filter.column != FILE_MODIFIED_COLUMN => filter_batch(&batch, filter),
            _ => Ok(batch),
        }
    }
}

fn produce<O: Opener>(p: &Prepared<O>, tx: &mpsc::Sender<Result<RecordBatch>>) {
    for file in &p.files {
        let batches = match scan::open(
            &p.spec,
            &file.name,
            &p.opener,
            p.data_schema.clone(),
            p.batch_rows,
            p.rejects.clone(),
        ) {
            Ok(batches) => batches,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for item in batches {
            let item = match item.and_then(|batch| p.finish(batch, file)) {
                Ok(batch) if batch.num_rows() == 0 => continue,
                other => other,
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    }
}
