//! tests/cluster/up and build in bad states: each names the problem and what to do, and
//! leaves no process behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_path_buf()
}

fn script(name: &str, run_dir: &Path, envs: &[(&str, &str)]) -> Output {
    Command::new(repo().join("tests/cluster").join(name))
        .env("SYNQX_CLUSTER_DIR", run_dir)
        .env("SYNQX_BIN_DIR", bin_dir())
        .envs(envs.iter().copied())
        .output()
        .expect("run script")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The processes recorded in a run directory that are still alive.
fn live(run_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("proc")) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|pid| Path::new("/proc").join(pid.trim()).exists())
        .collect()
}

#[test]
fn build_without_go_says_to_install_it() {
    let run_dir = tempfile::tempdir().expect("tempdir");
    let out = script("build", run_dir.path(), &[("PATH", "/usr/bin:/bin")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the 'go' command is not on PATH") && err.contains("Install Go"),
        "{err}"
    );
}

#[test]
fn a_stale_run_directory_is_cleared_and_a_taken_port_is_named() {
    let run_dir = tempfile::tempdir().expect("tempdir");
    let dir = run_dir.path().join("cluster");
    // A run directory whose processes are gone, as after a reboot.
    std::fs::create_dir_all(dir.join("proc")).expect("mkdir");
    std::fs::write(dir.join("proc/etcd.pid"), "999999999").expect("write");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();

    let out = script("up", &dir, &[("SYNQX_API_PORT", &port)]);
    let err = stderr(&out);
    assert!(!out.status.success(), "up started on a taken port:\n{err}");
    assert!(err.contains("removing the stale run directory"), "{err}");
    assert!(
        err.contains(&format!(
            "port {port} (SYNQX_API_PORT) on 127.0.0.1 is taken"
        )),
        "{err}"
    );
    // The failed start stopped the etcd it had started and removed its run directory.
    assert!(!dir.exists(), "the failed start left {}", dir.display());

    let out = script("down", &dir, &[]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("nothing to stop"), "{}", stderr(&out));
}

#[test]
fn up_twice_reports_the_running_cluster_and_down_stops_everything() {
    let run_dir = tempfile::tempdir().expect("tempdir");
    let dir = run_dir.path().join("cluster");
    let first = script("up", &dir, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let pids = live(&dir);
    assert_eq!(
        pids.len(),
        4,
        "etcd, API server, controller manager and kubelet run"
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("export KUBECONFIG=")),
        "{stdout}"
    );

    let second = script("up", &dir, &[]);
    assert!(second.status.success());
    assert!(
        stderr(&second).contains("is already running"),
        "{}",
        stderr(&second)
    );
    assert_eq!(live(&dir), pids, "the second up started nothing");

    let down = script("down", &dir, &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(!dir.exists());
    for pid in pids {
        assert!(
            !Path::new("/proc").join(pid.trim()).exists(),
            "process {pid} survived down"
        );
    }
}
