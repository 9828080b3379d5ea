//! `SecretValue`: how every credential field of a Connection is given.

use crate::vault::{EnvelopeError, SealedValue};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A value that may be secret. Exactly one of `value`, `secretKeyRef` or `sealed` is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.value), has(self.secretKeyRef), has(self.sealed)].filter(x, x).size() == 1"
).message("exactly one of value, secretKeyRef or sealed must be set"))]
pub struct SecretValue {
    /// A plain value. Only for values that are not secret (a user name, a host): it is stored
    /// in the resource as written and visible to anyone who can read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A key of a Kubernetes Secret in the same namespace. Locally (`synqx run`), the Secret
    /// comes from a v1 Secret document in the given files or from the environment variable
    /// `SYNQX_SECRET_<SECRET>__<KEY>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// Vault ciphertext produced by `synqx seal` (`sqx1:<key-id>:<ephemeral-key>:<ciphertext>`);
    /// safe to commit to Git. Only the runner opens it, in memory, right before connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// A reference to one key of a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the Connection.
    pub name: String,
    /// Key within the Secret's `data` or `stringData`.
    pub key: String,
}

/// The environment variable that carries a Secret's key to a runner, one name per Secret and
/// key and never one name for two of them: `SYNQX_SECRET_<SECRET>__<KEY>`, each part
/// upper-cased with `-` as `_` (`db-creds`/`password` is `SYNQX_SECRET_DB_CREDS__PASSWORD`,
/// `db`/`creds-password` is `SYNQX_SECRET_DB__CREDS_PASSWORD`). A part with anything else (a
/// `.`, an `_`, an upper-case letter, `--`, a `-` at either end) cannot be spelled back
/// exactly, so the name then ends with `__` and 12 hex digits of a hash of the exact pair:
/// such names hold two `__` or more, plain ones exactly one. The operator sets it from a
/// `secretKeyRef` in a step's Job; locally a user exports it.
pub fn secret_env_name(secret: &str, key: &str) -> String {
    let name = format!("SYNQX_SECRET_{}__{}", env_part(secret), env_part(key));
    if plain_part(secret) && plain_part(key) {
        return name;
    }
    let hash: String =
        ring::digest::digest(&ring::digest::SHA256, format!("{secret}\0{key}").as_bytes()).as_ref()
            [..6]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
    format!("{name}__{hash}")
}

