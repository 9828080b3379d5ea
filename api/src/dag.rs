//! The DAG compiler: turns a Pipeline's steps into an immutable, hashed plan of parallel layers.
//!
//! Edges come from `dependsOn` and from lineage: a step whose source asset (connection + FQN)
//! is another step's destination runs after it. Layers are longest-path levels, so every edge
//! points to a later layer and a layer's steps can run at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionSpec;
use crate::pipeline::{Asset, PipelineSpec, Step};

/// Why an edge exists.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EdgeKind {
    /// Declared in `dependsOn`.
    DependsOn,
    /// The downstream step reads an asset the upstream step writes.
    Lineage { connection: String, fqn: String },
}

/// A dependency between two steps: `to` starts after `from` succeeded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
}

/// A step with its place in the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The step as declared.
    pub step: Step,
    /// Index of its parallel layer, from 0.
    pub layer: usize,
    /// Steps it waits for, sorted by name.
    pub upstream: Vec<String>,
}

/// A compiled pipeline: what the operator stores in a ControllerRevision and a run pins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Steps in topological order (by layer, then name).
    pub steps: Vec<PlannedStep>,
    /// Every edge, sorted by (from, to).
    pub edges: Vec<Edge>,
    /// Step names of each layer, sorted by name.
    pub layers: Vec<Vec<String>>,
    /// The longest dependency chain, upstream first.
    pub critical_path: Vec<String>,
    /// Connection specs the steps use, by name (secret references only, never values).
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// SHA-256 (hex) of the canonical JSON of steps and connections.
    pub hash: String,
}

impl Plan {
    /// The planned step with this name.
    pub fn step(&self, name: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.step.name == name)
    }

    /// Step names in execution order.
    pub fn order(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.step.name.as_str())
    }

    /// The short hash shown to users (first 12 hex digits).
    pub fn short_hash(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }
}

/// A reason a pipeline's steps do not form a DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DagError {
    /// The pipeline has no steps.
    Empty,
    /// Two or more steps share a name.
    DuplicateStep { name: String, count: usize },
    /// `dependsOn` names a step that does not exist.
    UnknownDependency {
        step: String,
        target: String,
        known: Vec<String>,
    },
    /// A step lists itself in `dependsOn`.
    SelfDependency { step: String },
    /// A cycle, as a closed path: `[a, b, c, a]`.
    Cycle { path: Vec<String> },
}

impl DagError {
    /// The step the problem is about, if one.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::UnknownDependency { step, .. } | Self::SelfDependency { step } => Some(step),
            Self::DuplicateStep { name, .. } => Some(name),
            Self::Empty | Self::Cycle { .. } => None,
        }
    }
}

impl fmt::Display for DagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("pipeline has no steps (add at least one under spec.steps)"),
            Self::DuplicateStep { name, count } => {
                write!(
                    f,
                    "step name \"{name}\" is used by {count} steps (names must be unique)"
                )
            }
            Self::UnknownDependency { target, known, .. } => write!(
                f,
                "dependsOn \"{target}\" does not exist (steps: {})",
                known.join(", ")
            ),
            Self::SelfDependency { step } => {
                write!(f, "dependsOn lists the step itself (\"{step}\")")
            }
            Self::Cycle { path } => write!(f, "dependency cycle: {}", path.join(" -> ")),
        }
    }
}

