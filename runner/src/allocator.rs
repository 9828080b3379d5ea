//! The allocator's settings, for `synqx`. glibc's defaults keep what a
//! burst allocated: its threshold for giving large blocks a mapping of their own rises after
//! the first ones are freed, so later large buffers (record batches, column chunks, response
//! bodies) come from the heap and stay there; its arenas, up to eight per core, each hold on
//! to their own free memory. Measured on CSV → Parquet of 6M rows: peak RSS 107 MiB with the
//! defaults, 82 MiB with a fixed 128 KiB threshold and two arenas (the threshold is most of
//! it); Parquet → CSV 165 and 145 MiB. The price is speed: each large buffer is mapped and
//! faulted in afresh, about 15 % of CSV → Parquet's time against glibc's defaults. jemalloc
//! was measured in its place (docs/benchmarks.md, "Which allocator `synqx` runs"): with a
//! decay it held 10–90 MiB more, without one CSV → Parquet took 1.7× as long. (The operator,
//! long-lived and bursty, runs jemalloc: `synqx-operator`'s `allocator`.)
//!
//! The threshold is 64 KiB, not 128: a step's 64–128 KiB blocks (the Parquet writer's
//! per-batch level buffers, a CSV block's growing columns, compression contexts) otherwise
//! fragment the arenas as batches come and go. With 2 MiB batches it took 2–6 MiB off the
//! peaks of the Parquet writes (from CSV, PostgreSQL and MariaDB) at the same speed, and the
//! other cases moved within 2 MiB; 32 KiB took 9 MiB more off CSV → Parquet but cost it 38 %
//! of its time (docs/benchmarks.md, "Smaller batches, and a lower mapping threshold").

/// Arenas: the engine runs two worker threads on a 2-core node.
const ARENAS: i32 = 2;
/// Blocks from this size get a mapping of their own, returned to the kernel when freed.
const MAPPED_FROM: i32 = 64 * 1024;

/// Sets the arenas and the mapping threshold; call before any thread starts. Whether glibc
/// took both.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() -> bool {
    // SAFETY: mallopt only sets parameters of the allocator, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED_FROM) == 1
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_settings() {
        assert!(
            configure(),
            "mallopt refused M_ARENA_MAX or M_MMAP_THRESHOLD"
        );
    }
}
