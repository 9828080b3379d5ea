//! One WebSocket follower of a run: its start (a snapshot, or the messages after `since`),
//! then every new message that passes its step filter, as JSON text frames. A follower that
//! falls `buffer` messages behind, whose token stops being valid, or whose run is deleted is
//! closed with a reason saying so and how to resume.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, close_code};
use synqx_api::gateway::{CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED};
use tokio::sync::broadcast::error::RecvError;

use super::Gateway;
use super::auth::{self, Access, Denied};
use super::hub::Follow;
use super::log::Start;
use super::message::{Message, StepFilter};

/// How long one frame may take to leave before the follower is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a follower's task needs.
pub struct Follower {
    pub gateway: Arc<Gateway>,
    pub follow: Follow,
    pub filter: StepFilter,
    pub token: String,
    pub access: Access,
}

enum End {
    Closed,
    Close(u16, String),
}

/// Streams to `socket` until the follower leaves or is closed.
pub async fn stream(mut socket: WebSocket, follower: Follower) {
    let end = serve(&mut socket, follower).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(cut(&reason, 123)),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Frame::Close(Some(frame)))).await;
    }
}

async fn serve(socket: &mut WebSocket, follower: Follower) -> End {
    let Follower {
        gateway,
        follow: Follow { start, mut rx, .. },
        filter,
        token,
        access,
    } = follower;
    let mut last = 0;
    let first = match start {
        Start::Snapshot(snapshot) => vec![Arc::from(snapshot)],
        Start::Replay(messages) => messages,
    };
    for message in first {
        last = message.seq;
        if let Err(end) = send(socket, &filter, &message).await {
            return end;
        }
    }
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + gateway.recheck,
        gateway.recheck,
    );
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(message) => {
                    last = message.seq;
                    if let Err(end) = send(socket, &filter, &message).await {
                        return end;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    return End::Close(
                        close_code::POLICY,
                        format!("too slow: {missed} messages behind; reconnect with since={last}"),
                    );
                }
                Err(RecvError::Closed) => {
                    return End::Close(close_code::NORMAL, "the PipelineRun was deleted".into());
                }
            },
            _ = recheck.tick() => match auth::authorize(&gateway.client, &token, &access).await {
                Ok(_) => {}
                Err(denied @ Denied::Unauthenticated(_)) => {
                    return End::Close(CLOSE_UNAUTHORIZED, denied.to_string());
                }
                Err(denied @ Denied::Forbidden { .. }) => {
                    return End::Close(CLOSE_FORBIDDEN, denied.to_string());
                }
                // The API server is away: keep the follower, ask again at the next tick.
                Err(error @ Denied::Unavailable { .. }) => {
                    tracing::warn!(%error, "re-reviewing a follower's token failed");
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => return End::Closed,
                // Pings are answered by the socket; followers send nothing else we read.
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send(socket: &mut WebSocket, filter: &StepFilter, message: &Message) -> Result<(), End> {
    let Some(visible) = filter.apply(message) else {
        return Ok(());
    };
    let json = match serde_json::to_string(&visible) {
        Ok(json) => json,
        Err(error) => {
            return Err(End::Close(
                close_code::ERROR,
                format!("message {} cannot be encoded: {error}", message.seq),
            ));
        }
    };
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Frame::Text(json.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Closed),
        Err(_) => Err(End::Close(
            close_code::POLICY,
            format!(
                "too slow: a message took over {}s to send; reconnect with since={}",
                SEND_TIMEOUT.as_secs(),
                message.seq.saturating_sub(1)
            ),
        )),
    }
}

/// `text` cut to at most `max` bytes on a character boundary (a close reason's limit).
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(super::cut("ab€cd", 4), "ab");
        assert_eq!(super::cut("abc", 123), "abc");
    }
}