/// Lower-case letters and digits in groups joined by single `-`: spelled back exactly from
/// its upper-cased form with `_` for `-`.
fn plain_part(part: &str) -> bool {
    !part.is_empty()
        && part.split('-').all(|group| {
            !group.is_empty()
                && group
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn env_part(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Prefix of every vault envelope.
pub const SEALED_PREFIX: &str = "sqx1";

/// The label a Secret carries to be usable by Connections on a cluster (value `"true"`):
/// a Connection naming any other Secret of its namespace fails its check, and no step pod
/// receives it.
pub const CONNECTION_SECRET_LABEL: &str = "synqx.io/connection-secret";

/// Whether a Secret's labels let Connections use it.
pub fn opted_in(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(CONNECTION_SECRET_LABEL))
        .is_some_and(|v| v == "true")
}

/// What to do about a Secret that has not opted in, for messages.
pub fn opt_in_hint(secret: &str) -> String {
    format!(
        "add the label {CONNECTION_SECRET_LABEL}: \"true\" to the Secret if Connections may use it (kubectl label secret {secret} {CONNECTION_SECRET_LABEL}=true)"
    )
}

/// The environment variable through which the operator tells step and check pods that it
/// lends ambient cloud credentials (`--allow-ambient-credentials`); its value is `allowed`.
pub const AMBIENT_CREDENTIALS_ENV: &str = "SYNQX_AMBIENT_CREDENTIALS";

impl SecretValue {
    /// A plain value, for tests and generated resources.
    pub fn plain(value: impl Into<String>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A reference to a key of a Secret.
    pub fn from_secret(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            secret_key_ref: Some(SecretKeyRef {
                name: name.into(),
                key: key.into(),
            }),
            ..Self::default()
        }
    }

    /// How many of the three alternatives are set (valid values have exactly one).
    pub fn alternatives_set(&self) -> usize {
        usize::from(self.value.is_some())
            + usize::from(self.secret_key_ref.is_some())
            + usize::from(self.sealed.is_some())
    }
}

/// What is wrong with the text of a sealed value, said where a Connection holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed value is malformed: {0} (produce it with `synqx seal`)")]
pub struct SealedFormatError(#[from] pub EnvelopeError);

/// Checks the shape of a vault envelope without opening it (the vault's own parser:
/// `sqx1:<key-id>:<ephemeral-key>:<ciphertext>`, each part decoded). Returns what is wrong.
pub fn check_sealed_format(envelope: &str) -> Result<(), SealedFormatError> {
    SealedValue::parse(envelope)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_names_never_stand_for_two_keys() {
        assert_eq!(
            secret_env_name("db-creds", "password"),
            "SYNQX_SECRET_DB_CREDS__PASSWORD"
        );
        assert_eq!(
            secret_env_name("db", "creds-password"),
            "SYNQX_SECRET_DB__CREDS_PASSWORD"
        );
        let pairs = [
            ("db-creds", "password"),
            ("db", "creds-password"),
            ("db", "creds_password"),
            ("db", "Creds-Password"),
            ("db.creds", "password"),
            ("db", "creds.password"),
            ("db", "-creds-password"),
            ("db--creds", "password"),
            ("db-creds", "password__0123456789AB"),
            ("db-creds", "password-0123456789ab"),
        ];
        let names: std::collections::BTreeSet<String> =
            pairs.iter().map(|(s, k)| secret_env_name(s, k)).collect();
        assert_eq!(names.len(), pairs.len(), "{names:?}");
        for name in &names {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
        assert!(
            secret_env_name("db.creds", "password")
                .starts_with("SYNQX_SECRET_DB_CREDS__PASSWORD__")
        );
    }

    #[test]
    fn sealed_format_is_checked_by_the_vault_parser() {
        // A well-formed value is checked by sealing in the vault's tests; here, what is wrong.
        let key = "A".repeat(43);
        let cases = [
            ("sqx1:k1:AAAA", EnvelopeError::Parts { found: 3 }),
            (
                "sqx2:k1:AAAA:BBBB",
                EnvelopeError::Prefix {
                    found: "sqx2".into(),
                },
            ),
            ("sqx1::AAAA:BBBB", EnvelopeError::EmptyKeyId),
            // Base64url of the wrong length: the old shape check let it through.
            ("sqx1:k1:AAAA:BBBB", EnvelopeError::EphemeralKey),
            (&format!("sqx1:k1:{key}:B B"), EnvelopeError::NotBase64),
            (&format!("sqx1:k1:{key}:BBBB"), EnvelopeError::TooShort),
        ];
        for (text, problem) in cases {
            let e = check_sealed_format(text);
            assert_eq!(e, Err(SealedFormatError(problem)), "{text}");
        }
        let said = check_sealed_format("sqx1:k1:AAAA").map_err(|e| e.to_string());
        assert_eq!(
            said,
            Err("sealed value is malformed: expected 4 `:`-separated parts `sqx1:<key-id>:<ephemeral-key>:<ciphertext>`, found 3 (produce it with `synqx seal`)".to_string())
        );
    }

    #[test]
    fn alternatives_are_counted() {
        assert_eq!(SecretValue::plain("x").alternatives_set(), 1);
        assert_eq!(SecretValue::default().alternatives_set(), 0);
        let both = SecretValue {
            sealed: Some("s".into()),
            ..SecretValue::plain("x")
        };
        assert_eq!(both.alternatives_set(), 2);
    }
}
