//! Logging in to Snowflake's REST API as its drivers do (`POST /session/v1/login-request`),
//! with a password or a key-pair JWT, and classifying what went wrong. The session token is
//! sent as `Authorization: Snowflake Token="…"` on every later request and never appears in a
//! message; neither do the password, the private key or the JWT.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{Auth, SnowflakeConfig};
use crate::connectors::http_api::without_url;
use crate::connectors::jwt::JwtHeader;

/// Longest wait for any one HTTP exchange; queries that run longer are polled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Lifetime of a key-pair JWT (Snowflake accepts at most one hour).
const JWT_LIFETIME: u64 = 59 * 60;

pub use crate::connectors::http_api::{Failure, Kind};

/// A logged-in session.
pub struct Session {
    pub(super) http: reqwest::Client,
    pub(super) settings: Arc<SnowflakeConfig>,
    pub(super) token: String,
    pub(super) sequence: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("base_url", &self.settings.base_url)
            .finish_non_exhaustive()
    }
}

/// The envelope of every Snowflake API answer.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub success: bool,
}

impl Session {
    /// Logs in. The server picks warehouse, database, schema and role from the query string,
    /// as the drivers send them.
    pub async fn login(settings: Arc<SnowflakeConfig>) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| Failure::protocol(format!("building the HTTP client failed: {e}")))?;
        let body = login_body(&settings, unix_now())?;
        let mut query = vec![
            ("request_id", request_id()),
            ("databaseName", settings.database.clone()),
            ("schemaName", settings.schema.clone()),
            ("warehouse", settings.warehouse.clone()),
        ];
        if let Some(role) = &settings.role {
            query.push(("roleName", role.clone()));
        }
        let url = format!("{}/session/v1/login-request", settings.base_url);
        let response = http
            .post(&url)
            .query(&query)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport(&settings, "login", &e))?;
        let envelope = read_envelope(&settings, "login", response).await?;
        let token = envelope
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Failure::protocol(format!(
                    "{}: the login answer has no session token",
                    settings.at()
                ))
            })?
            .to_string();
        Ok(Self {
            http,
            settings,
            token,
            sequence: AtomicU64::new(0),
        })
    }

    /// Ends the session on the server (best effort: a session also expires by itself).
    pub async fn close(&self) {
        let url = format!("{}/session", self.settings.base_url);
        let _ = self
            .http
            .post(url)
            .query(&[("delete", "true"), ("request_id", &request_id())])
            .header("Authorization", self.authorization())
            .header("Accept", "application/snowflake")
            .send()
            .await;
    }

    pub(super) fn authorization(&self) -> String {
        format!("Snowflake Token=\"{}\"", self.token)
    }

    pub fn settings(&self) -> &SnowflakeConfig {
        &self.settings
    }
}

/// The login request body as the drivers send it.
fn login_body(settings: &SnowflakeConfig, now: u64) -> Result<Value, Failure> {
    let mut data = json!({
        "CLIENT_APP_ID": "synqx",
        "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
        "ACCOUNT_NAME": settings.account,
        "LOGIN_NAME": settings.user,
        "CLIENT_ENVIRONMENT": {
            "APPLICATION": "synqx",
            "OS": std::env::consts::OS,
        },
        "SESSION_PARAMETERS": {
            // Results as Arrow, timestamps and session clocks in UTC, one statement per request.
            "PYTHON_CONNECTOR_QUERY_RESULT_FORMAT": "ARROW",
            "TIMEZONE": "UTC",
            "AUTOCOMMIT": true,
        },
    });
    match &settings.auth {
        Auth::Password(password) => {
            data["PASSWORD"] = json!(password.expose_secret());
        }
        Auth::KeyPair(signer) => {
            let account = jwt_account(&settings.account);
            let user = settings.user.to_uppercase();
            let digest = ring::digest::digest(&ring::digest::SHA256, &signer.public_key_info());
            let fingerprint =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
            let claims = json!({
                "iss": format!("{account}.{user}.SHA256:{fingerprint}"),
                "sub": format!("{account}.{user}"),
                "iat": now,
                "exp": now + JWT_LIFETIME,
            });
            let token = signer
                .sign(&JwtHeader::rs256(None), &claims)
                .map_err(|e| Failure {
                    kind: Kind::Unauthorized,
                    code: None,
                    message: format!("{}: snowflake.privateKey: {e}", settings.at()),
                })?;
            data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
            data["TOKEN"] = json!(token);
        }
        Auth::KeyNotResolved => {
            return Err(Failure {
                kind: Kind::Unauthorized,
                code: None,
                message: format!(
                    "{}: snowflake.privateKey was read without its value (as synqx validate reads it) and cannot log in",
                    settings.at()
                ),
            });
        }
    }
    Ok(json!({ "data": data }))
}

