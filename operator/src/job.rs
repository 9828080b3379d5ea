//! The Job that runs one attempt of one step: no retries of its own (the operator retries, so
//! every attempt is a Job to see), owned by its run, hardened, credentials as `secretKeyRef`
//! env, the step's watermark passed in.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretKeySelector, SecurityContext,
};
use kube::Resource;
use kube::api::ObjectMeta;
use synqx_api::dag::Plan;
use synqx_api::duration::parse_duration;
use synqx_api::pipeline::{PipelineSpec, Step};
use synqx_api::run::PipelineRun;
use synqx_api::secret::{AMBIENT_CREDENTIALS_ENV, secret_env_name};
use synqx_api::step_plan::{STEP_PLAN_ENV, StepPlan, StepPlanError};

use crate::step_pod::{self, PodDefaults};
use crate::{names, start_failure, vault};

pub const LABEL_PIPELINE: &str = "synqx.io/pipeline";
pub const LABEL_RUN: &str = "synqx.io/run";
pub const LABEL_STEP: &str = "synqx.io/step";
pub const LABEL_ATTEMPT: &str = "synqx.io/attempt";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "synqx-runner";
/// Where the step's committed watermark reaches the runner.
pub const WATERMARK_ENV: &str = "SYNQX_WATERMARK";

/// One attempt of one step, with everything its Job needs.
pub struct StepJob<'a> {
    pub run: &'a PipelineRun,
    pub pipeline: &'a PipelineSpec,
    pub plan: &'a Plan,
    /// The ControllerRevision holding `plan`: the step reads its plan there, and need not
    /// wait for the run's status to name it.
    pub revision: &'a str,
    pub step: &'a Step,
    pub attempt: u32,
    pub watermark: Option<&'a str>,
    /// The image when the Pipeline names none (`--runner-image`).
    pub default_image: &'a str,
    /// Scratch volume, resources and deadline when the Pipeline sets none.
    pub pods: &'a PodDefaults,
    /// Whether the operator lends ambient cloud credentials (`--allow-ambient-credentials`)
    /// to Connections that ask for them.
    pub lend_ambient_credentials: bool,
}

