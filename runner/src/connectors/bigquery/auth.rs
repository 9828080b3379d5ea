//! OAuth2 access tokens for a service account, as Google's libraries get them: an RS256 JWT
//! assertion (`iss` the account, `scope` BigQuery, `aud` the token URI, one hour) exchanged at
//! the token URI (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`). A token is kept
//! and refreshed a minute before it expires. Tokens never appear in messages.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::config::ServiceAccount;
use crate::connectors::jwt::JwtHeader;

/// The scope of every request this connector makes.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Lifetime asked for (Google grants at most one hour).
const ASSERTION_LIFETIME: u64 = 3600;
/// A token is renewed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A cached token.
struct Token {
    value: String,
    renew_at: Instant,
}

/// Hands out a valid access token, fetching a new one when needed.
pub struct TokenSource {
    account: Arc<ServiceAccount>,
    cached: Mutex<Option<Token>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(account: Arc<ServiceAccount>) -> Self {
        Self {
            account,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for at least a minute more. `Err` is a message without the assertion.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch(http).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Token, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let assertion = self
            .account
            .signer
            .sign(
                &JwtHeader::rs256(self.account.private_key_id.as_deref()),
                &claims,
            )
            .map_err(|e| TokenError::Rejected(e.to_string()))?;
        let form = format!(
            "grant_type={}&assertion={assertion}",
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
        let started = Instant::now();
        let response = http
            .post(&self.account.token_uri)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Unreachable(without_url(&e)))?;
        if !status.is_success() {
            // Google answers {"error": "invalid_grant", "error_description": "…"}.
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let error = answer
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no error code");
            let description = answer
                .get("error_description")
                .and_then(|e| e.as_str())
                .unwrap_or("");
            return Err(TokenError::Rejected(format!(
                "HTTP {status}: {error}: {description}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| TokenError::Rejected(format!("an unreadable token answer: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        Ok(Token {
            value: answer.access_token,
            renew_at: started + lifetime.saturating_sub(REFRESH_MARGIN),
        })
    }

    pub fn account(&self) -> &str {
        &self.account.client_email
    }

    /// Forgets the cached token, as if it had expired.
    #[cfg(test)]
    pub async fn expire(&self) {
        if let Some(t) = self.cached.lock().await.as_mut() {
            t.renew_at = Instant::now();
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token endpoint did not answer: {0}")]
    Unreachable(String),
    #[error("the token endpoint refused the service account: {0}")]
    Rejected(String),
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the token URI");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::bigquery::config::service_account;
    use crate::connectors::bigquery::config::tests::key_file;
    use crate::connectors::jwt::RsaSigner;
    use crate::connectors::jwt::tests::{TEST_KEY_PKCS8, verified_claims};
    use synqx_testkit::http::{Reply, StandIn, url_pairs};

    #[tokio::test]
    async fn a_service_account_trades_a_signed_assertion_for_a_token_and_refreshes_it() {
        let stub = StandIn::scripted(vec![
            Reply::json(
                200,
                json!({"access_token": "ya29.first", "expires_in": 3599, "token_type": "Bearer"}),
            ),
            Reply::json(
                200,
                json!({"access_token": "ya29.second", "expires_in": 3599, "token_type": "Bearer"}),
            ),
        ]);
        let token_uri = format!("{}/token", stub.url());
        let source = TokenSource::new(Arc::new(
            service_account("bq", &key_file(&token_uri)).unwrap(),
        ));
        let http = reqwest::Client::new();
        assert_eq!(source.token(&http).await.unwrap(), "ya29.first");
        // Cached while valid.
        assert_eq!(source.token(&http).await.unwrap(), "ya29.first");
        assert_eq!(stub.requests().len(), 1);
        source.expire().await;
        assert_eq!(source.token(&http).await.unwrap(), "ya29.second");

        let request = &stub.requests()[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/token");
        assert_eq!(
            request.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        let form: Vec<(String, String)> =
            url_pairs(std::str::from_utf8(&request.body).unwrap()).collect();
        assert_eq!(
            form[0],
            (
                "grant_type".into(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
            )
        );
        let claims = verified_claims(&RsaSigner::from_pem(TEST_KEY_PKCS8).unwrap(), &form[1].1);
        assert_eq!(claims["iss"], "loader@proj.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["aud"], token_uri);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }

    #[tokio::test]
    async fn a_refused_account_says_why_without_the_assertion() {
        let stub = StandIn::scripted(vec![Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )]);
        let source = TokenSource::new(Arc::new(
            service_account("bq", &key_file(&format!("{}/token", stub.url()))).unwrap(),
        ));
        let e = source
            .token(&reqwest::Client::new())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the token endpoint refused the service account: HTTP 400 Bad Request: invalid_grant: Invalid JWT Signature."
        );
    }
}
