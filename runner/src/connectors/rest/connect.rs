//! HTTP with the manners an API expects: authentication (bearer, basic, API key, OAuth2
//! client credentials with the token renewed before it expires and after a 401), a request
//! rate limit, a timeout per request, and retries of 429, 5xx and failed connections that
//! honour `Retry-After`. Errors name the URL (credentials redacted) and the page.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::sync::Mutex;

use super::config::{Auth, OAuth2Client, PageLimit, RestConfig};
use crate::connectors::retry::RetrySchedule;

/// Longest wait a `Retry-After` may ask for: beyond it the request fails and says so.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Why a request failed, as `synqx check` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer: refused, unknown host, timed out, or still failing after the retries.
    Unreachable,
    /// 401 or 403.
    Unauthorized,
    /// 404.
    NotFound,
    /// Any other answer the request cannot continue with.
    Rejected,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    pub kind: FailureKind,
    pub message: String,
    #[source]
    pub source: Option<reqwest::Error>,
}

/// One successful response.
#[derive(Debug)]
pub struct Fetched {
    pub link: Option<String>,
    pub body: bytes::Bytes,
}

/// An HTTP client of one Connection and asset.
pub struct Client {
    http: reqwest::Client,
    settings: RestConfig,
    headers: HeaderMap,
    limiter: Option<Limiter>,
    token: Mutex<Option<Token>>,
    page_limit: PageLimit,
}

struct Token {
    value: String,
    renew_at: Option<Instant>,
}

