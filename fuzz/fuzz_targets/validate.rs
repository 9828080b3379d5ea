//! YAML text -> validate -> compile. Whatever the bytes: no panic; and when the report is
//! valid, every Pipeline compiles, and its plan's layers are consistent (each step in exactly
//! one layer, the one its `layer` says, every edge and upstream step pointing to an earlier
//! layer, the critical path as long as the layers are many).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use synqx_api::dag::{Plan, compile};
use synqx_api::validate::{InputFile, validate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = validate(&[InputFile {
        name: "fuzz.yaml",
        text: &text,
    }]);
    for problem in &report.problems {
        let _ = problem.to_string();
    }
    let connections = report.bundle.connection_specs();
    for doc in &report.bundle.pipelines {
        let compiled = compile(&doc.object.spec, &connections);
        if report.is_valid() {
            let name = doc.object.metadata.name.as_deref().unwrap_or_default();
            let plan = match compiled {
                Ok(plan) => plan,
                Err(errors) => panic!("a valid report, yet {name} does not compile: {errors:?}"),
            };
            assert!(report.plans.contains_key(name), "no plan of valid {name}");
            check_layers(&plan);
        }
    }
    for plan in report.plans.values() {
        check_layers(plan);
    }
});

fn check_layers(plan: &Plan) {
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, layer) in plan.layers.iter().enumerate() {
        assert!(!layer.is_empty(), "layer {index} is empty");
        for step in layer {
            assert!(
                layer_of.insert(step.as_str(), index).is_none(),
                "step {step} is in two layers"
            );
        }
    }
    assert_eq!(layer_of.len(), plan.steps.len(), "every step is in a layer");
    for planned in &plan.steps {
        let name = planned.step.name.as_str();
        assert_eq!(layer_of.get(name), Some(&planned.layer), "layer of {name}");
        for upstream in &planned.upstream {
            let before = layer_of.get(upstream.as_str()).copied();
            assert!(
                before.is_some_and(|l| l < planned.layer),
                "{upstream} is upstream of {name} but not in an earlier layer"
            );
        }
    }
    for edge in &plan.edges {
        let (from, to) = (layer_of.get(edge.from.as_str()), layer_of.get(edge.to.as_str()));
        assert!(
            matches!((from, to), (Some(f), Some(t)) if f < t),
            "edge {} -> {} does not go forward",
            edge.from,
            edge.to
        );
    }
    assert_eq!(plan.critical_path.len(), plan.layers.len(), "critical path");
}
