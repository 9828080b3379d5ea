//! Writing a table with binary `COPY … FROM STDIN`, every mode in one transaction committed
//! after the last row, so an error, a cancel or a killed runner leaves the table as it was:
//!
//! - `append` creates the table from the Arrow schema when it is missing (with
//!   `PRIMARY KEY (primaryKey…)` when given) and copies the rows into it.
//! - `overwrite` creates `<table>_synqx_new_<id>` (`LIKE` the old table, so its defaults,
//!   constraints and indexes carry over, or from the Arrow schema when there is none), copies
//!   into it, then drops the old table and renames the new one into its place. Readers see the
//!   old table until the commit; a failure takes the new table away with the rollback.
//! - `upsert` copies into a temporary staging table with an arrival ordinal, then merges it
//!   with `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT (key) DO UPDATE`, so the last row of
//!   a key in one load wins. It needs a unique constraint on the key; a table it creates gets
//!   `PRIMARY KEY (key)`.
//!
//! Source columns the table lacks follow `schemaEvolution`: `addColumns` adds them, `fail`
//! stops before writing, `ignore` leaves them out. Table columns the source lacks get their
//! default or NULL. Columns match by exact name.

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};
use synqx_api::pipeline::{Destination, WriteMode};

use super::catalog::{self, Column};
use super::config::PostgresConfig;
use super::connect::{connect, database, server_message, sqlstate};
use super::copy_in::CopyInEncoder;
use super::ddl::{self, NewColumn};
use super::types::ddl_type;
use super::{Table, quote};
use crate::connectors::sql::names::{quoted_list, unique_suffix};
use crate::connectors::sql::plan::{
    check_primary_key, commit_or_roll_back, count_sent, plan_columns,
};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// COPY data is sent once this much is encoded: large enough for few round trips, small
/// enough that a load never holds much of itself in memory.
const FLUSH_BYTES: usize = 1024 * 1024;
/// Rows of the first slice encoded, before the encoded size of a row is known.
const FIRST_SLICE_ROWS: usize = 1024;

/// Rows of the next slice, so that it encodes to about one COPY message.
fn rows_per_message(rows: usize, bytes: usize) -> usize {
    (FLUSH_BYTES * rows / bytes.max(1)).clamp(1, 1 << 20)
}

/// Writes tables of a PostgreSQL database.
pub struct PostgresSink {
    pub(super) settings: PostgresConfig,
}

#[async_trait]
impl Sink for PostgresSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let table = Table::parse(&settings.connection, &request.spec.asset.fqn)?;
        let at = settings.at_table(&table);
        if request.spec.mode() == WriteMode::Upsert && request.spec.primary_key.is_empty() {
            return Err(Error::Config(format!(
                "{at}: mode upsert needs primaryKey (the columns that identify a row)"
            )));
        }
        let mut conn = connect(settings).await?;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| database(settings, format!("{at}: starting a transaction"), e))?;
        let mut load = Load {
            settings,
            at: &at,
            table: &table,
            spec: &request.spec,
            counters,
            outcome: WriteOutcome::default(),
        };
        let loaded = load.run(&mut tx, input).await;
        commit_or_roll_back(tx, loaded, counters, &load.outcome, |e| {
            database(settings, format!("{at}: committing"), e)
        })
        .await?;
        Ok(load.outcome)
    }
}

/// One load, inside its transaction.
struct Load<'a> {
    settings: &'a PostgresConfig,
    at: &'a str,
    table: &'a Table,
    spec: &'a Destination,
    counters: &'a Counters,
    /// Rows and COPY bytes sent so far (committed only with the transaction).
    outcome: WriteOutcome,
}

