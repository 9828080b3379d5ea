//! The order of a load, for each shape of dialect, against a dialect that records what it is
//! asked to do: the SQL Server shape (staged appends and upserts, overwrite from the schema)
//! has no server in the test suite, so this is where its order is proven.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use futures::StreamExt;
use synqx_api::pipeline::{Destination, WriteMode};

use super::*;
use crate::connectors::sql::dialect::{ColumnDef, ExistingColumn, LoadTarget, Progress, Write};
use crate::connectors::tests::{destination, err, ok};
use crate::error::Error;

/// The constants of a dialect shape.
trait Shape: Send + Sync + 'static {
    const TRANSACTIONAL_DDL: bool;
    const UPSERT: UpsertPath;
    const OVERWRITE: OverwriteAs;
    const APPEND_STAGED: bool;
}

/// SQL Server's shape.
struct Staged;
impl Shape for Staged {
    const TRANSACTIONAL_DDL: bool = true;
    const UPSERT: UpsertPath = UpsertPath::Staged;
    const OVERWRITE: OverwriteAs = OverwriteAs::FromSchema;
    const APPEND_STAGED: bool = true;
}

/// MySQL's shape.
struct Autocommit;
impl Shape for Autocommit {
    const TRANSACTIONAL_DDL: bool = false;
    const UPSERT: UpsertPath = UpsertPath::Direct;
    const OVERWRITE: OverwriteAs = OverwriteAs::LikeExisting;
    const APPEND_STAGED: bool = false;
}

/// A dialect that records every step into its session; `existing` is the table it has, and
/// `fail_load` makes the bulk path fail after the first batch.
struct Recorder<S> {
    existing: Option<Vec<&'static str>>,
    fail_load: bool,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    shape: PhantomData<S>,
}

impl<S> Recorder<S> {
    fn new(existing: Option<Vec<&'static str>>, fail_load: bool) -> Self {
        Self {
            existing,
            fail_load,
            log: Arc::default(),
            shape: PhantomData,
        }
    }

    fn note(&self, what: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(what);
        }
    }
}

