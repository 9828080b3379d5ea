//! Pagination: which request follows a response, and when to stop. Pure: it sees the URL
//! that was requested, the `Link` header and the parsed body, never the network.
//!
//! `auto` decides once, from the first response, in this order: an RFC 8288
//! `Link: <…>; rel="next"` header; a next-page URL in the body ([`NEXT_URL_PATHS`]); a cursor
//! token sent back as a query parameter ([`CURSOR_PATHS`]); offset or page-number fields in
//! the body or the first request's query ([`OFFSET_KEYS`], [`PAGE_KEYS`]); else the API has
//! one page, unless the first page says more records follow (`has_more: true`, a `total`
//! beyond it, …): then the API is probed for offset or page-number paging ([`super::probe`]),
//! and an API that answers neither stops the read with an error, never silently after the
//! first page. Offset and page paging stop on an empty page, a page shorter than the page size
//! (the configured `size`, the body's `limit`, else the first page's length), `has_more:
//! false`, or a reached total. A page that repeats the previous one, a next URL already visited or a
//! cursor already sent stops with an error instead of looping. Page numbers start at 1
//! unless the first page says `page: 0` (or a probe finds `page=1` is the second page).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use reqwest::Url;
use serde_json::Value;
use synqx_api::connection::PaginationKind;

use super::probe::{Outcome, Probe};

/// Why paging cannot go on safely. Messages name the page and its URL; the caller names the
/// Connection and redacts the URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error(
        "page 1 ({first_url}) says more records follow ({signal}) but has no offset, page, cursor or next link, and the API returned no other records for {tried}: set pagination.kind (and param) to what the API documents"
    )]
    Unpageable {
        first_url: String,
        signal: String,
        tried: String,
    },
    #[error(
        "page {page} ({url}) repeats page {} record for record: the API ignores the pagination parameter, so paging would never end; set pagination.kind (and param) to what the API documents",
        page - 1
    )]
    Repeats { page: u64, url: String },
    #[error(
        "page {page} ({url}) returns cursor \"{cursor}\" at {path} again: paging would loop; check cursorPath and param"
    )]
    CursorRepeats {
        page: u64,
        url: String,
        cursor: String,
        path: String,
    },
    #[error("page {page}: the {param} parameter overflows")]
    Overflow { page: u64, param: String },
    #[error("page {page}: the next request {url} was already made; paging would loop")]
    Requested { page: u64, url: String },
    /// `what` says where the link was found: `Link header`, `next URL at /next`.
    #[error("page {page} ({current}): the {what} \"{target}\" is not a URL: {source}")]
    NotAUrl {
        page: u64,
        current: String,
        what: String,
        target: String,
        #[source]
        source: url::ParseError,
    },
    #[error(
        "page {page} ({current}): the {what} points to {url}, which was already read: the API's next links loop"
    )]
    LinksLoop {
        page: u64,
        current: String,
        what: String,
        url: String,
    },
}

/// Where a next-page URL may be in a body (JSON pointers), tried in order.
pub const NEXT_URL_PATHS: [&str; 12] = [
    "/next",
    "/next_url",
    "/nextUrl",
    "/next_page_url",
    "/links/next",
    "/paging/next",
    "/pagination/next",
    "/@odata.nextLink",
    "/nextLink",
    "/meta/next",
    "/_links/next",
    "/links/next/href",
];

/// Where a cursor token may be in a body, and the query parameter that sends it back.
pub const CURSOR_PATHS: [(&str, &str); 11] = [
    ("/next_cursor", "cursor"),
    ("/nextCursor", "cursor"),
    ("/nextPageToken", "pageToken"),
    ("/next_page_token", "page_token"),
    ("/cursor", "cursor"),
    ("/meta/next_cursor", "cursor"),
    ("/meta/nextCursor", "cursor"),
    ("/pagination/next_cursor", "cursor"),
    ("/response_metadata/next_cursor", "cursor"),
    ("/paging/cursors/after", "after"),
    ("/after", "after"),
];

