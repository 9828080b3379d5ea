//! The REST Connection and a step's source, parsed and checked without I/O: the base URL, the
//! asset's URL, headers, query parameters, pagination, auth with its secrets resolved, and
//! the limits of every request.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use synqx_api::connection::{PaginationKind, RestConnection};
use synqx_api::pipeline::{Nested, Source};

use super::pagination::Options;
use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;
use crate::transforms::MemoryBudget;

/// Longest time one request may take unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per request unless `maxAttempts` says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// Largest response body read, whatever the step's memory: a page is parsed whole.
pub const MAX_PAGE_BYTES: usize = 256 * 1024 * 1024;
/// How many times its size a page takes while it is held: its body, the JSON values parsed
/// from it (an object of four short fields, 89 bytes of text, costs about ten times that as
/// a `serde_json` map) and the batches cut from them. Measured with `runner/tests/rest_memory.rs`
/// (a debug build): pages of 4, 8 and 15 MiB raised the peak RSS 66, 121 and 215 MiB above the
/// 76 MiB of an empty page, about 14 times their size; that test reads a page just below the
/// limit this gives and checks the peak against the budget.
pub const PAGE_EXPANSION: u64 = 16;

/// The largest page a step may read, and why, for the message when a page is larger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageLimit {
    pub bytes: usize,
    pub why: String,
}

impl PageLimit {
    /// A page held with its parsed values must fit in half of the step's memory budget (the
    /// other half is the `sql` transforms' pool), and never beyond [`MAX_PAGE_BYTES`].
    pub fn within(memory: &MemoryBudget) -> Self {
        let fits = memory.bytes / 2 / PAGE_EXPANSION;
        match usize::try_from(fits) {
            Ok(bytes) if bytes < MAX_PAGE_BYTES => Self {
                bytes,
                why: format!(
                    "in half of the step's memory budget of {}, since a page is held whole and takes about {PAGE_EXPANSION} times its size once parsed",
                    memory.describe_budget()
                ),
            },
            _ => Self {
                bytes: MAX_PAGE_BYTES,
                why: "a page is held and parsed whole, and SynqX reads at most this".into(),
            },
        }
    }
}

/// How requests authenticate, with the secrets resolved.
#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
    HeaderKey { name: String, value: String },
    QueryKey { name: String, value: String },
    OAuth2(OAuth2Client),
}

/// An OAuth2 client-credentials client.
#[derive(Clone)]
pub struct OAuth2Client {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

impl Auth {
    /// The auth kind, for messages (never its values).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::None => "no auth",
            Self::Bearer(_) => "bearer token",
            Self::Basic { .. } => "basic auth",
            Self::HeaderKey { .. } | Self::QueryKey { .. } => "API key",
            Self::OAuth2(_) => "OAuth2 client credentials",
        }
    }
}

/// A REST Connection ready to use.
#[derive(Clone)]
pub struct RestConfig {
    pub connection: String,
    pub base_url: Url,
    pub headers: BTreeMap<String, String>,
    pub auth: Auth,
    pub pagination: Options,
    pub records_path: Option<String>,
    pub cursor_param: Option<String>,
    pub rate_limit: Option<u32>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub redactor: Redactor,
}