/// Spaces requests at least `interval` apart.
struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    async fn wait(&self) {
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + self.interval;
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Client {
    /// A client with the Connection's settings and these extra headers (the asset's).
    pub fn new(
        settings: &RestConfig,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, HttpError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in extra {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| {
                rejected(format!(
                    "{}: header \"{k}\" is not a valid header name: {e}",
                    settings.at()
                ))
            })?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| {
                rejected(format!(
                    "{}: header \"{k}\" has a value that cannot be sent: {e}",
                    settings.at()
                ))
            })?;
            headers.insert(name, value);
        }
        match &settings.auth {
            Auth::Bearer(token) => {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    secret_header(&format!("Bearer {token}"), settings)?,
                );
            }
            Auth::HeaderKey { name, value } => {
                let name = HeaderName::try_from(name.as_str()).map_err(|e| {
                    rejected(format!(
                        "{}: rest.auth.apiKey.header \"{name}\" is not a valid header name: {e}",
                        settings.at()
                    ))
                })?;
                headers.insert(name, secret_header(value, settings)?);
            }
            _ => {}
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("synqx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError {
                kind: FailureKind::Rejected,
                message: format!("{}: cannot build the HTTP client: {e}", settings.at()),
                source: Some(e),
            })?;
        let limiter = settings.rate_limit.map(|per_second| Limiter {
            interval: Duration::from_secs(1) / per_second,
            next: Mutex::new(Instant::now()),
        });
        Ok(Self {
            http,
            settings: settings.clone(),
            headers,
            limiter,
            token: Mutex::new(None),
            page_limit: PageLimit::within(&Default::default()),
        })
    }

    /// Reads pages of at most what `limit` says; larger ones fail the read.
    pub fn limit_pages(&mut self, limit: PageLimit) {
        self.page_limit = limit;
    }

    /// GETs `url` (page `page` of the read, for messages), retrying what is worth retrying.
    pub async fn get(&self, url: &Url, page: u64) -> Result<Fetched, HttpError> {
        let backoff = RetrySchedule {
            attempts: self.settings.max_attempts,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        };
        let shown = self.shown(url);
        let mut renewed = false;
        let mut attempt = 1;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.wait().await;
            }
            let mut request = self
                .http
                .get(self.authorised_url(url))
                .headers(self.headers.clone());
            request = match &self.settings.auth {
                Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
                Auth::OAuth2(client) => request.bearer_auth(self.token(client).await?),
                _ => request,
            };
            let failure = match request.send().await {
                Err(e) => Failure::Transport(e),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        let link = response
                            .headers()
                            .get(reqwest::header::LINK)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        match read_body(response, self.page_limit.bytes).await {
                            Ok(body) => return Ok(Fetched { link, body }),
                            Err(ReadFailure::TooLarge) => {
                                let PageLimit { bytes, why } = &self.page_limit;
                                return Err(rejected(format!(
                                    "{}: page {page} ({shown}) is larger than {} MiB, the most a page may be {why}: ask the API for smaller pages (pagination.size and sizeParam), or give the step more memory (SYNQX_STEP_MEMORY, else the container's memory limit)",
                                    self.settings.at(),
                                    bytes / (1024 * 1024)
                                )));
                            }
                            Err(ReadFailure::Transport(e)) => Failure::Transport(e),
                        }
                    } else if status == StatusCode::UNAUTHORIZED
                        && matches!(self.settings.auth, Auth::OAuth2(_))
                        && !renewed
                    {
                        // The token expired early or was revoked: one fresh token, at once.
                        renewed = true;
                        *self.token.lock().await = None;
                        continue;
                    } else {
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after);
                        let text = response.text().await.unwrap_or_default();
                        Failure::Status {
                            status,
                            retry_after,
                            text,
                        }
                    }
                }
            };
            let retryable = match &failure {
                Failure::Transport(e) => !e.is_builder() && !e.is_redirect(),
                Failure::Status { status, .. } => {
                    *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
                }
            };
            if !retryable || attempt >= backoff.attempts {
                return Err(self.failed(failure, page, &shown, attempt));
            }
            attempt += 1;
            let wait = match &failure {
                Failure::Status {
                    retry_after: Some(after),
                    ..
                } => {
                    if *after > MAX_RETRY_AFTER {
                        return Err(HttpError {
                            kind: FailureKind::Unreachable,
                            message: format!(
                                "{}: page {page} ({shown}): the API asks to retry after {}s, longer than synqx waits ({}s); run the step later",
                                self.settings.at(),
                                after.as_secs(),
                                MAX_RETRY_AFTER.as_secs()
                            ),
                            source: None,
                        });
                    }
                    *after
                }
                _ => backoff.delay(attempt),
            };
            // What failed, without the error's text: a transport error quotes the URL, which
            // may carry the API key.
            let why = match &failure {
                Failure::Status { status, .. } => format!("HTTP {status}"),
                Failure::Transport(e) if e.is_timeout() => "no answer in time".into(),
                Failure::Transport(e) if e.is_connect() => "the connection failed".into(),
                Failure::Transport(_) => "the request failed".into(),
            };
            tracing::warn!(
                "{}: page {page} ({shown}): {why}; attempt {attempt} of {} in {:.1}s",
                self.settings.at(),
                backoff.attempts,
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The URL as requested: with the API key when it goes in the query.
    fn authorised_url(&self, url: &Url) -> Url {
        match &self.settings.auth {
            Auth::QueryKey { name, value } => {
                let mut url = url.clone();
                url.query_pairs_mut().append_pair(name, value);
                url
            }
            _ => url.clone(),
        }
    }

    /// A URL as messages show it: credentials redacted.
    pub fn shown(&self, url: &Url) -> String {
        self.settings.redactor.redact(url)
    }

    async fn token(&self, client: &OAuth2Client) -> Result<String, HttpError> {
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref()
            && t.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token(client).await?;
        let value = fresh.value.clone();
        *token = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self, client: &OAuth2Client) -> Result<Token, HttpError> {
        let at = self.settings.at();
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if !client.scopes.is_empty() {
            form.push(("scope", client.scopes.join(" ")));
        }
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(client.token_url.clone())
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError {
                kind: FailureKind::Unreachable,
                message: self.settings.redactor.redact(format!(
                    "{at}: cannot reach the OAuth2 token endpoint {}: {}",
                    client.token_url,
                    error_chain(&e)
                )),
                source: Some(e),
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let kind = if matches!(status.as_u16(), 400 | 401 | 403) {
                FailureKind::Unauthorized
            } else {
                FailureKind::Rejected
            };
            return Err(HttpError {
                kind,
                message: self.settings.redactor.redact(format!(
                    "{at}: the OAuth2 token endpoint {} refused the client credentials: HTTP {status}: {}",
                    client.token_url,
                    snippet(&self.settings.redactor.redact(&text))
                )),
                source: None,
            });
        }
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(value) = parsed.get("access_token").and_then(|v| v.as_str()) else {
            return Err(rejected(format!(
                "{at}: the OAuth2 token endpoint {} answered without an access_token",
                client.token_url
            )));
        };
        // The token is a credential from here on: an API may quote it back in an error.
        self.settings.redactor.remember(value);
        // Renew a little before the expiry the server announced, so no request races it. The
        // server's number is capped (a day) so no value it sends can overflow the clock.
        let renew_at = parsed
            .get("expires_in")
            .and_then(|v| v.as_f64())
            .map(|secs| {
                let secs = if secs.is_finite() {
                    secs.clamp(0.0, 86_400.0)
                } else {
                    0.0
                };
                let margin = (secs / 10.0).min(30.0);
                Instant::now() + Duration::from_secs_f64(secs - margin)
            });
        Ok(Token {
            value: value.to_string(),
            renew_at,
        })
    }

    fn failed(&self, failure: Failure, page: u64, shown: &str, attempts: u32) -> HttpError {
        let at = self.settings.at();
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        let (kind, message, source) = match failure {
            Failure::Transport(e) => {
                let what = if e.is_timeout() {
                    format!("no answer within {}s", self.settings.timeout.as_secs_f64())
                } else {
                    error_chain(&e)
                };
                (
                    FailureKind::Unreachable,
                    format!("{at}: page {page} ({shown}): {what}{tries}"),
                    Some(e),
                )
            }
            Failure::Status { status, text, .. } => {
                let kind = match status.as_u16() {
                    401 | 403 => FailureKind::Unauthorized,
                    404 => FailureKind::NotFound,
                    429 | 500..=599 => FailureKind::Unreachable,
                    _ => FailureKind::Rejected,
                };
                let hint = match kind {
                    FailureKind::Unauthorized => format!(
                        " (check the Connection's {})",
                        self.settings.auth.describe()
                    ),
                    FailureKind::NotFound => " (check the asset's path below baseUrl)".to_string(),
                    _ => String::new(),
                };
                (
                    kind,
                    format!(
                        "{at}: page {page} ({shown}): HTTP {status}{tries}: {}{hint}",
                        snippet(&self.settings.redactor.redact(&text))
                    ),
                    None,
                )
            }
        };
        HttpError {
            kind,
            message: self.settings.redactor.redact(message),
            source,
        }
    }
}

