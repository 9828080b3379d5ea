//! The `snowflake` block turned into what a session needs. Pure: secrets are resolved from
//! memory and nothing touches the network, so a bad spec fails before a step starts.

use secrecy::SecretString;
use synqx_api::connection::SnowflakeConnection;

use crate::connectors::jwt::{RsaSigner, remember_key};
use crate::connectors::{ConnectionRef, optional_text};
use crate::error::{Error, Result};
use crate::secrets::{PLACEHOLDER, Redactor};

/// How the session logs in. Its `Debug` shows no secret: the password is a [`SecretString`]
/// and the key's `Debug` prints none of it.
#[derive(Debug)]
pub enum Auth {
    Password(SecretString),
    /// Key-pair authentication: an RS256 JWT signed with the user's private key.
    KeyPair(Box<RsaSigner>),
    /// `synqx validate` checks the block without secret values: the key referenced is
    /// parsed where the step runs.
    KeyNotResolved,
}

/// Everything a session needs, and the secrets to scrub from messages.
#[derive(Debug)]
pub struct SnowflakeConfig {
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
    /// Knows the password or key (and each line of the key): every text the server or the
    /// HTTP client returns passes through it.
    pub redactor: Redactor,
}

impl SnowflakeConfig {
    /// Checks the block and resolves its secrets; no network.
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec: &SnowflakeConnection = conn.block(conn.spec.snowflake.as_ref())?;
        let account = conn
            .required("snowflake.account", &spec.account)?
            .to_string();
        let warehouse = conn
            .required("snowflake.warehouse", &spec.warehouse)?
            .to_string();
        let database = conn
            .required("snowflake.database", &spec.database)?
            .to_string();
        let schema = optional_text(spec.schema.as_deref()).unwrap_or_else(|| "PUBLIC".into());
        let user = conn.resolve("snowflake.user", &spec.user)?;
        if user.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": snowflake.user is empty"
            )));
        }
        let redactor = conn.secrets.redactor();
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
                Auth::Password(conn.secret("snowflake.password", password)?.into())
            }
            (None, Some(key)) => {
                let pem = conn.secret("snowflake.privateKey", key)?;
                remember_key(&redactor, &pem);
                if pem == PLACEHOLDER {
                    Auth::KeyNotResolved
                } else {
                    let signer = RsaSigner::from_pem(&pem).map_err(|e| {
                        Error::Config(format!("Connection \"{name}\": snowflake.privateKey: {e}"))
                    })?;
                    Auth::KeyPair(Box::new(signer))
                }
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
            role: optional_text(spec.role.as_deref()),
            stage_files: true,
            redactor,
        })
    }

    /// Text with every secret of the Connection replaced by `***`, for anything the server or
    /// the HTTP client said.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        self.redactor.redact(text)
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }

    /// A config for unit tests of the protocol, against a stub at `base_url`.
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
            redactor: secrets.into_iter().collect(),
        }
    }
}

/// The API's base URL: the account's public host, or `host` (a name, `name:port`, or a URL
/// with `http://`/`https://`, which is how a local test server is reached).
fn base_url(connection: &str, account: &str, host: Option<&str>) -> Result<String> {
    let url = match optional_text(host).as_deref() {
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

    fn settings(spec: &ConnectionSpec) -> Result<SnowflakeConfig> {
        let secrets = Secrets::new(
            [],
            [
                (
                    "SYNQX_SECRET_SF__PASSWORD".to_string(),
                    "hunter2".to_string(),
                ),
                (
                    "SYNQX_SECRET_SF__KEY".to_string(),
                    TEST_KEY_PKCS8.to_string(),
                ),
            ],
        );
        SnowflakeConfig::new(&ConnectionRef {
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

    #[test]
    fn the_runs_redactor_knows_the_key_and_each_line_of_it() {
        let key = spec(|b| {
            b.password = None;
            b.private_key = Some(SecretValue::from_secret("sf", "key"));
        });
        let secrets = Secrets::new(
            [],
            [(
                "SYNQX_SECRET_SF__KEY".to_string(),
                TEST_KEY_PKCS8.to_string(),
            )],
        );
        let conn = ConnectionRef {
            name: "sf",
            spec: &key,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        SnowflakeConfig::new(&conn).unwrap();
        // What the run logs and reports goes through the run's one redactor.
        let line = TEST_KEY_PKCS8.lines().nth(3).unwrap();
        assert_eq!(
            secrets.redactor().redact(format!("bad key line {line}")),
            "bad key line ***"
        );
    }

    #[test]
    fn validation_without_secret_values_accepts_a_referenced_key() {
        let key = spec(|b| {
            b.password = None;
            b.private_key = Some(SecretValue::from_secret("sf", "key"));
        });
        let secrets = Secrets::placeholders();
        let conn = ConnectionRef {
            name: "sf",
            spec: &key,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        crate::connectors::validate(&conn, None).unwrap();
        let config = SnowflakeConfig::new(&conn).unwrap();
        assert!(matches!(config.auth, Auth::KeyNotResolved));
    }
}
