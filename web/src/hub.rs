//! Every followed run's log, and the followers of each: the one place messages enter (from
//! the runs' status and step telemetry on a cluster, from the engine in a local run) and
//! leave (to WebSocket followers).
//! Memory is bounded: each run keeps at most `log_length` messages and `log_bytes` of their
//! JSON, a follower's queue is `buffer` messages (a follower that falls further behind is
//! dropped with a reason), and followers are limited per run and in total.
//! A follower's queue holds weak references: the bodies live in the run's log only, so a
//! slow follower never keeps more than the log's bytes alive; once the log evicted a
//! message the follower has not read yet, the follower is closed as too slow.
//! A run's queue exists only while someone follows it (freed by the next flush after its
//! last follower left): a queue is `buffer` slots allocated up front (some 10 KiB at 256),
//! and a gateway knows every run of its namespaces, most of them finished and followed by
//! no one; with 10,000 runs in history the queues were most of the operator's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::broadcast;

use crate::log::{Bound, RunLog, Start};
use synqx_api::gateway::{Body, LogLine, Message, RunView, StepLog};

/// The bounds of the hub's memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages kept per run for `?since=`.
    pub log_length: usize,
    /// Bytes of JSON kept per run for `?since=` (one log report can be a MiB of lines).
    pub log_bytes: u64,
    /// Messages queued for one follower before it is dropped as too slow.
    pub buffer: usize,
    /// Followers of one run at once.
    pub followers_per_run: usize,
    /// Followers of all runs at once.
    pub followers: usize,
}

/// [`Limits::log_bytes`] by default: a verbose step's last few seconds of lines, so a
/// follower that reconnects quickly loses nothing, at a bounded cost per run.
pub const DEFAULT_LOG_BYTES: u64 = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            log_length: 512,
            log_bytes: DEFAULT_LOG_BYTES,
            buffer: 256,
            followers_per_run: 100,
            followers: 1000,
        }
    }
}

type RunKey = (String, String);

struct Entry {
    log: RunLog,
    /// The followers' queue, while there are followers.
    tx: Option<broadcast::Sender<Weak<Message>>>,
}

impl Entry {
    /// Hands `message` to the followers, if any.
    fn send(&self, message: &Arc<Message>) {
        if let Some(tx) = &self.tx {
            // No follower left is not an error: the log keeps the message for resumes.
            let _ = tx.send(Arc::downgrade(message));
        }
    }

    fn followers(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }
}

/// The logs of the runs a gateway serves.
pub struct Hub {
    /// The first sequence number of this process: microseconds since the Unix epoch at
    /// start, so numbers of an earlier process (or another operator replica started
    /// earlier) are older than anything kept here and get a snapshot marked `notKept`.
    /// Below 2^53, so JavaScript reads them exactly.
    base: u64,
    limits: Limits,
    runs: Mutex<HashMap<RunKey, Entry>>,
    followers: Arc<AtomicUsize>,
}

/// Why a run cannot be followed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("PipelineRun {namespace}/{name} is not known to this gateway (yet)")]
    NotFound { namespace: String, name: String },
    #[error("{count} followers of PipelineRun {namespace}/{name} already: try again later")]
    RunFull {
        namespace: String,
        name: String,
        count: usize,
    },
    #[error("this gateway serves {count} followers already: try again later")]
    Full { count: usize },
}

/// A follower's start and queue.
pub struct Follow {
    pub start: Start,
    /// The messages after the start; one that no longer upgrades was evicted from the run's
    /// log before this follower read it.
    pub rx: broadcast::Receiver<Weak<Message>>,
    _counted: Counted,
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    pub fn new(limits: Limits) -> Self {
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self::with_base(limits, base)
    }

    pub fn with_base(limits: Limits, base: u64) -> Self {
        Self {
            base,
            limits,
            runs: Mutex::default(),
            followers: Arc::default(),
        }
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<RunKey, Entry>> {
        // A panic while holding the lock leaves whole entries: the map stays usable.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a run's current state: its transitions go to its followers at once.
    pub fn observe(&self, view: RunView) {
        let key = (view.namespace.clone(), view.name.clone());
        let mut runs = self.runs();
        match runs.get_mut(&key) {
            Some(entry) => {
                for message in entry.log.observe(view) {
                    entry.send(&message);
                }
            }
            None => {
                let bound = Bound {
                    messages: self.limits.log_length,
                    bytes: self.limits.log_bytes,
                };
                let log = RunLog::new(view, self.base, bound);
                runs.insert(key, Entry { log, tx: None });
            }
        }
    }

    /// Lines a step attempt logged, as one message to the run's followers. A run the hub does
    /// not know (deleted, or not observed yet) drops them: there is no one to follow it.
    pub fn log(&self, namespace: &str, name: &str, step: &str, attempt: u32, lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        let mut runs = self.runs();
        if let Some(entry) = runs.get_mut(&(namespace.to_string(), name.to_string())) {
            let message = entry.log.push(Body::Log {
                step: step.to_string(),
                attempt,
                lines,
            });
            entry.send(&message);
        }
    }

    /// The log lines still kept of a run (from its last messages), by step attempt; `None`
    /// when the hub does not follow the run.
    pub fn kept_logs(&self, namespace: &str, name: &str) -> Option<Vec<StepLog>> {
        self.runs()
            .get(&(namespace.to_string(), name.to_string()))
            .map(|entry| entry.log.logs())
    }

    /// The current view of every run of `namespace` the hub follows, newest first.
    pub fn runs_of(&self, namespace: &str) -> Vec<RunView> {
        let mut views: Vec<RunView> = self
            .runs()
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, entry)| entry.log.view().clone())
            .collect();
        views.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        views
    }

