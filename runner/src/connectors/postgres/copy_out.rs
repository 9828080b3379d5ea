//! Decodes `COPY … TO STDOUT (FORMAT binary)` into Arrow record batches.
//!
//! The stream is an 11-byte signature, a 32-bit flags word and a header extension, then one
//! tuple per row (a 16-bit field count, then each field as a 32-bit length, -1 for NULL, and
//! its bytes) and a field count of -1 as trailer. PostgreSQL sends one CopyData message per row,
//! so [`CopyOutDecoder::push`] decodes straight from the chunk it is given and copies bytes
//! only when a row is split across chunks.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};

use super::codec_decode::{Bad, Decoder, Unfinished};
use super::types::{PgType, arrow_field};
use crate::error::{BadRow, Error, Result};

/// The fixed start of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

struct Column {
    name: String,
    pg_type: PgType,
    decoder: Decoder,
}

/// Decodes a binary COPY stream of known columns into record batches of about `batch_bytes`.
pub struct CopyOutDecoder {
    columns: Vec<Column>,
    schema: SchemaRef,
    /// Arrow bytes of a row's fixed-width values, and which columns add their length to it.
    row_width: usize,
    variable: Vec<bool>,
    batch_bytes: usize,
    context: String,
    state: State,
    /// The unconsumed start of a row (or header) split across chunks.
    pending: Vec<u8>,
    /// How many bytes `pending` must hold before parsing it can make progress.
    need: usize,
    rows: u64,
    batch_rows: usize,
    batch_size: usize,
}

