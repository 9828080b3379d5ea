//! A TCP proxy in front of a test server that passes everything through until a client sends
//! a given marker (the statement that would swap a load in, say), and then holds that
//! connection: the request is never delivered and never answered, so the client waits at
//! exactly that point for as long as the test wants. That makes "killed after staging, before
//! the swap" a moment a test can wait for instead of guess.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A proxy listening on loopback; see the module docs.
pub struct HoldingProxy {
    /// The port clients connect to instead of the server's.
    pub port: u16,
    held: Arc<AtomicBool>,
}

impl HoldingProxy {
    /// Starts a proxy to `upstream` (`host:port`) that holds the connection on which `marker`
    /// is sent. Panics when it cannot listen.
    pub fn start(upstream: &str, marker: &'static [u8]) -> Self {
        Self::start_at(upstream, marker, 1)
    }

    /// Like [`HoldingProxy::start`], but lets the first `nth - 1` requests with `marker` (on
    /// any connection) through and holds the `nth`.
    pub fn start_at(upstream: &str, marker: &'static [u8], nth: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let held = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let flag = held.clone();
        let seen = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = match TcpStream::connect(&upstream) {
                    Ok(s) => s,
                    Err(e) => panic!("the proxy cannot reach {upstream}: {e}"),
                };
                let (flag, seen) = (flag.clone(), seen.clone());
                let hold = move |found: usize| {
                    let before = seen.fetch_add(found, Ordering::SeqCst);
                    let now = before + found;
                    if before < nth && nth <= now {
                        flag.store(true, Ordering::SeqCst);
                        return true;
                    }
                    false
                };
                std::thread::spawn(move || relay(client, server, marker, hold));
            }
        });
        Self { port, held }
    }

    /// Whether a client has sent the marker.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until `child` sends the marker; panics when it ends first or after `limit`.
    pub fn wait_held(&self, child: &mut Child, limit: Duration) {
        let started = Instant::now();
        while !self.held() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the process ended ({status}) before it sent the held request");
            }
            assert!(
                started.elapsed() < limit,
                "the process sent no held request within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Copies both ways until the client sends `marker` and `hold` (given how many times) says
/// to hold; from then on nothing more goes to the server and the client's socket stays open,
/// unanswered, until the client goes away.
fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    marker: &[u8],
    hold: impl Fn(usize) -> bool,
) {
    if let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
    }
    // The end of the last chunk, so that a marker split between two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(&buffer[..n]);
        let found = window
            .windows(marker.len())
            .filter(|w| *w == marker)
            .count();
        if found > 0 && hold(found) {
            // Drain what the client still sends, until it is killed; then the server may go.
            while client.read(&mut buffer).is_ok_and(|n| n > 0) {}
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&buffer[..n]).is_err() {
            return;
        }
        let keep = marker.len().saturating_sub(1).min(window.len());
        tail = window.split_off(window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_request_with_the_marker_is_held_and_others_pass() {
        // An echo server that reports everything it received once its client went away.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let upstream = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (received_tx, received) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            if let Some(Ok(mut s)) = echo.incoming().next() {
                let (mut all, mut b) = (Vec::new(), [0u8; 64]);
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                    all.extend_from_slice(&b[..n]);
                }
                let _ = received_tx.send(all);
            }
        });
        let proxy = HoldingProxy::start(&upstream.to_string(), b"SWAP");
        let mut a = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap_or_else(|e| panic!("{e}"));
        a.write_all(b"load").unwrap_or_else(|e| panic!("{e}"));
        let mut back = [0u8; 4];
        a.read_exact(&mut back).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, b"load");
        assert!(!proxy.held());
        // The marker split across two writes is still caught.
        a.write_all(b"SW").unwrap_or_else(|e| panic!("{e}"));
        a.flush().unwrap_or_else(|e| panic!("{e}"));
        a.write_all(b"AP now").unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        while !proxy.held() {
            assert!(started.elapsed() < Duration::from_secs(10), "never held");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(a);
        let got = received
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the server never saw its client go: {e}"));
        // At most the part of the marker read before it was whole reached the server.
        assert!(
            got == b"load" || got == b"loadSW",
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
}
