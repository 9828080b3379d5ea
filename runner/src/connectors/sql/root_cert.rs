//! `sslRootCert` of the PostgreSQL and MySQL Connections: the certificate authority that
//! verifies the server's certificate under `sslMode: verify-full` or `verify-ca`. Checked
//! without I/O: a path is read by the driver when it connects.

use std::path::PathBuf;

use synqx_api::SecretValue;
use synqx_api::connection::SslMode;

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::PLACEHOLDER;

/// What begins every certificate in PEM text.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// Where the certificate authority comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// PEM text, as the Connection (its Secret or sealed value) holds it.
    Pem(Vec<u8>),
    /// A PEM file, relative paths below the Connection's base folder.
    File(PathBuf),
}

/// The checked `sslRootCert` of a Connection. `block` is `postgres` or `mysql`, for the field
/// names in messages.
pub fn root_cert(
    conn: &ConnectionRef<'_>,
    block: &str,
    mode: SslMode,
    value: Option<&SecretValue>,
) -> Result<Option<RootCert>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let field = format!("{block}.sslRootCert");
    let at = format!("Connection \"{}\": {field}", conn.name);
    if !matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        return Err(Error::Config(format!(
            "{at} is set, but {block}.sslMode is {mode}, which does not verify the server's certificate: set {block}.sslMode: verify-full (or verify-ca) to use the certificate authority, or remove {field}"
        )));
    }
    let text = conn.resolve(&field, value)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Config(format!(
            "{at} is empty: give the PEM text of the certificate authority, or the path of its file"
        )));
    }
    if text == PLACEHOLDER {
        // Checked without secrets (`synqx validate`): the value is not known.
        return Ok(Some(RootCert::Pem(Vec::new())));
    }
    if text.starts_with("-----BEGIN") {
        if !text.contains(PEM_CERTIFICATE) {
            return Err(Error::Config(format!(
                "{at} is PEM text without a certificate ({PEM_CERTIFICATE}): give the certificate of the authority that signed the server's certificate, not a key or a request"
            )));
        }
        return Ok(Some(RootCert::Pem(format!("{text}\n").into_bytes())));
    }
    if text.contains('\n') {
        return Err(Error::Config(format!(
            "{at} is neither PEM text ({PEM_CERTIFICATE} …) nor the path of a file"
        )));
    }
    Ok(Some(RootCert::File(conn.base_dir.join(text))))
}

/// Whether connecting failed because the server's certificate was not trusted (an unknown
/// authority, another host's name, an expired one): sqlx reports these as I/O errors that
/// carry the TLS library's verdict.
pub fn is_certificate_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::InvalidData && io.to_string().contains("certificate")
        }
        _ => false,
    }
}

/// A hint for a failed TLS handshake: which certificate authority was asked to vouch.
pub fn handshake_hint(block: &str, root: Option<&RootCert>) -> String {
    match root {
        Some(RootCert::File(path)) => format!(
            "is {} the certificate authority that signed the server's certificate (and is the certificate issued for this host)? check {block}.sslRootCert",
            path.display()
        ),
        Some(RootCert::Pem(_)) => format!(
            "is {block}.sslRootCert the certificate authority that signed the server's certificate (and is the certificate issued for this host)?"
        ),
        None => format!(
            "a server whose certificate a private authority signed needs {block}.sslRootCert"
        ),
    }
}

#[cfg(test)]
mod tests {
    use synqx_api::ConnectionSpec;

    use super::*;
    use crate::secrets::Secrets;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

    fn check_value(mode: SslMode, value: Option<&str>) -> Result<Option<RootCert>> {
        let spec = ConnectionSpec::default();
        let secrets = Secrets::default();
        let conn = ConnectionRef {
            name: "db",
            spec: &spec,
            base_dir: PathBuf::from("/pipelines"),
            secrets: &secrets,
        };
        let value = value.map(SecretValue::plain);
        root_cert(&conn, "postgres", mode, value.as_ref())
    }

    fn check(mode: SslMode, value: &str) -> Result<Option<RootCert>> {
        check_value(mode, Some(value))
    }

    fn message(r: Result<Option<RootCert>>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn pem_text_and_paths_are_taken_under_a_verifying_mode() {
        assert_eq!(
            check(SslMode::VerifyFull, PEM).ok().flatten(),
            Some(RootCert::Pem(format!("{PEM}\n").into_bytes()))
        );
        assert_eq!(
            check(SslMode::VerifyCa, "certs/ca.crt").ok().flatten(),
            Some(RootCert::File(PathBuf::from("/pipelines/certs/ca.crt")))
        );
        assert_eq!(
            check(SslMode::VerifyFull, "/etc/ca.pem").ok().flatten(),
            Some(RootCert::File(PathBuf::from("/etc/ca.pem")))
        );
    }

    #[test]
    fn mistakes_name_the_field_and_what_to_do() {
        let e = message(check(SslMode::Require, PEM));
        assert!(
            e.starts_with(
                "Connection \"db\": postgres.sslRootCert is set, but postgres.sslMode is require"
            ) && e.contains("set postgres.sslMode: verify-full"),
            "{e}"
        );
        let e = message(check(SslMode::VerifyFull, "  "));
        assert!(e.contains("postgres.sslRootCert is empty"), "{e}");
        let key = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEY\n-----END PRIVATE KEY-----";
        let e = message(check(SslMode::VerifyFull, key));
        assert!(e.contains("PEM text without a certificate"), "{e}");
        assert!(!e.contains("TOPSECRETKEY"), "{e}");
        let e = message(check(SslMode::VerifyFull, "MIIB\nMIIC"));
        assert!(e.contains("neither PEM text"), "{e}");
    }

    #[test]
    fn unset_is_the_system_roots() {
        assert_eq!(check_value(SslMode::Require, None).ok(), Some(None));
        assert!(handshake_hint("mysql", None).contains("mysql.sslRootCert"));
    }
}
