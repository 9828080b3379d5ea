//! `pagination.kind: auto` against APIs that say more records follow only with `has_more`,
//! `total`, `total_pages` or a full page of `per_page`, and name no offset, page, cursor or
//! next link: the source probes how the API pages and reads every record once, or stops with
//! an error asking for `pagination.kind`, never silently after page 1.

use serde_json::{Map, Value, json};
use synqx_testkit::http::{Reply, Request, StandIn};

use super::support::{Read, connection, read, records, source};
use crate::error::Result;

const TOTAL: i64 = 95;
const SIZE: i64 = 10;

/// How a simulated API pages; every other paging parameter it ignores.
#[derive(Clone, Copy)]
enum Takes {
    Offset,
    /// Pages counted from 1.
    Page,
    /// Pages counted from 0.
    PageFromZero,
    /// Nothing: every request returns the first page.
    Nothing,
}

/// An API of [`TOTAL`] records in pages of [`SIZE`] under `data`, paging as `takes` says,
/// whose pages carry the fields `signal(from, to)` returns and no other paging field.
fn api(
    takes: Takes,
    signal: impl Fn(i64, i64) -> Value + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |seen: &Request| {
        let number = |name: &str| seen.query(name).and_then(|v| v.parse::<i64>().ok());
        let from = match takes {
            Takes::Offset => number("offset").unwrap_or(0),
            Takes::Page => (number("page").unwrap_or(1) - 1) * SIZE,
            Takes::PageFromZero => number("page").unwrap_or(0) * SIZE,
            Takes::Nothing => 0,
        };
        let (from, to) = (from.min(TOTAL), (from + SIZE).min(TOTAL));
        let mut body = Map::new();
        body.insert("data".into(), Value::Array(records(from, to)));
        if let Value::Object(fields) = signal(from, to) {
            body.extend(fields);
        }
        Reply::json(200, Value::Object(body))
    }
}

fn requests(server: &StandIn) -> Vec<String> {
    server.requests().iter().map(|s| s.target.clone()).collect()
}

/// Reads `orders` of the API with `pagination.kind: auto`.
async fn read_orders(server: &StandIn) -> Result<Read> {
    read(&connection(&server.url(), |_| {}), source("orders")).await
}

/// The message of the error [`read_orders`] must end in.
async fn read_error(server: &StandIn) -> String {
    match read_orders(server).await {
        Ok(got) => panic!("no error, {} records", got.rows()),
        Err(e) => e.to_string(),
    }
}

/// Reads the API and checks every record arrived once, in order, and what `auto` said.
async fn reads_everything(server: &StandIn, chosen: &str) -> Vec<String> {
    let got = read_orders(server)
        .await
        .unwrap_or_else(|e| panic!("{chosen}: {e}"));
    assert_eq!(
        got.ids(),
        (0..TOTAL).collect::<Vec<_>>(),
        "{chosen}: {:?}",
        requests(server)
    );
    let note = got.counters.notes().unwrap_or_default();
    assert!(
        note.contains(&format!("pagination auto chose {chosen}")),
        "{note}"
    );
    requests(server)
}

/// An API whose page 1 says more records follow, and how `auto` reads it.
struct Probed {
    /// What page 1 says, and what else holds.
    case: &'static str,
    takes: Takes,
    signal: fn(i64, i64) -> Value,
    /// What `auto` says it chose.
    chosen: &'static str,
    /// The first requests, and how many there are in all.
    first: &'static [&'static str],
    requests: usize,
}

