//! Hands each change of a run to the hub after the stored logs it ends are finished, off the
//! watch's path. The gateway reads a tap of the operator's shared runs watch (bounded, like
//! every channel of a watch); waiting there on a slow log store (object storage, or an append
//! of the same attempt in flight) would fill the tap and hold back the watch the controllers
//! read too. So a run whose change ends step attempts gets a queue and a task of its own: the
//! task finishes the attempts, then hands the change to the hub, in order, and every later
//! change of that run waits in the queue behind it (a follower that reads a step's log after
//! its end gets it whole). Changes of other runs, and of this run once its queue is empty, go
//! to the hub at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use synqx_api::gateway::RunView;
use synqx_web::Hub;

use super::logs::Logs;

type RunKey = (String, String);

/// A change of one run, as the hub takes it.
pub enum Change {
    Seen(Box<RunView>),
    Gone { namespace: String, name: String },
}

impl Change {
    pub fn seen(view: RunView) -> Self {
        Self::Seen(Box::new(view))
    }

    fn key(&self) -> RunKey {
        match self {
            Self::Seen(view) => (view.namespace.clone(), view.name.clone()),
            Self::Gone { namespace, name } => (namespace.clone(), name.clone()),
        }
    }

    fn view(&self) -> Option<&RunView> {
        match self {
            Self::Seen(view) => Some(view),
            Self::Gone { .. } => None,
        }
    }

    fn apply(self, hub: &Hub) {
        match self {
            Self::Seen(view) => hub.observe(*view),
            Self::Gone { namespace, name } => hub.forget(&namespace, &name),
        }
    }
}

/// Runs with attempts being finished, each with the changes that wait for it.
type Waiting = Arc<Mutex<HashMap<RunKey, VecDeque<Change>>>>;

pub struct Finisher {
    hub: Arc<Hub>,
    logs: Option<Arc<Logs>>,
    waiting: Waiting,
}

fn lock(waiting: &Waiting) -> MutexGuard<'_, HashMap<RunKey, VecDeque<Change>>> {
    // Queues are whole at every point a panic could happen: the map stays usable.
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Finisher {
    pub fn new(hub: Arc<Hub>, logs: Option<Arc<Logs>>) -> Self {
        Self {
            hub,
            logs,
            waiting: Waiting::default(),
        }
    }

    /// Takes a change without waiting: to the hub now, or into its run's queue.
    pub fn apply(&self, change: Change) {
        let key = change.key();
        let mut waiting = lock(&self.waiting);
        if let Some(queue) = waiting.get_mut(&key) {
            queue.push_back(change);
            return;
        }
        let ends = self
            .logs
            .as_ref()
            .filter(|logs| !logs.ended(&key.0, &key.1, change.view()).is_empty());
        let Some(logs) = ends.cloned() else {
            drop(waiting);
            change.apply(&self.hub);
            return;
        };
        waiting.insert(key.clone(), VecDeque::from([change]));
        drop(waiting);
        tokio::spawn(drain(key, self.waiting.clone(), self.hub.clone(), logs));
    }

    /// The end of a relist: forgets the runs of `namespace` (every namespace when `None`)
    /// not in `listed`, the ones deleted while the watch was down; a run still waiting is
    /// forgotten after its queue.
    pub fn retain(&self, namespace: Option<&str>, listed: &HashSet<RunKey>) {
        let mut waiting = lock(&self.waiting);
        for (key, queue) in waiting.iter_mut() {
            if namespace.is_none_or(|ns| ns == key.0) && !listed.contains(key) {
                queue.push_back(Change::Gone {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                });
            }
        }
        // Under the queues' lock: no queue can empty in between and miss its `Gone`.
        self.hub.retain(namespace, listed);
    }

    /// How many runs wait for their logs to be finished.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

/// Finishes what each change of the run `key` ends, then hands it to the hub, until its queue
/// is empty; the run leaves `waiting` only then, so a change taken meanwhile is never skipped.
async fn drain(key: RunKey, waiting: Waiting, hub: Arc<Hub>, logs: Arc<Logs>) {
    let mut next = lock(&waiting).get_mut(&key).and_then(VecDeque::pop_front);
    while let Some(change) = next {
        logs.finish_ended(&key.0, &key.1, change.view()).await;
        change.apply(&hub);
        let mut queues = lock(&waiting);
        next = queues.get_mut(&key).and_then(VecDeque::pop_front);
        if next.is_none() {
            queues.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
