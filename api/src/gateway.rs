//! The messages of the operator's gateway: what a follower of a run receives over its
//! WebSocket, as JSON text frames, each with the run's sequence number. The operator writes
//! them and `synqx runs watch` reads them; step transitions and counters come from the run's
//! status today, and the step pods' telemetry will publish the same messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Pipeline;
use crate::dag::{self, EdgeKind};
use crate::pipeline::{RunReference, Schedule, Watermark};
use crate::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus};

/// The WebSocket subprotocol of the watch route: a client offers it (besides the token's
/// `base64url.bearer.authorization.k8s.io.<token>`, when it sends the token that way) and the
/// gateway selects it.
pub const PROTOCOL: &str = "v1.watch.synqx.io";
/// The WebSocket subprotocol that carries a token (base64url, unpadded): the API server's
/// convention for clients that cannot set an `Authorization` header (browsers).
pub const BEARER_PROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";
/// Close code of a follower whose token is no longer accepted (HTTP's 401).
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code of a follower whose right to read the run was revoked (HTTP's 403).
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// One message of a run's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Position in the run's stream; resume after it with `?since=`.
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Body {
    /// The whole run as of `seq`: first on every connection that does not resume.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        /// Why a resume was not possible (`since` named no message this operator keeps):
        /// the follower must replace what it holds with this snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset: Option<Reset>,
        run: RunView,
        /// The log lines the gateway still keeps (from its last messages), by step attempt
        /// in the order they came: the tail a follower shows before new `log` messages.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<StepLog>,
    },
    /// The run's phase changed.
    #[serde(rename_all = "camelCase")]
    Run {
        from: Option<RunPhase>,
        phase: Option<RunPhase>,
        progress: Option<String>,
        completion_time: Option<String>,
        duration: Option<String>,
    },
    /// A step changed phase, attempt, Job or message: its whole status entry, counters
    /// included.
    #[serde(rename_all = "camelCase")]
    Step {
        from: Option<StepPhase>,
        step: StepStatus,
    },
    /// Counters of the steps that moved since the last counters message of the run (at
    /// most one a second per run): each a step's name, counters and watermark range
    /// ([`StepStatus::counters`]), its other fields unset.
    Counters { steps: Vec<StepStatus> },
    /// Lines a step attempt logged, in the order it wrote them.
    #[serde(rename_all = "camelCase")]
    Log {
        step: String,
        attempt: u32,
        lines: Vec<LogLine>,
    },
}

/// Lines of one step attempt's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: String,
    pub attempt: u32,
    pub lines: Vec<LogLine>,
}

/// One line of a step's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// When the step wrote it (RFC 3339).
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`; absent for text that is not an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub text: String,
}

/// Why a follower gets a fresh snapshot instead of the messages after its `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reset {
    /// `since` is older than the oldest message kept: evicted (by count or bytes; the
    /// lines are still in the run's stored log, the `logs` route), or numbered by an
    /// operator process that has restarted since (or another replica).
    NotKept,
    /// `since` is ahead of the newest message: numbered by another operator process.
    Unknown,
}

/// The run as followers see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub name: String,
    pub namespace: String,
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub status: PipelineRunStatus,
}

/// A Pipeline as the list route shows it: what a UI needs to list it and draw its graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    pub name: String,
    /// Step names, in the order of the spec.
    pub steps: Vec<String>,
    /// Steps of each parallel layer, in execution order.
    pub layers: Vec<Vec<String>>,
    /// The edges of the graph, each with the asset it carries when it comes from lineage.
    #[serde(default)]
    pub edges: Vec<EdgeView>,
    /// `True` (compiled, Connections ready), `False` (with `reason` and `message`), or
    /// absent before the first compile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunReference>,
    #[serde(default)]
    pub watermarks: BTreeMap<String, Watermark>,
}

