//! Writing a table: the MySQL and MariaDB dialect of the generic SQL sink
//! (`connectors::sql`). MySQL commits DDL implicitly, so tables are created and altered
//! before the load's transaction, and the rows go in one InnoDB transaction:
//!
//! - `append` creates the table when it is missing and inserts every row in one
//!   transaction, so a failed load adds nothing (and a table it created is dropped again).
//! - `overwrite` creates `<table>_synqx_new_<id>` (`CREATE TABLE … LIKE` the table when it
//!   exists, so its keys and indexes are kept), loads it in one transaction, then swaps it in
//!   with one `RENAME TABLE t TO old, new TO t`, which is atomic, and drops the old table.
//!   Until the rename, readers see the old table; a failed or killed load leaves it intact (a
//!   killed one can leave a `_synqx_new_` table behind).
//! - `upsert` needs an existing table to have a unique key on exactly `primaryKey`. Rows are
//!   inserted with `ON DUPLICATE KEY UPDATE` in the load's transaction, in order, so the last
//!   of several rows with one key wins. Inserting directly writes every row once; a staging
//!   table merged with `INSERT … SELECT` would write it twice.
//!
//! Rows are sent as multi-row `INSERT … VALUES` statements (`insert.rs`). `LOAD DATA LOCAL
//! INFILE` is not an alternative with sqlx 0.9: its MySQL driver never announces the
//! `CLIENT_LOCAL_FILES` capability (sqlx-mysql 0.9.0, `connection/stream.rs`) and does not
//! handle the server's local-infile request packet (`connection/executor.rs` lists it as
//! unhandled), so the server refuses the statement.
//!
//! Added columns are nullable and added before the load: safe outside the transaction, since
//! they are NULL in every existing row.

use arrow::datatypes::Field;
use async_trait::async_trait;
use futures::TryStreamExt;

use super::catalog::{table_columns, unique_keys};
use super::config::MysqlConfig;
use super::connect::{Session, connect, database};
use super::ddl::{add_columns, create_table, execute};
use super::insert::{InsertColumn, Inserter};
use super::literal::writable_type;
use super::types::declared_type;
use super::{TableRef, quote, work_table};
use crate::connectors::sql::dialect::{
    ColumnDef, ExistingColumn, LoadKind, LoadTarget, OverwriteAs, Progress, SqlDialect, UpsertPath,
    Write, with_rows,
};
use crate::connectors::sql::quoted_list;
use crate::connectors::sql::{self, ddl::identifiers};
use crate::engine::SchemaStream;
use crate::error::{Error, Result};

#[async_trait]
impl SqlDialect for MysqlConfig {
    type Conn = Session;
    type Table = TableRef;

    const TRANSACTIONAL_DDL: bool = false;
    const UPSERT: UpsertPath = UpsertPath::Direct;
    const OVERWRITE: OverwriteAs = OverwriteAs::LikeExisting;

    fn connection(&self) -> &str {
        &self.connection
    }

    fn table(&self, fqn: &str) -> Result<TableRef> {
        TableRef::parse(self, fqn)
    }

    /// MySQL's column names ignore case.
    fn same_name(a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
    }

    fn work_table(&self, table: &TableRef, role: &str) -> TableRef {
        table.sibling(work_table(&table.table, role))
    }

    fn check_field(&self, at: &str, field: &Field, _in_key: bool) -> Result<()> {
        match writable_type(field.data_type()) {
            Some(_) => Ok(()),
            None => Err(Error::Config(format!(
                "{at}: column \"{}\" has the type {} which MySQL cannot store; cast it to a string or number in a transform first",
                field.name(),
                field.data_type()
            ))),
        }
    }

    fn column_type(&self, conn: &Session, at: &str, field: &Field, in_key: bool) -> Result<String> {
        declared_type(field, in_key, conn.has_uuid_type())
            .map_err(|e| Error::Config(format!("{at}: column \"{}\": {e}", field.name())))
    }

    async fn connect(&self) -> Result<Session> {
        connect(self).await
    }

    async fn close(&self, session: Session) {
        sql::session::close(session.conn).await;
    }

