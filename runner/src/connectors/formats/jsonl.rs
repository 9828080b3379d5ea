//! JSON Lines: schema inference (nested objects become structs, arrays lists, strings that
//! are all dates or timestamps become those types), a streaming reader that sends bad lines
//! to the rejects, and a writer.
//!
//! A batch of lines is decoded by Arrow's JSON decoder in one go. When that fails, the batch
//! is split in halves until the failing lines are isolated, so a few bad lines cost a few
//! extra decodes rather than decoding the batch line by line.

use std::fmt;
use std::io::{BufRead, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, infer_json_schema_from_iterator};
use arrow::json::writer::LineDelimited;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::batching;
use super::infer::{Inferred, settle, type_name};
use super::pieces::Pieces;
use super::write::{Encoded, FileWriter, count};
use crate::engine::Rejects;
use crate::error::{BadRow, Context, Error, Result};

/// The keys of JSON objects in the order written, nested objects included (`serde_json`'s
/// `Map` sorts keys, which would reorder columns). Arrays contribute the keys of their
/// elements.
#[derive(Debug, Default, PartialEq)]
struct KeyTree(Vec<(String, KeyTree)>);

impl KeyTree {
    fn merge(&mut self, other: KeyTree) {
        for (key, child) in other.0 {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                Some((_, mine)) => mine.merge(child),
                None => self.0.push((key, child)),
            }
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    fn child(&self, key: &str) -> Option<&KeyTree> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }
}

impl<'de> Deserialize<'de> for KeyTree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = KeyTree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<KeyTree, A::Error> {
                let mut tree = KeyTree::default();
                while let Some(key) = map.next_key::<String>()? {
                    let child = map.next_value::<KeyTree>()?;
                    tree.merge(KeyTree(vec![(key, child)]));
                }
                Ok(tree)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<KeyTree, A::Error> {
                let mut tree = KeyTree::default();
                while let Some(element) = seq.next_element::<KeyTree>()? {
                    tree.merge(element);
                }
                Ok(tree)
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
            fn visit_unit<E>(self) -> std::result::Result<KeyTree, E> {
                Ok(KeyTree::default())
            }
        }
        deserializer.deserialize_any(Keys)
    }
}

/// Puts struct fields in the order their keys were first written.
fn reorder(data_type: &DataType, keys: &KeyTree) -> DataType {
    match data_type {
        DataType::Struct(fields) => {
            let mut ordered: Vec<Field> = Vec::with_capacity(fields.len());
            for name in keys.names() {
                if let Some(f) = fields.iter().find(|f| f.name() == name) {
                    let inner = keys
                        .child(name)
                        .map_or_else(|| f.data_type().clone(), |k| reorder(f.data_type(), k));
                    ordered.push(f.as_ref().clone().with_data_type(inner));
                }
            }
            ordered.extend(
                fields
                    .iter()
                    .filter(|f| keys.child(f.name()).is_none())
                    .map(|f| f.as_ref().clone()),
            );
            DataType::Struct(Fields::from(ordered))
        }
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(reorder(item.data_type(), keys)),
        )),
        other => other.clone(),
    }
}

/// Reads the next non-blank line into `buf` (cleared first). Returns how many physical lines
/// were consumed, 0 at the end of the input.
fn next_line(input: &mut dyn BufRead, buf: &mut Vec<u8>, file: &str) -> Result<u64> {
    let mut consumed = 0;
    loop {
        buf.clear();
        if input
            .read_until(b'\n', buf)
            .context(|| format!("reading {file}"))?
            == 0
        {
            return Ok(0);
        }
        consumed += 1;
        if !buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(consumed);
        }
    }
}

/// The keys of the first object of a file (empty when it has none).
pub fn first_keys(mut input: impl BufRead, file: &str) -> Result<Vec<String>> {
    let mut line = Vec::new();
    while next_line(&mut input, &mut line, file)? > 0 {
        if let Ok(Value::Object(_)) = serde_json::from_slice::<Value>(&line)
            && let Ok(keys) = serde_json::from_slice::<KeyTree>(&line)
        {
            return Ok(keys.names().map(str::to_string).collect());
        }
    }
    Ok(Vec::new())
}

/// Column types inferred from the first objects of one or more files.
#[derive(Default)]
pub struct JsonlSampler {
    values: Vec<Value>,
    keys: KeyTree,
    bytes: u64,
}

impl JsonlSampler {
    /// Objects sampled so far.
    pub fn rows(&self) -> usize {
        self.values.len()
    }

    /// Whether every one of `keys` is a known column.
    pub fn knows(&self, keys: &[String]) -> bool {
        keys.iter().all(|k| self.keys.child(k).is_some())
    }

