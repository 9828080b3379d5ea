//! The `bigquery` block turned into what a client needs. Pure: the service-account key is
//! parsed from memory and nothing touches the network, so a bad spec fails before a step starts.

use std::sync::Arc;

use serde::Deserialize;
use synqx_api::connection::{BigQueryConnection, BigQueryLoadFormat};

use crate::connectors::jwt::{RsaSigner, remember_key};
use crate::connectors::{ConnectionRef, optional_text};
use crate::error::{Error, Result};
use crate::secrets::{PLACEHOLDER, Redactor};

/// The public API's host.
pub const PUBLIC_ENDPOINT: &str = "https://bigquery.googleapis.com";
/// Where Google issues OAuth2 tokens for service accounts.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// A service-account key as Google's JSON key file holds it. Its `Debug` shows none of the
/// key (the signer's prints none).
#[derive(Debug)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    pub signer: RsaSigner,
}

/// The fields of a key file this client reads.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
}

/// Everything a client needs, and the secrets to scrub from messages.
#[derive(Debug)]
pub struct BigQueryConfig {
    pub connection: String,
    pub project: String,
    pub dataset: Option<String>,
    pub location: Option<String>,
    /// `https://bigquery.googleapis.com`, or the `endpoint` override (a local emulator).
    pub endpoint: String,
    /// The format of the sink's load jobs.
    pub load_format: BigQueryLoadFormat,
    /// `None` only with an `endpoint` override (emulators take requests without a token), or
    /// when `synqx validate` checks the block without secret values.
    pub account: Option<Arc<ServiceAccount>>,
    /// Knows the key file and each line of its private key: every text the API or the HTTP
    /// client returns passes through it.
    pub redactor: Redactor,
}

impl BigQueryConfig {
    /// Checks the block and resolves its secrets; no network.
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec: &BigQueryConnection = conn.block(conn.spec.bigquery.as_ref())?;
        let project = conn
            .required("bigquery.project", &spec.project)?
            .to_string();
        let endpoint =
            optional_text(spec.endpoint.as_deref()).map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "Connection \"{name}\": bigquery.endpoint \"{e}\" must be an http:// or https:// URL"
            )));
        }
        let redactor = conn.secrets.redactor();
        let account = match &spec.credentials_json {
            Some(value) => {
                let json = conn.secret("bigquery.credentialsJson", value)?;
                if let Ok(key) = serde_json::from_str::<KeyFile>(&json)
                    && let Some(pem) = &key.private_key
                {
                    remember_key(&redactor, pem);
                }
                match json == PLACEHOLDER {
                    true => None,
                    false => Some(Arc::new(service_account(name, &json)?)),
                }
            }
            None if endpoint.is_some() => None,
            None => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": bigquery.credentialsJson is needed (a service-account key); workload identity is not supported by this version"
                )));
            }
        };
        Ok(Self {
            connection: name.to_string(),
            project,
            dataset: optional_text(spec.dataset.as_deref()),
            location: optional_text(spec.location.as_deref()),
            endpoint: endpoint.unwrap_or_else(|| PUBLIC_ENDPOINT.to_string()),
            load_format: spec.load_format.unwrap_or_default(),
            account,
            redactor,
        })
    }

    /// Text with the key (and any part of it) replaced by `***`.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        self.redactor.redact(text)
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }

    /// A config for unit tests against a stub at `endpoint`.
    #[cfg(test)]
    pub fn for_test(
        endpoint: &str,
        account: Option<Arc<ServiceAccount>>,
        secrets: Vec<String>,
    ) -> Self {
        Self {
            connection: "bq".into(),
            project: "proj".into(),
            dataset: Some("ds".into()),
            location: Some("EU".into()),
            endpoint: endpoint.into(),
            load_format: BigQueryLoadFormat::Parquet,
            account,
            redactor: secrets.into_iter().collect(),
        }
    }
}

