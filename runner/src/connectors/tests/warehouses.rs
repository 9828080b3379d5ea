//! What the tests of the warehouse connectors against their emulators share (Snowflake and
//! BigQuery): the round trip of the types every warehouse maps, people rows read back whatever
//! integer type the warehouse returns, inputs that break or stall mid-load, table reads, and
//! the Connection a test owns on an emulator ([`TestConnection`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    ListArray, RecordBatch, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::util::display::array_value_to_string;
use futures::StreamExt;
use synqx_api::ConnectionSpec;
use synqx_api::pipeline::{SchemaEvolution, Source as SourceSpec, WriteMode};

use super::{Harness, destination, ok, table_source};
use crate::connectors::ConnectionRef;
use crate::connectors::http_api::{is_json, json_field};
use crate::engine::{
    Counters, CursorFilter, DEFAULT_BATCH_BYTES, Rejects, SchemaStream, WriteRequest,
};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// A Connection a test owns on an emulator (a database or dataset of its own), opened through
/// the registry as a step opens it. Each warehouse's fixture derefs to it.
pub struct TestConnection {
    pub name: &'static str,
    pub spec: ConnectionSpec,
    pub secrets: Secrets,
}

impl TestConnection {
    pub fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: self.name,
            spec: &self.spec,
            base_dir: ".".into(),
            secrets: &self.secrets,
        }
    }

    pub fn harness(&self) -> Harness {
        Harness::open(&self.conn())
    }

    /// Loads `batches` into `fqn` as `mode` with `primaryKey` `key`; returns the rows written.
    pub async fn write_keyed(
        &self,
        fqn: &str,
        mode: WriteMode,
        key: &[&str],
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        self.write_with(&self.harness(), fqn, mode, key, batches)
            .await
    }

    /// [`Self::write_keyed`] through a sink opened otherwise (`harness`).
    pub async fn write_with(
        &self,
        harness: &Harness,
        fqn: &str,
        mode: WriteMode,
        key: &[&str],
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let counters = Arc::new(Counters::default());
        harness
            .load((self.name, fqn), mode, key, batches, &counters)
            .await
    }

    pub async fn read(
        &self,
        fqn: &str,
        filter: Option<CursorFilter>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.harness().read_table(self.name, fqn, filter).await
    }

    /// `(id, name)` rows of a people table, by id.
    pub async fn people(&self, fqn: &str) -> Vec<(i64, Option<String>)> {
        self.harness().table_people(self.name, fqn).await
    }
}

/// The `(id, name)` of every row of batches with those columns, sorted. Ids of any integer or
/// decimal type are read as Int64: warehouses give integers back wider than they took them.
pub fn people_rows(batches: &[RecordBatch]) -> Vec<(i64, Option<String>)> {
    let mut rows = Vec::new();
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name} in {:?}", b.schema()))
        };
        let ids =
            arrow::compute::cast(column("id"), &DataType::Int64).unwrap_or_else(|e| panic!("{e}"));
        let ids = ids.as_primitive::<Int64Type>();
        let names = column("name").as_string::<i32>();
        for i in 0..b.num_rows() {
            let name = names.is_valid(i).then(|| names.value(i).to_string());
            rows.push((ids.value(i), name));
        }
    }
    rows.sort();
    rows
}

/// A row with a name as [`people_rows`] lists it.
pub fn person(id: i64, name: &str) -> (i64, Option<String>) {
    (id, Some(name.to_string()))
}

/// An input that yields `batch` and then fails, as a source that breaks mid-load does, with
/// the error "the source broke".
pub fn breaking_input(batch: RecordBatch) -> SchemaStream {
    let schema = batch.schema();
    SchemaStream::new(
        schema,
        futures::stream::iter(vec![
            Ok(batch),
            Err(Error::Config("the source broke".into())),
        ]),
    )
}

/// Batches of one schema as one batch in the order of its `id` column.
pub fn sorted_by_id(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    let all = concat_batches(schema, batches).unwrap_or_else(|e| panic!("{e}"));
    let ids = all
        .column_by_name("id")
        .unwrap_or_else(|| panic!("no column id in {schema:?}"));
    let order = arrow::compute::sort_to_indices(ids, None, None).unwrap_or_else(|e| panic!("{e}"));
    arrow::compute::take_record_batch(&all, &order).unwrap_or_else(|e| panic!("{e}"))
}

