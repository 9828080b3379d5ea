//! The `snowflake` block turned into what a session needs. Pure: secrets are resolved from
//! memory and nothing touches the network, so a bad spec fails before a step starts.

use synqx_api::connection::SnowflakeConnection;

use crate::connectors::ConnectionRef;
use crate::connectors::jwt::RsaSigner;
use crate::connectors::redact::{pem_pieces, redact};
use crate::connectors::sql_config::{block, required};
use crate::error::{Error, Result};

/// How the session logs in.
pub enum Auth {
    Password(String),
    /// Key-pair authentication: an RS256 JWT signed with the user's private key.
    KeyPair(RsaSigner),
}

/// Everything a session needs, and the secrets to scrub from messages.
pub struct Settings {
    /// Name of the Connection, for messages.
    pub connection: String,
    /// `https://<account>.snowflakecomputing.com`, or the `host` override as given
    /// (`http://127.0.0.1:8000` for a local test server).
    pub base_url: String,
    pub account: String,
    pub user: String,
    pub auth: Auth,
    pub warehouse: String,
    pub database: String,
    pub schema: String,
    pub role: Option<String>,
    /// Stage loads as files when the server offers a stage this client can upload to (always,
    /// outside tests: the array-bound path is what the tests turn this off to reach).
    pub stage_files: bool,
    /// The plaintext secrets (password or PEM key), kept only to scrub them from any text a
    /// message could carry.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("connection", &self.connection)
            .field("base_url", &self.base_url)
            .field("account", &self.account)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec: &SnowflakeConnection = block(name, "snowflake", conn.spec.snowflake.as_ref())?;
        let account = required(name, "snowflake.account", &spec.account)?.to_string();
        let warehouse = required(name, "snowflake.warehouse", &spec.warehouse)?.to_string();
        let database = required(name, "snowflake.database", &spec.database)?.to_string();
        let schema = spec
            .schema
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("PUBLIC")
            .to_string();
        let user = conn.secrets.resolve(name, "snowflake.user", &spec.user)?;
        if user.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": snowflake.user is empty"
            )));
        }
        let mut secrets = Vec::new();
        let auth = match (&spec.password, &spec.private_key) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": set snowflake.password or snowflake.privateKey, not both"
                )));
            }
            (None, None) => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": snowflake needs password or privateKey (key-pair authentication)"
                )));
            }
            (Some(password), None) => {
                let plain = conn.secrets.resolve(name, "snowflake.password", password)?;
                secrets.push(plain.clone());
                Auth::Password(plain)
            }
            (None, Some(key)) => {
                let pem = conn.secrets.resolve(name, "snowflake.privateKey", key)?;
                let signer = RsaSigner::from_pem(&pem).map_err(|e| {
                    Error::Config(format!("Connection \"{name}\": snowflake.privateKey: {e}"))
                })?;
                secrets.extend(pem_pieces(&pem));
                Auth::KeyPair(signer)
            }
        };
        Ok(Self {
            connection: name.to_string(),
            base_url: base_url(name, &account, spec.host.as_deref())?,
            account,
            user,
            auth,
            warehouse,
            database,
            schema,
            role: spec.role.clone().filter(|r| !r.trim().is_empty()),
            stage_files: true,
            secrets,
        })
    }

    /// Text with every secret of the Connection replaced by `***`, for anything the server or
    /// the HTTP client said.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        redact(&self.secrets, text)
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        format!("Connection \"{}\"", self.connection)
    }

    /// Settings for unit tests of the protocol, against a stub at `base_url`.
    #[cfg(test)]
    pub fn for_test(base_url: &str, auth: Auth, secrets: Vec<String>) -> Self {
        Self {
            connection: "sf".into(),
            base_url: base_url.into(),
            account: "myorg-acct".into(),
            user: "loader".into(),
            auth,
            warehouse: "WH".into(),
            database: "DB".into(),
            schema: "PUBLIC".into(),
            role: Some("ETL".into()),
            stage_files: true,
            secrets,
        }
    }
}

