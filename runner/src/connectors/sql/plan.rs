//! What every SQL load decides alike before and while it writes: which source columns go into
//! the table and which the table must gain (`schemaEvolution`), whether `primaryKey` fits the
//! columns written, and the progress a load counts.

use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use super::names::quoted_list;
use crate::engine::{Counters, WriteOutcome};
use crate::error::{Error, Result};

/// The source columns of a write, by their index in the source schema, in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnPlan {
    /// The columns written.
    pub written: Vec<usize>,
    /// The columns written that the existing table lacks and is to gain.
    pub added: Vec<usize>,
}

/// Matches the source columns against the existing table's (`None` when there is no table) as
/// `schemaEvolution` says: `addColumns` writes them all and names those to add, `ignore` leaves
/// the missing ones out, `fail` stops with a message listing them. `same_name` is how the
/// database compares column names. `at` starts every message (`Connection "c", table "t"`).
pub fn plan_columns(
    at: &str,
    existing: Option<&[&str]>,
    source: &Schema,
    evolution: SchemaEvolution,
    same_name: fn(&str, &str) -> bool,
) -> Result<ColumnPlan> {
    let mut written: Vec<usize> = (0..source.fields().len()).collect();
    let missing: Vec<usize> = match existing {
        Some(existing) => written
            .iter()
            .copied()
            .filter(|&i| {
                let name = source.field(i).name();
                !existing.iter().any(|e| same_name(e, name))
            })
            .collect(),
        None => Vec::new(),
    };
    let mut added = Vec::new();
    if !missing.is_empty() {
        match evolution {
            SchemaEvolution::Fail => {
                let names: Vec<&String> = missing.iter().map(|&i| source.field(i).name()).collect();
                return Err(Error::Config(format!(
                    "{at}: the table has no column {} of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)",
                    quoted_list(&names)
                )));
            }
            SchemaEvolution::Ignore => written.retain(|i| !missing.contains(i)),
            SchemaEvolution::AddColumns => added = missing,
        }
    }
    if written.is_empty() {
        return Err(Error::Config(format!(
            "{at}: the source has no column to write"
        )));
    }
    Ok(ColumnPlan { written, added })
}

/// An upsert needs `primaryKey`: the columns that identify a row.
pub fn require_key(at: &str, mode: WriteMode, key: &[String]) -> Result<()> {
    if mode == WriteMode::Upsert && key.is_empty() {
        return Err(Error::Config(format!("{at}: mode upsert needs primaryKey")));
    }
    Ok(())
}

/// Checks `primaryKey` against the columns written: an upsert needs one, and when the key is
/// used (`used`: the write creates the table or upserts) every key column must be written.
pub fn check_primary_key<S: AsRef<str>>(
    at: &str,
    mode: WriteMode,
    key: &[String],
    written: &[S],
    used: bool,
    same_name: fn(&str, &str) -> bool,
) -> Result<()> {
    require_key(at, mode, key)?;
    let unknown = key
        .iter()
        .find(|k| !written.iter().any(|c| same_name(c.as_ref(), k)));
    match unknown {
        Some(k) if used || mode == WriteMode::Upsert => Err(Error::Config(format!(
            "{at}: primaryKey column \"{k}\" is not among the columns written ({})",
            quoted_list(written)
        ))),
        _ => Ok(()),
    }
}

/// The in-memory size of the written columns of a batch, the bytes a row-by-row load counts.
pub fn written_bytes(batch: &RecordBatch, indexes: impl Iterator<Item = usize>) -> u64 {
    indexes
        .filter_map(|i| batch.columns().get(i))
        .map(|a| a.get_array_memory_size() as u64)
        .sum()
}

/// Counts rows and bytes sent, in the load's outcome and in the run's progress.
pub fn count_sent(outcome: &mut WriteOutcome, counters: &Counters, rows: u64, bytes: u64) {
    outcome.rows += rows;
    outcome.bytes += bytes;
    Counters::add(&counters.rows_written, rows);
    Counters::add(&counters.bytes_written, bytes);
}

