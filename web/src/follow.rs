//! One WebSocket follower of a run: its start (a snapshot, or the messages after `since`),
//! then every new message that passes its step filter, as JSON text frames. A follower that
//! falls `buffer` messages or the run's log bytes behind, whose right to read is withdrawn
//! ([`Recheck`]), or whose run is deleted is closed with a reason saying so and how to
//! resume.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, close_code};
use synqx_api::gateway::Message;
use tokio::sync::broadcast::error::RecvError;

use crate::filter::StepFilter;
use crate::hub::Follow;
use crate::log::Start;

/// How long one frame may take to leave before the follower is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a follower is closed: a WebSocket close code and its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// Asks again, every [`Recheck::every`], whether a follower may go on reading (its token may
/// expire or its right be revoked while it follows).
pub trait Recheck: Send + 'static {
    fn every(&self) -> Duration;
    /// `Some` closes the follower; `None` keeps it (also when the answer is not known yet).
    fn check(&self) -> impl Future<Output = Option<Close>> + Send;
}

/// The recheck of a follower whose right cannot change: a local run on loopback.
pub struct Always;

impl Recheck for Always {
    fn every(&self) -> Duration {
        // Never due: the tick is disabled for this follower.
        Duration::MAX
    }

    async fn check(&self) -> Option<Close> {
        None
    }
}

enum End {
    Closed,
    Close(Close),
}

/// Streams to `socket` until the follower leaves or is closed.
pub async fn stream<R: Recheck>(
    mut socket: WebSocket,
    follow: Follow,
    filter: StepFilter,
    recheck: R,
) {
    let end = serve(&mut socket, follow, &filter, &recheck).await;
    if let End::Close(Close { code, reason }) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(cut(&reason, 123)),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Frame::Close(Some(frame)))).await;
    }
}

async fn serve<R: Recheck>(
    socket: &mut WebSocket,
    follow: Follow,
    filter: &StepFilter,
    recheck: &R,
) -> End {
    let Follow { start, mut rx, .. } = follow;
    let mut last = 0;
    let first = match start {
        Start::Snapshot(snapshot) => vec![Arc::from(snapshot)],
        Start::Replay(messages) => messages,
    };
    for message in first {
        last = message.seq;
        if let Err(end) = send(socket, filter, &message).await {
            return end;
        }
    }
    let every = recheck.every();
    let rechecks = every != Duration::MAX;
    let first_check = tokio::time::Instant::now()
        .checked_add(every)
        .unwrap_or_else(tokio::time::Instant::now);
    let mut tick = tokio::time::interval_at(first_check, every.min(Duration::from_secs(86_400)));
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(queued) => {
                    let message = match upgrade(&queued, last) {
                        Ok(message) => message,
                        Err(close) => return End::Close(close),
                    };
                    last = message.seq;
                    if let Err(end) = send(socket, filter, &message).await {
                        return end;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    return End::Close(Close {
                        code: close_code::POLICY,
                        reason: format!(
                            "too slow: {missed} messages behind; reconnect with since={last}"
                        ),
                    });
                }
                Err(RecvError::Closed) => {
                    return End::Close(Close {
                        code: close_code::NORMAL,
                        reason: "the PipelineRun was deleted".into(),
                    });
                }
            },
            _ = tick.tick(), if rechecks => {
                if let Some(close) = recheck.check().await {
                    return End::Close(close);
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

/// A queued message, unless the run's log evicted it before this follower read it: the
/// follower is that far behind, and resumes from the log (or a snapshot) by reconnecting.
fn upgrade(message: &Weak<Message>, last: u64) -> Result<Arc<Message>, Close> {
    message.upgrade().ok_or_else(|| Close {
        code: close_code::POLICY,
        reason: format!(
            "too slow: the messages after {last} are no longer kept; reconnect with since={last}"
        ),
    })
}

async fn send(socket: &mut WebSocket, filter: &StepFilter, message: &Message) -> Result<(), End> {
    let Some(visible) = filter.apply(message) else {
        return Ok(());
    };
    let json = match serde_json::to_string(&visible) {
        Ok(json) => json,
        Err(error) => {
            return Err(End::Close(Close {
                code: close_code::ERROR,
                reason: format!("message {} cannot be encoded: {error}", message.seq),
            }));
        }
    };
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Frame::Text(json.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Closed),
        Err(_) => Err(End::Close(Close {
            code: close_code::POLICY,
            reason: format!(
                "too slow: a message took over {}s to send; reconnect with since={}",
                SEND_TIMEOUT.as_secs(),
                message.seq.saturating_sub(1)
            ),
        })),
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
    use std::sync::Arc;

    use axum::extract::ws::close_code;
    use synqx_api::gateway::{Body, Message};

    #[test]
    fn a_message_evicted_before_it_is_read_closes_the_follower_naming_its_since() {
        let message = Arc::new(Message {
            seq: 8,
            body: Body::Counters { steps: vec![] },
        });
        let queued = Arc::downgrade(&message);
        assert_eq!(super::upgrade(&queued, 7).ok(), Some(message.clone()));
        drop(message);
        let Err(close) = super::upgrade(&queued, 7) else {
            panic!("an evicted message cannot be read")
        };
        assert_eq!(close.code, close_code::POLICY);
        assert!(
            close.reason.ends_with("reconnect with since=7"),
            "{}",
            close.reason
        );
        // A reason fits a close frame.
        assert!(close.reason.len() <= 123, "{}", close.reason);
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(super::cut("ab€cd", 4), "ab");
        assert_eq!(super::cut("abc", 123), "abc");
    }
}
