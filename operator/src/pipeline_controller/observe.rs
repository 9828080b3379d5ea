//! What a pass of the Pipeline controller reads: the Connections its steps use and its
//! runs, from the operator's caches (never a list call).

use kube::ResourceExt;
use synqx_api::{Connection, Pipeline, PipelineRun};

use super::runs::run_ended;
use crate::caches::Caches;
use crate::context::Operator;

/// The Pipeline's world as the caches hold it.
pub struct Observed {
    /// The Connections its steps name that exist.
    pub connections: Vec<Connection>,
    /// Its runs, ended or not.
    pub runs: Vec<PipelineRun>,
}

impl Observed {
    /// The runs that have not ended.
    pub fn active(&self) -> Vec<&PipelineRun> {
        self.runs.iter().filter(|r| !run_ended(r)).collect()
    }
}

pub fn observe(ctx: &Operator, pipeline: &Pipeline) -> Observed {
    let namespace = pipeline.namespace().unwrap_or_default();
    let runs = ctx
        .caches
        .runs_of(&namespace, &pipeline.name_any())
        .iter()
        .map(|r| r.as_ref().clone())
        .collect();
    Observed {
        connections: used_connections(ctx, pipeline, &namespace),
        runs,
    }
}

/// The Connections the Pipeline's steps name, as the cache holds them; a missing one is left
/// out, and compiling names it.
fn used_connections(ctx: &Operator, pipeline: &Pipeline, namespace: &str) -> Vec<Connection> {
    let used = pipeline.spec.connections();
    used.into_iter()
        .filter_map(|name| Caches::get(&ctx.caches.connections, namespace, name))
        .map(|c| c.as_ref().clone())
        .collect()
}
