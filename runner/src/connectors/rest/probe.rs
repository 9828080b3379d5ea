//! Probing for offset or page-number paging when the first page says more records follow
//! (`has_more: true`, a `total` above what it holds, `total_pages` above 1, or a full page of
//! the body's `per_page`/`limit`) but names no offset, page, cursor or next link to get them.
//! Stopping there would silently read one page, so `auto` asks the API instead:
//!
//! - `offset=<records of page 1>`: records other than page 1's mean the API skips by offset;
//! - `page=1`: page 1's records again mean either 1-based pages or an ignored parameter, so
//!   `page=2` decides; other records mean 0-based pages, and they are the second page.
//!
//! Offset goes first unless the body speaks of pages (`per_page`, `page_size`, `total_pages`
//! …). A probe that returns page 1 again or nothing is dropped (its records were read
//! already) and the next one is tried; when none moves, the read stops with an error asking
//! for `pagination.kind`, never with one page read silently.

use reqwest::Url;
use serde_json::Value;

use super::pagination::{
    HAS_MORE_KEYS, Options, PagingError, SIZE_KEYS, Style, TOTAL_KEYS, TOTAL_PAGES_KEYS,
    paging_field, set_param,
};

/// Page-size fields that mean the API counts pages rather than records.
const PAGE_SIZE_KEYS: [&str; 3] = ["per_page", "page_size", "pageSize"];

/// One way of asking for the second page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    Offset,
    PageOne,
    PageTwo,
}

/// What a probe's response decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The API did not move: its records are not new; ask with this URL next.
    Retry(Url),
    /// The API pages this way; the response is the second page. `first_page` is 0 or 1.
    Chosen { style: Style, first_page: u64 },
    /// No probe moved the API: the message asks for `pagination.kind`.
    Failed(PagingError),
}

/// A probe in progress.
#[derive(Debug)]
pub struct Probe {
    first_url: Url,
    first: u64,
    first_len: u64,
    size: Option<u64>,
    /// Why page 1 looks like it has followers, in the body's own words.
    pub signal: String,
    param_override: Option<String>,
    trying: Candidate,
    left: Vec<Candidate>,
    tried: Vec<String>,
}

impl Probe {
    /// A probe when page 1 (`url`, `body`, `len` records with `fingerprint`) says more
    /// records follow, with the first request to send; `None` when it does not.
    pub fn start(
        url: &Url,
        body: &Value,
        len: u64,
        fingerprint: u64,
        options: &Options,
    ) -> Option<(Self, Url)> {
        let size = options.size.or_else(|| {
            paging_field(body, &SIZE_KEYS)
                .and_then(|(_, v)| number(v))
                .filter(|s| *s > 0)
        });
        let signal = more_signal(body, len, size)?;
        let pages_first = paging_field(body, &PAGE_SIZE_KEYS).is_some()
            || paging_field(body, &TOTAL_PAGES_KEYS).is_some();
        let mut left = if pages_first {
            vec![Candidate::PageOne, Candidate::Offset]
        } else {
            vec![Candidate::Offset, Candidate::PageOne]
        };
        let trying = left.remove(0);
        let probe = Self {
            first_url: url.clone(),
            first: fingerprint,
            first_len: len,
            size,
            signal,
            param_override: options.param.clone(),
            trying,
            left,
            tried: Vec::new(),
        };
        let request = probe.request();
        Some((probe, request))
    }

    /// The parameter and value being tried, for messages: `offset=10`.
    pub fn trying(&self) -> String {
        let (param, value) = self.pair(self.trying);
        format!("{param}={value}")
    }

    /// Decides from the response to the probe just sent.
    pub fn outcome(&mut self, fingerprint: u64, len: u64) -> Outcome {
        let moved = len > 0 && fingerprint != self.first;
        let tried = self.trying();
        self.tried.push(tried);
        match (self.trying, moved) {
            (Candidate::Offset, true) => Outcome::Chosen {
                style: Style::Offset {
                    param: self.param("offset"),
                    size: self.size,
                },
                first_page: 1,
            },
            (Candidate::PageOne, true) => Outcome::Chosen {
                style: self.page_style(),
                first_page: 0,
            },
            (Candidate::PageTwo, true) => Outcome::Chosen {
                style: self.page_style(),
                first_page: 1,
            },
            // `page=1` returned page 1: 1-based pages, or a parameter the API ignores.
            (Candidate::PageOne, false) if len > 0 => self.retry(Candidate::PageTwo),
            (_, false) => match self.left.first().copied() {
                Some(next) => {
                    self.left.remove(0);
                    self.retry(next)
                }
                None => Outcome::Failed(PagingError::Unpageable {
                    first_url: self.first_url.to_string(),
                    signal: self.signal.clone(),
                    tried: self.tried.join(", "),
                }),
            },
        }
    }

    fn retry(&mut self, next: Candidate) -> Outcome {
        self.trying = next;
        Outcome::Retry(self.request())
    }

    fn request(&self) -> Url {
        let (param, value) = self.pair(self.trying);
        let mut url = self.first_url.clone();
        set_param(&mut url, &param, &value);
        url
    }

    fn pair(&self, candidate: Candidate) -> (String, String) {
        match candidate {
            Candidate::Offset => (self.param("offset"), self.first_len.to_string()),
            Candidate::PageOne => (self.param("page"), "1".to_string()),
            Candidate::PageTwo => (self.param("page"), "2".to_string()),
        }
    }

    fn param(&self, default: &str) -> String {
        self.param_override
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    fn page_style(&self) -> Style {
        Style::Page {
            param: self.param("page"),
            size: self.size,
        }
    }
}

/// Why page 1 says more records follow, or `None` when nothing says so.
fn more_signal(body: &Value, len: u64, size: Option<u64>) -> Option<String> {
    if let Some((key, value)) = paging_field(body, &HAS_MORE_KEYS) {
        return (value.as_bool() == Some(true)).then(|| format!("{key}: true"));
    }
    // A total at or below what page 1 holds says it is the only page, whatever follows.
    if let Some((key, total)) =
        paging_field(body, &TOTAL_KEYS).and_then(|(k, v)| number(v).map(|n| (k, n)))
    {
        return (total > len).then(|| format!("{key}: {total}, {len} on page 1"));
    }
    if let Some((key, pages)) =
        paging_field(body, &TOTAL_PAGES_KEYS).and_then(|(k, v)| number(v).map(|n| (k, n)))
    {
        return (pages > 1).then(|| format!("{key}: {pages}"));
    }
    size.filter(|s| len > 0 && len >= *s)
        .map(|s| format!("a full page of {s} records"))
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
