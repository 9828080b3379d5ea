//! `sslMode: verify-full` with `sslRootCert` against the test server, whose certificate the
//! test certificate authority signed (`scripts/services`): the right authority connects and
//! moves rows, another one is refused, and none (the system's roots) is refused as well.

use synqx_api::SecretValue;
use synqx_api::connection::SslMode;
use synqx_api::pipeline::WriteMode;
use synqx_testkit::servers::{tls_ca, tls_other_ca};

use super::support::{Pg, SECRET, SECRET_KEY, destination, message, server_url, source};
use crate::connectors::tests::people;
use crate::secrets::Secrets;

/// The test's schema reached with `verify-full` and `root` as `sslRootCert`.
async fn verifying(prefix: &str, root: Option<SecretValue>) -> Pg {
    let mut pg = Pg::new(prefix).await;
    if let Some(spec) = pg.spec.postgres.as_mut() {
        spec.ssl_mode = Some(SslMode::VerifyFull);
        spec.ssl_root_cert = root;
    }
    pg
}

fn path(p: std::path::PathBuf) -> Option<SecretValue> {
    Some(SecretValue::plain(p.display().to_string()))
}

async fn round_trip(pg: &Pg) {
    let batch = people(&[(1, Some("ada")), (2, Some("grace"))]);
    let written = pg
        .write(
            destination(&pg.fqn("people"), WriteMode::Overwrite, &[]),
            batch.schema(),
            vec![Ok(batch)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written.rows, 2);
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {} ORDER BY id", pg.fqn("people")))
            .await,
        ["(1,ada)", "(2,grace)"]
    );
    let (_, batches) = pg
        .harness()
        .read_filtered(source(&pg.fqn("people")), None, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
}

#[tokio::test]
async fn verify_full_with_the_authority_as_a_file_connects_and_moves_rows() {
    let pg = verifying("tlsfile", path(tls_ca())).await;
    round_trip(&pg).await;
    let report = crate::connectors::check(&pg.conn()).await;
    assert!(report.ready, "{report:?}");
}

#[tokio::test]
async fn verify_full_with_the_authority_from_a_secret_connects() {
    let pem = std::fs::read_to_string(tls_ca())
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/services up)", tls_ca().display()));
    let mut pg = verifying("tlspem", Some(SecretValue::from_secret("pg-ca", "ca.crt"))).await;
    pg.secrets = Secrets::new(
        [],
        [
            (Secrets::env_name(SECRET, SECRET_KEY), server_url().password),
            (Secrets::env_name("pg-ca", "ca.crt"), pem),
        ],
    );
    round_trip(&pg).await;
}

#[tokio::test]
async fn another_authority_is_refused_saying_what_to_check() {
    let pg = verifying("tlsother", path(tls_other_ca())).await;
    let e = message(
        pg.harness()
            .read_filtered(source(&pg.fqn("t")), None, 1 << 20)
            .await,
    );
    let s = server_url();
    assert!(
        e.starts_with(&format!(
            "Connection \"warehouse\": TLS with PostgreSQL at {}:{} failed: invalid peer certificate: UnknownIssuer; ",
            s.host, s.port
        )),
        "{e}"
    );
    // The file is named (the test server's password, `synqx`, is redacted in its path).
    let named = tls_other_ca()
        .display()
        .to_string()
        .replace(&s.password, "***");
    assert!(
        e.contains("check postgres.sslMode (verify-full) and the server's certificate: is ")
            && e.contains(&format!("{named} the certificate authority that signed")),
        "{e}"
    );
    let report = crate::connectors::check(&pg.conn()).await;
    assert!(!report.ready, "{report:?}");
}

#[tokio::test]
async fn verify_full_without_the_authority_is_refused() {
    let pg = verifying("tlsnone", None).await;
    let e = message(
        pg.harness()
            .read_filtered(source(&pg.fqn("t")), None, 1 << 20)
            .await,
    );
    assert!(e.contains("failed: "), "{e}");
    assert!(
        e.contains(
            "a server whose certificate a private authority signed needs postgres.sslRootCert"
        ),
        "{e}"
    );
}
