use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::pipeline::{Destination, Source, SqlStep, SyncStep};

fn sql(name: &str, deps: &[&str]) -> Step {
    Step {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        sql: Some(SqlStep {
            connection: "db".into(),
            statements: vec!["select 1".into()],
        }),
        ..Default::default()
    }
}

fn sync(name: &str, from: (&str, &str), to: (&str, &str)) -> Step {
    Step {
        name: name.into(),
        sync: Some(SyncStep {
            source: Source {
                connection: from.0.into(),
                asset: Asset {
                    name: None,
                    fqn: from.1.into(),
                },
                ..Default::default()
            },
            destination: Destination {
                connection: to.0.into(),
                asset: Asset {
                    name: None,
                    fqn: to.1.into(),
                },
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(steps: Vec<Step>) -> PipelineSpec {
    PipelineSpec {
        steps,
        ..Default::default()
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    match compile(&spec(steps), &BTreeMap::new()) {
        Ok(plan) => plan,
        Err(e) => panic!("expected a plan, got {e:?}"),
    }
}

fn errors(steps: Vec<Step>) -> Vec<DagError> {
    compile(&spec(steps), &BTreeMap::new())
        .err()
        .unwrap_or_default()
}

#[test]
fn layers_are_longest_path_levels() {
    let p = plan(vec![
        sql("a", &[]),
        sql("b", &["a"]),
        sql("c", &["a", "b"]),
        sql("d", &[]),
    ]);
    assert_eq!(p.layers, vec![vec!["a", "d"], vec!["b"], vec!["c"]]);
    assert_eq!(p.critical_path, vec!["a", "b", "c"]);
    assert_eq!(p.order().collect::<Vec<_>>(), vec!["a", "d", "b", "c"]);
    assert_eq!(
        p.step("c").map(|s| s.upstream.clone()),
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[test]
fn lineage_adds_edges_for_tables_and_folders() {
    let p = plan(vec![
        sync(
            "load-mart",
            ("lake", "raw/orders/*.parquet"),
            ("wh", "mart.orders"),
        ),
        sync("extract", ("wh", "public.orders"), ("lake", "raw/orders/")),
        sync(
            "report",
            ("wh", "MART.ORDERS"),
            ("lake", "reports/orders.csv"),
        ),
        sync(
            "unrelated",
            ("lake", "raw/orders_archive/x.csv"),
            ("wh", "archive"),
        ),
    ]);
    assert_eq!(
        p.layers,
        vec![
            vec!["extract", "unrelated"],
            vec!["load-mart"],
            vec!["report"]
        ]
    );
    let kinds: Vec<_> = p
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![("extract", "load-mart"), ("load-mart", "report")]
    );
    assert!(
        matches!(&p.edges[0].kind, EdgeKind::Lineage { fqn, .. } if fqn == "raw/orders/*.parquet")
    );
}

#[test]
fn lineage_finds_files_inside_written_folders() {
    let p = plan(vec![
        sync("write", ("db", "t"), ("lake", "raw/orders/")),
        sync(
            "read-one",
            ("lake", "raw/orders/part-00000.parquet"),
            ("db", "u"),
        ),
        sync("read-all", ("lake", "raw/"), ("db", "v")),
        sync("other-connection", ("lake2", "raw/orders/"), ("db", "w")),
    ]);
    assert_eq!(
        p.layers,
        vec![
            vec!["other-connection", "write"],
            vec!["read-all", "read-one"]
        ]
    );
}

#[test]
fn depends_on_and_lineage_edges_are_not_duplicated() {
    let mut reader = sync("b", ("x", "t1"), ("x", "t2"));
    reader.depends_on = vec!["a".into()];
    let p = plan(vec![sync("a", ("x", "t0"), ("x", "t1")), reader]);
    assert_eq!(p.edges.len(), 1);
    assert_eq!(p.edges[0].kind, EdgeKind::DependsOn);
}

#[test]
fn problems_are_all_reported() {
    let errs = errors(vec![
        sql("a", &["a", "ghost"]),
        sql("a", &[]),
        sql("b", &[]),
    ]);
    assert!(errs.contains(&DagError::DuplicateStep {
        name: "a".into(),
        count: 2
    }));
    assert!(errs.contains(&DagError::SelfDependency { step: "a".into() }));
    assert!(errs.iter().any(
        |e| matches!(e, DagError::UnknownDependency { target, known, .. }
        if target == "ghost" && known == &["a".to_string(), "b".to_string()])
    ));
    assert_eq!(errors(vec![]), vec![DagError::Empty]);
}

#[test]
fn cycles_are_printed_as_closed_paths() {
    let errs = errors(vec![
        sql("a", &["c"]),
        sql("b", &["a"]),
        sql("c", &["b"]),
        sql("d", &[]),
    ]);
    assert_eq!(
        errs,
        vec![DagError::Cycle {
            path: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }]
    );
    assert_eq!(errs[0].to_string(), "dependency cycle: a -> b -> c -> a");
}

#[test]
fn lineage_cycles_are_found() {
    let errs = errors(vec![
        sync("ping", ("db", "a"), ("db", "b")),
        sync("pong", ("db", "b"), ("db", "a")),
    ]);
    assert!(matches!(&errs[..], [DagError::Cycle { path }] if path.len() == 3));
}

#[test]
fn hash_ignores_step_order_and_changes_with_content() {
    let a = plan(vec![sql("a", &[]), sql("b", &["a"])]);
    // The same steps listed the other way round: the same plan, the same hash.
    let b = plan(vec![sql("b", &["a"]), sql("a", &[])]);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    // One dependency less: another plan.
    let c = plan(vec![sql("a", &[]), sql("b", &[])]);
    assert_ne!(a.hash, c.hash);
    // One statement changed: another plan.
    let mut changed = sql("b", &["a"]);
    if let Some(body) = changed.sql.as_mut() {
        body.statements = vec!["select 2".into()];
    }
    let d = plan(vec![sql("a", &[]), changed]);
    assert_ne!(a.hash, d.hash);
}

#[test]
fn hash_covers_connections_used() {
    let steps = vec![sql("a", &[])];
    let mut conns = BTreeMap::new();
    let h1 = compile(&spec(steps.clone()), &conns).map(|p| p.hash);
    conns.insert("db".to_string(), ConnectionSpec::default());
    let h2 = compile(&spec(steps.clone()), &conns).map(|p| p.hash);
    conns.insert("unused".to_string(), ConnectionSpec::default());
    let h3 = compile(&spec(steps), &conns).map(|p| p.hash);
    assert_ne!(h1, h2);
    assert_eq!(h2, h3);
}

#[test]
fn hash_ignores_map_order_in_the_yaml() {
    let yaml = |rename: &str| {
        format!(
            "steps:\n- name: a\n  sync:\n    source: {{connection: c, asset: {{fqn: x}}}}\n    transforms: [{{rename: {rename}}}]\n    destination: {{connection: c, asset: {{fqn: y}}}}\n"
        )
    };
    let parse = |text: String| -> PipelineSpec {
        let spec: PipelineSpec = serde_yaml::from_str(&text).expect("the spec parses");
        let renames = spec.steps[0]
            .sync
            .as_ref()
            .and_then(|s| s.transforms[0].rename.clone())
            .expect("a rename transform");
        assert_eq!(renames.len(), 2, "both renames were read");
        spec
    };
    let a = plan_hash(&parse(yaml("{p: q, a: b}")).steps, &BTreeMap::new());
    let b = plan_hash(&parse(yaml("{a: b, p: q}")).steps, &BTreeMap::new());
    assert_eq!(a, b);
    let other = plan_hash(&parse(yaml("{a: b, p: r}")).steps, &BTreeMap::new());
    assert_ne!(a, other, "a renamed column is another plan");
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
}

/// A random graph: `n` steps, edges given as (from, to) pairs of indices.
fn random_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (1usize..40).prop_flat_map(|n| (Just(n), proptest::collection::vec((0..n, 0..n), 0..(n * 3))))
}

fn steps_from(n: usize, edges: &[(usize, usize)], acyclic: bool) -> Vec<Step> {
    (0..n)
        .map(|i| {
            let mut deps: Vec<String> = edges
                .iter()
                .filter(|(from, to)| *to == i && from != to && (!acyclic || from < to))
                .map(|(from, _)| format!("s{from}"))
                .collect();
            deps.sort();
            deps.dedup();
            let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
            sql(&format!("s{i}"), &refs)
        })
        .collect()
}

/// Whether `edges` (with self-loops removed) contain a cycle, by depth-first search.
fn has_cycle(n: usize, edges: &[(usize, usize)]) -> bool {
    let mut adj = vec![Vec::new(); n];
    for &(f, t) in edges {
        if f != t {
            adj[f].push(t);
        }
    }
    fn visit(v: usize, adj: &[Vec<usize>], state: &mut [u8]) -> bool {
        state[v] = 1;
        for &w in &adj[v] {
            if state[w] == 1 || (state[w] == 0 && visit(w, adj, state)) {
                return true;
            }
        }
        state[v] = 2;
        false
    }
    let mut state = vec![0u8; n];
    (0..n).any(|v| state[v] == 0 && visit(v, &adj, &mut state))
}

/// How many strongly connected components of more than one step the edges form (self-loops
/// removed): the number of cycles the compiler must report, one per component.
fn cyclic_components(n: usize, edges: &[(usize, usize)]) -> usize {
    let mut next = vec![Vec::new(); n];
    for &(f, t) in edges {
        if f != t {
            next[f].push(t);
        }
    }
    // What each step reaches, by depth-first search.
    let reach: Vec<Vec<bool>> = (0..n)
        .map(|start| {
            let mut seen = vec![false; n];
            let mut stack = next[start].clone();
            while let Some(v) = stack.pop() {
                if !seen[v] {
                    seen[v] = true;
                    stack.extend(&next[v]);
                }
            }
            seen
        })
        .collect();
    let mut placed = vec![false; n];
    let mut components = 0;
    for i in 0..n {
        if placed[i] {
            continue;
        }
        let members: Vec<usize> = (0..n)
            .filter(|&j| j == i || (reach[i][j] && reach[j][i]))
            .collect();
        for &j in &members {
            placed[j] = true;
        }
        if members.len() > 1 {
            components += 1;
        }
    }
    components
}

proptest! {
    #[test]
    fn every_step_lands_in_one_layer_and_edges_go_forward((n, edges) in random_graph()) {
        let p = plan(steps_from(n, &edges, true));
        let mut placed: Vec<&str> = p.layers.iter().flatten().map(String::as_str).collect();
        placed.sort_unstable();
        let mut names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        names.sort_unstable();
        prop_assert_eq!(placed, names.iter().map(String::as_str).collect::<Vec<_>>());
        let layer: BTreeMap<&str, usize> = p.steps.iter().map(|s| (s.step.name.as_str(), s.layer)).collect();
        for e in &p.edges {
            prop_assert!(layer[e.from.as_str()] < layer[e.to.as_str()], "edge {} -> {} does not go forward", e.from, e.to);
        }
        // Longest-path levels: every step past layer 0 has an upstream step in the layer before.
        for s in &p.steps {
            if s.layer > 0 {
                prop_assert!(s.upstream.iter().any(|u| layer[u.as_str()] + 1 == s.layer));
            }
        }
        prop_assert_eq!(p.critical_path.len(), p.layers.len());
    }

    #[test]
    fn every_cycle_is_found((n, edges) in random_graph()) {
        let result = compile(&spec(steps_from(n, &edges, false)), &BTreeMap::new());
        let cyclic = has_cycle(n, &edges);
        prop_assert_eq!(result.is_err(), cyclic);
        if let Err(errs) = result {
            // Every reported cycle is a real closed path along declared dependencies.
            for e in &errs {
                if let DagError::Cycle { path } = e {
                    prop_assert!(path.len() >= 3);
                    prop_assert_eq!(path.first(), path.last());
                    for pair in path.windows(2) {
                        let from: usize = pair[0][1..].parse().unwrap_or(usize::MAX);
                        let to: usize = pair[1][1..].parse().unwrap_or(usize::MAX);
                        prop_assert!(edges.contains(&(from, to)), "{} -> {} is no edge", pair[0], pair[1]);
                    }
                }
            }
            // Each strongly connected component with a cycle is reported once.
            let reported: usize = errs.iter().filter(|e| matches!(e, DagError::Cycle { .. })).count();
            prop_assert_eq!(reported, cyclic_components(n, &edges));
        }
    }
}