/// Reads a service-account key file; errors name the missing field, never a value.
pub fn service_account(connection: &str, json: &str) -> Result<ServiceAccount> {
    let bad = |what: &str| {
        Error::Config(format!(
            "Connection \"{connection}\": bigquery.credentialsJson: {what} (expected a service-account key file as the Cloud console downloads it)"
        ))
    };
    let key: KeyFile = serde_json::from_str(json).map_err(|_| bad("not valid JSON"))?;
    if let Some(kind) = &key.kind
        && kind != "service_account"
    {
        return Err(bad(&format!(
            "its type is \"{kind}\", not \"service_account\""
        )));
    }
    let client_email = key.client_email.ok_or_else(|| bad("no client_email"))?;
    let pem = key.private_key.ok_or_else(|| bad("no private_key"))?;
    let signer = RsaSigner::from_pem(&pem).map_err(|e| bad(&format!("private_key: {e}")))?;
    Ok(ServiceAccount {
        client_email,
        private_key_id: key.private_key_id,
        token_uri: key.token_uri.unwrap_or_else(|| TOKEN_URI.to_string()),
        signer,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use synqx_api::{ConnectionSpec, SecretValue};

    use super::*;
    use crate::connectors::jwt::tests::TEST_KEY_PKCS8;
    use crate::secrets::Secrets;

    /// A key file for the test key, with the token endpoint at `token_uri`.
    pub fn key_file(token_uri: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "proj",
            "private_key_id": "kid-1",
            "private_key": TEST_KEY_PKCS8,
            "client_email": "loader@proj.iam.gserviceaccount.com",
            "token_uri": token_uri,
        })
        .to_string()
    }

    fn settings(block: BigQueryConnection, key: &str) -> Result<BigQueryConfig> {
        let spec = ConnectionSpec {
            bigquery: Some(block),
            ..Default::default()
        };
        let secrets = Secrets::new([], [("SYNQX_SECRET_BQ__KEY".to_string(), key.to_string())]);
        BigQueryConfig::new(&ConnectionRef {
            name: "bq",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
    }

    fn block() -> BigQueryConnection {
        BigQueryConnection {
            project: "proj".into(),
            credentials_json: Some(SecretValue::from_secret("bq", "key")),
            ..Default::default()
        }
    }

    #[test]
    fn a_key_file_gives_the_account_and_the_public_endpoint() {
        let s = settings(block(), &key_file("https://oauth2.googleapis.com/token")).unwrap();
        assert_eq!(s.endpoint, PUBLIC_ENDPOINT);
        let account = s.account.as_ref().unwrap();
        assert_eq!(account.client_email, "loader@proj.iam.gserviceaccount.com");
        assert_eq!(account.private_key_id.as_deref(), Some("kid-1"));
        assert!(!format!("{s:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn an_emulator_endpoint_needs_no_key() {
        let mut b = block();
        b.credentials_json = None;
        b.endpoint = Some("http://127.0.0.1:9050/".into());
        let s = settings(b, "").unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:9050");
        assert!(s.account.is_none());
        let mut b = block();
        b.credentials_json = None;
        assert!(
            settings(b, "")
                .unwrap_err()
                .to_string()
                .contains("bigquery.credentialsJson is needed")
        );
    }

    #[test]
    fn bad_key_files_say_what_is_wrong_and_quote_nothing() {
        let e = settings(
            block(),
            "{\"type\": \"authorized_user\", \"secret\": \"hunter2\"}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("its type is \"authorized_user\""), "{e}");
        assert!(!e.contains("hunter2"));
        let e = settings(block(), "hunter2").unwrap_err().to_string();
        assert!(
            e.contains("bigquery.credentialsJson: not valid JSON"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn the_runs_redactor_knows_the_key_file_and_each_line_of_its_key() {
        let spec = ConnectionSpec {
            bigquery: Some(block()),
            ..Default::default()
        };
        let secrets = Secrets::new(
            [],
            [(
                "SYNQX_SECRET_BQ__KEY".to_string(),
                key_file("https://oauth2.googleapis.com/token"),
            )],
        );
        let conn = ConnectionRef {
            name: "bq",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        BigQueryConfig::new(&conn).unwrap();
        let line = TEST_KEY_PKCS8.lines().nth(2).unwrap();
        assert_eq!(
            secrets
                .redactor()
                .redact(format!("token request with {line}")),
            "token request with ***"
        );
    }

    #[test]
    fn validation_without_secret_values_accepts_a_referenced_key_file() {
        let spec = ConnectionSpec {
            bigquery: Some(block()),
            ..Default::default()
        };
        let secrets = Secrets::placeholders();
        let conn = ConnectionRef {
            name: "bq",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        crate::connectors::validate(&conn, None).unwrap();
    }
}
