//! The bounded log of one run's messages: what a follower resumes from with `?since=`. The
//! log keeps the run's current view (the snapshot) and its last messages, at most
//! [`Bound::messages`] of them and [`Bound::bytes`] of their JSON; older ones are evicted,
//! and a `since` before them gets a fresh snapshot marked as such, never a silent gap.
//! Counters are coalesced: changes wait in `pending` until [`RunLog::flush_counters`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use synqx_api::run::StepStatus;

use synqx_api::gateway::{Body, Message, Reset, RunView, StepLog};

/// Where a follower starts.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// A snapshot as of the newest message, then everything after it.
    Snapshot(Box<Message>),
    /// The messages after `since`, then everything after them (possibly none yet).
    Replay(Vec<Arc<Message>>),
}

/// How much of a run's messages its log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Messages kept, at most (at least 1).
    pub messages: usize,
    /// Bytes of the kept messages' JSON, at most; the newest message is kept whatever its
    /// size, so a follower always gets what was just sent.
    pub bytes: u64,
}

/// One run's current view and last messages.
#[derive(Debug)]
pub struct RunLog {
    view: RunView,
    /// The kept messages with the size of each one's JSON.
    messages: VecDeque<(Arc<Message>, u64)>,
    /// The sum of the kept messages' sizes.
    bytes: u64,
    /// Sequence number of the newest message (or of the first snapshot, before any).
    last_seq: u64,
    bound: Bound,
    pending: BTreeMap<String, StepStatus>,
}

impl RunLog {
    /// A log whose first message will be `base + 1`; `base` differs between gateway
    /// processes (see [`crate::hub::Hub::new`]), so a `since` numbered by another process
    /// falls outside what this one keeps.
    pub fn new(view: RunView, base: u64, bound: Bound) -> Self {
        Self {
            view,
            messages: VecDeque::new(),
            bytes: 0,
            last_seq: base,
            bound: Bound {
                messages: bound.messages.max(1),
                ..bound
            },
            pending: BTreeMap::new(),
        }
    }

    /// The run as of the newest message.
    pub fn view(&self) -> &RunView {
        &self.view
    }

    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The bytes of JSON the log keeps now.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes the run's new state: returns the messages of its transitions (appended to the
    /// log); counter changes wait for [`Self::flush_counters`].
    pub fn observe(&mut self, view: RunView) -> Vec<Arc<Message>> {
        let (bodies, counters) = diff(&self.view, &view);
        self.view = view;
        for moved in &bodies {
            // A step's transition carries its counters: nothing of it is pending any more.
            if let Body::Step { step, .. } = moved {
                self.pending.remove(&step.name);
            }
        }
        for c in counters {
            self.pending.insert(c.name.clone(), c);
        }
        bodies.into_iter().map(|b| self.push(b)).collect()
    }

    /// The counters that changed since the last counters message, as one message.
    pub fn flush_counters(&mut self) -> Option<Arc<Message>> {
        if self.pending.is_empty() {
            return None;
        }
        let steps = std::mem::take(&mut self.pending).into_values().collect();
        Some(self.push(Body::Counters { steps }))
    }

    /// Appends a message, evicting the oldest beyond the bound.
    pub fn push(&mut self, body: Body) -> Arc<Message> {
        self.last_seq = self.last_seq.saturating_add(1);
        let message = Arc::new(Message {
            seq: self.last_seq,
            body,
        });
        let size = json_size(&message);
        self.messages.push_back((message.clone(), size));
        self.bytes = self.bytes.saturating_add(size);
        while self.messages.len() > 1
            && (self.messages.len() > self.bound.messages || self.bytes > self.bound.bytes)
        {
            if let Some((_, evicted)) = self.messages.pop_front() {
                self.bytes = self.bytes.saturating_sub(evicted);
            }
        }
        message
    }

    /// Where a follower that saw everything up to `since` starts.
    pub fn start(&self, since: Option<u64>) -> Start {
        let Some(since) = since else {
            return Start::Snapshot(self.snapshot(None));
        };
        if since > self.last_seq {
            return Start::Snapshot(self.snapshot(Some(Reset::Unknown)));
        }
        // The message right after `since` must still be here (or `since` is the newest).
        let oldest = self
            .messages
            .front()
            .map_or(self.last_seq.saturating_add(1), |(m, _)| m.seq);
        if since.saturating_add(1) < oldest {
            return Start::Snapshot(self.snapshot(Some(Reset::NotKept)));
        }
        Start::Replay(
            self.messages
                .iter()
                .filter(|(m, _)| m.seq > since)
                .map(|(m, _)| m.clone())
                .collect(),
        )
    }

    fn snapshot(&self, reset: Option<Reset>) -> Box<Message> {
        Box::new(Message {
            seq: self.last_seq,
            body: Body::Snapshot {
                reset,
                run: self.view.clone(),
                logs: self.logs(),
            },
        })
    }

    /// The log lines among the kept messages, consecutive lines of one attempt together.
    pub fn logs(&self) -> Vec<StepLog> {
        let mut logs: Vec<StepLog> = Vec::new();
        for (message, _) in &self.messages {
            let Body::Log {
                step,
                attempt,
                lines,
            } = &message.body
            else {
                continue;
            };
            match logs.last_mut() {
                Some(last) if last.step == *step && last.attempt == *attempt => {
                    last.lines.extend(lines.iter().cloned());
                }
                _ => logs.push(StepLog {
                    step: step.clone(),
                    attempt: *attempt,
                    lines: lines.clone(),
                }),
            }
        }
        logs
    }
}

/// The size of `message` as a follower receives it: its JSON, counted without writing it.
fn json_size(message: &Message) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .saturating_add(u64::try_from(buf.len()).unwrap_or(u64::MAX));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A message that cannot be encoded is never sent either; it costs its count only.
    let _ = serde_json::to_writer(&mut count, message);
    count.0
}

/// What changed between two views of a run: the transition messages, in the order a
/// reader expects them (a run starts before its steps and ends after them), and the
/// counters of steps that only moved their counters.
pub fn diff(old: &RunView, new: &RunView) -> (Vec<Body>, Vec<StepStatus>) {
    let mut steps = Vec::new();
    let mut counters = Vec::new();
    for step in &new.status.steps {
        let before = old.status.steps.iter().find(|s| s.name == step.name);
        match before {
            Some(b) if !transitioned(b, step) => {
                if b.counters() != step.counters() {
                    counters.push(step.counters());
                }
            }
            _ => steps.push(Body::Step {
                from: before.and_then(|b| b.phase),
                step: step.clone(),
            }),
        }
    }
    let run = (old.status.phase != new.status.phase).then(|| Body::Run {
        from: old.status.phase,
        phase: new.status.phase,
        progress: new.status.progress.clone(),
        completion_time: new.status.completion_time.clone(),
        duration: new.status.duration.clone(),
    });
    let ends = new.status.phase.is_some_and(|p| p.is_finished());
    let bodies = match run {
        Some(run) if ends => steps.into_iter().chain([run]).collect(),
        Some(run) => [run].into_iter().chain(steps).collect(),
        None => steps,
    };
    (bodies, counters)
}

/// Whether a step's entry changed by more than its counters.
fn transitioned(old: &StepStatus, new: &StepStatus) -> bool {
    old.phase != new.phase
        || old.attempt != new.attempt
        || old.job_name != new.job_name
        || old.message != new.message
        || old.started_at != new.started_at
        || old.finished_at != new.finished_at
}

#[cfg(test)]
mod tests;
