//! What the Snowflake and BigQuery sources and sinks decide alike. A source reads the step's
//! query or table, finds its cursor among the result's columns and applies the step's
//! `columns` overrides; a sink is one load ([`sink`]) driven through its [`Warehouse`]: it
//! plans the columns it writes (`schemaEvolution`, `primaryKey`), drains its input into a
//! staging table through a [`Staging`], and keeps the progress it counted only when the load
//! committed. Each connector brings its own SQL, names and I/O.

mod sink;

pub use sink::{Load, Warehouse, write};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use synqx_api::pipeline::Destination;

use super::sql::plan::{
    ColumnPlan, check_primary_key, count_sent, plan_columns, uncount, written_bytes,
};
use crate::engine::{Counters, SchemaStream, WriteOutcome};
use crate::error::{Context, Error, Result};

/// Why an asset FQN names no warehouse table; the caller names the Connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FqnError {
    /// `forms` are the shapes the warehouse takes: `table, schema.table or database.schema.table`.
    #[error("asset fqn \"{fqn}\" must be {forms}")]
    Shape { fqn: String, forms: &'static str },
    /// A BigQuery `table` alone, on a Connection without a default dataset.
    #[error("asset fqn \"{fqn}\" names no dataset and the Connection has no bigquery.dataset")]
    NoDataset { fqn: String },
}

/// How a warehouse compares column names.
pub type SameName = fn(&str, &str) -> bool;

/// The index of the column `wanted` among a result's `columns`, or an error that names what
/// looked for it (`what`: "incremental cursor column") and lists the columns there are.
pub fn column_index(
    here: &str,
    what: &str,
    columns: &[&str],
    wanted: &str,
    same_name: SameName,
) -> Result<usize> {
    columns
        .iter()
        .position(|c| same_name(c, wanted))
        .ok_or_else(|| {
            Error::Config(format!(
                "{here}: {what} \"{wanted}\" is not a column (columns: {})",
                columns.join(", ")
            ))
        })
}