fn names(columns: &[ColumnDef]) -> String {
    columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.declared))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl<S: Shape> SqlDialect for Recorder<S> {
    type Conn = ();
    type Table = String;
    const TRANSACTIONAL_DDL: bool = S::TRANSACTIONAL_DDL;
    const UPSERT: UpsertPath = S::UPSERT;
    const OVERWRITE: OverwriteAs = S::OVERWRITE;
    const APPEND_STAGED: bool = S::APPEND_STAGED;

    fn connection(&self) -> &str {
        "db"
    }
    fn table(&self, fqn: &str) -> Result<String> {
        Ok(fqn.to_string())
    }
    fn same_name(a: &str, b: &str) -> bool {
        a == b
    }
    fn work_table(&self, table: &String, role: &str) -> String {
        format!("{table}_{role}")
    }
    fn check_field(&self, _at: &str, _field: &Field, _in_key: bool) -> Result<()> {
        Ok(())
    }
    fn column_type(&self, _conn: &(), _at: &str, field: &Field, in_key: bool) -> Result<String> {
        Ok(format!(
            "{}{}",
            field.data_type(),
            if in_key { " key" } else { "" }
        ))
    }
    async fn connect(&self) -> Result<()> {
        self.note("connect".into());
        Ok(())
    }
    async fn begin(&self, _conn: &mut (), _at: &str) -> Result<()> {
        self.note("BEGIN".into());
        Ok(())
    }
    async fn commit(&self, _conn: &mut (), _at: &str) -> Result<()> {
        self.note("COMMIT".into());
        Ok(())
    }
    async fn roll_back(&self, _conn: &mut ()) {
        self.note("ROLLBACK".into());
    }
    async fn close(&self, _conn: ()) {
        self.note("close".into());
    }
    async fn execute(&self, _conn: &mut (), _context: &str, statement: &str) -> Result<u64> {
        self.note(format!("execute {statement}"));
        Ok(1)
    }
    async fn columns(
        &self,
        _conn: &mut (),
        _write: &Write<'_, String>,
    ) -> Result<Option<Vec<ExistingColumn>>> {
        Ok(self.existing.as_ref().map(|names| {
            names
                .iter()
                .map(|n| ExistingColumn {
                    name: n.to_string(),
                    declared: "existing".into(),
                })
                .collect()
        }))
    }
    async fn create_table(
        &self,
        _conn: &mut (),
        _write: &Write<'_, String>,
        table: &String,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        self.note(format!("create {table} ({}) key {key:?}", names(columns)));
        Ok(())
    }
    async fn create_like(
        &self,
        _conn: &mut (),
        write: &Write<'_, String>,
        table: &String,
    ) -> Result<()> {
        self.note(format!("create {table} like {}", write.table));
        Ok(())
    }
    async fn add_columns(
        &self,
        _conn: &mut (),
        _write: &Write<'_, String>,
        table: &String,
        columns: &[ColumnDef],
    ) -> Result<()> {
        self.note(format!("add to {table} ({})", names(columns)));
        Ok(())
    }
    async fn ensure_unique_key(&self, _conn: &mut (), write: &Write<'_, String>) -> Result<()> {
        self.note(format!("unique key {:?}", write.key()));
        Ok(())
    }
    async fn create_staging(
        &self,
        _conn: &mut (),
        _write: &Write<'_, String>,
        columns: &[WriteColumn],
        numbered: bool,
    ) -> Result<String> {
        let defs: Vec<ColumnDef> = columns.iter().map(WriteColumn::def).collect();
        self.note(format!("stage ({}) numbered {numbered}", names(&defs)));
        Ok("stage".into())
    }
    async fn load(
        &self,
        _conn: &mut (),
        _write: &Write<'_, String>,
        target: LoadTarget<'_, String>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let mut stream = input.stream;
        while let Some(batch) = stream.next().await {
            progress.sent(batch?.num_rows() as u64, 1);
            if self.fail_load {
                return Err(Error::bad_row("row 1", "broke"));
            }
        }
        let names: Vec<&str> = target.columns.iter().map(|c| c.name()).collect();
        self.note(format!("load {} {names:?} {:?}", target.table, target.kind));
        Ok(())
    }
    async fn move_staged(
        &self,
        _conn: &mut (),
        write: &Write<'_, String>,
        staging: &String,
        columns: &[String],
        how: FromStaging,
    ) -> Result<()> {
        let verb = match how {
            FromStaging::Merge => "merge",
            FromStaging::Copy => "copy",
        };
        self.note(format!("{verb} {staging} into {} {columns:?}", write.table));
        Ok(())
    }
    async fn swap(
        &self,
        _conn: &mut (),
        write: &Write<'_, String>,
        loaded: &String,
        existed: bool,
        _columns: &[String],
    ) -> Result<()> {
        self.note(format!(
            "swap {loaded} for {} existed {existed}",
            write.table
        ));
        Ok(())
    }
    async fn drop_created(&self, _conn: &mut (), table: &String) {
        self.note(format!("drop {table}"));
    }
}

fn rows() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![Some("a"), None])),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn write<S: Shape>(recorder: Recorder<S>, spec: Destination) -> (Result<u64>, Vec<String>) {
    let log = recorder.log.clone();
    let sink = SqlSink::new(recorder);
    let batch = rows();
    let input = SchemaStream::new(batch.schema(), futures::stream::iter(vec![Ok(batch)]));
    let written = sink
        .write(&WriteRequest::to(spec), input)
        .await
        .map(|o| o.rows);
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    (written, log)
}

fn dest(mode: WriteMode, key: &[&str]) -> Destination {
    destination("db", "t", mode, key, None)
}