enum Failure {
    Transport(reqwest::Error),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        text: String,
    },
}

enum ReadFailure {
    TooLarge,
    Transport(reqwest::Error),
}

/// The body of `response`, refused as soon as it shows to be larger than `limit` bytes (by
/// its `Content-Length`, else while it arrives) so that no more than that is ever held.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ReadFailure> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadFailure::TooLarge);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadFailure::Transport)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(ReadFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn secret_header(value: &str, settings: &RestConfig) -> Result<HeaderValue, HttpError> {
    let mut header = HeaderValue::try_from(value).map_err(|_| {
        rejected(format!(
            "{}: the {} contains characters a header cannot carry",
            settings.at(),
            settings.auth.describe()
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn rejected(message: String) -> HttpError {
    HttpError {
        kind: FailureKind::Rejected,
        message,
        source: None,
    }
}

/// The first 300 characters of a response body, on one line.
fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".to_string();
    }
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

/// An error with its causes, which reqwest keeps in the chain ("error sending request" alone
/// says nothing).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

fn urlencode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", text)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("  {\"error\":\n \"bad\"} "), "{\"error\": \"bad\"}");
        assert_eq!(snippet(""), "(empty body)");
        assert_eq!(snippet(&"x".repeat(400)).len(), 303);
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(urlencode("read write/all"), "read+write%2Fall");
    }
}
