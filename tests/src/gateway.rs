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
/// The longest any one request or message may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `GET path` with `token` (none: no Authorization header): the status and the JSON body.
pub async fn get(path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", PORT)).await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} on the gateway took over {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("GET {path} on the gateway (127.0.0.1:{PORT}): {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP answer: {response}"));
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("GET {path}: the body is not JSON ({e}): {body}"));
    (status, json)
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
}

/// The next message of a watch (pings and pongs skipped); fails after [`TIMEOUT`].
pub async fn next(socket: &mut Socket) -> Next {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message from the gateway within {TIMEOUT:?}"));
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
