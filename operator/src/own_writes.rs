//! The newest version of each run the operator itself wrote, so that a pass never decides
//! from a cache that has not caught up with the operator's own writes.
//!
//! A pass writes a run twice: its record (an annotation) and then its status. The watch
//! delivers the two changes one after the other, and the controller starts the next pass as
//! soon as the first arrives: that pass sees the new record beside the old status. Taking the
//! old status for what the operator last wrote, it would "restore" the status from the
//! record and drop what only the status holds (a failed step's message, end times). A pass
//! that sees a run older than the operator's last write of it waits for the watch instead.
//!
//! Kubernetes calls resourceVersion opaque; an API server backed by etcd gives increasing
//! integers, which this compares. A version that does not parse as one turns the check off
//! for that run, and passes go on as they did without it.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;

/// Runs whose write the cache has not shown yet; an entry goes once the cache caught up.
/// Past this many (runs deleted before their watch event came), the oldest knowledge is
/// dropped rather than kept forever.
const MOST: usize = 10_000;

#[derive(Default)]
pub struct OwnWrites {
    newest: Mutex<HashMap<String, u64>>,
}

impl OwnWrites {
    /// Notes that `written`, as a write of the operator returned it, is the newest version.
    pub fn saw<K: Resource>(&self, written: &K) {
        let meta = written.meta();
        self.wrote(meta.uid.as_deref(), meta.resource_version.as_deref());
    }

    /// Whether `object` is older than the operator's last write of it.
    pub fn behind<K: Resource>(&self, object: &K) -> bool {
        let meta = object.meta();
        self.behind_version(meta.uid.as_deref(), meta.resource_version.as_deref())
    }

    /// Notes that the operator's write of the run `uid` gave it `version`.
    fn wrote(&self, uid: Option<&str>, version: Option<&str>) {
        let (Some(uid), Some(version)) = (uid, version.and_then(|v| v.parse::<u64>().ok())) else {
            return;
        };
        let Ok(mut newest) = self.newest.lock() else {
            return;
        };
        if newest.len() >= MOST && !newest.contains_key(uid) {
            newest.clear();
        }
        let kept = newest.entry(uid.to_string()).or_insert(version);
        *kept = (*kept).max(version);
    }

    /// Whether the run `uid` at `version` is older than the operator's last write of it.
    fn behind_version(&self, uid: Option<&str>, version: Option<&str>) -> bool {
        let (Some(uid), Some(version)) = (uid, version.and_then(|v| v.parse::<u64>().ok())) else {
            return false;
        };
        let Ok(mut newest) = self.newest.lock() else {
            return false;
        };
        match newest.get(uid) {
            Some(&written) if version < written => true,
            Some(_) => {
                newest.remove(uid);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_older_than_the_last_write_is_behind_until_the_cache_shows_that_write() {
        let writes = OwnWrites::default();
        assert!(
            !writes.behind_version(Some("a"), Some("10")),
            "nothing written yet"
        );
        // The record's write, then the status's.
        writes.wrote(Some("a"), Some("11"));
        writes.wrote(Some("a"), Some("12"));
        assert!(
            writes.behind_version(Some("a"), Some("11")),
            "only the record is seen"
        );
        assert!(
            writes.behind_version(Some("a"), Some("11")),
            "still only the record"
        );
        assert!(!writes.behind_version(Some("b"), Some("1")), "another run");
        assert!(
            !writes.behind_version(Some("a"), Some("12")),
            "the status is seen"
        );
        // Caught up once, the entry is gone: an older version no longer counts as behind.
        assert!(!writes.behind_version(Some("a"), Some("11")));
        // A later write by someone else is newer still.
        writes.wrote(Some("a"), Some("20"));
        assert!(!writes.behind_version(Some("a"), Some("25")));
    }

    #[test]
    fn versions_that_are_not_integers_turn_the_check_off() {
        let writes = OwnWrites::default();
        writes.wrote(Some("a"), Some("opaque-7"));
        assert!(!writes.behind_version(Some("a"), Some("opaque-3")));
        writes.wrote(Some("a"), Some("9"));
        assert!(!writes.behind_version(Some("a"), Some("opaque-3")));
        assert!(writes.behind_version(Some("a"), Some("8")));
        assert!(!writes.behind_version(None, Some("8")));
    }

    #[test]
    fn a_write_never_moves_the_newest_version_back() {
        let writes = OwnWrites::default();
        writes.wrote(Some("a"), Some("12"));
        writes.wrote(Some("a"), Some("11"));
        assert!(writes.behind_version(Some("a"), Some("11")));
    }
}
