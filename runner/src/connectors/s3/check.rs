//! The probe of `synqx check`: one listing of at most one key below the bucket and prefix,
//! with short timeouts and one retry, so a store that refuses or never answers is reported
//! within seconds. The S3 error code decides the reason.

use std::time::Duration;

use object_store::list::PaginatedListOptions;
use synqx_api::connection::CheckReport;

use super::config::S3Config;
use super::connect::{Bucket, Patience, xml_tag};
use crate::check::{CheckReason, invalid, report};

/// Timeouts and retries of the probe's requests.
const PATIENCE: Patience = Patience {
    connect_timeout: Duration::from_secs(3),
    request_timeout: Some(Duration::from_secs(5)),
    max_retries: 1,
    retry_timeout: Duration::from_secs(5),
};
/// Longest wait for the whole probe, fetching ambient credentials included.
const TIMEOUT: Duration = Duration::from_secs(15);

pub(super) async fn check(config: S3Config) -> CheckReport {
    let bucket = match Bucket::open(&config, PATIENCE) {
        Ok(bucket) => bucket,
        Err(e) => return invalid(&e),
    };
    let prefix = Some(bucket.prefix.as_str()).filter(|p| !p.is_empty());
    let options = PaginatedListOptions {
        max_keys: Some(1),
        ..Default::default()
    };
    let listing = bucket.lister.list_paginated(prefix, options);
    let at = bucket.url("");
    let say = |reason: CheckReason, what: String| {
        report(
            reason,
            format!("Connection \"{}\": {what}", bucket.connection),
        )
    };
    match tokio::time::timeout(TIMEOUT, listing).await {
        Ok(Ok(page)) => say(
            CheckReason::Connected,
            format!(
                "listed {at} ({})",
                if page.result.objects.is_empty() {
                    "no objects below it yet"
                } else {
                    "it holds objects"
                }
            ),
        ),
        Ok(Err(e)) => {
            let (reason, hint) = classify(&e);
            say(
                reason,
                format!("listing {at}: {}: {hint}", bucket.describe(&e)),
            )
        }
        Err(_) => say(
            CheckReason::Unreachable,
            format!(
                "listing {at}: no answer within {}s: {UNREACHABLE}",
                TIMEOUT.as_secs()
            ),
        ),
    }
}

const UNREACHABLE: &str = "check s3.endpoint and s3.region, and that the runner's network (DNS, a NetworkPolicy, a proxy) lets it reach the store";

/// The reason of a failed listing and what to do: from S3's error code, else the HTTP status,
/// else where it failed.
fn classify(e: &object_store::Error) -> (CheckReason, &'static str) {
    const UNAUTHORIZED: &str = "check s3.accessKeyId and s3.secretAccessKey (with s3.useAmbientCredentials, the AWS credentials of the environment) and that they may list the bucket";
    const NOT_FOUND: &str =
        "the bucket does not exist: create it, or fix s3.bucket (and s3.endpoint)";
    const INVALID: &str = "check s3.region, s3.endpoint and s3.forcePathStyle";
    let text = e.to_string();
    match xml_tag(&text, "Code").as_deref() {
        Some("NoSuchBucket") => return (CheckReason::NotFound, NOT_FOUND),
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AccessDenied"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "InvalidSecurity"
            | "NotSignedUp"
            | "UnauthorizedAccess",
        ) => return (CheckReason::Unauthorized, UNAUTHORIZED),
        Some(
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "InvalidBucketName"
            | "IllegalLocationConstraintException"
            | "InvalidRequest",
        ) => return (CheckReason::Invalid, INVALID),
        _ => {}
    }
    match http_status(&text) {
        Some(401 | 403) => (CheckReason::Unauthorized, UNAUTHORIZED),
        Some(404) => (CheckReason::NotFound, NOT_FOUND),
        Some(500..) => (CheckReason::Unreachable, UNREACHABLE),
        Some(_) => (CheckReason::Invalid, INVALID),
        // Failing before the listing was sent means the credentials could not be had.
        None if !text.contains("list request") => (
            CheckReason::Unauthorized,
            "no credentials: set s3.accessKeyId and s3.secretAccessKey, or give the pod AWS credentials (AWS_* variables, a web identity, an instance profile)",
        ),
        None => (CheckReason::Unreachable, UNREACHABLE),
    }
}

/// The HTTP status of a failed request in object_store's text of it.
fn http_status(text: &str) -> Option<u16> {
    let marker = "status code: ";
    let start = text.find(marker)? + marker.len();
    text.get(start..start + 3)?.parse().ok()
}
