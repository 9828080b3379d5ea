//! The REST source when things go wrong, and across runs: loops, throttling, flaky servers,
//! malformed pages, expiring tokens, timeouts, unreachable servers, schema drift, incremental
//! runs through the engine, and `synqx check`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::{
    BasicAuth, FilesystemConnection, OAuth2Auth, RestAuth, RestConnection,
};
use synqx_api::pipeline::{FileFormat, Incremental, SyncStep, WriteMode};
use synqx_testkit::http::{Reply, StandIn};
use synqx_testkit::servers::closed_port;
use tokio_util::sync::CancellationToken;

use super::support::{api, connection, read, record, records, source};
use crate::connectors::ConnectionRef;
use crate::connectors::formats::tests::destination;
use crate::connectors::tests::named;
use crate::engine::{Counters, StepOutcome, StepRun, run_sync};
use crate::error::Result;
use crate::secrets::Secrets;

fn plain(v: &str) -> SecretValue {
    SecretValue {
        value: Some(v.to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_looping_next_link_stops_with_an_error() {
    let server = StandIn::start(|seen| {
        let page: i64 = seen.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        // Page 2 links back to page 1.
        let next = if page < 2 { page + 1 } else { 1 };
        Reply::json(
            200,
            json!({"data": records(page * 5, page * 5 + 5), "next": format!("/loop?page={next}")}),
        )
    });
    let e = read(&connection(&server.url(), |_| {}), source("loop"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Connection \"api\": page 3"), "{e}");
    assert!(
        e.contains("which was already read: the API's next links loop"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn throttled_requests_wait_for_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = StandIn::start(move |_| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json_text(429, b"slow down").with_header("retry-after", "1")
        } else {
            Reply::json(200, json!({"items": records(0, 3)}))
        }
    });
    let got = read(&connection(&server.url(), |_| {}), source("x"))
        .await
        .unwrap();
    assert_eq!(got.ids(), [0, 1, 2]);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, Retry-After said 1s"
    );
}

#[tokio::test]
async fn flaky_server_errors_are_retried_and_persistent_ones_reported() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = StandIn::start(move |seen| {
        if seen.path() == "/down" {
            return Reply::json_text(503, b"maintenance");
        }
        // Every other request fails once with 502 or 500.
        let n = counted.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(2) {
            Reply::json_text(if n.is_multiple_of(4) { 502 } else { 500 }, b"oops")
        } else {
            api("cursor", 30, 10, "items")(seen)
        }
    });
    let conn = connection(&server.url(), |_| {});
    assert_eq!(
        read(&conn, source("x")).await.unwrap().ids(),
        (0..30).collect::<Vec<_>>()
    );
    let conn = connection(&server.url(), |r| r.max_attempts = Some(2));
    let e = read(&conn, source("down")).await.err().unwrap().to_string();
    assert!(e.contains("page 1 (http://127.0.0.1:"), "{e}");
    assert!(
        e.contains("/down): HTTP 503 Service Unavailable (after 2 attempts): maintenance"),
        "{e}"
    );
}

/// A lake (a temp folder) to write Parquet into through the engine.
struct Lake {
    dir: tempfile::TempDir,
    spec: ConnectionSpec,
}

impl Lake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = ConnectionSpec {
            filesystem: Some(FilesystemConnection {
                path: dir.path().display().to_string(),
            }),
            ..Default::default()
        };
        Self { dir, spec }
    }

    /// Runs `api:fqn -> lake:out.parquet` through the engine.
    async fn run(
        &self,
        rest: &ConnectionSpec,
        sync: &SyncStep,
        watermark: Option<&str>,
    ) -> Result<StepOutcome> {
        let secrets = Secrets::default();
        let at = |name, spec| ConnectionRef {
            name,
            spec,
            base_dir: self.dir.path().to_path_buf(),
            secrets: &secrets,
        };
        let source = crate::connectors::source(&at("api", rest))?;
        let sink = crate::connectors::sink(&at("lake", &self.spec))?;
        let run = StepRun {
            step: "pull".into(),
            watermark: watermark.map(str::to_string),
            counters: Arc::new(Counters::default()),
            cancel: CancellationToken::new(),
            timeout: None,
            dead_letter: None,
            memory: crate::transforms::MemoryBudget::detect()?,
        };
        run_sync(sync, source, sink, run).await
    }

    fn ids(&self) -> Vec<i64> {
        let path = self.dir.path().join("out.parquet");
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        reader
            .flat_map(|b| {
                use arrow::array::AsArray;
                b.unwrap()
                    .column_by_name("id")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }
}

fn step(fqn: &str, mode: WriteMode) -> SyncStep {
    let mut destination = destination("out.parquet", Some(FileFormat::Parquet));
    destination.mode = Some(mode);
    SyncStep {
        source: source(fqn),
        destination,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_malformed_page_names_url_and_page_and_commits_nothing() {
    let server = StandIn::start(|seen| match seen.query("page").as_deref() {
        Some("2") => Reply::json_text(200, b"{\"data\": [{\"id\": 20}, {\"id\": 21,]}"),
        _ => api("nextUrl", 30, 10, "data")(seen),
    });
    let lake = Lake::new();
    let rest = connection(&server.url(), |_| {});
    // A first run fills the destination; the second, whose page 3 is malformed, must leave it.
    let good = StandIn::start(api("nextUrl", 5, 10, "data"));
    lake.run(
        &connection(&good.url(), |_| {}),
        &step("orders", WriteMode::Overwrite),
        None,
    )
    .await
    .unwrap();
    assert_eq!(lake.ids(), [0, 1, 2, 3, 4]);
    let e = lake
        .run(&rest, &step("orders", WriteMode::Overwrite), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("page 3 ("), "{e}");
    assert!(e.contains("/orders?page=2) is not valid JSON"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(lake.ids(), [0, 1, 2, 3, 4], "the old data stays");
}

#[tokio::test]
async fn oauth2_tokens_are_renewed_when_they_expire_mid_run() {
    // Tokens live 1 s; each page takes 300 ms, so 12 pages need several tokens.
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let tokens = issued.clone();
    let server = StandIn::start(move |seen| {
        if seen.path() == "/oauth/token" {
            // "synqx-client-id:s3cret" in base64.
            if seen.header("authorization") != Some("Basic c3lucXgtY2xpZW50LWlkOnMzY3JldA==") {
                return Reply::json_text(401, b"{\"error\": \"invalid_client\"}");
            }
            let mut tokens = tokens.lock().unwrap();
            let token = format!("t{}", tokens.len());
            tokens.push((token.clone(), Instant::now()));
            return Reply::json(
                200,
                json!({"access_token": token, "token_type": "bearer", "expires_in": 1}),
            );
        }
        let valid = {
            let tokens = tokens.lock().unwrap();
            tokens.iter().any(|(t, at)| {
                seen.header("authorization") == Some(&format!("Bearer {t}"))
                    && at.elapsed() < Duration::from_secs(1)
            })
        };
        if !valid {
            return Reply::json_text(401, b"{\"error\": \"token expired\"}");
        }
        api("cursor", 120, 10, "items")(seen).delayed(Duration::from_millis(300))
    });
    let auth = |secret: &str| RestAuth {
        oauth2: Some(OAuth2Auth {
            token_url: format!("{}/oauth/token", server.url()),
            client_id: plain("synqx-client-id"),
            client_secret: plain(secret),
            scopes: vec!["read".into()],
        }),
        ..Default::default()
    };
    let conn = connection(&server.url(), |r| r.auth = Some(auth("s3cret")));
    let all = read(&conn, source("orders")).await.unwrap();
    assert_eq!(all.ids(), (0..120).collect::<Vec<_>>());
    let issued = issued.lock().unwrap().len();
    assert!(issued >= 3, "only {issued} tokens for a run of about 3.6 s");
    let conn = connection(&server.url(), |r| r.auth = Some(auth("wrong-secret")));
    let e = read(&conn, source("orders"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("token endpoint") && e.contains("refused the client credentials: HTTP 401"),
        "{e}"
    );
    assert!(!e.contains("wrong-secret"), "{e}");
}

#[tokio::test]
async fn an_api_quoting_the_authorization_header_back_shows_none_of_it() {
    let server = StandIn::start(|seen| {
        if seen.path() == "/oauth/token" {
            // An expiry no clock can hold must not stop the run either.
            return Reply::json(
                200,
                json!({"access_token": "tok-9f8e7d", "token_type": "bearer", "expires_in": 1e300}),
            );
        }
        let sent = seen.header("authorization").unwrap_or_default().to_string();
        Reply::json_text(
            403,
            json!({"error": "forbidden", "you_sent": sent})
                .to_string()
                .into_bytes(),
        )
    });
    let basic = RestAuth {
        basic: Some(BasicAuth {
            username: plain("api-user"),
            password: plain("pw-777"),
        }),
        ..Default::default()
    };
    let oauth2 = RestAuth {
        oauth2: Some(OAuth2Auth {
            token_url: format!("{}/oauth/token", server.url()),
            client_id: plain("synqx-client-id"),
            client_secret: plain("s3cret"),
            scopes: vec![],
        }),
        ..Default::default()
    };
    // base64 of "api-user:pw-777"; the access token as issued.
    for (auth, secret) in [(basic, "YXBpLXVzZXI6cHctNzc3"), (oauth2, "tok-9f8e7d")] {
        let conn = connection(&server.url(), |r| r.auth = Some(auth));
        let e = read(&conn, source("orders"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("HTTP 403") && e.contains("you_sent"), "{e}");
        assert!(!e.contains(secret) && !e.contains("pw-777"), "{e}");
    }
}

#[tokio::test]
async fn incremental_over_two_runs_sends_the_watermark() {
    let rows = Arc::new(Mutex::new(records(0, 25)));
    let served = rows.clone();
    let server = StandIn::start(move |seen| {
        let after = seen.query("updated_since");
        let all = served.lock().unwrap().clone();
        let newer: Vec<_> = all
            .into_iter()
            // The API filters inclusively (>=): the source must drop the watermark row itself.
            .filter(|r| {
                after
                    .as_deref()
                    .is_none_or(|a| r["updated_at"].as_str().unwrap_or_default() >= a)
            })
            .collect();
        Reply::json(200, json!({"data": newer}))
    });
    let rest = connection(&server.url(), |r| {
        r.cursor_param = Some("updated_since".into())
    });
    let lake = Lake::new();
    let mut sync = step("orders", WriteMode::Overwrite);
    sync.destination.asset.fqn = "out.parquet".into();
    sync.source.incremental = Some(Incremental {
        cursor: "updated_at".into(),
        ..Default::default()
    });
    let first = lake.run(&rest, &sync, None).await.unwrap();
    assert_eq!(first.counters.rows_read, 25);
    let watermark = first.watermark_to.clone().unwrap();
    assert_eq!(watermark, "2024-01-01T00:00:24Z");
    assert_eq!(server.requests()[0].query("updated_since"), None);
    rows.lock().unwrap().extend(records(25, 30));
    sync.destination.asset.fqn = "out2.parquet".into();
    let second = lake.run(&rest, &sync, Some(&watermark)).await.unwrap();
    assert_eq!(
        server.requests()[1].query("updated_since").as_deref(),
        Some("2024-01-01T00:00:24Z")
    );
    assert_eq!(second.counters.rows_read, 5, "only the new records");
    assert_eq!(second.watermark_to.as_deref(), Some("2024-01-01T00:00:29Z"));
}

#[tokio::test]
async fn the_auto_choice_is_the_step_message() {
    let server = StandIn::start(api("offset", 12, 5, "results"));
    let lake = Lake::new();
    let outcome = lake
        .run(
            &connection(&server.url(), |_| {}),
            &step("orders", WriteMode::Overwrite),
            None,
        )
        .await
        .unwrap();
    assert_eq!(lake.ids(), (0..12).collect::<Vec<_>>());
    assert_eq!(
        outcome.message.as_deref(),
        Some(
            "Connection \"api\": asset \"orders\": pagination auto chose offset (param offset, size 5)"
        )
    );
}

#[tokio::test]
async fn schema_drift_after_the_sample_is_a_clear_error() {
    let server = StandIn::start(|seen| {
        let page: i64 = seen.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let mut items = records(page * 600, page * 600 + 600);
        if page == 2 {
            items[10]["price"] = json!("call us");
            items[10]["id"] = json!(1.5);
        }
        let next = (page < 2).then(|| format!("/drift?page={}", page + 1));
        Reply::json(200, json!({"data": items, "next": next}))
    });
    let e = read(&connection(&server.url(), |_| {}), source("drift"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("page 3 (http://127.0.0.1:"), "{e}");
    assert!(e.contains("record 11"), "{e}");
    assert!(
        e.contains("field \"id\" is a number, but the column is int64"),
        "{e}"
    );
    assert!(!e.contains("1.5"), "{e}");
    let _ = record(0);
}

#[tokio::test]
async fn timeouts_and_unreachable_servers_are_reported() {
    let server = StandIn::start(|_| Reply::json(200, json!([])).delayed(Duration::from_secs(5)));
    let conn = connection(&server.url(), |r| {
        r.timeout = Some("300ms".into());
        r.max_attempts = Some(1);
    });
    let e = read(&conn, source("slow")).await.err().unwrap().to_string();
    assert!(
        e.contains("page 1 (http://127.0.0.1:") && e.contains("no answer within 0.3s"),
        "{e}"
    );

    let port = closed_port();
    let conn = connection(&format!("http://127.0.0.1:{port}"), |r| {
        r.max_attempts = Some(1)
    });
    let e = read(&conn, source("x")).await.err().unwrap().to_string();
    assert!(
        e.starts_with(&format!(
            "Connection \"api\": page 1 (http://127.0.0.1:{port}/x):"
        )),
        "{e}"
    );
    assert!(e.to_lowercase().contains("connection refused"), "{e}");
}

#[tokio::test]
async fn requests_respect_the_rate_limit() {
    let server = StandIn::start(api("page", 40, 10, "data"));
    let conn = connection(&server.url(), |r| r.rate_limit = Some(5));
    assert_eq!(read(&conn, source("x")).await.unwrap().rows(), 40);
    let seen = server.requests();
    assert_eq!(seen.len(), 4);
    for pair in seen.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(190),
            "requests {gap:?} apart at 5 per second"
        );
    }
}

#[tokio::test]
async fn check_reports_connected_unauthorized_and_unreachable() {
    let server = StandIn::start(|seen| match seen.header("authorization") {
        Some("Bearer good") => Reply::json_text(404, b"no root here"),
        _ => Reply::json_text(401, b"who are you"),
    });
    let check = async |spec: ConnectionSpec| named::check("api", &spec).await;
    let with = |token: &str| {
        connection(&server.url(), |r: &mut RestConnection| {
            r.auth = Some(RestAuth {
                bearer_token: Some(plain(token)),
                ..Default::default()
            });
        })
    };
    let ok = check(with("good")).await;
    assert!(ok.ready, "{ok:?}");
    assert!(
        ok.message
            .contains("is reachable with bearer token (HTTP 404 at the base URL itself"),
        "{}",
        ok.message
    );
    let refused = check(with("bad-token-value")).await;
    assert_eq!(refused.reason.as_str(), "Unauthorized", "{refused:?}");
    assert!(!refused.message.contains("bad-token-value"));
    let down = check(connection("http://127.0.0.1:9", |_| {})).await;
    assert_eq!(down.reason.as_str(), "Unreachable", "{down:?}");
}

#[tokio::test]
async fn documents_after_the_sample_widen_the_schema_and_the_step_reads_again() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type};
    // 1,500 records in pages of 500: from record 1,000 on, past the sample, prices have
    // cents and a coupon appears.
    let server = StandIn::start(|seen| {
        let page: i64 = seen.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let items: Vec<_> = (page * 500..page * 500 + 500)
            .map(|i| {
                if i < 1000 {
                    json!({"id": i, "price": i})
                } else {
                    json!({"id": i, "price": i as f64 + 0.25, "coupon": format!("C{i}")})
                }
            })
            .collect();
        let next = (page < 2).then(|| format!("/widen?page={}", page + 1));
        Reply::json(200, json!({"data": items, "next": next}))
    });
    let lake = Lake::new();
    let outcome = lake
        .run(
            &connection(&server.url(), |_| {}),
            &step("widen", WriteMode::Overwrite),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.requests().len(), 6, "every page read twice");
    assert_eq!(
        (outcome.counters.rows_read, outcome.counters.rows_written),
        (1500, 1500)
    );
    let message = outcome.message.unwrap_or_default();
    assert!(message.contains("page 3 (http://127.0.0.1:"), "{message}");
    assert!(
        message.contains("reading again with the columns widened or added (coupon: new → string, price: int64 → float64)"),
        "{message}"
    );
    let path = lake.dir.path().join("out.parquet");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Float64
    );
    assert!(schema.field_with_name("coupon").unwrap().is_nullable());
    let mut seen = 0;
    for b in &batches {
        let ids = b
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        let prices = b
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>();
        let coupons = b.column_by_name("coupon").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            let i = ids.value(r);
            if i < 1000 {
                assert_eq!((prices.value(r), coupons.is_null(r)), (i as f64, true));
            } else {
                assert_eq!(prices.value(r), i as f64 + 0.25);
                assert_eq!(coupons.value(r), format!("C{i}"));
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 1500);
}
