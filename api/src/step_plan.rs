//! What a step's pod needs from its run's plan, handed to it in the Job's pod spec (the
//! environment variable [`STEP_PLAN_ENV`]): the step, the revision and hash of the plan it
//! belongs to, and the specs of the Connections it uses (secret references only, never
//! values). With it the pod reads nothing from the Kubernetes API to start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::connection::ConnectionSpec;
use crate::dag::{Plan, PlannedStep};

/// The environment variable that carries a step's [`StepPlan`] as JSON.
pub const STEP_PLAN_ENV: &str = "SYNQX_STEP_PLAN";

/// The longest JSON the operator puts in [`STEP_PLAN_ENV`]. Linux refuses to start a process
/// with an environment string (`NAME=value`) over 128 KiB (`MAX_ARG_STRLEN`); the rest of the
/// 128 KiB is left for the name and the `=`.
pub const MAX_STEP_PLAN_BYTES: usize = 128 * 1024 - 64;

/// One step of a compiled plan with what it needs to run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepPlan {
    /// The ControllerRevision that holds the whole plan.
    pub revision: String,
    /// The hash of the whole plan ([`Plan::hash`]).
    pub plan_hash: String,
    /// The step, its layer and upstream steps.
    pub step: PlannedStep,
    /// The specs of the Connections the step names, by name. A Connection the plan does not
    /// have is left out: the step then fails naming it, as it would with the whole plan.
    pub connections: BTreeMap<String, ConnectionSpec>,
}

/// Why a step's plan cannot travel in its pod's environment.
#[derive(Debug, thiserror::Error)]
pub enum StepPlanError {
    #[error(
        "the plan of step \"{step}\" is {size} bytes as JSON, more than the {max} bytes one environment variable of a pod can hold: shorten the step (its query, statements or transforms) or split it into steps"
    )]
    TooLarge {
        step: String,
        size: usize,
        max: usize,
    },
    #[error("the plan of step \"{step}\" cannot be written as JSON: {source}")]
    Encode {
        step: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StepPlan {
    /// The step named `step` of `plan` (stored in ControllerRevision `revision`).
    pub fn of(plan: &Plan, revision: &str, step: &str) -> Option<Self> {
        let planned = plan.step(step)?;
        let connections = planned
            .step
            .connections()
            .into_iter()
            .filter_map(|name| {
                let spec = plan.connections.get(name)?;
                Some((name.to_string(), spec.clone()))
            })
            .collect();
        Some(Self {
            revision: revision.to_string(),
            plan_hash: plan.hash.clone(),
            step: planned.clone(),
            connections,
        })
    }

    /// The value of [`STEP_PLAN_ENV`]: compact JSON of at most [`MAX_STEP_PLAN_BYTES`].
    pub fn to_env_value(&self) -> Result<String, StepPlanError> {
        let step = &self.step.step.name;
        let text = serde_json::to_string(self).map_err(|source| StepPlanError::Encode {
            step: step.clone(),
            source,
        })?;
        if text.len() > MAX_STEP_PLAN_BYTES {
            return Err(StepPlanError::TooLarge {
                step: step.clone(),
                size: text.len(),
                max: MAX_STEP_PLAN_BYTES,
            });
        }
        Ok(text)
    }

    /// Reads the value of [`STEP_PLAN_ENV`].
    pub fn from_env_value(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A plan of this one step (with the whole plan's hash), for the code that runs plans.
    pub fn into_plan(self) -> Plan {
        let name = self.step.step.name.clone();
        Plan {
            steps: vec![self.step],
            edges: Vec::new(),
            layers: vec![vec![name.clone()]],
            critical_path: vec![name],
            connections: self.connections,
            hash: self.plan_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{InputFile, validate};

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
kind: Connection
metadata: {name: unused}
spec:
  filesystem: {path: /elsewhere}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: orders}
spec:
  steps:
    - name: extract
      sync:
        source: {connection: db, asset: {fqn: public.orders}, incremental: {cursor: updated_at}}
        destination: {connection: lake, asset: {fqn: raw/orders/}, format: parquet}
    - name: stats
      dependsOn: [extract]
      sql: {connection: db, statements: ["SELECT 1"]}
"#;

    fn plan() -> Plan {
        let report = validate(&[InputFile {
            name: "orders.yaml",
            text: YAML,
        }]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        report
            .plans
            .get("orders")
            .cloned()
            .unwrap_or_else(|| panic!("the pipeline compiles"))
    }

    #[test]
    fn a_step_plan_holds_the_step_and_only_its_connections() {
        let plan = plan();
        let Some(step_plan) = StepPlan::of(&plan, "orders-5d8f", "stats") else {
            panic!("stats is planned");
        };
        assert_eq!(step_plan.revision, "orders-5d8f");
        assert_eq!(step_plan.plan_hash, plan.hash);
        assert_eq!(step_plan.step.upstream, vec!["extract".to_string()]);
        assert_eq!(step_plan.connections.keys().collect::<Vec<_>>(), vec!["db"]);
        assert_eq!(step_plan.connections.get("db"), plan.connections.get("db"));
        assert!(StepPlan::of(&plan, "orders-5d8f", "nope").is_none());
    }

    #[test]
    fn a_step_plan_goes_through_the_environment_and_runs_as_a_plan() {
        let plan = plan();
        let Some(step_plan) = StepPlan::of(&plan, "orders-5d8f", "extract") else {
            panic!("extract is planned");
        };
        let text = step_plan
            .to_env_value()
            .unwrap_or_else(|e| panic!("fits: {e}"));
        assert!(!text.contains('\n'));
        let read = StepPlan::from_env_value(&text).unwrap_or_else(|e| panic!("reads: {e}"));
        assert_eq!(read, step_plan);
        let one = read.into_plan();
        assert_eq!(one.hash, plan.hash);
        assert_eq!(one.order().collect::<Vec<_>>(), vec!["extract"]);
        assert_eq!(one.step("extract"), plan.step("extract"));
        assert_eq!(
            one.connections.keys().collect::<Vec<_>>(),
            vec!["db", "lake"]
        );
    }

    #[test]
    fn a_step_plan_too_large_for_an_environment_variable_is_refused_with_its_size() {
        let plan = plan();
        let Some(mut step_plan) = StepPlan::of(&plan, "orders-5d8f", "stats") else {
            panic!("stats is planned");
        };
        if let Some(sql) = step_plan.step.step.sql.as_mut() {
            sql.statements = vec!["SELECT 1".repeat(20_000)];
        }
        let e = step_plan
            .to_env_value()
            .err()
            .unwrap_or_else(|| panic!("160 KB of SQL does not fit"));
        let text = e.to_string();
        assert!(
            text.starts_with("the plan of step \"stats\" is 160"),
            "{text}"
        );
        assert!(text.contains(&MAX_STEP_PLAN_BYTES.to_string()), "{text}");
        assert!(text.contains("shorten the step"), "{text}");
    }
}
