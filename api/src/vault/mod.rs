//! The vault: credentials sealed so that they can live in Git.
//!
//! Each namespace has a key pair. Anyone with the public key seals a value with
//! [`seal`]; only a holder of the private keyring opens it with [`Keyring::open`]:
//!
//! - a fresh X25519 key pair per value; its public half travels in the envelope;
//! - HKDF-SHA256 over the shared secret (salt: both public keys) yields a one-time
//!   AES-256-GCM key and nonce;
//! - the associated data binds the value to its namespace, Connection and field, so a
//!   value copied anywhere else fails to open, and the envelope carries short hashes of the
//!   three names so that the error can say which of them differs.
//!
//! Envelope: `sqx1:<key-id>:<ephemeral-public-key>:<ciphertext>` (base64url, no padding);
//! the ciphertext is the binding hashes followed by the AES-GCM output.
//!
//! HKDF, AES-GCM and randomness are `ring`'s. `ring` offers X25519 only for ephemeral private
//! keys it generates itself and cannot load a stored one, which a keyring needs, so the
//! X25519 function comes from `x25519-dalek`.

mod envelope;
pub use envelope::EnvelopeError;
mod keyring;
#[cfg(test)]
mod tests;

use std::fmt;

pub use envelope::{SealedValue, seal};
pub use keyring::{Keyring, PublicKey, VaultKey};
pub use zeroize::Zeroizing;

/// Longest plaintext [`seal`] accepts: sealed values are stored in resources, and every
/// credential SynqX knows (a service-account JSON key included) is far smaller.
pub const MAX_PLAINTEXT: usize = 64 * 1024;

/// Name of the Secret holding a namespace's keyring, and of the ConfigMap holding its public
/// keys. The operator creates both.
pub const VAULT_OBJECT_NAME: &str = "synqx-vault";
/// Key of the keyring in the `synqx-vault` Secret.
pub const KEYRING_SECRET_KEY: &str = "keyring";
/// Key of the newest public key in the `synqx-vault` ConfigMap.
pub const PUBLIC_KEY_CONFIG_KEY: &str = "publicKey";

/// Every field of a Connection that takes a secret value, as `synqx seal --field` names it:
/// its path below `spec`.
pub const SEALABLE_FIELDS: &[&str] = &[
    "postgres.user",
    "postgres.password",
    "postgres.sslRootCert",
    "mysql.user",
    "mysql.password",
    "mysql.sslRootCert",
    "sqlserver.user",
    "sqlserver.password",
    "snowflake.user",
    "snowflake.password",
    "snowflake.privateKey",
    "bigquery.credentialsJson",
    "rest.auth.bearerToken",
    "rest.auth.basic.username",
    "rest.auth.basic.password",
    "rest.auth.apiKey.value",
    "rest.auth.oauth2.clientId",
    "rest.auth.oauth2.clientSecret",
    "s3.accessKeyId",
    "s3.secretAccessKey",
    "s3.sessionToken",
    "mongodb.uri",
    "redis.username",
    "redis.password",
];

/// Where a sealed value may be opened: one field of one Connection in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    pub connection: String,
    /// The field's path below `spec`, e.g. `postgres.password`.
    pub field: String,
}

impl Binding {
    pub fn new(
        namespace: impl Into<String>,
        connection: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            connection: connection.into(),
            field: field.into(),
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Connection \"{}/{}\" field spec.{}",
            self.namespace, self.connection, self.field
        )
    }
}

/// Which part of a [`Binding`] a sealed value was not sealed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingPart {
    Namespace,
    Connection,
    Field,
}

impl fmt::Display for BindingPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespace => "namespace",
            Self::Connection => "Connection",
            Self::Field => "field",
        })
    }
}

/// Why a value could not be sealed or opened, or a key or keyring not read. Messages name
/// the key id and the binding; none carries a plaintext or a private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("{binding}: malformed sealed value: {reason} (produce it with `synqx seal`)")]
    Malformed {
        binding: Binding,
        #[source]
        reason: envelope::EnvelopeError,
    },
    #[error(
        "{binding}: sealed with vault key \"{key_id}\", which the keyring does not hold (it holds {held}): the value was sealed for another namespace or with a key since removed; seal it again with `synqx seal`"
    )]
    UnknownKey {
        binding: Binding,
        key_id: String,
        held: String,
    },
    #[error(
        "{binding}: the value sealed with vault key \"{key_id}\" was sealed for another {part}; a sealed value opens only in the namespace, Connection and field it was sealed for: seal it again with `synqx seal --namespace {} --connection {} --field {}`",
        binding.namespace, binding.connection, binding.field
    )]
    Moved {
        binding: Binding,
        key_id: String,
        part: BindingPart,
    },
    #[error(
        "{binding}: the value sealed with vault key \"{key_id}\" does not open: it was changed or damaged after sealing (authentication failed); seal it again with `synqx seal`"
    )]
    Tampered { binding: Binding, key_id: String },
    #[error("{binding}: the sealed value opened with vault key \"{key_id}\" is not UTF-8 text")]
    NotText { binding: Binding, key_id: String },
    #[error("the value to seal is empty")]
    EmptyPlaintext,
    #[error("the value to seal has {len} bytes; at most {MAX_PLAINTEXT} can be sealed")]
    PlaintextTooLong { len: usize },
    #[error(
        "{source_name}: not a vault public key: {reason} (expected one line `sqx1-pub:<key-id>:<key>` as `synqx vault pubkey` prints it)"
    )]
    PublicKey { source_name: String, reason: String },
    #[error(
        "{source_name}: not a vault keyring: {reason} (write one with `synqx vault keygen --out FILE`)"
    )]
    Keyring { source_name: String, reason: String },
    #[error("{source_name}: the keyring holds no key (add one with `synqx vault rotate`)")]
    EmptyKeyring { source_name: String },
    #[error("the system random number generator failed")]
    Random,
}
