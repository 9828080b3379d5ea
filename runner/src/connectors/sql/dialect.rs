//! What one SQL database supplies to the generic sink ([`super::SqlSink`]) and to `sql` steps:
//! its names, its SQL, its transactions and its bulk path. The order of a load (plan the
//! columns, evolve the schema, create, stage, load, merge, swap, commit or roll back) is the
//! sink's, the same for every database.

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, FieldRef};
use async_trait::async_trait;
use futures::{Stream, TryStreamExt};
use synqx_api::pipeline::{Destination, WriteMode};

use crate::engine::{Counters, SchemaStream, WriteOutcome};
use crate::error::{Error, Result};

/// How the rows of an upsert reach the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsertPath {
    /// The bulk path inserts them with the database's own upsert (`ON CONFLICT`, `ON
    /// DUPLICATE KEY UPDATE`), in arrival order, so the last row of a key wins.
    Direct,
    /// They are loaded into a staging table numbered in arrival order and merged from there.
    Staged,
}

/// How the rows of a staging table reach the write's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromStaging {
    /// Merged by the key from a numbered staging table, the last row of a key winning (an
    /// upsert, [`UpsertPath::Staged`]).
    Merge,
    /// Copied as they are (an append, `APPEND_STAGED`).
    Copy,
}

/// How an overwritten table is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteAs {
    /// Like the old table (its keys, indexes and defaults kept), plus the added columns.
    LikeExisting,
    /// From the Arrow schema and `primaryKey`.
    FromSchema,
}

/// A column of an existing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingColumn {
    pub name: String,
    /// Its type as the catalog declares it, lower-case where the database ignores case.
    pub declared: String,
}

/// A column to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub declared: String,
}

/// A column a load writes: where it is in the batches, its field, and its type in the table
/// the rows go to.
#[derive(Clone, Debug)]
pub struct WriteColumn {
    pub index: usize,
    pub field: FieldRef,
    pub declared: String,
}

impl WriteColumn {
    pub fn name(&self) -> &str {
        self.field.name()
    }

    pub fn def(&self) -> ColumnDef {
        ColumnDef {
            name: self.field.name().clone(),
            declared: self.declared.clone(),
        }
    }
}

/// How the bulk path writes into its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind<'a> {
    /// Plain inserts.
    Insert,
    /// Inserts that update the row of an existing key ([`UpsertPath::Direct`]).
    Upsert(&'a [String]),
    /// Into a staging table; `numbered`: it has the arrival ordinal after the columns.
    Staging { numbered: bool },
}

/// Where a load sends its rows: the table, the columns written, and how.
#[derive(Clone, Copy, Debug)]
pub struct LoadTarget<'a, T> {
    pub table: &'a T,
    pub columns: &'a [WriteColumn],
    pub kind: LoadKind<'a>,
}

/// What every step of one write knows: the table as written, how messages name it, and the
/// destination block (its mode and key, for what to do when the server says no).
pub struct Write<'a, T> {
    pub table: &'a T,
    /// `Connection "c", table "t"`: the start of every message.
    pub at: &'a str,
    pub spec: &'a Destination,
}

impl<T> Write<'_, T> {
    pub fn mode(&self) -> WriteMode {
        self.spec.mode()
    }

    pub fn key(&self) -> &[String] {
        &self.spec.primary_key
    }
}

/// Rows and bytes a load sent, in its outcome and in the run's progress; taken back from the
/// progress when the load is not committed.
pub struct Progress<'a> {
    pub outcome: WriteOutcome,
    counters: &'a Counters,
}

impl<'a> Progress<'a> {
    pub fn new(counters: &'a Counters) -> Self {
        Self {
            outcome: WriteOutcome::default(),
            counters,
        }
    }

    /// Counts rows and bytes sent.
    pub fn sent(&mut self, rows: u64, bytes: u64) {
        super::plan::count_sent(&mut self.outcome, self.counters, rows, bytes);
    }

    /// Counts a batch sent: its rows, and the bytes of the columns written (by their
    /// `indexes` in the batch).
    pub fn sent_batch(&mut self, batch: &RecordBatch, indexes: impl Iterator<Item = usize>) {
        let bytes = super::plan::written_bytes(batch, indexes);
        self.sent(batch.num_rows() as u64, bytes);
    }

    /// Takes back what was counted: the load was not committed.
    pub fn take_back(&self) {
        super::plan::uncount(self.counters, &self.outcome);
    }
}

/// The batches of a load's input that hold rows: an empty one needs no statement.
pub fn with_rows(input: SchemaStream) -> impl Stream<Item = Result<RecordBatch>> + Send + Unpin {
    input
        .stream
        .try_filter(|batch| std::future::ready(batch.num_rows() > 0))
}

