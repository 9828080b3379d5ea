//! The operator's allocator on Linux with glibc: jemalloc, its settings compiled in.
//!
//! glibc's malloc, even limited to two arenas with a fixed mapping threshold and trimmed
//! every minute, held about 30 MiB of freed memory at the busy peak and kept the idle
//! operator over its goal (docs/benchmarks.md). jemalloc gives pages back by itself, and
//! here at once: with a decay of one second the pages freed in the burst of 200 runs created
//! together were still counted at the peak (106.3 MiB, against 92.8 with no decay), and the
//! operator allocates too little for the extra `madvise` calls to show in its CPU time
//! (18.2 s against 18.7 over the same runs).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What jemalloc reads at its start (under the prefix its Rust build gives every symbol; a
/// plain `malloc_conf` would link and be ignored): the background thread, two arenas for
/// the runtime's two workers, freed pages returned at once (no dirty decay) and no second
/// "muzzy" stage. `_RJEM_MALLOC_CONF` in the environment is read after these and wins. A
/// test reads every one back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static SETTINGS: Option<&'static u8> =
    Some(&b"background_thread:true,narenas:2,dirty_decay_ms:0,muzzy_decay_ms:0\0"[0]);

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    fn option<T: Copy>(name: &[u8]) -> Option<T> {
        // SAFETY: each name below is a jemalloc option of type `T` (its manual's types).
        unsafe { tikv_jemalloc_ctl::raw::read::<T>(name) }.ok()
    }

    #[test]
    fn jemalloc_runs_with_the_settings_compiled_in() {
        assert_eq!(
            tikv_jemalloc_ctl::opt::background_thread::read().ok(),
            Some(true)
        );
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().ok(), Some(2));
        assert_eq!(option::<isize>(b"opt.dirty_decay_ms\0"), Some(0));
        assert_eq!(option::<isize>(b"opt.muzzy_decay_ms\0"), Some(0));
        // The thread itself runs, not only the option.
        assert_eq!(
            tikv_jemalloc_ctl::background_thread::read().ok(),
            Some(true)
        );
    }
}
