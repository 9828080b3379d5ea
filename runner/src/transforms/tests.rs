use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use synqx_api::pipeline::Transform;

use super::*;
use crate::error::BadRow;

/// The default budget, spilling to the system's temporary folder.
fn budget() -> MemoryBudget {
    MemoryBudget {
        bytes: memory::DEFAULT_BUDGET,
        from: "the default".into(),
        scratch: std::env::temp_dir(),
    }
}

fn orders() -> SchemaStream {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("Status", DataType::Utf8, true),
        Field::new("total", DataType::Float64, true),
        Field::new("email", DataType::Utf8, true),
    ]));
    let batch = |ids: Vec<i64>,
                 status: Vec<Option<&str>>,
                 total: Vec<Option<f64>>,
                 email: Vec<Option<&str>>| {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(status)),
            Arc::new(Float64Array::from(total)),
            Arc::new(StringArray::from(email)),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    };
    let b1 = batch(
        vec![1, 2],
        vec![Some("paid"), Some("test")],
        vec![Some(10.5), Some(1.0)],
        vec![Some("a@x.io"), None],
    );
    let b2 = batch(
        vec![3],
        vec![Some("paid")],
        vec![None],
        vec![Some("b@x.io")],
    );
    let batches: Vec<crate::Result<RecordBatch>> = vec![b1, b2]
        .into_iter()
        .map(|b| b.map_err(|e| Error::arrow("test", e)))
        .collect();
    SchemaStream::new(schema, futures::stream::iter(batches))
}

async fn run(transforms: Vec<Transform>) -> Result<(Vec<String>, Vec<RecordBatch>)> {
    let out = apply(&transforms, orders(), "clean", &budget()).await?;
    let names = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = out.stream.try_collect().await?;
    Ok((names, batches))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn t(f: impl FnOnce(&mut Transform)) -> Transform {
    let mut t = Transform::default();
    f(&mut t);
    t
}

#[tokio::test]
async fn column_transforms_shape_the_schema() {
    let rename: BTreeMap<String, String> = [("total".to_string(), "amount".to_string())].into();
    let (names, batches) = run(vec![
        t(|t| t.select = Some(vec!["id".into(), "total".into(), "Status".into()])),
        t(|t| t.rename = Some(rename)),
        t(|t| t.drop = Some(vec!["Status".into()])),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, ["id", "amount"]);
    assert_eq!(rows(&batches), 3);
}

#[tokio::test]
async fn filter_and_derive_use_sql_expressions_with_case_kept() {
    let derive: BTreeMap<String, String> =
        [("with_tax".to_string(), "total * 1.2".to_string())].into();
    let (names, batches) = run(vec![
        t(|t| t.filter = Some("\"Status\" <> 'test'".into())),
        t(|t| t.derive = Some(derive)),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, ["id", "Status", "total", "email", "with_tax"]);
    assert_eq!(rows(&batches), 2);
    let col = batches[0]
        .column(4)
        .as_any()
        .downcast_ref::<Float64Array>()
        .map(|a| a.value(0));
    assert_eq!(col, Some(12.6));
}

#[tokio::test]
async fn cast_changes_types_in_place() {
    let cast: BTreeMap<String, String> =
        [("total".to_string(), "decimal(10,2)".to_string())].into();
    let out = apply(&[t(|t| t.cast = Some(cast))], orders(), "s", &budget())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.schema.field(2).data_type(),
        &DataType::Decimal128(10, 2)
    );
    assert_eq!(out.schema.field(2).name(), "total");
}

#[tokio::test]
async fn hash_replaces_values_by_sha256_and_keeps_nulls() {
    let (_, batches) = run(vec![t(|t| t.hash = Some(vec!["email".into()]))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let emails = batches[0]
        .column(3)
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|a| (a.value(0).to_string(), a.is_null(1)));
    assert_eq!(
        emails,
        Some((
            "aa8a6b1226018606fb52fd4fb5e6f407d7a610c996250306acf156a247c08e26".to_string(),
            true
        ))
    );
}

#[tokio::test]
async fn sql_reads_the_input_table() {
    let (names, batches) = run(vec![t(|t| {
        t.sql = Some(
            "SELECT \"Status\", count(*) AS n FROM input GROUP BY \"Status\" ORDER BY \"Status\""
                .into(),
        )
    })])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, ["Status", "n"]);
    assert_eq!(rows(&batches), 2);
}

#[tokio::test]
async fn a_sql_transform_runs_queries_only_and_reaches_no_file() {
    let token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let out = std::env::temp_dir().join(format!("synqx-copy-{}.csv", std::process::id()));
    let attempts = [
        (
            format!("CREATE EXTERNAL TABLE t (x VARCHAR) STORED AS CSV LOCATION '{token}'"),
            "CREATE EXTERNAL TABLE",
        ),
        (
            format!(
                "COPY (SELECT * FROM input) TO '{}' STORED AS CSV",
                out.display()
            ),
            "COPY … TO",
        ),
        (
            "CREATE TABLE t AS SELECT * FROM input".to_string(),
            "CREATE TABLE",
        ),
        (
            "CREATE VIEW v AS SELECT * FROM input".to_string(),
            "CREATE VIEW",
        ),
        ("DROP TABLE input".to_string(), "DROP TABLE"),
        (
            "INSERT INTO input VALUES (1, 'x', 1.0, 'y')".to_string(),
            "INSERT",
        ),
        ("SET datafusion.execution.batch_size = 1".to_string(), "SET"),
        ("SELECT 1; SELECT 2".to_string(), "more than one statement"),
    ];
    for (sql, what) in attempts {
        let err = run(vec![t(|t| t.sql = Some(sql.clone()))])
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                "step \"clean\": transforms[0] (sql): {what} is not allowed: a sql transform runs one query over its input"
            )),
            "{sql}: {err}"
        );
    }
    assert!(!out.exists(), "COPY wrote {}", out.display());

    // Nor can a query reach the file system by itself.
    let ctx = session(&budget()).unwrap_or_else(|e| panic!("{e}"));
    let local = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
    assert!(ctx.runtime_env().object_store(&local).is_err());
}