/// Body fields (top level or under [`CONTAINERS`]) and query parameters that mean offset
/// paging; the parameter has the field's name.
pub const OFFSET_KEYS: [&str; 3] = ["offset", "skip", "start"];
/// Body fields and query parameters that mean page-number paging, with the parameter each
/// implies.
pub const PAGE_KEYS: [(&str, &str); 5] = [
    ("page", "page"),
    ("current_page", "page"),
    ("currentPage", "page"),
    ("page_number", "page_number"),
    ("pageNumber", "pageNumber"),
];
/// Body fields that give the page size, and are its query parameter.
pub const SIZE_KEYS: [&str; 5] = ["limit", "per_page", "page_size", "pageSize", "size"];
/// Objects that may hold the paging fields.
pub const CONTAINERS: [&str; 3] = ["meta", "pagination", "paging"];
pub const HAS_MORE_KEYS: [&str; 5] = ["has_more", "hasMore", "has_next", "hasNext", "more"];
pub const TOTAL_KEYS: [&str; 5] = [
    "total",
    "total_count",
    "totalCount",
    "total_results",
    "totalResults",
];
pub const TOTAL_PAGES_KEYS: [&str; 6] = [
    "total_pages",
    "totalPages",
    "last_page",
    "lastPage",
    "page_count",
    "pageCount",
];

/// The pagination settings of a Connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub kind: PaginationKind,
    pub param: Option<String>,
    pub size_param: Option<String>,
    pub size: Option<u64>,
    pub cursor_path: Option<String>,
    pub next_path: Option<String>,
}

/// A pagination style, decided once per read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Style {
    /// One request returns everything.
    Single,
    /// The `Link` header's `rel="next"`.
    LinkHeader,
    /// A next-page URL in the body at `path`.
    NextUrl { path: String },
    /// A token at `path` sent back as the query parameter `param`.
    Cursor { path: String, param: String },
    /// The query parameter `param` moves by the records read.
    Offset { param: String, size: Option<u64> },
    /// The query parameter `param` counts pages.
    Page { param: String, size: Option<u64> },
}

impl Style {
    /// The style in the words of the configuration, for the log and the step's message.
    pub fn describe(&self) -> String {
        match self {
            Self::Single => {
                "none (one page: no Link header, next URL, cursor, offset or page field found)"
                    .to_string()
            }
            Self::LinkHeader => "linkHeader (Link: rel=\"next\")".to_string(),
            Self::NextUrl { path } => format!("nextUrl (nextPath {path})"),
            Self::Cursor { path, param } => format!("cursor (cursorPath {path}, param {param})"),
            Self::Offset { param, size } => format!("offset (param {param}{})", size_text(*size)),
            Self::Page { param, size } => format!("page (param {param}{})", size_text(*size)),
        }
    }
}

fn size_text(size: Option<u64>) -> String {
    size.map(|s| format!(", size {s}")).unwrap_or_default()
}

/// One response, as pagination sees it.
pub struct Response<'a> {
    /// The URL that was requested.
    pub url: &'a Url,
    /// The raw `Link` header, if any.
    pub link: Option<&'a str>,
    pub body: &'a Value,
    /// The page's records.
    pub records: &'a [Value],
}

/// What follows a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Url(Url),
    /// The response was a probe that returned records already read: drop them, then
    /// request this URL.
    Skip(Url),
    Done,
}

/// Walks the pages of one read.
#[derive(Debug)]
pub struct Paginator {
    options: Options,
    style: Option<Style>,
    /// Pages seen so far.
    pages: u64,
    /// Records seen so far.
    records: u64,
    /// Offset or page number of the page just seen.
    position: u64,
    /// Page size taken from the first page when nothing configures it.
    first_len: Option<u64>,
    previous: Option<u64>,
    visited: HashSet<u64>,
    /// The probe in flight, while `auto` asks the API how it pages.
    probe: Option<Probe>,
    /// Why `auto` probed, once a probe chose the style.
    probed: Option<String>,
    /// The number of the first page: 0 or 1.
    first_page: u64,
}