/// An input that yields `batch` and then waits forever, as a source that stalls mid-load does;
/// dropping the write is how the engine cancels its step.
pub fn stalled_input(batch: RecordBatch) -> SchemaStream {
    let schema = batch.schema();
    let stream = futures::stream::iter(vec![Ok(batch)]).chain(futures::stream::pending());
    SchemaStream::new(schema, stream)
}

/// A people row with a column the table does not have yet: `score` Float64.
pub fn people_with_score(id: i64, name: &str, score: f64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![id])),
        Arc::new(StringArray::from(vec![name])),
        Arc::new(Float64Array::from(vec![score])),
    ];
    RecordBatch::try_new(schema, columns).unwrap_or_else(|e| panic!("{e}"))
}

/// The columns every warehouse's round trip of its type map writes, on two rows: the first
/// holds a value of each type, the second NULLs (`id` aside). `doc` is JSON text.
pub fn mapped_columns(doc: &str) -> Vec<(Field, ArrayRef)> {
    let utc = Some("UTC".into());
    vec![
        (
            Field::new("id", DataType::Int64, false),
            Arc::new(Int64Array::from(vec![1, 2])),
        ),
        (
            Field::new("amount", DataType::Decimal128(12, 3), true),
            Arc::new(
                Decimal128Array::from(vec![Some(12_345_678), None])
                    .with_precision_and_scale(12, 3)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            Field::new("ratio", DataType::Float64, true),
            Arc::new(Float64Array::from(vec![Some(0.25), None])),
        ),
        (
            Field::new("name", DataType::Utf8, true),
            Arc::new(StringArray::from(vec![Some("Zoë ✓"), None])),
        ),
        (
            json_field(Field::new("doc", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some(doc), None])),
        ),
        (
            Field::new("flag", DataType::Boolean, true),
            Arc::new(BooleanArray::from(vec![Some(true), None])),
        ),
        (
            Field::new("day", DataType::Date32, true),
            Arc::new(Date32Array::from(vec![Some(19_723), None])),
        ),
        (
            Field::new("at_time", DataType::Time64(TimeUnit::Microsecond), true),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(45_296_789_012),
                None,
            ])),
        ),
        (
            Field::new(
                "local_ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_704_067_200_123_456),
                None,
            ])),
        ),
        (
            Field::new(
                "utc_ts",
                DataType::Timestamp(TimeUnit::Microsecond, utc),
                true,
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_704_067_200_654_321), None])
                    .with_timezone("UTC"),
            ),
        ),
        (
            Field::new_list("tags", Field::new("item", DataType::Int64, true), true),
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(vec![Some(1), Some(2)]),
                None,
            ])),
        ),
    ]
}

/// The names of [`mapped_columns`] whose second row is NULL and must read back NULL (`tags`
/// aside: BigQuery has no NULL arrays).
pub const MAPPED_NULLABLE: [&str; 9] = [
    "amount", "ratio", "name", "doc", "flag", "day", "at_time", "local_ts", "utc_ts",
];

/// One batch of named columns.
pub fn batch_of(columns: Vec<(Field, ArrayRef)>) -> RecordBatch {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap_or_else(|e| panic!("{e}"))
}