/// The Ready condition of a Pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Why one step waits for another, as a UI draws it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    pub kind: EdgeViewKind,
    /// The asset's friendly name (the upstream step's `destination.asset.name`, else the
    /// downstream step's `source.asset.name`), or its FQN when neither names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqn: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EdgeViewKind {
    /// Declared in `dependsOn`.
    DependsOn,
    /// The downstream step reads an asset the upstream step writes.
    Lineage,
}

impl PipelineView {
    /// The view of a Pipeline object: its spec's graph, and what its status says. The graph
    /// is compiled from the spec as it is now (layers from the status when it does not
    /// compile, so an invalid Pipeline still lists).
    pub fn of(pipeline: &Pipeline) -> Self {
        let status = pipeline.status.clone().unwrap_or_default();
        let spec = &pipeline.spec;
        let (layers, edges) = match dag::compile(spec, &BTreeMap::new()) {
            Ok(plan) => {
                let edges = edges(&plan, |name| spec.steps.iter().find(|s| s.name == name));
                (plan.layers.clone(), edges)
            }
            Err(_) => (status.layers, Vec::new()),
        };
        Self {
            name: pipeline.metadata.name.clone().unwrap_or_default(),
            steps: spec.steps.iter().map(|s| s.name.clone()).collect(),
            layers,
            edges,
            ready: status
                .conditions
                .into_iter()
                .find(|c| c.r#type == "Ready")
                .map(|c| Ready {
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                }),
            schedule: spec.schedule.clone(),
            next_schedule_time: status.next_schedule_time,
            last_run: status.last_run,
            watermarks: status.watermarks,
        }
    }
}

/// The graph a run was planned with: the layers and edges of the plan its revision holds,
/// whatever its Pipeline says now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphView {
    /// The ControllerRevision of the plan.
    pub revision: String,
    /// Steps of each parallel layer, in execution order.
    pub layers: Vec<Vec<String>>,
    /// The edges, each with the asset it carries when it comes from lineage.
    pub edges: Vec<EdgeView>,
}

impl GraphView {
    /// The graph of `plan`, stored in ControllerRevision `revision`.
    pub fn of_plan(plan: &dag::Plan, revision: &str) -> Self {
        let step = |name: &str| plan.step(name).map(|p| &p.step);
        Self {
            revision: revision.to_string(),
            layers: plan.layers.clone(),
            edges: edges(plan, step),
        }
    }
}