/// Compiles a pipeline into a plan. `connections` holds the specs of the Connections the steps
/// name, when known; they are embedded in the plan and its hash. Returns every problem found.
pub fn compile(
    spec: &PipelineSpec,
    connections: &BTreeMap<String, ConnectionSpec>,
) -> Result<Plan, Vec<DagError>> {
    let steps = &spec.steps;
    if steps.is_empty() {
        return Err(vec![DagError::Empty]);
    }
    let mut errors = Vec::new();

    let mut index: HashMap<&str, usize> = HashMap::with_capacity(steps.len());
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        index.entry(step.name.as_str()).or_insert(i);
        *counts.entry(step.name.as_str()).or_default() += 1;
    }
    for (name, count) in &counts {
        if *count > 1 {
            errors.push(DagError::DuplicateStep {
                name: name.to_string(),
                count: *count,
            });
        }
    }

    let mut edges: Vec<(usize, usize, EdgeKind)> = Vec::new();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for (to, step) in steps.iter().enumerate() {
        for target in &step.depends_on {
            if *target == step.name {
                errors.push(DagError::SelfDependency {
                    step: step.name.clone(),
                });
                continue;
            }
            match index.get(target.as_str()) {
                Some(&from) => {
                    if seen.insert((from, to)) {
                        edges.push((from, to, EdgeKind::DependsOn));
                    }
                }
                None => errors.push(DagError::UnknownDependency {
                    step: step.name.clone(),
                    target: target.clone(),
                    known: counts.keys().map(|s| s.to_string()).collect(),
                }),
            }
        }
    }
    for (from, to, kind) in lineage_edges(steps) {
        if seen.insert((from, to)) {
            edges.push((from, to, kind));
        }
    }

    let layer_of = match layers(steps.len(), &edges) {
        Ok(layer_of) => layer_of,
        Err(cycles) => {
            errors.extend(cycles.into_iter().map(|c| DagError::Cycle {
                path: c.into_iter().map(|i| steps[i].name.clone()).collect(),
            }));
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(assemble(spec, connections, edges, &layer_of))
}

/// Builds the plan from a valid, acyclic edge set.
fn assemble(
    spec: &PipelineSpec,
    connections: &BTreeMap<String, ConnectionSpec>,
    mut edges: Vec<(usize, usize, EdgeKind)>,
    layer_of: &[usize],
) -> Plan {
    let steps = &spec.steps;
    let name = |i: usize| steps[i].name.clone();
    let layer_count = layer_of.iter().max().map_or(0, |m| m + 1);

    let mut upstream: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    for (from, to, _) in &edges {
        upstream[*to].push(name(*from));
    }
    let mut layers: Vec<Vec<String>> = vec![Vec::new(); layer_count];
    for (i, layer) in layer_of.iter().enumerate() {
        layers[*layer].push(name(i));
    }
    layers.iter_mut().for_each(|l| l.sort_unstable());

    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by(|a, b| {
        layer_of[*a]
            .cmp(&layer_of[*b])
            .then_with(|| steps[*a].name.cmp(&steps[*b].name))
    });
    let planned = order
        .iter()
        .map(|&i| {
            let mut up = std::mem::take(&mut upstream[i]);
            up.sort_unstable();
            PlannedStep {
                step: steps[i].clone(),
                layer: layer_of[i],
                upstream: up,
            }
        })
        .collect();

    let critical_path = critical_path(steps.len(), &edges, layer_of)
        .into_iter()
        .map(name)
        .collect();
    edges.sort_by(|a, b| {
        (&steps[a.0].name, &steps[a.1].name).cmp(&(&steps[b.0].name, &steps[b.1].name))
    });
    let edges = edges
        .into_iter()
        .map(|(from, to, kind)| Edge {
            from: name(from),
            to: name(to),
            kind,
        })
        .collect();

    let used: BTreeMap<String, ConnectionSpec> = steps
        .iter()
        .flat_map(|s| s.connections())
        .filter_map(|c| connections.get(c).map(|spec| (c.to_string(), spec.clone())))
        .collect();
    let hash = plan_hash(steps, &used);
    Plan {
        steps: planned,
        edges,
        layers,
        critical_path,
        connections: used,
        hash,
    }
}

/// SHA-256 over canonical JSON (object keys sorted, steps sorted by name), so neither map
/// order in the YAML nor the order of the step list changes it.
pub fn plan_hash(steps: &[Step], connections: &BTreeMap<String, ConnectionSpec>) -> String {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let doc = serde_json::json!({ "steps": sorted, "connections": connections });
    let mut canonical = String::with_capacity(256 * steps.len());
    write_canonical(&doc, &mut canonical);
    let sum = digest(&SHA256, canonical.as_bytes());
    sum.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes JSON with object keys in sorted order, whatever the map implementation keeps.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Longest-path layer of every node (Kahn's algorithm), or the cycles when there are any.
fn layers(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Result<Vec<usize>, Vec<Vec<usize>>> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (from, to, _) in edges {
        out[*from].push(*to);
        indegree[*to] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut done = 0;
    while let Some(node) = ready.pop() {
        done += 1;
        for &next in &out[node] {
            layer[next] = layer[next].max(layer[node] + 1);
            indegree[next] -= 1;
            if indegree[next] == 0 {
                ready.push(next);
            }
        }
    }
    if done == n {
        Ok(layer)
    } else {
        Err(find_cycles(n, edges))
    }
}

/// One closed path per strongly connected component that contains a cycle.
fn find_cycles(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Vec<Vec<usize>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(n, edges.len());
    let nodes: Vec<NodeIndex> = (0..n).map(|i| graph.add_node(i)).collect();
    for (from, to, _) in edges {
        graph.add_edge(nodes[*from], nodes[*to], ());
    }
    let mut cycles: Vec<Vec<usize>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            let start = scc
                .iter()
                .copied()
                .min_by_key(|n| n.index())
                .unwrap_or(scc[0]);
            cycle_through(&graph, &members, start)
                .into_iter()
                .map(|n| graph[n])
                .collect()
        })
        .collect();
    cycles.sort();
    cycles
}

/// A shortest cycle through `start` inside one strongly connected component (breadth-first,
/// so the path printed to users is as short as the graph allows).
fn cycle_through(
    graph: &DiGraph<usize, ()>,
    members: &HashSet<NodeIndex>,
    start: NodeIndex,
) -> Vec<NodeIndex> {
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph
            .neighbors(node)
            .filter(|n| members.contains(n))
            .collect();
        next.sort_by_key(|n| n.index());
        for succ in next {
            if succ == start {
                let mut path = vec![start, node];
                let mut cur = node;
                while cur != start {
                    cur = parent[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if succ != start && !parent.contains_key(&succ) {
                parent.insert(succ, node);
                queue.push_back(succ);
            }
        }
    }
    vec![start, start]
}

/// A longest chain of steps, upstream first.
fn critical_path(n: usize, edges: &[(usize, usize, EdgeKind)], layer_of: &[usize]) -> Vec<usize> {
    let Some(mut node) = (0..n).max_by_key(|&i| (layer_of[i], std::cmp::Reverse(i))) else {
        return Vec::new();
    };
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (from, to, _) in edges {
        preds[*to].push(*from);
    }
    let mut path = vec![node];
    while layer_of[node] > 0 {
        let Some(&prev) = preds[node]
            .iter()
            .filter(|&&p| layer_of[p] + 1 == layer_of[node])
            .min()
        else {
            break;
        };
        path.push(prev);
        node = prev;
    }
    path.reverse();
    path
}

/// Where an asset sits, for lineage matching.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AssetKey {
    connection: String,
    /// Tables: the lower-cased name. Paths: the literal part before any glob character.
    prefix: String,
    /// A folder (`raw/orders/`) or glob (`raw/*.csv`): it covers every path below its prefix.
    covers_below: bool,
}

impl AssetKey {
    fn new(connection: &str, asset: &Asset) -> Self {
        let fqn = asset.fqn.trim();
        let is_path = fqn.contains('/') || fqn.contains(['*', '?', '[']);
        if !is_path {
            return Self {
                connection: connection.to_string(),
                prefix: fqn.to_ascii_lowercase(),
                covers_below: false,
            };
        }
        let fqn = fqn.trim_start_matches("./");
        match fqn.find(['*', '?', '[']) {
            Some(glob) => Self {
                connection: connection.to_string(),
                prefix: fqn[..glob].to_string(),
                covers_below: true,
            },
            None => Self {
                connection: connection.to_string(),
                prefix: fqn.to_string(),
                covers_below: fqn.ends_with('/'),
            },
        }
    }
}

/// Edges from each step that writes an asset to each step that reads it.
fn lineage_edges(steps: &[Step]) -> Vec<(usize, usize, EdgeKind)> {
    let mut writers: BTreeMap<AssetKey, Vec<usize>> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(sync) = &step.sync {
            let d = &sync.destination;
            writers
                .entry(AssetKey::new(&d.connection, &d.asset))
                .or_default()
                .push(i);
        }
    }
    // Folders and globs written are few; readers inside them are found by their prefixes.
    let covering_writers: Vec<(&AssetKey, &Vec<usize>)> =
        writers.iter().filter(|(k, _)| k.covers_below).collect();

    let mut out = Vec::new();
    for (to, step) in steps.iter().enumerate() {
        let Some(sync) = &step.sync else { continue };
        let s = &sync.source;
        let reader = AssetKey::new(&s.connection, &s.asset);
        let mut add = |froms: &Vec<usize>| {
            for &from in froms {
                if from != to {
                    out.push((
                        from,
                        to,
                        EdgeKind::Lineage {
                            connection: s.connection.clone(),
                            fqn: s.asset.fqn.clone(),
                        },
                    ));
                }
            }
        };
        if reader.covers_below {
            // Every writer at or below the reader's prefix.
            let start = AssetKey {
                connection: reader.connection.clone(),
                prefix: reader.prefix.clone(),
                covers_below: false,
            };
            for (key, froms) in writers.range(start..) {
                if key.connection != reader.connection || !key.prefix.starts_with(&reader.prefix) {
                    break;
                }
                add(froms);
            }
        } else if let Some(froms) = writers.get(&reader) {
            add(froms);
        }
        for (key, froms) in &covering_writers {
            // Duplicates with the range above are removed by the caller.
            if key.connection == reader.connection && reader.prefix.starts_with(&key.prefix) {
                add(froms);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
