//! Result rows in Arrow: Snowflake sends each result as Arrow IPC streams (inline base64 for
//! the first part, then chunks fetched from presigned URLs, gzip or not) whose physical types
//! are Snowflake's own: `NUMBER` as scaled integers of the smallest width or Decimal128,
//! timestamps as `{epoch, fraction[, timezone]}` structs or scaled integers, `TIME` as scaled
//! integers. This module turns each column into the Arrow type of [`super::types`].

use std::io::Read;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, StructArray,
    Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use arrow::buffer::Buffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use arrow::datatypes::{Field, Fields, Schema};
use arrow::error::ArrowError;
use arrow_ipc::reader::read_record_batch;
use base64::Engine;
use std::collections::HashMap;

use super::connect::{Failure, Kind, Session, transport};
use super::query::{Chunk, QueryResult};
use super::types::ColumnType;
use crate::connectors::http_api::{CastError, checked_cast};

/// Why a result's rows cannot be read. The caller names the Connection.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("the inline result is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("a result chunk is not valid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("a result chunk ends in the middle of a message")]
    Truncated,
    #[error("a result chunk has a message of negative length {0}")]
    NegativeLength(i32),
    #[error("a result chunk has an unreadable message: {0}")]
    Unreadable(#[source] ArrowError),
    #[error("a result chunk has rows before its schema")]
    RowsBeforeSchema,
    #[error("a result chunk has an unexpected {0:?} message")]
    UnexpectedMessage(arrow_ipc::MessageHeader),
    #[error("a result chunk cannot be decoded: {0}")]
    Undecodable(#[source] ArrowError),
    #[error("a result batch has {batch} columns, the result describes {described}")]
    ColumnCount { batch: usize, described: usize },
    #[error("column \"{column}\": {source}")]
    Column {
        column: String,
        #[source]
        source: Box<ResultError>,
    },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Cast(#[from] CastError),
    #[error("a timestamp struct without \"{0}\"")]
    MissingPart(&'static str),
    /// A timestamp struct whose nanoseconds overflow; `row` counts from 1.
    #[error("row {row}: timestamp out of range")]
    TimestampOutOfRange { row: usize },
    /// A scaled integer whose nanoseconds overflow; `row` counts from 1.
    #[error("row {row}: value {value} out of range")]
    ValueOutOfRange { row: usize, value: i64 },
}

/// Decodes an Arrow IPC stream (gzip-compressed or not) into its batches.
pub fn ipc_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>, ResultError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let plain;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(ResultError::Gzip)?;
        plain = out;
        &plain[..]
    } else {
        bytes
    };
    decode_stream(bytes)
}

/// Reads the messages of an Arrow IPC stream with every field made nullable: Snowflake's
/// timestamp structs declare non-nullable `epoch` and `fraction` children yet leave them
/// unset under a null timestamp, which Arrow's own stream reader refuses. The data is still
/// checked as any IPC read checks it; only the declared nullability is relaxed.
fn decode_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, ResultError> {
    use ResultError::Truncated;
    let buffer = Buffer::from(bytes.to_vec());
    let word = |at: usize| -> Result<i32, ResultError> {
        let b = buffer.get(at..at + 4).ok_or(Truncated)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut offset = 0usize;
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    while offset < buffer.len() {
        let mut length = word(offset)?;
        offset += 4;
        if length == -1 {
            // The continuation marker of the current format, then the length.
            length = word(offset)?;
            offset += 4;
        }
        let Ok(length) = usize::try_from(length) else {
            return Err(ResultError::NegativeLength(length));
        };
        if length == 0 {
            break;
        }
        let meta = buffer.get(offset..offset + length).ok_or(Truncated)?;
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| ResultError::Unreadable(ArrowError::ParseError(e.to_string())))?;
        offset += length;
        let body_length = usize::try_from(message.bodyLength()).map_err(|_| Truncated)?;
        if offset + body_length > buffer.len() {
            return Err(Truncated);
        }
        let body = buffer.slice_with_length(offset, body_length);
        offset += body_length;
        match message.header_type() {
            arrow_ipc::MessageHeader::Schema => {
                let fb = message.header_as_schema().ok_or(Truncated)?;
                let declared = arrow_ipc::convert::fb_to_schema(fb);
                let fields: Vec<Field> = declared.fields().iter().map(|f| nullable(f)).collect();
                schema = Some(Arc::new(Schema::new_with_metadata(
                    fields,
                    declared.metadata().clone(),
                )));
            }
            arrow_ipc::MessageHeader::RecordBatch => {
                let header = message.header_as_record_batch().ok_or(Truncated)?;
                let schema = schema.clone().ok_or(ResultError::RowsBeforeSchema)?;
                let batch = read_record_batch(
                    &body,
                    header,
                    schema,
                    &HashMap::new(),
                    None,
                    &message.version(),
                )
                .map_err(ResultError::Undecodable)?;
                batches.push(batch);
            }
            other => return Err(ResultError::UnexpectedMessage(other)),
        }
    }
    Ok(batches)
}

/// The field with it and every child nullable.
fn nullable(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Struct(children) => {
            DataType::Struct(children.iter().map(|c| nullable(c)).collect::<Fields>())
        }
        DataType::List(item) => DataType::List(Arc::new(nullable(item))),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(nullable(item))),
        DataType::FixedSizeList(item, n) => DataType::FixedSizeList(Arc::new(nullable(item)), *n),
        DataType::Map(entries, sorted) => DataType::Map(Arc::new(nullable(entries)), *sorted),
        other => other.clone(),
    };
    field.clone().with_data_type(data_type).with_nullable(true)
}

