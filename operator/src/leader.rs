//! Leader election through a `coordination.k8s.io/v1` Lease: one replica reconciles, the
//! others wait. Every write carries the Lease's resourceVersion, so two replicas can never
//! both believe they took it.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a lease holds without renewal.
pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(4);
/// Tries at giving the Lease up when another write (a renewal in flight) gets in between.
const RELEASE_TRIES: usize = 3;

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What a look at the Lease decided.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Another replica holds it.
    HeldBy(String),
}

/// Decides from the Lease's spec at `now` (seconds since the epoch).
pub fn claim(spec: &LeaseSpec, identity: &str, now: i64) -> Claim {
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Claim::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64;
    if holder.is_empty() || renewed + duration < now {
        Claim::Take
    } else {
        Claim::HeldBy(holder)
    }
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
        }
    }

    /// Runs the election in its own task until [`Election::resign`].
    pub fn spawn(self, leader: watch::Sender<bool>) -> Election {
        let (api, name, identity) = (self.api.clone(), self.name.clone(), self.identity.clone());
        Election {
            task: tokio::spawn(self.run(leader)),
            api,
            name,
            identity,
        }
    }

    /// Runs the election forever: `leader` is true while this replica holds the Lease.
    pub async fn run(self, leader: watch::Sender<bool>) {
        loop {
            let holding = match self.try_acquire().await {
                Ok(holding) => holding,
                Err(error) => {
                    tracing::warn!(%error, "leader election: the Lease could not be read or written");
                    false
                }
            };
            if *leader.borrow() != holding {
                tracing::info!(identity = %self.identity, leader = holding, "leadership changed");
            }
            let _ = leader.send(holding);
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(match claim(&spec, &self.identity, Utc::now().timestamp()) {
            Claim::HeldBy(_) => return Ok(false),
            Claim::Renew => {
                let acquired = spec.acquire_time.map(|t| t.0).unwrap_or(now);
                self.spec(acquired, now, transitions)
            }
            Claim::Take => self.spec(now, now, transitions + 1),
        });
        // `replace` sends the resourceVersion we read: a concurrent writer makes this fail.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

/// A running election (see [`Elector::spawn`]).
pub struct Election {
    task: JoinHandle<()>,
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Election {
    /// Stops campaigning, then gives the Lease up if this replica holds it, so another
    /// replica takes over at once. Stopped first: a renewal in flight, or the next one, would
    /// otherwise take the Lease again after it was given up, and keep it held by a replica
    /// that is gone until it expires.
    pub async fn resign(self) {
        self.task.abort();
        // Cancelled is the expected end; a panic in the election has been logged already.
        let _ = self.task.await;
        for _ in 0..RELEASE_TRIES {
            match release(&self.api, &self.name, &self.identity).await {
                Ok(()) => return,
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    tracing::warn!(%error, "releasing the leader Lease failed; the next leader waits for it to expire");
                    return;
                }
            }
        }
        tracing::warn!(
            "releasing the leader Lease kept conflicting with other writes; the next leader waits for it to expire"
        );
    }
}

/// Clears the Lease's holder if it is `identity`.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(name, &PostParams::default(), &lease)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use hyper::body::Bytes;

    use super::*;

    fn spec(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Timestamp::from_second(renewed).ok().map(MicroTime),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_expired() {
        assert_eq!(claim(&spec(None, 0), "a", 100), Claim::Take);
        assert_eq!(claim(&spec(Some("a"), 95), "a", 100), Claim::Renew);
        assert_eq!(
            claim(&spec(Some("b"), 95), "a", 100),
            Claim::HeldBy("b".into())
        );
        assert_eq!(claim(&spec(Some("b"), 84), "a", 100), Claim::Take);
        assert_eq!(
            claim(&spec(Some("b"), 85), "a", 100),
            Claim::HeldBy("b".into())
        );
    }

    /// A fake API server holding one Lease, writing it only with the resourceVersion it
    /// holds, as the real one does.
    #[derive(Clone, Default)]
    struct Leases(Arc<Mutex<Held>>);

    #[derive(Default)]
    struct Held {
        lease: Option<Lease>,
        version: u64,
        /// The next write conflicts, as if another writer got in first.
        conflict: bool,
    }

    impl Leases {
        fn holder(&self) -> Option<String> {
            let held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            held.lease
                .as_ref()
                .and_then(|l| l.spec.as_ref()?.holder_identity.clone())
        }

        fn conflict_next_write(&self) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .conflict = true;
        }

        fn answer(&self, method: &str, body: &[u8]) -> (u16, String) {
            let status = |code: u16| {
                let reason = match code {
                    404 => "NotFound",
                    409 => "Conflict",
                    _ => "BadRequest",
                };
                let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": "fake"});
                (code, status.to_string())
            };
            let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if method == "GET" {
                return match &held.lease {
                    Some(lease) => (200, serde_json::to_string(lease).unwrap_or_default()),
                    None => status(404),
                };
            }
            let Ok(mut lease) = serde_json::from_slice::<Lease>(body) else {
                return status(400);
            };
            let sent = lease.metadata.resource_version.clone().unwrap_or_default();
            let fresh = held.version.to_string();
            if held.conflict || (method == "PUT" && sent != fresh) {
                // The write that got in first.
                held.conflict = false;
                held.version += 1;
                let version = held.version.to_string();
                if let Some(lease) = held.lease.as_mut() {
                    lease.metadata.resource_version = Some(version);
                }
                return status(409);
            }
            held.version += 1;
            lease.metadata.resource_version = Some(held.version.to_string());
            held.lease = Some(lease.clone());
            (200, serde_json::to_string(&lease).unwrap_or_default())
        }

        fn api(&self) -> Api<Lease> {
            let server = self.clone();
            let client = crate::fake_api::client(move |method: String, body: Bytes| {
                let (code, body) = server.answer(&method, &body);
                std::future::ready((code, Bytes::from(body)))
            });
            Api::namespaced(client, "synqx-system")
        }
    }

    /// Time is paused: the election's renewals, were it still running, come at once, so the
    /// end of the test proves none took the Lease again.
    #[tokio::test(start_paused = true)]
    async fn a_resigned_replica_gives_the_lease_up_and_does_not_take_it_again() {
        let leases = Leases::default();
        let (leader, mut leading) = watch::channel(false);
        let election = Elector::new(leases.api(), "synqx-operator", "a").spawn(leader);
        if leading.wait_for(|l| *l).await.is_err() {
            panic!("the election ended before it took a free Lease");
        }
        assert_eq!(leases.holder().as_deref(), Some("a"));
        // A renewal gets its write in between the release's read and write.
        leases.conflict_next_write();
        election.resign().await;
        assert_eq!(
            leases.holder(),
            None,
            "the release gave up after a conflict"
        );
        tokio::time::sleep(RENEW_EVERY * 3).await;
        assert_eq!(
            leases.holder(),
            None,
            "the election took the Lease again after resigning"
        );
    }
}
