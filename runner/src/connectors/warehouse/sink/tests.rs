//! The warehouse load against a warehouse that keeps its tables in memory and records every
//! call: what is created, widened, staged, moved, swept and dropped, in which order, and what
//! the table holds after a load that committed or failed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, Int64Array, RecordBatch};
use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use super::*;
use crate::connectors::tests::{destination, err, ok, people, upstream_error};
use crate::connectors::warehouse::Staging;
use crate::error::Error;

const HERE: &str = "Connection \"w\", table \"t\"";

/// A table: its column names and the ids of its rows (the first column of what is staged).
type Stored = (Vec<String>, Vec<i64>);

/// A warehouse of one schema: tables by name.
#[derive(Default)]
struct Memory {
    tables: Mutex<BTreeMap<String, Stored>>,
    calls: Mutex<Vec<String>>,
    /// Fails the staging of the batch with this index.
    fail_staging_at: Option<usize>,
    /// Fails listing the schema's tables.
    fail_listing: bool,
}

impl Memory {
    fn with_table(name: &str, columns: &[&str], ids: &[i64]) -> Self {
        let memory = Memory::default();
        lock(&memory.tables).insert(
            name.into(),
            (
                columns.iter().map(|c| c.to_string()).collect(),
                ids.to_vec(),
            ),
        );
        memory
    }

    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn table(&self, name: &str) -> Option<Stored> {
        lock(&self.tables).get(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        lock(&self.tables).keys().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Staging tables are named `stage_…` here; the calls name them `<stage>`.
fn shown(name: &str) -> &str {
    if name.starts_with(Memory::STAGE) {
        "<stage>"
    } else {
        name
    }
}

#[async_trait]
impl Warehouse for Memory {
    type Table = String;
    type Column = String;
    const STAGE: &'static str = "stage_";

    fn same_name(a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
    }

    fn column(&self, _here: &str, field: &Field) -> Result<String> {
        Ok(field.name().clone())
    }

    fn beside(&self, _table: &String, name: &str) -> String {
        name.into()
    }

    async fn existing_columns(&self, table: &String) -> Result<Option<Vec<String>>> {
        Ok(self.table(table).map(|(columns, _)| columns))
    }

    async fn create_target(
        &self,
        table: &String,
        columns: &[String],
        key: &[String],
    ) -> Result<()> {
        self.record(format!("create {table} {columns:?} key {key:?}"));
        lock(&self.tables).insert(table.clone(), (columns.to_vec(), Vec::new()));
        Ok(())
    }

    async fn add_column(&self, table: &String, column: &String) -> Result<()> {
        self.record(format!("add {table}.{column}"));
        if let Some((columns, _)) = lock(&self.tables).get_mut(table) {
            columns.push(column.clone());
        }
        Ok(())
    }

    async fn tables_beside(&self, _table: &String) -> Result<Vec<String>> {
        if self.fail_listing {
            return Err(Error::Config("listing refused".into()));
        }
        Ok(self.names())
    }

    async fn drop_work_table(&self, table: &String) -> Result<()> {
        self.record(format!("drop {}", shown(table)));
        lock(&self.tables).remove(table);
        Ok(())
    }

    async fn create_staging(&self, load: &Load<'_, Self>) -> Result<()> {
        self.record(format!("stage {:?}", load.columns));
        lock(&self.tables).insert(load.staging.clone(), (load.columns.to_vec(), Vec::new()));
        Ok(())
    }

    async fn fill_staging(
        &self,
        load: &Load<'_, Self>,
        input: SchemaStream,
        outcome: &mut WriteOutcome,
    ) -> Result<()> {
        let mut filler = Filler {
            memory: self,
            staging: load.staging,
            batches: 0,
        };
        load.stage(input, &mut filler, outcome).await
    }

    async fn move_rows(&self, load: &Load<'_, Self>) -> Result<()> {
        self.record(format!("move {:?}", load.spec.mode()));
        let mut tables = lock(&self.tables);
        let staged = tables
            .get(load.staging)
            .map(|t| t.1.clone())
            .unwrap_or_default();
        if let Some((_, ids)) = tables.get_mut(load.table) {
            match load.spec.mode() {
                WriteMode::Overwrite => *ids = staged,
                WriteMode::Append | WriteMode::Upsert => ids.extend(staged),
            }
        }
        Ok(())
    }
}

struct Filler<'a> {
    memory: &'a Memory,
    staging: &'a String,
    batches: usize,
}

impl Staging for Filler<'_> {
    async fn stage(&mut self, batch: RecordBatch) -> Result<()> {
        if self.memory.fail_staging_at == Some(self.batches) {
            return Err(upstream_error());
        }
        self.batches += 1;
        let ids: Vec<i64> = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.iter().flatten().collect())
            .unwrap_or_default();
        if let Some((_, rows)) = lock(&self.memory.tables).get_mut(self.staging) {
            rows.extend(ids);
        }
        Ok(())
    }
}

fn request(mode: WriteMode, evolution: Option<SchemaEvolution>) -> WriteRequest {
    WriteRequest {
        batch_bytes: 1,
        ..WriteRequest::to(destination("w", "t", mode, &["id"], evolution))
    }
}

fn input(batches: Vec<crate::error::Result<RecordBatch>>) -> SchemaStream {
    SchemaStream::new(people(&[]).schema(), futures::stream::iter(batches))
}

/// Writes [`two_batches`] into the table `t` of `memory`.
async fn load_t(memory: &Memory, request: &WriteRequest) -> Result<WriteOutcome> {
    write(memory, HERE, &"t".into(), request, two_batches()).await
}

fn two_batches() -> SchemaStream {
    input(vec![
        Ok(people(&[(1, Some("ada")), (2, None)])),
        Ok(people(&[(3, Some("cy"))])),
    ])
}

