//! A real S3 server for the tests: one `moto_server` per test binary, started on first use on
//! a free port. Buckets are made with plain unsigned HTTP (moto accepts it), so the helper
//! depends on nothing the connector itself uses. A second, strict server that checks
//! signatures (and knows no access key) starts only for the tests that need it.
//!
//! The server runs under a shell that waits on this process's stdin pipe: when the test
//! binary exits, however it exits, the pipe closes and the shell stops the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const INSTALL: &str = "the S3 tests need moto's S3 server: install it with `pip install \"moto[server]\"` so that `moto_server` is on PATH";

/// How long a starting moto may take (its Python imports are slow on a busy machine).
const STARTUP: Duration = Duration::from_secs(90);

pub(super) struct Moto {
    port: u16,
    /// Holds the shell whose stdin keeps the server alive.
    _guard: Child,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
static STRICT: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The server, started once; a test fails (never skips) when it cannot run.
pub(super) fn server() -> &'static Moto {
    match MOTO.get_or_init(|| start("")) {
        Ok(moto) => moto,
        Err(e) => panic!("{e}"),
    }
}

/// A server that authenticates every request: it knows no access key, so it rejects every
/// signed request with `InvalidAccessKeyId`. Started once, like [`server`].
pub(super) fn strict_server() -> &'static Moto {
    match STRICT.get_or_init(|| start("INITIAL_NO_AUTH_ACTION_COUNT=0")) {
        Ok(moto) => moto,
        Err(e) => panic!("{e}"),
    }
}

/// Starts `moto_server` with the environment assignments `env` (shell syntax).
fn start(env: &str) -> Result<Moto, String> {
    match Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(format!("{INSTALL} ({e})")),
        Err(e) => return Err(format!("cannot run moto_server: {e}; {INSTALL}")),
        Ok(out) if !out.status.success() => {
            return Err(format!(
                "`moto_server --help` failed ({}): {}; {INSTALL}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port for moto_server: {e}"))?;
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
        .map_err(|e| format!("starting moto_server: {e}"))?;
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
            return Err(format!(
                "moto_server on port {port} exited ({status}); {INSTALL}"
            ));
        }
        if started.elapsed() > STARTUP {
            let _ = guard.kill();
            return Err(format!(
                "moto_server did not answer on 127.0.0.1:{port} within {STARTUP:?}"
            ));
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
    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new empty bucket, named after `tag` and unique in this test binary.
    pub(super) fn bucket(&self, tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("synqx-{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        match request(self.port, &format!("PUT /{name} HTTP/1.1")) {
            Ok((200, _)) => name,
            other => panic!("creating bucket {name} on moto: {other:?}"),
        }
    }

    /// Multipart uploads started in `bucket` and neither completed nor aborted.
    pub(super) fn pending_uploads(&self, bucket: &str) -> usize {
        match request(self.port, &format!("GET /{bucket}?uploads HTTP/1.1")) {
            Ok((200, body)) => body.matches("<UploadId>").count(),
            other => panic!("listing the multipart uploads of {bucket}: {other:?}"),
        }
    }
}
