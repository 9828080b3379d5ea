//! `synqx crd`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use synqx_api::crd;

pub fn run(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match dir {
        None => print!("{}", crd::all_to_yaml().context("serializing the CRDs")?),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for c in crd::all() {
                let path = dir.join(crd::file_name(&c));
                let yaml = crd::to_yaml(&c).context("serializing a CRD")?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