/// The API's base URL: the account's public host, or `host` (a name, `name:port`, or a URL
/// with `http://`/`https://`, which is how a local test server is reached).
fn base_url(connection: &str, account: &str, host: Option<&str>) -> Result<String> {
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let url = match host {
        None => format!("https://{}.snowflakecomputing.com", account.to_lowercase()),
        Some(h) if h.starts_with("http://") || h.starts_with("https://") => {
            h.trim_end_matches('/').to_string()
        }
        Some(h) if h.contains("://") => {
            return Err(Error::Config(format!(
                "Connection \"{connection}\": snowflake.host \"{h}\" must be a host name or an http:// or https:// URL"
            )));
        }
        Some(h) => format!("https://{}", h.trim_end_matches('/')),
    };
    Ok(url)
}

#[cfg(test)]
mod tests {
    use synqx_api::{ConnectionSpec, SecretValue};

    use super::*;
    use crate::connectors::jwt::tests::TEST_KEY_PKCS8;
    use crate::secrets::Secrets;

    fn spec(f: impl FnOnce(&mut SnowflakeConnection)) -> ConnectionSpec {
        let mut block = SnowflakeConnection {
            account: "MyOrg-Acct".into(),
            user: SecretValue::plain("loader"),
            password: Some(SecretValue::from_secret("sf", "password")),
            warehouse: "WH".into(),
            database: "DB".into(),
            ..Default::default()
        };
        f(&mut block);
        ConnectionSpec {
            snowflake: Some(block),
            ..Default::default()
        }
    }

    fn settings(spec: &ConnectionSpec) -> Result<Settings> {
        let secrets = Secrets::new(
            [],
            [
                (
                    "SYNQX_SECRET_SF_PASSWORD".to_string(),
                    "hunter2".to_string(),
                ),
                (
                    "SYNQX_SECRET_SF_KEY".to_string(),
                    TEST_KEY_PKCS8.to_string(),
                ),
            ],
        );
        Settings::new(&ConnectionRef {
            name: "sf",
            spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
    }

    #[test]
    fn the_account_names_the_public_host_and_host_overrides_it() {
        let s = settings(&spec(|_| {})).unwrap();
        assert_eq!(s.base_url, "https://myorg-acct.snowflakecomputing.com");
        assert_eq!(s.schema, "PUBLIC");
        let s = settings(&spec(|b| b.host = Some("http://127.0.0.1:8123/".into()))).unwrap();
        assert_eq!(s.base_url, "http://127.0.0.1:8123");
        let s = settings(&spec(|b| {
            b.host = Some("acct.privatelink.snowflakecomputing.com".into())
        }))
        .unwrap();
        assert_eq!(
            s.base_url,
            "https://acct.privatelink.snowflakecomputing.com"
        );
        let e = settings(&spec(|b| b.host = Some("ftp://x".into()))).unwrap_err();
        assert!(e.to_string().contains("snowflake.host \"ftp://x\""), "{e}");
    }

    #[test]
    fn exactly_one_of_password_and_private_key() {
        let e = settings(&spec(|b| b.password = None)).unwrap_err();
        assert!(
            e.to_string().contains("needs password or privateKey"),
            "{e}"
        );
        let both = spec(|b| b.private_key = Some(SecretValue::from_secret("sf", "key")));
        assert!(
            settings(&both)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let key = spec(|b| {
            b.password = None;
            b.private_key = Some(SecretValue::from_secret("sf", "key"));
        });
        assert!(matches!(settings(&key).unwrap().auth, Auth::KeyPair(_)));
    }

    #[test]
    fn a_bad_private_key_is_named_but_not_quoted() {
        let spec = spec(|b| {
            b.password = None;
            b.private_key = Some(SecretValue::plain("not-a-key-hunter2"));
        });
        let e = settings(&spec).unwrap_err().to_string();
        assert!(
            e.starts_with("Connection \"sf\": snowflake.privateKey: the private key is not PEM"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redact_scrubs_the_password() {
        let s = settings(&spec(|_| {})).unwrap();
        assert_eq!(
            s.redact("login as loader/hunter2 failed"),
            "login as loader/*** failed"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