impl StepJob<'_> {
    pub fn name(&self) -> String {
        let uid = self.run.metadata.uid.as_deref().unwrap_or_default();
        names::job_name(&self.run_name(), uid, &self.step.name, self.attempt)
    }

    fn run_name(&self) -> String {
        self.run.metadata.name.clone().unwrap_or_default()
    }

    pub fn build(&self) -> Job {
        let run = self.run_name();
        let namespace = self.run.metadata.namespace.clone().unwrap_or_default();
        let pipeline = self.run.spec.pipeline_ref.name.clone();
        let labels: BTreeMap<String, String> = [
            (LABEL_PIPELINE, names::fit(&pipeline)),
            (LABEL_RUN, names::fit(&run)),
            (LABEL_STEP, self.step.name.clone()),
            (LABEL_ATTEMPT, self.attempt.to_string()),
            ("app.kubernetes.io/managed-by", "synqx-operator".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let runner = self.pipeline.runner.clone().unwrap_or_default();
        let image = runner
            .image
            .clone()
            .unwrap_or_else(|| self.default_image.to_string());

        let mut env = vec![vault::namespace_env()];
        // A plan too large for the environment is refused before the Job is built
        // ([`Self::plan_problem`]): that Job never starts a pod.
        if let Ok(plan) = self.step_plan_env() {
            env.push(EnvVar {
                name: STEP_PLAN_ENV.into(),
                value: Some(plan),
                ..Default::default()
            });
        }
        if let Some(watermark) = self.watermark {
            env.push(EnvVar {
                name: WATERMARK_ENV.into(),
                value: Some(watermark.to_string()),
                ..Default::default()
            });
        }
        env.extend(self.secret_env());
        if self.lend_ambient_credentials {
            env.push(ambient_credentials_env());
        }
        // Only the operator's runner image gets the keyring (the Pipeline controller refuses
        // other images for Pipelines with sealed values; this holds for runs pinned before).
        if self.uses_sealed_values() && image == self.default_image {
            // Only the keyring: POD_NAMESPACE is set above.
            env.extend(
                vault::keyring_env()
                    .into_iter()
                    .filter(|e| e.name == vault::KEYRING_ENV),
            );
        }

        let mut container = Container {
            name: "step".into(),
            image: Some(image),
            command: Some(vec!["synqx".into()]),
            args: Some(vec![
                "step".into(),
                "--namespace".into(),
                namespace.clone(),
                "--run".into(),
                run.clone(),
                "--step".into(),
                self.step.name.clone(),
                "--attempt".into(),
                self.attempt.to_string(),
                "--revision".into(),
                self.revision.to_string(),
            ]),
            env: Some(env),
            resources: runner.resources.clone(),
            ..hardened_container()
        };
        let mut pod = PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(
                runner
                    .service_account_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.into()),
            ),
            node_selector: (!runner.node_selector.is_empty()).then(|| runner.node_selector.clone()),
            tolerations: (!runner.tolerations.is_empty()).then(|| runner.tolerations.clone()),
            ..hardened_pod()
        };
        // The root file system is read-only: relative paths, temporary files and
        // dead-letter files of `onError: skip` live in the scratch volume.
        step_pod::add_scratch(&mut pod, &mut container, self.pods);
        step_pod::add_gateway(&mut pod, &mut container, self.pods.gateway_url.as_deref());
        let mut pod_labels = labels.clone();
        let mut annotations = BTreeMap::new();
        step_pod::add_runner(
            &mut pod,
            &mut container,
            &mut pod_labels,
            &mut annotations,
            &runner,
        );
        pod.containers = vec![container];
        Job {
            metadata: ObjectMeta {
                name: Some(self.name()),
                namespace: Some(namespace),
                labels: Some(labels),
                owner_references: self.run.controller_owner_ref(&()).map(|r| vec![r]),
                ..Default::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(0),
                active_deadline_seconds: Some(step_pod::deadline_seconds(
                    self.timeout(),
                    self.pods,
                )),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: (!annotations.is_empty()).then_some(annotations),
                        ..Default::default()
                    }),
                    spec: Some(pod),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// The step's part of the plan as the pod reads it from [`STEP_PLAN_ENV`], so it needs
    /// no API call to start.
    fn step_plan_env(&self) -> Result<String, StepPlanError> {
        match StepPlan::of(self.plan, self.revision, &self.step.name) {
            Some(plan) => plan.to_env_value(),
            // The step is taken from the plan, so this is a step of another plan.
            None => StepPlan {
                revision: self.revision.to_string(),
                plan_hash: self.plan.hash.clone(),
                step: synqx_api::dag::PlannedStep {
                    step: self.step.clone(),
                    layer: 0,
                    upstream: Vec::new(),
                },
                connections: BTreeMap::new(),
            }
            .to_env_value(),
        }
    }

    /// Why the step cannot start in a pod: its plan does not fit in the pod's environment.
    pub fn plan_problem(&self) -> Option<String> {
        self.step_plan_env().err().map(|e| e.to_string())
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        self.step
            .timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
    }

    /// Whether a Connection this step uses holds a sealed value: only then does the pod get
    /// the namespace's keyring.
    fn uses_sealed_values(&self) -> bool {
        self.step
            .connections()
            .into_iter()
            .filter_map(|name| self.plan.connections.get(name))
            .any(vault::needs_keyring)
    }

    /// `SYNQX_SECRET_<SECRET>__<KEY>` from `secretKeyRef`, for the Connections this step uses.
    fn secret_env(&self) -> Vec<EnvVar> {
        let mut seen = BTreeMap::new();
        for connection in self.step.connections() {
            let Some(spec) = self.plan.connections.get(connection) else {
                continue;
            };
            for (_, value) in spec.secret_values() {
                if let Some(r) = &value.secret_key_ref {
                    seen.insert(
                        secret_env_name(&r.name, &r.key),
                        (r.name.clone(), r.key.clone()),
                    );
                }
            }
        }
        seen.into_iter()
            .map(|(name, (secret, key))| EnvVar {
                name,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret,
                        key,
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }
}

/// What tells the runner that this operator lends ambient cloud credentials to Connections
/// that ask for them (`useAmbientCredentials: true`); without it the runner reads none.
pub fn ambient_credentials_env() -> EnvVar {
    EnvVar {
        name: AMBIENT_CREDENTIALS_ENV.into(),
        value: Some("allowed".into()),
        ..Default::default()
    }
}

/// The Job of an attempt the operator refuses to start, and `why`: it never creates a pod
/// (`parallelism: 0`, no Secret in its template), records `why` where the reason of a pod
/// that could not start goes ([`start_failure::ANNOTATION`]), and the Job controller ends it
/// `Failed` at once (`activeDeadlineSeconds: 1`). So the attempt fails like any other, with
/// `why` as the step's message, and `retry` and `onFailure` apply as usual.
pub fn refused(mut job: Job, why: &str) -> Job {
    job.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            start_failure::ANNOTATION.into(),
            format!("the operator refused to start this step: {why}"),
        );
    if let Some(spec) = job.spec.as_mut() {
        spec.parallelism = Some(0);
        spec.active_deadline_seconds = Some(1);
        for container in spec
            .template
            .spec
            .iter_mut()
            .flat_map(|pod| pod.containers.iter_mut())
        {
            if let Some(env) = container.env.as_mut() {
                env.retain(|e| e.value_from.is_none());
            }
        }
    }
    job
}

/// A container that runs as non-root on a read-only root file system with no capabilities,
/// its termination message falling back to its log's tail.
pub fn hardened_container() -> Container {
    Container {
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod that runs as an unprivileged user under the runtime's default seccomp profile.
pub fn hardened_pod() -> PodSpec {
    PodSpec {
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `job` is controlled by the object with `uid`: a Job of the same name that some
/// other object (or someone else) created is never taken for one of ours.
pub fn owned_by(job: &Job, uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Whether a Job has ended: `Complete` or `Failed`.
pub fn job_ended(job: &Job) -> bool {
    end_of(job).is_some()
}

/// The condition that ended a Job: `Complete` or `Failed`, when one is true.
pub fn end_of(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use synqx_api::validate::{InputFile, validate};

    const YAML: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db}
spec:
  postgres:
    host: db
    database: shop
    user: {value: etl}
    password: {secretKeyRef: {name: db-credentials, key: password}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: lake}
spec:
  filesystem: {path: /lake}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: orders, namespace: etl}
spec:
  runner:
    image: registry.example.com/synqx:1.2.3
    nodeSelector: {pool: etl}
    volumes: [{name: data, persistentVolumeClaim: {claimName: etl-data}}]
    volumeMounts: [{name: data, mountPath: /data}]
    env: [{name: RUST_LOG, value: debug}]
    podLabels: {team: data}
    podAnnotations: {"example.com/owner": data}
    priorityClassName: batch-low
    imagePullSecrets: [{name: registry}]
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [etl]}]}]
  steps:
    - name: extract
      timeout: 10m
      sync:
        source: {connection: db, asset: {fqn: public.orders}, incremental: {cursor: updated_at}}
        destination: {connection: lake, asset: {fqn: raw/orders/}, format: parquet}
"#;

    fn run() -> PipelineRun {
        let mut run = PipelineRun::new(
            "orders-1",
            synqx_api::run::PipelineRunSpec {
                pipeline_ref: synqx_api::run::PipelineRef {
                    name: "orders".into(),
                },
                ..Default::default()
            },
        );
        run.metadata.namespace = Some("etl".into());
        run.metadata.uid = Some("uid-1".into());
        run
    }

    /// Attempt 1 of the plan's first step, without a watermark.
    fn first_attempt<'a>(
        run: &'a PipelineRun,
        pipeline: &'a PipelineSpec,
        plan: &'a Plan,
        default_image: &'a str,
        pods: &'a PodDefaults,
    ) -> StepJob<'a> {
        StepJob {
            run,
            pipeline,
            plan,
            revision: "orders-0123456789",
            step: &plan.steps[0].step,
            attempt: 1,
            watermark: None,
            default_image,
            pods,
            lend_ambient_credentials: false,
        }
    }

    #[test]
    fn a_step_job_is_hardened_owned_and_carries_its_inputs() {
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: YAML,
        }]);
        assert!(report.is_valid(), "{:?}", report.problems);
        let plan = &report.plans["orders"];
        let pipeline = report.bundle.pipeline("orders").expect("pipeline");
        let run = run();
        let step_job = StepJob {
            run: &run,
            pipeline: &pipeline.spec,
            plan,
            revision: "orders-0123456789",
            step: &plan.steps[0].step,
            attempt: 2,
            watermark: Some("2026-11-01T00:00:00Z"),
            default_image: "ghcr.io/synqx/synqx:0.1.0",
            pods: &PodDefaults::default(),
            lend_ambient_credentials: false,
        };
        let job = step_job.build();
        assert_eq!(
            job.metadata.name,
            Some(names::job_name("orders-1", "uid-1", "extract", 2))
        );
        assert!(owned_by(&job, "uid-1") && !owned_by(&job, "uid-2"));
        let owner = &job.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PipelineRun", "uid-1", Some(true))
        );
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_STEP).map(String::as_str), Some("extract"));
        assert_eq!(labels.get(LABEL_ATTEMPT).map(String::as_str), Some("2"));

        let spec = job.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let template = spec.template.metadata.clone().unwrap_or_default();
        let pod_labels = template.labels.unwrap_or_default();
        assert_eq!(pod_labels.get("team").map(String::as_str), Some("data"));
        assert_eq!(
            pod_labels.get(LABEL_STEP).map(String::as_str),
            Some("extract")
        );
        assert_eq!(
            template
                .annotations
                .unwrap_or_default()
                .get("example.com/owner")
                .map(String::as_str),
            Some("data")
        );
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.priority_class_name.as_deref(), Some("batch-low"));
        assert_eq!(
            pod.image_pull_secrets.clone().unwrap_or_default()[0].name,
            "registry"
        );
        assert!(
            pod.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some()
        );
        let volumes: Vec<(String, bool)> = pod
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.persistent_volume_claim.is_some()))
            .collect();
        assert_eq!(
            volumes,
            vec![("scratch".to_string(), false), ("data".to_string(), true)]
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("synqx-runner"));
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([("pool".to_string(), "etl".to_string())]))
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let security = pod.security_context.expect("pod security");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            security.seccomp_profile.map(|s| s.type_),
            Some("RuntimeDefault".to_string())
        );

        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.com/synqx:1.2.3")
        );
        let args = container.args.clone().unwrap_or_default().join(" ");
        assert_eq!(
            args,
            "step --namespace etl --run orders-1 --step extract --attempt 2 --revision orders-0123456789"
        );
        let hardening = container
            .security_context
            .clone()
            .expect("container security");
        assert_eq!(hardening.read_only_root_filesystem, Some(true));
        assert_eq!(hardening.allow_privilege_escalation, Some(false));
        assert_eq!(
            hardening.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );

        let mounts: Vec<&str> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, vec!["/work", "/tmp", "/data"]);
        assert_eq!(container.working_dir.as_deref(), Some("/work"));
        let env = container.env.clone().unwrap_or_default();
        let find = |name: &str| env.iter().find(|e| e.name == name).cloned();
        assert_eq!(
            find("TMPDIR").and_then(|e| e.value).as_deref(),
            Some("/tmp")
        );
        assert_eq!(
            find("RUST_LOG").and_then(|e| e.value).as_deref(),
            Some("debug")
        );
        assert_eq!(
            find(WATERMARK_ENV).and_then(|e| e.value).as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        let step_plan = find(STEP_PLAN_ENV)
            .and_then(|e| e.value)
            .and_then(|text| StepPlan::from_env_value(&text).ok());
        assert_eq!(
            step_plan,
            StepPlan::of(plan, "orders-0123456789", "extract"),
            "the pod gets its step, revision and Connections in its environment"
        );
        assert_eq!(step_job.plan_problem(), None);
        let secret = find("SYNQX_SECRET_DB_CREDENTIALS__PASSWORD")
            .and_then(|e| e.value_from)
            .and_then(|v| v.secret_key_ref);
        assert_eq!(
            secret.map(|s| (s.name, s.key)),
            Some(("db-credentials".to_string(), "password".to_string()))
        );
        assert!(
            env.iter()
                .all(|e| e.value.as_deref() != Some("etl") || e.name.is_empty()),
            "no plaintext secrets"
        );
        assert!(
            find(vault::KEYRING_ENV).is_none(),
            "no sealed value: no keyring"
        );
    }

    #[test]
    fn only_a_step_whose_connections_hold_sealed_values_gets_the_keyring() {
        let sealed = YAML.replace(
            "password: {secretKeyRef: {name: db-credentials, key: password}}",
            "password: {sealed: \"sqx1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"}",
        );
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: &sealed,
        }]);
        assert!(report.is_valid(), "{:?}", report.problems);
        let plan = &report.plans["orders"];
        let pipeline = report.bundle.pipeline("orders").expect("pipeline");
        let run = run();
        let pods = PodDefaults::default();
        let env_with = |default_image: &str| {
            let job = first_attempt(&run, &pipeline.spec, plan, default_image, &pods).build();
            let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
            pod.containers[0].env.clone().unwrap_or_default()
        };
        // The Pipeline's own image is not the operator's: no keyring for it.
        let env = env_with("ghcr.io/synqx/synqx:0.1.0");
        assert!(env.iter().all(|e| e.name != vault::KEYRING_ENV));
        let env = env_with("registry.example.com/synqx:1.2.3");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == vault::NAMESPACE_ENV).count(),
            1,
            "{names:?}"
        );
        let keyring = env
            .iter()
            .find(|e| e.name == vault::KEYRING_ENV)
            .and_then(|e| e.value_from.clone())
            .and_then(|v| v.secret_key_ref);
        assert_eq!(
            keyring.map(|r| (r.name, r.key)),
            Some(("synqx-vault".to_string(), "keyring".to_string()))
        );
    }

    #[test]
    fn a_refused_attempt_is_a_job_that_never_makes_a_pod_and_says_why() {
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: YAML,
        }]);
        let plan = &report.plans["orders"];
        let pipeline = report.bundle.pipeline("orders").expect("pipeline");
        let run = run();
        let pods = PodDefaults::default();
        let step_job = |lend_ambient_credentials| StepJob {
            lend_ambient_credentials,
            ..first_attempt(
                &run,
                &pipeline.spec,
                plan,
                "ghcr.io/synqx/synqx:0.1.0",
                &pods,
            )
        };
        let env_names = |job: &Job| -> Vec<String> {
            let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            pod.map(|p| p.containers[0].env.clone().unwrap_or_default())
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        let lending = step_job(true).build();
        assert!(env_names(&lending).contains(&AMBIENT_CREDENTIALS_ENV.to_string()));
        assert!(
            !env_names(&step_job(false).build()).contains(&AMBIENT_CREDENTIALS_ENV.to_string())
        );

        let job = refused(step_job(false).build(), "Connection \"db\": no");
        assert_eq!(
            job.metadata.name,
            Some(names::job_name("orders-1", "uid-1", "extract", 1))
        );
        assert_eq!(
            start_failure::recorded(&job).as_deref(),
            Some("the operator refused to start this step: Connection \"db\": no")
        );
        let spec = job.spec.clone().expect("spec");
        assert_eq!(
            (spec.parallelism, spec.active_deadline_seconds),
            (Some(0), Some(1))
        );
        let names = env_names(&job);
        assert!(
            names.iter().all(|n| !n.starts_with("SYNQX_SECRET_")),
            "{names:?}"
        );
    }
}
