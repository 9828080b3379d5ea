//! The paginator against simulated APIs: every style detected by `auto` and forced, every
//! stop condition, and every loop.

use reqwest::Url;
use serde_json::{Value, json};
use synqx_api::connection::PaginationKind;

use crate::connectors::rest::pagination::{Next, Options, Paginator, Response, Style, next_link};
use crate::connectors::rest::records::locate;

/// A simulated API: the `Link` header and body for a URL.
type Api = dyn Fn(&Url) -> (Option<String>, Value);

/// The ids read, the URLs requested and the style.
type Walked = (Vec<i64>, Vec<String>, Style);

/// Walks an API from `start` and returns the ids read, the URLs requested and the style.
fn walk(options: Options, start: &str, api: &Api) -> Result<Walked, Box<dyn std::error::Error>> {
    let mut paginator = Paginator::new(options);
    let mut url = paginator.first_url(Url::parse(start).unwrap());
    let mut ids = Vec::new();
    let mut urls = Vec::new();
    let mut path = None;
    for _ in 0..200 {
        urls.push(url.to_string());
        let (link, body) = api(&url);
        let records_path = match &path {
            Some(p) => p,
            None => path.insert(locate(&body, None)?),
        };
        let records = records_path.records(&body)?;
        let page: Vec<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        let response = Response {
            url: &url,
            link: link.as_deref(),
            body: &body,
            records,
        };
        let next = paginator.next(&response)?;
        if !matches!(next, Next::Skip(_)) {
            ids.extend(page);
        }
        match next {
            Next::Url(next) | Next::Skip(next) => url = next,
            Next::Done => return Ok((ids, urls, paginator.style().unwrap().clone())),
        }
    }
    panic!("did not stop after 200 pages");
}

/// Sets `value` at the nested keys `path` of `body`, making the objects on the way.
fn place(body: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = body;
    for key in parents {
        at = at.as_object_mut().unwrap().entry(*key).or_insert(json!({}));
    }
    at[*last] = value;
}

fn auto() -> Options {
    Options::default()
}

fn rows(from: i64, to: i64) -> Value {
    Value::Array((from..to).map(|i| json!({"id": i})).collect())
}

fn param(url: &Url, name: &str) -> Option<i64> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.parse().unwrap())
}

fn cursor(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

const TOTAL: i64 = 23;

/// Records `from..to` of 0..TOTAL.
fn slice(from: i64, size: i64) -> Value {
    rows(from.min(TOTAL), (from + size).min(TOTAL))
}

fn all() -> Vec<i64> {
    (0..TOTAL).collect()
}

#[test]
fn link_header_is_detected_and_followed() {
    let api = |url: &Url| {
        let page = param(url, "page").unwrap_or(1);
        let next = (page * 5 < TOTAL).then(|| {
            format!("<http://api.test/items?page={}>; rel=\"next\", <http://api.test/items?page=5>; rel=\"last\"", page + 1)
        });
        (next, slice((page - 1) * 5, 5))
    };
    let (ids, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, all());
    assert_eq!(style, Style::LinkHeader);
    assert_eq!(urls.len(), 5);
    let forced = Options {
        kind: PaginationKind::LinkHeader,
        ..auto()
    };
    assert_eq!(
        walk(forced, "http://api.test/items", &api).unwrap().0,
        all()
    );
}

#[test]
fn link_header_parsing() {
    assert_eq!(
        next_link("<https://a.test/x?p=2>; rel=\"next\""),
        Some("https://a.test/x?p=2".into())
    );
    assert_eq!(
        next_link("<https://a.test/1>; rel=\"prev\", <https://a.test/3>; rel=next"),
        Some("https://a.test/3".into())
    );
    assert_eq!(
        next_link("<https://a.test/q?a=1,2>; title=\"x, y\"; rel=\"last next\""),
        Some("https://a.test/q?a=1,2".into())
    );
    assert_eq!(next_link("<https://a.test/1>; rel=\"prev\""), None);
    assert_eq!(next_link("garbage"), None);
}

/// Page `page` (from 0) of pages of 5 records under `key`, with `next(page + 1)` at `path`
/// while more records follow, and null after the last page.
fn page_pointing_next(
    page: i64,
    key: &str,
    path: &[&str],
    next: impl FnOnce(i64) -> String,
) -> (Option<String>, Value) {
    let next = if (page + 1) * 5 < TOTAL {
        json!(next(page + 1))
    } else {
        Value::Null
    };
    let mut body = json!({ key: slice(page * 5, 5) });
    place(&mut body, path, next);
    (None, body)
}

/// An API with a next URL at `path` (a JSON pointer of plain keys); relative or absolute.
fn next_url_api(
    path: &'static [&'static str],
    absolute: bool,
) -> impl Fn(&Url) -> (Option<String>, Value) {
    move |url: &Url| {
        let page = param(url, "p").unwrap_or(0);
        page_pointing_next(page, "data", path, |n| {
            let target = format!("/v1/items?p={n}");
            if absolute {
                format!("http://api.test{target}")
            } else {
                target
            }
        })
    }
}

