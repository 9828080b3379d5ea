//! The one sink of every SQL database. A load plans the columns against the existing table
//! (`schemaEvolution`), checks the key, then writes as its mode promises:
//!
//! - `append` creates the table from the Arrow schema when it is missing (with
//!   `PRIMARY KEY (primaryKey…)` when given), adds the columns it gains, and loads the rows
//!   into it (through a staging table where the dialect's bulk path needs one).
//! - `overwrite` creates a work table beside the old one (like it, or from the Arrow
//!   schema), loads it, and swaps it in. Until the swap, readers see the old table.
//! - `upsert` needs `primaryKey` and a unique key on exactly those columns; rows reach the
//!   table by the database's own upsert or through a staging table merged by key, the last
//!   row of a key winning.
//!
//! Everything happens in one transaction that commits after the last row, so a failed,
//! cancelled or dropped load leaves the table as it was. Where DDL is not transactional
//! (MySQL), the transaction holds the rows, tables the load created are dropped when it
//! fails, and the overwrite's swap follows the commit.

use async_trait::async_trait;
use synqx_api::pipeline::WriteMode;

use super::dialect::{
    ColumnDef, ExistingColumn, FromStaging, LoadKind, LoadTarget, OverwriteAs, Progress,
    SqlDialect, UpsertPath, Write, WriteColumn,
};
use super::plan::{ColumnPlan, check_primary_key, plan_columns, require_key};
use crate::engine::{SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::Result;

/// Writes tables of the database `D` speaks to.
pub struct SqlSink<D> {
    dialect: D,
}

impl<D: SqlDialect> SqlSink<D> {
    pub fn new(dialect: D) -> Self {
        Self { dialect }
    }
}

#[async_trait]
impl<D: SqlDialect> Sink for SqlSink<D> {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        let d = &self.dialect;
        let table = d.table(&request.spec.asset.fqn)?;
        let at = super::at_table(d.connection(), &table);
        let write = Write {
            table: &table,
            at: &at,
            spec: &request.spec,
        };
        // What can be refused without the server is refused before connecting.
        require_key(&at, write.mode(), write.key())?;
        for field in input.schema.fields() {
            let in_key = write.key().iter().any(|k| D::same_name(k, field.name()));
            d.check_field(&at, field, in_key)?;
        }
        let mut conn = d.connect().await?;
        let mut load = Load {
            dialect: d,
            write: &write,
            progress: Progress::new(&request.counters),
            created: Vec::new(),
            open: false,
        };
        let result = load.run(&mut conn, input).await;
        if result.is_err() {
            if load.open {
                d.roll_back(&mut conn).await;
            }
            // The progress counted while sending rows was not committed.
            load.progress.take_back();
            for table in &load.created {
                d.drop_created(&mut conn, table).await;
            }
        }
        d.close(conn).await;
        result.map(|()| load.progress.outcome)
    }
}

/// One load.
struct Load<'a, D: SqlDialect> {
    dialect: &'a D,
    write: &'a Write<'a, D::Table>,
    progress: Progress<'a>,
    /// Tables this load created and must drop when it fails (only where DDL is not
    /// transactional; elsewhere the rollback takes them).
    created: Vec<D::Table>,
    /// Whether a transaction is open.
    open: bool,
}