/// One SQL database, as the generic sink and `sql` steps use it. Every method that talks to
/// the server names what it was doing in its errors, starting with `write.at`, and passes what
/// the server said through the Connection's redactor.
#[async_trait]
pub trait SqlDialect: Send + Sync + 'static {
    /// An open session.
    type Conn: Send;
    /// A table, parsed from an asset FQN; `Display` as messages show it.
    type Table: Clone + PartialEq + Send + Sync + std::fmt::Display;

    /// Whether DDL (CREATE, ALTER, RENAME, DROP) is part of the load's transaction. Where it
    /// is not (MySQL commits it at once), the load's transaction holds only the rows, the
    /// tables a failed load created are dropped again, and an overwrite swaps after the
    /// commit.
    const TRANSACTIONAL_DDL: bool;
    /// How an upsert reaches the table.
    const UPSERT: UpsertPath;
    /// How an overwritten table is created.
    const OVERWRITE: OverwriteAs;
    /// Whether an append into an existing table goes through a staging table (where the
    /// bulk path cannot write into a table of other types than its own).
    const APPEND_STAGED: bool = false;

    /// Name of the Connection, for messages.
    fn connection(&self) -> &str;
    /// The table an asset FQN names.
    fn table(&self, fqn: &str) -> Result<Self::Table>;
    /// Whether two column names are the same to the database.
    fn same_name(a: &str, b: &str) -> bool;
    /// A table created beside `table` for one load: `role` is `new` (an overwrite's) or
    /// `old` (the one swapped out); the name is unique to the load.
    fn work_table(&self, table: &Self::Table, role: &str) -> Self::Table;
    /// Refuses, before connecting, a column the database cannot store.
    fn check_field(&self, at: &str, field: &Field, in_key: bool) -> Result<()>;
    /// The type a new column for `field` is created with.
    fn column_type(
        &self,
        conn: &Self::Conn,
        at: &str,
        field: &Field,
        in_key: bool,
    ) -> Result<String>;

    /// The statement that starts the load's transaction.
    const BEGIN: &'static str = "BEGIN";

    /// Opens a session (with retries of transient failures).
    async fn connect(&self) -> Result<Self::Conn>;
    /// Starts a transaction.
    async fn begin(&self, conn: &mut Self::Conn, at: &str) -> Result<()> {
        let context = format!("{at}: starting a transaction");
        self.execute(conn, &context, Self::BEGIN).await.map(drop)
    }
    /// Commits it.
    async fn commit(&self, conn: &mut Self::Conn, at: &str) -> Result<()> {
        let context = format!("{at}: committing");
        self.execute(conn, &context, "COMMIT").await.map(drop)
    }
    /// Rolls back what is open. The error that caused it matters more than a failed
    /// rollback, and closing the session rolls back anyway.
    async fn roll_back(&self, conn: &mut Self::Conn) {
        let _ = self.execute(conn, "rolling back", "ROLLBACK").await;
    }
    /// Ends the session.
    async fn close(&self, conn: Self::Conn);
    /// Runs one statement of a `sql` step, as written; returns the rows it affected.
    async fn execute(&self, conn: &mut Self::Conn, context: &str, statement: &str) -> Result<u64>;

    /// The columns of the table, `None` when it does not exist.
    async fn columns(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
    ) -> Result<Option<Vec<ExistingColumn>>>;
    /// Creates `table` with the columns and, when given, the primary key.
    async fn create_table(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        table: &Self::Table,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()>;
    /// Creates `table` like the write's table. Called only with [`OverwriteAs::LikeExisting`].
    async fn create_like(
        &self,
        _conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        _table: &Self::Table,
    ) -> Result<()> {
        Err(not_this_way(write, "create a table like another"))
    }
    /// Adds nullable columns to `table`.
    async fn add_columns(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        table: &Self::Table,
        columns: &[ColumnDef],
    ) -> Result<()>;
    /// Makes sure the existing table has a unique key on exactly `key`, which an upsert
    /// needs: creates one, or says how to.
    async fn ensure_unique_key(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
    ) -> Result<()>;
    /// Creates the staging table of a load into the write's table, for the columns written
    /// and, when `numbered`, the arrival ordinal after them. It goes with the session or the
    /// transaction. Called only with [`UpsertPath::Staged`] or `APPEND_STAGED`, as is
    /// `move_staged`.
    async fn create_staging(
        &self,
        _conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        _columns: &[WriteColumn],
        _numbered: bool,
    ) -> Result<Self::Table> {
        Err(not_this_way(write, "stage rows"))
    }
    /// Sends every batch of `input` into the target by the database's bulk path, counting
    /// what it sent.
    async fn load(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        target: LoadTarget<'_, Self::Table>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()>;
    /// Moves the rows of a staging table into the write's table, as `how` says; `columns` are
    /// those written.
    async fn move_staged(
        &self,
        _conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        _staging: &Self::Table,
        _columns: &[String],
        _how: FromStaging,
    ) -> Result<()> {
        Err(not_this_way(write, "move staged rows"))
    }
    /// Puts the loaded table in place of the write's table (`existed`: there is one to
    /// replace); `columns` are those written, for what of the old table to carry over.
    async fn swap(
        &self,
        conn: &mut Self::Conn,
        write: &Write<'_, Self::Table>,
        loaded: &Self::Table,
        existed: bool,
        columns: &[String],
    ) -> Result<()>;
    /// Drops a table a failed load created. Called only where DDL is not transactional
    /// (elsewhere the rollback takes it). Best effort: the error that stopped the load
    /// matters more.
    async fn drop_created(&self, _conn: &mut Self::Conn, _table: &Self::Table) {}
}

/// The error of a step a dialect's constants say it never takes: a defect of the dialect.
pub fn not_this_way<T>(write: &Write<'_, T>, what: &str) -> Error {
    Error::Config(format!(
        "{}: this database's connector does not {what}; its SqlDialect constants and methods disagree",
        write.at
    ))
}
