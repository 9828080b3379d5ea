//! Encodes Arrow record batches as `COPY … FROM STDIN (FORMAT binary)`.
//!
//! A column whose Arrow type is not the one its target column reads as (see `types.rs`) is
//! converted first with Arrow's cast; a value the cast cannot convert is a bad row naming the
//! column, the row and the value, rather than a NULL written in its place.
//!
//! A target column of a type without a binary mapping (an enum, `citext`, `inet`, ...) is sent
//! its values' UTF-8 text. That is the binary form of enums and text-like types; PostgreSQL
//! rejects it for types whose binary form differs (`inet`, geometric types), and such columns
//! need a staging column of type text.

use arrow::array::{Array, ArrayRef, FixedSizeBinaryBuilder, ListArray, RecordBatch, StringArray};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::{BufMut, BytesMut};
use std::sync::Arc;

use super::codec_encode::{EncodeError, Kind, View, parse_uuid};
use super::copy_out::SIGNATURE;
use super::types::{PgType, arrow_type};
use crate::error::{BadRow, Error, Result};

struct CopyTarget {
    name: String,
    pg_type: PgType,
    /// The column's index in the incoming schema.
    index: usize,
    /// The Arrow type the column is converted to before it is written.
    arrow: DataType,
    kind: Kind,
}

/// Encodes batches of one schema into the rows of a binary COPY to known target columns.
pub struct CopyInEncoder {
    targets: Vec<CopyTarget>,
    context: String,
}

