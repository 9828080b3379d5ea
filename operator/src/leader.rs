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

/// How long a lease holds without renewal.
pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(4);

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

    /// Gives the Lease up on shutdown so another replica takes over at once.
    pub async fn release(api: &Api<Lease>, name: &str, identity: &str) {
        let Ok(Some(mut lease)) = api.get_opt(name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = api.replace(name, &PostParams::default(), &lease).await {
            tracing::warn!(%error, "releasing the leader Lease failed; the next leader waits for it to expire");
        }
    }
}

#[cfg(test)]
mod tests {
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
}