/// The plan's edges with the friendly names of the assets they carry, from the steps `step`
/// finds by name.
pub fn edges<'a>(
    plan: &dag::Plan,
    step: impl Fn(&str) -> Option<&'a crate::pipeline::Step>,
) -> Vec<EdgeView> {
    plan.edges
        .iter()
        .map(|edge| match &edge.kind {
            EdgeKind::DependsOn => EdgeView {
                from: edge.from.clone(),
                to: edge.to.clone(),
                kind: EdgeViewKind::DependsOn,
                asset: None,
                connection: None,
                fqn: None,
            },
            EdgeKind::Lineage { connection, fqn } => {
                let written = step(&edge.from)
                    .and_then(|s| s.sync.as_ref())
                    .and_then(|s| s.destination.asset.name.clone());
                let read = step(&edge.to)
                    .and_then(|s| s.sync.as_ref())
                    .and_then(|s| s.source.asset.name.clone());
                EdgeView {
                    from: edge.from.clone(),
                    to: edge.to.clone(),
                    kind: EdgeViewKind::Lineage,
                    asset: Some(written.or(read).unwrap_or_else(|| fqn.clone())),
                    connection: Some(connection.clone()),
                    fqn: Some(fqn.clone()),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written() {
        let messages = [
            Message {
                seq: 1_764_650_000_000_001,
                body: Body::Snapshot {
                    logs: Vec::new(),
                    reset: Some(Reset::NotKept),
                    run: RunView {
                        name: "orders-1".into(),
                        namespace: "etl".into(),
                        pipeline: "orders".into(),
                        created: None,
                        status: PipelineRunStatus {
                            phase: Some(RunPhase::Running),
                            ..Default::default()
                        },
                    },
                },
            },
            Message {
                seq: 2,
                body: Body::Step {
                    from: Some(StepPhase::Running),
                    step: StepStatus {
                        name: "load".into(),
                        phase: Some(StepPhase::Succeeded),
                        rows_written: Some(500),
                        ..Default::default()
                    },
                },
            },
            Message {
                seq: 3,
                body: Body::Counters {
                    steps: vec![StepStatus {
                        name: "load".into(),
                        rows_read: Some(9),
                        ..Default::default()
                    }],
                },
            },
            Message {
                seq: 4,
                body: Body::Log {
                    step: "load".into(),
                    attempt: 1,
                    lines: vec![LogLine {
                        time: "2026-12-02T07:30:00.000Z".into(),
                        level: Some("INFO".into()),
                        text: "loaded 500 rows".into(),
                    }],
                },
            },
        ];
        for message in messages {
            let json = serde_json::to_string(&message).unwrap_or_default();
            let back: Result<Message, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(message), "{json}");
        }
        let json = r#"{"seq":2,"type":"step","from":"Running","step":{"name":"load","phase":"Succeeded","rowsWritten":500}}"#;
        let read: Result<Message, _> = serde_json::from_str(json);
        assert!(read.is_ok(), "{read:?}");
    }

    #[test]
    fn edges_carry_the_friendly_name_of_their_asset() {
        let yaml = "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n  steps:\n    - {name: extract, sync: {source: {connection: api, asset: {fqn: orders}}, destination: {connection: lake, asset: {name: Raw orders, fqn: raw/orders/}}}}\n    - {name: load, sync: {source: {connection: lake, asset: {fqn: raw/orders/}}, destination: {connection: db, asset: {fqn: orders}}}}\n    - {name: stats, dependsOn: [load], sql: {connection: db, statements: [\"select 1\"]}}\n";
        let pipeline: Pipeline = match serde_yaml::from_str(yaml) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let view = PipelineView::of(&pipeline);
        assert_eq!(view.layers, [["extract"], ["load"], ["stats"]]);
        let found: Vec<(&str, &str, EdgeViewKind, Option<&str>)> = view
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind, e.asset.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("extract", "load", EdgeViewKind::Lineage, Some("Raw orders")),
                ("load", "stats", EdgeViewKind::DependsOn, None),
            ]
        );
    }

    #[test]
    fn a_runs_graph_is_its_pinned_plans_whatever_the_pipeline_says_now() {
        let yaml = "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n  steps:\n    - {name: extract, sync: {source: {connection: api, asset: {fqn: orders}}, destination: {connection: lake, asset: {name: Raw orders, fqn: raw/orders/}}}}\n    - {name: load, sync: {source: {connection: lake, asset: {fqn: raw/orders/}}, destination: {connection: db, asset: {fqn: orders}}}}\n";
        let mut pipeline: Pipeline = match serde_yaml::from_str(yaml) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let pinned = match dag::compile(&pipeline.spec, &BTreeMap::new()) {
            Ok(plan) => plan,
            Err(e) => panic!("{e:?}"),
        };
        // The Pipeline changes after the run pinned its plan: a step is renamed.
        pipeline.spec.steps[1].name = "load-mart".into();
        let now = PipelineView::of(&pipeline);
        assert_eq!(now.layers, [["extract"], ["load-mart"]]);

        let graph = GraphView::of_plan(&pinned, "p-5d8f");
        assert_eq!(graph.revision, "p-5d8f");
        assert_eq!(graph.layers, [["extract"], ["load"]]);
        let found: Vec<(&str, &str, Option<&str>)> = graph
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.asset.as_deref()))
            .collect();
        assert_eq!(found, [("extract", "load", Some("Raw orders"))]);
    }
}
