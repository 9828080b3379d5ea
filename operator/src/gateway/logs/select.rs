//! Which store keeps a Pipeline's step logs: the one its `spec.logs` names (an `s3`
//! Connection in its namespace), else the operator's (`--logs-dir`, or `--logs-connection` in
//! the operator's namespace), else none. A Pipeline's `spec.logs` and the opened stores are
//! kept for a short while, so a report's lines cost no API request; a change of `spec.logs`,
//! the Connection or its Secrets applies within [`FRESH`] (read from the Pipeline as it is
//! now, not from the revision a run pinned).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::{Api, Client};
use synqx_api::pipeline::LogsSpec;
use synqx_api::{Pipeline, PipelineRun};

use super::connection::{self, DEFAULT_PREFIX};
use super::{ConnectionError, LogKey, LogStore, StoreError, StoreRef};

/// How long a Pipeline's `spec.logs` and an opened store are used before they are read again.
pub const FRESH: Duration = Duration::from_secs(30);
/// How long a Connection that could not be used is not tried again.
const RETRY: Duration = Duration::from_secs(10);

/// The operator's own store.
pub enum OperatorStore {
    None,
    Store(Arc<dyn LogStore>),
    /// An `s3` Connection, opened when first used.
    Connection(StoreRef),
}

/// Values that expire.
struct Expiring<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V, life: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Expired entries go on every write: the map holds what was used lately only.
        entries.retain(|_, (until, _)| now < *until);
        entries.insert(key, (now + life, value));
    }
}

type Opened = Result<Arc<dyn LogStore>, Arc<ConnectionError>>;

/// The store of every step log: picks one per Pipeline.
pub struct Select {
    default: OperatorStore,
    /// Reads Pipelines, runs and Connections; `None` when only the default is used (tests).
    client: Option<Client>,
    /// Whether a Pipeline's Connection may use the operator's ambient AWS credentials.
    allow_ambient: bool,
    /// `(namespace, pipeline)` -> its `spec.logs`.
    pipelines: Expiring<(String, String), Option<LogsSpec>>,
    stores: Expiring<StoreRef, Opened>,
}

impl Select {
    pub fn new(default: OperatorStore, client: Option<Client>, allow_ambient: bool) -> Self {
        Self {
            default,
            client,
            allow_ambient,
            pipelines: Expiring::new(),
            stores: Expiring::new(),
        }
    }

    /// The store of a Connection, opened once per [`FRESH`].
    async fn opened(&self, target: &StoreRef) -> Result<Arc<dyn LogStore>, StoreError> {
        if let Some(opened) = self.stores.get(target) {
            return opened.map_err(StoreError::Connection);
        }
        let Some(client) = &self.client else {
            return Err(StoreError::Connection(Arc::new(ConnectionError::Missing {
                namespace: target.namespace.clone(),
                connection: target.connection.clone(),
                named_by: target.named_by.clone(),
            })));
        };
        let opened: Opened = match connection::open(client, target).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(error) => Err(Arc::new(error)),
        };
        let life = if opened.is_ok() { FRESH } else { RETRY };
        self.stores.put(target.clone(), opened.clone(), life);
        opened.map_err(StoreError::Connection)
    }

    async fn default_store(&self) -> Result<Option<Arc<dyn LogStore>>, StoreError> {
        match &self.default {
            OperatorStore::None => Ok(None),
            OperatorStore::Store(store) => Ok(Some(store.clone())),
            OperatorStore::Connection(target) => self.opened(target).await.map(Some),
        }
    }

    /// The `spec.logs` of a Pipeline (none when it is gone).
    async fn logs_spec(
        &self,
        namespace: &str,
        pipeline: &str,
    ) -> Result<Option<LogsSpec>, StoreError> {
        let Some(client) = &self.client else {
            return Ok(None);
        };
        let id = (namespace.to_string(), pipeline.to_string());
        if let Some(spec) = self.pipelines.get(&id) {
            return Ok(spec);
        }
        let api: Api<Pipeline> = Api::namespaced(client.clone(), namespace);
        let found = api
            .get_opt(pipeline)
            .await
            .map_err(|source| StoreError::Api {
                what: format!("Pipeline {namespace}/{pipeline}"),
                source,
            })?;
        let spec = found.and_then(|p| p.spec.logs);
        self.pipelines.put(id, spec.clone(), FRESH);
        Ok(spec)
    }

    /// The store a Pipeline's logs go to, and whether it is the operator's.
    async fn store_of(
        &self,
        namespace: &str,
        pipeline: &str,
    ) -> Result<Option<(Arc<dyn LogStore>, bool)>, StoreError> {
        match self.logs_spec(namespace, pipeline).await? {
            Some(spec) => {
                let target = pipeline_target(namespace, pipeline, &spec, self.allow_ambient);
                Ok(Some((self.opened(&target).await?, false)))
            }
            None => Ok(self.default_store().await?.map(|s| (s, true))),
        }
    }

    /// The Pipeline of a run, if the run is still there.
    async fn pipeline_of(&self, namespace: &str, run: &str) -> Result<Option<String>, StoreError> {
        let Some(client) = &self.client else {
            return Ok(None);
        };
        let api: Api<PipelineRun> = Api::namespaced(client.clone(), namespace);
        let found = api.get_opt(run).await.map_err(|source| StoreError::Api {
            what: format!("PipelineRun {namespace}/{run}"),
            source,
        })?;
        Ok(found.map(|r| r.spec.pipeline_ref.name))
    }

    /// The Pipelines of a namespace that name a store of their own.
    async fn pipelines_with_stores(&self, namespace: &str) -> Result<Vec<String>, StoreError> {
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let api: Api<Pipeline> = Api::namespaced(client.clone(), namespace);
        let list = api
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|source| StoreError::Api {
                what: format!("the Pipelines of namespace {namespace}"),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.spec.logs.is_some())
            .filter_map(|p| p.metadata.name)
            .collect())
    }
}

