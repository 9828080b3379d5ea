//! An index over one watch: the names of the cached objects grouped by a key each object
//! carries (the run a Job belongs to, the Pipeline a run runs), per namespace. It follows the
//! watch's events exactly as the store does, including a relist (built aside, swapped in
//! when the list is complete), so a reconcile finds the few objects it needs without
//! scanning the whole cache: a scan per reconcile grows with runs × Jobs.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// What an object is grouped by, if anything.
pub type KeyOf<K> = fn(&K) -> Option<String>;

type Group = (String, String);

#[derive(Default)]
struct Groups {
    members: HashMap<Group, BTreeSet<String>>,
    /// The group of each object (namespace, name), to move it when its key changes.
    of: HashMap<(String, String), Group>,
}

impl Groups {
    fn insert(&mut self, namespace: String, name: String, key: Option<String>) {
        self.remove(&namespace, &name);
        if let Some(key) = key {
            let group = (namespace.clone(), key);
            self.members
                .entry(group.clone())
                .or_default()
                .insert(name.clone());
            self.of.insert((namespace, name), group);
        }
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let Some(group) = self.of.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        if let Some(members) = self.members.get_mut(&group) {
            members.remove(name);
            if members.is_empty() {
                self.members.remove(&group);
            }
        }
    }
}

#[derive(Default)]
struct State {
    current: Groups,
    /// A relist in progress.
    relist: Option<Groups>,
}

/// The names of cached objects by namespace and key. Clones share one index.
pub struct Index<K> {
    key_of: KeyOf<K>,
    state: Arc<RwLock<State>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            key_of: self.key_of,
            state: self.state.clone(),
        }
    }
}

impl<K: kube::Resource> Index<K> {
    pub fn new(key_of: KeyOf<K>) -> Self {
        Self {
            key_of,
            state: Arc::default(),
        }
    }

    /// Follows one event of the watch.
    pub fn apply(&self, event: &Event<K>) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let place = |obj: &K| (obj.namespace().unwrap_or_default(), obj.name_any());
        match event {
            Event::Apply(obj) => {
                let (namespace, name) = place(obj);
                state.current.insert(namespace, name, (self.key_of)(obj));
            }
            Event::Delete(obj) => {
                let (namespace, name) = place(obj);
                state.current.remove(&namespace, &name);
            }
            Event::Init => state.relist = Some(Groups::default()),
            Event::InitApply(obj) => {
                let (namespace, name) = place(obj);
                if let Some(relist) = state.relist.as_mut() {
                    relist.insert(namespace, name, (self.key_of)(obj));
                }
            }
            Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.current = relist;
                }
            }
        }
    }

    /// The names of the objects of `namespace` whose key is `key`.
    pub fn names(&self, namespace: &str, key: &str) -> Vec<String> {
        let state = self
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .current
            .members
            .get(&(namespace.to_string(), key.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn object(name: &str, group: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: group.map(|g| [("group".to_string(), g.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn by_label(obj: &ConfigMap) -> Option<String> {
        obj.labels().get("group").cloned()
    }

    #[test]
    fn objects_move_with_their_key_and_leave_when_deleted() {
        let index = Index::new(by_label);
        index.apply(&Event::Apply(object("a", Some("x"))));
        index.apply(&Event::Apply(object("b", Some("x"))));
        index.apply(&Event::Apply(object("c", None)));
        assert_eq!(index.names("ns", "x"), ["a", "b"]);
        index.apply(&Event::Apply(object("b", Some("y"))));
        assert_eq!(index.names("ns", "x"), ["a"]);
        assert_eq!(index.names("ns", "y"), ["b"]);
        index.apply(&Event::Delete(object("a", Some("x"))));
        assert!(index.names("ns", "x").is_empty());
        assert!(index.names("other", "y").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let index = Index::new(by_label);
        index.apply(&Event::Apply(object("gone", Some("x"))));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(object("new", Some("x"))));
        assert_eq!(
            index.names("ns", "x"),
            ["gone"],
            "until the list is complete"
        );
        index.apply(&Event::InitDone);
        assert_eq!(index.names("ns", "x"), ["new"]);
    }
}
