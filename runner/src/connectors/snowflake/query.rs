//! Statements over the REST API as the drivers send them: `POST /queries/v1/query-request`
//! with positional bindings (one value, or one array per placeholder for many rows at once),
//! results inline (`rowsetBase64`) or in chunks, and long statements either polled through
//! `getResultUrl` (code 333333/333334) or submitted with `asyncExec` and followed on
//! `/monitoring/queries/{id}` until they end.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connect::{Failure, Kind, Session, read_envelope, request_id, transport};
use super::types::ColumnType;
use crate::connectors::http_api::statement;

/// One placeholder's value(s) and Snowflake type (`FIXED`, `REAL`, `TEXT`, `BOOLEAN`, `DATE`,
/// `TIME`, `TIMESTAMP_NTZ`, `TIMESTAMP_TZ`, `BINARY`), in the text forms the API takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: BindValue,
}

/// A single value, or one value per row (array binding).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BindValue {
    One(Option<String>),
    Many(Vec<Option<String>>),
}

impl Binding {
    pub fn text(value: impl Into<String>) -> Self {
        Self {
            kind: "TEXT",
            value: BindValue::One(Some(value.into())),
        }
    }
}

/// A chunk of a large result, fetched separately.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    /// A presigned URL: never put it in a message.
    pub url: String,
    #[serde(default)]
    pub row_count: u64,
}

/// The answer to a statement.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    #[serde(default)]
    pub rowtype: Vec<ColumnType>,
    #[serde(default)]
    pub rowset_base64: Option<String>,
    #[serde(default)]
    pub chunks: Vec<Chunk>,
    /// Headers to send with chunk downloads.
    #[serde(default)]
    pub chunk_headers: Option<BTreeMap<String, String>>,
    /// The key chunk downloads are encrypted with on S3 (SSE-C), when there are no headers.
    #[serde(default)]
    pub qrmk: Option<String>,
    /// The rest of `data`: PUT's stage info, JSON results (`rowset`), the query id.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Statuses of `/monitoring/queries` under which a statement still runs.
const RUNNING: &[&str] = &[
    "RUNNING",
    "QUEUED",
    "RESUMING_WAREHOUSE",
    "QUEUED_REPARING_WAREHOUSE",
    "BLOCKED",
    "NO_DATA",
];

impl Session {
    /// Runs one statement and waits for its result.
    pub async fn query(&self, sql: &str, bindings: &[Binding]) -> Result<QueryResult, Failure> {
        self.submit(sql, bindings, false).await
    }

    /// Runs one long statement (a load, a merge) the way the drivers run asynchronous
    /// queries: submitted with `asyncExec`, followed on the monitoring endpoint, then its
    /// result fetched. A server that answers at once is taken at its word.
    pub async fn query_async(
        &self,
        sql: &str,
        bindings: &[Binding],
    ) -> Result<QueryResult, Failure> {
        self.submit(sql, bindings, true).await
    }