/// The Connection a Pipeline's `spec.logs` names.
pub fn pipeline_target(
    namespace: &str,
    pipeline: &str,
    spec: &LogsSpec,
    allow_ambient: bool,
) -> StoreRef {
    StoreRef {
        namespace: namespace.to_string(),
        connection: spec.connection.clone(),
        prefix: spec
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        named_by: format!("spec.logs of Pipeline {namespace}/{pipeline}"),
        ambient: allow_ambient,
    }
}

#[async_trait]
impl LogStore for Select {
    fn describe(&self) -> String {
        match &self.default {
            OperatorStore::None => "no log store of the operator (it runs without --logs-dir or --logs-connection) and none in the Pipeline's spec.logs".into(),
            OperatorStore::Store(store) => store.describe(),
            OperatorStore::Connection(target) => format!(
                "Connection {}/{} below prefix {}",
                target.namespace, target.connection, target.prefix
            ),
        }
    }

    async fn read(&self, key: &LogKey) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((store, is_default)) = self.store_of(&key.namespace, &key.pipeline).await? else {
            return Ok(None);
        };
        let found = store.read(key).await?;
        if found.is_some() || is_default {
            return Ok(found);
        }
        // Written before the Pipeline named its own store.
        match self.default_store().await? {
            Some(default) => default.read(key).await,
            None => Ok(None),
        }
    }

    async fn resume(&self, key: &LogKey) -> Result<u64, StoreError> {
        match self.store_of(&key.namespace, &key.pipeline).await? {
            Some((store, _)) => store.resume(key).await,
            None => Ok(0),
        }
    }

    async fn append(&self, key: &LogKey, member: Vec<u8>, end: u64) -> Result<(), StoreError> {
        match self.store_of(&key.namespace, &key.pipeline).await? {
            Some((store, _)) => store.append(key, member, end).await,
            None => Ok(()),
        }
    }

    async fn attempts(&self, namespace: &str, run: &str) -> Result<Vec<LogKey>, StoreError> {
        let mut keys = BTreeSet::new();
        if let Some(default) = self.default_store().await? {
            keys.extend(default.attempts(namespace, run).await?);
        }
        let pipelines = match self.pipeline_of(namespace, run).await? {
            Some(pipeline) => vec![pipeline],
            // The run is gone, and with it the name of its Pipeline: any Pipeline of the
            // namespace with a store of its own may hold its logs.
            None => self.pipelines_with_stores(namespace).await?,
        };
        for pipeline in pipelines {
            if let Some((store, false)) = self.store_of(namespace, &pipeline).await? {
                keys.extend(store.attempts(namespace, run).await?);
            }
        }
        Ok(keys.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipelines_store_is_its_connection_below_its_prefix_or_the_default_prefix() {
        let spec = LogsSpec {
            connection: "lake".into(),
            prefix: None,
        };
        let target = pipeline_target("etl", "orders", &spec, false);
        assert_eq!(
            (target.connection.as_str(), target.prefix.as_str()),
            ("lake", DEFAULT_PREFIX)
        );
        assert_eq!(target.named_by, "spec.logs of Pipeline etl/orders");
        assert!(!target.ambient);
        let spec = LogsSpec {
            prefix: Some("runs/logs".into()),
            ..spec
        };
        assert_eq!(
            pipeline_target("etl", "orders", &spec, true).prefix,
            "runs/logs"
        );
    }

    #[test]
    fn expired_values_are_read_again() {
        let cache: Expiring<&str, u32> = Expiring::new();
        cache.put("a", 1, Duration::from_secs(60));
        cache.put("b", 2, Duration::ZERO);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
    }
}