impl<D: SqlDialect> Load<'_, D> {
    async fn run(&mut self, conn: &mut D::Conn, input: SchemaStream) -> Result<()> {
        let (d, write, at) = (self.dialect, self.write, self.write.at);
        let (mode, key) = (write.mode(), write.key());
        if D::TRANSACTIONAL_DDL {
            self.begin(conn).await?;
        }
        let existing = d.columns(conn, write).await?;
        let names: Option<Vec<&str>> = existing
            .as_ref()
            .map(|columns| columns.iter().map(|c| c.name.as_str()).collect());
        let plan = plan_columns(
            at,
            names.as_deref(),
            &input.schema,
            write.spec.schema_evolution.unwrap_or_default(),
            D::same_name,
        )?;
        let from_schema = existing.is_none()
            || (mode == WriteMode::Overwrite && D::OVERWRITE == OverwriteAs::FromSchema);
        let columns = self.columns(conn, &input, &plan, existing.as_deref(), from_schema)?;
        let written: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
        check_primary_key(
            at,
            mode,
            key,
            &written,
            from_schema || mode == WriteMode::Upsert,
            D::same_name,
        )?;
        let defs: Vec<ColumnDef> = columns.iter().map(WriteColumn::def).collect();
        let added: Vec<ColumnDef> = columns
            .iter()
            .filter(|c| plan.added.contains(&c.index))
            .map(WriteColumn::def)
            .collect();

        // Where the rows go: the table, a work table to swap in, or a staging table.
        let mut loaded = None;
        if mode == WriteMode::Overwrite {
            let new = d.work_table(write.table, "new");
            if from_schema {
                self.create(conn, &new, &defs, key).await?;
            } else {
                d.create_like(conn, write, &new).await?;
                self.created_one(&new);
                d.add_columns(conn, write, &new, &added).await?;
            }
            loaded = Some(new);
        } else if existing.is_some() {
            // Where DDL commits at once, what can refuse the load comes before any change.
            let check_key = mode == WriteMode::Upsert;
            if check_key && !D::TRANSACTIONAL_DDL {
                d.ensure_unique_key(conn, write).await?;
            }
            d.add_columns(conn, write, write.table, &added).await?;
            if check_key && D::TRANSACTIONAL_DDL {
                d.ensure_unique_key(conn, write).await?;
            }
        } else {
            self.create(conn, write.table, &defs, key).await?;
        }
        let staged = match mode {
            WriteMode::Upsert => D::UPSERT == UpsertPath::Staged,
            WriteMode::Append => D::APPEND_STAGED && existing.is_some(),
            WriteMode::Overwrite => false,
        };
        if !D::TRANSACTIONAL_DDL {
            self.begin(conn).await?;
        }
        let staging = match staged {
            true => Some(
                d.create_staging(conn, write, &columns, mode == WriteMode::Upsert)
                    .await?,
            ),
            false => None,
        };
        let kind = match (&staging, mode) {
            (Some(_), mode) => LoadKind::Staging {
                numbered: mode == WriteMode::Upsert,
            },
            (None, WriteMode::Upsert) => LoadKind::Upsert(key),
            (None, _) => LoadKind::Insert,
        };
        let target = LoadTarget {
            table: staging.as_ref().or(loaded.as_ref()).unwrap_or(write.table),
            columns: &columns,
            kind,
        };
        d.load(conn, write, target, input, &mut self.progress)
            .await?;
        if let Some(staging) = &staging {
            let how = match mode {
                WriteMode::Upsert => FromStaging::Merge,
                WriteMode::Append | WriteMode::Overwrite => FromStaging::Copy,
            };
            d.move_staged(conn, write, staging, &written, how).await?;
        }
        if !D::TRANSACTIONAL_DDL {
            self.commit(conn).await?;
            // The rows are in: a table created for them stays, unless the swap fails.
            self.created.retain(|t| Some(t) == loaded.as_ref());
        }
        if let Some(loaded) = &loaded {
            d.swap(conn, write, loaded, existing.is_some(), &written)
                .await?;
            self.created.clear();
        }
        if D::TRANSACTIONAL_DDL {
            self.commit(conn).await?;
        }
        Ok(())
    }

    /// The columns written, in source order, each with its type in the table the rows go to:
    /// the existing column's, or the type the dialect creates for the field.
    fn columns(
        &self,
        conn: &D::Conn,
        input: &SchemaStream,
        plan: &ColumnPlan,
        existing: Option<&[ExistingColumn]>,
        from_schema: bool,
    ) -> Result<Vec<WriteColumn>> {
        let key = self.write.key();
        plan.written
            .iter()
            .map(|&index| {
                let field = input.schema.fields()[index].clone();
                let current = existing
                    .filter(|_| !from_schema)
                    .and_then(|cols| cols.iter().find(|c| D::same_name(&c.name, field.name())));
                let declared = match current {
                    Some(column) => column.declared.clone(),
                    None => {
                        let in_key = key.iter().any(|k| D::same_name(k, field.name()));
                        self.dialect
                            .column_type(conn, self.write.at, &field, in_key)?
                    }
                };
                Ok(WriteColumn {
                    index,
                    field,
                    declared,
                })
            })
            .collect()
    }

    async fn create(
        &mut self,
        conn: &mut D::Conn,
        table: &D::Table,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        self.dialect
            .create_table(conn, self.write, table, columns, key)
            .await?;
        self.created_one(table);
        Ok(())
    }

    /// Remembers a table to drop when the load fails, where the rollback does not take it.
    fn created_one(&mut self, table: &D::Table) {
        if !D::TRANSACTIONAL_DDL {
            self.created.push(table.clone());
        }
    }

    async fn begin(&mut self, conn: &mut D::Conn) -> Result<()> {
        self.dialect.begin(conn, self.write.at).await?;
        self.open = true;
        Ok(())
    }

    async fn commit(&mut self, conn: &mut D::Conn) -> Result<()> {
        self.open = false;
        self.dialect.commit(conn, self.write.at).await
    }
}

#[cfg(test)]
mod tests;
