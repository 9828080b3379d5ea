//! A client of the operator's gateway as the tests reach it: the operator pod of the
//! process kubelet shares the host's network, so its gateway listens on host port 8081
//! (`gateway.port` of the chart). Every call is bounded in time.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use synqx_api::gateway::{BEARER_PROTOCOL, Message, PROTOCOL};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cluster::Cluster;

/// The gateway's port on the host (the chart's default `gateway.port`).
pub const PORT: u16 = 8081;
/// The longest any one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a watch may stay silent: a message comes only when the run moves, and a
/// step's pod may take long to start on a loaded machine (as long as a run may take).
pub const SILENCE: Duration = crate::runs::RUN_TIMEOUT;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `GET path` with `token` (none: no Authorization header): the status and the JSON body.
pub async fn get(path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = request("GET", path, token, None).await;
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: the body is not JSON ({e}): {body}"));
    (status, json)
}

/// `POST path` of a JSON `body` with `token`: the status and the JSON body (`null` when
/// empty, as a 204 is).
pub async fn post(path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let (status, answer) = request("POST", path, token, Some(body)).await;
    if answer.trim().is_empty() {
        return (status, serde_json::Value::Null);
    }
    let json = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("POST {path}: the answer is not JSON ({e}): {answer}"));
    (status, json)
}

/// One HTTP/1.0 exchange with the gateway: the status and the body.
async fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", PORT)).await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let content = body
            .map(|b| {
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    b.len()
                )
            })
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}{content}\r\n{}",
            body.unwrap_or_default()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on the gateway took over {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{method} {path} on the gateway (127.0.0.1:{PORT}): {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {response}"));
    (status, body.to_string())
}

/// How a watch sends its token.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    Header(&'a str),
    Subprotocol(&'a str),
}

/// The URL path of a run's watch, with its query.
pub fn watch_path(namespace: &str, run: &str, query: &str) -> String {
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("/api/v1/namespaces/{namespace}/pipelineruns/{run}/watch{query}")
}

/// Opens a watch: the socket and the subprotocol the gateway selected, or the refusal's
/// HTTP status and body.
pub async fn connect(
    path: &str,
    auth: Auth<'_>,
) -> Result<(Socket, Option<String>), (u16, String)> {
    let url = format!("ws://127.0.0.1:{PORT}{path}");
    let mut request = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (authorization, protocols) = match auth {
        Auth::Header(token) => (Some(format!("Bearer {token}")), PROTOCOL.to_string()),
        Auth::Subprotocol(token) => {
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
            (None, format!("{PROTOCOL}, {BEARER_PROTOCOL}{encoded}"))
        }
    };
    let headers = request.headers_mut();
    if let Some(value) = authorization {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocols).unwrap_or_else(|e| panic!("{e}")),
    );
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("connecting to {url} took over {TIMEOUT:?}"),
        Ok(Ok((socket, response))) => {
            let chosen = response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            Ok((socket, chosen))
        }
        Ok(Err(WsError::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(body).into_owned(),
            ))
        }
        Ok(Err(e)) => panic!("connecting to {url}: {e}"),
    }
}

/// What the next frame of a watch was.
#[derive(Debug)]
pub enum Next {
    Message(Box<Message>),
    Closed(Option<CloseFrame>),
    /// Nothing within [`SILENCE`].
    Silent,
}

/// The next message of a watch (pings and pongs skipped), waiting at most [`SILENCE`].
pub async fn next(socket: &mut Socket) -> Next {
    loop {
        let Ok(frame) = tokio::time::timeout(SILENCE, socket.next()).await else {
            return Next::Silent;
        };
        match frame {
            Some(Ok(Frame::Text(text))) => {
                let message: Message = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("the gateway sent {text}: {e}"));
                return Next::Message(Box::new(message));
            }
            Some(Ok(Frame::Close(close))) => return Next::Closed(close),
            None => return Next::Closed(None),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("reading the watch: {e}"),
        }
    }
}

/// Waits until the operator pod that holds the leader Lease serves the gateway. Process
/// pods share the host's network, so during a rollout the readiness probe may reach the old
/// pod while the new one waits to bind the ports it held; the new pod binds the gateway's
/// port before it asks for the Lease, so once it holds the Lease the port is its own.
pub async fn wait_until_served(cluster: &Cluster) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(cluster.client().await, "synqx-system");
    crate::cluster::wait_until(
        Duration::from_secs(120),
        "the operator pod holding the Lease to serve the gateway",
        || async {
            let Some(holder) = crate::own_operator::lease_holder(cluster).await else {
                return false;
            };
            let live = pods
                .get_opt(&holder)
                .await
                .unwrap_or_else(|e| panic!("reading pod synqx-system/{holder}: {e}"))
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none());
            live && TcpStream::connect(("127.0.0.1", PORT)).await.is_ok()
        },
    )
    .await;
}

/// A REST API on loopback whose `/records` answers only once opened: a step that reads it
/// stays Running until the test lets it finish, so followers can connect first however
/// slow the machine is. Every other path answers at once (a Connection's check).
pub struct Gate {
    pub port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("binding the gate's port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the gate's address: {e}"))
            .port();
        let (open, opened) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let gated = String::from_utf8_lossy(&head).contains(" /records");
                    if gated && opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let body = r#"[{"id":1,"name":"a"},{"id":2,"name":"b"}]"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { port, open }
    }

    /// Lets every waiting and later request of `/records` through.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// A `rest` Connection `name` to this API, then a `---` separator.
    pub fn connection(&self, name: &str) -> String {
        crate::runs::connection(
            name,
            &format!(
                "rest: {{baseUrl: \"http://127.0.0.1:{}/\", timeout: 5m}}",
                self.port
            ),
        )
    }
}
