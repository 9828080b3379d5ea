//! SQLite rows into Arrow batches: each value is converted to its column's Arrow type as it
//! arrives, into plain buffers that can drop a half-appended row when a later value of the row
//! is rejected.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, SchemaRef, Time64MicrosecondType, TimestampMicrosecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::sqlite::SqliteRow;

use super::cell::{Cell, boolean, bytes, integer, real, text, time_text, unsigned};
use super::types::{
    decimal_from_f64, decimal_from_i64, parse_date, parse_decimal, parse_time, parse_timestamp,
    type_name,
};
use crate::engine::{CursorFilter, Rejects, cursor};
use crate::error::{BadRow, Context, Error, Result};

/// Batches are cut before their string data could overflow Arrow's 32-bit offsets; a single
/// SQLite value is at most 1e9 bytes, so the data stays below 2^31.
const MAX_VAR_BYTES: usize = 1 << 30;

/// Offsets and bytes of a string or binary column.
#[derive(Default)]
struct Var {
    offsets: Vec<i32>,
    data: Vec<u8>,
}

impl Var {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
        }
    }

    fn push(&mut self, value: &[u8]) -> Option<()> {
        self.data.extend_from_slice(value);
        self.offsets.push(i32::try_from(self.data.len()).ok()?);
        Some(())
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        let end = self.offsets.last().copied().unwrap_or(0);
        self.data.truncate(usize::try_from(end).unwrap_or(0));
    }

    fn take(&mut self) -> (OffsetBuffer<i32>, Buffer) {
        let Var { offsets, data } = std::mem::replace(self, Var::new());
        (
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(data),
        )
    }
}