impl Load<'_> {
    async fn run(&mut self, conn: &mut PgConnection, input: SchemaStream) -> Result<()> {
        let at = self.at;
        let exists = catalog::schema_exists(conn, &self.table.schema)
            .await
            .map_err(|e| self.fail(e, "reading the catalog"))?;
        if !exists {
            return Err(Error::Config(format!(
                "{at}: schema \"{}\" does not exist in database \"{}\": create it (CREATE SCHEMA {}) or fix asset.fqn",
                self.table.schema,
                self.settings.database,
                quote(&self.table.schema)
            )));
        }
        let existing = catalog::table_columns(conn, self.table)
            .await
            .map_err(|e| self.fail(e, "reading its columns"))?;
        let mode = self.spec.mode();
        let key = &self.spec.primary_key;

        let existing_names: Option<Vec<&str>> = existing
            .as_ref()
            .map(|columns| columns.iter().map(|c| c.name.as_str()).collect());
        // Columns match by exact name: every name is quoted, so PostgreSQL compares it with case.
        let same_name = |a: &str, b: &str| a == b;
        let plan = plan_columns(
            at,
            existing_names.as_deref(),
            &input.schema,
            self.spec.schema_evolution.unwrap_or_default(),
            same_name,
        )?;
        let (written, added) = (plan.written, plan.added);
        let names: Vec<String> = written
            .iter()
            .map(|&i| input.schema.field(i).name().clone())
            .collect();
        // The key is checked even when the table exists: it is what the table is created with
        // or merged on, and a key that is not written is a mistake in either case.
        check_primary_key(at, mode, key, &names, true, same_name)?;

        let new_columns = |indexes: &[usize]| -> Result<Vec<NewColumn>> {
            indexes
                .iter()
                .map(|&i| {
                    let field = input.schema.field(i);
                    let sql_type = ddl_type(field).map_err(|why| {
                        Error::Config(format!(
                            "{at}: column \"{}\" cannot be stored in PostgreSQL: {why}",
                            field.name()
                        ))
                    })?;
                    Ok(NewColumn {
                        name: field.name().clone(),
                        sql_type,
                    })
                })
                .collect()
        };
        // Where the COPY goes: the table, the table loaded aside, or the staging table.
        let mut loaded = None;
        let mut staging = None;
        let target = match mode {
            WriteMode::Overwrite => {
                let new = self.table.sibling(format!(
                    "{}_synqx_new_{}",
                    self.table.name,
                    unique_suffix()
                ));
                if existing.is_some() {
                    self.execute(
                        conn,
                        ddl::create_like(&new, self.table),
                        "creating the new table",
                    )
                    .await?;
                    for column in new_columns(&added)? {
                        self.execute(conn, ddl::add_column(&new, &column), "adding a column")
                            .await?;
                    }
                } else {
                    let sql = ddl::create_table(&new, &new_columns(&written)?, key);
                    self.execute(conn, sql, "creating the table").await?;
                }
                let sql = new.sql();
                loaded = Some(new);
                sql
            }
            WriteMode::Append | WriteMode::Upsert => {
                if existing.is_some() {
                    for column in new_columns(&added)? {
                        let sql = ddl::add_column(self.table, &column);
                        self.execute(conn, sql, "adding a column").await?;
                    }
                } else {
                    let sql = ddl::create_table(self.table, &new_columns(&written)?, key);
                    self.execute(conn, sql, "creating the table").await?;
                }
                if mode == WriteMode::Upsert {
                    if existing.is_some() {
                        self.require_unique_key(conn).await?;
                    }
                    let name = format!("synqx_stage_{}", unique_suffix());
                    for sql in ddl::create_staging(&name, self.table) {
                        self.execute(conn, sql, "creating the staging table")
                            .await?;
                    }
                    let sql = format!("pg_temp.{}", quote(&name));
                    staging = Some(name);
                    sql
                } else {
                    self.table.sql()
                }
            }
        };
        let oid = catalog::relation(conn, &target)
            .await
            .map_err(|e| self.fail(e, "reading the catalog"))?
            .ok_or_else(|| Error::Config(format!("{at}: the table {target} vanished")))?;
        let columns = catalog::columns(conn, oid)
            .await
            .map_err(|e| self.fail(e, "reading its columns"))?;
        let target_columns = names
            .iter()
            .map(|name| {
                columns
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c: &Column| (c.name.clone(), c.pg.clone()))
                    .ok_or_else(|| {
                        Error::Config(format!("{at}: the table has no column \"{name}\""))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        self.copy(conn, &target, &target_columns, input).await?;

        if let Some(staging) = staging {
            let sql = ddl::merge(self.table, &staging, &names, key);
            self.execute(conn, sql, "merging the staged rows").await?;
        }
        if let Some(loaded) = loaded {
            self.swap(conn, &loaded, existing.is_some()).await?;
        }
        Ok(())
    }

    /// Streams the input through one COPY, flushing every [`FLUSH_BYTES`].
    async fn copy(
        &mut self,
        conn: &mut PgConnection,
        target: &str,
        target_columns: &[(String, super::types::PgType)],
        input: SchemaStream,
    ) -> Result<()> {
        let at = self.at;
        // The encoder picks the written columns out of each batch by name.
        let encoder = CopyInEncoder::new(&input.schema, target_columns, at.to_string())?;
        let names: Vec<String> = target_columns.iter().map(|c| c.0.clone()).collect();
        let mut copy = conn
            .copy_in_raw(&ddl::copy_in(target, &names))
            .await
            .map_err(|e| self.fail(e, "starting the COPY"))?;
        let mut buf = BytesMut::with_capacity(FLUSH_BYTES + FLUSH_BYTES / 4);
        CopyInEncoder::header(&mut buf);
        let mut stream = input.stream;
        let mut failure = None;
        let mut slice_rows = FIRST_SLICE_ROWS;
        'batches: while let Some(item) = stream.next().await {
            let batch = match item {
                Ok(batch) => batch,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            // A batch is encoded a slice at a time, each about one COPY message, so the
            // buffer never holds a whole batch's encoding (several times its Arrow size).
            let mut offset = 0;
            while offset < batch.num_rows() {
                let rows = slice_rows.min(batch.num_rows() - offset);
                let before = buf.len();
                let first_row = self.outcome.rows + 1;
                if let Err(e) = encoder.encode(&batch.slice(offset, rows), first_row, &mut buf) {
                    failure = Some(e);
                    break 'batches;
                }
                let bytes = buf.len() - before;
                offset += rows;
                count_sent(&mut self.outcome, self.counters, rows as u64, bytes as u64);
                slice_rows = rows_per_message(rows, bytes);
                if buf.len() >= FLUSH_BYTES {
                    if let Err(e) = copy.send(&buf[..]).await {
                        failure = Some(self.fail(e, "sending rows"));
                        break 'batches;
                    }
                    buf.clear();
                }
            }
        }
        if let Some(e) = failure {
            // The server discards what it received; the transaction is rolled back after.
            let _ = copy.abort(format!("synqx: {e}")).await;
            return Err(e);
        }
        CopyInEncoder::trailer(&mut buf);
        copy.send(&buf[..])
            .await
            .map_err(|e| self.fail(e, "sending rows"))?;
        copy.finish()
            .await
            .map_err(|e| self.fail(e, "loading rows"))?;
        Ok(())
    }

    /// An upsert into an existing table needs a unique constraint on exactly the key.
    async fn require_unique_key(&self, conn: &mut PgConnection) -> Result<()> {
        let key = &self.spec.primary_key;
        let oid = catalog::relation(conn, &self.table.sql())
            .await
            .map_err(|e| self.fail(e, "reading the catalog"))?;
        let keys = match oid {
            Some(oid) => catalog::unique_keys(conn, oid)
                .await
                .map_err(|e| self.fail(e, "reading its keys"))?,
            None => Vec::new(),
        };
        if catalog::has_unique_key(&keys, key) {
            return Ok(());
        }
        let columns: Vec<String> = key.iter().map(|k| quote(k)).collect();
        Err(Error::Config(format!(
            "{}: upsert needs a primary key or unique constraint on exactly ({}), and the table has none; add one (ALTER TABLE {} ADD PRIMARY KEY ({})) or change primaryKey",
            self.at,
            quoted_list(key),
            self.table.sql(),
            columns.join(", ")
        )))
    }

    /// Puts the loaded table in place of the old one, its indexes named as the old ones.
    async fn swap(&self, conn: &mut PgConnection, loaded: &Table, existed: bool) -> Result<()> {
        let indexes_of = async |conn: &mut PgConnection, table: &Table| -> Result<_> {
            let oid = catalog::relation(conn, &table.sql())
                .await
                .map_err(|e| self.fail(e, "reading the catalog"))?;
            match oid {
                Some(oid) => catalog::indexes(conn, oid)
                    .await
                    .map_err(|e| self.fail(e, "reading its indexes")),
                None => Ok(Vec::new()),
            }
        };
        let old = if existed {
            indexes_of(conn, self.table).await?
        } else {
            Vec::new()
        };
        let new = indexes_of(conn, loaded).await?;
        for sql in ddl::swap(self.table, loaded, existed) {
            self.swap_statement(conn, sql).await?;
        }
        for sql in ddl::index_renames(&self.table.schema, &old, &new) {
            self.execute(conn, sql, "naming the new table's indexes as the old ones")
                .await?;
        }
        Ok(())
    }

    /// A statement of the swap, with a plain message when views or other objects depend on
    /// the old table.
    async fn swap_statement(&self, conn: &mut PgConnection, sql: String) -> Result<()> {
        match conn.execute(AssertSqlSafe(sql)).await {
            Ok(_) => Ok(()),
            Err(e) if sqlstate(&e).as_deref() == Some("2BP01") => {
                let said = self.settings.redact(server_message(&e));
                Err(Error::database_detail(
                    self.at,
                    format!(
                        "overwrite cannot replace the table because other objects depend on it ({said}); the table is unchanged: drop or change those objects first, or write with mode append or upsert"
                    ),
                    e,
                ))
            }
            Err(e) => Err(self.fail(e, "replacing the table")),
        }
    }

    async fn execute(&self, conn: &mut PgConnection, sql: String, doing: &str) -> Result<()> {
        conn.execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| self.fail(e, doing))
    }

    /// A server error of the load, with what to do for the common ones.
    fn fail(&self, e: sqlx::Error, doing: &str) -> Error {
        let user = &self.settings.user;
        let hint = match sqlstate(&e).as_deref() {
            Some("42501") => {
                let privilege = match self.spec.mode() {
                    WriteMode::Append => "INSERT",
                    WriteMode::Upsert => "INSERT and UPDATE",
                    WriteMode::Overwrite => {
                        "ownership (to drop and replace it) and CREATE on its schema"
                    }
                };
                format!(
                    "; user \"{user}\" needs {privilege} on {} (creating a table needs CREATE on schema {}): GRANT it, e.g. GRANT INSERT, UPDATE ON {} TO {}",
                    self.table.sql(),
                    quote(&self.table.schema),
                    self.table.sql(),
                    quote(user)
                )
            }
            _ => String::new(),
        };
        database(self.settings, format!("{}: {doing}", self.at), e)
            .map_detail(|detail| format!("{detail}{hint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_sized_to_one_copy_message() {
        // 1024 rows took 128 KiB: 8192 rows make the next 1 MiB message.
        assert_eq!(rows_per_message(1024, 128 * 1024), 8192);
        // A row larger than a message goes alone; an empty slice does not divide by zero.
        assert_eq!(rows_per_message(1, 5 * FLUSH_BYTES), 1);
        assert_eq!(rows_per_message(10, 0), 1 << 20);
    }
}
