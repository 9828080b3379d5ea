//! What SynqX's tests share, so that each test says only what it checks:
//!
//! - [`servers`]: where the PostgreSQL and MariaDB test servers of `scripts/services up` listen
//!   (`SYNQX_TEST_POSTGRES`, `SYNQX_TEST_MYSQL`), parsed once; and a loopback port nothing
//!   listens on, for the tests of a refused connection.
//! - [`postgres`] and [`mysql`]: connections to them, statements, rows read back as text,
//!   and a schema or database of a test's own that is dropped when the test ends.
//! - [`s3`]: moto's S3 server, started on a free port on first use, and fake S3 endpoints.
//! - [`emulators`]: where fakesnow, bigquery-emulator and iridium-server of
//!   `scripts/emulators up` listen.
//! - [`files`]: Parquet files read back (rows and column codecs); [`sqlite`]: database files
//!   read back; [`rows`]: any query's rows as plain values.
//! - [`http`]: a stand-in HTTP server on loopback that records requests and answers with
//!   what the test says (an API, the operator's gateway).
//! - [`golden`]: whether a test may rewrite the checked-in files it compares (never in CI).
//! - [`hold`]: a proxy that holds a client at the request a test names (a load's swap), and
//!   [`kill`], which kills a process with SIGKILL and proves that this is how it ended;
//!   [`run_with_peak`], a process run with its peak RSS as the kernel counted it.
//!
//! A test that needs a server fails when the server is not there, and says how to start it: a
//! missing server is a broken test setup, never a reason to skip. Tests that need a server are
//! compiled only with their crate's `*-integration-tests` feature, which `scripts/test-all.sh`
//! turns on.

pub mod emulators;
pub mod files;
pub mod golden;
pub mod hold;
pub mod http;
pub mod mysql;
pub mod postgres;
pub mod rows;
pub mod s3;
pub mod servers;
pub mod sqlite;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A name no other test of this or a concurrent run uses, for schemas, databases, tables and
/// buckets: the prefix, the process id, the clock's nanoseconds and a counter.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos:x}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A runtime for tests that are not `#[tokio::test]` (they drive a child process too).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("starting a runtime: {e}"))
}

/// Runs a clean-up on a thread of its own: `Drop` may run inside a test's runtime, which
/// cannot block on another future.
pub(crate) fn clean_up(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || runtime().block_on(work)).join();
}

/// The output of a database client that must succeed.
pub(crate) fn client_output(mut command: Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start the client: {e}"));
    assert!(
        out.status.success(),
        "{what} failed (is the test server up? `eval \"$(scripts/services up)\"`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Kills `child` with SIGKILL and waits for it, failing unless SIGKILL is what ended it (not
/// an exit of its own just before).
pub fn kill(child: &mut std::process::Child) {
    use std::os::unix::process::ExitStatusExt;
    child
        .kill()
        .unwrap_or_else(|e| panic!("cannot kill process {}: {e}", child.id()));
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("cannot wait for process {}: {e}", child.id()));
    assert_eq!(
        status.signal(),
        Some(9),
        "process {} was not ended by SIGKILL: {status}",
        child.id()
    );
}

/// Runs `command` to its end with its output in files under `dir`, and returns how it ended,
/// its output (stdout, then stderr) and its peak RSS in bytes: the kernel's high-water mark of
/// the process (`ru_maxrss` from `wait4`, its VmHWM when it ended), not a sample.
// The child is reaped by `wait4`, which the lint cannot see.
#[allow(clippy::zombie_processes)]
pub fn run_with_peak(
    mut command: std::process::Command,
    dir: &std::path::Path,
) -> (std::process::ExitStatus, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    let (out_path, err_path) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let file = |p: &std::path::Path| {
        std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let child = command
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let pid = i32::try_from(child.id()).unwrap_or_else(|e| panic!("{e}"));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let read = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let output = format!("{}{}", read(&out_path), read(&err_path));
    let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    (std::process::ExitStatus::from_raw(status), output, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_their_prefix() {
        let a = unique_name("sx_test");
        let b = unique_name("sx_test");
        assert_ne!(a, b);
        assert!(a.starts_with("sx_test_"), "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }
}