impl RestConfig {
    /// Parses the Connection and resolves its secrets. No I/O.
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Self::from_spec(conn, conn.block(conn.spec.rest.as_ref())?)
    }

    fn from_spec(conn: &ConnectionRef<'_>, spec: &RestConnection) -> Result<Self> {
        let name = conn.name;
        let bad = |field: &str, why: String| {
            Error::Config(format!("Connection \"{name}\": rest.{field}: {why}"))
        };
        let mut base_url = Url::parse(&spec.base_url).map_err(|e| {
            bad(
                "baseUrl",
                format!("\"{}\" is not a URL: {e}", spec.base_url),
            )
        })?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(bad(
                "baseUrl",
                format!("\"{}\" is not an http:// or https:// URL", spec.base_url),
            ));
        }
        // Asset paths are below the base URL: `https://h/v1` + `orders` is `https://h/v1/orders`.
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let secret = |field: &str, value: &synqx_api::SecretValue| conn.secret(field, value);
        let auth = match &spec.auth {
            None => Auth::None,
            Some(a) => {
                if let Some(token) = &a.bearer_token {
                    Auth::Bearer(secret("rest.auth.bearerToken", token)?)
                } else if let Some(b) = &a.basic {
                    let user = conn.resolve("rest.auth.basic.username", &b.username)?;
                    let password = secret("rest.auth.basic.password", &b.password)?;
                    // The header carries both in base64, which an API may quote back.
                    conn.secrets
                        .redactor()
                        .remember(&basic_credentials(&user, &password));
                    Auth::Basic { user, password }
                } else if let Some(k) = &a.api_key {
                    let value = secret("rest.auth.apiKey.value", &k.value)?;
                    match (&k.header, &k.query) {
                        (Some(h), None) => Auth::HeaderKey {
                            name: h.clone(),
                            value,
                        },
                        (None, Some(q)) => Auth::QueryKey {
                            name: q.clone(),
                            value,
                        },
                        _ => {
                            return Err(bad(
                                "auth.apiKey",
                                "set exactly one of header and query".into(),
                            ));
                        }
                    }
                } else if let Some(o) = &a.oauth2 {
                    let token_url = Url::parse(&o.token_url).map_err(|e| {
                        bad(
                            "auth.oauth2.tokenUrl",
                            format!("\"{}\" is not a URL: {e}", o.token_url),
                        )
                    })?;
                    let client_id = secret("rest.auth.oauth2.clientId", &o.client_id)?;
                    let client_secret = secret("rest.auth.oauth2.clientSecret", &o.client_secret)?;
                    // The token request sends both as basic auth.
                    conn.secrets
                        .redactor()
                        .remember(&basic_credentials(&client_id, &client_secret));
                    Auth::OAuth2(OAuth2Client {
                        token_url,
                        client_id,
                        client_secret,
                        scopes: o.scopes.clone(),
                    })
                } else {
                    Auth::None
                }
            }
        };
        let timeout = match spec.timeout.as_deref() {
            Some(t) => {
                synqx_api::duration::parse_duration(t).map_err(|e| bad("timeout", e.to_string()))?
            }
            None => DEFAULT_TIMEOUT,
        };
        let p = spec.pagination.clone().unwrap_or_default();
        let pagination = Options {
            kind: p.kind,
            param: p.param,
            size_param: p.size_param,
            size: p.size.map(u64::from),
            cursor_path: p.cursor_path,
            next_path: p.next_path,
        };
        if pagination.kind == PaginationKind::Cursor && pagination.cursor_path.is_none() {
            return Err(bad(
                "pagination.cursorPath",
                "is required for cursor pagination".into(),
            ));
        }
        Ok(Self {
            connection: name.to_string(),
            base_url,
            headers: spec.headers.clone(),
            auth,
            pagination,
            records_path: spec.records_path.clone(),
            cursor_param: spec.cursor_param.clone(),
            rate_limit: spec.rate_limit.filter(|r| *r > 0),
            timeout,
            max_attempts: spec.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1),
            redactor: conn.secrets.redactor(),
        })
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }
}

/// The credentials of HTTP basic authentication as its header carries them:
/// base64 of `user:password`.
fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// What one step reads: the asset's URL with its query, its headers, where the records are.
#[derive(Clone, Debug)]
pub struct Asset {
    pub url: Url,
    pub headers: BTreeMap<String, String>,
    pub records_path: Option<String>,
    pub nested: Nested,
}

impl Asset {
    /// The asset of a source: its FQN below the base URL (or an absolute URL), the step's
    /// `params` on its query, the step's headers over the Connection's, and the step's
    /// `recordsPath` over the Connection's.
    pub fn new(settings: &RestConfig, source: &Source) -> Result<Self> {
        let fqn = source.asset.fqn.trim();
        let joined = if fqn.starts_with("http://") || fqn.starts_with("https://") {
            Url::parse(fqn)
        } else {
            settings.base_url.join(fqn.trim_start_matches('/'))
        };
        let mut url = joined.map_err(|e| {
            Error::Config(format!(
                "{}: asset \"{fqn}\" is not a path below {}: {e}",
                settings.at(),
                settings.base_url
            ))
        })?;
        if !source.params.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &source.params {
                pairs.append_pair(k, v);
            }
        }
        let mut headers = settings.headers.clone();
        headers.extend(source.headers.clone());
        Ok(Self {
            url,
            headers,
            records_path: source
                .records_path
                .clone()
                .or_else(|| settings.records_path.clone()),
            nested: source.nested.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> MemoryBudget {
        MemoryBudget {
            bytes,
            from: "SYNQX_STEP_MEMORY".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_page_may_take_half_the_budget_once_parsed_and_never_beyond_the_cap() {
        let limit = PageLimit::within(&budget(1 << 30));
        assert_eq!(limit.bytes, 32 << 20);
        assert_eq!(
            limit.why,
            "in half of the step's memory budget of 1024 MiB from SYNQX_STEP_MEMORY, since a page is held whole and takes about 16 times its size once parsed"
        );
        assert_eq!(PageLimit::within(&budget(16 << 30)).bytes, MAX_PAGE_BYTES);
        assert_eq!(PageLimit::within(&budget(u64::MAX)).bytes, MAX_PAGE_BYTES);
        assert_eq!(PageLimit::within(&budget(0)).bytes, 0);
    }
}
