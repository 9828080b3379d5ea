//! The REST source against the local test server: every pagination style detected by `auto`
//! and forced, records under every usual key and at `recordsPath`, params, headers and every
//! auth kind.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type};
use serde_json::json;
use synqx_api::SecretValue;
use synqx_api::connection::{ApiKeyAuth, BasicAuth, PaginationKind, RestAuth, RestPagination};
use synqx_api::pipeline::Nested;
use synqx_testkit::http::{Reply, StandIn};

use super::support::{api, connection, read, read_with, record, records, source};
use crate::connectors::rest::records::RECORD_KEYS;

const TOTAL: i64 = 95;

fn plain(v: &str) -> SecretValue {
    SecretValue {
        value: Some(v.to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn auto_detects_every_pagination_style_and_reads_every_record() {
    for (style, key, chosen) in [
        ("linkHeader", "", "linkHeader"),
        ("nextUrl", "data", "nextUrl (nextPath /next)"),
        (
            "cursor",
            "items",
            "cursor (cursorPath /next_cursor, param cursor)",
        ),
        ("offset", "results", "offset (param offset, size 10)"),
        ("page", "records", "page (param page)"),
    ] {
        let server = StandIn::start(api(style, TOTAL, 10, key));
        let conn = connection(&server.url(), |_| {});
        let got = read(&conn, source("v1/orders"))
            .await
            .unwrap_or_else(|e| panic!("{style}: {e}"));
        assert_eq!(got.ids(), (0..TOTAL).collect::<Vec<_>>(), "{style}");
        assert_eq!(
            server.requests().len(),
            10,
            "{style}: one request per page: {:?}",
            server
                .requests()
                .iter()
                .map(|s| &s.target)
                .collect::<Vec<_>>()
        );
        let note = got.counters.notes().unwrap_or_default();
        assert!(
            note.contains(&format!("pagination auto chose {chosen}")),
            "{style}: {note}"
        );
        assert!(
            server.requests().iter().all(|s| s.path() == "/v1/orders"),
            "{style}"
        );
    }
}

#[tokio::test]
async fn forced_styles_read_the_same_records() {
    for (style, key, kind, param) in [
        ("linkHeader", "", PaginationKind::LinkHeader, None),
        ("nextUrl", "data", PaginationKind::NextUrl, None),
        ("cursor", "items", PaginationKind::Cursor, Some("cursor")),
        ("offset", "results", PaginationKind::Offset, Some("offset")),
        ("page", "records", PaginationKind::Page, Some("page")),
    ] {
        let server = StandIn::start(api(style, TOTAL, 10, key));
        let conn = connection(&server.url(), |r| {
            r.pagination = Some(RestPagination {
                kind,
                param: param.map(str::to_string),
                cursor_path: (kind == PaginationKind::Cursor).then(|| "/next_cursor".to_string()),
                next_path: (kind == PaginationKind::NextUrl).then(|| "/next".to_string()),
                ..Default::default()
            });
        });
        let got = read(&conn, source("orders"))
            .await
            .unwrap_or_else(|e| panic!("{style}: {e}"));
        assert_eq!(got.ids(), (0..TOTAL).collect::<Vec<_>>(), "{style}");
        assert_eq!(
            got.counters.notes(),
            None,
            "a forced style is not announced"
        );
    }
    // Forced none reads one page even when the API has more.
    let server = StandIn::start(api("nextUrl", TOTAL, 10, "data"));
    let conn = connection(&server.url(), |r| {
        r.pagination = Some(RestPagination {
            kind: PaginationKind::None,
            ..Default::default()
        });
    });
    assert_eq!(
        read(&conn, source("orders")).await.unwrap().ids(),
        (0..10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn records_are_found_under_every_usual_key_and_at_records_path() {
    for key in RECORD_KEYS {
        let server = StandIn::start(move |_| {
            Reply::json(200, json!({"meta": {"count": 3}, key: records(0, 3)}))
        });
        let conn = connection(&server.url(), |_| {});
        assert_eq!(
            read(&conn, source("x")).await.unwrap().ids(),
            [0, 1, 2],
            "{key}"
        );
    }
    let body = json!({"result": {"items": records(0, 4)}, "related": records(10, 12), "data": {"note": "not here"}});
    let server = StandIn::start(move |_| Reply::json(200, &body));
    // On the Connection...
    let conn = connection(&server.url(), |r| {
        r.records_path = Some("/result/items".into())
    });
    assert_eq!(read(&conn, source("x")).await.unwrap().ids(), [0, 1, 2, 3]);
    // ...overridden by the step's source.
    let mut spec = source("x");
    spec.records_path = Some("/related".into());
    assert_eq!(read(&conn, spec).await.unwrap().ids(), [10, 11]);
    // Without it, auto takes the only top-level array of objects.
    let auto = read(&connection(&server.url(), |_| {}), source("x"))
        .await
        .unwrap();
    assert_eq!(auto.ids(), [10, 11]);
    // Two such arrays are ambiguous, and the error says what to set.
    let server = StandIn::start(|_| {
        Reply::json(
            200,
            json!({"orders": records(0, 1), "customers": records(0, 1)}),
        )
    });
    let e = read(&connection(&server.url(), |_| {}), source("x"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("Connection \"api\": page 1 (http://127.0.0.1:"),
        "{e}"
    );
    assert!(
        e.contains("several arrays of objects (orders, customers); set recordsPath"),
        "{e}"
    );
}

#[tokio::test]
async fn types_and_nested_objects_as_json_or_flattened() {
    let server = StandIn::start(|_| Reply::json(200, json!({"data": records(0, 3)})));
    let conn = connection(&server.url(), |_| {});
    let read_json = read(&conn, source("x")).await.unwrap();
    let batch = &read_json.batches[0];
    let schema = batch.schema();
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema.field_with_name("active").unwrap().data_type(),
        &DataType::Boolean
    );
    assert!(matches!(
        schema.field_with_name("updated_at").unwrap().data_type(),
        DataType::Timestamp(_, Some(_))
    ));
    let customer = batch.column_by_name("customer").unwrap().as_string::<i32>();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(customer.value(2)).unwrap(),
        record(2)["customer"]
    );
    assert_eq!(
        batch
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>()
            .value(2),
        3.0
    );

    let mut spec = source("x");
    spec.nested = Some(Nested::Flatten);
    let flat = read(&conn, spec).await.unwrap();
    let batch = &flat.batches[0];
    assert_eq!(
        batch
            .column_by_name("customer.name")
            .unwrap()
            .as_string::<i32>()
            .value(2),
        "c2"
    );
    assert!(batch.column_by_name("customer").is_none());
}

#[tokio::test]
async fn params_and_headers_of_the_asset_are_sent() {
    let server = StandIn::start(api("cursor", 25, 10, "items"));
    let conn = connection(&server.url(), |r| {
        r.headers = [("X-Team".to_string(), "data".to_string())].into();
    });
    let mut spec = source("orders?fixed=1");
    spec.params = [("status".to_string(), "paid".to_string())].into();
    spec.headers = [("X-Trace".to_string(), "t1".to_string())].into();
    assert_eq!(read(&conn, spec).await.unwrap().rows(), 25);
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.query("status").as_deref(), Some("paid"), "{}", s.target);
        assert_eq!(s.query("fixed").as_deref(), Some("1"), "{}", s.target);
        assert_eq!(s.header("x-team"), Some("data"));
        assert_eq!(s.header("x-trace"), Some("t1"));
    }
}

#[tokio::test]
async fn every_auth_kind_is_sent_and_wrong_credentials_are_refused_without_leaking() {
    // The server accepts exactly one credential per path.
    let server = StandIn::start(|seen| {
        let ok = match seen.path() {
            "/bearer" => seen.header("authorization") == Some("Bearer tok-123"),
            // "user:pa ss" in base64.
            "/basic" => seen.header("authorization") == Some("Basic dXNlcjpwYSBzcw=="),
            "/header" => seen.header("x-api-key") == Some("key-456"),
            "/query" => seen.query("api_key").as_deref() == Some("key-789"),
            _ => false,
        };
        if ok {
            Reply::json(200, json!([{"id": 1}]))
        } else {
            Reply::json_text(401, b"{\"error\": \"bad credentials\"}")
        }
    });
    let cases: [(&str, RestAuth, RestAuth); 4] = [
        (
            "bearer",
            RestAuth {
                bearer_token: Some(plain("tok-123")),
                ..Default::default()
            },
            RestAuth {
                bearer_token: Some(plain("tok-wrong")),
                ..Default::default()
            },
        ),
        (
            "basic",
            RestAuth {
                basic: Some(BasicAuth {
                    username: plain("user"),
                    password: plain("pa ss"),
                }),
                ..Default::default()
            },
            RestAuth {
                basic: Some(BasicAuth {
                    username: plain("user"),
                    password: plain("nope-nope"),
                }),
                ..Default::default()
            },
        ),
        (
            "header",
            RestAuth {
                api_key: Some(ApiKeyAuth {
                    header: Some("X-Api-Key".into()),
                    query: None,
                    value: plain("key-456"),
                }),
                ..Default::default()
            },
            RestAuth {
                api_key: Some(ApiKeyAuth {
                    header: Some("X-Api-Key".into()),
                    query: None,
                    value: plain("key-bad"),
                }),
                ..Default::default()
            },
        ),
        (
            "query",
            RestAuth {
                api_key: Some(ApiKeyAuth {
                    header: None,
                    query: Some("api_key".into()),
                    value: plain("key-789"),
                }),
                ..Default::default()
            },
            RestAuth {
                api_key: Some(ApiKeyAuth {
                    header: None,
                    query: Some("api_key".into()),
                    value: plain("key-bad-query"),
                }),
                ..Default::default()
            },
        ),
    ];
    for (path, good, bad) in cases {
        let conn = connection(&server.url(), |r| r.auth = Some(good));
        assert_eq!(
            read(&conn, source(path))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .ids(),
            [1]
        );
        let conn = connection(&server.url(), |r| r.auth = Some(bad));
        let e = read(&conn, source(path)).await.err().unwrap().to_string();
        assert!(e.contains("HTTP 401 Unauthorized"), "{path}: {e}");
        assert!(e.contains("check the Connection's"), "{path}: {e}");
        for secret in ["tok-wrong", "nope-nope", "key-bad", "key-bad-query"] {
            assert!(
                !e.contains(secret),
                "{path}: the error leaks a credential: {e}"
            );
        }
    }
}

#[tokio::test]
async fn a_huge_page_is_cut_into_batches_within_the_budget() {
    // One page of 60,000 records (about 10 MB of JSON), read with a 256 KiB budget.
    let server = StandIn::start(|_| Reply::json(200, json!({"items": records(0, 60_000)})));
    let conn = connection(&server.url(), |_| {});
    let budget = 256 * 1024;
    let got = read_with(&conn, source("big"), None, budget).await.unwrap();
    assert_eq!(got.ids(), (0..60_000).collect::<Vec<_>>());
    assert!(got.batches.len() >= 20, "{} batches", got.batches.len());
    for b in &got.batches {
        // Arrow's buffers round up; the estimate is from the JSON size, so allow a factor 2.
        assert!(
            b.get_array_memory_size() <= 2 * budget,
            "batch of {} bytes",
            b.get_array_memory_size()
        );
    }
}
