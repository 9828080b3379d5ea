//! Vault keys: a namespace's keyring (private, oldest first, the newest seals) and the public
//! key `synqx seal` needs, with their text forms.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use super::VaultError;

/// Prefix of a public key's text form.
const PUBLIC_PREFIX: &str = "sqx1-pub";
/// `kind` of a keyring's text form.
const KEYRING_KIND: &str = "SynqXVaultKeyring";

/// One key pair of a keyring.
pub struct VaultKey {
    id: String,
    secret: StaticSecret,
    public: x25519_dalek::PublicKey,
    created: String,
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKey")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl VaultKey {
    fn from_secret(secret: StaticSecret, created: String) -> Self {
        let public = x25519_dalek::PublicKey::from(&secret);
        Self {
            id: key_id(&public),
            secret,
            public,
            created,
        }
    }

    /// The key id written into every value it seals (`k` and 10 hex digits of the public
    /// key's SHA-256, so ids of different namespaces differ).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the key was added (RFC 3339).
    pub fn created(&self) -> &str {
        &self.created
    }

    /// The public half, for sealing.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            id: self.id.clone(),
            key: self.public,
        }
    }

    pub(super) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

/// The id of a public key.
fn key_id(public: &x25519_dalek::PublicKey) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"synqx vault key id\0");
    context.update(public.as_bytes());
    let hash = context.finish();
    let hex: String = hash.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("k{hex}")
}

/// Fresh random bytes from the operating system.
pub(super) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, VaultError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| VaultError::Random)?;
    Ok(bytes)
}

/// A public key: all that sealing needs. Text form: `sqx1-pub:<key-id>:<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    id: String,
    key: x25519_dalek::PublicKey,
}

impl PublicKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn key(&self) -> &x25519_dalek::PublicKey {
        &self.key
    }

    /// The one-line text form, as `synqx vault pubkey` prints it.
    pub fn to_line(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}:{}:{}",
            self.id,
            B64.encode(self.key.as_bytes())
        )
    }

    /// Reads the text form; blank lines and `#` comments around it are ignored. The key id
    /// must match the key, so a mangled file is caught here rather than by a failed opening.
    /// `source_name` (a file, a ConfigMap) goes into errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, VaultError> {
        let fail = |reason: String| VaultError::PublicKey {
            source_name: source_name.into(),
            reason,
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let [line] = lines.as_slice() else {
            return Err(fail(format!("found {} key lines", lines.len())));
        };
        let parts: Vec<&str> = line.split(':').collect();
        let [prefix, id, key] = parts.as_slice() else {
            return Err(fail(format!("found {} `:`-separated parts", parts.len())));
        };
        if *prefix != PUBLIC_PREFIX {
            return Err(fail(format!("it starts with `{prefix}:`")));
        }
        let bytes: [u8; 32] = B64
            .decode(key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fail("the key is not 32 bytes of base64url".into()))?;
        let key = x25519_dalek::PublicKey::from(bytes);
        if key_id(&key) != *id {
            return Err(fail(format!(
                "the key id \"{id}\" does not match the key (it would be \"{}\")",
                key_id(&key)
            )));
        }
        Ok(Self {
            id: (*id).to_string(),
            key,
        })
    }
}

/// A namespace's private keys, oldest first. The newest seals; every key opens what it
/// sealed, so rotation never breaks a sealed value.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<VaultKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyringText {
    kind: String,
    keys: Vec<KeyText>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyText {
    id: String,
    private_key: String,
    created: String,
}

impl Drop for KeyText {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

impl Keyring {
    /// A keyring with one new key, added at `created` (RFC 3339).
    pub fn generate(created: &str) -> Result<Self, VaultError> {
        let mut keyring = Self { keys: Vec::new() };
        keyring.rotate(created)?;
        Ok(keyring)
    }

    /// Adds a new key, which seals from now on; returns it.
    pub fn rotate(&mut self, created: &str) -> Result<&VaultKey, VaultError> {
        let bytes = random::<32>()?;
        let key = VaultKey::from_secret(StaticSecret::from(*bytes), created.into());
        self.keys.push(key);
        Ok(&self.keys[self.keys.len() - 1])
    }

    /// The key that seals.
    pub fn newest(&self) -> &VaultKey {
        // Constructors and `from_text` never leave a keyring empty.
        &self.keys[self.keys.len() - 1]
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[VaultKey] {
        &self.keys
    }

    pub(super) fn key(&self, id: &str) -> Option<&VaultKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The text form (JSON), private: it goes into the `synqx-vault` Secret or a file only
    /// its owner reads.
    pub fn to_text(&self) -> Zeroizing<String> {
        let text = KeyringText {
            kind: KEYRING_KIND.into(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyText {
                    id: k.id.clone(),
                    private_key: B64.encode(k.secret.as_bytes()),
                    created: k.created.clone(),
                })
                .collect(),
        };
        // Serializing plain strings cannot fail.
        let json = serde_json::to_string_pretty(&text).unwrap_or_default();
        Zeroizing::new(json + "\n")
    }

    /// Reads the text form. Each key's id must match its key. `source_name` (a file, a
    /// Secret) goes into errors.
    pub fn from_text(source_name: &str, text: &str) -> Result<Self, VaultError> {
        let fail = |reason: String| VaultError::Keyring {
            source_name: source_name.into(),
            reason,
        };
        let parsed: KeyringText = serde_json::from_str(text).map_err(|e| {
            // serde_json quotes no input in its messages; keep only line and column anyway.
            fail(format!(
                "invalid JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        if parsed.kind != KEYRING_KIND {
            return Err(fail(format!(
                "kind is \"{}\", not \"{KEYRING_KIND}\"",
                parsed.kind
            )));
        }
        if parsed.keys.is_empty() {
            return Err(VaultError::EmptyKeyring {
                source_name: source_name.into(),
            });
        }
        let mut keys = Vec::with_capacity(parsed.keys.len());
        for entry in &parsed.keys {
            let decoded = Zeroizing::new(
                B64.decode(&entry.private_key)
                    .map_err(|_| fail(format!("key \"{}\" is not base64url", entry.id)))?,
            );
            let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
                decoded
                    .as_slice()
                    .try_into()
                    .map_err(|_| fail(format!("key \"{}\" is not 32 bytes", entry.id)))?,
            );
            let key = VaultKey::from_secret(StaticSecret::from(*bytes), entry.created.clone());
            if key.id != entry.id {
                return Err(fail(format!(
                    "key \"{}\" does not match its id (its public key's id is \"{}\")",
                    entry.id, key.id
                )));
            }
            if keys.iter().any(|k: &VaultKey| k.id == key.id) {
                return Err(fail(format!("key \"{}\" is listed twice", key.id)));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// The ids of the keys, for messages: `"k1…", "k2…"`.
    pub fn ids(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("\"{}\"", k.id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