/// A result's schema: its `fields` (one per column of `columns`, the names the warehouse
/// answered with) with the step's `columns` overrides applied, each read as the type it names
/// (cast), which the column's own type must be able to take.
pub fn with_overrides(
    here: &str,
    mut fields: Vec<Field>,
    columns: &[&str],
    overrides: &BTreeMap<String, String>,
    same_name: SameName,
) -> Result<SchemaRef> {
    for (name, type_text) in overrides {
        let index = column_index(here, "columns override", columns, name, same_name)?;
        let data_type = crate::types::parse_arrow(type_text)
            .map_err(|e| Error::Config(format!("{here}: columns override \"{name}\": {e}")))?;
        if !arrow::compute::can_cast_types(fields[index].data_type(), &data_type) {
            return Err(Error::Config(format!(
                "{here}: columns override \"{name}\": {} cannot be read as {data_type}",
                fields[index].data_type()
            )));
        }
        fields[index] = Field::new(fields[index].name(), data_type, true);
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The source columns a load writes into the table whose columns are `existing` (`None`: no
/// table yet, the load creates it), as `schemaEvolution` says, with `primaryKey` checked
/// against them.
fn plan_load(
    here: &str,
    existing: Option<&[&str]>,
    source: &Schema,
    spec: &Destination,
    same_name: SameName,
) -> Result<ColumnPlan> {
    let evolution = spec.schema_evolution.unwrap_or_default();
    let plan = plan_columns(here, existing, source, evolution, same_name)?;
    let written: Vec<&str> = plan
        .written
        .iter()
        .map(|&i| source.field(i).name().as_str())
        .collect();
    check_primary_key(
        here,
        spec.mode(),
        &spec.primary_key,
        &written,
        existing.is_none(),
        same_name,
    )?;
    Ok(plan)
}

/// Where a load puts its rows before one statement moves them into the table.
pub trait Staging {
    /// Takes one batch of the written columns, in the order of the plan.
    fn stage(&mut self, batch: RecordBatch) -> impl Future<Output = Result<()>> + Send;
}

/// Drains `input` into `staging`: the written columns (`indexes`) of every batch, counting the
/// rows and bytes sent in `outcome` and in the step's progress.
pub async fn stage_input(
    here: &str,
    mut input: SchemaStream,
    indexes: &[usize],
    staging: &mut impl Staging,
    outcome: &mut WriteOutcome,
    counters: &Counters,
) -> Result<()> {
    while let Some(batch) = input.stream.next().await {
        let batch = batch?;
        let projected = batch
            .project(indexes)
            .context(|| format!("{here}: selecting the written columns"))?;
        let rows = projected.num_rows() as u64;
        staging.stage(projected).await?;
        let bytes = written_bytes(&batch, indexes.iter().copied());
        count_sent(outcome, counters, rows, bytes);
    }
    Ok(())
}

/// The `MERGE` of an upsert. `source` selects the last staged row of each key; a table row with
/// the same `key` takes the other written `columns`' values, a key the table lacks is
/// inserted. `ident` quotes a name and `same_name` compares two as the warehouse does.
pub fn merge_statement(
    table: &str,
    source: &str,
    columns: &[&str],
    key: &[String],
    ident: fn(&str) -> String,
    same_name: SameName,
) -> String {
    let each = |names: &[&str], shape: &dyn Fn(&str) -> String| -> Vec<String> {
        names.iter().map(|n| shape(&ident(n))).collect()
    };
    let keys: Vec<&str> = key.iter().map(String::as_str).collect();
    let not_key: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !key.iter().any(|k| same_name(k, c)))
        .collect();
    let on = each(&keys, &|k| format!("t.{k} = s.{k}")).join(" AND ");
    let updates = each(&not_key, &|c| format!("{c} = s.{c}"));
    let matched = if updates.is_empty() {
        String::new()
    } else {
        format!(" WHEN MATCHED THEN UPDATE SET {}", updates.join(", "))
    };
    let names = each(columns, &|c| c.to_string()).join(", ");
    let values = each(columns, &|c| format!("s.{c}")).join(", ");
    format!(
        "MERGE INTO {table} AS t USING ({source}) AS s ON {on}{matched} WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
    )
}

/// A Parquet file of `schema` written in memory, as both warehouses load it: zstd-compressed,
/// which Snowflake's `COPY INTO` and BigQuery's load jobs both read.
pub fn parquet_writer(schema: &SchemaRef) -> Result<ArrowWriter<Vec<u8>>, ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
}

/// What a load reports: its outcome when it committed; when it failed nothing was committed,
/// so the progress it counted while staging is taken back.
fn settle(loaded: Result<()>, outcome: WriteOutcome, counters: &Counters) -> Result<WriteOutcome> {
    if loaded.is_err() {
        uncount(counters, &outcome);
    }
    loaded.map(|()| outcome)
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::datatypes::DataType;
    use synqx_api::pipeline::{SchemaEvolution, WriteMode};

    use super::*;
    use crate::connectors::tests::{destination, err, ok, people, upstream_error};

    const HERE: &str = "Connection \"w\", table \"t\"";

    fn caseless(a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
    }

    #[test]
    fn a_missing_column_is_named_with_the_columns_there_are() {
        let columns = ["ID", "UPDATED_AT"];
        assert_eq!(
            ok(column_index(
                HERE,
                "cursor",
                &columns,
                "updated_at",
                caseless
            )),
            1
        );
        assert_eq!(
            err(column_index(
                HERE,
                "incremental cursor column",
                &columns,
                "changed",
                caseless
            )),
            "Connection \"w\", table \"t\": incremental cursor column \"changed\" is not a column (columns: ID, UPDATED_AT)"
        );
    }

    #[test]
    fn overrides_cast_named_columns_and_refuse_what_cannot_be_cast() {
        let fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", DataType::Utf8, true),
        ];
        let columns = ["ID", "AT"];
        let overrides = BTreeMap::from([("at".to_string(), "timestamp".to_string())]);
        let schema = ok(with_overrides(
            HERE,
            fields.clone(),
            &columns,
            &overrides,
            caseless,
        ));
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(
            matches!(schema.field(1).data_type(), DataType::Timestamp(_, None)),
            "{schema:?}"
        );
        let unknown = BTreeMap::from([("nope".to_string(), "int64".to_string())]);
        assert!(
            err(with_overrides(
                HERE,
                fields.clone(),
                &columns,
                &unknown,
                caseless
            ))
            .contains("columns override \"nope\" is not a column (columns: ID, AT)")
        );
        let binary = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", DataType::Binary, true),
        ];
        let to_date = BTreeMap::from([("at".to_string(), "date".to_string())]);
        let e = err(with_overrides(HERE, binary, &columns, &to_date, caseless));
        assert!(
            e.contains("columns override \"at\": Binary cannot be read as Date32"),
            "{e}"
        );
    }

    #[test]
    fn a_load_plan_checks_the_key_against_the_written_columns() {
        let source = people(&[]).schema();
        let upsert = destination("w", "t", WriteMode::Upsert, &["id"], None);
        let plan = ok(plan_load(HERE, None, &source, &upsert, caseless));
        assert_eq!(plan.written, vec![0, 1]);
        let wrong_key = destination("w", "t", WriteMode::Upsert, &["key"], None);
        assert!(
            err(plan_load(HERE, None, &source, &wrong_key, caseless))
                .contains("primaryKey column \"key\" is not among the columns written")
        );
        let ignore = destination(
            "w",
            "t",
            WriteMode::Append,
            &[],
            Some(SchemaEvolution::Ignore),
        );
        let plan = ok(plan_load(HERE, Some(&["ID"]), &source, &ignore, caseless));
        assert_eq!(plan.written, vec![0]);
    }

    /// Keeps what it is given, and fails on the batch numbered `fail_at`.
    #[derive(Default)]
    struct Kept {
        batches: Vec<RecordBatch>,
        fail_at: Option<usize>,
    }

    impl Staging for Kept {
        async fn stage(&mut self, batch: RecordBatch) -> Result<()> {
            if self.fail_at == Some(self.batches.len()) {
                return Err(upstream_error());
            }
            self.batches.push(batch);
            Ok(())
        }
    }

    fn input(batches: Vec<Result<RecordBatch>>) -> SchemaStream {
        SchemaStream::new(people(&[]).schema(), futures::stream::iter(batches))
    }

    #[tokio::test]
    async fn staging_takes_the_written_columns_and_counts_what_it_sent() {
        let batches = vec![
            Ok(people(&[(1, Some("ada")), (2, None)])),
            Ok(people(&[(3, Some("cy"))])),
        ];
        let (counters, mut outcome, mut kept) = (
            Counters::default(),
            WriteOutcome::default(),
            Kept::default(),
        );
        let staged = stage_input(
            HERE,
            input(batches),
            &[1],
            &mut kept,
            &mut outcome,
            &counters,
        );
        ok(staged.await);
        let names: Vec<Option<&str>> = kept
            .batches
            .iter()
            .flat_map(|b| {
                assert_eq!(b.num_columns(), 1);
                b.column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .into_iter()
                    .flatten()
            })
            .collect();
        assert_eq!(names, vec![Some("ada"), None, Some("cy")]);
        assert_eq!(outcome.rows, 3);
        assert!(outcome.bytes > 0);
        assert_eq!(counters.snapshot().rows_written, 3);

        // Settled after a failure, nothing stays counted; after success, all of it.
        assert_eq!(ok(settle(Ok(()), outcome.clone(), &counters)), outcome);
        assert_eq!(counters.snapshot().rows_written, 3);
        assert!(settle(Err(upstream_error()), outcome, &counters).is_err());
        assert_eq!(counters.snapshot().rows_written, 0);
    }

    #[tokio::test]
    async fn a_failure_while_staging_stops_the_load_with_its_error() {
        let batches = vec![Ok(people(&[(1, Some("ada"))])), Ok(people(&[(2, None)]))];
        let mut kept = Kept {
            fail_at: Some(1),
            ..Default::default()
        };
        let (counters, mut outcome) = (Counters::default(), WriteOutcome::default());
        let staged = stage_input(
            HERE,
            input(batches),
            &[0, 1],
            &mut kept,
            &mut outcome,
            &counters,
        );
        assert_eq!(err(staged.await), upstream_error().to_string());
        assert_eq!(outcome.rows, 1, "only the staged batch is counted");
        let broken = vec![Err(upstream_error())];
        let mut nothing = Kept::default();
        let staged = stage_input(
            HERE,
            input(broken),
            &[0],
            &mut nothing,
            &mut outcome,
            &counters,
        );
        assert_eq!(err(staged.await), upstream_error().to_string());
    }
}
