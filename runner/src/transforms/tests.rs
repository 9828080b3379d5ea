use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use synqx_api::pipeline::Transform;

use super::*;

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
    let out = apply(&transforms, orders(), "clean").await?;
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
    let out = apply(&[t(|t| t.cast = Some(cast))], orders(), "s")
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
        futures::stream::iter(vec![Err(Error::BadRow(
            "orders.csv: line 3: column \"id\": cannot parse \"x\"".into(),
        ))]),
    );
    let out = apply(&[t(|t| t.filter = Some("id > 0".into()))], failing, "s")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err: Result<Vec<RecordBatch>> = out.stream.try_collect().await;
    assert_eq!(
        err.err().map(|e| e.to_string()).as_deref(),
        Some("orders.csv: line 3: column \"id\": cannot parse \"x\"")
    );
}
