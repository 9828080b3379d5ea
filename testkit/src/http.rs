//! A stand-in HTTP/1.1 server on loopback for tests that play an API or the operator's
//! gateway: it records every request (method, target, headers, body) and answers each with
//! what the test's closure returns, or with the next of a script. It runs on a thread and a
//! runtime of its own, so a plain `#[test]` can use it as well as a `#[tokio::test]`, and it
//! stops when dropped. It answers at most [`MAX_REQUESTS`], so a client that pages or retries
//! without end fails its test instead of spinning forever.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Requests one stand-in answers at most; each later one gets a 503.
pub const MAX_REQUESTS: usize = 20_000;

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived, for tests of how a client spaces its requests.
    pub at: Instant,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The body as JSON; fails the test when it is none.
    pub fn json(&self) -> serde_json::Value {
        self.parse()
    }

    /// The body parsed as JSON into `T`; fails the test when it is not one.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not what the test expects ({e}): {}",
                self.method,
                self.target,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// The pairs of `a=1&b=x%20y` (a query, or a form body), percent-decoded.
pub fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the stand-in answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: Body,
    /// How long the stand-in waits before it answers: a slow server.
    pub delay: Duration,
}

enum Body {
    Whole(Bytes),
    /// Made as it is sent, chunk by chunk, without a length: the stand-in never holds the
    /// whole of a body larger than a test wants in memory.
    Streamed(Box<dyn Iterator<Item = Vec<u8>> + Send>),
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Whole(Bytes::new()),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `body` as JSON.
    pub fn json(status: u16, body: impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(&body)
            .unwrap_or_else(|e| panic!("the test's reply is no JSON: {e}"));
        Self::json_text(status, body)
    }

    /// `status` with `body` as written, labelled JSON: what a server sends that says JSON and
    /// may not mean it (a broken document, an error in plain words).
    pub fn json_text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::status(status)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Whole(Bytes::from(body.into()));
        self
    }

    /// A body sent chunk by chunk as `chunks` makes them.
    pub fn streamed(mut self, chunks: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Self {
        self.body = Body::Streamed(Box::new(chunks));
        self
    }

    /// The same reply, sent after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Answer = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running stand-in; see the module docs.
pub struct StandIn {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StandIn {
    /// Answers every request with `answer`. Fails the test when it cannot listen.
    pub fn start(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .unwrap_or_else(|e| panic!("the stand-in server cannot listen on loopback: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the stand-in server's address: {e}"))
            .port();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (log, answer): (_, Arc<Answer>) = (requests.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("the stand-in server's runtime: {e}"));
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .unwrap_or_else(|e| panic!("the stand-in server's listener: {e}"));
                tokio::select! {
                    _ = stopped => {}
                    () = serve(listener, log, answer) => {}
                }
            });
        });
        Self {
            port,
            requests,
            stop: Some(stop),
        }
    }

    /// Answers the requests with `replies` in order; one beyond them gets a 599, which no
    /// client takes for success.
    pub fn scripted(replies: Vec<Reply>) -> Self {
        let replies = Mutex::new(VecDeque::from(replies));
        Self::start(move |_| {
            replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
                .unwrap_or_else(|| Reply::status(599).with_body("the stand-in has no reply left"))
        })
    }

    /// `http://127.0.0.1:{port}`, without a slash at the end.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    log: Arc<Mutex<Vec<Request>>>,
    answer: Arc<Answer>,
) {
    let served = Arc::new(AtomicUsize::new(0));
    while let Ok((stream, _)) = listener.accept().await {
        let (log, answer, served) = (log.clone(), answer.clone(), served.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let (log, answer, served) = (log.clone(), answer.clone(), served.clone());
                async move {
                    let request = record(request).await?;
                    let reply = if served.fetch_add(1, Ordering::SeqCst) >= MAX_REQUESTS {
                        Reply::status(503).with_body("the stand-in's request limit is reached")
                    } else {
                        answer(&request)
                    };
                    // Logged before the delay, so a test sees a request its client gave up on.
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(request);
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    response(reply)
                }
            });
            // A client that hangs up early is the client's business, and its test's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The request, its body read whole.
async fn record(request: hyper::Request<Incoming>) -> Result<Request, hyper::Error> {
    let at = Instant::now();
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let body = request.into_body().collect().await?.to_bytes().to_vec();
    Ok(Request {
        method,
        target,
        headers,
        body,
        at,
    })
}

fn response(
    reply: Reply,
) -> Result<hyper::Response<UnsyncBoxBody<Bytes, Infallible>>, hyper::Error> {
    let body = match reply.body {
        Body::Whole(bytes) => Full::new(bytes).boxed_unsync(),
        Body::Streamed(chunks) => StreamBody::new(
            futures::stream::iter(chunks).map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
        )
        .boxed_unsync(),
    };
    let mut response = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(body)
        .unwrap_or_else(|e| panic!("the test's reply is no HTTP response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The raw response to one raw request.
    fn exchange(port: u16, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connecting to the stand-in: {e}"));
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("{e}"));
        response
    }

    #[test]
    fn it_records_each_request_and_answers_in_script_order() {
        let server = StandIn::scripted(vec![
            Reply::json(201, serde_json::json!({"ok": true})).with_header("x-one", "1"),
            Reply::status(503),
        ]);
        let first = exchange(
            server.port,
            "POST /a?b=x%20y+z&c HTTP/1.1\r\nHost: x\r\nX-Key: v\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert!(first.starts_with("HTTP/1.1 201"), "{first}");
        assert!(first.contains("x-one: 1"), "{first}");
        assert!(first.ends_with(r#"{"ok":true}"#), "{first}");
        let second = exchange(server.port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
        let third = exchange(server.port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(third.starts_with("HTTP/1.1 599"), "{third}");
        let seen = server.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            (
                seen[0].method.as_str(),
                seen[0].path(),
                seen[0].target.as_str()
            ),
            ("POST", "/a", "/a?b=x%20y+z&c")
        );
        assert_eq!(seen[0].query("b").as_deref(), Some("x y z"));
        assert_eq!(seen[0].query("c").as_deref(), Some(""));
        assert_eq!(seen[0].query("d"), None);
        assert_eq!(seen[0].header("x-key"), Some("v"));
        assert_eq!(seen[0].body, b"hello");
    }

    #[test]
    fn a_delayed_reply_waits_and_each_request_has_its_time() {
        let server = StandIn::start(|request| match request.path() {
            "/slow" => Reply::status(200).delayed(Duration::from_millis(300)),
            _ => Reply::status(204),
        });
        let started = Instant::now();
        let slow = exchange(
            server.port,
            "GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let waited = started.elapsed();
        assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
        assert!(
            waited >= Duration::from_millis(300),
            "answered after {waited:?}, the reply said 300ms"
        );
        let fast = exchange(
            server.port,
            "GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(fast.starts_with("HTTP/1.1 204"), "{fast}");
        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        assert!(started <= seen[0].at, "{seen:?}");
        let gap = seen[1].at.duration_since(seen[0].at);
        assert!(
            gap >= Duration::from_millis(300),
            "the second request came {gap:?} after the first, which took 300ms to answer"
        );
    }

    #[test]
    fn a_streamed_body_arrives_whole() {
        let server = StandIn::start(|_| {
            Reply::status(200).streamed((0..3).map(|i| format!("part{i};").into_bytes()))
        });
        let response = exchange(server.port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        // Chunked: each chunk's size line, then the chunk.
        assert_eq!(
            body,
            "6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n"
        );
    }
}
