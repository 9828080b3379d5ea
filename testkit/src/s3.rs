//! S3 servers for the tests: moto's, one `moto_server` per test binary, started on first use
//! on a free port; and two fakes, one that echoes every request into its error and an endpoint
//! nothing listens on. Buckets are made with plain unsigned HTTP (moto accepts it), so the
//! helper depends on nothing the S3 connector uses. A second, strict moto that checks
//! signatures (and knows no access key) starts only for the tests that need it.
//!
//! The server runs under a shell that waits on this process's stdin pipe: when the test
//! binary exits, however it exits, the pipe closes and the shell stops the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL: &str = "the S3 tests need moto's S3 server: install it with `pip install \"moto[server]\"` so that `moto_server` is on PATH";

/// How long a starting moto may take (its Python imports are slow on a busy machine).
const STARTUP: Duration = Duration::from_secs(90);

pub struct Moto {
    port: u16,
    /// Holds the shell whose stdin keeps the server alive.
    _guard: Child,
}

static MOTO: OnceLock<Result<Moto, StartError>> = OnceLock::new();
static STRICT: OnceLock<Result<Moto, StartError>> = OnceLock::new();

/// Why `moto_server` could not start; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{INSTALL} ({0})")]
    NotInstalled(#[source] std::io::Error),
    #[error("cannot run moto_server: {0}; {INSTALL}")]
    CannotRun(#[source] std::io::Error),
    #[error("`moto_server --help` failed ({status}): {stderr}; {INSTALL}")]
    Broken { status: ExitStatus, stderr: String },
    #[error("finding a free port for moto_server: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("starting moto_server: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("moto_server on port {port} exited ({status}); {INSTALL}")]
    Exited { port: u16, status: ExitStatus },
    #[error("moto_server did not answer on 127.0.0.1:{port} within {STARTUP:?}")]
    NoAnswer { port: u16 },
}

/// The server, started once; a test fails (never skips) when it cannot run.
pub fn server() -> &'static Moto {
    match MOTO.get_or_init(|| start("")) {
        Ok(moto) => moto,
        Err(e) => panic!("{e}"),
    }
}

/// A server that authenticates every request: it knows no access key, so it rejects every
/// signed request with `InvalidAccessKeyId`. Started once, like [`server`].
pub fn strict_server() -> &'static Moto {
    match STRICT.get_or_init(|| start("INITIAL_NO_AUTH_ACTION_COUNT=0")) {
        Ok(moto) => moto,
        Err(e) => panic!("{e}"),
    }
}

/// Starts `moto_server` with the environment assignments `env` (shell syntax).
fn start(env: &str) -> Result<Moto, StartError> {
    match Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(StartError::NotInstalled(e)),
        Err(e) => return Err(StartError::CannotRun(e)),
        Ok(out) if !out.status.success() => {
            return Err(StartError::Broken {
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(_) => {}
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(StartError::NoPort)?;
    let script = format!(
        "{env} moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & server=$!; read line; kill $server; wait $server"
    );
    let mut guard = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(StartError::Spawn)?;
    let started = Instant::now();
    loop {
        // Any answer will do: the strict server refuses the unsigned request.
        if let Ok((100.., _)) = request(port, "GET / HTTP/1.1") {
            return Ok(Moto {
                port,
                _guard: guard,
            });
        }
        if let Ok(Some(status)) = guard.try_wait() {
            return Err(StartError::Exited { port, status });
        }
        if started.elapsed() > STARTUP {
            let _ = guard.kill();
            return Err(StartError::NoAnswer { port });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One plain HTTP/1.1 request; returns the status and body.
fn request(port: u16, line: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{line}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new empty bucket, named after `tag` and unique in this test binary.
    pub fn bucket(&self, tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("synqx-{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        match request(self.port, &format!("PUT /{name} HTTP/1.1")) {
            Ok((200, _)) => name,
            other => panic!("creating bucket {name} on moto: {other:?}"),
        }
    }

    /// The keys in `bucket` (up to 1,000), read with a plain unsigned listing.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        match request(self.port, &format!("GET /{bucket}?list-type=2 HTTP/1.1")) {
            Ok((200, body)) => body
                .split("<Key>")
                .skip(1)
                .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
                .collect(),
            other => panic!("listing the keys of {bucket}: {other:?}"),
        }
    }

    /// Multipart uploads started in `bucket` and neither completed nor aborted.
    pub fn pending_uploads(&self, bucket: &str) -> usize {
        match request(self.port, &format!("GET /{bucket}?uploads HTTP/1.1")) {
            Ok((200, body)) => body.matches("<UploadId>").count(),
            other => panic!("listing the multipart uploads of {bucket}: {other:?}"),
        }
    }
}

/// A server that refuses every request with an S3 error whose message echoes the request
/// head, as a misconfigured proxy or a verbose store might: the credentials reach the error
/// body, and must not reach the error's text.
pub fn echoing_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            // Logged before the answer, so the test sees it once its request failed.
            if let Ok(mut log) = log.lock() {
                log.push(head.clone());
            }
            let body = format!(
                "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>request was: {}</Message></Error>",
                head.replace('&', "&amp;").replace('<', "&lt;")
            );
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// An endpoint nothing listens on: every connection to it is refused.
pub fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", crate::servers::closed_port())
}
