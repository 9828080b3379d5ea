//! Rejected rows kept for good. A step's rejected file lives where the step runs, and a step's
//! pod takes it along when it goes; a step with `sync.rejects` appends that file's rows, once
//! the step has ended, to a destination of the user's choosing (a folder or bucket prefix as
//! JSON lines, or a table), through the same sinks its data goes through.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use synqx_api::pipeline::Destination;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use super::{SchemaStream, Sink, WriteRequest};
use crate::error::{Error, Result};

/// Rows of a batch of kept rejects: few, and each small next to a batch of data.
const ROWS_PER_BATCH: usize = 1024;

/// The fields of a rejected file's line, in the order they are kept.
const FIELDS: [&str; 5] = ["location", "column", "problem", "value", "row"];

/// Which rows of which step the rejected file holds: the rows after `from` bytes (a retry of
/// the same run appends to the file its earlier attempts wrote, and those rows are kept
/// already).
pub struct RejectedRows<'a> {
    pub file: &'a Path,
    pub from: u64,
    pub run: &'a str,
    pub step: &'a str,
}

/// The columns kept: the run and step, then what the rejected file says of each row.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("run", DataType::Utf8, false),
        Field::new("step", DataType::Utf8, false),
    ];
    fields.extend(FIELDS.map(|name| Field::new(name, DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

/// Appends the rows to `target` through `sink`; returns how many were kept (0 when the file
/// has none past `from`, and then the destination is not touched).
pub async fn keep(rows: &RejectedRows<'_>, target: &Destination, sink: &dyn Sink) -> Result<u64> {
    let Some(lines) = open_after(rows.file, rows.from).await? else {
        return Ok(0);
    };
    let mut reader = Reader {
        lines,
        file: rows.file.display().to_string(),
        line: 0,
        run: rows.run.to_string(),
        step: rows.step.to_string(),
    };
    let Some(first) = reader.next_batch().await? else {
        return Ok(0);
    };
    // After an error the stream ends: the sink fails the write on it.
    let rest = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let input = SchemaStream::new(
        schema(),
        futures::stream::once(async move { Ok(first) }).chain(rest),
    );
    let outcome = sink.write(&WriteRequest::to(target.clone()), input).await?;
    Ok(outcome.rows)
}

type Lines = tokio::io::Lines<BufReader<tokio::fs::File>>;

/// The lines of `file` after `from` bytes; `None` when there is no file.
async fn open_after(file: &Path, from: u64) -> Result<Option<Lines>> {
    let mut f = match tokio::fs::File::open(file).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", file.display()), e)),
    };
    f.seek(std::io::SeekFrom::Start(from))
        .await
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    Ok(Some(BufReader::new(f).lines()))
}

/// Reads a rejected file into batches of [`schema`].
struct Reader {
    lines: Lines,
    file: String,
    /// Lines read so far (from where reading started).
    line: u64,
    run: String,
    step: String,
}

impl Reader {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut columns: Vec<StringBuilder> =
            (0..FIELDS.len()).map(|_| StringBuilder::new()).collect();
        let mut rows = 0;
        while rows < ROWS_PER_BATCH {
            let at = || {
                format!(
                    "reading the rejected file {}, line {}",
                    self.file,
                    self.line + 1
                )
            };
            let Some(line) = self
                .lines
                .next_line()
                .await
                .map_err(|e| Error::io(at(), e))?
            else {
                break;
            };
            let record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
                .map_err(|e| {
                    Error::io(
                        at(),
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                })?;
            self.line += 1;
            for (builder, name) in columns.iter_mut().zip(FIELDS) {
                match record.get(name) {
                    Some(serde_json::Value::String(text)) => builder.append_value(text),
                    Some(serde_json::Value::Null) | None => builder.append_null(),
                    Some(other) => builder.append_value(other.to_string()),
                }
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let same = |text: &str| -> ArrayRef {
            Arc::new(arrow::array::StringArray::from(vec![text; rows]))
        };
        let mut arrays = vec![same(&self.run), same(&self.step)];
        arrays.extend(columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        RecordBatch::try_new(schema(), arrays)
            .map(Some)
            .map_err(|e| Error::arrow(format!("keeping the rejected rows of {}", self.file), e))
    }
}
