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

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::job::{LABEL_RUN, job_ended};

/// How long a run that was held back waits before it asks again: a slot another namespace
/// may not take stays free at most this long.
pub const RETRY_HELD_BACK: Duration = Duration::from_secs(2);
/// A claim not renewed for this long no longer counts.
const CLAIM_LAPSES: Duration = Duration::from_secs(15);

/// The operator's Job slots: the Job caches of every scope it serves, and the claims.
pub struct JobSlots {
    max: Option<usize>,
    jobs: Vec<Store<Job>>,
    book: Mutex<Book>,
}

/// Claims by run and when each namespace last got a slot.
#[derive(Default)]
struct Book {
    /// `(namespace, run)` → Jobs the run still wants, and when it said so.
    claims: BTreeMap<(String, String), (usize, Instant)>,
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
        }
    }

    /// How many of the `wanted` Jobs run `run` of `namespace` may start now.
    pub fn room(&self, namespace: &str, run: &str, wanted: usize) -> usize {
        let Some(max) = self.max else {
            return wanted;
        };
        let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
        let mut running_total = 0usize;
        for job in self.jobs.iter().flat_map(Store::state) {
            if job.labels().contains_key(LABEL_RUN) && !job_ended(&job) {
                let ns = job.namespace().unwrap_or_default();
                let claim = claims.entry(ns).or_default();
                claim.running = claim.running.saturating_add(1);
                running_total = running_total.saturating_add(1);
            }
        }
        let free = max.saturating_sub(running_total);
        let now = Instant::now();
        {
            let mut book = self.lock();
            book.claims
                .retain(|_, (_, at)| now.duration_since(*at) < CLAIM_LAPSES);
            for ((ns, other), (more, _)) in &book.claims {
                if ns == namespace && other == run {
                    continue;
                }
                let claim = claims.entry(ns.clone()).or_default();
                claim.wanted = claim.wanted.saturating_add(*more);
            }
            for (ns, claim) in &mut claims {
                claim.served = book.served.get(ns).copied();
            }
            let mine = claims.entry(namespace.to_string()).or_default();
            mine.wanted = mine.wanted.saturating_add(wanted);
            mine.served = book.served.get(namespace).copied();
        }
        share(free, &mut claims, namespace).min(wanted)
    }

    /// Records that `run` wanted `wanted` Jobs and started `started` of them.
    pub fn record(&self, namespace: &str, run: &str, wanted: usize, started: usize) {
        if self.max.is_none() {
            return;
        }
        let now = Instant::now();
        let mut book = self.lock();
        let key = (namespace.to_string(), run.to_string());
        if started < wanted {
            book.claims.insert(key, (wanted - started, now));
        } else {
            book.claims.remove(&key);
        }
        if started > 0 {
            book.served.insert(namespace.to_string(), now);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How many of `free` slots go to `me`, handed out one at a time to the namespace with the
/// fewest running Jobs among those that still want one, ties to the one served least
/// recently, then by name.
pub fn share(free: usize, claims: &mut BTreeMap<String, Claim>, me: &str) -> usize {
    let mut mine = 0;
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
        if next == me {
            mine += 1;
        }
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn claims_are_withdrawn_when_satisfied_and_steer_the_next_room() {
        let slots = JobSlots::new(Some(2), Vec::new());
        // `flood` alone: both slots.
        assert_eq!(slots.room("flood", "f1", 5), 2);
        slots.record("flood", "f1", 5, 2);
        // Nothing runs in the empty caches, so 2 are free; `small` claims one and
        // `flood`, served last, gets the other.
        slots.record("small", "s1", 1, 0);
        assert_eq!(slots.room("flood", "f2", 5), 1);
        assert_eq!(slots.room("small", "s1", 1), 1);
        slots.record("small", "s1", 1, 1);
        // `small` got what it wanted: `flood` has every slot again.
        assert_eq!(slots.room("flood", "f2", 5), 2);
        // Without a limit, every wanted Job starts and nothing is recorded.
        let unlimited = JobSlots::new(None, Vec::new());
        assert_eq!(unlimited.room("flood", "f1", 50), 50);
    }
}
