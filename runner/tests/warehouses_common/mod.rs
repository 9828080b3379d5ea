//! What the tests of the warehouse emulators share beyond `synqx-testkit`: statements and
//! rows read back on fakesnow (its REST API, Arrow results) and bigquery-emulator (its REST
//! API, JSON results), each failing on an error the emulator reports.

#![allow(dead_code)]

use std::io::Cursor;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use base64::Engine;
use serde_json::{Value, json};
use synqx_testkit::emulators;

/// Connection `name` to the fakesnow at `host`, its database `database` (schema `PUBLIC`),
/// with `password` (a SecretValue in YAML: `{value: …}`, `{secretKeyRef: …}`), the document
/// ended. fakesnow takes any account, user and warehouse; these are the tests' own.
pub fn fakesnow_connection(name: &str, host: &str, database: &str, password: &str) -> String {
    format!(
        r#"apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: {name}}}
spec:
  snowflake:
    account: synqx-test
    host: "{host}"
    user: {{value: loader}}
    password: {password}
    warehouse: WH
    database: {database}
    schema: PUBLIC
---
"#
    )
}

/// A session on fakesnow, in `database` (schema `PUBLIC`).
pub struct Fakesnow {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Fakesnow {
    pub async fn login(url: &str, database: &str) -> Self {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!(
                "{url}/session/v1/login-request?databaseName={database}&schemaName=PUBLIC"
            ))
            .header("Content-Type", "application/json")
            .body(r#"{"data": {"LOGIN_NAME": "setup", "PASSWORD": "setup", "SESSION_PARAMETERS": {}}}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", emulators::unreachable("fakesnow", url, e)))
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap_or_else(|e| panic!("fakesnow's login answer: {e}"));
        let token = login["data"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {login}"))
            .to_string();
        Self {
            url: url.to_string(),
            token,
            http,
        }
    }

    /// A session in a new database `database` with its schema `PUBLIC`.
    pub async fn create_database(url: &str, database: &str) -> Self {
        let session = Self::login(url, database).await;
        session
            .exec(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
            .await;
        session
            .exec(&format!("CREATE SCHEMA IF NOT EXISTS {database}.PUBLIC"))
            .await;
        session
    }

    /// Runs `sql`, failing unless it succeeds; the answer's `data`.
    pub async fn exec(&self, sql: &str) -> Value {
        let answer: Value = self
            .http
            .post(format!(
                "{}/queries/v1/query-request?requestId=test",
                self.url
            ))
            .header(
                "Authorization",
                format!("Snowflake Token=\"{}\"", self.token),
            )
            .header("Content-Type", "application/json")
            .body(json!({ "sqlText": sql }).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(answer["success"], true, "{sql}: {answer}");
        answer["data"].clone()
    }

    /// The rows of a query, every value as text (NULL as None).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let data = self.exec(sql).await;
        let Some(encoded) = data["rowsetBase64"].as_str().filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("{sql}: rowsetBase64: {e}"));
        let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.unwrap_or_else(|e| panic!("{sql}: {e}"));
            let columns: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| {
                    arrow::compute::cast(c, &DataType::Utf8)
                        .unwrap_or_else(|e| panic!("{sql}: {e}"))
                })
                .collect();
            for r in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| (!c.is_null(r)).then(|| c.as_string::<i32>().value(r).to_string()))
                        .collect(),
                );
            }
        }
        rows
    }
}

/// bigquery-emulator's REST API for one project.
pub struct BigQuery {
    pub url: String,
    pub project: String,
    http: reqwest::Client,
}

impl BigQuery {
    pub fn new() -> Self {
        let emulators::BigQueryEmulator { url, project } = emulators::bigquery();
        Self {
            url,
            project,
            http: reqwest::Client::new(),
        }
    }

    /// Connection `name` to dataset `dataset` of the project, its API at `endpoint` (the
    /// emulator's, or a proxy's), with the further `bigquery` settings `more` (lines indented
    /// by four), the document ended.
    pub fn connection(&self, name: &str, dataset: &str, endpoint: &str, more: &str) -> String {
        let project = &self.project;
        format!(
            r#"apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: {name}}}
spec:
  bigquery:
    project: {project}
    dataset: {dataset}
    endpoint: "{endpoint}"
{more}---
"#
        )
    }

    fn api(&self, path: &str) -> String {
        format!("{}/bigquery/v2/projects/{}{path}", self.url, self.project)
    }

    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{}",
                emulators::unreachable("bigquery-emulator", &self.url, e)
            )
        });
        let status = response.status();
        let body: Value = response
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(status.is_success(), "{what}: HTTP {status}: {body}");
        body
    }

    pub async fn create_dataset(&self, dataset: &str) {
        let body = json!({"datasetReference": {"projectId": self.project, "datasetId": dataset}});
        self.send(
            &format!("creating dataset {dataset}"),
            post(&self.http, self.api("/datasets"), &body),
        )
        .await;
    }

    /// The names of a dataset's tables.
    pub async fn tables(&self, dataset: &str) -> Vec<String> {
        let answer = self
            .send(
                &format!("listing the tables of {dataset}"),
                self.http
                    .get(self.api(&format!("/datasets/{dataset}/tables"))),
            )
            .await;
        answer["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string))
            .collect()
    }

    /// The rows of a query (one page), every value as text (NULL as None).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let body = json!({"query": sql, "useLegacySql": false, "timeoutMs": 60_000});
        let answer = self
            .send(sql, post(&self.http, self.api("/queries"), &body))
            .await;
        assert_eq!(answer["jobComplete"], true, "{sql}: {answer}");
        answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                row["f"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|cell| cell["v"].as_str().map(str::to_string))
                    .collect()
            })
            .collect()
    }
}

fn post(http: &reqwest::Client, url: String, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}
