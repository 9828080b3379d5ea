//! The step Jobs `--max-concurrent-jobs` lets run at once, shared fairly between namespaces.
//!
//! Without fairness, a namespace with a thousand queued runs takes every slot that frees:
//! its runs are reconciled the moment their own Jobs end, while a run of another namespace
//! only looks again on its resync. So each run that wanted more Jobs than it got leaves a
//! claim here, and free slots are handed out one at a time to the namespace with the fewest
//! running Jobs among those that claim one, ties to the namespace served least recently
//! (max-min fairness). A namespace alone takes every free slot; a run that got all it wanted
//! withdraws its claim, and a claim not renewed (its run deleted) lapses after
//! [`CLAIM_LAPSES`].
//!
//! The Job cache lags the API server, and runs are reconciled concurrently: counted from the
//! cache alone, two runs asking in the same instant would both see the slot that just freed,
//! and a run asking right after another created its Job would see that slot still free. So a
//! slot handed out is held by the run it went to (a reservation) until the run says which
//! Jobs it created, and each of those counts as running until the cache shows it.
//!
//! A slot that frees is noticed by the run whose Job ended, which is seldom the run the slot
//! goes to. So when a run asks and some of the free slots go to other runs' claims, those
//! runs are woken ([`JobSlots::wakes`]) rather than left to find it on their next retry,
//! during which the namespace that freed it would take it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use synqx_api::PipelineRun;
use tokio::sync::broadcast;

use crate::job::{LABEL_RUN, job_ended};

/// How long a run that was held back waits before it asks again if no wake reaches it (one
/// lost to a full queue, or a slot freed by a Job that no run of this operator looks at).
pub const RETRY_HELD_BACK: Duration = Duration::from_secs(2);
/// A claim not renewed for this long no longer counts.
const CLAIM_LAPSES: Duration = Duration::from_secs(15);
/// A reservation never recorded (its reconcile failed and did not come back), or a created
/// Job the cache has not shown for this long, no longer counts: the cache shows a Job within
/// a second or two, and a Job it never shows was deleted.
const UNSEEN_LAPSES: Duration = Duration::from_secs(30);
/// Wakes queued for the run controllers; one that lags loses the oldest and falls back on
/// [`RETRY_HELD_BACK`].
const WAKES_QUEUED: usize = 1024;

/// A run: `(namespace, name)`.
type RunKey = (String, String);

/// The operator's Job slots: the Job caches of every scope it serves, and the claims.
pub struct JobSlots {
    max: Option<usize>,
    jobs: Vec<Store<Job>>,
    book: Mutex<Book>,
    wake: broadcast::Sender<ObjectRef<PipelineRun>>,
}

/// Claims by run, slots handed out but not yet used, and when each namespace last got a slot.
#[derive(Default)]
struct Book {
    /// `(namespace, run)` → Jobs the run still wants, and when it said so.
    claims: BTreeMap<(String, String), (usize, Instant)>,
    /// `(namespace, run)` → slots [`JobSlots::room`] gave the run, until it records.
    reserved: BTreeMap<(String, String), (usize, Instant)>,
    /// `(namespace, Job)` → when a run said it created the Job, until the cache shows it.
    unseen: BTreeMap<(String, String), Instant>,
    served: BTreeMap<String, Instant>,
}

/// What a namespace holds and wants when free slots are handed out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claim {
    /// Its step Jobs that have not ended.
    pub running: usize,
    /// More Jobs its runs would start now.
    pub wanted: usize,
    /// When it last got a slot (`None`: never, which comes first).
    pub served: Option<Instant>,
}

impl JobSlots {
    pub fn new(max: Option<u32>, jobs: Vec<Store<Job>>) -> Self {
        Self {
            max: max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            jobs,
            book: Mutex::default(),
            wake: broadcast::channel(WAKES_QUEUED).0,
        }
    }