    /// Reads up to `budget` lines of a file. Lines that are not JSON objects are left to the
    /// reader, which rejects them.
    pub fn sample(&mut self, mut input: impl BufRead, file: &str, budget: usize) -> Result<()> {
        let mut line = Vec::new();
        let mut taken = 0;
        while taken < budget && next_line(&mut input, &mut line, file)? > 0 {
            taken += 1;
            self.bytes += line.len() as u64;
            let (Ok(value @ Value::Object(_)), Ok(keys)) = (
                serde_json::from_slice::<Value>(&line),
                serde_json::from_slice::<KeyTree>(&line),
            ) else {
                continue;
            };
            self.keys.merge(keys);
            self.values.push(value);
        }
        Ok(())
    }

    /// The inferred schema, columns in the order first written, and the estimated bytes of a
    /// row; `None` when no object was seen. `files` names the sampled files for messages.
    pub fn finish(self, files: &str) -> Result<Option<(Schema, f64)>> {
        if self.values.is_empty() {
            return Ok(None);
        }
        let inferred = infer_json_schema_from_iterator(self.values.iter().map(Ok))
            .map_err(|e| Error::Config(format!("{files}: cannot infer column types: {e}")))?;
        let mut fields = Vec::with_capacity(self.keys.0.len());
        for (key, nested) in &self.keys.0 {
            let Ok(field) = inferred.field_with_name(key) else {
                continue;
            };
            let values: Vec<&Value> = self.values.iter().filter_map(|v| v.get(key)).collect();
            let data_type = settle(&reorder(&refine(field.data_type(), &values), nested));
            fields.push(Field::new(key, data_type, true));
        }
        let row_bytes = batching::row_bytes(self.bytes, self.values.len(), fields.len());
        Ok(Some((Schema::new(fields), row_bytes)))
    }
}

/// Refines text leaves whose sampled strings are all dates or timestamps.
fn refine(data_type: &DataType, values: &[&Value]) -> DataType {
    match data_type {
        DataType::Utf8 => {
            let mut kind = Inferred::default();
            for value in values {
                match value {
                    Value::String(s) => kind.observe_json_string(s),
                    Value::Null => {}
                    _ => kind.observe_text(),
                }
            }
            if kind.is_empty() {
                DataType::Utf8
            } else {
                kind.data_type()
            }
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    let inner: Vec<&Value> =
                        values.iter().filter_map(|v| v.get(f.name())).collect();
                    f.as_ref()
                        .clone()
                        .with_data_type(refine(f.data_type(), &inner))
                })
                .collect::<Fields>(),
        ),
        DataType::List(item) => {
            let inner: Vec<&Value> = values
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            DataType::List(Arc::new(
                item.as_ref()
                    .clone()
                    .with_data_type(refine(item.data_type(), &inner)),
            ))
        }
        other => other.clone(),
    }
}

/// Why lines do not decode into a batch of the schema. Arrow's text may quote the value: it
/// goes to the rejected file, never into a message.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("a line holds more than one JSON value")]
    SeveralValues,
    #[error("a line must hold exactly one JSON object")]
    NotOneObject,
}

fn decoder(schema: SchemaRef, rows: usize) -> std::result::Result<Decoder, DecodeError> {
    // Numbers in a text column are kept as their text rather than rejected.
    Ok(arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(rows.max(1))
        .with_coerce_primitive(true)
        .build_decoder()?)
}

/// Decodes `bytes`, which must hold exactly `rows` objects.
fn decode(
    schema: &SchemaRef,
    bytes: &[u8],
    rows: usize,
) -> std::result::Result<RecordBatch, DecodeError> {
    let mut decoder = decoder(schema.clone(), rows)?;
    let mut offset = 0;
    while offset < bytes.len() {
        let n = decoder.decode(&bytes[offset..])?;
        if n == 0 {
            break;
        }
        offset += n;
    }
    if offset < bytes.len() {
        return Err(DecodeError::SeveralValues);
    }
    let batch = decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    if batch.num_rows() != rows {
        return Err(DecodeError::NotOneObject);
    }
    Ok(batch)
}

/// Streams one JSONL file as batches of `schema`; keys not in the schema are ignored, missing
/// ones are null.
pub struct JsonlBatches<R: BufRead> {
    input: R,
    file: String,
    schema: SchemaRef,
    batch_rows: usize,
    rejects: Rejects,
    line: u64,
    done: bool,
}