#[tokio::test]
async fn unknown_columns_name_step_and_transform() {
    let err = run(vec![
        t(|t| t.select = Some(vec!["id".into()])),
        t(|t| t.drop = Some(vec!["nope".into()])),
    ])
    .await
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("step \"clean\": transforms[1] (drop): column \"nope\" not found (columns: id)")
    );
}

#[tokio::test]
async fn an_expression_that_does_not_parse_names_step_and_transform() {
    let err = run(vec![t(|t| t.filter = Some("total >> AND".into()))])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("step \"clean\": transforms[0] (filter): "),
        "{err}"
    );
}

#[tokio::test]
async fn source_errors_pass_through_unchanged() {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let failing = SchemaStream::new(
        schema,
        futures::stream::iter(vec![Err(BadRow::new(
            "orders.csv: line 3",
            "cannot parse the value as int64",
        )
        .column("id")
        .value("x")
        .into())]),
    );
    let out = apply(
        &[t(|t| t.filter = Some("id > 0".into()))],
        failing,
        "s",
        &budget(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let err: Result<Vec<RecordBatch>> = out.stream.try_collect().await;
    assert_eq!(
        err.err().map(|e| e.to_string()).as_deref(),
        Some("orders.csv: line 3, column \"id\": cannot parse the value as int64")
    );
}

/// `rows` rows of `(id, payload)`, payloads of 100 characters in a shuffled order, in
/// batches of 10,000.
fn wide(rows: i64) -> SchemaStream {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let out = schema.clone();
    let batches = (0..rows).step_by(10_000).map(move |start| {
        let ids: Vec<i64> = (start..(start + 10_000).min(rows)).collect();
        let payloads: Vec<String> = ids
            .iter()
            .map(|i| format!("{:08}{}", (i * 7919) % rows, "x".repeat(92)))
            .collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(payloads)),
            ],
        )
        .map_err(|e| Error::arrow("test rows", e))
    });
    SchemaStream::new(out, futures::stream::iter(batches))
}

/// A budget whose pool is the smallest, 16 MiB, spilling into `scratch`.
fn small(scratch: &std::path::Path) -> MemoryBudget {
    MemoryBudget {
        bytes: 32 << 20,
        from: MEMORY_VARIABLE.into(),
        scratch: scratch.to_path_buf(),
    }
}

/// Every file below a folder, and its size.
fn spilled(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            spilled(&path)
        } else {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

#[tokio::test]
async fn a_sort_larger_than_the_pool_spills_to_the_scratch_folder_and_stays_exact() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rows = 300_000;
    let sort = t(|t| t.sql = Some("SELECT id, payload FROM input ORDER BY payload".into()));
    let out = apply(&[sort], wide(rows), "sort", &small(scratch.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream = out.stream;
    let first = stream
        .try_next()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no rows"));
    // About 30 MB went into a 16 MiB pool: the sorted runs are on disk while they merge.
    let on_disk = spilled(scratch.path());
    assert!(on_disk > 1 << 20, "spilled {on_disk} bytes");
    let mut batches = vec![first];
    while let Some(batch) = stream.try_next().await.unwrap_or_else(|e| panic!("{e}")) {
        batches.push(batch);
    }
    let payloads: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column(1).as_any().downcast_ref::<StringArray>();
            column
                .map(|c| {
                    c.iter()
                        .flatten()
                        .map(|s| s[..8].to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    let expected: Vec<String> = (0..rows).map(|i| format!("{i:08}")).collect();
    assert_eq!(payloads, expected);
}

#[tokio::test]
async fn a_query_that_cannot_fit_names_the_step_the_transform_and_the_budget() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // One group holding every payload: nothing of it can be spilled.
    let transforms = [
        t(|t| t.filter = Some("id >= 0".into())),
        t(|t| t.sql = Some("SELECT array_agg(payload) AS everything FROM input".into())),
    ];
    let out = apply(&transforms, wide(300_000), "bundle", &small(scratch.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let e = out
        .stream
        .try_collect::<Vec<RecordBatch>>()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with(&format!(
            "step \"bundle\": transforms[1] (sql): the query needs more memory than the step's transforms may hold, 16 MiB (half of 32 MiB from SYNQX_STEP_MEMORY), and what it holds could not be spilled to {}: raise the step's memory",
            scratch.path().display()
        )),
        "{e}"
    );
    assert!(e.contains("(Failed to allocate additional"), "{e}");
}