    /// The runs that should ask again now: slots were set aside for their claims. Each run
    /// controller polls one of these streams.
    pub fn wakes(&self) -> impl Stream<Item = ObjectRef<PipelineRun>> + Send + 'static {
        futures::stream::unfold(self.wake.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(run) => return Some((run, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// How many of the `wanted` Jobs run `run` of `namespace` may start now. The slots given
    /// are the run's until it calls [`JobSlots::record`] (or asks again): no other run gets
    /// them meanwhile.
    pub fn room(&self, namespace: &str, run: &str, wanted: usize) -> usize {
        let Some(max) = self.max else {
            return wanted;
        };
        let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for job in self.jobs.iter().flat_map(Store::state) {
            if !job.labels().contains_key(LABEL_RUN) {
                continue;
            }
            let ns = job.namespace().unwrap_or_default();
            if !job_ended(&job) {
                let claim = claims.entry(ns.clone()).or_default();
                claim.running = claim.running.saturating_add(1);
            }
            seen.insert((ns, job.name_any()));
        }
        let now = Instant::now();
        let me = (namespace.to_string(), run.to_string());
        // One lock from counting to reserving: two runs asking at once are served in turn.
        let mut book = self.lock();
        book.claims
            .retain(|_, (_, at)| now.duration_since(*at) < CLAIM_LAPSES);
        book.unseen
            .retain(|key, at| !seen.contains(key) && now.duration_since(*at) < UNSEEN_LAPSES);
        // This run's own reservation is being replaced: one run is never reconciled twice
        // at once.
        book.reserved
            .retain(|key, (_, at)| key != &me && now.duration_since(*at) < UNSEEN_LAPSES);
        let held = book
            .unseen
            .keys()
            .map(|(ns, _)| (ns, 1))
            .chain(book.reserved.iter().map(|((ns, _), (n, _))| (ns, *n)));
        for (ns, n) in held {
            let claim = claims.entry(ns.clone()).or_default();
            claim.running = claim.running.saturating_add(n);
        }
        let running_total = claims
            .values()
            .fold(0usize, |total, c| total.saturating_add(c.running));
        let free = max.saturating_sub(running_total);
        for (key, (more, _)) in &book.claims {
            if key == &me {
                continue;
            }
            let claim = claims.entry(key.0.clone()).or_default();
            claim.wanted = claim.wanted.saturating_add(*more);
        }
        for (ns, claim) in &mut claims {
            claim.served = book.served.get(ns).copied();
        }
        let mine = claims.entry(namespace.to_string()).or_default();
        mine.wanted = mine.wanted.saturating_add(wanted);
        mine.served = book.served.get(namespace).copied();
        let allotted = allot(free, &mut claims);
        let given = allotted.get(namespace).copied().unwrap_or(0).min(wanted);
        if given > 0 {
            book.reserved.insert(me.clone(), (given, now));
        }
        let woken = to_wake(&book.claims, &allotted, &me, given);
        drop(book);
        for (ns, run) in woken {
            // No receiver (no controller running yet) is not an error: the retry covers it.
            let _ = self.wake.send(ObjectRef::new(&run).within(&ns));
        }
        given
    }

    /// Records that `run` wanted `wanted` Jobs and created `started` (their names), which
    /// replaces its reservation.
    pub fn record(&self, namespace: &str, run: &str, wanted: usize, started: &[String]) {
        if self.max.is_none() {
            return;
        }
        let now = Instant::now();
        let mut book = self.lock();
        let key = (namespace.to_string(), run.to_string());
        book.reserved.remove(&key);
        for job in started {
            book.unseen
                .insert((namespace.to_string(), job.clone()), now);
        }
        if started.len() < wanted {
            book.claims.insert(key, (wanted - started.len(), now));
        } else {
            book.claims.remove(&key);
        }
        if !started.is_empty() {
            book.served.insert(namespace.to_string(), now);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How `free` slots are split between namespaces, handed out one at a time to the namespace
/// with the fewest running Jobs among those that still want one, ties to the one served least
/// recently, then by name.
pub fn allot(free: usize, claims: &mut BTreeMap<String, Claim>) -> BTreeMap<String, usize> {
    let mut allotted: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..free {
        let next = claims
            .iter()
            .filter(|(_, c)| c.wanted > 0)
            .min_by_key(|(name, c)| (c.running, c.served, name.as_str()))
            .map(|(name, _)| name.clone());
        let Some(next) = next else { break };
        if let Some(claim) = claims.get_mut(&next) {
            claim.running = claim.running.saturating_add(1);
            claim.wanted -= 1;
        }
        let n = allotted.entry(next).or_default();
        *n = n.saturating_add(1);
    }
    allotted
}

/// The claiming runs that the slots `allotted` to their namespaces are for, beyond the
/// `given` that run `me` takes itself: in each namespace, the runs that asked least recently,
/// as many as their namespace's slots cover (a run claiming several counts once per slot).
fn to_wake(
    claims: &BTreeMap<RunKey, (usize, Instant)>,
    allotted: &BTreeMap<String, usize>,
    me: &RunKey,
    given: usize,
) -> Vec<RunKey> {
    let mut woken = Vec::new();
    for (ns, &slots) in allotted {
        let mut left = if ns == &me.0 {
            slots.saturating_sub(given)
        } else {
            slots
        };
        let mut waiting: Vec<(&RunKey, usize, Instant)> = claims
            .iter()
            .filter(|(key, _)| &key.0 == ns && *key != me)
            .map(|(key, (wants, at))| (key, *wants, *at))
            .collect();
        waiting.sort_by_key(|(_, _, at)| *at);
        for (key, wants, _) in waiting {
            if left == 0 {
                break;
            }
            left = left.saturating_sub(wants);
            woken.push(key.clone());
        }
    }
    woken
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher;

    use super::*;

    /// How many of `free` slots go to `me`.
    fn share(free: usize, claims: &mut BTreeMap<String, Claim>, me: &str) -> usize {
        allot(free, claims).get(me).copied().unwrap_or(0)
    }

    fn claims(list: &[(&str, usize, usize, Option<u64>)]) -> BTreeMap<String, Claim> {
        let start = Instant::now();
        list.iter()
            .map(|(name, running, wanted, served)| {
                (
                    name.to_string(),
                    Claim {
                        running: *running,
                        wanted: *wanted,
                        served: served.map(|s| start + Duration::from_secs(s)),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_namespace_alone_takes_every_free_slot() {
        let mut c = claims(&[("flood", 3, 1000, Some(5))]);
        assert_eq!(share(7, &mut c, "flood"), 7);
        let mut c = claims(&[("flood", 3, 2, Some(5)), ("idle", 0, 0, None)]);
        assert_eq!(share(7, &mut c, "flood"), 2, "no more than it wants");
    }

    #[test]
    fn a_freed_slot_goes_to_the_namespace_running_fewer_jobs() {
        // 1,000 runs queued in `flood`, which holds 9 of 10 slots; `small` waits with one
        // run. The slot that frees is `small`'s, whoever asks first.
        let mut c = claims(&[("flood", 9, 1000, Some(9)), ("small", 0, 1, Some(1))]);
        assert_eq!(share(1, &mut c.clone(), "flood"), 0);
        assert_eq!(share(1, &mut c, "small"), 1);
    }

    #[test]
    fn equal_holders_alternate_by_who_was_served_last() {
        // One slot in all (`--max-concurrent-jobs 1`): the namespace that just had it waits.
        let mut c = claims(&[("flood", 0, 1000, Some(9)), ("small", 0, 1, Some(1))]);
        assert_eq!(share(1, &mut c.clone(), "flood"), 0);
        assert_eq!(share(1, &mut c, "small"), 1);
        let mut never = claims(&[("a", 0, 5, Some(0)), ("b", 0, 5, None)]);
        assert_eq!(share(1, &mut never, "b"), 1, "never served comes first");
    }

    #[test]
    fn free_slots_are_split_by_water_filling() {
        let c = claims(&[
            ("a", 4, 100, Some(1)),
            ("b", 0, 100, Some(2)),
            ("c", 1, 2, Some(3)),
        ]);
        // 6 free: b fills up to a's 4 with c (wanting 2) going to 3; then a and b share.
        let taken: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|me| share(6, &mut c.clone(), me))
            .collect();
        assert_eq!(taken.iter().sum::<usize>(), 6);
        assert_eq!(taken, [0, 4, 2]);
        let taken: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|me| share(10, &mut c.clone(), me))
            .collect();
        assert_eq!(taken, [2, 6, 2]);
    }

    /// A Job cache the tests write to, as the operator's watch would.
    fn cache() -> (Store<Job>, Writer<Job>) {
        reflector::store()
    }

    fn show(cache: &mut Writer<Job>, namespace: &str, name: &str, ended: bool) {
        let mut job = Job::default();
        job.metadata.name = Some(name.into());
        job.metadata.namespace = Some(namespace.into());
        job.metadata.labels = Some([(LABEL_RUN.to_string(), "run".to_string())].into());
        if ended {
            job.status = Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        cache.apply_watcher_event(&watcher::Event::Apply(job));
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_slot_given_is_held_until_used_and_its_job_until_the_cache_shows_it_ended() {
        let (store, mut writer) = cache();
        let slots = JobSlots::new(Some(1), vec![store]);
        assert_eq!(slots.room("a", "a1", 3), 1);
        // `b` asks before `a` created its Job: the slot is `a`'s.
        assert_eq!(slots.room("b", "b1", 1), 0);
        slots.record("b", "b1", 1, &[]);
        // Created, and not in the cache yet: still taken.
        slots.record("a", "a1", 3, &names(&["a1-s1"]));
        assert_eq!(slots.room("b", "b1", 1), 0);
        slots.record("b", "b1", 1, &[]);
        show(&mut writer, "a", "a1-s1", false);
        assert_eq!(
            slots.room("b", "b1", 1),
            0,
            "running, as the cache shows it"
        );
        slots.record("b", "b1", 1, &[]);
        show(&mut writer, "a", "a1-s1", true);
        // Ended: the slot goes to `b`, which claims one and was never served, not to `a`.
        assert_eq!(slots.room("a", "a1", 2), 0);
        slots.record("a", "a1", 2, &[]);
        assert_eq!(slots.room("b", "b1", 1), 1);
    }

    #[test]
    fn a_run_asking_again_replaces_its_own_reservation() {
        let slots = JobSlots::new(Some(1), Vec::new());
        assert_eq!(slots.room("a", "a1", 1), 1);
        // Its reconcile failed before it recorded; the retry asks again.
        assert_eq!(slots.room("a", "a1", 1), 1);
        assert_eq!(
            slots.room("a", "a2", 1),
            0,
            "another run of the namespace waits"
        );
    }

    #[test]
    fn claims_are_withdrawn_when_satisfied_and_steer_the_next_room() {
        let (store, mut writer) = cache();
        let slots = JobSlots::new(Some(2), vec![store]);
        // `flood` alone: both slots.
        assert_eq!(slots.room("flood", "f1", 5), 2);
        slots.record("flood", "f1", 5, &names(&["f1-a", "f1-b"]));
        assert_eq!(
            slots.room("flood", "f2", 5),
            0,
            "both Jobs hold their slots"
        );
        slots.record("flood", "f2", 5, &[]);
        slots.record("small", "s1", 1, &[]);
        // Both end: `small` claims one and `flood`, served last, gets the other.
        show(&mut writer, "flood", "f1-a", true);
        show(&mut writer, "flood", "f1-b", true);
        assert_eq!(slots.room("flood", "f2", 5), 1);
        slots.record("flood", "f2", 5, &names(&["f2-a"]));
        assert_eq!(slots.room("small", "s1", 1), 1);
        slots.record("small", "s1", 1, &names(&["s1-a"]));
        show(&mut writer, "flood", "f2-a", true);
        show(&mut writer, "small", "s1-a", true);
        // `small` got what it wanted: `flood` has every slot again.
        assert_eq!(slots.room("flood", "f2", 5), 2);
        // Without a limit, every wanted Job starts and nothing is recorded.
        let unlimited = JobSlots::new(None, Vec::new());
        assert_eq!(unlimited.room("flood", "f1", 50), 50);
    }

    /// Every wake queued so far, without waiting for more.
    fn woken(wakes: &mut (impl Stream<Item = ObjectRef<PipelineRun>> + Unpin)) -> Vec<String> {
        use futures::FutureExt;
        use futures::StreamExt;
        let mut runs = Vec::new();
        while let Some(Some(run)) = wakes.next().now_or_never() {
            runs.push(format!(
                "{}/{}",
                run.namespace.unwrap_or_default(),
                run.name
            ));
        }
        runs
    }

    #[tokio::test]
    async fn a_slot_freed_for_another_runs_claim_wakes_that_run() {
        let (store, mut writer) = cache();
        let slots = JobSlots::new(Some(2), vec![store]);
        let mut wakes = Box::pin(slots.wakes());
        assert_eq!(slots.room("flood", "f1", 5), 2);
        slots.record("flood", "f1", 5, &names(&["f1-a", "f1-b"]));
        show(&mut writer, "flood", "f1-a", false);
        show(&mut writer, "flood", "f1-b", false);
        slots.record("flood", "f2", 3, &[]);
        slots.record("small", "s1", 1, &[]);
        slots.record("small", "s2", 1, &[]);
        assert_eq!(woken(&mut wakes), Vec::<String>::new(), "no slot freed yet");
        // One flood Job ends; its run asks and the slot goes to `small`'s oldest claim.
        show(&mut writer, "flood", "f1-a", true);
        assert_eq!(slots.room("flood", "f1", 3), 0);
        assert_eq!(woken(&mut wakes), ["small/s1"]);
        slots.record("flood", "f1", 3, &[]);
        // The other ends too: one slot each, so `small`'s run and the other flood run wake.
        show(&mut writer, "flood", "f1-b", true);
        assert_eq!(slots.room("flood", "f1", 0), 0);
        assert_eq!(woken(&mut wakes), ["flood/f2", "small/s1"]);
    }
}