impl<R: BufRead> JsonlBatches<R> {
    pub fn new(
        input: R,
        file: &str,
        schema: SchemaRef,
        batch_rows: usize,
        rejects: Rejects,
    ) -> Self {
        Self {
            input,
            file: file.to_string(),
            schema,
            batch_rows: batch_rows.max(1),
            rejects,
            line: 0,
            done: false,
        }
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut buf = Vec::new();
        let mut line = Vec::new();
        let mut rows: Vec<(u64, Range<usize>)> = Vec::new();
        let mut bad: Vec<BadLine> = Vec::new();
        while rows.len() < self.batch_rows {
            let consumed = next_line(&mut self.input, &mut line, &self.file)?;
            if consumed == 0 {
                self.done = true;
                break;
            }
            self.line += consumed;
            // Arrow's decoder accepts some malformed JSON (`{"a": 1,, }`): every line is
            // checked by a strict parser first.
            if let Err(e) = serde_json::from_slice::<IgnoredAny>(line.trim_ascii_end()) {
                let raw = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
                bad.push(BadLine {
                    line: self.line,
                    bad: BadRow::new("", invalid_json(&e)).row(raw),
                });
                continue;
            }
            let start = buf.len();
            buf.extend_from_slice(&line);
            if buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
            rows.push((self.line, start..buf.len()));
        }
        if rows.is_empty() && bad.is_empty() {
            return Ok(None);
        }
        let mut good = Vec::new();
        self.decode_rows(&buf, &rows, &mut good, &mut bad);
        bad.sort_by_key(|b| b.line);
        for b in bad {
            self.rejects
                .reject(b.bad.within(format_args!("{}: line {}", self.file, b.line)))?;
        }
        concat_batches(&self.schema, &good)
            .map(Some)
            .context(|| format!("reading {}", self.file))
    }

    fn decode_rows(
        &self,
        buf: &[u8],
        rows: &[(u64, Range<usize>)],
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadLine>,
    ) {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        match decode(&self.schema, &buf[first.1.start..last.1.end], rows.len()) {
            Ok(batch) => good.push(batch),
            Err(error) if rows.len() == 1 => {
                let text = buf[first.1.clone()].trim_ascii_end();
                let mut found = self.reason(text);
                if found.problem().is_empty() {
                    // The decoder's own text quotes the value: it goes to the rejected file.
                    found = BadRow::new("", "the line does not fit the schema")
                        .value(error.to_string());
                }
                bad.push(BadLine {
                    line: first.0,
                    bad: found.row(String::from_utf8_lossy(text).into_owned()),
                });
            }
            Err(_) => {
                let (left, right) = rows.split_at(rows.len() / 2);
                self.decode_rows(buf, left, good, bad);
                self.decode_rows(buf, right, good, bad);
            }
        }
    }

    /// Why a line of valid JSON does not decode: the column and the value (kept apart) when a
    /// value is at fault; an empty problem when no one column is.
    fn reason(&self, line: &[u8]) -> BadRow {
        let value = match serde_json::from_slice::<Value>(line) {
            Ok(value) => value,
            Err(e) => return BadRow::new("", invalid_json(&e)),
        };
        let Value::Object(map) = &value else {
            return BadRow::new(
                "",
                format!("expected a JSON object, found {}", kind_of(&value)),
            );
        };
        for field in self.schema.fields() {
            let Some(v) = map.get(field.name()).filter(|v| !v.is_null()) else {
                continue;
            };
            let one = Arc::new(Schema::new(vec![field.as_ref().clone()]));
            let object = serde_json::json!({ field.name(): v });
            if decode(&one, object.to_string().as_bytes(), 1).is_err() {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return BadRow::new(
                    "",
                    format!("cannot parse the value as {}", type_name(field.data_type())),
                )
                .column(field.name())
                .value(shown);
            }
        }
        BadRow::new("", "")
    }
}

/// A line that cannot be read, before it goes to the rejects (placed within the file then).
struct BadLine {
    line: u64,
    bad: BadRow,
}

/// A parse error without serde's position in the one-line document.
fn invalid_json(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    format!("invalid JSON at column {}: {message}", e.column())
}

/// What a JSON value is, for messages (`a number`, `an object`, …).
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<R: BufRead> Iterator for JsonlBatches<R> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut done = self.done;
        let next = super::next_batch(&mut done, || self.read_batch());
        self.done = done;
        next
    }
}

/// Writes batches as one JSON object a line, formatted on the step's threads (see `pieces`).
/// Nulls are written, so every line names every column and a later inference sees all of
/// them.
pub struct JsonlWriter {
    sink: Encoded,
    counter: Arc<AtomicU64>,
    pieces: Pieces,
    file: String,
}

impl JsonlWriter {
    pub fn new(sink: Encoded, file: &str) -> Self {
        Self::with_pieces(sink, file, Pieces::per_thread())
    }

    fn with_pieces(sink: Encoded, file: &str, pieces: Pieces) -> Self {
        Self {
            counter: sink.counter(),
            sink,
            pieces,
            file: file.to_string(),
        }
    }
}

/// Appends `batch`'s rows to `out`, a JSON object a line.
fn json_lines(batch: &RecordBatch, out: &mut Vec<u8>) -> std::result::Result<(), ArrowError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(out);
    writer.write(batch)?;
    writer.finish()
}

impl FileWriter for JsonlWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let sink = &mut self.sink;
        self.pieces
            .write(batch, json_lines, |text| {
                sink.write_all(text).map_err(ArrowError::from)
            })
            .context(|| format!("writing {}", self.file))
    }

    fn size(&self) -> u64 {
        count(&self.counter)
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let this = *self;
        this.sink.close(&this.file)
    }
}

#[cfg(test)]
mod tests;
