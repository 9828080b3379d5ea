//! The run's plan, as the operator gave it to the pod: the step chosen by name and its
//! Connections opened from the specs the plan embeds.

use std::path::Path;

use synqx_api::dag::Plan;
use synqx_api::pipeline::Step;

use super::error::PlanError;
use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// The step named `step` of the plan, or an error listing the plan's steps.
pub fn choose_step<'p>(plan: &'p Plan, run: &str, step: &str) -> Result<&'p Step, PlanError> {
    if let Some(planned) = plan.step(step) {
        return Ok(&planned.step);
    }
    let names: Vec<&str> = plan.order().collect();
    Err(PlanError::NoStep {
        run: run.to_string(),
        step: step.to_string(),
        steps: names.join(", "),
    })
}

/// A Connection of the plan, opened for `step`: relative paths start at `work_dir` and secret
/// values come from `secrets`.
pub fn plan_connection<'a>(
    plan: &'a Plan,
    name: &str,
    step: &str,
    secrets: &'a Secrets,
    work_dir: &Path,
) -> Result<ConnectionRef<'a>> {
    let Some((name, spec)) = plan.connections.get_key_value(name) else {
        let known: Vec<&str> = plan.connections.keys().map(String::as_str).collect();
        return Err(Error::Config(format!(
            "step \"{step}\" uses Connection \"{name}\", which is not in the run's plan (connections: {}): it did not exist when the Pipeline was compiled; create it, then start a new run",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    Ok(ConnectionRef {
        name,
        spec,
        base_dir: work_dir.to_path_buf(),
        secrets,
    })
}
