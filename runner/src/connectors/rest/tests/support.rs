//! Helpers of the REST source's tests: Connections to the test server, a read that collects
//! every batch, and a simulated API for each pagination style.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use futures::StreamExt;
use serde_json::{Value, json};
use synqx_api::ConnectionSpec;
use synqx_api::connection::RestConnection;
use synqx_api::pipeline::{Asset, OnError, Source as SourceSpec};
use synqx_testkit::http::{Reply, Request};

use crate::connectors::tests::named;
use crate::engine::{Counters, CursorFilter, ReadRequest, Rejects};
use crate::error::Result;

/// A REST Connection to `base_url`, changed by `tweak`.
pub fn connection(base_url: &str, tweak: impl FnOnce(&mut RestConnection)) -> ConnectionSpec {
    let mut rest = RestConnection {
        base_url: base_url.to_string(),
        ..Default::default()
    };
    tweak(&mut rest);
    ConnectionSpec {
        rest: Some(rest),
        ..Default::default()
    }
}

/// A source block reading `fqn`.
pub fn source(fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: "api".into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

/// What a read returned.
pub struct Read {
    pub batches: Vec<RecordBatch>,
    pub counters: Arc<Counters>,
}

impl Read {
    /// The `id` column of every batch, in order.
    pub fn ids(&self) -> Vec<i64> {
        self.batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("id")
                    .unwrap_or_else(|| panic!("no id column in {:?}", b.schema()))
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads `spec` through the Connection `conn` with a byte budget per batch.
pub async fn read_with(
    conn: &ConnectionSpec,
    spec: SourceSpec,
    filter: Option<CursorFilter>,
    batch_bytes: usize,
) -> Result<Read> {
    let source = named::source("api", conn)?;
    let counters = Arc::new(Counters::default());
    let request = ReadRequest {
        spec,
        filter,
        batch_bytes,
        rejects: Rejects::new(OnError::Fail, None, counters.clone()),
        memory: Default::default(),
    };
    let mut stream = source.read(&request).await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.stream.next().await {
        let batch = batch?;
        assert_eq!(
            batch.schema(),
            stream.schema,
            "every batch has the announced schema"
        );
        batches.push(batch);
    }
    Ok(Read { batches, counters })
}

/// [`read_with`] with the default budget and no filter.
pub async fn read(conn: &ConnectionSpec, spec: SourceSpec) -> Result<Read> {
    read_with(conn, spec, None, crate::engine::DEFAULT_BATCH_BYTES).await
}

/// Record `i` of the simulated APIs.
pub fn record(i: i64) -> Value {
    json!({
        "id": i,
        "name": format!("item {i}"),
        "price": i as f64 * 1.5,
        "active": i % 2 == 0,
        "customer": {"name": format!("c{}", i % 7), "tier": i % 3},
        "updated_at": format!("2024-01-{:02}T00:00:{:02}Z", 1 + i / 60 % 28, i % 60),
    })
}

pub fn records(from: i64, to: i64) -> Vec<Value> {
    (from..to).map(record).collect()
}

/// A simulated API of `total` records in pages of `size`, paging in `style`: `linkHeader`,
/// `nextUrl`, `cursor`, `offset` or `page`, with the records under `key` (`""`: the body is
/// the array).
pub fn api(
    style: &'static str,
    total: i64,
    size: i64,
    key: &'static str,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |seen: &Request| {
        let number = |name: &str, default: i64| {
            seen.query(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (from, extra): (i64, Vec<(&str, Value)>) = match style {
            "linkHeader" | "nextUrl" => (number("page", 0) * size, vec![]),
            "cursor" => (
                seen.query("cursor")
                    .map(|c| c.trim_start_matches("c").parse().unwrap_or(0))
                    .unwrap_or(0),
                vec![],
            ),
            "offset" => {
                let offset = number("offset", 0);
                (
                    offset,
                    vec![
                        ("offset", json!(offset)),
                        ("limit", json!(size)),
                        ("total", json!(total)),
                    ],
                )
            }
            "page" => {
                let page = number("page", 1);
                let pages = (total + size - 1) / size;
                (
                    (page - 1) * size,
                    vec![("page", json!(page)), ("total_pages", json!(pages))],
                )
            }
            other => panic!("unknown style {other}"),
        };
        let to = (from + size).min(total);
        let items = Value::Array(records(from.min(total), to));
        let more = to < total;
        let path = seen.path().to_string();
        let mut body = if key.is_empty() {
            items
        } else {
            json!({ key: items })
        };
        let mut reply_headers = vec![];
        match style {
            "linkHeader" if more => reply_headers.push((
                "link".to_string(),
                format!("<{path}?page={}>; rel=\"next\"", from / size + 1),
            )),
            "nextUrl" => {
                body["next"] = if more {
                    json!(format!("{path}?page={}", from / size + 1))
                } else {
                    Value::Null
                }
            }
            "cursor" => {
                body["next_cursor"] = if more {
                    json!(format!("c{to}"))
                } else {
                    Value::Null
                }
            }
            _ => {}
        }
        for (k, v) in extra {
            body[k] = v;
        }
        let mut reply = Reply::json(200, &body);
        for (k, v) in reply_headers {
            reply = reply.with_header(&k, &v);
        }
        reply
    }
}
