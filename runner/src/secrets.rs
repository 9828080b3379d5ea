//! Secret values: from v1 Secret documents in the given files, or from
//! `SYNQX_SECRET_<SECRET>__<KEY>` environment variables (what the operator gives a step's pod).
//! Plaintext stays in memory and never reaches logs, errors or the state database.
//!
//! One description and one redaction serve every connector: a connector resolves a field that
//! is a credential with [`Secrets::secret`], which remembers the value in the run's one
//! [`Redactor`]; every text a server or driver returns passes through
//! [`Redactor::redact`] before it reaches a message; and a message says where a value comes
//! from with [`describe`], never what it is. A credential given as a plain `value` is
//! remembered too: it should not be there, and a message is no place to repeat it.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use synqx_api::SecretValue;
pub use synqx_api::redact::Redactor;
pub use synqx_api::secret::AMBIENT_CREDENTIALS_ENV;
use synqx_api::secret::secret_env_name;

use crate::error::{Error, Result};
use crate::vault::Vault;

/// Where secret values come from.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Secret name -> key -> value, from the files.
    documents: BTreeMap<String, BTreeMap<String, String>>,
    /// Environment variables, normally `std::env::vars()`; injectable for tests.
    env: BTreeMap<String, String>,
    /// The namespace's keyring, which opens sealed values; or why the one given cannot be
    /// used (said when a sealed value needs it).
    vault: Option<Arc<Result<Vault>>>,
    /// Every credential resolved so far.
    redactor: Redactor,
    /// Resolve every reference to [`PLACEHOLDER`] (for checks without secrets).
    placeholders: bool,
    /// Whether a Connection that asks for ambient cloud credentials may have them.
    ambient: AmbientCredentials,
}

/// Who decides whether a Connection's `useAmbientCredentials: true` is honoured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AmbientCredentials {
    /// `synqx run` and `synqx check FILE`: the process's own environment, which its user
    /// chose; the Connection's word is enough.
    #[default]
    Trusted,
    /// A pod whose operator runs with `--allow-ambient-credentials`.
    Lent,
    /// A pod whose operator lends none: the Connection's word is not enough.
    Withheld,
}

impl AmbientCredentials {
    /// What the operator said in the pod's environment ([`AMBIENT_CREDENTIALS_ENV`]).
    pub fn of_pod(value: Option<&str>) -> Self {
        if value == Some("allowed") {
            Self::Lent
        } else {
            Self::Withheld
        }
    }
}

/// What a reference resolves to when Connections are only validated: `synqx validate` checks
/// the fields of a Connection without the secret values, which exist only where it runs.
pub const PLACEHOLDER: &str = "synqx-validate-placeholder";

