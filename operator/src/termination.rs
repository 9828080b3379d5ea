//! What a Job's pod said when its container ended: the exit code and the termination
//! message, where step and check pods leave their JSON reports.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use crate::context::Operator;
use crate::error::Result;

/// How a Job's container ended.
pub struct Termination {
    pub exit_code: i32,
    /// The termination message, empty when there is none.
    pub message: String,
}

/// The termination of the first ended container among the Job's pods, if any. The pods come
/// from the cache; only when it holds no ended container for a Job that ended (its pod's
/// last update not seen yet) are they read from the API server, since a report missed here
/// is never read again.
pub async fn of_job(ctx: &Operator, namespace: &str, job: &str) -> Result<Option<Termination>> {
    let cached = ctx.caches.pods_of(namespace, job);
    if let Some(ended) = cached.iter().find_map(|pod| ended(pod)) {
        return Ok(Some(ended));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?;
    tracing::debug!(job, "the pod cache held no ended container; read the pods");
    Ok(list.items.iter().find_map(ended))
}

fn ended(pod: &Pod) -> Option<Termination> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            Some(Termination {
                exit_code: terminated.exit_code,
                message: terminated.message.clone().unwrap_or_default(),
            })
        })
}