    /// Sends each run's pending counters as one message, and frees the queues whose last
    /// follower has left (a finished run gets no message that could do it); called once a
    /// second.
    pub fn flush_counters(&self) {
        for entry in self.runs().values_mut() {
            if let Some(message) = entry.log.flush_counters() {
                entry.send(&message);
            }
            if entry.followers() == 0 {
                entry.tx = None;
            }
        }
    }

    /// Forgets a deleted run: its followers' streams end.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.runs()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Forgets every run of `namespace` (every namespace when `None`) not in `keep`: the runs
    /// deleted while a watch was down.
    pub fn retain(&self, namespace: Option<&str>, keep: &std::collections::HashSet<RunKey>) {
        self.runs()
            .retain(|key, _| namespace.is_some_and(|ns| ns != key.0) || keep.contains(key));
    }

    /// Starts following a run after `since`: the start and the queue are taken under one
    /// lock, so nothing is lost or repeated between them.
    pub fn follow(
        &self,
        namespace: &str,
        name: &str,
        since: Option<u64>,
    ) -> Result<Follow, FollowError> {
        let mut runs = self.runs();
        let entry = runs
            .get_mut(&(namespace.to_string(), name.to_string()))
            .ok_or_else(|| FollowError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let count = entry.followers();
        if count >= self.limits.followers_per_run {
            return Err(FollowError::RunFull {
                namespace: namespace.into(),
                name: name.into(),
                count,
            });
        }
        let total = self.followers.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(self.followers.clone());
        if total >= self.limits.followers {
            return Err(FollowError::Full { count: total });
        }
        let buffer = self.limits.buffer.max(1);
        let tx = entry.tx.get_or_insert_with(|| broadcast::channel(buffer).0);
        Ok(Follow {
            rx: tx.subscribe(),
            start: entry.log.start(since),
            _counted: counted,
        })
    }

    /// Followers connected now.
    #[cfg(test)]
    pub fn followers(&self) -> usize {
        self.followers.load(Ordering::SeqCst)
    }

    /// Runs with a followers' queue allocated.
    #[cfg(test)]
    fn queues(&self) -> usize {
        self.runs().values().filter(|e| e.tx.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use synqx_api::run::{PipelineRunStatus, RunPhase};

    use super::*;

    fn view(name: &str, phase: RunPhase) -> RunView {
        RunView {
            name: name.into(),
            namespace: "ns".into(),
            status: PipelineRunStatus {
                phase: Some(phase),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn followers_are_limited_per_run_and_in_total() {
        let limits = Limits {
            followers_per_run: 2,
            followers: 3,
            ..Limits::default()
        };
        let hub = Hub::with_base(limits, 0);
        hub.observe(view("a", RunPhase::Running));
        hub.observe(view("b", RunPhase::Running));
        let a1 = hub.follow("ns", "a", None);
        let a2 = hub.follow("ns", "a", None);
        assert!(a1.is_ok() && a2.is_ok());
        assert!(matches!(
            hub.follow("ns", "a", None),
            Err(FollowError::RunFull { count: 2, .. })
        ));
        let b1 = hub.follow("ns", "b", None);
        assert!(b1.is_ok());
        assert!(matches!(
            hub.follow("ns", "b", None),
            Err(FollowError::Full { count: 3 })
        ));
        drop(a1);
        assert_eq!(hub.followers(), 2);
        assert!(hub.follow("ns", "b", None).is_ok());
        assert!(matches!(
            hub.follow("ns", "c", None),
            Err(FollowError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_follower_gets_each_transition_once_and_a_deleted_run_ends_its_stream() {
        let hub = Hub::with_base(Limits::default(), 10);
        hub.observe(view("a", RunPhase::Pending));
        let Ok(mut follow) = hub.follow("ns", "a", None) else {
            panic!("the run is known")
        };
        assert!(matches!(&follow.start, Start::Snapshot(m) if m.seq == 10));
        hub.observe(view("a", RunPhase::Running));
        hub.observe(view("a", RunPhase::Running));
        hub.observe(view("a", RunPhase::Succeeded));
        let mut seqs = Vec::new();
        for _ in 0..2 {
            match follow.rx.recv().await {
                Ok(m) => seqs.push(m.upgrade().map(|m| m.seq)),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seqs, [Some(11), Some(12)]);
        hub.forget("ns", "a");
        assert!(matches!(
            follow.rx.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_queue_exists_only_while_the_run_is_followed() {
        let hub = Hub::with_base(Limits::default(), 0);
        for name in ["a", "b", "c"] {
            hub.observe(view(name, RunPhase::Succeeded));
        }
        assert_eq!(hub.queues(), 0, "no one follows a run yet");

        let Ok(first) = hub.follow("ns", "a", None) else {
            panic!("the run is known")
        };
        assert_eq!(hub.queues(), 1);
        drop(first);
        // The queue goes with the next flush after the last follower left, with or without
        // a message.
        hub.flush_counters();
        assert_eq!(hub.queues(), 0);

        // A new follower gets a new queue, and the messages after its start.
        let Ok(mut again) = hub.follow("ns", "a", None) else {
            panic!("the run is known")
        };
        let Start::Snapshot(start) = &again.start else {
            panic!("a follower without `since` starts from a snapshot")
        };
        let after = start.seq;
        hub.observe(view("a", RunPhase::Failed));
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), again.rx.recv());
        match received.await {
            Ok(Ok(m)) => assert_eq!(m.upgrade().map(|m| m.seq), Some(after + 1)),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the new follower got no message within 5 s"),
        }
    }

    #[test]
    fn retain_forgets_only_missing_runs_of_the_namespace() {
        let hub = Hub::with_base(Limits::default(), 0);
        hub.observe(view("a", RunPhase::Running));
        hub.observe(view("b", RunPhase::Running));
        let keep = [("ns".to_string(), "a".to_string())].into_iter().collect();
        hub.retain(Some("other"), &keep);
        assert!(hub.follow("ns", "b", None).is_ok());
        hub.retain(Some("ns"), &keep);
        assert!(hub.follow("ns", "a", None).is_ok());
        assert!(hub.follow("ns", "b", None).is_err());
    }

    fn line(text: &str) -> Vec<LogLine> {
        vec![LogLine {
            time: "2026-12-02T07:30:00.000Z".into(),
            level: None,
            text: text.into(),
        }]
    }

    /// The seq and line of a log message.
    fn text(message: &Message) -> (u64, String) {
        match &message.body {
            Body::Log { lines, .. } => (message.seq, lines[0].text.clone()),
            other => panic!("a log message was expected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_follower_holds_no_evicted_message_and_resumes_with_a_snapshot() {
        let texts: Vec<String> = (0..8).map(|i| format!("{i}").repeat(10_000)).collect();
        // Room for about three of these messages, far fewer than the queue's count.
        let limits = Limits {
            log_bytes: 35_000,
            ..Limits::default()
        };
        let hub = Hub::with_base(limits, 0);
        hub.observe(view("a", RunPhase::Running));
        let Ok(mut slow) = hub.follow("ns", "a", None) else {
            panic!("the run is known")
        };
        for text in &texts {
            hub.log("ns", "a", "s", 1, line(text));
        }
        // The queue does not keep the evicted messages alive: the first five are gone...
        let mut queued = Vec::new();
        for _ in 0..texts.len() {
            match slow.rx.recv().await {
                Ok(m) => queued.push(m.upgrade().as_deref().map(text)),
                Err(e) => panic!("{e}"),
            }
        }
        let kept: Vec<Option<(u64, String)>> = (1..=8)
            .map(|seq| (seq > 5).then(|| (seq, texts[seq as usize - 1].clone())))
            .collect();
        assert_eq!(queued, kept);
        // ...so the follower resumes after the last one it read (none): a snapshot marked
        // notKept, with the lines still kept.
        let Ok(resumed) = hub.follow("ns", "a", Some(0)) else {
            panic!("the run is known")
        };
        let Start::Snapshot(snapshot) = &resumed.start else {
            panic!("{:?}", resumed.start)
        };
        let Body::Snapshot { reset, logs, .. } = &snapshot.body else {
            panic!("{snapshot:?}")
        };
        assert_eq!(*reset, Some(synqx_api::gateway::Reset::NotKept));
        assert_eq!(snapshot.seq, 8);
        let lines: Vec<&str> = logs
            .iter()
            .flat_map(|l| l.lines.iter().map(|l| l.text.as_str()))
            .collect();
        assert_eq!(lines, [&texts[5], &texts[6], &texts[7]]);
        // One that read up to 5 loses nothing.
        let Ok(Follow {
            start: Start::Replay(replay),
            ..
        }) = hub.follow("ns", "a", Some(5))
        else {
            panic!("since=5 is still kept")
        };
        let replay: Vec<(u64, String)> = replay.iter().map(|m| text(m)).collect();
        assert_eq!(
            replay,
            kept[5..].iter().flatten().cloned().collect::<Vec<_>>()
        );
    }
}