/// The text a value of column `name` displays as, in row `row` of `read`.
pub fn value_text(read: &RecordBatch, name: &str, row: usize) -> String {
    let column = read
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", read.schema()));
    array_value_to_string(column, row).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the first row of [`mapped_columns`] as a warehouse gave it back (sorted by id): the
/// values every warehouse reads back alike. `doc` is the JSON written.
pub fn assert_mapped_values(read: &RecordBatch, doc: &str) {
    let text = |name: &str| value_text(read, name, 0);
    assert_eq!(text("ratio"), "0.25");
    assert_eq!(text("name"), "Zoë ✓");
    let json = |t: &str| {
        serde_json::from_str::<serde_json::Value>(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    assert_eq!(json(&text("doc")), json(doc));
    let schema = read.schema();
    let doc_field = schema
        .field_with_name("doc")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_json(doc_field), "{doc_field:?}");
    assert_eq!(text("flag"), "true");
    assert_eq!(
        schema
            .field_with_name("day")
            .map(|f| f.data_type().clone())
            .ok(),
        Some(DataType::Date32)
    );
    assert_eq!(text("day"), "2024-01-01");
    assert_eq!(text("at_time"), "12:34:56.789012");
    assert_eq!(text("local_ts"), "2024-01-01T00:00:00.123456");
    assert_eq!(text("utc_ts"), "2024-01-01T00:00:00.654321Z");
}

impl Harness {
    /// Reads the table `fqn` of Connection `connection` (with `filter`, only the rows above the
    /// watermark); a bad row fails the read.
    pub async fn read_table(
        &self,
        connection: &str,
        fqn: &str,
        filter: Option<CursorFilter>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let spec = table_source(connection, fqn);
        self.read_with(spec, filter, DEFAULT_BATCH_BYTES, Rejects::failing())
            .await
    }

    /// The people rows ([`people_rows`]) of the table `fqn`; a failed read fails the test.
    pub async fn table_people(&self, connection: &str, fqn: &str) -> Vec<(i64, Option<String>)> {
        people_rows(&ok(self.read_table(connection, fqn, None).await).1)
    }

    /// Loads `batches` into the table `fqn` of Connection `connection` as `mode` (with
    /// `primaryKey` `key`, `schemaEvolution: addColumns`), counting into `counters`; returns
    /// the rows written.
    pub async fn load(
        &self,
        (connection, fqn): (&str, &str),
        mode: WriteMode,
        key: &[&str],
        batches: Vec<RecordBatch>,
        counters: &Arc<Counters>,
    ) -> Result<u64> {
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .unwrap_or_else(|| panic!("a load of {fqn} needs a batch"));
        let spec = destination(
            connection,
            fqn,
            mode,
            key,
            Some(SchemaEvolution::AddColumns),
        );
        let input = batches.into_iter().map(Ok).collect();
        let outcome = self.write_counted(spec, schema, input, counters).await?;
        Ok(outcome.rows)
    }

    /// Reads what `query` returns through Connection `connection` (asset `fqn` names it in
    /// messages; with `filter`, only the rows above the watermark); a bad row fails the read.
    pub async fn read_query(
        &self,
        connection: &str,
        fqn: &str,
        query: &str,
        filter: Option<CursorFilter>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let spec = SourceSpec {
            query: Some(query.into()),
            ..table_source(connection, fqn)
        };
        self.read_with(spec, filter, DEFAULT_BATCH_BYTES, Rejects::failing())
            .await
    }

    /// The people rows ([`people_rows`]) `query` returns; with `after`, only those above it
    /// on the cursor column `cursor`. A failed read fails the test.
    pub async fn query_people(
        &self,
        connection: &str,
        query: &str,
        cursor: &str,
        after: Option<&str>,
    ) -> Vec<(i64, Option<String>)> {
        let filter = after.map(|after| CursorFilter {
            column: cursor.into(),
            after: after.into(),
        });
        let read = self.read_query(connection, "queried", query, filter).await;
        people_rows(&read.unwrap_or_else(|e| panic!("{e}")).1)
    }

    /// Checks that reading `query` incrementally on a column it does not return fails, and
    /// that the message names the query's asset and the `columns` the query has.
    pub async fn assert_missing_cursor_is_named(
        &self,
        connection: &str,
        query: &str,
        columns: &str,
    ) {
        let filter = CursorFilter {
            column: "changed".into(),
            after: "1".into(),
        };
        let read = self
            .read_query(connection, "queried", query, Some(filter))
            .await;
        let e = match read {
            Ok(_) => panic!("a cursor column the query lacks was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("query of asset \"queried\""), "{e}");
        let named =
            format!("incremental cursor column \"changed\" is not a column (columns: {columns})");
        assert!(e.contains(&named), "{e}");
    }

    /// Writes `request` from an input that stalls after `batch`, and drops the write once
    /// the batch is staged (counted as sent: the staging table exists and holds it, or its
    /// file is being filled), as the engine drops a cancelled step. Fails when the write ends
    /// on its own or stages nothing: a cancel before the load began would prove nothing.
    pub async fn cancel_stalled_write(&self, request: &WriteRequest, batch: RecordBatch) {
        let write = self.sink.write(request, stalled_input(batch));
        super::drop_once_staged(write, || request.counters.snapshot().rows_written > 0).await;
    }
}