/// The account as a key-pair JWT names it: upper case, without a region or cloud suffix
/// (`xy12345.us-east-2.aws` -> `XY12345`).
fn jwt_account(account: &str) -> String {
    account.split('.').next().unwrap_or(account).to_uppercase()
}

/// A random UUID (version 4), the request id the API wants on every call.
pub(super) fn request_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // A failing system RNG leaves zeros: the id only has to be unique per session.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A request that got no answer.
pub(super) fn transport(settings: &SnowflakeConfig, what: &str, e: &reqwest::Error) -> Failure {
    // reqwest names the URL; ours carry no secret, but strip the query string anyway (chunk
    // URLs are presigned).
    let text = settings.redact(without_url(e));
    Failure {
        kind: Kind::Unreachable,
        code: None,
        message: format!(
            "{}: {what}: no answer from {}: {text} (check snowflake.account or snowflake.host and the network)",
            settings.at(),
            settings.base_url
        ),
    }
}

/// Reads an API answer; a failure names the step, Snowflake's code and its message.
pub(super) async fn read_envelope(
    settings: &SnowflakeConfig,
    what: &str,
    response: reqwest::Response,
) -> Result<Envelope, Failure> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(settings, what, &e))?;
    let envelope: Envelope = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(_) => {
            let kind = match status.as_u16() {
                401 | 403 => Kind::Unauthorized,
                404 => Kind::NotFound,
                _ => Kind::Protocol,
            };
            let excerpt: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Err(Failure {
                kind,
                code: None,
                message: format!(
                    "{}: {what}: HTTP {status} from {}: {}",
                    settings.at(),
                    settings.base_url,
                    settings.redact(excerpt.trim())
                ),
            });
        }
    };
    if envelope.success {
        return Ok(envelope);
    }
    // Queries still running are not failures: the caller polls them.
    if matches!(envelope.code.as_deref(), Some("333333" | "333334")) {
        return Ok(envelope);
    }
    Err(server_failure(settings, what, &envelope))
}

/// A failure Snowflake reported, classified by its code.
pub(super) fn server_failure(
    settings: &SnowflakeConfig,
    what: &str,
    envelope: &Envelope,
) -> Failure {
    let code = envelope.code.clone();
    let message = envelope.message.as_deref().unwrap_or("no message");
    let kind = classify(code.as_deref(), message);
    let advice = match kind {
        Kind::Unauthorized => {
            " (check snowflake.user and its password or privateKey, and the role's grants)"
        }
        Kind::NotFound => " (check the database, schema and table names and the role's grants)",
        _ => "",
    };
    Failure {
        kind,
        message: format!(
            "{}: {what}: Snowflake error {}: {}{advice}",
            settings.at(),
            code.as_deref().unwrap_or("(no code)"),
            settings.redact(message)
        ),
        code,
    }
}

/// The server's own text in a failure [`server_failure`] made: what follows `Snowflake error
/// <code>: ` (the statement quoted before it is not the server's).
pub(super) fn server_text(failure: &Failure) -> Option<&str> {
    let code = failure.code.as_deref()?;
    let (_, text) = failure
        .message
        .split_once(&format!("Snowflake error {code}: "))?;
    Some(text)
}