#[tokio::test]
async fn staged_appends_and_upserts_go_through_a_staging_table() {
    let (written, log) = write(
        Recorder::<Staged>::new(Some(vec!["id"]), false),
        dest(WriteMode::Append, &[]),
    )
    .await;
    assert_eq!(ok(written), 2);
    assert_eq!(
        log,
        [
            "connect",
            "BEGIN",
            "add to t (name Utf8)",
            "stage (id existing, name Utf8) numbered false",
            "load stage [\"id\", \"name\"] Staging { numbered: false }",
            "copy stage into t [\"id\", \"name\"]",
            "COMMIT",
            "close"
        ]
    );
    let (_, log) = write(
        Recorder::<Staged>::new(None, false),
        dest(WriteMode::Upsert, &["id"]),
    )
    .await;
    assert_eq!(
        log,
        [
            "connect",
            "BEGIN",
            "create t (id Int64 key, name Utf8) key [\"id\"]",
            "stage (id Int64 key, name Utf8) numbered true",
            "load stage [\"id\", \"name\"] Staging { numbered: true }",
            "merge stage into t [\"id\", \"name\"]",
            "COMMIT",
            "close"
        ]
    );
}

#[tokio::test]
async fn an_overwrite_from_the_schema_loads_a_new_table_and_swaps_it_in() {
    let (_, log) = write(
        Recorder::<Staged>::new(Some(vec!["id", "old"]), false),
        dest(WriteMode::Overwrite, &["id"]),
    )
    .await;
    assert_eq!(
        log,
        [
            "connect",
            "BEGIN",
            "create t_new (id Int64 key, name Utf8) key [\"id\"]",
            "load t_new [\"id\", \"name\"] Insert",
            "swap t_new for t existed true",
            "COMMIT",
            "close"
        ]
    );
}

#[tokio::test]
async fn without_transactional_ddl_the_checks_come_first_and_the_swap_after_the_commit() {
    let (_, log) = write(
        Recorder::<Autocommit>::new(Some(vec!["id"]), false),
        dest(WriteMode::Upsert, &["id"]),
    )
    .await;
    assert_eq!(
        log,
        [
            "connect",
            "unique key [\"id\"]",
            "add to t (name Utf8)",
            "BEGIN",
            "load t [\"id\", \"name\"] Upsert([\"id\"])",
            "COMMIT",
            "close"
        ]
    );
    let (_, log) = write(
        Recorder::<Autocommit>::new(Some(vec!["id", "name"]), false),
        dest(WriteMode::Overwrite, &[]),
    )
    .await;
    assert_eq!(
        log,
        [
            "connect",
            "create t_new like t",
            "add to t_new ()",
            "BEGIN",
            "load t_new [\"id\", \"name\"] Insert",
            "COMMIT",
            "swap t_new for t existed true",
            "close"
        ]
    );
}

#[tokio::test]
async fn a_failed_load_rolls_back_and_drops_what_ddl_committed() {
    let (written, log) = write(
        Recorder::<Autocommit>::new(None, true),
        dest(WriteMode::Append, &[]),
    )
    .await;
    assert_eq!(err(written), "row 1: broke");
    assert_eq!(
        log,
        [
            "connect",
            "create t (id Int64, name Utf8) key []",
            "BEGIN",
            "ROLLBACK",
            "drop t",
            "close"
        ]
    );
    let (written, log) = write(
        Recorder::<Staged>::new(None, true),
        dest(WriteMode::Overwrite, &[]),
    )
    .await;
    assert_eq!(err(written), "row 1: broke");
    assert_eq!(
        log,
        [
            "connect",
            "BEGIN",
            "create t_new (id Int64, name Utf8) key []",
            "ROLLBACK",
            "close"
        ]
    );
}

#[tokio::test]
async fn an_upsert_without_a_key_is_refused_before_connecting() {
    let recorder = Recorder::<Staged>::new(None, false);
    let log = recorder.log.clone();
    let (written, _) = write(recorder, dest(WriteMode::Upsert, &[])).await;
    assert_eq!(
        err(written),
        "Connection \"db\", table \"t\": mode upsert needs primaryKey"
    );
    assert!(log.lock().map(|l| l.is_empty()).unwrap_or(false));
}
