//! How much memory a step's transforms may hold, and where they spill what does not fit.
//!
//! A step's memory budget is, in this order: `SYNQX_STEP_MEMORY` (`512MiB`, `2GiB`), the
//! memory limit of the container the runner is in (cgroup v2 `memory.max`, or v1
//! `memory.limit_in_bytes`), or 1 GiB. Half of it is DataFusion's memory pool: a `sql`
//! transform that sorts, groups or joins holds at most that, spilling sorted runs and
//! aggregation state to the scratch folder (`TMPDIR`) beyond it; the other half is for the
//! batches in flight, the sink's buffers and what the allocator keeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use synqx_api::duration::parse_bytes;

use crate::error::{Error, Result};

/// The variable that sets a step's memory budget.
pub const MEMORY_VARIABLE: &str = "SYNQX_STEP_MEMORY";
/// The budget where nothing sets one.
pub const DEFAULT_BUDGET: u64 = 1 << 30;
/// The smallest pool: below it, DataFusion cannot keep even a sort's merge buffers.
const MIN_POOL: usize = 16 << 20;

/// A step's memory budget and scratch folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes the whole step may use.
    pub bytes: u64,
    /// Where the figure comes from, for messages.
    pub from: String,
    /// Where transforms spill.
    pub scratch: PathBuf,
}

/// The budget where nothing sets one, spilling into the system's temporary folder.
impl Default for MemoryBudget {
    fn default() -> Self {
        Self {
            bytes: DEFAULT_BUDGET,
            from: "the default".into(),
            scratch: std::env::temp_dir(),
        }
    }
}

impl MemoryBudget {
    /// The budget of a step run by this process (see the module docs).
    pub fn detect() -> Result<Self> {
        let scratch = std::env::temp_dir();
        if let Ok(text) = std::env::var(MEMORY_VARIABLE) {
            let bytes =
                parse_bytes(&text).map_err(|e| Error::Config(format!("{MEMORY_VARIABLE}: {e}")))?;
            return Ok(Self {
                bytes,
                from: MEMORY_VARIABLE.into(),
                scratch,
            });
        }
        Ok(match container_limit(Path::new("/sys/fs/cgroup")) {
            Some(bytes) => Self {
                bytes,
                from: "the container's memory limit".into(),
                scratch,
            },
            None => Self::default(),
        })
    }

    /// The bytes DataFusion's pool holds at most: half the budget, at least 16 MiB.
    pub fn pool(&self) -> usize {
        usize::try_from(self.bytes / 2)
            .unwrap_or(usize::MAX)
            .max(MIN_POOL)
    }

    /// The runtime of a step's DataFusion session: a pool shared fairly by the operators that
    /// can spill, and a disk manager that spills into the scratch folder.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(self.pool()),
            std::num::NonZeroUsize::MIN.saturating_add(4),
        );
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![self.scratch.clone()])),
            )
            .build_arc()
            .map_err(|e| Error::Transform {
                message: format!(
                    "the transforms' runtime cannot use the scratch folder {}: {e}",
                    self.scratch.display()
                ),
                source: Some(e),
            })
    }

    /// `512 MiB from SYNQX_STEP_MEMORY`, for messages.
    pub fn describe_budget(&self) -> String {
        format!("{} from {}", mib(self.bytes), self.from)
    }

    /// `256 MiB (half of 512 MiB from SYNQX_STEP_MEMORY)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (half of {} from {})",
            mib(self.pool() as u64),
            mib(self.bytes),
            self.from
        )
    }
}

/// Bytes in whole MiB, as budgets are given.
fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// The memory limit of the cgroup this process is in, `None` without one.
fn container_limit(root: &Path) -> Option<u64> {
    let read = |file: &str| std::fs::read_to_string(root.join(file)).ok();
    let v2 = read("memory.max").map(|text| text.trim().parse::<u64>().ok());
    match v2 {
        // "max": no limit.
        Some(limit) => limit,
        None => read("memory/memory.limit_in_bytes")
            .and_then(|text| text.trim().parse::<u64>().ok())
            // cgroup v1 says "no limit" with a number near the top of i64.
            .filter(|&bytes| bytes < 1 << 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_cgroup_v2_or_v1_and_max_means_none() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        assert_eq!(container_limit(root), None);
        std::fs::create_dir_all(root.join("memory")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            root.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(container_limit(root), None);
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "536870912\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(container_limit(root), Some(512 << 20));
        std::fs::write(root.join("memory.max"), "max\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(container_limit(root), None);
        std::fs::write(root.join("memory.max"), "268435456\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(container_limit(root), Some(256 << 20));
    }

    #[test]
    fn the_pool_is_half_the_budget_and_never_tiny() {
        let budget = |bytes| MemoryBudget {
            bytes,
            from: MEMORY_VARIABLE.into(),
            scratch: PathBuf::from("/tmp"),
        };
        assert_eq!(budget(512 << 20).pool(), 256 << 20);
        assert_eq!(budget(1 << 20).pool(), MIN_POOL);
        assert_eq!(
            budget(512 << 20).describe(),
            "256 MiB (half of 512 MiB from SYNQX_STEP_MEMORY)"
        );
    }
}