/// The values of one column of the batch being built.
enum Values {
    Boolean(Vec<bool>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    UInt8(Vec<u8>),
    UInt16(Vec<u16>),
    UInt32(Vec<u32>),
    UInt64(Vec<u64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Decimal(Vec<i128>, u8, i8),
    Date(Vec<i32>),
    Time(Vec<i64>),
    Timestamp(Vec<i64>),
    Utf8(Var),
    Binary(Var),
}

macro_rules! each_vec {
    ($values:expr, $v:ident => $body:expr, $var:ident => $var_body:expr) => {
        match $values {
            Values::Boolean($v) => $body,
            Values::Int8($v) => $body,
            Values::Int16($v) => $body,
            Values::Int32($v) => $body,
            Values::Int64($v) => $body,
            Values::UInt8($v) => $body,
            Values::UInt16($v) => $body,
            Values::UInt32($v) => $body,
            Values::UInt64($v) => $body,
            Values::Float32($v) => $body,
            Values::Float64($v) => $body,
            Values::Decimal($v, _, _) => $body,
            Values::Date($v) => $body,
            Values::Time($v) => $body,
            Values::Timestamp($v) => $body,
            Values::Utf8($var) | Values::Binary($var) => $var_body,
        }
    };
}

/// An Arrow type no SQLite value is read into; the caller names the column.
#[derive(Debug, thiserror::Error)]
#[error("type {0} cannot be read from SQLite")]
struct UnreadableType(DataType);

/// One column: its Arrow type, values and validity.
struct Column {
    data_type: DataType,
    values: Values,
    valid: Vec<bool>,
}

impl Column {
    fn new(data_type: &DataType) -> Result<Self, UnreadableType> {
        let values = match data_type {
            DataType::Boolean => Values::Boolean(Vec::new()),
            DataType::Int8 => Values::Int8(Vec::new()),
            DataType::Int16 => Values::Int16(Vec::new()),
            DataType::Int32 => Values::Int32(Vec::new()),
            DataType::Int64 => Values::Int64(Vec::new()),
            DataType::UInt8 => Values::UInt8(Vec::new()),
            DataType::UInt16 => Values::UInt16(Vec::new()),
            DataType::UInt32 => Values::UInt32(Vec::new()),
            DataType::UInt64 => Values::UInt64(Vec::new()),
            DataType::Float32 => Values::Float32(Vec::new()),
            DataType::Float64 => Values::Float64(Vec::new()),
            DataType::Decimal128(p, s) => Values::Decimal(Vec::new(), *p, *s),
            DataType::Date32 => Values::Date(Vec::new()),
            DataType::Time64(_) => Values::Time(Vec::new()),
            DataType::Timestamp(_, _) => Values::Timestamp(Vec::new()),
            DataType::Utf8 => Values::Utf8(Var::new()),
            DataType::Binary => Values::Binary(Var::new()),
            other => return Err(UnreadableType(other.clone())),
        };
        Ok(Self {
            data_type: data_type.clone(),
            values,
            valid: Vec::new(),
        })
    }

    /// Appends a value; `None` when it does not convert. Returns the variable-length bytes
    /// added.
    fn push(&mut self, cell: Cell<'_>) -> Option<usize> {
        let mut added = 0;
        match (&mut self.values, cell) {
            (values, Cell::Null) => {
                each_vec!(values, v => v.push(Default::default()), var => var.push(&[])?);
                self.valid.push(false);
                return Some(0);
            }
            (Values::Boolean(v), c) => v.push(boolean(c)?),
            (Values::Int8(v), c) => v.push(i8::try_from(integer(c)?).ok()?),
            (Values::Int16(v), c) => v.push(i16::try_from(integer(c)?).ok()?),
            (Values::Int32(v), c) => v.push(i32::try_from(integer(c)?).ok()?),
            (Values::Int64(v), c) => v.push(integer(c)?),
            (Values::UInt8(v), c) => v.push(u8::try_from(unsigned(c)?).ok()?),
            (Values::UInt16(v), c) => v.push(u16::try_from(unsigned(c)?).ok()?),
            (Values::UInt32(v), c) => v.push(u32::try_from(unsigned(c)?).ok()?),
            (Values::UInt64(v), c) => v.push(unsigned(c)?),
            (Values::Float32(v), c) => {
                let f = real(c)?;
                let narrow = f as f32;
                if f.is_finite() && !narrow.is_finite() {
                    return None;
                }
                v.push(narrow);
            }
            (Values::Float64(v), c) => v.push(real(c)?),
            (Values::Decimal(v, p, s), c) => v.push(match c {
                Cell::Int(i) => decimal_from_i64(i, *p, *s)?,
                Cell::Real(f) => decimal_from_f64(f, *p, *s)?,
                Cell::Text(t) => parse_decimal(t, *p, *s)?,
                _ => return None,
            }),
            (Values::Date(v), c) => v.push(match c {
                Cell::Text(s) => parse_date(s)?,
                _ => return None,
            }),
            (Values::Time(v), c) => v.push(time_text(c, parse_time)?),
            (Values::Timestamp(v), c) => v.push(time_text(c, parse_timestamp)?),
            (Values::Utf8(var), c) => {
                let s = text(c)?;
                var.push(s.as_bytes())?;
                added = s.len();
            }
            (Values::Binary(var), c) => {
                let b = bytes(c)?;
                var.push(b)?;
                added = b.len();
            }
        }
        self.valid.push(true);
        Some(added)
    }

    fn truncate(&mut self, len: usize) {
        each_vec!(&mut self.values, v => v.truncate(len), var => var.truncate(len));
        self.valid.truncate(len);
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        let valid = std::mem::take(&mut self.valid);
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        let array: ArrayRef = match &mut self.values {
            Values::Boolean(v) => {
                let bits = BooleanBuffer::from_iter(std::mem::take(v));
                Arc::new(BooleanArray::new(bits, nulls))
            }
            Values::Int8(v) => primitive::<Int8Type>(v, nulls)?,
            Values::Int16(v) => primitive::<Int16Type>(v, nulls)?,
            Values::Int32(v) => primitive::<Int32Type>(v, nulls)?,
            Values::Int64(v) => primitive::<Int64Type>(v, nulls)?,
            Values::UInt8(v) => primitive::<UInt8Type>(v, nulls)?,
            Values::UInt16(v) => primitive::<UInt16Type>(v, nulls)?,
            Values::UInt32(v) => primitive::<UInt32Type>(v, nulls)?,
            Values::UInt64(v) => primitive::<UInt64Type>(v, nulls)?,
            Values::Float32(v) => primitive::<Float32Type>(v, nulls)?,
            Values::Float64(v) => primitive::<Float64Type>(v, nulls)?,
            Values::Decimal(v, p, s) => Arc::new(
                PrimitiveArray::<Decimal128Type>::try_new(std::mem::take(v).into(), nulls)?
                    .with_precision_and_scale(*p, *s)?,
            ),
            Values::Date(v) => primitive::<Date32Type>(v, nulls)?,
            Values::Time(v) => primitive::<Time64MicrosecondType>(v, nulls)?,
            Values::Timestamp(v) => {
                let tz = match &self.data_type {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::try_new(
                        std::mem::take(v).into(),
                        nulls,
                    )?
                    .with_timezone_opt(tz),
                )
            }
            Values::Utf8(var) => {
                let (offsets, data) = var.take();
                Arc::new(StringArray::try_new(offsets, data, nulls)?)
            }
            Values::Binary(var) => {
                let (offsets, data) = var.take();
                Arc::new(BinaryArray::try_new(offsets, data, nulls)?)
            }
        };
        Ok(array)
    }
}

fn primitive<T: ArrowPrimitiveType>(
    values: &mut Vec<T::Native>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    Ok(Arc::new(PrimitiveArray::<T>::try_new(
        std::mem::take(values).into(),
        nulls,
    )?))
}

/// The width of one value in Arrow memory, for the batch size estimate.
fn fixed_width(data_type: &DataType) -> usize {
    match data_type {
        DataType::Utf8 | DataType::Binary => 4,
        DataType::Boolean => 1,
        other => other.primitive_width().unwrap_or(8),
    }
}

/// Where a source's rows come from and what to do with the ones that do not convert.
pub(super) struct Origin {
    /// `Connection "c", table "t"`, or `…, query of asset "t"`.
    pub location: String,
    pub rejects: Rejects,
    pub batch_bytes: usize,
    /// Re-checks the cursor in Arrow when the pushed-down comparison is not exact.
    pub exact_filter: Option<CursorFilter>,
}

/// Rows of a result set, turned into batches of about `batch_bytes`.
pub(super) struct RowBatches {
    rows: BoxStream<'static, sqlx::Result<SqliteRow>>,
    /// A row read ahead to learn the schema.
    pending: Option<SqliteRow>,
    schema: SchemaRef,
    columns: Vec<Column>,
    origin: Origin,
    len: usize,
    row_bytes: usize,
    var_bytes: usize,
    /// Rows read so far, for messages.
    row_number: u64,
    done: bool,
}

impl RowBatches {
    pub(super) fn new(
        rows: BoxStream<'static, sqlx::Result<SqliteRow>>,
        pending: Option<SqliteRow>,
        schema: SchemaRef,
        origin: Origin,
    ) -> Result<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                Column::new(f.data_type()).map_err(|e| {
                    Error::Config(format!("{}: column \"{}\": {e}", origin.location, f.name()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let row_bytes = schema
            .fields()
            .iter()
            .map(|f| fixed_width(f.data_type()) + 1)
            .sum();
        Ok(Self {
            rows,
            pending,
            schema,
            columns,
            origin,
            len: 0,
            row_bytes,
            var_bytes: 0,
            row_number: 0,
            done: false,
        })
    }

    pub(super) fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
        futures::stream::unfold(self, |mut batches| async move {
            let next = batches.next_batch().await;
            if matches!(next, Some(Err(_))) {
                batches.done = true;
            }
            next.map(|item| (item, batches))
        })
    }

    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        while !self.done {
            let row = match self.pending.take() {
                Some(row) => Some(Ok(row)),
                None => self.rows.next().await,
            };
            let row = match row {
                Some(Ok(row)) => row,
                Some(Err(e)) => {
                    let at = &self.origin.location;
                    return Some(Err(Error::database(
                        format!("{at}: reading row {}", self.row_number + 1),
                        e,
                    )));
                }
                None => {
                    self.done = true;
                    break;
                }
            };
            if let Err(e) = self.push(&row) {
                return Some(Err(e));
            }
            let bytes = self.len * self.row_bytes + self.var_bytes;
            if bytes >= self.origin.batch_bytes || self.var_bytes >= MAX_VAR_BYTES {
                match self.finish() {
                    Ok(Some(batch)) => return Some(Ok(batch)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        self.finish().transpose()
    }

    /// Appends a row, or hands it to the rejects when a value does not convert.
    fn push(&mut self, row: &SqliteRow) -> Result<()> {
        self.row_number += 1;
        let mut added = 0;
        let mut failed = None;
        for (i, column) in self.columns.iter_mut().enumerate() {
            match Cell::read(row, i) {
                Ok(cell) => match column.push(cell) {
                    Some(n) => added += n,
                    None => {
                        failed = Some((i, Ok(cell)));
                        break;
                    }
                },
                Err(e) => {
                    failed = Some((i, Err(e)));
                    break;
                }
            }
        }
        let Some((i, cell)) = failed else {
            self.len += 1;
            self.var_bytes += added;
            return Ok(());
        };
        for column in &mut self.columns {
            column.truncate(self.len);
        }
        let field = self.schema.field(i);
        let location = format!("{}: row {}", self.origin.location, self.row_number);
        let bad = match cell {
            Ok(c) => BadRow::new(
                location,
                format!(
                    "cannot convert the value to {}",
                    type_name(field.data_type())
                ),
            )
            .value(c.as_text()),
            Err(e) => BadRow::new(location, e.to_string()),
        };
        self.origin
            .rejects
            .reject(bad.column(field.name()).row(self.row_json(row)))
    }

    /// The row as a JSON object, for the dead-letter file.
    fn row_json(&self, row: &SqliteRow) -> String {
        let object: serde_json::Map<String, serde_json::Value> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    f.name().clone(),
                    Cell::read(row, i).map_or(serde_json::Value::Null, Cell::json),
                )
            })
            .collect();
        serde_json::Value::Object(object).to_string()
    }

    /// The rows appended so far as a batch; `None` when there are none (or none are left after
    /// the exact cursor check).
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.len == 0 {
            return Ok(None);
        }
        let location = &self.origin.location;
        let arrays = self
            .columns
            .iter_mut()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()
            .context(|| format!("{location}: building a batch"))?;
        self.len = 0;
        self.var_bytes = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .context(|| format!("{location}: building a batch"))?;
        let batch = match &self.origin.exact_filter {
            Some(filter) => cursor::filter_batch(&batch, filter)?,
            None => batch,
        };
        Ok((batch.num_rows() > 0).then_some(batch))
    }
}
