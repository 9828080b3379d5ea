//! Secrets opt in to being used by Connections with the label
//! `synqx.io/connection-secret: "true"`: a Pipeline author who may create Connections must
//! not be able to hand any Secret of the namespace (another team's, a service account token)
//! to a pod and a host of their choosing. The Connection controller fails the check of a
//! Connection that names another Secret; the run controller asks again right before each
//! step's Job, so no pod ever receives one, even when the label was removed after the check.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use synqx_api::ConnectionSpec;
use synqx_api::secret::{CONNECTION_SECRET_LABEL, opt_in_hint, opted_in};

/// Why a Connection field may not use its Secret: it has not opted in.
pub fn not_opted_in(field: &str, secret: &str) -> String {
    format!(
        "{field}: Secret \"{secret}\" is not labeled {CONNECTION_SECRET_LABEL}: \"true\", so Connections may not use it; {}",
        opt_in_hint(secret)
    )
}

/// What the Secrets of a namespace say about their opt-in, each read once.
pub struct OptIns {
    secrets: Api<Secret>,
    /// Secret name -> `Some(opted in)`, `None` when it does not exist.
    seen: BTreeMap<String, Option<bool>>,
}

impl OptIns {
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            seen: BTreeMap::new(),
        }
    }

    /// The first field of `spec` whose Secret exists and has not opted in, as a message
    /// naming the Connection, field, Secret and label. A Secret that does not exist is left
    /// to the pod, which fails to start naming it (it may yet be created).
    pub async fn refusal(
        &mut self,
        connection: &str,
        spec: &ConnectionSpec,
    ) -> Result<Option<String>, kube::Error> {
        for (field, value) in spec.secret_values() {
            let Some(reference) = &value.secret_key_ref else {
                continue;
            };
            let opted = match self.seen.get(&reference.name) {
                Some(known) => *known,
                None => {
                    let secret = self.secrets.get_opt(&reference.name).await?;
                    let opted = secret.map(|s| opted_in(s.metadata.labels.as_ref()));
                    self.seen.insert(reference.name.clone(), opted);
                    opted
                }
            };
            if opted == Some(false) {
                return Ok(Some(format!(
                    "Connection \"{connection}\": {}",
                    not_opted_in(&field, &reference.name)
                )));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_field_the_secret_and_the_label_to_add() {
        assert_eq!(
            not_opted_in("postgres.password", "team-b-db"),
            "postgres.password: Secret \"team-b-db\" is not labeled synqx.io/connection-secret: \"true\", so Connections may not use it; add the label synqx.io/connection-secret: \"true\" to the Secret if Connections may use it (kubectl label secret team-b-db synqx.io/connection-secret=true)"
        );
    }

    #[test]
    fn only_the_label_with_true_opts_in() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(opted_in(Some(&labels(&[(
            CONNECTION_SECRET_LABEL,
            "true"
        )]))));
        assert!(!opted_in(Some(&labels(&[(
            CONNECTION_SECRET_LABEL,
            "True"
        )]))));
        assert!(!opted_in(Some(&labels(&[(
            CONNECTION_SECRET_LABEL,
            "yes"
        )]))));
        assert!(!opted_in(Some(&labels(&[("app", "db")]))));
        assert!(!opted_in(None));
    }
}
