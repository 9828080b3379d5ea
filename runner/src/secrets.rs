//! Secret values for local runs: from v1 Secret documents in the given files, or from
//! `SYNQX_SECRET_<SECRET>_<KEY>` environment variables. Plaintext stays in memory and never
//! reaches logs, errors or the state database.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use synqx_api::SecretValue;
use synqx_api::secret::secret_env_name;

use crate::error::{Error, Result};

/// Where secret values come from.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Secret name -> key -> value, from the files.
    documents: BTreeMap<String, BTreeMap<String, String>>,
    /// Environment variables, normally `std::env::vars()`; injectable for tests.
    env: BTreeMap<String, String>,
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
        }
    }

    /// The environment variable that can carry a Secret's key: `SYNQX_SECRET_<SECRET>_<KEY>`,
    /// upper-cased, with every character that is not a letter or digit replaced by `_` (the
    /// name the operator gives it in a Job, [`secret_env_name`]).
    pub fn env_name(secret: &str, key: &str) -> String {
        secret_env_name(secret, key)
    }

    /// The plaintext of one field of a Connection. Errors name the Connection, the field, the
    /// Secret and the key, never a value.
    pub fn resolve(&self, connection: &str, field: &str, value: &SecretValue) -> Result<String> {
        if let Some(v) = &value.value {
            return Ok(v.clone());
        }
        if let Some(r) = &value.secret_key_ref {
            if let Some(v) = self.documents.get(&r.name).and_then(|s| s.get(&r.key)) {
                return Ok(v.clone());
            }
            let var = Self::env_name(&r.name, &r.key);
            if let Some(v) = self.env.get(&var) {
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
        if value.sealed.is_some() {
            return Err(Error::Config(format!(
                "Connection \"{connection}\": {field}: sealed values are opened by the vault keyring, which local runs do not have; use a secretKeyRef with a Secret document or {} locally",
                "SYNQX_SECRET_<SECRET>_<KEY>"
            )));
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
            "SYNQX_SECRET_API_CREDS_TOKEN"
        );
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
        assert!(e.contains("SYNQX_SECRET_DB_PW"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
