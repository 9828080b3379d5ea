//! The one load of every warehouse (Snowflake, BigQuery): the column plan against the existing
//! table, the table created or widened as `schemaEvolution` says, staging tables of killed
//! loads swept, the rows staged in a table of the load's own, and one statement (or a swap,
//! or one transaction) moving them in. The staging table is dropped after the load, after a
//! failed one too; so a failed, cancelled or killed load leaves the table's rows as they
//! were. What differs between warehouses is behind [`Warehouse`]: their SQL, their names,
//! their bulk path (stage files, load jobs) and how the rows move.
//!
//! Warehouses commit DDL at once, so the table and the columns it gains are created before
//! the rows move; they are empty or nullable and change no row.

use std::fmt::Display;

use arrow::datatypes::Field;
use async_trait::async_trait;
use synqx_api::pipeline::Destination;

use super::{Staging, plan_load, settle, stage_input};
use crate::connectors::staging::Expiry;
use crate::engine::{Counters, SchemaStream, WriteOutcome, WriteRequest};
use crate::error::Result;

/// One warehouse as its load uses it. Every method that talks to the server names what
/// failed in its errors and passes the server's text through the Connection's redactor.
#[async_trait]
pub trait Warehouse: Sync {
    /// A table: `Display` as messages show it.
    type Table: Display + Send + Sync;
    /// A written column as the warehouse declares it.
    type Column: Send + Sync;
    /// How the names of a load's own tables begin, so that a later load can tell them.
    const STAGE: &'static str;

    /// Whether two column names are the same to the warehouse.
    fn same_name(a: &str, b: &str) -> bool;
    /// The column a source field is written as, or an error naming it (`here` is the
    /// destination) when the warehouse cannot store its type.
    fn column(&self, here: &str, field: &Field) -> Result<Self::Column>;
    /// The table called `name` in `table`'s schema or dataset.
    fn beside(&self, table: &Self::Table, name: &str) -> Self::Table;
    /// A new name for a table of this load, expiring at `expiry`.
    fn work_name(&self, expiry: Expiry) -> String {
        expiry.name(Self::STAGE)
    }

    /// The table's column names in order, `None` when there is no such table.
    async fn existing_columns(&self, table: &Self::Table) -> Result<Option<Vec<String>>>;
    /// Creates the missing `table` with `columns` and, where the warehouse records one, the
    /// primary key.
    async fn create_target(
        &self,
        table: &Self::Table,
        columns: &[Self::Column],
        key: &[String],
    ) -> Result<()>;
    /// `ALTER TABLE … ADD COLUMN` for a column the table gains.
    async fn add_column(&self, table: &Self::Table, column: &Self::Column) -> Result<()>;
    /// The names of the tables in `table`'s schema or dataset.
    async fn tables_beside(&self, table: &Self::Table) -> Result<Vec<String>>;
    /// Drops one of the load's own tables, when it exists.
    async fn drop_work_table(&self, table: &Self::Table) -> Result<()>;
    /// Creates the staging table of `load`.
    async fn create_staging(&self, load: &Load<'_, Self>) -> Result<()>;
    /// Drains `input` into the staging table through the warehouse's bulk path (with
    /// [`Load::stage`], which counts what it sends) and returns once the rows are in it.
    async fn fill_staging(
        &self,
        load: &Load<'_, Self>,
        input: SchemaStream,
        outcome: &mut WriteOutcome,
    ) -> Result<()>;
    /// Moves the staged rows into the table as the destination's mode says, at one moment.
    async fn move_rows(&self, load: &Load<'_, Self>) -> Result<()>;
}

/// One load: where it goes, through which staging table, with which source columns.
pub struct Load<'a, W: Warehouse + ?Sized> {
    /// The destination as messages name it.
    pub here: &'a str,
    pub table: &'a W::Table,
    pub staging: &'a W::Table,
    /// The written columns, in the order of the plan.
    pub columns: &'a [W::Column],
    /// The written columns' indexes in the source batches.
    pub indexes: &'a [usize],
    pub spec: &'a Destination,
    /// When the load's own tables belong to nobody any more.
    pub expiry: Expiry,
    /// The step's counters: rows and bytes sent, and notes.
    pub counters: &'a Counters,
}

impl<W: Warehouse + ?Sized> Load<'_, W> {
    /// Drains `input` into `staging` with [`stage_input`]: the written columns of every
    /// batch, counted in `outcome` and in the step's counters.
    pub async fn stage(
        &self,
        input: SchemaStream,
        staging: &mut impl Staging,
        outcome: &mut WriteOutcome,
    ) -> Result<()> {
        stage_input(
            self.here,
            input,
            self.indexes,
            staging,
            outcome,
            self.counters,
        )
        .await
    }
}