/// Snowflake's codes: 390xxx are authentication and session errors; 002003 is an object that
/// does not exist or is not authorised; 002043 a missing object in `USE`.
fn classify(code: Option<&str>, message: &str) -> Kind {
    match code {
        Some(c) if c.starts_with("390") => Kind::Unauthorized,
        Some("002003" | "002043" | "002140") => Kind::NotFound,
        _ if message.contains("does not exist") => Kind::NotFound,
        _ => Kind::Statement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::jwt::RsaSigner;
    use crate::connectors::jwt::tests::{TEST_KEY_FINGERPRINT, TEST_KEY_PKCS8, verified_claims};
    use synqx_testkit::http::{Reply, StandIn};

    fn login_ok() -> Reply {
        Reply::json(
            200,
            json!({"data": {"token": "session-token-1", "masterToken": "m", "validityInSeconds": 3600},
                   "code": null, "message": null, "success": true}),
        )
    }

    #[tokio::test]
    async fn password_login_sends_what_the_drivers_send() {
        let stub = StandIn::scripted(vec![login_ok()]);
        let settings = SnowflakeConfig::for_test(
            &stub.url(),
            Auth::Password("hunter2".into()),
            vec!["hunter2".into()],
        );
        let session = Session::login(Arc::new(settings)).await.unwrap();
        assert_eq!(
            session.authorization(),
            "Snowflake Token=\"session-token-1\""
        );
        let requests = stub.requests();
        let login = &requests[0];
        assert_eq!(login.method, "POST");
        assert_eq!(login.path(), "/session/v1/login-request");
        assert_eq!(login.query("databaseName").as_deref(), Some("DB"));
        assert_eq!(login.query("schemaName").as_deref(), Some("PUBLIC"));
        assert_eq!(login.query("warehouse").as_deref(), Some("WH"));
        assert_eq!(login.query("roleName").as_deref(), Some("ETL"));
        assert_eq!(login.query("request_id").map(|r| r.len()), Some(36));
        let body = login.json();
        assert_eq!(body["data"]["LOGIN_NAME"], "loader");
        assert_eq!(body["data"]["ACCOUNT_NAME"], "myorg-acct");
        assert_eq!(body["data"]["PASSWORD"], "hunter2");
        assert!(body["data"].get("AUTHENTICATOR").is_none());
    }

    #[tokio::test]
    async fn key_pair_login_sends_a_jwt_with_the_key_fingerprint() {
        let stub = StandIn::scripted(vec![login_ok()]);
        let signer = RsaSigner::from_pem(TEST_KEY_PKCS8).unwrap();
        let check = RsaSigner::from_pem(TEST_KEY_PKCS8).unwrap();
        let settings =
            SnowflakeConfig::for_test(&stub.url(), Auth::KeyPair(Box::new(signer)), vec![]);
        Session::login(Arc::new(settings)).await.unwrap();
        let body = stub.requests()[0].json();
        assert_eq!(body["data"]["AUTHENTICATOR"], "SNOWFLAKE_JWT");
        assert!(body["data"].get("PASSWORD").is_none());
        let claims = verified_claims(&check, body["data"]["TOKEN"].as_str().unwrap());
        assert_eq!(
            claims["iss"],
            format!("MYORG-ACCT.LOADER.SHA256:{TEST_KEY_FINGERPRINT}")
        );
        assert_eq!(claims["sub"], "MYORG-ACCT.LOADER");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, JWT_LIFETIME);
    }

    #[test]
    fn the_jwt_account_drops_region_and_cloud() {
        assert_eq!(jwt_account("xy12345.us-east-2.aws"), "XY12345");
        assert_eq!(jwt_account("myorg-acct"), "MYORG-ACCT");
    }

    #[tokio::test]
    async fn a_wrong_password_is_unauthorized_and_never_quoted() {
        // The answer Snowflake documents for bad credentials (error 390100).
        let stub = StandIn::scripted(vec![Reply::json(
            200,
            json!({"data": {"nextAction": "RETRY_LOGIN", "authnMethod": "USERNAME_PASSWORD"},
                   "code": "390100",
                   "message": "Incorrect username or password was specified.",
                   "success": false}),
        )]);
        let settings = SnowflakeConfig::for_test(
            &stub.url(),
            Auth::Password("hunter2".into()),
            vec!["hunter2".into()],
        );
        let e = Session::login(Arc::new(settings)).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unauthorized);
        assert_eq!(e.code.as_deref(), Some("390100"));
        assert_eq!(
            e.message,
            "Connection \"sf\": login: Snowflake error 390100: Incorrect username or password was specified. (check snowflake.user and its password or privateKey, and the role's grants)"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_host_and_not_the_secret() {
        // A port nothing listens on: bind, note it, drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let settings = SnowflakeConfig::for_test(
            &url,
            Auth::Password("hunter2".into()),
            vec!["hunter2".into()],
        );
        let e = Session::login(Arc::new(settings)).await.unwrap_err();
        assert_eq!(e.kind, Kind::Unreachable);
        assert!(e.message.contains(&url), "{}", e.message);
        assert!(!e.message.contains("hunter2"));
    }

    #[tokio::test]
    async fn credentials_a_server_echoes_are_redacted_everywhere() {
        // A server (or proxy) that quotes the request back must not put the password or a line
        // of the private key into an error.
        let key_line = TEST_KEY_PKCS8.lines().nth(3).unwrap().to_string();
        let echo = format!("bad login hunter2 with key {key_line}");
        let stub = StandIn::scripted(vec![
            Reply::json(
                200,
                json!({"code": "390100", "message": echo, "success": false}),
            ),
            Reply::json(502, json!("not json: hunter2")),
        ]);
        let mut secrets = crate::connectors::jwt::pem_pieces(TEST_KEY_PKCS8);
        secrets.push("hunter2".into());
        let settings = Arc::new(SnowflakeConfig::for_test(
            &stub.url(),
            Auth::Password("hunter2".into()),
            secrets,
        ));
        for _ in 0..2 {
            let e = Session::login(settings.clone()).await.unwrap_err();
            let text = format!("{e} {e:?} {}", super::super::error(&settings, e.clone()));
            assert!(text.contains("***"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&key_line), "{text}");
        }
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }
}
