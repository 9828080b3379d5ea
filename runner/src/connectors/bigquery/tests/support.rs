//! bigquery-emulator for the tests: a Connection to a dataset of its own, and the source and
//! sink over it.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Fields};
use synqx_api::ConnectionSpec;
use synqx_api::connection::{BigQueryConnection, BigQueryLoadFormat};
use synqx_api::pipeline::WriteMode;

use synqx_testkit::{emulators, unique_name};

use crate::connectors::tests::warehouses::TestConnection;
use crate::error::Result;
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "lakehouse";

pub(super) struct Lakehouse(TestConnection);

impl std::ops::Deref for Lakehouse {
    type Target = TestConnection;

    fn deref(&self) -> &TestConnection {
        &self.0
    }
}

impl Lakehouse {
    /// A dataset of its own on the emulator, loaded with Parquet.
    pub(super) async fn new() -> Self {
        Self::loading(BigQueryLoadFormat::Parquet).await
    }

    /// A dataset of its own on the emulator, loaded in `format`.
    pub(super) async fn loading(format: BigQueryLoadFormat) -> Self {
        let emulators::BigQueryEmulator { url, project } = emulators::bigquery();
        let dataset = unique_name("synqx_t");
        let created = reqwest::Client::new()
            .post(format!("{url}/bigquery/v2/projects/{project}/datasets"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"datasetReference": {"projectId": project, "datasetId": dataset}}).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", emulators::unreachable("bigquery-emulator", &url, e)));
        assert!(
            created.status().is_success(),
            "creating dataset {dataset}: {:?}",
            created.text().await
        );
        Self(TestConnection {
            name: CONNECTION,
            spec: ConnectionSpec {
                bigquery: Some(BigQueryConnection {
                    project,
                    dataset: Some(dataset),
                    endpoint: Some(url),
                    load_format: Some(format),
                    ..Default::default()
                }),
                ..Default::default()
            },
            secrets: Secrets::default(),
        })
    }

    /// The dataset of its own.
    pub(super) fn dataset(&self) -> &str {
        self.spec
            .bigquery
            .as_ref()
            .and_then(|b| b.dataset.as_deref())
            .unwrap_or_default()
    }

    pub(super) async fn write(
        &self,
        fqn: &str,
        mode: WriteMode,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        self.write_keyed(fqn, mode, &[], batches).await
    }
}

/// A RECORD column `point` of two rows: `{x: 5, label: p}` and NULL.
pub(super) fn point_column() -> (Field, arrow::array::ArrayRef) {
    let point = Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
    ]);
    (
        Field::new("point", DataType::Struct(point.clone()), true),
        Arc::new(StructArray::new(
            point,
            vec![
                Arc::new(Int64Array::from(vec![Some(5), None])),
                Arc::new(StringArray::from(vec![Some("p"), None])),
            ],
            Some(vec![true, false].into()),
        )),
    )
}

/// `text` with this test's own names as placeholders: `<dataset>`, and `<staging>` for the
/// load's staging table (`_synqx_stage_<expiry>_<n>`).
pub(super) fn generic(text: &str, dataset: &str) -> String {
    let text = text.replace(dataset, "<dataset>");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("_synqx_stage_") {
        out.push_str(&rest[..at]);
        out.push_str("<staging>");
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