#[tokio::test]
async fn what_page_1_says_makes_auto_probe_how_the_api_pages() {
    let cases = [
        Probed {
            case: "has_more: true alone",
            takes: Takes::Offset,
            signal: |_, to| json!({"has_more": to < TOTAL}),
            chosen: "offset (param offset), probed because page 1 says has_more: true",
            first: &["/orders", "/orders?offset=10"],
            requests: 10,
        },
        // offset=10 and page=1 return page 1 again: dropped, not read twice.
        Probed {
            case: "hasMore: true alone, offset ignored",
            takes: Takes::Page,
            signal: |_, to| json!({"hasMore": to < TOTAL}),
            chosen: "page (param page), probed because page 1 says hasMore: true",
            first: &[
                "/orders",
                "/orders?offset=10",
                "/orders?page=1",
                "/orders?page=2",
            ],
            requests: 12,
        },
        // Full pages to the end (90 records): only the total says where they stop.
        Probed {
            case: "a total beyond the first page",
            takes: Takes::Offset,
            signal: |_, _| json!({"meta": {"total": TOTAL}}),
            chosen: "offset (param offset), probed because page 1 says total: 95, 10 on page 1",
            first: &["/orders", "/orders?offset=10"],
            requests: 10,
        },
        // Page numbers first, and no request past the last page.
        Probed {
            case: "total_pages and per_page",
            takes: Takes::Page,
            signal: |_, _| json!({"total_pages": 10, "per_page": SIZE}),
            chosen: "page (param page, size 10), probed because page 1 says total_pages: 10",
            first: &["/orders", "/orders?page=1", "/orders?page=2"],
            requests: 11,
        },
        // page=1 is the second page of a 0-based API: kept, and page=2 follows.
        Probed {
            case: "a full page of per_page, pages counted from 0",
            takes: Takes::PageFromZero,
            signal: |_, _| json!({"per_page": SIZE}),
            chosen: "page (param page, size 10), probed because page 1 says a full page of 10 records",
            first: &["/orders", "/orders?page=1", "/orders?page=2"],
            requests: 10,
        },
    ];
    for probed in cases {
        let server = StandIn::start(api(probed.takes, probed.signal));
        let seen = reads_everything(&server, probed.chosen).await;
        assert_eq!(seen.len(), probed.requests, "{}: {seen:?}", probed.case);
        assert_eq!(
            seen[..probed.first.len()],
            *probed.first,
            "{}: {seen:?}",
            probed.case
        );
    }
}

#[tokio::test]
async fn no_probe_when_the_first_page_says_it_is_the_last() {
    for signal in [
        json!({"has_more": false, "per_page": SIZE}),
        json!({"total": SIZE}),
        json!({"total_pages": 1}),
    ] {
        let body = signal.clone();
        let server = StandIn::start(move |_| {
            let mut page = body.clone();
            page["data"] = Value::Array(records(0, SIZE));
            Reply::json(200, &page)
        });
        let got = read_orders(&server).await.unwrap();
        assert_eq!(got.ids(), (0..SIZE).collect::<Vec<_>>(), "{signal}");
        assert_eq!(requests(&server), ["/orders"], "{signal}");
    }
}

#[tokio::test]
async fn an_api_that_ignores_every_probe_is_an_error_asking_for_the_kind() {
    let server = StandIn::start(api(Takes::Nothing, |_, _| json!({"has_more": true})));
    let e = read_error(&server).await;
    let first = format!("{}/orders", server.url());
    assert!(
        e.contains(&format!(
            "page 1 ({first}) says more records follow (has_more: true)"
        )),
        "{e}"
    );
    assert!(
        e.contains("no other records for offset=10, page=1, page=2"),
        "{e}"
    );
    assert!(e.contains("set pagination.kind"), "{e}");
}

#[tokio::test]
async fn an_api_that_refuses_a_probe_parameter_names_the_probe() {
    let server = StandIn::start(|seen: &Request| {
        if seen.query("offset").is_some() {
            return Reply::json_text(400, br#"{"error": "unknown parameter offset"}"#);
        }
        Reply::json(200, json!({"data": records(0, SIZE), "has_more": true}))
    });
    let e = read_error(&server).await;
    assert!(e.contains("400"), "{e}");
    assert!(
        e.contains("pagination auto sent offset=10 to learn how the API pages, because page 1 says has_more: true"),
        "{e}"
    );
    assert!(e.contains("set pagination.kind"), "{e}");
}
