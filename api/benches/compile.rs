//! Compiling a large pipeline: 10,000 steps, 30,000 dependsOn edges, plus lineage.
//! `cargo bench -p synqx-api --bench compile`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use synqx_api::dag::compile;
use synqx_api::pipeline::{Asset, Destination, PipelineSpec, Source, Step, SyncStep};

/// Steps `s0…s9999` with exactly `edges` dependsOn edges: each step depends on up to three
/// distinct earlier steps (drawn by a fixed linear congruential generator) and the last step
/// takes the remainder. Every step moves a table of its own, so lineage matching runs on every
/// step without adding edges.
fn big_pipeline(steps: usize, edges: usize) -> PipelineSpec {
    let edges_per_step = 3;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound
    };
    let table = |conn: &str, fqn: String| (conn.to_string(), Asset { name: None, fqn });
    let steps = (0..steps)
        .map(|i| {
            let mut deps: Vec<String> = Vec::new();
            while deps.len() < edges_per_step.min(i) {
                let d = format!("s{}", next(i));
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            let (sc, sa) = table("source", format!("raw.t{i}"));
            let (dc, da) = table("target", format!("mart.t{i}"));
            Step {
                name: format!("s{i}"),
                depends_on: deps,
                sync: Some(SyncStep {
                    source: Source {
                        connection: sc,
                        asset: sa,
                        ..Default::default()
                    },
                    destination: Destination {
                        connection: dc,
                        asset: da,
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect::<Vec<Step>>();
    let mut steps = steps;
    let mut total: usize = steps.iter().map(|s| s.depends_on.len()).sum();
    let last = steps.len() - 1;
    let mut candidate = 0;
    while total < edges && candidate < last {
        let d = format!("s{candidate}");
        if !steps[last].depends_on.contains(&d) {
            steps[last].depends_on.push(d);
            total += 1;
        }
        candidate += 1;
    }
    PipelineSpec {
        steps,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let spec = big_pipeline(10_000, 30_000);
    let edges: usize = spec.steps.iter().map(|s| s.depends_on.len()).sum();
    assert_eq!(edges, 30_000);
    let plan = compile(&spec, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!(
        "pipeline: {} steps, {edges} dependsOn edges, {} layers",
        plan.steps.len(),
        plan.layers.len()
    );
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.bench_function("10k_steps_30k_edges", |b| {
        b.iter(|| compile(black_box(&spec), &BTreeMap::new()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
