//! RS256 JSON Web Tokens signed with an RSA private key, as Snowflake's key-pair
//! authentication and Google's service-account OAuth2 flow both ask for. Keys come as PEM,
//! PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`); encrypted keys are refused
//! with a message that says how to decrypt them. Errors never quote the key.

use crate::secrets::Redactor;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Serialize;

/// Why a private key cannot be used. Says what is wrong with the key, never what it holds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the private key is not PEM (expected a -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY----- block)"
    )]
    NotPem,
    #[error(
        "the private key is encrypted; decrypt it first (openssl pkcs8 -in key.p8 -out key.pem -nocrypt) and keep the result in a Secret"
    )]
    Encrypted,
    #[error("the private key is not a valid RSA key ({0})")]
    Rejected(String),
    #[error("signing with the private key failed")]
    Signing,
}

/// An RSA private key that signs RS256 tokens.
pub struct RsaSigner {
    key: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(..)")
    }
}

impl RsaSigner {
    /// Reads a PEM private key (PKCS#8 or PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        // JSON key files and some Secret stores keep the newlines escaped.
        let pem = pem.replace("\\n", "\n");
        if pem.contains("ENCRYPTED") {
            return Err(KeyError::Encrypted);
        }
        let (label, der) = pem_block(&pem).ok_or(KeyError::NotPem)?;
        let key = match label {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            _ => return Err(KeyError::NotPem),
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { key })
    }

    /// The public key as DER `SubjectPublicKeyInfo`, the form whose SHA-256 Snowflake shows as
    /// `RSA_PUBLIC_KEY_FP`.
    pub fn public_key_info(&self) -> Vec<u8> {
        // AlgorithmIdentifier { rsaEncryption, NULL }.
        const RSA_ALGORITHM: [u8; 15] = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        let pkcs1 = self.key.public_key().as_ref();
        let mut bit_string = vec![0u8];
        bit_string.extend_from_slice(pkcs1);
        let mut body = RSA_ALGORITHM.to_vec();
        body.extend(der_element(0x03, &bit_string));
        der_element(0x30, &body)
    }

    /// A compact JWS: `base64url(header).base64url(claims).base64url(signature)`.
    pub fn sign<C: Serialize>(
        &self,
        header: &JwtHeader<'_>,
        claims: &C,
    ) -> Result<String, KeyError> {
        let header = serde_json::to_vec(header).map_err(|_| KeyError::Signing)?;
        let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Signing)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Signing)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The JOSE header of an RS256 token.
#[derive(Serialize)]
pub struct JwtHeader<'a> {
    pub alg: &'static str,
    pub typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<&'a str>,
}

impl<'a> JwtHeader<'a> {
    pub fn rs256(kid: Option<&'a str>) -> Self {
        Self {
            alg: "RS256",
            typ: "JWT",
            kid,
        }
    }
}

/// The label and decoded body of the first PEM block.
fn pem_block(pem: &str) -> Option<(&str, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = label_end + "-----".len();
    let end = rest.find("-----END ")?;
    let body: String = rest
        .get(body_start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok().map(|der| (label, der))
}

/// One DER element: tag, definite length, contents.
fn der_element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The pieces of a PEM key a redactor must know on their own: the whole key, and each line
/// of its body (a message may quote one line, or the key with its newlines escaped).
pub fn pem_pieces(pem: &str) -> Vec<String> {
    let pem = pem.replace("\\n", "\n");
    let mut pieces = vec![pem.clone()];
    pieces.extend(
        pem.lines()
            .map(str::trim)
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
            .map(str::to_string),
    );
    pieces
}

/// Teaches a redactor a private key: the whole PEM and each line of its body.
pub fn remember_key(redactor: &Redactor, pem: &str) {
    for piece in pem_pieces(pem) {
        redactor.remember(&piece);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    pub const TEST_KEY_PKCS8: &str = include_str!("../../tests/fixtures/test-rsa-key.pem");
    const TEST_KEY_PKCS1: &str = include_str!("../../tests/fixtures/test-rsa-key-pkcs1.pem");
    /// `openssl rsa -in test-rsa-key.pem -pubout -outform DER | openssl dgst -sha256 -binary | base64`
    pub const TEST_KEY_FINGERPRINT: &str = "6v8tkCTT3kFJZ2lQKuRMjxzizBava+3+W7mASQP7sv0=";

    /// Checks a token's signature with the key's public half and returns its claims.
    pub fn verified_claims(signer: &RsaSigner, token: &str) -> serde_json::Value {
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        let public = signer.key.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).expect("base64url"),
            )
            .expect("a valid signature");
        let (header, claims) = input.split_once('.').expect("header.claims");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
    }

    #[test]
    fn both_pem_forms_give_the_key_openssl_fingerprints() {
        for pem in [TEST_KEY_PKCS8, TEST_KEY_PKCS1] {
            let signer = RsaSigner::from_pem(pem).unwrap();
            let digest = ring::digest::digest(&ring::digest::SHA256, &signer.public_key_info());
            assert_eq!(STANDARD.encode(digest), TEST_KEY_FINGERPRINT);
        }
    }

    #[test]
    fn escaped_newlines_are_read_as_newlines() {
        let escaped = TEST_KEY_PKCS8.replace('\n', "\\n");
        assert!(RsaSigner::from_pem(&escaped).is_ok());
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_key() {
        let signer = RsaSigner::from_pem(TEST_KEY_PKCS8).unwrap();
        let token = signer
            .sign(
                &JwtHeader::rs256(Some("k1")),
                &serde_json::json!({"sub": "me"}),
            )
            .unwrap();
        assert_eq!(verified_claims(&signer, &token)["sub"], "me");
    }

    #[test]
    fn bad_keys_are_refused_without_quoting_them() {
        assert_eq!(
            RsaSigner::from_pem("hunter2").unwrap_err(),
            KeyError::NotPem
        );
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----";
        assert_eq!(
            RsaSigner::from_pem(encrypted).unwrap_err(),
            KeyError::Encrypted
        );
        let garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----";
        let message = RsaSigner::from_pem(garbage).unwrap_err().to_string();
        assert!(message.starts_with("the private key is not a valid RSA key"));
        assert!(!message.contains("c2VjcmV0"));
    }

    #[test]
    fn a_pem_key_and_each_line_of_its_body_are_pieces_to_redact() {
        let pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nshort\\n-----END PRIVATE KEY-----\\n";
        let pieces = pem_pieces(pem);
        assert!(pieces[0].contains("\nMIIEvQ"), "{pieces:?}");
        assert_eq!(
            pieces[1..],
            ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".to_string()]
        );
    }
}