#[test]
fn next_url_in_the_body_is_detected_at_every_usual_path() {
    let cases: [(&[&str], &str); 10] = [
        (&["next"], "/next"),
        (&["next_url"], "/next_url"),
        (&["nextUrl"], "/nextUrl"),
        (&["links", "next"], "/links/next"),
        (&["paging", "next"], "/paging/next"),
        (&["@odata.nextLink"], "/@odata.nextLink"),
        (&["nextLink"], "/nextLink"),
        (&["meta", "next"], "/meta/next"),
        (&["next_page_url"], "/next_page_url"),
        (&["pagination", "next"], "/pagination/next"),
    ];
    for (path, pointer) in cases {
        for absolute in [true, false] {
            let api = next_url_api(path, absolute);
            let (ids, _, style) = walk(auto(), "http://api.test/v1/items", &api).unwrap();
            assert_eq!(ids, all(), "{pointer}");
            assert_eq!(
                style,
                Style::NextUrl {
                    path: pointer.to_string()
                }
            );
        }
    }
}

#[test]
fn hal_style_next_href_is_followed() {
    let api = |url: &Url| {
        let page = param(url, "p").unwrap_or(0);
        let next =
            ((page + 1) * 5 < TOTAL).then(|| json!({"href": format!("/items?p={}", page + 1)}));
        (
            None,
            json!({"_links": {"next": next}, "items": slice(page * 5, 5)}),
        )
    };
    let (ids, _, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, all());
    assert_eq!(
        style,
        Style::NextUrl {
            path: "/_links/next/href".into()
        }
    );
}

#[test]
fn forced_next_url_uses_next_path() {
    let api = next_url_api(&["result", "following"], true);
    let forced = Options {
        kind: PaginationKind::NextUrl,
        next_path: Some("/result/following".into()),
        ..auto()
    };
    assert_eq!(
        walk(forced, "http://api.test/v1/items", &api).unwrap().0,
        all()
    );
    // Without nextPath auto finds nothing it knows and reads one page.
    let (ids, _, style) = walk(auto(), "http://api.test/v1/items", &api).unwrap();
    assert_eq!(ids, (0..5).collect::<Vec<_>>());
    assert_eq!(style, Style::Single);
}

/// A cursor API: the token of page n is "tok-n" at `path`, sent back as `param`.
fn cursor_api(
    path: &'static [&'static str],
    param: &'static str,
) -> impl Fn(&Url) -> (Option<String>, Value) {
    move |url: &Url| {
        let page: i64 = cursor(url, param)
            .map(|c| c.trim_start_matches("tok-").parse().unwrap())
            .unwrap_or(0);
        page_pointing_next(page, "results", path, |n| format!("tok-{n}"))
    }
}

#[test]
fn cursor_tokens_are_detected_at_every_usual_path() {
    let cases: [(&[&str], &str, &str); 8] = [
        (&["next_cursor"], "/next_cursor", "cursor"),
        (&["nextPageToken"], "/nextPageToken", "pageToken"),
        (&["next_page_token"], "/next_page_token", "page_token"),
        (&["cursor"], "/cursor", "cursor"),
        (&["meta", "next_cursor"], "/meta/next_cursor", "cursor"),
        (&["after"], "/after", "after"),
        (
            &["paging", "cursors", "after"],
            "/paging/cursors/after",
            "after",
        ),
        (
            &["response_metadata", "next_cursor"],
            "/response_metadata/next_cursor",
            "cursor",
        ),
    ];
    for (path, pointer, param) in cases {
        let api = cursor_api(path, param);
        let (ids, urls, style) = walk(auto(), "http://api.test/items?status=open", &api).unwrap();
        assert_eq!(ids, all(), "{pointer}");
        assert_eq!(
            style,
            Style::Cursor {
                path: pointer.into(),
                param: param.into()
            }
        );
        assert!(
            urls[1].contains("status=open"),
            "params are kept: {}",
            urls[1]
        );
    }
}

