//! A run whose step logs wait on a stalled store holds back only its own changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use synqx_api::gateway::LogLine;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus};
use synqx_web::Limits;
use tokio::sync::RwLock;

use super::*;
use crate::gateway::logs::gzip::decode;
use crate::gateway::logs::{DirStore, LogKey, LogStore, StoreError};

/// A folder whose appends wait while the test holds `gate` shut; `appends` counts the ones
/// that arrived (and so wait, if shut).
struct Stalling {
    dir: DirStore,
    gate: RwLock<()>,
    appends: AtomicUsize,
}

#[async_trait]
impl LogStore for Stalling {
    fn describe(&self) -> String {
        self.dir.describe()
    }
    async fn read(&self, key: &LogKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.dir.read(key).await
    }
    async fn resume(&self, key: &LogKey) -> Result<u64, StoreError> {
        self.dir.resume(key).await
    }
    async fn append(&self, key: &LogKey, member: Vec<u8>, end: u64) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let _open = self.gate.read().await;
        self.dir.append(key, member, end).await
    }
    async fn attempts(&self, namespace: &str, run: &str) -> Result<Vec<LogKey>, StoreError> {
        self.dir.attempts(namespace, run).await
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<Stalling>,
    logs: Arc<Logs>,
    hub: Arc<Hub>,
    finisher: Finisher,
}

/// A store, and one attempt of run `a`'s step `load` with lines past its bound, so that
/// finishing it appends a marker: I/O the store can hold back.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Arc::new(Stalling {
        dir: DirStore::new(dir.path().to_path_buf()),
        gate: RwLock::new(()),
        appends: AtomicUsize::new(0),
    });
    let logs = Arc::new(Logs::new(store.clone(), 100));
    let lines: Vec<LogLine> = (0..5)
        .map(|n| LogLine {
            time: format!("2026-12-02T10:00:0{n}.000000Z"),
            level: None,
            text: format!("row batch {n} loaded"),
        })
        .collect();
    logs.append(&load_key(), &lines)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hub = Arc::new(Hub::new(Limits::default()));
    let finisher = Finisher::new(hub.clone(), Some(logs.clone()));
    Setup {
        _dir: dir,
        store,
        logs,
        hub,
        finisher,
    }
}

fn load_key() -> LogKey {
    LogKey::new("etl", "orders", "a", "load", 1).unwrap_or_else(|e| panic!("{e}"))
}

fn run(name: &str, phase: RunPhase, step: StepPhase, attempt: u32) -> RunView {
    RunView {
        name: name.into(),
        namespace: "etl".into(),
        pipeline: "orders".into(),
        created: None,
        status: PipelineRunStatus {
            phase: Some(phase),
            steps: vec![StepStatus {
                name: "load".into(),
                phase: Some(step),
                attempt: Some(attempt),
                ..Default::default()
            }],
            ..Default::default()
        },
    }
}

fn change(name: &str, phase: RunPhase, step: StepPhase, attempt: u32) -> Change {
    Change::seen(run(name, phase, step, attempt))
}

/// The stored log of run `a`'s step `load`, which must exist.
async fn stored_log(store: &Stalling) -> Vec<LogLine> {
    let stored = store
        .read(&load_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no stored log"));
    decode(&stored)
}

fn seen(hub: &Hub, name: &str) -> Option<RunView> {
    hub.runs_of("etl")
        .into_iter()
        .find(|view| view.name == name)
}

/// Waits until no run waits for its logs, for 10 s at most.
async fn drained(finisher: &Finisher) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while finisher.waiting() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} runs still wait for their logs", finisher.waiting()));
}

/// Waits until more than `before` appends reached the store, for 10 s at most.
async fn entered(store: &Stalling, before: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.appends.load(Ordering::SeqCst) <= before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no append reached the store"));
}

#[tokio::test]
async fn a_stalled_log_store_holds_back_only_the_run_it_finishes_and_its_changes_keep_their_order()
{
    let s = setup().await;
    let before = s.store.appends.load(Ordering::SeqCst);
    let shut = s.store.gate.write().await;
    // The step ended: its log's marker goes to the store, which holds it.
    s.finisher
        .apply(change("a", RunPhase::Running, StepPhase::Succeeded, 1));
    entered(&s.store, before).await;
    s.finisher
        .apply(change("a", RunPhase::Succeeded, StepPhase::Succeeded, 1));
    // Far more changes of another run than the tap holds pass meanwhile, each at once.
    for attempt in 1..=1_000 {
        s.finisher
            .apply(change("b", RunPhase::Running, StepPhase::Running, attempt));
        let b = seen(&s.hub, "b").unwrap_or_else(|| panic!("run b is not in the hub"));
        assert_eq!(b.status.steps[0].attempt, Some(attempt));
    }
    // The append is still held (one reached the store, none returned): run a's changes wait.
    assert_eq!(s.store.appends.load(Ordering::SeqCst), before + 1);
    assert_eq!(seen(&s.hub, "a"), None);
    assert_eq!(s.finisher.waiting(), 1);

    drop(shut);
    drained(&s.finisher).await;
    // The log ends with its marker, and the hub holds run a's last change, not an earlier one.
    let back = stored_log(&s.store).await;
    let last = back.last().unwrap_or_else(|| panic!("an empty log"));
    assert!(last.text.contains("log truncated"), "{back:?}");
    assert_eq!(
        seen(&s.hub, "a"),
        Some(run("a", RunPhase::Succeeded, StepPhase::Succeeded, 1))
    );
    assert!(s.logs.ended("etl", "a", None).is_empty());
}

#[tokio::test]
async fn a_run_gone_at_a_relist_while_its_logs_wait_is_forgotten_after_them() {
    let s = setup().await;
    let before = s.store.appends.load(Ordering::SeqCst);
    let shut = s.store.gate.write().await;
    s.finisher
        .apply(change("c", RunPhase::Running, StepPhase::Running, 1));
    s.finisher
        .apply(change("a", RunPhase::Running, StepPhase::Failed, 1));
    entered(&s.store, before).await;
    // The relist found run c only: run a was deleted while the watch was down.
    let listed = HashSet::from([("etl".to_string(), "c".to_string())]);
    s.finisher.retain(Some("etl"), &listed);
    drop(shut);
    drained(&s.finisher).await;
    assert_eq!(seen(&s.hub, "a"), None);
    assert!(seen(&s.hub, "c").is_some());
    let back = stored_log(&s.store).await;
    assert!(
        back.iter().any(|l| l.text.contains("log truncated")),
        "{back:?}"
    );
}
