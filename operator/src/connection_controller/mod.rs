//! The Connection controller: checks that every Secret and key a Connection references exists
//! and sealed values are well-formed, then on every change of its spec runs a short check Job
//! (`synqx check`: connect, authenticate, probe the target) and records `Ready`, or
//! `Unreachable`/`Unauthorized`/`Invalid` with the error, and when it was checked. A Secret
//! that has not opted in to Connections fails the Connection before any Job
//! ([`crate::secret_opt_in`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Secret, SecretKeySelector,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use synqx_api::Connection;
use synqx_api::apply::StatusApply;
use synqx_api::connection::CheckReport;
use synqx_api::secret::{check_sealed_format, opted_in, secret_env_name};
use synqx_api::telemetry::{CONNECTION_ENV, connection_env_value};

use crate::caches::Caches;
use crate::condition::{ConditionType, Reason, find};
use crate::context::{Operator, Settings};
use crate::error::{Error, Result, is_conflict};
use crate::event_reason::EventReason;
use crate::job::{
    DEFAULT_SERVICE_ACCOUNT, ambient_credentials_env, end_of, hardened_container, hardened_pod,
    owned_by,
};
use crate::secret_opt_in::not_opted_in;
use crate::{names, step_pod, termination, vault};
use status::{Verdict, connection_status, says};

mod status;

const CONTROLLER: &str = "connection";
/// The field manager of everything the Connection controller writes in a Connection's status.
pub const FIELD_MANAGER: &str = "synqx-connection-controller";
pub const LABEL_CONNECTION: &str = "synqx.io/connection";
/// A check that takes longer than this is reported `Unreachable`.
const CHECK_DEADLINE_SECONDS: i64 = 60;

pub async fn reconcile(connection: Arc<Connection>, ctx: Arc<Operator>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&connection, &ctx))
        .await
}

pub fn error_policy(connection: Arc<Connection>, error: &Error, ctx: Arc<Operator>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        &connection.name_any(),
        error,
        Duration::from_secs(5),
    )
}

async fn reconcile_inner(connection: &Connection, ctx: &Operator) -> Result<Action> {
    let namespace = connection.namespace().unwrap_or_default();
    let name = connection.name_any();
    let generation = connection.metadata.generation.unwrap_or(0);
    let status = connection.status.clone().unwrap_or_default();
    let connections: Api<Connection> = Api::namespaced(ctx.client.clone(), &namespace);
    let kind = connection
        .spec
        .kind()
        .map(|k| format!("{k:?}").to_lowercase());
    let view = View {
        ctx,
        api: &connections,
        connection,
        status: &status,
        kind,
    };

    // Every namespace with a Connection has a vault, so `synqx seal` finds its public key.
    match ctx.vaults.ensure(&ctx.client, &namespace).await {
        Ok(()) => {}
        Err(error @ Error::Vault { .. }) if vault::needs_keyring(&connection.spec) => {
            view.set(false, Reason::Invalid, &error.to_string(), false)
                .await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Err(error @ Error::Vault { .. }) => {
            tracing::warn!(%namespace, %error, "the vault cannot be read; Connections without sealed values are not affected");
        }
        Err(error) => return Err(error),
    }
    if let Err((reason, problem)) = references(connection, ctx, &namespace).await? {
        view.set(false, reason, &problem, false).await?;
        return Ok(match reason {
            // A Secret created or labeled later fixes it: look again, Secrets are not watched.
            Reason::SecretNotFound | Reason::SecretNotLabeled => {
                Action::requeue(Duration::from_secs(30))
            }
            // Only a new spec fixes the others.
            _ => Action::await_change(),
        });
    }
    // A verdict for this generation, from its check Job or a spec that cannot be checked.
    let checked = status.observed_generation == Some(generation)
        && find(&status.conditions, ConditionType::Ready).is_some_and(|c| {
            ![
                Reason::Checking,
                Reason::SecretNotFound,
                Reason::SecretNotLabeled,
            ]
            .iter()
            .any(|r| c.reason == r.as_str())
        });
    if checked {
        return Ok(Action::await_change());
    }

    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = connection.metadata.uid.clone().unwrap_or_default();
    let job_name = names::check_job_name(&name, &uid, generation);
    // From the cache: a check Job created a moment ago and not cached yet answers 409 below.
    let cached = Caches::get(&ctx.caches.jobs, &namespace, &job_name);
    if let Some(job) = cached.as_ref().filter(|job| !owned_by(job, &uid)) {
        return Err(Error::NameTaken {
            kind: "Job",
            name: job.name_any(),
        });
    }
    let Some(job) = cached else {
        // The spec travels with the pod, which holds no Kubernetes credentials to read it;
        // one that cannot is a problem of the spec, which only a new spec fixes.
        let spec = match connection_env_value(&name, &connection.spec) {
            Ok(spec) => spec,
            Err(problem) => {
                view.set(false, Reason::Invalid, &problem.to_string(), false)
                    .await?;
                return Ok(Action::await_change());
            }
        };
        let job = check_job(connection, &job_name, &spec, &ctx.settings);
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // Ours when it is controlled by this Connection, read on the next pass.
            Err(error) if is_conflict(&error) => {}
            Err(error) => return Err(error.into()),
        }
        let message = format!("check Job {job_name} started");
        view.set(false, Reason::Checking, &message, false).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let Some(ended) = end_of(&job) else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    // A check Job that ended without a report (killed, or a runner that died) failed; one
    // past its deadline could not reach the system in time.
    let (ready, reason, message) = match report_of(ctx, &namespace, &job_name).await? {
        Some(report) => (
            report.ready,
            Reason::of_check(report.reason),
            report.message,
        ),
        None => {
            let reason = if ended.reason.as_deref() == Some("DeadlineExceeded") {
                Reason::Unreachable
            } else {
                Reason::CheckFailed
            };
            let message = format!(
                "the check Job {job_name} ended without a report: {}",
                ended.message.clone().unwrap_or_default()
            );
            (false, reason, message)
        }
    };
    view.set(ready, reason, &message, true).await?;
    Ok(Action::await_change())
}

/// Every `secretKeyRef` names an existing Secret and key; every sealed value is well-formed.
async fn references(
    connection: &Connection,
    ctx: &Operator,
    namespace: &str,
) -> Result<Result<(), (Reason, String)>> {
    if connection.spec.kind().is_none() {
        return Ok(Err((
            Reason::Invalid,
            "exactly one connector block must be set".into(),
        )));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for (field, value) in connection.spec.secret_values() {
        if let Some(sealed) = &value.sealed
            && let Err(problem) = check_sealed_format(sealed)
        {
            return Ok(Err((Reason::Invalid, format!("{field}: {problem}"))));
        }
        let Some(reference) = &value.secret_key_ref else {
            continue;
        };
        let Some(secret) = secrets.get_opt(&reference.name).await? else {
            return Ok(Err((
                Reason::SecretNotFound,
                format!(
                    "{field}: Secret \"{}\" does not exist in namespace {namespace}; create it or fix secretKeyRef.name",
                    reference.name
                ),
            )));
        };
        // Before anything else about it, even its keys: a Secret that has not opted in is
        // none of the Connection's business.
        if !opted_in(secret.metadata.labels.as_ref()) {
            return Ok(Err((
                Reason::SecretNotLabeled,
                not_opted_in(&field, &reference.name),
            )));
        }
        let has_key = secret
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(&reference.key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(&reference.key));
        if !has_key {
            let mut keys: Vec<String> = secret.data.unwrap_or_default().into_keys().collect();
            keys.sort();
            return Ok(Err((
                Reason::SecretNotFound,
                format!(
                    "{field}: Secret \"{}\" has no key \"{}\" (keys: {})",
                    reference.name,
                    reference.key,
                    keys.join(", ")
                ),
            )));
        }
    }
    Ok(Ok(()))
}

/// A Connection being reconciled, and where its status goes.
struct View<'a> {
    ctx: &'a Operator,
    api: &'a Api<Connection>,
    connection: &'a Connection,
    status: &'a synqx_api::connection::ConnectionStatus,
    kind: Option<String>,
}

impl View<'_> {
    /// Records the `Ready` condition (and `lastChecked` after a check), with an Event when
    /// the verdict changed.
    async fn set(&self, ready: bool, reason: Reason, message: &str, checked: bool) -> Result<()> {
        let connection = self.connection;
        let generation = connection.metadata.generation;
        let verdict = Verdict {
            ready,
            reason,
            message,
            checked,
        };
        if says(self.status, generation, &verdict) {
            return Ok(());
        }
        let status = connection_status(
            self.status,
            self.kind.clone(),
            generation,
            &verdict,
            Utc::now(),
        );
        let body = StatusApply::of::<Connection>(status);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch_status(&connection.name_any(), &params, &Patch::Apply(&body))
            .await?;
        if reason != Reason::Checking {
            let note = message.to_string();
            self.ctx.event(
                &connection.object_ref(&()),
                !ready,
                EventReason::Condition(reason),
                note,
            );
        }
        Ok(())
    }
}

