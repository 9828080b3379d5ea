//! What the tests of the file formats and of every file connector share: source and
//! destination specs of a lake, batches holding every type that must survive a round trip, an
//! in-memory file and a rejected file to write into, and the scenarios every file connector
//! runs (`lakes`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Int64Type, Schema, TimeUnit};
use synqx_api::pipeline::{
    Asset, Destination, FileFormat, OnError, Source as SourceSpec, WriteMode,
};

use crate::connectors::formats::convert::with_columns;
pub use crate::connectors::tests::{err, ok};
use crate::engine::{Counters, Rejects};

pub(crate) mod lakes;
mod options;

pub fn source(fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: "lake".into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

pub fn destination(fqn: &str, format: Option<FileFormat>) -> Destination {
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

/// `destination` in mode overwrite.
pub fn overwrite(fqn: &str, format: Option<FileFormat>) -> Destination {
    Destination {
        mode: Some(WriteMode::Overwrite),
        ..destination(fqn, format)
    }
}

/// The `columns` of a source that reads `price` of [`scalars`] back as the decimal it was:
/// text formats would infer a float.
pub fn decimal_price() -> BTreeMap<String, String> {
    BTreeMap::from([("price".to_string(), "decimal(12,2)".to_string())])
}

pub const TZ: &str = "+00:00";

/// Ints, floats, decimals, text with commas, quotes and line breaks, booleans, dates,
/// timestamps with time zone, and a null in every column.
pub fn scalars() -> RecordBatch {
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
pub fn nested() -> RecordBatch {
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
    with_columns(
        &base,
        vec![
            (
                Field::new("user", DataType::Struct(user_fields), true),
                Arc::new(user),
            ),
            (
                Field::new("tags", tags.data_type().clone(), true),
                Arc::new(tags),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A batch of `ids` in one `id` column.
pub fn ids(values: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The number of rows of each batch, in order.
pub fn row_counts(batches: &[RecordBatch]) -> Vec<usize> {
    batches.iter().map(RecordBatch::num_rows).collect()
}

/// The `id` column of batches, in order.
pub fn id_values(batches: &[RecordBatch]) -> Vec<Option<i64>> {
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

/// `rows` rows of an id and 90 bytes of text: about 100 bytes a row as CSV, so that a batch
/// of 100,000 rows is more than one part of a multipart upload.
pub fn wide(rows: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("pad", DataType::Utf8, true),
    ]));
    let pad: StringArray = rows.clone().map(|i| Some(format!("r{i:089}"))).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(rows)), Arc::new(pad)];
    RecordBatch::try_new(schema, columns).unwrap_or_else(|e| panic!("{e}"))
}

/// `text` compressed as a gzip file.
pub fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    encoder.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// A file in memory that a writer under test owns a handle to, read once the writer is done.
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<Vec<u8>>>);

impl Memory {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rejects under a policy that write to a rejected file in a folder of their own, and count
/// into counters of their own.
pub struct Rejected {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub counters: Arc<Counters>,
    rejects: Rejects,
}

impl Rejected {
    pub fn new(policy: OnError) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("rejected.jsonl");
        let counters = Arc::new(Counters::default());
        let rejects = Rejects::new(policy, Some(path.clone()), counters.clone());
        Self {
            _dir: dir,
            path,
            counters,
            rejects,
        }
    }

    /// Rejects for one read; every read given them writes to the same file.
    pub fn rejects(&self) -> Rejects {
        self.rejects.clone()
    }

    /// The lines of the rejected file, one JSON document each.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}
