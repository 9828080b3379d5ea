//! Tokens the gateway already bound to an attempt, so a pod's reports after its first cost no
//! API call: without it each report (one a second per step) is a TokenReview and reads of the
//! pod and its Job. A binding is kept under the SHA-256 of the token (never the token) with
//! the pod's UID and the attempt it reports for, until the token expires (its `exp`) and at
//! most [`MAX_AGE`]; the caller drops it at once when the pod is gone from the gateway's pod
//! watch, and the next report is reviewed again (the API server refuses the token of a
//! deleted pod).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::digest::{SHA256, digest};
use synqx_api::telemetry::TelemetryReport;
use tokio::time::Instant;

use super::PodToken;

/// The longest a binding is trusted without a new review: a token revoked otherwise than by
/// deleting its pod (its service account deleted) stops reporting within this time.
pub const MAX_AGE: Duration = Duration::from_secs(120);

/// The SHA-256 of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        let mut hash = [0; 32];
        hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(hash)
    }
}

/// The attempt a report is for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    namespace: String,
    run: String,
    step: String,
    attempt: u32,
}

impl Target {
    fn of(report: &TelemetryReport) -> Self {
        Self {
            namespace: report.namespace.clone(),
            run: report.run.clone(),
            step: report.step.clone(),
            attempt: report.attempt,
        }
    }
}

/// A token bound to the attempt it reports for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pod: PodToken,
    /// The run's Pipeline, which the attempt's stored log is named by.
    pipeline: String,
    target: Target,
}

impl Binding {
    /// `pod`, which runs the attempt `report` names, of a run of `pipeline`.
    pub fn new(pod: PodToken, pipeline: String, report: &TelemetryReport) -> Self {
        Self {
            pod,
            pipeline,
            target: Target::of(report),
        }
    }
}

struct Kept {
    binding: Binding,
    until: Instant,
}

/// The bindings of the tokens that reported lately.
#[derive(Default)]
pub struct Bindings {
    by_token: Mutex<HashMap<TokenHash, Kept>>,
}

impl Bindings {
    fn map(&self) -> MutexGuard<'_, HashMap<TokenHash, Kept>> {
        self.by_token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pod of a token bound lately, while its binding is fresh and `alive` says the pod is
    /// still there; else the binding is dropped and the token must be reviewed again.
    pub fn pod(
        &self,
        token: TokenHash,
        now: Instant,
        alive: impl FnOnce(&PodToken) -> bool,
    ) -> Option<PodToken> {
        let mut map = self.map();
        let kept = map.get(&token)?;
        if kept.until > now && alive(&kept.binding.pod) {
            return Some(kept.binding.pod.clone());
        }
        map.remove(&token);
        None
    }

    /// The Pipeline of the run when the token was bound to the very attempt `report` names;
    /// `None` for another attempt, which is bound anew (and refused unless the pod runs that
    /// one too).
    pub fn pipeline(&self, token: TokenHash, report: &TelemetryReport) -> Option<String> {
        self.map()
            .get(&token)
            .filter(|k| k.binding.target == Target::of(report))
            .map(|k| k.binding.pipeline.clone())
    }

    /// Keeps the `binding` of `token`, reviewed and bound at `now` (wall clock `wall`), until
    /// the token's `exp` and at most [`MAX_AGE`]. Expired bindings of other tokens go at the
    /// same time, so the map holds only the pods that report.
    pub fn keep(
        &self,
        token: TokenHash,
        exp: Option<u64>,
        binding: Binding,
        now: Instant,
        wall: SystemTime,
    ) {
        let left = match exp {
            Some(exp) => {
                let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
                Duration::from_secs(exp).saturating_sub(wall).min(MAX_AGE)
            }
            None => MAX_AGE,
        };
        let mut map = self.map();
        map.retain(|_, k| k.until > now);
        if left.is_zero() {
            return;
        }
        map.insert(
            token,
            Kept {
                binding,
                until: now + left,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map().len()
    }
}

/// The `exp` claim of a JWT (seconds since 1970), read without checking the signature: it is
/// only trusted after the API server accepted the very same token, whose signature covers it.
pub fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodToken {
        PodToken {
            namespace: "etl".into(),
            user: "system:serviceaccount:etl:synqx-runner".into(),
            pod_name: "load-x7k2p".into(),
            pod_uid: "pod-uid".into(),
        }
    }

    fn report(attempt: u32) -> TelemetryReport {
        TelemetryReport {
            namespace: "etl".into(),
            run: "orders-1".into(),
            step: "load".into(),
            attempt,
            ..Default::default()
        }
    }

    fn binding(attempt: u32) -> Binding {
        Binding::new(pod(), "orders".into(), &report(attempt))
    }

    fn jwt(claims: &serde_json::Value) -> String {
        let encode = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.signature",
            encode(br#"{"alg":"RS256"}"#),
            encode(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn the_expiry_is_the_tokens_exp_claim() {
        assert_eq!(
            expiry(&jwt(&serde_json::json!({"exp": 1_800_000_000u64}))),
            Some(1_800_000_000)
        );
        assert_eq!(expiry(&jwt(&serde_json::json!({"sub": "x"}))), None);
        assert_eq!(expiry("not a jwt"), None);
    }

    #[test]
    fn a_binding_is_kept_by_the_hash_of_the_token_for_its_attempt() {
        let bindings = Bindings::default();
        let token = TokenHash::of("token-a");
        let now = Instant::now();
        bindings.keep(token, None, binding(2), now, SystemTime::now());
        assert_eq!(bindings.pod(token, now, |_| true), Some(pod()));
        assert_eq!(
            bindings.pipeline(token, &report(2)).as_deref(),
            Some("orders")
        );
        assert_eq!(bindings.pipeline(token, &report(3)), None);
        assert_eq!(bindings.pod(TokenHash::of("token-b"), now, |_| true), None);
    }

    #[test]
    fn a_binding_ends_with_its_pod_its_token_or_its_age() {
        let bindings = Bindings::default();
        let token = TokenHash::of("token-a");
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        // The pod is gone from the watch: the binding goes with it.
        bindings.keep(token, None, binding(1), now, wall);
        assert_eq!(bindings.pod(token, now, |_| false), None);
        assert_eq!(bindings.pod(token, now, |_| true), None);
        // The token expires in 30 s: kept that long, not longer.
        bindings.keep(token, Some(1_000_030), binding(1), now, wall);
        let later = |s| now + Duration::from_secs(s);
        assert!(bindings.pod(token, later(29), |_| true).is_some());
        assert_eq!(bindings.pod(token, later(30), |_| true), None);
        // A token that expires in a day is still reviewed again after MAX_AGE.
        bindings.keep(token, Some(1_086_400), binding(1), now, wall);
        assert_eq!(bindings.pod(token, now + MAX_AGE, |_| true), None);
        // An expired token is not kept at all, and keeping drops expired bindings.
        bindings.keep(token, Some(999_999), binding(1), now, wall);
        assert_eq!(bindings.len(), 0);
        bindings.keep(token, None, binding(1), now, wall);
        let other = TokenHash::of("token-b");
        bindings.keep(other, None, binding(1), now + MAX_AGE, wall);
        assert_eq!(bindings.len(), 1);
    }
}
