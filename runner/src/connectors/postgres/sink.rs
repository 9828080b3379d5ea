//! Writing a table: the PostgreSQL dialect of the generic SQL sink (`connectors::sql`). Rows
//! move with binary `COPY … FROM STDIN`, and every mode runs in one transaction committed
//! after the last row (DDL included), so an error, a cancel or a killed runner leaves the
//! table as it was:
//!
//! - `overwrite` creates `<table>_synqx_new_<id>` (`LIKE` the old table, so its defaults,
//!   constraints and indexes carry over, or from the Arrow schema when there is none), copies
//!   into it, then drops the old table, renames the new one into its place and names its
//!   indexes as the old ones were.
//! - `upsert` copies into a temporary staging table with an arrival ordinal, then merges it
//!   with `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT (key) DO UPDATE`, so the last row of
//!   a key in one load wins. It needs a unique constraint on the key; a table it creates gets
//!   `PRIMARY KEY (key)`.
//!
//! Table columns the source lacks get their default or NULL. Columns match by exact name.

use arrow::datatypes::Field;
use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor};
use synqx_api::pipeline::WriteMode;

use super::catalog::{self, Column};
use super::config::PostgresConfig;
use super::connect::{connect, database, server_message, sqlstate};
use super::copy_in::CopyInEncoder;
use super::ddl;
use super::types::{PgType, ddl_type};
use super::{Table, quote};
use crate::connectors::sql::ddl::identifiers;
use crate::connectors::sql::dialect::{
    ColumnDef, ExistingColumn, FromStaging, LoadTarget, OverwriteAs, Progress, SqlDialect,
    UpsertPath, Write, WriteColumn, not_this_way,
};
use crate::connectors::sql::session;
use crate::connectors::sql::{quoted_list, unique_suffix};
use crate::engine::SchemaStream;
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

#[async_trait]
impl SqlDialect for PostgresConfig {
    type Conn = PgConnection;
    type Table = Table;

    const TRANSACTIONAL_DDL: bool = true;
    const UPSERT: UpsertPath = UpsertPath::Staged;
    const OVERWRITE: OverwriteAs = OverwriteAs::LikeExisting;

    fn connection(&self) -> &str {
        &self.connection
    }

    fn table(&self, fqn: &str) -> Result<Table> {
        Table::parse(&self.connection, fqn)
    }

    /// Every name is quoted, so PostgreSQL compares it with case.
    fn same_name(a: &str, b: &str) -> bool {
        a == b
    }

    fn work_table(&self, table: &Table, role: &str) -> Table {
        table.sibling(format!("{}_synqx_{role}_{}", table.name, unique_suffix()))
    }

    /// Only columns the load creates need a PostgreSQL type of their own: the COPY encoder
    /// writes into an existing column's type, and says so when it cannot.
    fn check_field(&self, _at: &str, _field: &Field, _in_key: bool) -> Result<()> {
        Ok(())
    }

    fn column_type(
        &self,
        _conn: &PgConnection,
        at: &str,
        field: &Field,
        _in_key: bool,
    ) -> Result<String> {
        ddl_type(field).map_err(|why| {
            Error::Config(format!(
                "{at}: column \"{}\" cannot be stored in PostgreSQL: {why}",
                field.name()
            ))
        })
    }

    async fn connect(&self) -> Result<PgConnection> {
        connect(self).await
    }

    async fn close(&self, conn: PgConnection) {
        session::close(conn).await;
    }