/// Where a secret value comes from, in the user's words, never the value:
/// `key "password" of Secret "pg" (postgres.password)`.
pub fn describe(field: &str, value: &SecretValue) -> String {
    if let Some(r) = &value.secret_key_ref {
        format!("key \"{}\" of Secret \"{}\" ({field})", r.key, r.name)
    } else if value.sealed.is_some() {
        format!("the sealed value of {field}")
    } else {
        format!("the plain value of {field}")
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("secrets", &self.documents.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Secrets from Secret documents and the given environment.
    pub fn new<'a>(
        documents: impl IntoIterator<Item = &'a Secret>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut by_name: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for secret in documents {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let entry = by_name.entry(name).or_default();
            for (k, v) in secret.data.iter().flatten() {
                entry.insert(k.clone(), String::from_utf8_lossy(&v.0).to_string());
            }
            for (k, v) in secret.string_data.iter().flatten() {
                entry.insert(k.clone(), v.clone());
            }
        }
        let env = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SYNQX_SECRET_"))
            .collect();
        Self {
            documents: by_name,
            env,
            ..Default::default()
        }
    }

    /// The same secrets, opening sealed values with `vault`.
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = Some(Arc::new(Ok(vault)));
        self
    }

    /// The same secrets with a keyring that cannot be used: a sealed value fails with
    /// `problem`, anything else resolves as before.
    pub fn with_unusable_vault(mut self, problem: Error) -> Self {
        self.vault = Some(Arc::new(Err(problem)));
        self
    }

    /// The same secrets in a pod whose operator does (or does not) lend ambient
    /// credentials.
    pub fn with_ambient_credentials(mut self, ambient: AmbientCredentials) -> Self {
        self.ambient = ambient;
        self
    }

    /// Whether a Connection that asks for the process's ambient cloud credentials may have
    /// them; `Err` says why not and what to change, naming `field`.
    pub fn ambient_credentials(&self, connection: &str, field: &str) -> Result<()> {
        match self.ambient {
            AmbientCredentials::Trusted | AmbientCredentials::Lent => Ok(()),
            AmbientCredentials::Withheld => Err(Error::Config(format!(
                "Connection \"{connection}\": {field}: this operator lends no ambient cloud credentials to Connections; an administrator can allow them with --allow-ambient-credentials (Helm value runner.allowAmbientCredentials), or give the Connection its own keys"
            ))),
        }
    }

    /// Secrets for validating Connections without their values: every reference resolves to
    /// [`PLACEHOLDER`], so only the fields themselves are checked.
    pub fn placeholders() -> Self {
        Self {
            placeholders: true,
            ..Default::default()
        }
    }

    /// The run's redactor: it knows every credential resolved through [`Secrets::secret`].
    pub fn redactor(&self) -> Redactor {
        self.redactor.clone()
    }

    /// The plaintext of a credential field of a Connection (a password, a key, a token),
    /// remembered by the redactor. Errors as [`Secrets::resolve`].
    pub fn secret(&self, connection: &str, field: &str, value: &SecretValue) -> Result<String> {
        let plain = self.resolve(connection, field, value)?;
        if !self.placeholders {
            self.redactor.remember(&plain);
        }
        Ok(plain)
    }

    /// The environment variable that can carry a Secret's key: `SYNQX_SECRET_<SECRET>__<KEY>`,
    /// one name per Secret and key (the name the operator gives it in a Job,
    /// [`secret_env_name`], which says how names that cannot be spelled back get a hash).
    pub fn env_name(secret: &str, key: &str) -> String {
        secret_env_name(secret, key)
    }

    /// The plaintext of one field of a Connection. Errors name the Connection, the field, the
    /// Secret and the key, never a value.
    pub fn resolve(&self, connection: &str, field: &str, value: &SecretValue) -> Result<String> {
        if let Some(v) = &value.value {
            return Ok(v.clone());
        }
        if self.placeholders {
            return Ok(PLACEHOLDER.to_string());
        }
        if let Some(r) = &value.secret_key_ref {
            // Whatever comes from a Secret or a sealed value (a user name too) is kept out of
            // every message: as a word here, wherever it occurs once `secret` takes it as a
            // credential.
            if let Some(v) = self.documents.get(&r.name).and_then(|s| s.get(&r.key)) {
                self.redactor.remember_word(v);
                return Ok(v.clone());
            }
            let var = Self::env_name(&r.name, &r.key);
            if let Some(v) = self.env.get(&var) {
                self.redactor.remember_word(v);
                return Ok(v.clone());
            }
            let found = match self.documents.get(&r.name) {
                Some(keys) => format!(
                    "Secret \"{}\" is in the files but has no key \"{}\" (keys: {})",
                    r.name,
                    r.key,
                    keys.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                None => format!("no Secret \"{}\" in the files", r.name),
            };
            return Err(Error::Config(format!(
                "Connection \"{connection}\": {field}: secret key \"{}\" of Secret \"{}\" is missing: {found}, and {var} is not set (add a v1 Secret document or export {var})",
                r.key, r.name
            )));
        }
        if let Some(sealed) = &value.sealed {
            let vault = match self.vault.as_deref() {
                Some(Ok(vault)) => vault,
                Some(Err(problem)) => {
                    return Err(Error::Config(format!(
                        "Connection \"{connection}\": {field}: the vault keyring cannot be used: {problem}"
                    )));
                }
                None => {
                    return Err(Error::Config(format!(
                        "Connection \"{connection}\": {field}: a sealed value needs the namespace's vault keyring: locally pass it with --vault-key FILE (`synqx vault keygen` writes one); on a cluster the operator gives it to the pods of Connections with sealed values"
                    )));
                }
            };
            // The driver keeps its own copy for the connection's lifetime; this one is
            // wiped as soon as the connector has taken it.
            let plain = vault.open(connection, field, sealed)?;
            self.redactor.remember_word(&plain);
            return Ok(plain.as_str().to_owned());
        }
        Err(Error::Config(format!(
            "Connection \"{connection}\": {field}: set value, secretKeyRef or sealed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, key: &str, value: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.string_data = Some([(key.to_string(), value.to_string())].into());
        s
    }

    #[test]
    fn values_come_from_documents_then_environment() {
        let docs = [secret("db", "password", "from-doc")];
        let env = [(
            Secrets::env_name("api-creds", "token"),
            "from-env".to_string(),
        )];
        let s = Secrets::new(docs.iter(), env);
        assert_eq!(
            s.resolve("c", "f", &SecretValue::from_secret("db", "password"))
                .ok()
                .as_deref(),
            Some("from-doc")
        );
        assert_eq!(
            s.resolve("c", "f", &SecretValue::from_secret("api-creds", "token"))
                .ok()
                .as_deref(),
            Some("from-env")
        );
        assert_eq!(
            s.resolve("c", "f", &SecretValue::plain("etl"))
                .ok()
                .as_deref(),
            Some("etl")
        );
        assert_eq!(
            Secrets::env_name("api-creds", "token"),
            "SYNQX_SECRET_API_CREDS__TOKEN"
        );
    }

    #[test]
    fn a_user_name_from_a_secret_is_redacted_too() {
        let docs = [secret("db", "user", "zq_login")];
        let s = Secrets::new(
            docs.iter(),
            [("SYNQX_SECRET_ENV__USER".into(), "zq_env".into())],
        );
        let redactor = s.redactor();
        for value in [
            SecretValue::from_secret("db", "user"),
            SecretValue::from_secret("env", "user"),
        ] {
            assert!(s.resolve("c", "postgres.user", &value).is_ok());
        }
        assert_eq!(
            redactor.redact("role zq_login, zq_env denied"),
            "role ***, *** denied"
        );
    }

    #[test]
    fn a_user_name_is_redacted_only_where_it_stands_as_a_word() {
        let docs = [secret("db", "user", "synqx"), secret("db", "admin", "@ops")];
        let s = Secrets::new(docs.iter(), []);
        let redactor = s.redactor();
        for key in ["user", "admin"] {
            let user = s.resolve("c", "f", &SecretValue::from_secret("db", key));
            assert!(user.is_ok(), "{key}");
        }
        assert_eq!(
            redactor.redact(
                "user \"synqx\" cannot open synqx_ferretdb or synqx2 at postgres://synqx@h (synqx); @ops@opsx x@ops"
            ),
            "user \"***\" cannot open synqx_ferretdb or synqx2 at postgres://***@h (***); ***@opsx x***"
        );
    }

    #[test]
    fn a_short_credential_is_redacted_where_it_stands_as_a_word() {
        let docs = [
            secret("db", "password", "synqx"),
            secret("db", "long", "s3cr3t-long"),
        ];
        let s = Secrets::new(docs.iter(), []);
        let redactor = s.redactor();
        let short = s.secret("c", "f", &SecretValue::from_secret("db", "password"));
        assert_eq!(short.ok().as_deref(), Some("synqx"));
        let long = s.secret("c", "g", &SecretValue::from_secret("db", "long"));
        assert_eq!(long.ok().as_deref(), Some("s3cr3t-long"));
        // Written out, a short password stands between separators and is removed; inside the
        // names SynqX and the user give to tables, it is left so that the names stay readable.
        assert_eq!(
            redactor.redact(
                "postgres://u:synqx@h/db password=synqx; 'synqx' staged __synqx_new_orders in synqx_lake"
            ),
            "postgres://u:***@h/db password=***; '***' staged __synqx_new_orders in synqx_lake"
        );
        // A credential of 8 characters or more is removed wherever it occurs.
        assert_eq!(redactor.redact("xs3cr3t-longx"), "x***x");
    }

    #[test]
    fn credentials_are_remembered_and_redacted_longest_first() {
        let docs = [
            secret("db", "password", "hunter2"),
            secret("db2", "pw", "hunter"),
        ];
        let s = Secrets::new(docs.iter(), []);
        let redactor = s.redactor();
        assert_eq!(redactor.redact("hunter2 hunter"), "hunter2 hunter");
        let plain = s.secret("c", "f", &SecretValue::from_secret("db2", "pw"));
        assert_eq!(plain.ok().as_deref(), Some("hunter"));
        let plain = s.secret("c", "f", &SecretValue::from_secret("db", "password"));
        assert_eq!(plain.ok().as_deref(), Some("hunter2"));
        assert_eq!(redactor.redact("a hunter2 b hunter"), "a *** b ***");
        // A credential given as a plain value is still a credential; a user name is not one.
        let plain = s.secret("c", "f", &SecretValue::plain("pl4in-pw"));
        assert_eq!(plain.ok().as_deref(), Some("pl4in-pw"));
        let user = s.resolve("c", "f", &SecretValue::plain("etl"));
        assert_eq!(user.ok().as_deref(), Some("etl"));
        assert_eq!(redactor.redact("etl pl4in-pw"), "etl ***");
        assert_eq!(format!("{redactor:?}"), "Redactor(3 values)");
    }

    #[test]
    fn a_redactor_collected_from_credentials_remembers_each_as_a_credential() {
        let redactor: Redactor = ["s3cr3t-token", "pw"].into_iter().collect();
        assert_eq!(
            redactor.redact("token=s3cr3t-token pw=pw pwd"),
            "token=*** ***=*** pwd"
        );
        // Neither changes when percent-encoded: each is kept once.
        assert_eq!(format!("{redactor:?}"), "Redactor(2 values)");
    }

    #[test]
    fn url_encoded_credentials_are_redacted_too() {
        let s = Secrets::default();
        let plain = s.secret("c", "f", &SecretValue::plain("p@ss word"));
        assert_eq!(plain.ok().as_deref(), Some("p@ss word"));
        assert_eq!(
            s.redactor()
                .redact("login p@ss word at http://h/?k=p%40ss%20word"),
            "login *** at http://h/?k=***"
        );
    }

    #[test]
    fn descriptions_say_where_a_value_comes_from_never_what_it_is() {
        assert_eq!(
            describe(
                "postgres.password",
                &SecretValue::from_secret("pg", "password")
            ),
            "key \"password\" of Secret \"pg\" (postgres.password)"
        );
        assert_eq!(
            describe("s3.secretAccessKey", &SecretValue::plain("x")),
            "the plain value of s3.secretAccessKey"
        );
    }

    #[test]
    fn placeholders_resolve_every_reference_without_values() {
        let s = Secrets::placeholders();
        let resolved = s.secret("c", "f", &SecretValue::from_secret("missing", "key"));
        assert_eq!(resolved.ok().as_deref(), Some(PLACEHOLDER));
        let plain = s.resolve("c", "f", &SecretValue::plain("etl"));
        assert_eq!(plain.ok().as_deref(), Some("etl"));
    }

    #[test]
    fn a_missing_secret_names_connection_field_secret_and_key() {
        let docs = [secret("db", "password", "hunter2")];
        let s = Secrets::new(docs.iter(), []);
        let e = s
            .resolve(
                "warehouse",
                "postgres.password",
                &SecretValue::from_secret("db", "pw"),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("Connection \"warehouse\": postgres.password"),
            "{e}"
        );
        assert!(
            e.contains("Secret \"db\" is in the files but has no key \"pw\" (keys: password)"),
            "{e}"
        );
        assert!(e.contains("SYNQX_SECRET_DB__PW"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