impl Paginator {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            style: None,
            pages: 0,
            records: 0,
            position: 0,
            first_len: None,
            previous: None,
            visited: HashSet::new(),
            probe: None,
            probed: None,
            first_page: 1,
        }
    }

    /// The first request: the base URL with the configured page size, when there is one.
    pub fn first_url(&self, mut url: Url) -> Url {
        if let (Some(param), Some(size)) = (&self.options.size_param, self.options.size) {
            set_param(&mut url, param, &size.to_string());
        }
        url
    }

    /// The style in use, once the first response decided it.
    pub fn style(&self) -> Option<&Style> {
        self.style.as_ref()
    }

    /// The style in use and how `auto` found it, for the log and the step's message.
    pub fn describe(&self) -> Option<String> {
        let style = self.style.as_ref()?.describe();
        Some(match &self.probed {
            Some(signal) => format!("{style}, probed because page 1 says {signal}"),
            None => style,
        })
    }

    /// The parameter a probe in flight sends (`offset=10`) and why, for messages.
    pub fn probing(&self) -> Option<(String, &str)> {
        self.probe.as_ref().map(|p| (p.trying(), p.signal.as_str()))
    }

    /// Whether `auto` chose the style (so it is worth telling the user which).
    pub fn is_auto(&self) -> bool {
        self.options.kind == PaginationKind::Auto
    }

    /// Pages seen so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The request after `response`, or `Done`. Errors say why paging cannot go on safely.
    pub fn next(&mut self, response: &Response<'_>) -> Result<Next, PagingError> {
        self.pages += 1;
        let page = self.pages;
        self.visited.insert(hash_of(response.url.as_str()));
        let len = response.records.len() as u64;
        let fingerprint = fingerprint(response.records);
        if let Some(mut probe) = self.probe.take() {
            match probe.outcome(fingerprint, len) {
                Outcome::Retry(url) => {
                    self.probe = Some(probe);
                    return Ok(Next::Skip(url));
                }
                Outcome::Failed(message) => return Err(message),
                Outcome::Chosen { style, first_page } => {
                    self.first_page = first_page;
                    self.position = current_position(&style, response.url).unwrap_or(0);
                    self.style = Some(style);
                    self.probed = Some(probe.signal);
                }
            }
        }
        self.records += len;
        if len > 0 && self.previous == Some(fingerprint) {
            return Err(PagingError::Repeats {
                page,
                url: response.url.to_string(),
            });
        }
        self.previous = Some(fingerprint);
        if self.style.is_none() {
            let style = match self.options.kind {
                PaginationKind::Auto => detect(response, &self.options),
                _ => forced(response, &self.options),
            };
            self.first_len = Some(len);
            if style == Style::Single
                && self.options.kind == PaginationKind::Auto
                && let Some((probe, url)) =
                    Probe::start(response.url, response.body, len, fingerprint, &self.options)
            {
                self.probe = Some(probe);
                return Ok(Next::Url(url));
            }
            self.position = start_position(&style, response);
            if matches!(style, Style::Page { .. }) && self.position == 0 {
                self.first_page = 0;
            }
            self.style = Some(style);
        }
        let Some(style) = self.style.clone() else {
            return Ok(Next::Done);
        };
        match style {
            Style::Single => Ok(Next::Done),
            Style::LinkHeader => match response.link.and_then(next_link) {
                Some(target) => self.follow(response.url, &target, "Link header"),
                None => Ok(Next::Done),
            },
            Style::NextUrl { path } => match next_url_at(response.body, &path) {
                Some(target) => self.follow(response.url, &target, &format!("next URL at {path}")),
                None => Ok(Next::Done),
            },
            Style::Cursor { path, param } => {
                if has_more(response.body) == Some(false) {
                    return Ok(Next::Done);
                }
                let Some(cursor) = response.body.pointer(&path).and_then(token) else {
                    return Ok(Next::Done);
                };
                if !self.visited.insert(hash_of(&format!("cursor\0{cursor}"))) {
                    return Err(PagingError::CursorRepeats {
                        page,
                        url: response.url.to_string(),
                        cursor,
                        path,
                    });
                }
                let mut url = response.url.clone();
                set_param(&mut url, &param, &cursor);
                Ok(Next::Url(url))
            }
            Style::Offset { ref param, size } | Style::Page { ref param, size } => {
                if self.is_last(&style, response, len, size) {
                    return Ok(Next::Done);
                }
                let next = match style {
                    Style::Offset { .. } => self.position.checked_add(len),
                    _ => self.position.checked_add(1),
                }
                .ok_or_else(|| PagingError::Overflow {
                    page,
                    param: param.clone(),
                })?;
                let mut url = response.url.clone();
                set_param(&mut url, param, &next.to_string());
                if !self.visited.insert(hash_of(url.as_str())) {
                    return Err(PagingError::Requested {
                        page,
                        url: url.to_string(),
                    });
                }
                Ok(Next::Url(url))
            }
        }
    }

    /// Whether an offset or page response is the last one.
    fn is_last(
        &mut self,
        style: &Style,
        response: &Response<'_>,
        len: u64,
        size: Option<u64>,
    ) -> bool {
        if len == 0 || has_more(response.body) == Some(false) {
            return true;
        }
        let size = size.or(self.first_len).unwrap_or(len);
        if len < size {
            return true;
        }
        let current = current_position(style, response.url).unwrap_or(self.position);
        self.position = current;
        if let Some(total) = paging_number(response.body, &TOTAL_KEYS) {
            let read = match style {
                Style::Offset { .. } => current.saturating_add(len),
                _ => self.records,
            };
            if read >= total {
                return true;
            }
        }
        // Pages read so far, counted from 1 whatever the first page's number.
        let read_pages = current.saturating_add(1).saturating_sub(self.first_page);
        if let Style::Page { .. } = style
            && let Some(pages) = paging_number(response.body, &TOTAL_PAGES_KEYS)
            && read_pages >= pages
        {
            return true;
        }
        false
    }

    /// A next URL, resolved against the current one, unless it was visited already.
    fn follow(&mut self, current: &Url, target: &str, what: &str) -> Result<Next, PagingError> {
        let url = current
            .join(target)
            .map_err(|source| PagingError::NotAUrl {
                page: self.pages,
                current: current.to_string(),
                what: what.to_string(),
                target: target.to_string(),
                source,
            })?;
        if !self.visited.insert(hash_of(url.as_str())) {
            return Err(PagingError::LinksLoop {
                page: self.pages,
                current: current.to_string(),
                what: what.to_string(),
                url: url.to_string(),
            });
        }
        Ok(Next::Url(url))
    }
}