/// The inline part of a result.
pub fn inline_batches(result: &QueryResult) -> Result<Vec<RecordBatch>, ResultError> {
    match result.rowset_base64.as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(text) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(ResultError::Base64)?;
            ipc_batches(&bytes)
        }
    }
}

impl Session {
    /// Downloads one chunk with the headers the result named (or the SSE-C key `qrmk`).
    pub async fn chunk(
        &self,
        result: &QueryResult,
        chunk: &Chunk,
    ) -> Result<Vec<RecordBatch>, Failure> {
        let settings = &self.settings;
        let mut request = self.http.get(&chunk.url);
        match &result.chunk_headers {
            Some(headers) if !headers.is_empty() => {
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
            _ => {
                if let Some(key) = &result.qrmk {
                    request = request
                        .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                        .header("x-amz-server-side-encryption-customer-key", key);
                }
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport(settings, "result chunk", &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(settings, "result chunk", &e))?;
        if !status.is_success() {
            // The URL is presigned: the message never shows it.
            return Err(Failure {
                kind: Kind::Protocol,
                code: None,
                message: format!(
                    "{}: downloading a result chunk failed with HTTP {status}",
                    settings.at()
                ),
            });
        }
        ipc_batches(&bytes).map_err(|e| Failure::protocol(format!("{}: {e}", settings.at())))
    }
}

/// Converts a batch as Snowflake sent it into the batch of `schema` (same columns, in order).
pub fn convert_batch(
    batch: &RecordBatch,
    columns: &[ColumnType],
    schema: &SchemaRef,
) -> Result<RecordBatch, ResultError> {
    if batch.num_columns() != columns.len() {
        return Err(ResultError::ColumnCount {
            batch: batch.num_columns(),
            described: columns.len(),
        });
    }
    let arrays = batch
        .columns()
        .iter()
        .zip(columns)
        .zip(schema.fields())
        .map(|((array, column), field)| {
            convert(array, column, field.data_type()).map_err(|e| ResultError::Column {
                column: column.name.clone(),
                source: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// One column into its target type.
pub fn convert(
    array: &ArrayRef,
    column: &ColumnType,
    target: &DataType,
) -> Result<ArrayRef, ResultError> {
    let scale = column.scale();
    match (array.data_type(), target) {
        (a, t) if a == t => Ok(array.clone()),
        // NUMBER: integers are unscaled values at the column's scale.
        (
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64,
            DataType::Decimal128(p, s),
        ) => {
            let ints = cast(array, &DataType::Int64)?;
            let ints = ints.as_primitive::<Int64Type>();
            let unscaled: Decimal128Array = ints.unary(i128::from);
            let at_scale = unscaled.with_precision_and_scale(38, scale as i8)?;
            Ok(cast(&at_scale, &DataType::Decimal128(*p, *s))?)
        }
        (DataType::Decimal128(..), DataType::Int64) => Ok(checked_cast(array, target)?),
        (DataType::Int8 | DataType::Int16 | DataType::Int32, DataType::Int64) => {
            Ok(cast(array, target)?)
        }
        (DataType::Struct(_), DataType::Timestamp(unit, zone)) => {
            let parts = array.as_struct();
            let nanos = struct_nanos(parts)?;
            Ok(timestamp_array(&nanos, *unit, zone.clone()))
        }
        (DataType::Int64 | DataType::Int32, DataType::Timestamp(unit, zone)) => {
            let scaled = cast(array, &DataType::Int64)?;
            let nanos = rescale_to_nanos(scaled.as_primitive::<Int64Type>(), scale)?;
            Ok(timestamp_array(&nanos, *unit, zone.clone()))
        }
        (DataType::Int64 | DataType::Int32, DataType::Time64(unit)) => {
            let scaled = cast(array, &DataType::Int64)?;
            let nanos = rescale_to_nanos(scaled.as_primitive::<Int64Type>(), scale)?;
            Ok(match unit {
                TimeUnit::Nanosecond => Arc::new(Time64NanosecondArray::new(
                    nanos.values().clone(),
                    nanos.nulls().cloned(),
                )),
                _ => Arc::new(Time64MicrosecondArray::new(
                    nanos.values().iter().map(|v| v / 1000).collect(),
                    nanos.nulls().cloned(),
                )),
            })
        }
        _ => Ok(checked_cast(array, target)?),
    }
}

/// Nanoseconds since the epoch from `{epoch (s), fraction (ns)}`; the `timezone` field of
/// TIMESTAMP_TZ is the offset of the value's zone, and the epoch is already UTC.
fn struct_nanos(parts: &StructArray) -> Result<Int64Array, ResultError> {
    let field = |name: &'static str| -> Result<ArrayRef, ResultError> {
        let part = parts
            .column_by_name(name)
            .ok_or(ResultError::MissingPart(name))?;
        Ok(cast(part, &DataType::Int64)?)
    };
    let epoch = field("epoch")?;
    let fraction = field("fraction")?;
    let (epoch, fraction) = (
        epoch.as_primitive::<Int64Type>(),
        fraction.as_primitive::<Int64Type>(),
    );
    let mut out = Vec::with_capacity(parts.len());
    for i in 0..parts.len() {
        // A null timestamp is a null struct, or (as pyarrow writes it) a struct of nulls.
        if parts.is_null(i) || epoch.is_null(i) {
            out.push(None);
            continue;
        }
        let nanos = epoch
            .value(i)
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(fraction.value(i)))
            .ok_or(ResultError::TimestampOutOfRange { row: i + 1 })?;
        out.push(Some(nanos));
    }
    Ok(Int64Array::from(out))
}

/// Scaled integers (`scale` fractional digits) to nanoseconds.
fn rescale_to_nanos(
    values: &arrow::array::PrimitiveArray<Int64Type>,
    scale: i64,
) -> Result<Int64Array, ResultError> {
    let scale = scale.clamp(0, 9);
    let factor = 10i64.pow((9 - scale) as u32);
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        out.push(match v {
            None => None,
            Some(v) => Some(v.checked_mul(factor).ok_or(ResultError::ValueOutOfRange {
                row: i + 1,
                value: v,
            })?),
        });
    }
    Ok(Int64Array::from(out))
}

fn timestamp_array(nanos: &Int64Array, unit: TimeUnit, zone: Option<Arc<str>>) -> ArrayRef {
    match unit {
        TimeUnit::Nanosecond => Arc::new(
            TimestampNanosecondArray::new(nanos.values().clone(), nanos.nulls().cloned())
                .with_timezone_opt(zone),
        ),
        _ => Arc::new(
            TimestampMicrosecondArray::new(
                nanos.values().iter().map(|v| v.div_euclid(1000)).collect(),
                nanos.nulls().cloned(),
            )
            .with_timezone_opt(zone),
        ),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int16Array, Int32Array};
    use arrow::datatypes::{Field, Fields};

    use super::*;
    use crate::connectors::snowflake::types::tests::col;

    #[test]
    fn scaled_integers_become_decimals() {
        let a: ArrayRef = Arc::new(Int16Array::from(vec![Some(150), None, Some(-225)]));
        let out = convert(
            &a,
            &col("fixed", Some(10), Some(2)),
            &DataType::Decimal128(10, 2),
        )
        .unwrap();
        let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(out.value_as_string(0), "1.50");
        assert!(out.is_null(1));
        assert_eq!(out.value_as_string(2), "-2.25");
    }

    #[test]
    fn a_decimal_too_large_for_int64_names_its_row_and_value() {
        let big = Decimal128Array::from(vec![Some(1), Some(9_999_999_999_999_999_999)])
            .with_precision_and_scale(19, 0)
            .unwrap();
        let e = convert(
            &(Arc::new(big) as ArrayRef),
            &col("fixed", Some(19), Some(0)),
            &DataType::Int64,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            ResultError::Cast(CastError::DoesNotFit {
                row: 2,
                target: DataType::Int64
            })
        ));
        assert_eq!(e.to_string(), "row 2: the value does not fit Int64");
    }

    #[test]
    fn timestamp_structs_and_scaled_integers_become_timestamps() {
        let fields = Fields::from(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("fraction", DataType::Int32, false),
        ]);
        let parts = StructArray::new(
            fields,
            vec![
                Arc::new(Int64Array::from(vec![1_700_000_000, 0])),
                Arc::new(Int32Array::from(vec![123_456_789, 0])),
            ],
            Some(vec![true, false].into()),
        );
        let out = convert(
            &(Arc::new(parts) as ArrayRef),
            &col("timestamp_ntz", Some(0), Some(9)),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .unwrap();
        let out = out.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(out.value(0), 1_700_000_000_123_456);
        assert!(out.is_null(1));

        let millis: ArrayRef = Arc::new(Int64Array::from(vec![1_700_000_000_123]));
        let out = convert(
            &millis,
            &col("timestamp_tz", Some(0), Some(3)),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )
        .unwrap();
        assert_eq!(
            out.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            out.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_700_000_000_123_000
        );
    }

    #[test]
    fn times_are_scaled_to_the_target_unit() {
        let nanos: ArrayRef = Arc::new(Int64Array::from(vec![3_723_000_000_001]));
        let out = convert(
            &nanos,
            &col("time", Some(0), Some(9)),
            &DataType::Time64(TimeUnit::Microsecond),
        )
        .unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Time64MicrosecondType>()
                .value(0),
            3_723_000_000
        );
    }

    #[test]
    fn gzip_and_plain_ipc_streams_decode_alike() {
        let batch =
            RecordBatch::try_from_iter([("A", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
                .unwrap();
        let mut plain = Vec::new();
        {
            let mut w =
                arrow_ipc::writer::StreamWriter::try_new(&mut plain, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        for bytes in [&plain, &gz] {
            let read = ipc_batches(bytes).unwrap();
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].column(0), batch.column(0));
        }
        assert!(ipc_batches(b"nonsense").is_err());
    }

    fn ipc_of(batch: &RecordBatch) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema()).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
        drop(w);
        bytes
    }

    #[tokio::test]
    async fn chunks_are_fetched_with_the_headers_or_key_the_result_names() {
        use crate::connectors::snowflake::config::{Auth, SnowflakeConfig};
        use crate::connectors::snowflake::query::Chunk;
        use synqx_testkit::http::{Reply, StandIn};

        let batch =
            RecordBatch::try_from_iter([("A", Arc::new(Int64Array::from(vec![7])) as ArrayRef)])
                .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &ipc_of(&batch)).unwrap();
        let stub = StandIn::scripted(vec![
            Reply::json(
                200,
                serde_json::json!({"data": {"token": "t"}, "success": true}),
            ),
            Reply::status(200).with_body(gz.finish().unwrap()),
            Reply::status(200).with_body(ipc_of(&batch)),
            Reply::status(403).with_body(b"<Error>AccessDenied</Error>".to_vec()),
        ]);
        let settings = SnowflakeConfig::for_test(&stub.url(), Auth::Password("pw".into()), vec![]);
        let session = Session::login(Arc::new(settings)).await.unwrap();
        let chunk = Chunk {
            url: format!("{}/results/0_0?X-Amz-Signature=secret", stub.url()),
            row_count: 1,
        };
        // With chunkHeaders (what the API sends for most accounts) ...
        let mut result = QueryResult {
            chunk_headers: Some(
                [(
                    "x-amz-server-side-encryption-customer-key".to_string(),
                    "k1".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        assert_eq!(
            session.chunk(&result, &chunk).await.unwrap()[0].column(0),
            batch.column(0)
        );
        // ... and with only the query result master key.
        result.chunk_headers = None;
        result.qrmk = Some("k2".into());
        assert_eq!(
            session.chunk(&result, &chunk).await.unwrap()[0].num_rows(),
            1
        );
        let e = session.chunk(&result, &chunk).await.unwrap_err();
        assert_eq!(
            e.message,
            "Connection \"sf\": downloading a result chunk failed with HTTP 403 Forbidden"
        );
        let requests = stub.requests();
        assert_eq!(requests[1].target, "/results/0_0?X-Amz-Signature=secret");
        assert_eq!(
            requests[1].header("x-amz-server-side-encryption-customer-key"),
            Some("k1")
        );
        assert_eq!(
            requests[1].header("Authorization"),
            None,
            "chunks are presigned: no session token"
        );
        assert_eq!(
            requests[2].header("x-amz-server-side-encryption-customer-key"),
            Some("k2")
        );
        assert_eq!(
            requests[2].header("x-amz-server-side-encryption-customer-algorithm"),
            Some("AES256")
        );
    }

    #[test]
    fn structs_with_unset_children_under_nulls_are_read() {
        // What fakesnow and the drivers' own writers send for a null TIMESTAMP_NTZ: declared
        // non-nullable children with nulls under the null parent.
        let fields = Fields::from(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("fraction", DataType::Int32, false),
        ]);
        // SAFETY: the arrays are well formed; only the declared nullability is violated, which
        // is the input under test.
        let parts = unsafe {
            StructArray::new_unchecked(
                fields.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![Some(1), None])),
                    Arc::new(Int32Array::from(vec![Some(5), None])),
                ],
                Some(vec![true, false].into()),
            )
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "TS",
            DataType::Struct(fields),
            true,
        )]));
        // SAFETY: as above.
        let batch = unsafe { RecordBatch::new_unchecked(schema.clone(), vec![Arc::new(parts)], 2) };
        let mut bytes = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let read = ipc_batches(&bytes).unwrap();
        assert_eq!(read[0].num_rows(), 2);
        assert!(read[0].column(0).is_null(1));
    }
}
