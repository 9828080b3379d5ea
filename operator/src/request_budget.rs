//! How many requests the operator sends, and in which order when it must wait: a token bucket
//! that lets `burst` requests go at once and refills at `qps` a second, with two queues.
//!
//! Why two queues: a ready step waits for its Job's create (and for the reads and the record
//! write that come before it in a pass), while a status write is a view for people that the
//! next pass writes again anyway. When a thousand runs start together, a single first-come
//! queue put each run's Job behind every other run's status writes: the step-ready →
//! Job-created tail grew with the number of runs. Requests to a `status` subresource
//! therefore wait behind every other waiting request; within a queue it is first come, first
//! served. Why a burst: the same thousand runs need a few requests each at once and nothing
//! for minutes after; the API server's own priority and fairness guards it from the burst,
//! the rate holds a sustained load.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Request;
use kube::client::Body;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::buffer::Buffer;
use tower::{BoxError, Layer, Service};

/// Which queue a request waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// What work waits for: reads, Job creates and deletes, the run record.
    First,
    /// Writes to a `status` subresource.
    Status,
}

impl Class {
    /// The class of a request to `path` (`/apis/…/pipelineruns/x/status` is a status write).
    pub fn of(path: &str) -> Self {
        if path.trim_end_matches('/').ends_with("/status") {
            Self::Status
        } else {
            Self::First
        }
    }
}

/// A token bucket shared by every clone of the client it limits.
#[derive(Clone)]
pub struct Budget {
    state: Arc<Mutex<State>>,
}

struct State {
    qps: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Waiters, `First` before `Status`; a dropped receiver gives its turn to the next.
    waiting: [VecDeque<oneshot::Sender<()>>; 2],
    /// Whether a task hands out tokens to the waiters.
    pumping: bool,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
    }

    /// Hands the tokens there are to the waiters in order; whether any still wait.
    fn serve(&mut self) -> bool {
        for queue in &mut self.waiting {
            while self.tokens >= 1.0 {
                let Some(waiter) = queue.pop_front() else {
                    break;
                };
                if waiter.send(()).is_ok() {
                    self.tokens -= 1.0;
                }
            }
        }
        self.waiting.iter().any(|q| !q.is_empty())
    }

    /// How long until the next token.
    fn until_next(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / self.qps).max(0.001))
    }
}

impl Budget {
    /// `qps` requests a second after a first `burst` (both at least 1).
    pub fn new(qps: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            state: Arc::new(Mutex::new(State {
                qps: f64::from(qps.max(1)),
                burst,
                tokens: burst,
                refilled: Instant::now(),
                waiting: [VecDeque::new(), VecDeque::new()],
                pumping: false,
            })),
        }
    }

    /// Waits for a token: at once when one is left and nobody of the same or a prior class
    /// waits, else in the class's queue.
    pub async fn take(&self, class: Class) {
        let receiver = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.refill(Instant::now());
            let ahead = match class {
                Class::First => state.waiting[0].len(),
                Class::Status => state.waiting[0].len() + state.waiting[1].len(),
            };
            if ahead == 0 && state.tokens >= 1.0 {
                state.tokens -= 1.0;
                return;
            }
            let (sender, receiver) = oneshot::channel();
            state.waiting[class as usize].push_back(sender);
            if !state.pumping {
                state.pumping = true;
                tokio::spawn(pump(self.state.clone()));
            }
            receiver
        };
        // A pump that is gone (the runtime stopping) lets the request go rather than hang.
        let _ = receiver.await;
    }
}

/// Hands out tokens as they are earned until nobody waits.
async fn pump(state: Arc<Mutex<State>>) {
    loop {
        let wait = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            state.refill(Instant::now());
            if !state.serve() {
                state.pumping = false;
                return;
            }
            state.until_next()
        };
        tokio::time::sleep(wait).await;
    }
}

/// The layer that makes a client's requests take from a [`Budget`].
pub struct BudgetLayer(pub Budget);

/// Requests wait for their token concurrently, each in its caller's task, so the service
/// under the layer is shared through a buffer of its own (kube's client stack is not `Clone`).
const BUFFERED: usize = 1024;

impl<S> Layer<S> for BudgetLayer
where
    S: Service<Request<Body>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Service = Budgeted<Buffer<Request<Body>, S::Future>>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner: Buffer::new(inner, BUFFERED),
            budget: self.0.clone(),
        }
    }
}

/// A service whose requests wait for a token of their class first.
#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Budget,
}

impl<S, B> Service<Request<B>> for Budgeted<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service polled ready is the one that sends; a clone takes its place.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let budget = self.budget.clone();
        let class = Class::of(request.uri().path());
        Box::pin(async move {
            budget.take(class).await;
            ready.call(request).await
        })
    }
}

#[cfg(test)]
mod tests;