    async fn submit(
        &self,
        sql: &str,
        bindings: &[Binding],
        async_exec: bool,
    ) -> Result<QueryResult, Failure> {
        let settings = &self.settings;
        let mut body = json!({
            "sqlText": sql,
            "asyncExec": async_exec,
            "sequenceId": self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            "querySubmissionTime": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        });
        if !bindings.is_empty() {
            let map: BTreeMap<String, &Binding> = bindings
                .iter()
                .enumerate()
                .map(|(i, b)| ((i + 1).to_string(), b))
                .collect();
            body["bindings"] = json!(map);
        }
        let url = format!("{}/queries/v1/query-request", settings.base_url);
        let id = request_id();
        let response = self
            .http
            .post(&url)
            .query(&[("requestId", id.as_str()), ("request_guid", id.as_str())])
            .header("Authorization", self.authorization())
            .header("Accept", "application/snowflake")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport(settings, "query", &e))?;
        let envelope = read_envelope(settings, &statement(sql), response).await?;
        let data = envelope.data.unwrap_or(Value::Null);
        match envelope.code.as_deref() {
            Some("333333" | "333334") => self.follow(sql, &data, async_exec).await,
            _ => parse(settings.at(), data),
        }
    }

    /// Waits for a statement the server reported as still running.
    async fn follow(
        &self,
        sql: &str,
        data: &Value,
        async_exec: bool,
    ) -> Result<QueryResult, Failure> {
        let settings = &self.settings;
        let query_id = data
            .get("queryId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Failure::protocol(format!(
                    "{}: {}: a running statement without queryId",
                    settings.at(),
                    statement(sql)
                ))
            })?
            .to_string();
        let result_url = data
            .get("getResultUrl")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("/queries/{query_id}/result"));
        if async_exec {
            let mut pause = Duration::from_millis(250);
            while self
                .status(&query_id)
                .await?
                .is_some_and(|s| RUNNING.contains(&s.as_str()))
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
        // The result endpoint itself waits on the server for a while and says 333333 again
        // when the statement still runs.
        loop {
            let response = self
                .http
                .get(format!("{}{result_url}", settings.base_url))
                .header("Authorization", self.authorization())
                .header("Accept", "application/snowflake")
                .send()
                .await
                .map_err(|e| transport(settings, "query result", &e))?;
            let envelope = read_envelope(settings, &statement(sql), response).await?;
            if !matches!(envelope.code.as_deref(), Some("333333" | "333334")) {
                return parse(settings.at(), envelope.data.unwrap_or(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The status of a statement on the monitoring endpoint; `None` when it is not listed.
    async fn status(&self, query_id: &str) -> Result<Option<String>, Failure> {
        let settings = &self.settings;
        let response = self
            .http
            .get(format!(
                "{}/monitoring/queries/{query_id}",
                settings.base_url
            ))
            .header("Authorization", self.authorization())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| transport(settings, "query status", &e))?;
        let envelope = read_envelope(settings, "query status", response).await?;
        Ok(envelope
            .data
            .as_ref()
            .and_then(|d| d.get("queries"))
            .and_then(|q| q.get(0))
            .and_then(|q| q.get("status"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

fn parse(at: String, data: Value) -> Result<QueryResult, Failure> {
    serde_json::from_value(data).map_err(|e| Failure {
        kind: Kind::Protocol,
        code: None,
        message: format!("{at}: the query answer cannot be read: {e}"),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use synqx_testkit::http::{Reply, StandIn};

    /// The first value of a JSON result (rows affected), as the server wrote it.
    fn first_count(result: &QueryResult) -> Option<&str> {
        result.other.get("rowset")?.get(0)?.get(0)?.as_str()
    }
    use crate::connectors::snowflake::config::{Auth, SnowflakeConfig};

    /// A session logged in to a stand-in that answers the statements with `replies`, in order.
    pub(in crate::connectors::snowflake) async fn session(
        replies: Vec<Reply>,
    ) -> (Session, StandIn) {
        let mut all = vec![Reply::json(
            200,
            json!({"data": {"token": "t1"}, "success": true}),
        )];
        all.extend(replies);
        let stub = StandIn::scripted(all);
        let settings =
            SnowflakeConfig::for_test(&stub.url(), Auth::Password("pw".into()), vec!["pw".into()]);
        (Session::login(Arc::new(settings)).await.unwrap(), stub)
    }

    #[tokio::test]
    async fn a_query_sends_the_token_and_positional_bindings() {
        let (session, stub) = session(vec![Reply::json(
            200,
            json!({"data": {"queryId": "q1", "rowtype": [], "queryResultFormat": "json",
                            "rowset": [["2"]], "total": 1}, "success": true}),
        )])
        .await;
        let bindings = [
            Binding {
                kind: "FIXED",
                value: BindValue::Many(vec![Some("1".into()), Some("2".into())]),
            },
            Binding {
                kind: "TEXT",
                value: BindValue::Many(vec![Some("a".into()), None]),
            },
        ];
        let result = session
            .query("INSERT INTO T (A, B) VALUES (?, ?)", &bindings)
            .await
            .unwrap();
        assert_eq!(first_count(&result), Some("2"));
        let request = &stub.requests()[1];
        assert_eq!(request.path(), "/queries/v1/query-request");
        assert_eq!(
            request.header("Authorization"),
            Some("Snowflake Token=\"t1\"")
        );
        assert_eq!(request.header("Accept"), Some("application/snowflake"));
        assert!(request.query("requestId").is_some());
        let body = request.json();
        assert_eq!(body["sqlText"], "INSERT INTO T (A, B) VALUES (?, ?)");
        assert_eq!(body["asyncExec"], false);
        assert_eq!(body["sequenceId"], 1);
        assert_eq!(
            body["bindings"],
            json!({"1": {"type": "FIXED", "value": ["1", "2"]},
                   "2": {"type": "TEXT", "value": ["a", null]}})
        );
    }

    #[tokio::test]
    async fn an_async_statement_is_followed_until_it_ends() {
        // The shapes the API documents for an asynchronous query: 333334 with the query id,
        // the monitoring answers, then the result.
        let (session, stub) = session(vec![
            Reply::json(200, json!({"code": "333334", "message": "Asynchronous execution in progress.",
                                    "success": true,
                                    "data": {"queryId": "01b2-q", "getResultUrl": "/queries/01b2-q/result"}})),
            Reply::json(200, json!({"data": {"queries": [{"id": "01b2-q", "status": "RUNNING"}]}, "success": true})),
            Reply::json(200, json!({"data": {"queries": [{"id": "01b2-q", "status": "SUCCESS"}]}, "success": true})),
            Reply::json(200, json!({"data": {"queryId": "01b2-q", "rowtype": [{"name": "rows_loaded", "type": "fixed", "precision": 38, "scale": 0}],
                                             "queryResultFormat": "json", "rowset": [["7"]]}, "success": true})),
        ])
        .await;
        let result = session
            .query_async("COPY INTO T FROM @S", &[])
            .await
            .unwrap();
        assert_eq!(first_count(&result), Some("7"));
        let requests = stub.requests();
        assert_eq!(requests[1].json()["asyncExec"], true);
        assert_eq!(requests[2].method, "GET");
        assert_eq!(requests[2].path(), "/monitoring/queries/01b2-q");
        assert_eq!(requests[3].path(), "/monitoring/queries/01b2-q");
        assert_eq!(requests[4].path(), "/queries/01b2-q/result");
        assert_eq!(
            requests[4].header("Authorization"),
            Some("Snowflake Token=\"t1\"")
        );
    }

    #[tokio::test]
    async fn a_long_synchronous_statement_is_polled_on_its_result_url() {
        let (session, stub) = session(vec![
            Reply::json(200, json!({"code": "333333", "success": true,
                                    "data": {"queryId": "q9", "getResultUrl": "/queries/q9/result"}})),
            Reply::json(200, json!({"data": {"queryId": "q9", "rowtype": [], "rowset": [["1"]]}, "success": true})),
        ])
        .await;
        let result = session
            .query("MERGE INTO T USING S ON …", &[])
            .await
            .unwrap();
        assert_eq!(first_count(&result), Some("1"));
        assert_eq!(stub.requests()[2].path(), "/queries/q9/result");
    }

    #[tokio::test]
    async fn a_missing_table_is_not_found_and_names_the_statement() {
        let (session, _stub) = session(vec![Reply::json(
            200,
            json!({"data": {"errorCode": "002003", "sqlState": "42S02"}, "code": "002003",
                   "message": "SQL compilation error:\nObject 'DB.PUBLIC.NOPE' does not exist or not authorized.",
                   "success": false}),
        )])
        .await;
        let e = session.query("SELECT * FROM NOPE", &[]).await.unwrap_err();
        assert_eq!(e.kind, Kind::NotFound);
        assert!(
            e.message.starts_with("Connection \"sf\": `SELECT * FROM NOPE`: Snowflake error 002003: SQL compilation error:"),
            "{}",
            e.message
        );
    }
}