/// Takes back from the run's progress what a load that was not committed counted.
pub fn uncount(counters: &Counters, sent: &WriteOutcome) {
    counters
        .rows_written
        .fetch_sub(sent.rows, Ordering::Relaxed);
    counters
        .bytes_written
        .fetch_sub(sent.bytes, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};

    use super::*;

    const AT: &str = "Connection \"db\", table \"t\"";

    fn schema(names: &[&str]) -> Schema {
        Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, true))
                .collect::<Vec<_>>(),
        )
    }

    fn exact(a: &str, b: &str) -> bool {
        a == b
    }

    fn caseless(a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
    }

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn a_new_table_takes_every_column() {
        let plan = plan_columns(AT, None, &schema(&["a", "b"]), SchemaEvolution::Fail, exact);
        assert_eq!(
            plan.unwrap(),
            ColumnPlan {
                written: vec![0, 1],
                added: vec![]
            }
        );
    }

    #[test]
    fn add_columns_names_the_missing_ones() {
        let source = schema(&["id", "extra", "name"]);
        let plan = plan_columns(
            AT,
            Some(&["id", "name"]),
            &source,
            SchemaEvolution::AddColumns,
            exact,
        );
        assert_eq!(
            plan.unwrap(),
            ColumnPlan {
                written: vec![0, 1, 2],
                added: vec![1]
            }
        );
    }

    #[test]
    fn ignore_leaves_the_missing_ones_out() {
        let source = schema(&["id", "extra", "name"]);
        let plan = plan_columns(
            AT,
            Some(&["id", "name"]),
            &source,
            SchemaEvolution::Ignore,
            exact,
        );
        assert_eq!(
            plan.unwrap(),
            ColumnPlan {
                written: vec![0, 2],
                added: vec![]
            }
        );
    }

    #[test]
    fn fail_lists_the_missing_columns() {
        let source = schema(&["id", "x", "y"]);
        let e = message(plan_columns(
            AT,
            Some(&["id"]),
            &source,
            SchemaEvolution::Fail,
            exact,
        ));
        assert_eq!(
            e,
            "Connection \"db\", table \"t\": the table has no column \"x\", \"y\" of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)"
        );
    }

    #[test]
    fn names_compare_as_the_database_compares_them() {
        let source = schema(&["ID", "Name"]);
        let plan = plan_columns(
            AT,
            Some(&["id", "name"]),
            &source,
            SchemaEvolution::Fail,
            caseless,
        );
        assert_eq!(plan.unwrap().written, vec![0, 1]);
        let e = message(plan_columns(
            AT,
            Some(&["id", "name"]),
            &source,
            SchemaEvolution::Fail,
            exact,
        ));
        assert!(e.contains("\"ID\", \"Name\""), "{e}");
    }

    #[test]
    fn nothing_left_to_write_is_an_error() {
        let source = schema(&["x"]);
        let e = message(plan_columns(
            AT,
            Some(&["id"]),
            &source,
            SchemaEvolution::Ignore,
            exact,
        ));
        assert_eq!(
            e,
            "Connection \"db\", table \"t\": the source has no column to write"
        );
        let e = message(plan_columns(
            AT,
            None,
            &schema(&[]),
            SchemaEvolution::AddColumns,
            exact,
        ));
        assert!(e.ends_with("the source has no column to write"), "{e}");
    }

    #[test]
    fn upsert_needs_a_key() {
        let e = message(check_primary_key(
            AT,
            WriteMode::Upsert,
            &[],
            &["id"],
            false,
            exact,
        ));
        assert_eq!(
            e,
            "Connection \"db\", table \"t\": mode upsert needs primaryKey"
        );
        assert!(check_primary_key(AT, WriteMode::Append, &[], &["id"], true, exact).is_ok());
    }

    #[test]
    fn a_used_key_must_be_written() {
        let key = vec!["nope".to_string()];
        let e = message(check_primary_key(
            AT,
            WriteMode::Append,
            &key,
            &["id", "name"],
            true,
            exact,
        ));
        assert_eq!(
            e,
            "Connection \"db\", table \"t\": primaryKey column \"nope\" is not among the columns written (\"id\", \"name\")"
        );
        let e = message(check_primary_key(
            AT,
            WriteMode::Upsert,
            &key,
            &["id"],
            false,
            exact,
        ));
        assert!(e.contains("primaryKey column \"nope\""), "{e}");
        // Appending to an existing table does not use the key.
        assert!(check_primary_key(AT, WriteMode::Append, &key, &["id"], false, exact).is_ok());
        let key = vec!["ID".to_string()];
        assert!(check_primary_key(AT, WriteMode::Upsert, &key, &["id"], false, caseless).is_ok());
        assert!(check_primary_key(AT, WriteMode::Upsert, &key, &["id"], false, exact).is_err());
    }

    #[test]
    fn counts_and_takes_back_progress() {
        let counters = Counters::default();
        let mut outcome = WriteOutcome::default();
        let batch = RecordBatch::try_new(
            Arc::new(schema(&["a", "b"])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .unwrap();
        let one = written_bytes(&batch, [0].into_iter());
        assert!(one > 0);
        assert_eq!(written_bytes(&batch, [0, 1, 7].into_iter()), 2 * one);
        count_sent(&mut outcome, &counters, 2, one);
        count_sent(&mut outcome, &counters, 2, one);
        assert_eq!((outcome.rows, outcome.bytes), (4, 2 * one));
        assert_eq!(counters.snapshot().rows_written, 4);
        uncount(&counters, &outcome);
        let after = counters.snapshot();
        assert_eq!((after.rows_written, after.bytes_written), (0, 0));
    }
}
