//! One container as one local process: which program an image stands for, how the process
//! is started, logged, stopped and restarted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::env::expand;

/// Where a process finds the file a container's `terminationMessagePath` names.
pub const TERMINATION_MESSAGE_ENV: &str = "SYNQX_TERMINATION_MESSAGE_PATH";
/// The most of a termination message a kubelet keeps.
const MESSAGE_LIMIT: usize = 4096;
/// The most of a log's tail used as the message under `FallbackToLogsOnError`.
const FALLBACK_LINES: usize = 80;

/// The program and arguments a container runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<String>,
}

/// The repository part of an image reference: `ghcr.io/synqx/synqx-operator:0.1` ->
/// `synqx-operator`.
pub fn image_binary(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Why a container maps to no local program; a kubelet reports it as `ErrImageNeverPull`.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(
        "image {image:?} has no command and is not a SynqX image; the process kubelet runs \
         SynqX images as the built binaries and other images only through their command"
    )]
    NotSynqx { image: String },
    #[error("image {image:?} maps to {} which is not built", .path.display())]
    NotBuilt { image: String, path: PathBuf },
    #[error("command {command:?} does not exist on this host")]
    NoSuchFile { command: String },
    #[error("command {command:?} is neither a built SynqX binary nor on PATH")]
    NotOnPath { command: String },
}

/// Maps a container to a local program. `command[0]` is looked up among the built binaries
/// first (so `/usr/local/bin/synqx` in an image means our `synqx`), then on `PATH`; with no
/// command, an image whose name contains `synqx` runs the built binary of the same name.
pub fn program(
    container: &Container,
    env: &[(String, String)],
    bin_dir: &Path,
    path_var: &str,
) -> Result<Program, ProgramError> {
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items
            .iter()
            .flatten()
            .map(|item| expand(item, env))
            .collect()
    };
    let command = expand_all(&container.command);
    let mut args = expand_all(&container.args);
    let image = container.image.clone().unwrap_or_default();

    let Some((first, rest)) = command.split_first() else {
        if !image.contains("synqx") {
            return Err(ProgramError::NotSynqx { image });
        }
        let path = bin_dir.join(image_binary(&image));
        return match path.is_file() {
            true => Ok(Program { path, args }),
            false => Err(ProgramError::NotBuilt { image, path }),
        };
    };
    let mut full = rest.to_vec();
    full.append(&mut args);
    let name = Path::new(first)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let built = bin_dir.join(&name);
    if image.contains("synqx") && built.is_file() {
        return Ok(Program {
            path: built,
            args: full,
        });
    }
    if first.contains('/') {
        let path = PathBuf::from(first);
        return match path.is_file() {
            true => Ok(Program { path, args: full }),
            false => Err(ProgramError::NoSuchFile {
                command: first.clone(),
            }),
        };
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(first))
        .find(|candidate| candidate.is_file())
        .map(|path| Program { path, args: full })
        .ok_or_else(|| ProgramError::NotOnPath {
            command: first.clone(),
        })
}

/// What a container's process ended with.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub message: String,
}

/// What a container task tells its pod.
#[derive(Debug)]
pub enum ContainerEvent {
    Started {
        index: usize,
        at: Timestamp,
        /// Ready at once: the container has no readiness probe.
        ready: bool,
    },
    /// The readiness probe passed.
    Ready { index: usize },
    Exited {
        index: usize,
        exit: Exit,
        restarting_in: Option<Duration>,
    },
    Failed {
        index: usize,
        reason: String,
        message: String,
    },
}

/// Everything a container task needs to start its process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub index: usize,
    pub program: Program,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub log: PathBuf,
    pub termination_message: PathBuf,
    pub fallback_to_logs: bool,
    pub pid_dir: PathBuf,
    /// `Always`, `OnFailure` or `Never`.
    pub restart_policy: String,
    /// The `httpGet` readiness probe: port on 127.0.0.1 and path.
    pub readiness: Option<(u16, String)>,
}