#[tokio::test]
async fn a_missing_table_is_created_with_its_key_then_filled_through_a_dropped_staging_table() {
    let memory = Memory::default();
    let request = request(WriteMode::Append, None);
    let outcome = ok(load_t(&memory, &request).await);

    assert_eq!(
        memory.calls(),
        [
            r#"create t ["id", "name"] key ["id"]"#,
            r#"stage ["id", "name"]"#,
            "move Append",
            "drop <stage>",
        ]
    );
    assert_eq!(
        memory.table("t"),
        Some((vec!["id".to_string(), "name".to_string()], vec![1, 2, 3]))
    );
    assert_eq!(memory.names(), ["t"], "nothing of the load is left");
    assert_eq!(outcome.rows, 3);
    assert_eq!(request.counters.snapshot().rows_written, 3);
}

#[tokio::test]
async fn columns_the_table_lacks_are_added_or_left_out_as_schema_evolution_says() {
    let memory = Memory::with_table("t", &["ID"], &[7]);
    let added = request(WriteMode::Append, Some(SchemaEvolution::AddColumns));
    ok(load_t(&memory, &added).await);
    assert_eq!(
        memory.calls()[..2],
        [r#"add t.name"#, r#"stage ["id", "name"]"#]
    );
    assert_eq!(memory.table("t").map(|t| t.1), Some(vec![7, 1, 2, 3]));

    let memory = Memory::with_table("t", &["ID"], &[7]);
    let ignored = request(WriteMode::Overwrite, Some(SchemaEvolution::Ignore));
    ok(load_t(&memory, &ignored).await);
    assert_eq!(
        memory.calls(),
        [r#"stage ["id"]"#, "move Overwrite", "drop <stage>"],
        "no column added, only the ones the table has staged"
    );
    assert_eq!(
        memory.table("t"),
        Some((vec!["ID".to_string()], vec![1, 2, 3]))
    );

    let memory = Memory::with_table("t", &["ID"], &[7]);
    let refused = request(WriteMode::Append, Some(SchemaEvolution::Fail));
    let e = err(load_t(&memory, &refused).await);
    assert!(
        e.starts_with(HERE) && e.contains("no column \"name\""),
        "{e}"
    );
    assert!(
        memory.calls().is_empty(),
        "refused before anything is created: {:?}",
        memory.calls()
    );
}

#[tokio::test]
async fn a_failed_staging_moves_nothing_drops_its_table_and_takes_back_what_it_counted() {
    let memory = Memory {
        fail_staging_at: Some(1),
        ..Memory::with_table("t", &["id", "name"], &[7])
    };
    let request = request(WriteMode::Overwrite, None);
    let e = err(load_t(&memory, &request).await);
    assert_eq!(e, upstream_error().to_string());
    assert_eq!(memory.calls(), [r#"stage ["id", "name"]"#, "drop <stage>"]);
    assert_eq!(
        memory.table("t").map(|t| t.1),
        Some(vec![7]),
        "the table's rows as they were"
    );
    assert_eq!(memory.names(), ["t"]);
    assert_eq!(
        request.counters.snapshot().rows_written,
        0,
        "the staged batch is not counted"
    );
}

#[tokio::test]
async fn staging_tables_of_killed_loads_are_dropped_and_others_left() {
    let future = SystemTime::now() + Duration::from_secs(3_600);
    let killed = format!("stage_{}_18a3f_1f2_0", 999);
    let running = format!(
        "stage_{}_18a3f_1f2_0",
        future.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    );
    let memory = Memory::with_table("t", &["id", "name"], &[]);
    for name in [&killed, &running, &"stage_of_someone_else".to_string()] {
        lock(&memory.tables).insert(name.clone(), (Vec::new(), Vec::new()));
    }
    let request = request(WriteMode::Append, None);
    ok(load_t(&memory, &request).await);

    assert_eq!(
        memory.calls()[0],
        "drop <stage>",
        "the killed load's table first"
    );
    let mut left = memory.names();
    left.sort();
    assert_eq!(
        left,
        vec![
            running.clone(),
            "stage_of_someone_else".to_string(),
            "t".to_string()
        ]
    );
    assert_eq!(
        request.counters.notes().as_deref(),
        Some(format!("{HERE}: dropped the staging table \"{killed}\" of a killed load").as_str())
    );
}

#[tokio::test]
async fn a_schema_that_cannot_be_listed_is_noted_and_the_load_goes_on() {
    let memory = Memory {
        fail_listing: true,
        ..Memory::with_table("t", &["id", "name"], &[])
    };
    let request = request(WriteMode::Upsert, None);
    ok(load_t(&memory, &request).await);
    assert_eq!(memory.table("t").map(|t| t.1), Some(vec![1, 2, 3]));
    let notes = request.counters.notes().unwrap_or_default();
    assert!(
        notes.starts_with(&format!(
            "{HERE}: staging tables of killed loads were not looked for:"
        )),
        "{notes}"
    );
}

#[tokio::test]
async fn a_load_whose_staging_outlived_its_expiry_moves_nothing() {
    let memory = Memory::with_table("t", &["id", "name"], &[7]);
    let mut request = request(WriteMode::Overwrite, None);
    // A deadline already past: the staged rows may have been swept by another load.
    request.deadline = Some(UNIX_EPOCH + Duration::from_secs(1_000));
    let e = err(load_t(&memory, &request).await);
    assert!(e.contains("nothing was swapped in"), "{e}");
    assert!(
        !memory.calls().iter().any(|c| c.starts_with("move")),
        "{:?}",
        memory.calls()
    );
    assert_eq!(memory.table("t").map(|t| t.1), Some(vec![7]));
    assert_eq!(memory.names(), ["t"], "the staging table is dropped");
}
