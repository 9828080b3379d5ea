//! What a Pipeline may ask of this operator. A Pipeline author is trusted with their own
//! namespace's data, not with the cluster: the runner image, the service account, `hostPath`
//! volumes and ambient cloud credentials are the administrator's to allow, with flags of
//! `synqx-operator run` (and values of the Helm chart). Pure: the Pipeline controller refuses
//! a Pipeline that asks for more ([`runner_problems`]), and the run controller asks again
//! before each Job, so a run pinned under laxer flags cannot start a pod they now forbid.

use synqx_api::runner::RunnerSpec;

use crate::job::DEFAULT_SERVICE_ACCOUNT;

/// The administrator's answers, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Images a Pipeline's `spec.runner.image` may name besides the operator's runner image
    /// (`--allowed-runner-images`): exact references, or prefixes ending in `*`.
    pub allowed_images: Vec<String>,
    /// Whether `spec.runner.serviceAccountName` may name another account than
    /// `synqx-runner` (`--allow-service-account-override`).
    pub allow_service_account_override: bool,
    /// Whether step and check pods are lent the cloud credentials of their environment for
    /// Connections that ask with `useAmbientCredentials: true` (`--allow-ambient-credentials`).
    pub allow_ambient_credentials: bool,
}

impl Policy {
    /// Whether step pods may run `image`: the operator's own runner image always, others
    /// when listed.
    pub fn allows_image(&self, image: &str, runner_image: &str) -> bool {
        image == runner_image
            || self
                .allowed_images
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => image == allowed,
                })
    }
}

/// An `--allowed-runner-images` entry that is neither an image reference nor a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--allowed-runner-images {text:?}: expected an image reference (registry.example.com/synqx:1.2.3) or a prefix ending in * (registry.example.com/synqx:*)"
)]
pub struct ImagePatternError {
    text: String,
}

/// Parses `--allowed-runner-images`: one image reference, or a prefix ending in `*`.
pub fn parse_image_pattern(text: &str) -> Result<String, ImagePatternError> {
    let text = text.trim();
    let bare = text.strip_suffix('*').unwrap_or(text);
    if bare.is_empty() || bare.contains('*') || bare.chars().any(char::is_whitespace) {
        return Err(ImagePatternError {
            text: text.to_string(),
        });
    }
    Ok(text.to_string())
}

