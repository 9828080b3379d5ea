//! `synqx state`: show, reset and set the watermarks and runs of local runs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use synqx_runner::state::StateStore;

/// What to do with the state.
pub enum Action {
    Show {
        pipeline: Option<String>,
    },
    Reset {
        pipeline: String,
        step: Option<String>,
    },
    Set {
        pipeline: String,
        step: String,
        watermark: String,
    },
}

pub fn run(dir: &Path, action: Action) -> anyhow::Result<ExitCode> {
    if !dir.join(synqx_runner::state::STATE_FILE).exists() && matches!(action, Action::Show { .. })
    {
        println!("no state yet in {} (synqx run creates it)", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let state = StateStore::open(dir).await?;
        match action {
            Action::Show { pipeline } => {
                let marks = state.watermarks(pipeline.as_deref()).await?;
                println!("WATERMARKS");
                if marks.is_empty() {
                    println!("  (none)");
                }
                for w in marks {
                    println!("  {}/{}: {}  (run {}, {})", w.pipeline, w.step, w.value, w.run_id.as_deref().unwrap_or("set by hand"), w.updated_at);
                }
                println!("RECENT RUNS");
                let runs = state.runs(pipeline.as_deref(), 10).await?;
                if runs.is_empty() {
                    println!("  (none)");
                }
                for r in runs {
                    println!("  {} {} {} started {}", r.id, r.pipeline, r.status, r.started_at);
                    for s in state.steps(&r.id).await? {
                        println!(
                            "    {:<24} {:<10} read {:>10} written {:>10} rejected {:>6}{}",
                            s.step,
                            s.status,
                            s.counters.rows_read,
                            s.counters.rows_written,
                            s.counters.rows_rejected,
                            s.watermark_to.map(|w| format!("  watermark {w}")).unwrap_or_default()
                        );
                    }
                }
            }
            Action::Reset { pipeline, step } => {
                let n = state.reset(&pipeline, step.as_deref()).await?;
                let what = step.map(|s| format!("step {s} of {pipeline}")).unwrap_or(pipeline);
                println!("removed {n} watermark{} of {what}: the next run reads everything", if n == 1 { "" } else { "s" });
            }
            Action::Set { pipeline, step, watermark } => {
                state.set(&pipeline, &step, &watermark).await?;
                println!("watermark of {pipeline}/{step} set to {watermark}: the next run reads rows above it");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
