//! Sealing and opening one value: `sqx1:<key-id>:<ephemeral-public-key>:<ciphertext>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{digest, hkdf};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::keyring::random;
use super::{Binding, BindingPart, Keyring, MAX_PLAINTEXT, PublicKey, VaultError};
use crate::secret::SEALED_PREFIX;

/// Bytes of each name's hash in the envelope: enough to tell which name differs, too few to
/// be worth guessing names from.
const HINT_LEN: usize = 4;
const HINTS_LEN: usize = 3 * HINT_LEN;
const AES_KEY_LEN: usize = 32;
const HKDF_INFO: &[u8] = b"synqx vault sqx1 aes-256-gcm key and nonce";

/// What is wrong with the text of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "expected 4 `:`-separated parts `{SEALED_PREFIX}:<key-id>:<ephemeral-key>:<ciphertext>`, found {found}"
    )]
    Parts { found: usize },
    #[error("it starts with `{found}:`, not `{SEALED_PREFIX}:`")]
    Prefix { found: String },
    #[error("the key id is empty")]
    EmptyKeyId,
    #[error("the ephemeral key is not 32 bytes of base64url")]
    EphemeralKey,
    #[error("the ciphertext is not base64url")]
    NotBase64,
    #[error("the ciphertext is too short")]
    TooShort,
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub key_id: String,
    ephemeral: [u8; 32],
    hints: [u8; HINTS_LEN],
    ciphertext: Vec<u8>,
}

impl SealedValue {
    /// Reads `sqx1:<key-id>:<ephemeral-public-key>:<ciphertext>`; the reason says what is wrong.
    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let [prefix, key_id, ephemeral, sealed] = parts.as_slice() else {
            return Err(EnvelopeError::Parts { found: parts.len() });
        };
        if *prefix != SEALED_PREFIX {
            return Err(EnvelopeError::Prefix {
                found: prefix.to_string(),
            });
        }
        if key_id.is_empty() {
            return Err(EnvelopeError::EmptyKeyId);
        }
        let ephemeral: [u8; 32] = B64
            .decode(ephemeral)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(EnvelopeError::EphemeralKey)?;
        let sealed = B64.decode(sealed).map_err(|_| EnvelopeError::NotBase64)?;
        if sealed.len() < HINTS_LEN + AES_256_GCM.tag_len() + 1 {
            return Err(EnvelopeError::TooShort);
        }
        let (hints, ciphertext) = sealed.split_at(HINTS_LEN);
        Ok(Self {
            key_id: (*key_id).to_string(),
            ephemeral,
            hints: hints.try_into().map_err(|_| EnvelopeError::TooShort)?,
            ciphertext: ciphertext.to_vec(),
        })
    }

    fn to_text(&self) -> String {
        let mut sealed = self.hints.to_vec();
        sealed.extend_from_slice(&self.ciphertext);
        format!(
            "{SEALED_PREFIX}:{}:{}:{}",
            self.key_id,
            B64.encode(self.ephemeral),
            B64.encode(sealed)
        )
    }
}

/// Seals `plaintext` for one field of one Connection with a namespace's public key.
pub fn seal(public: &PublicKey, binding: &Binding, plaintext: &[u8]) -> Result<String, VaultError> {
    if plaintext.is_empty() {
        return Err(VaultError::EmptyPlaintext);
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(VaultError::PlaintextTooLong {
            len: plaintext.len(),
        });
    }
    let ephemeral_secret = StaticSecret::from(*random::<32>()?);
    let ephemeral = x25519_dalek::PublicKey::from(&ephemeral_secret);
    let shared = ephemeral_secret.diffie_hellman(public.key());
    // A low-order recipient key would make the shared secret known to everyone.
    if !shared.was_contributory() {
        return Err(VaultError::PublicKey {
            source_name: format!("public key \"{}\"", public.id()),
            reason: "it is a low-order point".into(),
        });
    }
    let hints = hints(binding);
    let (key, nonce) = derive(
        shared.as_bytes(),
        ephemeral.as_bytes(),
        public.key().as_bytes(),
    )?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, aad(public.id(), binding, &hints), &mut buffer)
        .map_err(|_| VaultError::PlaintextTooLong {
            len: plaintext.len(),
        })?;
    Ok(SealedValue {
        key_id: public.id().to_string(),
        ephemeral: ephemeral.to_bytes(),
        hints,
        ciphertext: buffer,
    }
    .to_text())
}