impl CopyInEncoder {
    /// `target`: each destination column's name and type in the order the COPY statement
    /// lists them; `schema`: the incoming batches' schema, which has a field named like each
    /// target column (Err(Error::Config) naming the missing one otherwise).
    pub fn new(schema: &Schema, target: &[(String, PgType)], context: String) -> Result<Self> {
        let mut targets = Vec::with_capacity(target.len());
        for (name, t) in target {
            let (index, field) = schema.column_with_name(name).ok_or_else(|| {
                Error::Config(format!(
                    "{context}: the data has no column \"{name}\" for the table's column of that name; the data has {}",
                    schema
                        .fields()
                        .iter()
                        .map(|f| format!("\"{}\"", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let arrow = arrow_type(t).unwrap_or(DataType::Utf8);
            let kind = Kind::new(t, &arrow).ok_or_else(|| {
                Error::Config(format!(
                    "{context}: column \"{name}\" has type {} which binary COPY cannot write",
                    t.name
                ))
            })?;
            let from = field.data_type();
            if !same_layout(from, &arrow)
                && !is_uuid_text(from, &arrow)
                && !can_cast_types(from, &arrow)
            {
                return Err(Error::Config(format!(
                    "{context}: column \"{name}\" holds Arrow {from}, which cannot be converted to the table's type {}; change the column type or convert the data in a transform",
                    t.name
                )));
            }
            targets.push(CopyTarget {
                name: name.clone(),
                pg_type: t.clone(),
                index,
                arrow,
                kind,
            });
        }
        Ok(Self { targets, context })
    }

    /// The 19-byte signature, flags and header extension that start the stream.
    pub fn header(buf: &mut BytesMut) {
        buf.put_slice(SIGNATURE);
        buf.put_i32(0);
        buf.put_i32(0);
    }

    /// The -1 trailer that ends it.
    pub fn trailer(buf: &mut BytesMut) {
        buf.put_i16(-1);
    }

    /// Appends every row of `batch`. `first_row` is the 1-based number of the batch's first row
    /// in the whole load, for messages. A value that cannot be converted gives Error::BadRow
    /// naming context, column, row number, the value and the target type.
    pub fn encode(&self, batch: &RecordBatch, first_row: u64, buf: &mut BytesMut) -> Result<()> {
        let mut converted: Vec<ArrayRef> = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let original = batch.column(t.index);
            let array = self.convert(t, original)?;
            if let Some(row) = first_lost(original.as_ref(), array.as_ref()) {
                return Err(self.bad_row(
                    t,
                    original.as_ref(),
                    row,
                    first_row,
                    EncodeError::Unconvertible {
                        from: original.data_type().clone(),
                    },
                ));
            }
            converted.push(array);
        }
        let mut views = Vec::with_capacity(self.targets.len());
        for (t, array) in self.targets.iter().zip(&converted) {
            views.push(View::new(&t.kind, array.as_ref()).ok_or_else(|| {
                Error::Defect(format!(
                    "{}: column \"{}\" was converted to Arrow {} but the encoder of {} expects {}",
                    self.context,
                    t.name,
                    array.data_type(),
                    t.pg_type.name,
                    t.arrow
                ))
            })?);
        }
        let fields = i16::try_from(views.len()).map_err(|_| {
            Error::Config(format!(
                "{}: {} columns exceed PostgreSQL's limit of 1600",
                self.context,
                views.len()
            ))
        })?;
        // Only the fixed framing is reserved up front: the buffer sizes of a sliced batch are
        // those of the whole batch it shares them with, and reserving them for every slice
        // would grow the buffer to the batch's size. Values grow it as they are written.
        buf.reserve(batch.num_rows() * (2 + 4 * views.len()));
        for row in 0..batch.num_rows() {
            buf.put_i16(fields);
            for (c, view) in views.iter().enumerate() {
                if let Err(reason) = view.put(row, buf) {
                    let t = &self.targets[c];
                    return Err(self.bad_row(
                        t,
                        batch.column(t.index).as_ref(),
                        row,
                        first_row,
                        reason,
                    ));
                }
            }
        }
        Ok(())
    }

    fn convert(&self, t: &CopyTarget, array: &ArrayRef) -> Result<ArrayRef> {
        let from = array.data_type();
        if same_layout(from, &t.arrow) {
            return Ok(array.clone());
        }
        let failed = |e| {
            Error::arrow(
                format!(
                    "{}: converting column \"{}\" from Arrow {from} to {}",
                    self.context, t.name, t.pg_type.name
                ),
                e,
            )
        };
        if is_uuid_text(from, &t.arrow) {
            let text = cast_with_options(array, &DataType::Utf8, &CastOptions::default())
                .map_err(failed)?;
            let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
                return Err(failed(ArrowError::CastError("no Utf8 array".into())));
            };
            let mut uuids = FixedSizeBinaryBuilder::with_capacity(array.len(), 16);
            for v in text.iter() {
                match v.and_then(parse_uuid) {
                    Some(u) => uuids.append_value(u).map_err(failed)?,
                    None => uuids.append_null(),
                }
            }
            return Ok(Arc::new(uuids.finish()));
        }
        cast_with_options(array, &t.arrow, &CastOptions::default()).map_err(failed)
    }

    fn bad_row(
        &self,
        t: &CopyTarget,
        original: &dyn Array,
        row: usize,
        first_row: u64,
        reason: EncodeError,
    ) -> Error {
        let mut bad = BadRow::new(
            format!("{}, row {}", self.context, first_row + row as u64),
            format!(
                "cannot write the value to PostgreSQL type {}: {reason}; fix the value or change the column type",
                t.pg_type.name
            ),
        )
        .column(&t.name);
        if let Ok(f) = ArrayFormatter::try_new(original, &FormatOptions::default()) {
            bad = bad.value(f.value(row).to_string());
        }
        bad.into()
    }
}

/// Whether values of `from` can be written as `to` without conversion: the same type, up to
/// the names and metadata of list items.
fn same_layout(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::List(a), DataType::List(b)) => same_layout(a.data_type(), b.data_type()),
        _ => from == to,
    }
}

fn is_uuid_text(from: &DataType, to: &DataType) -> bool {
    matches!(to, DataType::FixedSizeBinary(16))
        && matches!(
            from,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
}

/// The first row whose non-null value became null in conversion (a failed cast), looking into
/// list elements too.
fn first_lost(original: &dyn Array, converted: &dyn Array) -> Option<usize> {
    if converted.logical_null_count() > original.logical_null_count() {
        return (0..original.len()).find(|&i| original.is_valid(i) && converted.is_null(i));
    }
    let (Some(a), Some(b)) = (
        original.as_any().downcast_ref::<ListArray>(),
        converted.as_any().downcast_ref::<ListArray>(),
    ) else {
        return None;
    };
    let element = first_lost(a.values().as_ref(), b.values().as_ref())?;
    let offsets = a.value_offsets();
    (0..a.len()).find(|&i| (offsets[i] as usize..offsets[i + 1] as usize).contains(&element))
}