/// The report the check pod left as its termination message, if it left one.
async fn report_of(ctx: &Operator, namespace: &str, job: &str) -> Result<Option<CheckReport>> {
    let ended = termination::of_job(ctx, namespace, job).await?;
    Ok(ended.and_then(|t| serde_json::from_str::<CheckReport>(&t.message).ok()))
}

/// The check Job of `connection`, with `spec`, its [`connection_env_value`], in the
/// environment.
fn check_job(connection: &Connection, name: &str, spec: &str, settings: &Settings) -> Job {
    let namespace = connection.namespace().unwrap_or_default();
    let connection_name = connection.name_any();
    let labels = [
        (LABEL_CONNECTION.to_string(), names::fit(&connection_name)),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "synqx-operator".to_string(),
        ),
    ];
    let env: Vec<EnvVar> = connection
        .spec
        .secret_values()
        .into_iter()
        .filter_map(|(_, value)| value.secret_key_ref.clone())
        .map(|r| EnvVar {
            name: secret_env_name(&r.name, &r.key),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name,
                    key: r.key,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let mut env = env;
    env.push(EnvVar {
        name: CONNECTION_ENV.into(),
        value: Some(spec.to_string()),
        ..Default::default()
    });
    if vault::needs_keyring(&connection.spec) {
        env.extend(vault::keyring_env());
    }
    if settings.policy.allow_ambient_credentials {
        env.push(ambient_credentials_env());
    }
    let mut container = Container {
        name: "check".into(),
        image: Some(settings.runner_image.clone()),
        command: Some(vec!["synqx".into()]),
        args: Some(vec![
            "check".into(),
            "--namespace".into(),
            namespace.clone(),
            "--connection".into(),
            connection_name,
        ]),
        env: Some(env),
        ..hardened_container()
    };
    let mut pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
        ..hardened_pod()
    };
    step_pod::add_scratch(&mut pod, &mut container, &settings.pods);
    // A check reports through its termination message only: no token at all.
    step_pod::add_gateway(&mut pod, &mut container, None);
    pod.containers = vec![container];
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace),
            labels: Some(labels.clone().into()),
            owner_references: connection.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(CHECK_DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.into()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}
