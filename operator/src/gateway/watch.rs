//! The review of an open follower: every [`super::RECHECK`] its token and right are asked
//! for again, and a follower whose token is no longer accepted (4401) or whose right was
//! revoked (4403) is closed. The stream itself is [`synqx_web::follow`]'s.

use std::sync::Arc;
use std::time::Duration;

use synqx_api::gateway::{CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED};
use synqx_web::follow::{Close, Recheck};

use super::Gateway;
use super::auth::{self, Access, Denied};

/// A follower's token and the right it was let in with.
pub struct Review {
    pub gateway: Arc<Gateway>,
    pub token: String,
    pub access: Access,
}

impl Recheck for Review {
    fn every(&self) -> Duration {
        self.gateway.recheck
    }

    async fn check(&self) -> Option<Close> {
        match auth::authorize(&self.gateway.client, &self.token, &self.access).await {
            Ok(_) => None,
            Err(denied @ Denied::Unauthenticated(_)) => Some(Close {
                code: CLOSE_UNAUTHORIZED,
                reason: denied.to_string(),
            }),
            Err(denied @ Denied::Forbidden { .. }) => Some(Close {
                code: CLOSE_FORBIDDEN,
                reason: denied.to_string(),
            }),
            // The API server is away: keep the follower, ask again at the next tick.
            Err(error @ Denied::Unavailable { .. }) => {
                tracing::warn!(%error, "re-reviewing a follower's token failed");
                None
            }
        }
    }
}
