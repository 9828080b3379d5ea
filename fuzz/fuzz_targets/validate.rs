//! YAML text -> validate -> compile: whatever the bytes, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synqx_api::dag::compile;
use synqx_api::validate::{InputFile, validate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = validate(&[InputFile { name: "fuzz.yaml", text: &text }]);
    for problem in &report.problems {
        let _ = problem.to_string();
    }
    let connections = report.bundle.connection_specs();
    for doc in &report.bundle.pipelines {
        let _ = compile(&doc.object.spec, &connections);
    }
});