/// The style `auto` chooses from the first response.
pub fn detect(response: &Response<'_>, options: &Options) -> Style {
    if response.link.and_then(next_link).is_some() {
        return Style::LinkHeader;
    }
    for path in NEXT_URL_PATHS {
        match response.body.pointer(path) {
            Some(Value::String(s)) if looks_like_url(s) => {
                return Style::NextUrl {
                    path: path.to_string(),
                };
            }
            Some(Value::Object(o)) if o.get("href").is_some_and(Value::is_string) => {
                return Style::NextUrl {
                    path: format!("{path}/href"),
                };
            }
            _ => {}
        }
    }
    for (path, param) in CURSOR_PATHS {
        if response.body.pointer(path).and_then(token).is_some() {
            return Style::Cursor {
                path: path.to_string(),
                param: options.param.clone().unwrap_or_else(|| param.to_string()),
            };
        }
    }
    // An API whose only page says so with an empty next link or cursor uses that style.
    if let Some(path) = NEXT_URL_PATHS
        .iter()
        .find(|p| response.body.pointer(p).is_some_and(Value::is_null))
    {
        return Style::NextUrl {
            path: path.to_string(),
        };
    }
    if let Some((path, param)) = CURSOR_PATHS.iter().find(|(p, _)| {
        response
            .body
            .pointer(p)
            .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
    }) {
        return Style::Cursor {
            path: path.to_string(),
            param: options.param.clone().unwrap_or_else(|| param.to_string()),
        };
    }
    let size = options.size.or_else(|| size_in(response.body));
    let query: Vec<String> = response
        .url
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    for key in OFFSET_KEYS {
        if paging_number(response.body, &[key]).is_some() || query.iter().any(|q| q == key) {
            return Style::Offset {
                param: options.param.clone().unwrap_or_else(|| key.to_string()),
                size,
            };
        }
    }
    for (key, param) in PAGE_KEYS {
        if paging_number(response.body, &[key]).is_some() || query.iter().any(|q| q == key) {
            return Style::Page {
                param: options.param.clone().unwrap_or_else(|| param.to_string()),
                size,
            };
        }
    }
    Style::Single
}

/// The style a forced kind means, its missing details taken from the first response.
fn forced(response: &Response<'_>, options: &Options) -> Style {
    let size = options.size.or_else(|| size_in(response.body));
    let detected = || detect(response, options);
    match options.kind {
        PaginationKind::None | PaginationKind::Auto => Style::Single,
        PaginationKind::LinkHeader => Style::LinkHeader,
        PaginationKind::NextUrl => Style::NextUrl {
            path: options
                .next_path
                .clone()
                .unwrap_or_else(|| match detected() {
                    Style::NextUrl { path } => path,
                    _ => NEXT_URL_PATHS[0].to_string(),
                }),
        },
        PaginationKind::Cursor => Style::Cursor {
            path: options.cursor_path.clone().unwrap_or_default(),
            param: options
                .param
                .clone()
                .unwrap_or_else(|| "cursor".to_string()),
        },
        PaginationKind::Offset => Style::Offset {
            param: options
                .param
                .clone()
                .unwrap_or_else(|| "offset".to_string()),
            size,
        },
        PaginationKind::Page => Style::Page {
            param: options.param.clone().unwrap_or_else(|| "page".to_string()),
            size,
        },
    }
}