    async fn execute(&self, session: &mut Session, context: &str, statement: &str) -> Result<u64> {
        sql::session::run(&mut session.conn, statement)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| database(self, context.to_string(), e))
    }

    async fn columns(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
    ) -> Result<Option<Vec<ExistingColumn>>> {
        let columns = table_columns(&mut session.conn, write.table)
            .await
            .map_err(|e| database(self, format!("{}: reading its columns", write.at), e))?;
        Ok((!columns.is_empty()).then(|| {
            columns
                .into_iter()
                .map(|c| ExistingColumn {
                    declared: c.column_type.to_ascii_lowercase(),
                    name: c.name,
                })
                .collect()
        }))
    }

    async fn create_table(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
        table: &TableRef,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        create_table(&mut session.conn, table, columns, key, write.at).await
    }

    async fn create_like(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
        table: &TableRef,
    ) -> Result<()> {
        let sql = format!("CREATE TABLE {} LIKE {}", table.sql(), write.table.sql());
        execute(&mut session.conn, sql, || {
            format!("{}: creating \"{}\" to load", write.at, table.table)
        })
        .await
    }

    async fn add_columns(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
        table: &TableRef,
        columns: &[ColumnDef],
    ) -> Result<()> {
        add_columns(&mut session.conn, table, columns, write.at).await
    }

    /// `ON DUPLICATE KEY UPDATE` finds the rows to update through a unique key on exactly the
    /// key columns.
    async fn ensure_unique_key(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
    ) -> Result<()> {
        let (at, key) = (write.at, write.key());
        let keys = unique_keys(&mut session.conn, write.table)
            .await
            .map_err(|e| database(self, format!("{at}: reading its unique keys"), e))?;
        let wanted = normalized(key);
        if keys.iter().any(|k| normalized(k) == wanted) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{at}: upsert needs a unique key on ({}), and the table has none; add one (ALTER TABLE {} ADD UNIQUE ({})) or choose another primaryKey",
            quoted_list(key),
            write.table.sql(),
            identifiers(key, quote)
        )))
    }

    async fn load(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
        target: LoadTarget<'_, TableRef>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let columns: Vec<InsertColumn> = target
            .columns
            .iter()
            .map(|c| InsertColumn {
                index: c.index,
                name: c.name().to_string(),
                // MariaDB's uuid columns take the canonical text form.
                uuid_text: c.declared.starts_with("uuid"),
            })
            .collect();
        let key = match target.kind {
            LoadKind::Upsert(key) => Some(key),
            LoadKind::Insert | LoadKind::Staging { .. } => None,
        };
        let mut inserter = Inserter::new(
            write.at,
            &target.table.sql(),
            &columns,
            key,
            session.statement_bytes,
        );
        let mut batches = with_rows(input);
        while let Some(batch) = batches.try_next().await? {
            inserter
                .insert(&mut session.conn, &batch, progress.outcome.rows)
                .await?;
            progress.sent_batch(&batch, columns.iter().map(|c| c.index));
        }
        Ok(())
    }

    /// One `RENAME TABLE` swaps the loaded table in (atomically, after the load's commit);
    /// then the old one is dropped.
    async fn swap(
        &self,
        session: &mut Session,
        write: &Write<'_, TableRef>,
        loaded: &TableRef,
        existed: bool,
        _columns: &[String],
    ) -> Result<()> {
        let (at, table) = (write.at, write.table);
        let conn = &mut session.conn;
        if !existed {
            let sql = format!("RENAME TABLE {} TO {}", loaded.sql(), table.sql());
            return execute(conn, sql, || {
                format!("{at}: renaming \"{}\" into its place", loaded.table)
            })
            .await;
        }
        let old = table.sibling(work_table(&table.table, "old"));
        let sql = format!(
            "RENAME TABLE {} TO {}, {} TO {}",
            table.sql(),
            old.sql(),
            loaded.sql(),
            table.sql()
        );
        execute(conn, sql, || {
            format!("{at}: swapping \"{}\" into its place", loaded.table)
        })
        .await?;
        // The new rows are in place: a failure to drop the old table only leaves it behind.
        execute(conn, format!("DROP TABLE {}", old.sql()), || {
            format!(
                "{at}: the new rows are in place, but dropping the old table \"{}\" failed; drop it by hand",
                old.table
            )
        })
        .await
    }

    async fn drop_created(&self, session: &mut Session, table: &TableRef) {
        // A table left behind by a broken connection holds no committed rows.
        let _ = execute(
            &mut session.conn,
            format!("DROP TABLE IF EXISTS {}", table.sql()),
            String::new,
        )
        .await;
    }
}

/// Column names as MySQL compares them: without case, in any order.
fn normalized(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    names
}