impl CopyOutDecoder {
    /// `columns` in COPY order; each must have an `arrow_type` (Err(Error::Config) naming the
    /// column otherwise). `context` starts every message, e.g. `Connection "wh", table
    /// "public.orders"`.
    pub fn new(columns: &[(String, PgType)], batch_bytes: usize, context: String) -> Result<Self> {
        let mut fields = Vec::with_capacity(columns.len());
        let mut decoders = Vec::with_capacity(columns.len());
        for (name, t) in columns {
            let unmapped = || {
                Error::Config(format!(
                    "{context}: column \"{name}\" has type {} which binary COPY cannot read into Arrow; select it as text (\"{name}\"::text)",
                    t.name
                ))
            };
            let field = arrow_field(name, t, true).ok_or_else(unmapped)?;
            let decoder =
                Decoder::new(t, field.data_type(), 1024, 16 * 1024).ok_or_else(unmapped)?;
            fields.push(field);
            decoders.push(Column {
                name: name.clone(),
                pg_type: t.clone(),
                decoder,
            });
        }
        let row_width = decoders.iter().map(|c| c.decoder.width()).sum();
        let variable = decoders.iter().map(|c| c.decoder.variable()).collect();
        Ok(Self {
            columns: decoders,
            schema: Arc::new(Schema::new(fields)),
            row_width,
            variable,
            batch_bytes: batch_bytes.max(1),
            context,
            state: State::Header,
            pending: Vec::new(),
            need: 0,
            rows: 0,
            batch_rows: 0,
            batch_size: 0,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Feeds the next chunk of the stream, split anywhere; pushes each completed batch (cut
    /// near `batch_bytes` of Arrow memory) to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.pending.is_empty() {
            let used = self.consume(chunk, out)?;
            if used < chunk.len() {
                self.pending.extend_from_slice(&chunk[used..]);
            }
            return Ok(());
        }
        self.pending.extend_from_slice(chunk);
        if self.pending.len() < self.need {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let used = self.consume(&pending, out)?;
        self.pending = pending;
        self.pending.drain(..used);
        Ok(())
    }

    /// At the end of the stream: errors when the trailer or a row is incomplete; returns the
    /// last partial batch, if any rows are left.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let problem = match self.state {
            State::Header => Some("ended before the binary COPY header was complete"),
            State::Rows if self.pending.is_empty() => Some("ended without the binary COPY trailer"),
            State::Rows => Some("ended in the middle of a row"),
            State::Done => None,
        };
        if let Some(problem) = problem {
            return Err(self.protocol(format!(
                "the COPY stream {problem} after {} rows; the connection was probably interrupted, run the step again",
                self.rows()
            )));
        }
        if self.batch_rows == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn protocol(&self, message: String) -> Error {
        Error::protocol(self.context.clone(), message)
    }

    /// Decodes what `data` holds completely; returns how many bytes it used and sets `need`
    /// to the bytes the unused rest must grow to before another attempt.
    fn consume(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize> {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            match self.state {
                State::Header => {
                    if rest.len() < SIGNATURE.len() + 8 {
                        if !SIGNATURE.starts_with(&rest[..rest.len().min(SIGNATURE.len())]) {
                            return Err(self.bad_signature(rest));
                        }
                        self.need = SIGNATURE.len() + 8;
                        return Ok(pos);
                    }
                    if &rest[..SIGNATURE.len()] != SIGNATURE {
                        return Err(self.bad_signature(rest));
                    }
                    let ext = be_i32(rest, 15);
                    let Ok(ext) = usize::try_from(ext) else {
                        return Err(self.protocol(format!(
                            "the COPY header announces a header extension of {ext} bytes"
                        )));
                    };
                    let total = SIGNATURE.len() + 8 + ext;
                    if rest.len() < total {
                        self.need = total;
                        return Ok(pos);
                    }
                    pos += total;
                    self.state = State::Rows;
                }
                State::Rows => {
                    if rest.len() < 2 {
                        self.need = 2;
                        return Ok(pos);
                    }
                    let fields = i16::from_be_bytes([rest[0], rest[1]]);
                    if fields == -1 {
                        pos += 2;
                        self.state = State::Done;
                        continue;
                    }
                    if fields as usize != self.columns.len() || fields < 0 {
                        return Err(self.protocol(format!(
                            "row {} has {fields} fields, but the COPY lists {} columns",
                            self.rows + 1,
                            self.columns.len()
                        )));
                    }
                    match self.row_length(rest)? {
                        Ok(len) => {
                            self.decode_row(&rest[..len])?;
                            pos += len;
                            if self.batch_size >= self.batch_bytes {
                                out.push(self.flush()?);
                            }
                        }
                        Err(need) => {
                            self.need = need;
                            return Ok(pos);
                        }
                    }
                }
                State::Done => {
                    if !rest.is_empty() {
                        return Err(
                            self.protocol(format!("{} bytes follow the COPY trailer", rest.len()))
                        );
                    }
                    self.need = 0;
                    return Ok(pos);
                }
            }
        }
    }

    fn bad_signature(&self, rest: &[u8]) -> Error {
        self.protocol(format!(
            "the COPY stream does not start with the binary COPY signature ({}); the statement must say FORMAT binary",
            super::codec_decode::shown_bytes(&rest[..rest.len().min(SIGNATURE.len())])
        ))
    }

    /// The byte length of the complete row at the start of `rest`, or Err(bytes needed) when
    /// it is cut off.
    fn row_length(&self, rest: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let mut at = 2;
        for _ in 0..self.columns.len() {
            if rest.len() < at + 4 {
                return Ok(Err(at + 4));
            }
            let len = be_i32(rest, at);
            at += 4;
            if len > 0 {
                at += len as usize;
            } else if len < -1 {
                return Err(
                    self.protocol(format!("row {} has a field of length {len}", self.rows + 1))
                );
            }
        }
        Ok(if rest.len() < at { Err(at) } else { Ok(at) })
    }

    fn decode_row(&mut self, row: &[u8]) -> Result<()> {
        let mut at = 2;
        let mut size = self.row_width;
        for (c, column) in self.columns.iter_mut().enumerate() {
            let len = be_i32(row, at);
            at += 4;
            if len < 0 {
                column.decoder.append_null();
                continue;
            }
            let end = at + len as usize;
            if let Err(bad) = column.decoder.append(&row[at..end]) {
                return Err(bad_row(&self.context, self.rows + 1, column, bad));
            }
            if self.variable[c] {
                size += len as usize;
            }
            at = end;
        }
        self.rows += 1;
        self.batch_rows += 1;
        self.batch_size += size;
        Ok(())
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        let first_row = self.rows - self.batch_rows as u64 + 1;
        // Text is checked as the batch is finished, column by column: of the bad values
        // found, the first row's is the one reported.
        let mut first_bad: Option<(usize, usize, Bad)> = None;
        for (c, (column, field)) in self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .enumerate()
        {
            let array = match column.decoder.finish() {
                Ok(array) => array,
                Err(Unfinished::Bad { row, bad }) => {
                    if first_bad.as_ref().is_none_or(|(first, ..)| row < *first) {
                        first_bad = Some((row, c, bad));
                    }
                    continue;
                }
                Err(Unfinished::Arrow(e)) => {
                    let at = format!("{}: column \"{}\"", self.context, column.name);
                    return Err(Error::arrow(at, e));
                }
            };
            // The next batch will be about as large: size its builders up front rather than
            // growing them by doubling, which copies every value several times.
            let data = array.to_data();
            let data_bytes = data.buffers().get(1).map_or(0, |b| b.len());
            if let Some(next) =
                Decoder::new(&column.pg_type, field.data_type(), array.len(), data_bytes)
            {
                column.decoder = next;
            }
            arrays.push(array);
        }
        if let Some((row, c, bad)) = first_bad {
            let column = &self.columns[c];
            return Err(bad_row(&self.context, first_row + row as u64, column, bad));
        }
        self.batch_rows = 0;
        self.batch_size = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::arrow(self.context.clone(), e))
    }
}

fn bad_row(context: &str, row: u64, column: &Column, bad: Bad) -> Error {
    BadRow::new(
        format!("{context}, row {row}"),
        format!(
            "cannot read the value as {}: {}",
            column.pg_type.name, bad.reason
        ),
    )
    .column(&column.name)
    .value(bad.value)
    .into()
}

/// A big-endian i32 at `at`; callers have checked the length.
fn be_i32(v: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]])
}