    async fn execute(
        &self,
        conn: &mut PgConnection,
        context: &str,
        statement: &str,
    ) -> Result<u64> {
        session::run(conn, statement)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| database(self, context.to_string(), e))
    }

    async fn columns(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
    ) -> Result<Option<Vec<ExistingColumn>>> {
        let pg = Pg {
            config: self,
            write,
        };
        let schema = &write.table.schema;
        let exists = catalog::schema_exists(conn, schema)
            .await
            .map_err(|e| pg.fail(e, "reading the catalog"))?;
        if !exists {
            return Err(Error::Config(format!(
                "{}: schema \"{schema}\" does not exist in database \"{}\": create it (CREATE SCHEMA {}) or fix asset.fqn",
                write.at,
                self.database,
                quote(schema)
            )));
        }
        let columns = catalog::table_columns(conn, write.table)
            .await
            .map_err(|e| pg.fail(e, "reading its columns"))?;
        Ok(columns.map(|columns| {
            columns
                .into_iter()
                .map(|c| ExistingColumn {
                    name: c.name,
                    declared: c.pg.name,
                })
                .collect()
        }))
    }

    async fn create_table(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        table: &Table,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        Pg {
            config: self,
            write,
        }
        .execute(
            conn,
            ddl::create_table(table, columns, key),
            "creating the table",
        )
        .await
    }

    async fn create_like(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        table: &Table,
    ) -> Result<()> {
        let sql = ddl::create_like(table, write.table);
        Pg {
            config: self,
            write,
        }
        .execute(conn, sql, "creating the new table")
        .await
    }

    async fn add_columns(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        table: &Table,
        columns: &[ColumnDef],
    ) -> Result<()> {
        let pg = Pg {
            config: self,
            write,
        };
        for column in columns {
            let sql = ddl::add_column(table, column);
            pg.execute(conn, sql, "adding a column").await?;
        }
        Ok(())
    }

    async fn ensure_unique_key(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
    ) -> Result<()> {
        Pg {
            config: self,
            write,
        }
        .require_unique_key(conn)
        .await
    }

    /// A temporary table like the target (without its constraints, so duplicate keys can
    /// land) with the arrival ordinal, dropped with the transaction.
    async fn create_staging(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        _columns: &[WriteColumn],
        _numbered: bool,
    ) -> Result<Table> {
        let pg = Pg {
            config: self,
            write,
        };
        let name = format!("synqx_stage_{}", unique_suffix());
        for sql in ddl::create_staging(&name, write.table) {
            pg.execute(conn, sql, "creating the staging table").await?;
        }
        Ok(Table {
            schema: "pg_temp".into(),
            name,
        })
    }

    async fn load(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        target: LoadTarget<'_, Table>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let pg = Pg {
            config: self,
            write,
        };
        let target_sql = target.table.sql();
        let oid = catalog::relation(conn, &target_sql)
            .await
            .map_err(|e| pg.fail(e, "reading the catalog"))?
            .ok_or_else(|| {
                Error::Config(format!("{}: the table {target_sql} vanished", write.at))
            })?;
        let in_table = catalog::columns(conn, oid)
            .await
            .map_err(|e| pg.fail(e, "reading its columns"))?;
        let target_columns = target
            .columns
            .iter()
            .map(|c| {
                in_table
                    .iter()
                    .find(|t| t.name == c.name())
                    .map(|t: &Column| (t.name.clone(), t.pg.clone()))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{}: the table has no column \"{}\"",
                            write.at,
                            c.name()
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        pg.copy(conn, &target_sql, &target_columns, input, progress)
            .await
    }

    /// Only an upsert stages its rows here: they are merged by the key.
    async fn move_staged(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        staging: &Table,
        columns: &[String],
        how: FromStaging,
    ) -> Result<()> {
        if how != FromStaging::Merge {
            return Err(not_this_way(write, "copy staged rows"));
        }
        let sql = ddl::merge(write.table, &staging.name, columns, write.key());
        Pg {
            config: self,
            write,
        }
        .execute(conn, sql, "merging the staged rows")
        .await
    }

    async fn swap(
        &self,
        conn: &mut PgConnection,
        write: &Write<'_, Table>,
        loaded: &Table,
        existed: bool,
        _columns: &[String],
    ) -> Result<()> {
        Pg {
            config: self,
            write,
        }
        .swap(conn, loaded, existed)
        .await
    }
}

/// One write's view of the connection: what its messages say and how it explains failures.
struct Pg<'a> {
    config: &'a PostgresConfig,
    write: &'a Write<'a, Table>,
}

impl Pg<'_> {
    /// Streams the input through one COPY, flushing every [`FLUSH_BYTES`].
    async fn copy(
        &self,
        conn: &mut PgConnection,
        target: &str,
        target_columns: &[(String, PgType)],
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let at = self.write.at;
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
                let first_row = progress.outcome.rows + 1;
                if let Err(e) = encoder.encode(&batch.slice(offset, rows), first_row, &mut buf) {
                    failure = Some(e);
                    break 'batches;
                }
                let bytes = buf.len() - before;
                offset += rows;
                progress.sent(rows as u64, bytes as u64);
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
        let key = self.write.key();
        let oid = catalog::relation(conn, &self.write.table.sql())
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
        Err(Error::Config(format!(
            "{}: upsert needs a primary key or unique constraint on exactly ({}), and the table has none; add one (ALTER TABLE {} ADD PRIMARY KEY ({})) or change primaryKey",
            self.write.at,
            quoted_list(key),
            self.write.table.sql(),
            identifiers(key, quote)
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
            indexes_of(conn, self.write.table).await?
        } else {
            Vec::new()
        };
        let new = indexes_of(conn, loaded).await?;
        for sql in ddl::swap(self.write.table, loaded, existed) {
            self.swap_statement(conn, sql).await?;
        }
        for sql in ddl::index_renames(&self.write.table.schema, &old, &new) {
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
                let said = self.config.redact(server_message(&e));
                Err(Error::database_detail(
                    self.write.at,
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
        let user = &self.config.user;
        let hint = match sqlstate(&e).as_deref() {
            Some("42501") => {
                let privilege = match self.write.mode() {
                    WriteMode::Append => "INSERT",
                    WriteMode::Upsert => "INSERT and UPDATE",
                    WriteMode::Overwrite => {
                        "ownership (to drop and replace it) and CREATE on its schema"
                    }
                };
                format!(
                    "; user \"{user}\" needs {privilege} on {} (creating a table needs CREATE on schema {}): GRANT it, e.g. GRANT INSERT, UPDATE ON {} TO {}",
                    self.write.table.sql(),
                    quote(&self.write.table.schema),
                    self.write.table.sql(),
                    quote(user)
                )
            }
            _ => String::new(),
        };
        database(self.config, format!("{}: {doing}", self.write.at), e)
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
