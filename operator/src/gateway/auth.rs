//! Who may read what, decided as the API server decides it for kubectl: the bearer token is
//! verified with a TokenReview, then a SubjectAccessReview asks whether its user may do the
//! route's verb on the route's resource (group `synqx.io`) in the namespace. Nothing is
//! cached: every request and every WebSocket connection asks again, and an open WebSocket
//! asks again every [`super::RECHECK`], so a revoked token stops reading within that time.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use synqx_api::gateway::BEARER_PROTOCOL;

/// What a route reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: String,
    pub name: Option<String>,
}

impl Access {
    /// `get pipelineruns {name}`: what reading one run (its watch, its logs) needs.
    pub fn get_run(namespace: &str, name: &str) -> Self {
        Self {
            verb: "get",
            resource: "pipelineruns",
            namespace: namespace.to_string(),
            name: Some(name.to_string()),
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}.synqx.io", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        write!(f, " in namespace {}", self.namespace)
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// 401: no token, or one the API server does not accept (forged, expired, of a deleted
    /// service account).
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid token whose user lacks the right.
    #[error("user \"{user}\" may not {access}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Forbidden {
        user: String,
        access: Box<Access>,
        reason: Option<String>,
    },
    /// 503: the API server could not answer the review.
    #[error("the API server could not review the request ({what}): {source}; try again")]
    Unavailable {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The bearer token of a request: the `Authorization` header, else the WebSocket subprotocol
/// `base64url.bearer.authorization.k8s.io.<token>`.
pub fn token(headers: &HeaderMap) -> Result<String, Denied> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(token.trim().to_string())
            }
            _ => Err(Denied::Unauthenticated(
                "the Authorization header is not `Bearer <token>`".into(),
            )),
        };
    }
    let offered = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for protocol in offered {
        if let Some(encoded) = protocol.strip_prefix(BEARER_PROTOCOL) {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .map_err(|_| {
                    Denied::Unauthenticated(format!(
                        "the subprotocol {BEARER_PROTOCOL}… does not hold a base64url token"
                    ))
                })?;
            return String::from_utf8(bytes).map_err(|_| {
                Denied::Unauthenticated(format!(
                    "the token of the subprotocol {BEARER_PROTOCOL}… is not text"
                ))
            });
        }
    }
    Err(Denied::Unauthenticated(format!(
        "no bearer token: send `Authorization: Bearer <token>` (e.g. from `kubectl create token`), \
         or on a WebSocket the subprotocol {BEARER_PROTOCOL}<base64url token>"
    )))
}

/// The API server's review of `token` for `audiences` (none: its own).
pub async fn review_token(
    client: &Client,
    token: &str,
    audiences: Option<Vec<String>>,
) -> Result<TokenReviewStatus, Denied> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences,
        },
        ..Default::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|source| Denied::Unavailable {
            what: "TokenReview",
            source,
        })?;
    Ok(reviewed.status.unwrap_or_default())
}

/// Reviews `token` and whether its user may do `access`; returns the user's name.
pub async fn authorize(client: &Client, token: &str, access: &Access) -> Result<String, Denied> {
    let status = review_token(client, token, None).await?;
    let user = status.user.unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status.error.filter(|e| !e.is_empty());
        return Err(Denied::Unauthenticated(match why {
            Some(why) => format!("the API server does not accept the token: {why}"),
            None => "the API server does not accept the token (forged, expired, or of a deleted account)".into(),
        }));
    }
    let username = user.username.clone().unwrap_or_default();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            uid: user.uid,
            groups: user.groups,
            extra: user
                .extra
                .map(|extra| extra.into_iter().collect::<BTreeMap<_, _>>()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("synqx.io".into()),
                resource: Some(access.resource.into()),
                verb: Some(access.verb.into()),
                namespace: Some(access.namespace.clone()),
                name: access.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|source| Denied::Unavailable {
            what: "SubjectAccessReview",
            source,
        })?;
    let status = reviewed.status.unwrap_or_default();
    if status.allowed && status.denied != Some(true) {
        Ok(username)
    } else {
        Err(Denied::Forbidden {
            user: username,
            access: Box::new(access.clone()),
            reason: status.reason.filter(|r| !r.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(*name, value);
            }
        }
        map
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_subprotocol() {
        let from_header = token(&headers(&[("authorization", "Bearer abc.def")]));
        assert_eq!(from_header.ok().as_deref(), Some("abc.def"));
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("abc.def");
        let offered = format!("v1.watch.synqx.io, {BEARER_PROTOCOL}{encoded}");
        let from_protocol = token(&headers(&[("sec-websocket-protocol", &offered)]));
        assert_eq!(from_protocol.ok().as_deref(), Some("abc.def"));
    }

    #[test]
    fn a_missing_or_malformed_token_is_unauthenticated() {
        for case in [
            headers(&[]),
            headers(&[("authorization", "Basic dXNlcjpwdw==")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("sec-websocket-protocol", "v1.watch.synqx.io")]),
            headers(&[(
                "sec-websocket-protocol",
                "base64url.bearer.authorization.k8s.io.!!!",
            )]),
        ] {
            let result = token(&case);
            assert!(
                matches!(result, Err(Denied::Unauthenticated(_))),
                "{case:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_user_and_the_right() {
        let denied = Denied::Forbidden {
            user: "system:serviceaccount:etl:viewer".into(),
            access: Box::new(Access {
                verb: "get",
                resource: "pipelineruns",
                namespace: "etl".into(),
                name: Some("orders-1".into()),
            }),
            reason: None,
        };
        assert_eq!(
            denied.to_string(),
            "user \"system:serviceaccount:etl:viewer\" may not get pipelineruns.synqx.io orders-1 in namespace etl"
        );
    }
}
