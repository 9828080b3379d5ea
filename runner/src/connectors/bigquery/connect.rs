//! BigQuery's REST API (v2) as the client libraries call it: `jobs.query` then
//! `jobs.getQueryResults` pages for statements and reads, `tables.get/insert/delete`, and load
//! jobs from Parquet files (or newline-delimited JSON) sent as multipart uploads, followed with `jobs.get` until they are
//! done. Every request carries the service account's bearer token (none for an
//! emulator endpoint without a key).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use synqx_api::connection::BigQueryLoadFormat;

use super::auth::TokenSource;
use super::config::BigQueryConfig;
use super::types::TableField;

/// Longest wait for one HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `jobs.query` and `getQueryResults` wait on the server before answering.
const SERVER_WAIT_MS: u64 = 10_000;
/// Rows per result page.
pub const PAGE_ROWS: u64 = 20_000;

pub use crate::connectors::http_api::{Failure, Kind};
use crate::connectors::http_api::{statement, without_url};

/// A client of one Connection.
pub struct Client {
    http: reqwest::Client,
    pub settings: Arc<BigQueryConfig>,
    tokens: Option<TokenSource>,
}

/// One page of a query's result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultPage {
    #[serde(default)]
    pub job_reference: Option<JobReference>,
    #[serde(default)]
    pub schema: Option<TableSchema>,
    #[serde(default)]
    pub rows: Vec<Value>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub job_complete: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    pub job_id: String,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TableSchema {
    #[serde(default)]
    pub fields: Vec<TableField>,
}

