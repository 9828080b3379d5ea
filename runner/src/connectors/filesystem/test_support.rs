//! A temporary lake for the connector's tests: a connection over a temp directory, and a
//! batch holding every type that must survive a round trip.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Fields, Int64Type, Schema, SchemaRef, TimeUnit};
use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;
use synqx_api::pipeline::{Asset, Destination, FileFormat, Source as SourceSpec};

use super::{FilesystemSink, FilesystemSource};
use crate::connectors::ConnectionRef;
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, Source, WriteOutcome,
    WriteRequest,
};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

pub(super) fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// A connection whose `filesystem.path` is `lake`, relative to a temp base directory.
pub(super) struct Lake {
    pub(super) base: tempfile::TempDir,
    pub(super) source: FilesystemSource,
    pub(super) sink: FilesystemSink,
}

impl Lake {
    pub(super) fn new() -> Self {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = ConnectionSpec {
            filesystem: Some(FilesystemConnection {
                path: "lake".into(),
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let conn = ConnectionRef {
            name: "lake",
            spec: &spec,
            base_dir: base.path().to_path_buf(),
            secrets: &secrets,
        };
        let (source, sink) = (
            ok(FilesystemSource::new(&conn)),
            ok(FilesystemSink::new(&conn)),
        );
        ok(std::fs::create_dir_all(base.path().join("lake")).map_err(|e| Error::io("lake", e)));
        Self { base, source, sink }
    }

    pub(super) fn root(&self) -> PathBuf {
        self.base.path().join("lake")
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    pub(super) fn put(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            ok(std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", e)));
        }
        ok(std::fs::write(&path, contents).map_err(|e| Error::io("write", e)));
    }

    pub(super) fn text(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    /// Every path below the root, relative and sorted, hidden ones included.
    pub(super) fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.path().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root(), "", &mut out);
        out.sort();
        out
    }

    pub(super) async fn read_with(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        batch_bytes: usize,
        rejects: Rejects,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        use futures::StreamExt;
        let request = ReadRequest {
            spec,
            filter,
            batch_bytes,
            rejects,
        };
        let stream = self.source.read(&request).await?;
        let schema = stream.schema.clone();
        let batches: Vec<Result<RecordBatch>> = stream.stream.collect().await;
        Ok((schema, batches.into_iter().collect::<Result<Vec<_>>>()?))
    }

    pub(super) async fn read(&self, spec: SourceSpec) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_with(
            spec,
            None,
            crate::engine::DEFAULT_BATCH_BYTES,
            Rejects::failing(),
        )
        .await
    }

    /// All rows of a read as one batch.
    pub(super) async fn read_all(&self, spec: SourceSpec) -> Result<RecordBatch> {
        let (schema, batches) = self.read(spec).await?;
        concat_batches(&schema, &batches).map_err(|e| Error::arrow("concat", e))
    }

    pub(super) async fn write(
        &self,
        spec: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        let input = SchemaStream::new(schema, futures::stream::iter(batches));
        let request = WriteRequest {
            spec,
            batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        };
        self.sink.write(&request, input, &Counters::default()).await
    }
}

pub(super) fn source(fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: "lake".into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

pub(super) fn destination(fqn: &str, format: Option<FileFormat>) -> Destination {
    Destination {
        connection: "lake".into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        format,
        ..Default::default()
    }
}

pub(super) const TZ: &str = "+00:00";

/// Ints, floats, decimals, text with commas, quotes and line breaks, booleans, dates,
/// timestamps with time zone, and a null in every column.
pub(super) fn scalars() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("price", DataType::Decimal128(12, 2), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("paid", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(TZ.into())),
            true,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![Some(1), Some(-2), None, Some(4)])),
        Arc::new(Float64Array::from(vec![
            Some(10.5),
            Some(2.0),
            Some(-0.25),
            None,
        ])),
        Arc::new(
            Decimal128Array::from(vec![Some(123_456), None, Some(-5), Some(99_999_999_999)])
                .with_precision_and_scale(12, 2)
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        Arc::new(StringArray::from(vec![
            Some("plain"),
            Some("a, \"quoted\" name"),
            Some("two\nlines"),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(19_753),
            Some(0),
            Some(-1),
            None,
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(1_706_695_200_123_456),
                None,
                Some(0),
                Some(1_706_778_000_000_000),
            ])
            .with_timezone(TZ),
        ),
    ];
    RecordBatch::try_new(schema, columns).unwrap_or_else(|e| panic!("{e}"))
}

/// `scalars` plus a struct and a list column.
pub(super) fn nested() -> RecordBatch {
    let base = scalars();
    let user_fields = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
    ]);
    let user = StructArray::new(
        user_fields.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("ann"), None, Some("cy"), None])),
            Arc::new(Int64Array::from(vec![Some(30), Some(40), None, None])),
        ],
        Some(vec![true, true, true, false].into()),
    );
    let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
        None,
        Some(vec![Some(3)]),
    ]);
    let mut fields: Vec<Field> = base
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("user", DataType::Struct(user_fields), true));
    fields.push(Field::new("tags", tags.data_type().clone(), true));
    let mut columns = base.columns().to_vec();
    columns.push(Arc::new(user));
    columns.push(Arc::new(tags));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|e| panic!("{e}"))
}

/// A batch of `ids` in one `id` column.
pub(super) fn ids(values: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `id` column of batches, in order.
pub(super) fn id_values(batches: &[RecordBatch]) -> Vec<Option<i64>> {
    use arrow::array::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column_by_name("id")
                .unwrap_or_else(|| panic!("no id column"));
            column
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}
