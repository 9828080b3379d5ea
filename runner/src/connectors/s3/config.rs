//! The Connection's `s3` block, checked and resolved by `synqx_s3` with the run's secrets:
//! values from the pod's environment or the given files, ambient credentials only when the
//! operator lends them. Pure: the client is built from it only when the connector is used
//! (`connect.rs`).

pub use synqx_s3::S3Settings as S3Config;

use crate::connectors::ConnectionRef;
use crate::error::Result;

/// The settings of the Connection `conn`.
pub fn of(conn: &ConnectionRef<'_>) -> Result<S3Config> {
    let spec = conn.block(conn.spec.s3.as_ref())?;
    S3Config::new(
        conn.name,
        spec,
        |field, value| conn.secret(field, value),
        || {
            conn.secrets
                .ambient_credentials(conn.name, "s3.useAmbientCredentials")
        },
        conn.secrets.redactor(),
    )
}

#[cfg(test)]
mod tests {
    use synqx_api::connection::S3Connection;
    use synqx_api::{ConnectionSpec, SecretValue};
    use synqx_s3::{Credentials, Endpoint};

    use super::*;
    use crate::secrets::{AmbientCredentials, Secrets};

    fn config(s3: S3Connection, secrets: &Secrets) -> Result<S3Config> {
        let spec = ConnectionSpec {
            s3: Some(s3),
            ..Default::default()
        };
        of(&ConnectionRef {
            name: "lake",
            spec: &spec,
            base_dir: ".".into(),
            secrets,
        })
    }

    fn message(r: Result<S3Config>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn prefixes_endpoints_and_keys_are_checked_without_a_store() {
        let secrets = Secrets::new([], [("SYNQX_SECRET_S3__ID".into(), "AKIDEXAMPLE".into())]);
        let base = S3Connection {
            bucket: " lake ".into(),
            prefix: Some("/raw//orders".into()),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            force_path_style: Some(false),
            use_ambient_credentials: Some(true),
            ..Default::default()
        };
        let c = config(base.clone(), &secrets).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("lake", "raw/orders/")
        );
        assert_eq!(c.url("a.csv"), "s3://lake/raw/orders/a.csv");
        assert_eq!(
            c.endpoint,
            Some(Endpoint {
                url: "http://lake.127.0.0.1:9000".into(),
                virtual_hosted: true
            })
        );
        assert!(matches!(c.credentials, Credentials::Ambient));

        let e = message(config(
            S3Connection {
                prefix: Some("a/../b".into()),
                ..base.clone()
            },
            &secrets,
        ));
        assert_eq!(
            e,
            "Connection \"lake\": s3.prefix `a/../b` may not contain `.` or `..`"
        );
        let e = message(config(
            S3Connection {
                access_key_id: Some(SecretValue::from_secret("s3", "id")),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(
            e.contains("set s3.accessKeyId and s3.secretAccessKey together"),
            "{e}"
        );
        let e = message(config(
            S3Connection {
                access_key_id: Some(SecretValue::from_secret("nope", "id")),
                secret_access_key: Some(SecretValue::from_secret("nope", "key")),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(
            e.starts_with(
                "Connection \"lake\": s3.accessKeyId: secret key \"id\" of Secret \"nope\" is missing"
            ),
            "{e}"
        );
        let e = message(config(
            S3Connection {
                endpoint: Some("minio:9000".into()),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(e.contains("s3.endpoint must be a URL"), "{e}");
        let e = message(config(
            S3Connection {
                bucket: " ".into(),
                ..base
            },
            &secrets,
        ));
        assert_eq!(e, "Connection \"lake\": s3.bucket is empty");
    }

    #[test]
    fn ambient_credentials_only_when_the_connection_asks_and_the_pod_may() {
        // In a pod, only the operator's exact word lends them.
        assert_eq!(
            AmbientCredentials::of_pod(Some("allowed")),
            AmbientCredentials::Lent
        );
        for other in [None, Some(""), Some("true"), Some("Allowed")] {
            assert_eq!(
                AmbientCredentials::of_pod(other),
                AmbientCredentials::Withheld
            );
        }
        let trusted = Secrets::default();
        let lent = Secrets::default().with_ambient_credentials(AmbientCredentials::Lent);
        let withheld = Secrets::default().with_ambient_credentials(AmbientCredentials::Withheld);
        let asking = S3Connection {
            bucket: "lake".into(),
            use_ambient_credentials: Some(true),
            ..Default::default()
        };
        for secrets in [&trusted, &lent] {
            let c = config(asking.clone(), secrets).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(c.credentials, Credentials::Ambient));
        }
        assert_eq!(
            message(config(asking.clone(), &withheld)),
            "Connection \"lake\": s3.useAmbientCredentials: this operator lends no ambient cloud credentials to Connections; an administrator can allow them with --allow-ambient-credentials (Helm value runner.allowAmbientCredentials), or give the Connection its own keys"
        );
        // Not asking: nothing is lent, wherever it runs.
        for secrets in [&trusted, &lent, &withheld] {
            for flag in [None, Some(false)] {
                let e = message(config(
                    S3Connection {
                        use_ambient_credentials: flag,
                        ..asking.clone()
                    },
                    secrets,
                ));
                assert_eq!(
                    e,
                    "Connection \"lake\": s3 has no credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.useAmbientCredentials: true to use the AWS credentials of the environment (on a cluster the operator must allow them)"
                );
            }
        }
        let both = S3Connection {
            access_key_id: Some(SecretValue::plain("AKIDEXAMPLE")),
            secret_access_key: Some(SecretValue::plain("secret")),
            ..asking
        };
        assert!(
            message(config(both, &lent)).contains("s3.useAmbientCredentials cannot go with"),
            "keys and ambient credentials at once"
        );
    }

    #[test]
    fn keys_from_secrets_are_redacted_and_never_printed() {
        let secrets = Secrets::new(
            [],
            [
                ("SYNQX_SECRET_S3__ID".into(), "AKIDEXAMPLE".into()),
                (
                    "SYNQX_SECRET_S3__KEY".into(),
                    "wJalrXUtnFEMI/K7MDENG".into(),
                ),
            ],
        );
        let c = config(
            S3Connection {
                bucket: "lake".into(),
                access_key_id: Some(SecretValue::from_secret("s3", "id")),
                secret_access_key: Some(SecretValue::from_secret("s3", "key")),
                ..Default::default()
            },
            &secrets,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{c:?}").contains("AKIDEXAMPLE"));
        assert_eq!(
            c.redactor
                .redact("id AKIDEXAMPLE key wJalrXUtnFEMI/K7MDENG"),
            "id *** key ***"
        );
    }
}