/// Writes `input` into `table` (`here` as messages name it). The rows and bytes counted while
/// staging stay counted only when the load committed.
pub async fn write<W: Warehouse>(
    warehouse: &W,
    here: &str,
    table: &W::Table,
    request: &WriteRequest,
    input: SchemaStream,
) -> Result<WriteOutcome> {
    let mut outcome = WriteOutcome::default();
    let loaded = load(warehouse, here, table, request, input, &mut outcome).await;
    settle(loaded, outcome, &request.counters)
}

async fn load<W: Warehouse>(
    warehouse: &W,
    here: &str,
    table: &W::Table,
    request: &WriteRequest,
    input: SchemaStream,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    let spec = &request.spec;
    let counters = &request.counters;
    let schema = input.schema.clone();
    let existing = warehouse.existing_columns(table).await?;
    let existing_names: Option<Vec<&str>> = existing
        .as_ref()
        .map(|names| names.iter().map(String::as_str).collect());
    let plan = plan_load(here, existing_names.as_deref(), &schema, spec, W::same_name)?;
    let columns = plan
        .written
        .iter()
        .map(|&i| warehouse.column(here, schema.field(i)))
        .collect::<Result<Vec<_>>>()?;

    if existing.is_none() {
        warehouse
            .create_target(table, &columns, &spec.primary_key)
            .await?;
    }
    for &i in &plan.added {
        let column = warehouse.column(here, schema.field(i))?;
        warehouse.add_column(table, &column).await?;
    }

    sweep(warehouse, table, here, counters).await;
    let expiry = Expiry::of(request);
    let staging = warehouse.beside(table, &warehouse.work_name(expiry));
    let load = Load {
        here,
        table,
        staging: &staging,
        columns: &columns,
        indexes: &plan.written,
        spec,
        expiry,
        counters,
    };
    warehouse.create_staging(&load).await?;
    let moved = stage_and_move(warehouse, &load, input, outcome).await;
    // Dropped after a failure too; only a killed process leaves a staging table behind.
    let _ = warehouse.drop_work_table(&staging).await;
    moved
}

async fn stage_and_move<W: Warehouse>(
    warehouse: &W,
    load: &Load<'_, W>,
    input: SchemaStream,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    warehouse.fill_staging(load, input, outcome).await?;
    load.expiry.check(load.here)?;
    warehouse.move_rows(load).await
}

/// Drops the load tables of killed loads beside `table` once their expiry passed. Best
/// effort: what fails is noted, never fatal.
async fn sweep<W: Warehouse>(warehouse: &W, table: &W::Table, here: &str, counters: &Counters) {
    let names = match warehouse.tables_beside(table).await {
        Ok(names) => names,
        Err(e) => {
            counters.note(format!(
                "{here}: staging tables of killed loads were not looked for: {e}"
            ));
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for name in names.iter().filter(|n| Expiry::passed(n, W::STAGE, now)) {
        let orphan = warehouse.beside(table, name);
        match warehouse.drop_work_table(&orphan).await {
            Ok(()) => counters.note(format!(
                "{here}: dropped the staging table \"{name}\" of a killed load"
            )),
            Err(e) => counters.note(format!(
                "{here}: dropping the staging table \"{name}\" of a killed load: {e}"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