impl Keyring {
    /// Opens a sealed value of `binding`. The plaintext is wiped from memory when dropped.
    pub fn open(&self, binding: &Binding, envelope: &str) -> Result<Zeroizing<String>, VaultError> {
        let sealed = SealedValue::parse(envelope).map_err(|reason| VaultError::Malformed {
            binding: binding.clone(),
            reason,
        })?;
        let key = self
            .key(&sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey {
                binding: binding.clone(),
                key_id: sealed.key_id.clone(),
                held: self.ids(),
            })?;
        let expected = hints(binding);
        let parts = [
            BindingPart::Namespace,
            BindingPart::Connection,
            BindingPart::Field,
        ];
        for (i, part) in parts.into_iter().enumerate() {
            let range = i * HINT_LEN..(i + 1) * HINT_LEN;
            if sealed.hints[range.clone()] != expected[range] {
                return Err(VaultError::Moved {
                    binding: binding.clone(),
                    key_id: sealed.key_id.clone(),
                    part,
                });
            }
        }
        let ephemeral = x25519_dalek::PublicKey::from(sealed.ephemeral);
        let shared = key.secret().diffie_hellman(&ephemeral);
        let tampered = || VaultError::Tampered {
            binding: binding.clone(),
            key_id: sealed.key_id.clone(),
        };
        if !shared.was_contributory() {
            return Err(tampered());
        }
        let (aead_key, nonce) = derive(
            shared.as_bytes(),
            ephemeral.as_bytes(),
            key.public_key().key().as_bytes(),
        )?;
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        let plain = aead_key
            .open_in_place(
                nonce,
                aad(&sealed.key_id, binding, &sealed.hints),
                &mut buffer,
            )
            .map_err(|_| tampered())?;
        let text = std::str::from_utf8(plain).map_err(|_| VaultError::NotText {
            binding: binding.clone(),
            key_id: sealed.key_id.clone(),
        })?;
        Ok(Zeroizing::new(text.to_string()))
    }

    /// Opens a sealed value and seals it again with the newest key; a value already sealed
    /// with it is returned as it is.
    pub fn reseal(&self, binding: &Binding, envelope: &str) -> Result<String, VaultError> {
        let newest = self.newest().public_key();
        if SealedValue::parse(envelope).is_ok_and(|s| s.key_id == newest.id()) {
            self.open(binding, envelope)?;
            return Ok(envelope.trim().to_string());
        }
        let plain = self.open(binding, envelope)?;
        seal(&newest, binding, plain.as_bytes())
    }
}

/// The one-time AES key and nonce of a shared secret.
fn derive(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<(LessSafeKey, Nonce), VaultError> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            AES_KEY_LEN + NONCE_LEN
        }
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let mut okm = Zeroizing::new([0u8; AES_KEY_LEN + NONCE_LEN]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, &salt)
        .extract(shared)
        .expand(&[HKDF_INFO], Len)
        .and_then(|okm_out| okm_out.fill(okm.as_mut()))
        .map_err(|_| VaultError::Random)?;
    let key = UnboundKey::new(&AES_256_GCM, &okm[..AES_KEY_LEN]).map_err(|_| VaultError::Random)?;
    let nonce =
        Nonce::try_assume_unique_for_key(&okm[AES_KEY_LEN..]).map_err(|_| VaultError::Random)?;
    Ok((LessSafeKey::new(key), nonce))
}

/// The associated data: envelope version, key id, namespace, Connection, field and the name
/// hashes, each length-prefixed so that no two bindings share an encoding.
fn aad(key_id: &str, binding: &Binding, hints: &[u8; HINTS_LEN]) -> Aad<Vec<u8>> {
    let mut out = Vec::new();
    for part in [
        SEALED_PREFIX.as_bytes(),
        key_id.as_bytes(),
        binding.namespace.as_bytes(),
        binding.connection.as_bytes(),
        binding.field.as_bytes(),
        hints,
    ] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    Aad::from(out)
}

/// Short hashes of the namespace, Connection and field.
fn hints(binding: &Binding) -> [u8; HINTS_LEN] {
    let mut out = [0u8; HINTS_LEN];
    let names = [
        ("namespace", &binding.namespace),
        ("connection", &binding.connection),
        ("field", &binding.field),
    ];
    for (i, (label, name)) in names.into_iter().enumerate() {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"synqx vault binding ");
        context.update(label.as_bytes());
        context.update(b"\0");
        context.update(name.as_bytes());
        let hash = context.finish();
        out[i * HINT_LEN..(i + 1) * HINT_LEN].copy_from_slice(&hash.as_ref()[..HINT_LEN]);
    }
    out
}