#[test]
fn forced_cursor_with_its_own_names_and_has_more_false_stops() {
    let api = |url: &Url| {
        let page: i64 = cursor(url, "token")
            .map(|c| c.parse().unwrap())
            .unwrap_or(0);
        let more = (page + 1) * 5 < TOTAL;
        // The token is always there; has_more says when to stop.
        (
            None,
            json!({"items": slice(page * 5, 5), "state": {"token": page + 1}, "has_more": more}),
        )
    };
    let forced = Options {
        kind: PaginationKind::Cursor,
        cursor_path: Some("/state/token".into()),
        param: Some("token".into()),
        ..auto()
    };
    assert_eq!(
        walk(forced, "http://api.test/items", &api).unwrap().0,
        all()
    );
}

#[test]
fn offset_paging_stops_on_a_short_page() {
    let api = |url: &Url| {
        let offset = param(url, "offset").unwrap_or(0);
        let limit = param(url, "limit").unwrap_or(5);
        (
            None,
            json!({"offset": offset, "limit": limit, "items": slice(offset, limit)}),
        )
    };
    let (ids, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, all());
    assert_eq!(
        style,
        Style::Offset {
            param: "offset".into(),
            size: Some(5)
        }
    );
    assert_eq!(urls.last().unwrap(), "http://api.test/items?offset=20");
    // Forced, with a configured page size sent as a parameter.
    let forced = Options {
        kind: PaginationKind::Offset,
        param: Some("offset".into()),
        size_param: Some("limit".into()),
        size: Some(10),
        ..auto()
    };
    let (ids, urls, _) = walk(forced, "http://api.test/items", &api).unwrap();
    assert_eq!(ids, all());
    assert_eq!(
        urls,
        [
            "http://api.test/items?limit=10",
            "http://api.test/items?limit=10&offset=10",
            "http://api.test/items?limit=10&offset=20"
        ]
    );
}