/// What `spec.runner` asks for that this operator does not allow, as
/// `Pipeline/<name>: spec.runner.<field>: <why and what to change>`.
pub fn runner_problems(
    pipeline: &str,
    runner: Option<&RunnerSpec>,
    runner_image: &str,
    policy: &Policy,
    allow_host_path: bool,
) -> Vec<String> {
    let Some(runner) = runner else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if let Some(image) = runner
        .image
        .as_deref()
        .filter(|image| !policy.allows_image(image, runner_image))
    {
        let allowed = std::iter::once(runner_image)
            .chain(policy.allowed_images.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ");
        problems.push(format!(
            "Pipeline/{pipeline}: spec.runner.image: \"{image}\" is not a runner image this operator allows (allowed: {allowed}); remove spec.runner.image to use the operator's runner image, or an administrator can add it with --allowed-runner-images (Helm value runner.allowedImages)"
        ));
    }
    if let Some(account) = runner
        .service_account_name
        .as_deref()
        .filter(|account| *account != DEFAULT_SERVICE_ACCOUNT)
        .filter(|_| !policy.allow_service_account_override)
    {
        problems.push(format!(
            "Pipeline/{pipeline}: spec.runner.serviceAccountName: \"{account}\": this operator runs step pods as {DEFAULT_SERVICE_ACCOUNT} only; remove spec.runner.serviceAccountName, or an administrator can let Pipelines choose with --allow-service-account-override (Helm value runner.allowServiceAccountOverride)"
        ));
    }
    if !allow_host_path {
        problems.extend(
            synqx_api::runner::host_path_problems(runner)
                .into_iter()
                .map(|(field, message)| {
                    format!("Pipeline/{pipeline}: spec.runner.{field}: {message}")
                }),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR_IMAGE: &str = "ghcr.io/synqx/synqx:0.1.0";

    fn runner(yaml: &str) -> RunnerSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(yaml: &str, policy: &Policy) -> Vec<String> {
        runner_problems("p", Some(&runner(yaml)), OPERATOR_IMAGE, policy, false)
    }

    #[test]
    fn only_the_operators_runner_image_by_default() {
        let policy = Policy::default();
        assert_eq!(problems("{}", &policy), Vec::<String>::new());
        assert_eq!(
            problems(&format!("{{image: \"{OPERATOR_IMAGE}\"}}"), &policy),
            Vec::<String>::new()
        );
        assert_eq!(
            problems("{image: \"attacker.example/dump:1\"}", &policy),
            vec![format!(
                "Pipeline/p: spec.runner.image: \"attacker.example/dump:1\" is not a runner image this operator allows (allowed: {OPERATOR_IMAGE}); remove spec.runner.image to use the operator's runner image, or an administrator can add it with --allowed-runner-images (Helm value runner.allowedImages)"
            )]
        );
        assert_eq!(
            runner_problems("p", None, OPERATOR_IMAGE, &policy, false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn listed_images_and_prefixes_are_allowed_and_nothing_else() {
        let policy = Policy {
            allowed_images: vec![
                "registry.example.com/etl:2".into(),
                "registry.example.com/synqx:*".into(),
            ],
            ..Policy::default()
        };
        for ok in [
            OPERATOR_IMAGE,
            "registry.example.com/etl:2",
            "registry.example.com/synqx:1.2.3",
        ] {
            assert!(policy.allows_image(ok, OPERATOR_IMAGE), "{ok}");
        }
        for refused in [
            "registry.example.com/etl:3",
            "registry.example.com/etl:2-debug",
            "registry.example.com/synqx-evil:1",
            "ghcr.io/synqx/synqx:0.1.0-dirty",
        ] {
            assert!(!policy.allows_image(refused, OPERATOR_IMAGE), "{refused}");
        }
        let message = problems("{image: \"registry.example.com/etl:3\"}", &policy).join("");
        assert!(
            message.contains(&format!(
                "(allowed: {OPERATOR_IMAGE}, registry.example.com/etl:2, registry.example.com/synqx:*)"
            )),
            "{message}"
        );
    }

    #[test]
    fn image_patterns_are_references_or_prefixes() {
        assert_eq!(
            parse_image_pattern(" registry.example.com/synqx:* "),
            Ok("registry.example.com/synqx:*".to_string())
        );
        for bad in ["", "*", "a*b", "reg/x *"] {
            let e = parse_image_pattern(bad).unwrap_err().to_string();
            assert!(e.starts_with("--allowed-runner-images"), "{e}");
        }
    }

    #[test]
    fn the_service_account_is_synqx_runner_unless_overrides_are_allowed() {
        let refused = problems("{serviceAccountName: cluster-admin}", &Policy::default());
        assert_eq!(
            refused,
            vec![
                "Pipeline/p: spec.runner.serviceAccountName: \"cluster-admin\": this operator runs step pods as synqx-runner only; remove spec.runner.serviceAccountName, or an administrator can let Pipelines choose with --allow-service-account-override (Helm value runner.allowServiceAccountOverride)".to_string()
            ]
        );
        assert_eq!(
            problems("{serviceAccountName: synqx-runner}", &Policy::default()),
            Vec::<String>::new()
        );
        let allowing = Policy {
            allow_service_account_override: true,
            ..Policy::default()
        };
        assert_eq!(
            problems("{serviceAccountName: cluster-admin}", &allowing),
            Vec::<String>::new()
        );
    }

    #[test]
    fn host_path_only_when_allowed_and_every_problem_is_named() {
        let yaml = "{image: x/y:1, serviceAccountName: other, volumes: [{name: host, hostPath: {path: /etc}}], volumeMounts: [{name: host, mountPath: /host}]}";
        let all = problems(yaml, &Policy::default());
        let fields: Vec<&str> = all
            .iter()
            .filter_map(|p| p.strip_prefix("Pipeline/p: spec.runner."))
            .filter_map(|p| p.split(':').next())
            .collect();
        assert_eq!(
            fields,
            vec!["image", "serviceAccountName", "volumes[0].hostPath"]
        );
        let runner = runner(yaml);
        let allowing = Policy {
            allowed_images: vec!["x/y:1".into()],
            allow_service_account_override: true,
            allow_ambient_credentials: false,
        };
        assert_eq!(
            runner_problems("p", Some(&runner), OPERATOR_IMAGE, &allowing, true),
            Vec::<String>::new()
        );
    }
}