/// Runs a container until it ends for good or `stop` carries a grace period: restarts it as
/// `restart_policy` says, with the kubelet's doubling back-off (shortened for tests).
pub async fn supervise(
    launch: Launch,
    events: mpsc::Sender<ContainerEvent>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Timestamp::now();
        let _ = std::fs::remove_file(&launch.termination_message);
        let mut child = match spawn(&launch) {
            Ok(child) => child,
            Err(error) => {
                let reason = "StartError".to_string();
                let message = format!("starting {}: {error}", launch.program.path.display());
                let _ = events
                    .send(ContainerEvent::Failed {
                        index: launch.index,
                        reason,
                        message,
                    })
                    .await;
                return;
            }
        };
        let pid = child.id().map(|id| id as i32);
        let pid_file = pid.map(|pid| launch.pid_dir.join(pid.to_string()));
        if let Some(file) = &pid_file {
            let _ = std::fs::write(file, launch.working_dir.display().to_string());
        }
        let _ = events
            .send(ContainerEvent::Started {
                index: launch.index,
                at: started,
                ready: launch.readiness.is_none(),
            })
            .await;

        let probe = ready_when_probed(launch.readiness.clone());
        tokio::pin!(probe);
        let mut probed = launch.readiness.is_none();
        let (status, stopped) = loop {
            tokio::select! {
                status = child.wait() => break (status, false),
                grace = wait_for_stop(&mut stop) => {
                    terminate(&mut child, pid, grace).await;
                    break (child.wait().await, true);
                }
                () = &mut probe, if !probed => {
                    probed = true;
                    let _ = events.send(ContainerEvent::Ready { index: launch.index }).await;
                }
            }
        };
        if let Some(file) = &pid_file {
            let _ = std::fs::remove_file(file);
        }
        let (code, signal) = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(signal) => (128 + signal, Some(signal)),
                    None => (status.code().unwrap_or(-1), None),
                }
            }
            Err(_) => (-1, None),
        };
        let message = termination_message(&launch, code);
        let again = !stopped
            && match launch.restart_policy.as_str() {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            };
        let exit = Exit {
            code,
            signal,
            started,
            finished: Timestamp::now(),
            message,
        };
        let restarting_in = again.then_some(backoff);
        let _ = events
            .send(ContainerEvent::Exited {
                index: launch.index,
                exit,
                restarting_in,
            })
            .await;
        if !again {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = wait_for_stop(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn(launch: &Launch) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    let mut command = tokio::process::Command::new(&launch.program.path);
    command
        .args(&launch.program.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env(TERMINATION_MESSAGE_ENV, &launch.termination_message)
        .current_dir(&launch.working_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
    // process die with the kubelet, so a killed kubelet never leaves pods running.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    command.spawn()
}

/// Returns once `GET http://127.0.0.1:{port}{path}` answers 200, polling every 500 ms, as
/// a kubelet's `httpGet` readiness probe does (pods share the host's network here).
async fn ready_when_probed(probe: Option<(u16, String)>) {
    let Some((port, path)) = probe else {
        return std::future::pending().await;
    };
    loop {
        let attempt = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 16];
            let read = stream.read(&mut head).await.ok()?;
            Some(String::from_utf8_lossy(&head[..read]).contains(" 200"))
        };
        if let Ok(Some(true)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The port and path of a container's `httpGet` readiness probe, a named port resolved.
pub fn readiness(container: &Container) -> Option<(u16, String)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let get = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))?
                .container_port
        }
    };
    Some((
        u16::try_from(port).ok()?,
        get.path.clone().unwrap_or_else(|| "/".into()),
    ))
}

async fn wait_for_stop(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            // The pod worker is gone: nobody can report on this process any more.
            return Duration::ZERO;
        }
    }
}