impl Client {
    pub fn new(settings: Arc<BigQueryConfig>) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| protocol(&settings, format!("building the HTTP client failed: {e}")))?;
        let tokens = settings.account.clone().map(TokenSource::new);
        Ok(Self {
            http,
            settings,
            tokens,
        })
    }

    fn api(&self, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}{path}",
            self.settings.endpoint, self.settings.project
        )
    }

    /// Sends a request with the bearer token and reads its JSON answer.
    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let settings = &self.settings;
        let mut request = request.header("Accept", "application/json");
        if let Some(tokens) = &self.tokens {
            let token = tokens.token(&self.http).await.map_err(|e| Failure {
                kind: Kind::Unauthorized,
                code: None,
                message: format!(
                    "{}: {what}: {} (service account {}; check bigquery.credentialsJson)",
                    settings.at(),
                    settings.redact(e),
                    tokens.account()
                ),
            })?;
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Failure {
            kind: Kind::Unreachable,
            code: None,
            message: format!(
                "{}: {what}: no answer from {}: {} (check bigquery.endpoint and the network)",
                settings.at(),
                settings.endpoint,
                settings.redact(without_url(&e))
            ),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| Failure {
            kind: Kind::Unreachable,
            code: None,
            message: format!(
                "{}: {what}: the answer broke off: {}",
                settings.at(),
                settings.redact(without_url(&e))
            ),
        })?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|_| {
                let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                protocol(
                    settings,
                    format!("{what}: HTTP {status}, not JSON: {}", excerpt.trim()),
                )
            })?
        };
        if status.is_success() {
            return Ok(value);
        }
        Err(api_failure(settings, what, status.as_u16(), &value))
    }

    /// Runs a statement (`jobs.query`) and waits for its first page.
    pub async fn query(
        &self,
        sql: &str,
        parameters: &[(&str, &str)],
    ) -> Result<ResultPage, Failure> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "maxResults": PAGE_ROWS,
            "timeoutMs": SERVER_WAIT_MS,
        });
        if let Some(location) = &self.settings.location {
            body["location"] = json!(location);
        }
        // A source's `query` names tables as the Connection's asset names do: unqualified
        // ones are in its dataset.
        if let Some(dataset) = &self.settings.dataset {
            body["defaultDataset"] =
                json!({"projectId": self.settings.project, "datasetId": dataset});
        }
        if !parameters.is_empty() {
            body["parameterMode"] = json!("NAMED");
            body["queryParameters"] = json!(
                parameters
                    .iter()
                    .map(|(name, value)| json!({"name": name, "parameterType": {"type": "STRING"}, "parameterValue": {"value": value}}))
                    .collect::<Vec<_>>()
            );
        }
        let what = statement(sql);
        let answer = self
            .send(&what, self.http.post(self.api("/queries")).json_body(&body))
            .await?;
        let mut page: ResultPage = read(&self.settings, &what, answer)?;
        // A statement still running answers without rows: wait for it on getQueryResults.
        while page.job_complete == Some(false) {
            let job = page.job_reference.clone().ok_or_else(|| {
                protocol(
                    &self.settings,
                    format!("{what}: a running job without jobReference"),
                )
            })?;
            page = self.results(&what, &job, None).await?;
        }
        Ok(page)
    }

    /// The next page of a query's result (`jobs.getQueryResults`).
    pub async fn results(
        &self,
        what: &str,
        job: &JobReference,
        page_token: Option<&str>,
    ) -> Result<ResultPage, Failure> {
        let mut query: Vec<(&str, String)> = vec![
            ("maxResults", PAGE_ROWS.to_string()),
            ("timeoutMs", SERVER_WAIT_MS.to_string()),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token.to_string()));
        }
        if let Some(location) = job.location.as_ref().or(self.settings.location.as_ref()) {
            query.push(("location", location.clone()));
        }
        let url = self.api(&format!("/queries/{}", job.job_id));
        let answer = self.send(what, self.http.get(url).query(&query)).await?;
        read(&self.settings, what, answer)
    }

    /// The schema of a table, or `None` when it does not exist.
    pub async fn table(&self, dataset: &str, table: &str) -> Result<Option<TableSchema>, Failure> {
        let url = self.api(&format!("/datasets/{dataset}/tables/{table}"));
        match self
            .send(
                &format!("reading table {dataset}.{table}"),
                self.http.get(url),
            )
            .await
        {
            Ok(answer) => {
                let schema = answer
                    .get("schema")
                    .cloned()
                    .unwrap_or(json!({"fields": []}));
                Ok(Some(read(&self.settings, "tables.get", schema)?))
            }
            Err(f) if f.kind == Kind::NotFound => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// Creates a table (`tables.insert`).
    pub async fn create_table(
        &self,
        dataset: &str,
        table: &str,
        fields: &[TableField],
    ) -> Result<(), Failure> {
        let body = json!({
            "tableReference": {"projectId": self.settings.project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
        });
        let url = self.api(&format!("/datasets/{dataset}/tables"));
        self.send(
            &format!("creating table {dataset}.{table}"),
            self.http.post(url).json_body(&body),
        )
        .await?;
        Ok(())
    }

    /// Deletes a table (`tables.delete`); a missing table is not an error.
    pub async fn drop_table(&self, dataset: &str, table: &str) -> Result<(), Failure> {
        let url = self.api(&format!("/datasets/{dataset}/tables/{table}"));
        match self
            .send(
                &format!("dropping table {dataset}.{table}"),
                self.http.delete(url),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.kind == Kind::NotFound => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// The names of a dataset's tables (`tables.list`, every page).
    pub async fn list_tables(&self, dataset: &str) -> Result<Vec<String>, Failure> {
        let url = self.api(&format!("/datasets/{dataset}/tables"));
        let what = format!("listing the tables of dataset {dataset}");
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("maxResults", "1000".to_string())];
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let answer = self.send(&what, self.http.get(&url).query(&query)).await?;
            let tables = answer.get("tables").and_then(Value::as_array);
            names.extend(tables.into_iter().flatten().filter_map(|t| {
                t.pointer("/tableReference/tableId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }));
            match answer.get("nextPageToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                    token = Some(next.to_string());
                }
                _ => return Ok(names),
            }
        }
    }

    /// Whether a dataset exists (`datasets.get`).
    pub async fn dataset_exists(&self, dataset: &str) -> Result<bool, Failure> {
        let url = self.api(&format!("/datasets/{dataset}"));
        match self
            .send(&format!("reading dataset {dataset}"), self.http.get(url))
            .await
        {
            Ok(_) => Ok(true),
            Err(f) if f.kind == Kind::NotFound => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Appends the rows of a file in the Connection's `loadFormat` to a table with a load job
    /// sent as a multipart upload, and waits until the job is done.
    pub async fn load(
        &self,
        dataset: &str,
        table: &str,
        fields: &[TableField],
        file: Vec<u8>,
    ) -> Result<(), Failure> {
        let job_id = format!("synqx_load_{}", crate::connectors::sql::unique_suffix());
        let metadata = load_job(&self.settings, &job_id, dataset, table, fields);
        let boundary = format!("synqx_{}", crate::connectors::sql::unique_suffix());
        let body = multipart(&boundary, &metadata, file);
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=multipart",
            self.settings.endpoint, self.settings.project
        );
        let what = format!("loading rows into {dataset}.{table}");
        let request = self
            .http
            .post(url)
            .header(
                "Content-Type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body);
        let mut job = self.send(&what, request).await?;
        let mut pause = Duration::from_millis(200);
        loop {
            if let Some(error) = job.pointer("/status/errorResult") {
                return Err(job_failure(&self.settings, &what, error));
            }
            if job.pointer("/status/state").and_then(Value::as_str) == Some("DONE") {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            let mut query = vec![];
            if let Some(location) = &self.settings.location {
                query.push(("location", location.clone()));
            }
            job = self
                .send(
                    &what,
                    self.http
                        .get(self.api(&format!("/jobs/{job_id}")))
                        .query(&query),
                )
                .await?;
        }
    }
}

/// The load job's configuration: append a file into an existing table, read with the table's
/// schema (not `autodetect`); for Parquet, LIST columns are read as repeated fields.
pub fn load_job(
    settings: &BigQueryConfig,
    job_id: &str,
    dataset: &str,
    table: &str,
    fields: &[TableField],
) -> Value {
    let mut reference = json!({"projectId": settings.project, "jobId": job_id});
    if let Some(location) = &settings.location {
        reference["location"] = json!(location);
    }
    let mut load = json!({
        "destinationTable": {"projectId": settings.project, "datasetId": dataset, "tableId": table},
        "writeDisposition": "WRITE_APPEND",
        "createDisposition": "CREATE_NEVER",
        "schema": {"fields": fields},
    });
    match settings.load_format {
        BigQueryLoadFormat::Parquet => {
            load["sourceFormat"] = json!("PARQUET");
            load["parquetOptions"] = json!({"enableListInference": true});
        }
        BigQueryLoadFormat::Json => load["sourceFormat"] = json!("NEWLINE_DELIMITED_JSON"),
    }
    json!({"jobReference": reference, "configuration": {"load": load}})
}

/// A `multipart/related` body: the job as JSON, then the file.
pub fn multipart(boundary: &str, metadata: &Value, file: Vec<u8>) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(file);
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    body
}

trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.to_string())
    }
}

fn read<T: serde::de::DeserializeOwned>(
    settings: &BigQueryConfig,
    what: &str,
    value: Value,
) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|e| protocol(settings, format!("{what}: an unreadable answer: {e}")))
}

fn protocol(settings: &BigQueryConfig, detail: String) -> Failure {
    Failure {
        kind: Kind::Protocol,
        code: None,
        message: format!("{}: {}", settings.at(), settings.redact(detail)),
    }
}

/// An error answer: `{"error": {"code", "message", "errors": [{"reason", …}], "status"}}`.
fn api_failure(settings: &BigQueryConfig, what: &str, status: u16, answer: &Value) -> Failure {
    let error = answer.get("error").cloned().unwrap_or_default();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let reason = error
        .pointer("/errors/0/reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = match (status, reason) {
        (401 | 403, _) | (_, "accessDenied" | "authError") => Kind::Unauthorized,
        (404, _) | (_, "notFound") => Kind::NotFound,
        (500..=599, "internalError" | "backendError") => Kind::Protocol,
        _ => Kind::Statement,
    };
    let advice = match kind {
        Kind::Unauthorized => " (check bigquery.credentialsJson and the service account's roles)",
        Kind::NotFound => " (check bigquery.project, the dataset and the table)",
        _ => "",
    };
    Failure {
        kind,
        code: Some(status.to_string()),
        message: format!(
            "{}: {what}: BigQuery error {status}{}: {}{advice}",
            settings.at(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" {reason}")
            },
            settings.redact(message)
        ),
    }
}

/// A job that ended with `status.errorResult`.
fn job_failure(settings: &BigQueryConfig, what: &str, error: &Value) -> Failure {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let reason = error
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("error");
    Failure {
        kind: if reason == "notFound" {
            Kind::NotFound
        } else {
            Kind::Statement
        },
        code: Some(reason.to_string()),
        message: format!(
            "{}: {what}: the job failed ({reason}): {}",
            settings.at(),
            settings.redact(message)
        ),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::connectors::bigquery::config::service_account;
    use crate::connectors::bigquery::config::tests::key_file;
    use synqx_testkit::http::{Reply, Request, StandIn};

    /// The token endpoint's answer to a service account's JWT.
    pub(in crate::connectors::bigquery) fn token() -> Reply {
        Reply::json(
            200,
            json!({"access_token": "ya29.token", "expires_in": 3599, "token_type": "Bearer"}),
        )
    }

    /// A client with a service account whose token endpoint and API are `replies`, in order.
    pub(in crate::connectors::bigquery) async fn client(replies: Vec<Reply>) -> (Client, StandIn) {
        let stub = StandIn::scripted(replies);
        let account = service_account("bq", &key_file(&format!("{}/token", stub.url()))).unwrap();
        let settings = BigQueryConfig::for_test(&stub.url(), Some(Arc::new(account)), vec![]);
        (Client::new(Arc::new(settings)).unwrap(), stub)
    }

    /// The body of a `jobs.query` call, after checking that it is one: a POST to the project's
    /// queries with the service account's token as bearer.
    pub(in crate::connectors::bigquery) fn jobs_query(request: &Request) -> Value {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/bigquery/v2/projects/proj/queries");
        assert_eq!(request.header("Authorization"), Some("Bearer ya29.token"));
        request.json()
    }

    #[tokio::test]
    async fn a_query_is_jobs_query_with_named_parameters_then_result_pages() {
        // The shapes of jobs.query and jobs.getQueryResults in the v2 reference.
        let (client, stub) = client(vec![
            token(),
            Reply::json(200, json!({"kind": "bigquery#queryResponse", "jobComplete": false,
                                    "jobReference": {"projectId": "proj", "jobId": "job_1", "location": "EU"}})),
            Reply::json(200, json!({"kind": "bigquery#getQueryResultsResponse", "jobComplete": true,
                                    "jobReference": {"projectId": "proj", "jobId": "job_1", "location": "EU"},
                                    "schema": {"fields": [{"name": "id", "type": "INTEGER", "mode": "NULLABLE"}]},
                                    "rows": [{"f": [{"v": "1"}]}], "totalRows": "2", "pageToken": "p2"})),
            Reply::json(200, json!({"jobComplete": true, "rows": [{"f": [{"v": "2"}]}], "totalRows": "2"})),
        ])
        .await;
        let page = client
            .query(
                "SELECT id FROM `d`.`t` WHERE x > CAST(@watermark AS INT64)",
                &[("watermark", "7")],
            )
            .await
            .unwrap();
        assert_eq!(page.rows.len(), 1);
        let job = page.job_reference.clone().unwrap();
        let next = client
            .results("q", &job, page.page_token.as_deref())
            .await
            .unwrap();
        assert_eq!(next.rows, vec![json!({"f": [{"v": "2"}]})]);

        let requests = stub.requests();
        assert_eq!(
            jobs_query(&requests[1]),
            json!({"query": "SELECT id FROM `d`.`t` WHERE x > CAST(@watermark AS INT64)", "useLegacySql": false,
                   "maxResults": PAGE_ROWS, "timeoutMs": SERVER_WAIT_MS, "location": "EU",
                   "defaultDataset": {"projectId": "proj", "datasetId": "ds"}, "parameterMode": "NAMED",
                   "queryParameters": [{"name": "watermark", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "7"}}]})
        );
        assert_eq!(requests[2].method, "GET");
        assert_eq!(
            requests[2].path(),
            "/bigquery/v2/projects/proj/queries/job_1"
        );
        assert_eq!(requests[2].query("location").as_deref(), Some("EU"));
        assert_eq!(requests[3].query("pageToken").as_deref(), Some("p2"));
        // One token for all four calls.
        assert_eq!(requests.iter().filter(|r| r.path() == "/token").count(), 1);
    }

    #[tokio::test]
    async fn a_load_is_a_multipart_upload_followed_until_done() {
        let (client, stub) = client(vec![
            token(),
            Reply::json(
                200,
                json!({"kind": "bigquery#job", "status": {"state": "RUNNING"},
                                    "jobReference": {"projectId": "proj", "jobId": "x"}}),
            ),
            Reply::json(
                200,
                json!({"kind": "bigquery#job", "status": {"state": "DONE"}}),
            ),
        ])
        .await;
        let fields = vec![TableField {
            name: "id".into(),
            kind: "INT64".into(),
            ..Default::default()
        }];
        client
            .load("ds", "stage", &fields, b"PAR1 rows PAR1".to_vec())
            .await
            .unwrap();
        let requests = stub.requests();
        let upload = &requests[1];
        assert_eq!(upload.path(), "/upload/bigquery/v2/projects/proj/jobs");
        assert_eq!(upload.query("uploadType").as_deref(), Some("multipart"));
        let content_type = upload.header("Content-Type").unwrap();
        let boundary = content_type
            .strip_prefix("multipart/related; boundary=")
            .unwrap();
        let body = String::from_utf8(upload.body.clone()).unwrap();
        let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        assert_eq!(parts.len(), 4, "{body}");
        let metadata: Value =
            serde_json::from_str(parts[1].split("\r\n\r\n").nth(1).unwrap().trim()).unwrap();
        let job_id = metadata["jobReference"]["jobId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            metadata["configuration"]["load"],
            json!({"destinationTable": {"projectId": "proj", "datasetId": "ds", "tableId": "stage"},
                   "sourceFormat": "PARQUET", "parquetOptions": {"enableListInference": true},
                   "writeDisposition": "WRITE_APPEND",
                   "createDisposition": "CREATE_NEVER", "schema": {"fields": [{"name": "id", "type": "INT64"}]}})
        );
        assert_eq!(
            parts[2],
            "\r\nContent-Type: application/octet-stream\r\n\r\nPAR1 rows PAR1\r\n"
        );
        assert_eq!(
            requests[2].path(),
            format!("/bigquery/v2/projects/proj/jobs/{job_id}")
        );
        assert_eq!(requests[2].query("location").as_deref(), Some("EU"));
    }

    #[test]
    fn a_json_load_job_reads_newline_delimited_json() {
        let mut settings = BigQueryConfig::for_test("http://127.0.0.1:1", None, vec![]);
        settings.load_format = BigQueryLoadFormat::Json;
        let job = load_job(&settings, "job_1", "ds", "stage", &[]);
        assert_eq!(
            job,
            json!({"jobReference": {"projectId": "proj", "jobId": "job_1", "location": "EU"},
                   "configuration": {"load": {
                       "destinationTable": {"projectId": "proj", "datasetId": "ds", "tableId": "stage"},
                       "sourceFormat": "NEWLINE_DELIMITED_JSON", "writeDisposition": "WRITE_APPEND",
                       "createDisposition": "CREATE_NEVER", "schema": {"fields": []}}}})
        );
    }

    #[tokio::test]
    async fn a_failed_load_job_names_its_reason() {
        let (client, _stub) = client(vec![
            token(),
            Reply::json(200, json!({"status": {"state": "DONE", "errorResult": {"reason": "invalid",
                "message": "Error while reading data, error message: Parquet column 'amount' has type INT32 which does not match the target cpp_type DOUBLE."}}})),
        ])
        .await;
        let e = client
            .load("ds", "stage", &[], Vec::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Statement);
        assert_eq!(
            e.message,
            "Connection \"bq\": loading rows into ds.stage: the job failed (invalid): Error while reading data, error message: Parquet column 'amount' has type INT32 which does not match the target cpp_type DOUBLE."
        );
    }

    #[tokio::test]
    async fn api_errors_are_classified_and_redacted() {
        let stub = StandIn::scripted(vec![
            Reply::json(
                404,
                json!({"error": {"code": 404, "message": "Not found: Table proj:ds.nope was not found in location EU",
                                              "errors": [{"message": "Not found: Table proj:ds.nope", "domain": "global", "reason": "notFound"}],
                                              "status": "NOT_FOUND"}}),
            ),
            Reply::json(
                403,
                json!({"error": {"code": 403, "message": "Access Denied: hunter2-key-line",
                                              "errors": [{"reason": "accessDenied"}], "status": "PERMISSION_DENIED"}}),
            ),
        ]);
        let settings = BigQueryConfig::for_test(&stub.url(), None, vec!["hunter2-key-line".into()]);
        let client = Client::new(Arc::new(settings)).unwrap();
        let e = client
            .query("SELECT * FROM `ds`.`nope`", &[])
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::NotFound);
        assert!(e.message.ends_with("BigQuery error 404 notFound: Not found: Table proj:ds.nope was not found in location EU (check bigquery.project, the dataset and the table)"), "{}", e.message);
        let e = client.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unauthorized);
        assert!(e.message.contains("Access Denied: ***"), "{}", e.message);
        assert!(!e.message.contains("hunter2"));
    }
}