/// The offset or page number of the first response: from its request, else from the page
/// field of its body (`page: 0` on a 0-based API), else 0 or 1.
fn start_position(style: &Style, response: &Response<'_>) -> u64 {
    let body_page = || {
        PAGE_KEYS
            .iter()
            .find_map(|(key, _)| paging_number(response.body, &[key]))
    };
    match style {
        Style::Offset { .. } => current_position(style, response.url).unwrap_or(0),
        Style::Page { .. } => current_position(style, response.url)
            .or_else(body_page)
            .unwrap_or(1),
        _ => 0,
    }
}

fn current_position(style: &Style, url: &Url) -> Option<u64> {
    let param = match style {
        Style::Offset { param, .. } | Style::Page { param, .. } => param,
        _ => return None,
    };
    url.query_pairs()
        .find(|(k, _)| k == param.as_str())
        .and_then(|(_, v)| v.parse().ok())
}

/// The target of `rel="next"` in a `Link` header (RFC 8288).
pub fn next_link(header: &str) -> Option<String> {
    for part in split_links(header) {
        let part = part.trim();
        let Some(end) = part.find('>') else { continue };
        let Some(target) = part.get(..end).and_then(|t| t.strip_prefix('<')) else {
            continue;
        };
        let params = part.get(end + 1..).unwrap_or_default();
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
    }
    None
}

/// Splits a `Link` header at the commas between links, not the ones inside `<…>` or quotes.
fn split_links(header: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_url, mut in_quotes) = (0, false, false);
    for (i, c) in header.char_indices() {
        match c {
            '<' if !in_quotes => in_url = true,
            '>' if !in_quotes => in_url = false,
            '"' if !in_url => in_quotes = !in_quotes,
            ',' if !in_url && !in_quotes => {
                parts.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&header[start..]);
    parts
}

fn next_url_at(body: &Value, path: &str) -> Option<String> {
    match body.pointer(path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => o.get("href").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn looks_like_url(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with('/')
        || s.starts_with('?')
}

/// A cursor token: a non-empty string or a number.
fn token(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `has_more` and its spellings, at the top level or in a paging object.
fn has_more(body: &Value) -> Option<bool> {
    paging_fields(body, &HAS_MORE_KEYS).find_map(Value::as_bool)
}

/// A whole number under one of `keys`, at the top level or in a paging object.
fn paging_number(body: &Value, keys: &[&str]) -> Option<u64> {
    paging_fields(body, keys).find_map(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

fn size_in(body: &Value) -> Option<u64> {
    paging_number(body, &SIZE_KEYS).filter(|s| *s > 0)
}

/// The first of `keys` present and not null, at the top level or in a paging object, with
/// its name.
pub fn paging_field<'a>(
    body: &'a Value,
    keys: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    std::iter::once(body)
        .chain(CONTAINERS.iter().filter_map(|c| body.get(c)))
        .find_map(|o| {
            keys.iter()
                .find_map(|k| o.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        })
}

fn paging_fields<'a>(body: &'a Value, keys: &'a [&'a str]) -> impl Iterator<Item = &'a Value> + 'a {
    let objects = std::iter::once(body).chain(CONTAINERS.iter().filter_map(|c| body.get(c)));
    objects.flat_map(move |o| keys.iter().filter_map(move |k| o.get(k)))
}

/// Sets a query parameter, replacing every earlier value of it.
pub fn set_param(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (k, v) in &kept {
        pairs.append_pair(k, v);
    }
    pairs.append_pair(name, value);
}

fn hash_of(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A cheap identity of a page's records: their count and the first and last record.
pub fn fingerprint(records: &[Value]) -> u64 {
    let mut h = DefaultHasher::new();
    records.len().hash(&mut h);
    for r in [records.first(), records.last()].into_iter().flatten() {
        r.to_string().hash(&mut h);
    }
    h.finish()
}
