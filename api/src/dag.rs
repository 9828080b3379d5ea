//! The DAG compiler: turns a Pipeline's steps into an immutable, hashed plan of parallel layers.
//!
//! Edges come from `dependsOn` and from lineage: a step whose source asset (connection + FQN)
//! is another step's destination runs after it. Layers are longest-path levels, so every edge
//! points to a later layer and a layer's steps can run at once.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

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

    // Every "sorted by name" below goes through integer ranks: one string sort in all.
    let mut by_name: Vec<usize> = (0..steps.len()).collect();
    by_name.sort_unstable_by(|a, b| steps[*a].name.cmp(&steps[*b].name));
    let mut rank = vec![0usize; steps.len()];
    for (r, &i) in by_name.iter().enumerate() {
        rank[i] = r;
    }

    edges.sort_unstable_by_key(|(from, to, _)| (rank[*from], rank[*to]));
    let mut upstream: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    for (from, to, _) in &edges {
        upstream[*to].push(name(*from));
    }
    let mut layers: Vec<Vec<String>> = vec![Vec::new(); layer_count];
    for &i in &by_name {
        layers[layer_of[i]].push(name(i));
    }

    let mut order = by_name;
    order.sort_by_key(|&i| layer_of[i]);
    let planned = order
        .iter()
        .map(|&i| PlannedStep {
            step: steps[i].clone(),
            layer: layer_of[i],
            upstream: std::mem::take(&mut upstream[i]),
        })
        .collect();

    let critical_path = critical_path(steps.len(), &edges, layer_of)
        .into_iter()
        .map(name)
        .collect();
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

/// SHA-256 over canonical JSON of the steps (sorted by name) and the Connections they use, so
/// neither map order in the YAML nor the order of the step list changes it. The JSON is
/// canonical because every map in the types is a `BTreeMap` (keys sorted) and struct fields
/// serialize in declaration order; it streams into the digest without an intermediate string.
pub fn plan_hash(steps: &[Step], connections: &BTreeMap<String, ConnectionSpec>) -> String {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    #[derive(Serialize)]
    struct Canonical<'a> {
        connections: &'a BTreeMap<String, ConnectionSpec>,
        steps: Vec<&'a Step>,
    }
    let mut writer = DigestWriter(Context::new(&SHA256));
    // Writing into a digest cannot fail, and every value here serializes.
    if serde_json::to_writer(
        &mut writer,
        &Canonical {
            connections,
            steps: sorted,
        },
    )
    .is_err()
    {
        return String::new();
    }
    let sum = writer.0.finish();
    let mut hex = String::with_capacity(64);
    for b in sum.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 15)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An `io::Write` that feeds a SHA-256 context.
struct DigestWriter(Context);

impl std::io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
struct AssetKey<'a> {
    connection: &'a str,
    /// Tables: the lower-cased name. Paths: the literal part before any glob character.
    prefix: Cow<'a, str>,
    /// A folder (`raw/orders/`) or glob (`raw/*.csv`): it covers every path below its prefix.
    covers_below: bool,
}

impl<'a> AssetKey<'a> {
    fn new(connection: &'a str, asset: &'a Asset) -> Self {
        let fqn = asset.fqn.trim();
        if !fqn.contains(['/', '*', '?', '[']) {
            let prefix = if fqn.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(fqn.to_ascii_lowercase())
            } else {
                Cow::Borrowed(fqn)
            };
            return Self {
                connection,
                prefix,
                covers_below: false,
            };
        }
        let fqn = fqn.trim_start_matches("./");
        match fqn.find(['*', '?', '[']) {
            Some(glob) => Self {
                connection,
                prefix: Cow::Borrowed(&fqn[..glob]),
                covers_below: true,
            },
            None => Self {
                connection,
                prefix: Cow::Borrowed(fqn),
                covers_below: fqn.ends_with('/'),
            },
        }
    }
}

/// Edges from each step that writes an asset to each step that reads it.
fn lineage_edges(steps: &[Step]) -> Vec<(usize, usize, EdgeKind)> {
    let mut writers: HashMap<AssetKey<'_>, Vec<usize>> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(sync) = &step.sync {
            let d = &sync.destination;
            writers
                .entry(AssetKey::new(&d.connection, &d.asset))
                .or_default()
                .push(i);
        }
    }
    // Writers sorted by key, for readers that cover many paths (folders, globs).
    let mut sorted: Vec<(&AssetKey<'_>, &Vec<usize>)> = writers.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Folders and globs written are few; readers inside them are found by their prefixes.
    let covering: Vec<(&AssetKey<'_>, &Vec<usize>)> = sorted
        .iter()
        .copied()
        .filter(|(k, _)| k.covers_below)
        .collect();

    let mut out = Vec::new();
    for (to, step) in steps.iter().enumerate() {
        let Some(sync) = &step.sync else { continue };
        let s = &sync.source;
        let reader = AssetKey::new(&s.connection, &s.asset);
        let mut add = |froms: &Vec<usize>| {
            for &from in froms.iter().filter(|&&f| f != to) {
                let kind = EdgeKind::Lineage {
                    connection: s.connection.clone(),
                    fqn: s.asset.fqn.clone(),
                };
                out.push((from, to, kind));
            }
        };
        if reader.covers_below {
            // Every writer at or below the reader's prefix: a contiguous run of sorted keys.
            let key = (reader.connection, reader.prefix.as_ref());
            let first = sorted.partition_point(|(k, _)| (k.connection, k.prefix.as_ref()) < key);
            for (k, froms) in &sorted[first..] {
                if k.connection != reader.connection || !k.prefix.starts_with(key.1) {
                    break;
                }
                add(froms);
            }
        } else if let Some(froms) = writers.get(&reader) {
            add(froms);
        }
        for (k, froms) in &covering {
            // Duplicates with the run above are removed by the caller.
            if k.connection == reader.connection && reader.prefix.starts_with(k.prefix.as_ref()) {
                add(froms);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