/// SIGTERM to the whole process group, SIGKILL after the grace period, as a kubelet does.
async fn terminate(child: &mut tokio::process::Child, pid: Option<i32>, grace: Duration) {
    let Some(pid) = pid else { return };
    let group = Pid::from_raw(pid);
    if !grace.is_zero() {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

fn termination_message(launch: &Launch, code: i32) -> String {
    let written = std::fs::read(&launch.termination_message).unwrap_or_default();
    let mut message =
        String::from_utf8_lossy(&written[..written.len().min(MESSAGE_LIMIT)]).into_owned();
    if message.is_empty() && code != 0 && launch.fallback_to_logs {
        let log = std::fs::read_to_string(&launch.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        message = lines[lines.len().saturating_sub(FALLBACK_LINES)..].join("\n");
        if message.len() > MESSAGE_LIMIT {
            let mut cut = message.len() - MESSAGE_LIMIT;
            while !message.is_char_boundary(cut) {
                cut += 1;
            }
            message = message[cut..].to_string();
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, command: &[&str], args: &[&str]) -> Container {
        let list = |items: &[&str]| {
            (!items.is_empty()).then(|| items.iter().map(|s| s.to_string()).collect())
        };
        Container {
            image: Some(image.into()),
            command: list(command),
            args: list(args),
            ..Default::default()
        }
    }

    #[test]
    fn readiness_probes_resolve_named_ports() {
        use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, Probe};
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let probe = |port: IntOrString| Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = Container {
            ports: Some(vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            readiness_probe: Some(probe(IntOrString::String("metrics".into()))),
            ..Default::default()
        };
        assert_eq!(readiness(&c), Some((8080, "/readyz".to_string())));
        c.readiness_probe = Some(probe(IntOrString::Int(9090)));
        assert_eq!(readiness(&c), Some((9090, "/readyz".to_string())));
        c.readiness_probe = Some(probe(IntOrString::String("nope".into())));
        assert_eq!(readiness(&c), None);
    }

    #[test]
    fn image_names_map_to_binaries() {
        assert_eq!(image_binary("ghcr.io/synqx/synqx:0.1.0"), "synqx");
        assert_eq!(
            image_binary("ghcr.io/synqx/synqx-operator@sha256:abc"),
            "synqx-operator"
        );
        assert_eq!(image_binary("synqx"), "synqx");
        assert_eq!(image_binary("localhost:5000/synqx:dev"), "synqx");
    }

    #[test]
    fn programs_resolve_built_binaries_then_path() {
        let bins = tempfile::tempdir().expect("tempdir");
        std::fs::write(bins.path().join("synqx"), "").expect("write");
        std::fs::write(bins.path().join("synqx-operator"), "").expect("write");
        let host = tempfile::tempdir().expect("tempdir");
        std::fs::write(host.path().join("sh"), "").expect("write");
        let path_var = host.path().display().to_string();
        let env = vec![("STEP".to_string(), "load".to_string())];
        let resolve = |c: Container| program(&c, &env, bins.path(), &path_var);

        let p = resolve(container(
            "ghcr.io/synqx/synqx:1",
            &[],
            &["step", "$(STEP)"],
        ))
        .expect("image");
        assert_eq!(
            (p.path, p.args),
            (
                bins.path().join("synqx"),
                vec!["step".to_string(), "load".to_string()]
            )
        );

        let p = resolve(container(
            "ghcr.io/synqx/synqx:1",
            &["/usr/local/bin/synqx-operator", "run"],
            &["-v"],
        ))
        .expect("command in image");
        assert_eq!(
            (p.path, p.args),
            (
                bins.path().join("synqx-operator"),
                vec!["run".to_string(), "-v".to_string()]
            )
        );

        let p = resolve(container("busybox", &["sh", "-c"], &["exit 3"])).expect("host command");
        assert_eq!(p.path, host.path().join("sh"));

        let err = resolve(container("nginx:1.27", &[], &[]))
            .expect_err("no command")
            .to_string();
        assert!(err.contains("not a SynqX image"), "{err}");
        let err = resolve(container("busybox", &["nope"], &[]))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("\"nope\" is neither"), "{err}");
    }
}