#[test]
fn offset_paging_stops_at_the_total_when_pages_are_full() {
    // 20 records in pages of 5: the last page is full, so only the total tells the end.
    let api = |url: &Url| {
        let skip = param(url, "skip").unwrap_or(0);
        (
            None,
            json!({"meta": {"skip": skip, "total": 20}, "data": rows(skip.min(20), (skip + 5).min(20))}),
        )
    };
    let (ids, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(urls.len(), 4, "no request past the total: {urls:?}");
    assert_eq!(
        style,
        Style::Offset {
            param: "skip".into(),
            size: None
        }
    );
}

#[test]
fn offset_paging_stops_on_an_empty_page_and_on_has_more_false() {
    // Full pages, no total: the empty page ends it.
    let api = |url: &Url| {
        let start = param(url, "start").unwrap_or(0);
        (
            None,
            json!({"start": start, "records": rows(start.min(20), (start + 5).min(20))}),
        )
    };
    let (ids, urls, _) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(urls.len(), 5);
    let api = |url: &Url| {
        let offset = param(url, "offset").unwrap_or(0);
        (
            None,
            json!({"offset": offset, "hasMore": offset + 5 < 20, "records": rows(offset.min(20), (offset + 5).min(20))}),
        )
    };
    let (ids, urls, _) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(urls.len(), 4);
}

#[test]
fn offset_in_the_first_request_is_detected_without_body_fields() {
    let api = |url: &Url| {
        let offset = param(url, "offset").unwrap();
        (None, slice(offset, 5))
    };
    let (ids, _, style) = walk(auto(), "http://api.test/items?offset=0", &api).unwrap();
    assert_eq!(ids, all());
    assert_eq!(
        style,
        Style::Offset {
            param: "offset".into(),
            size: None
        }
    );
}

#[test]
fn page_numbers_stop_on_total_pages_short_and_empty_pages() {
    for (key, param_name) in [
        ("page", "page"),
        ("current_page", "page"),
        ("page_number", "page_number"),
        ("pageNumber", "pageNumber"),
    ] {
        let api = move |url: &Url| {
            let page = param(url, param_name).unwrap_or(1);
            (
                None,
                json!({key: page, "total_pages": 4, "per_page": 6, "data": slice((page - 1) * 6, 6)}),
            )
        };
        let (ids, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
        assert_eq!(ids, all(), "{key}");
        assert_eq!(
            style,
            Style::Page {
                param: param_name.into(),
                size: Some(6)
            }
        );
        assert_eq!(urls.len(), 4);
    }
    // Empty page, page number only in the query.
    let api = |url: &Url| {
        let page = param(url, "page").unwrap();
        (None, rows(((page - 1) * 5).min(20), (page * 5).min(20)))
    };
    let (ids, urls, _) = walk(auto(), "http://api.test/items?page=1", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(urls.len(), 5);
    // Forced page paging, total of records.
    let api = |url: &Url| {
        let page = param(url, "pg").unwrap_or(1);
        (
            None,
            json!({"pagination": {"total": 20}, "items": rows(((page - 1) * 5).min(20), (page * 5).min(20))}),
        )
    };
    let forced = Options {
        kind: PaginationKind::Page,
        param: Some("pg".into()),
        ..auto()
    };
    let (ids, urls, _) = walk(forced, "http://api.test/items", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(urls.len(), 4);
}

#[test]
fn zero_based_page_numbers_start_where_the_first_page_says() {
    // `page: 0` on the first page: the next is 1, and total_pages counts from there.
    let api = |url: &Url| {
        let page = param(url, "page").unwrap_or(0);
        (
            None,
            json!({"page": page, "total_pages": 4, "data": rows(page * 5, (page * 5 + 5).min(20))}),
        )
    };
    let (ids, urls, _) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(
        urls,
        [
            "http://api.test/items",
            "http://api.test/items?page=1",
            "http://api.test/items?page=2",
            "http://api.test/items?page=3"
        ]
    );
}

#[test]
fn one_page_without_signals_and_forced_none() {
    let api = |_: &Url| (None, json!({"items": rows(0, 3), "status": "ok"}));
    let (ids, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!((ids.len(), urls.len(), style), (3, 1, Style::Single));
    // `next: null` on the only page is a next-URL API with nothing more.
    let api = |_: &Url| {
        (
            None,
            json!({"results": rows(0, 3), "next": null, "count": 3}),
        )
    };
    let (_, urls, style) = walk(auto(), "http://api.test/items", &api).unwrap();
    assert_eq!(
        (urls.len(), style),
        (
            1,
            Style::NextUrl {
                path: "/next".into()
            }
        )
    );
    // Forced none ignores a next link.
    let api = next_url_api(&["next"], true);
    let forced = Options {
        kind: PaginationKind::None,
        ..auto()
    };
    assert_eq!(
        walk(forced, "http://api.test/v1/items", &api)
            .unwrap()
            .1
            .len(),
        1
    );
}

#[test]
fn a_looping_next_link_is_an_error() {
    let api = |url: &Url| {
        let page = param(url, "p").unwrap_or(0);
        // Page 2 points back to page 1.
        let next = if page < 2 {
            format!("/items?p={}", page + 1)
        } else {
            "/items?p=1".to_string()
        };
        (
            None,
            json!({"next": next, "items": rows(page * 10, page * 10 + 10)}),
        )
    };
    let e = walk(auto(), "http://api.test/items", &api)
        .unwrap_err()
        .to_string();
    assert!(e.contains("page 3 (http://api.test/items?p=2)"), "{e}");
    assert!(
        e.contains("points to http://api.test/items?p=1, which was already read"),
        "{e}"
    );
    let api = |url: &Url| {
        let page = param(url, "p").unwrap_or(0);
        let link = format!("<http://api.test/items?p={}>; rel=\"next\"", (page + 1) % 3);
        (
            Some(link),
            json!({"items": rows(page * 10, page * 10 + 10)}),
        )
    };
    let e = walk(auto(), "http://api.test/items?p=0", &api)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Link header points to http://api.test/items?p=0"),
        "{e}"
    );
}

#[test]
fn a_repeated_cursor_is_an_error() {
    let api = |url: &Url| {
        let n = i64::from(cursor(url, "cursor").is_some());
        (
            None,
            json!({"next_cursor": "same", "data": rows(n * 2, n * 2 + 2)}),
        )
    };
    let e = walk(auto(), "http://api.test/items", &api)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("returns cursor \"same\" at /next_cursor again"),
        "{e}"
    );
}

#[test]
fn a_page_that_repeats_the_previous_one_is_an_error() {
    // The API ignores the page parameter and always returns the first page.
    let api = |_: &Url| (None, json!({"page": 1, "data": rows(0, 5)}));
    let e = walk(auto(), "http://api.test/items", &api)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("page 2 (http://api.test/items?page=2) repeats page 1 record for record"),
        "{e}"
    );
}

#[test]
fn styles_are_described_in_configuration_words() {
    assert_eq!(
        Style::Cursor {
            path: "/next_cursor".into(),
            param: "cursor".into()
        }
        .describe(),
        "cursor (cursorPath /next_cursor, param cursor)"
    );
    assert_eq!(
        Style::Offset {
            param: "offset".into(),
            size: Some(100)
        }
        .describe(),
        "offset (param offset, size 100)"
    );
    assert!(Style::Single.describe().starts_with("none (one page"));
}
