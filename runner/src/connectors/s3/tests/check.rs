//! The probe of `synqx check` against real S3 servers (moto): a bucket that is there, one that
//! is not, keys the store rejects, an endpoint nothing listens on; never a credential in the
//! message.

use std::time::{Duration, Instant};

use synqx_api::ConnectionSpec;
use synqx_api::connection::CheckReport;

use super::support::{assert_redacted, connection, keyed, keyed_secrets};
use crate::connectors::ConnectionRef;
use crate::secrets::Secrets;
use synqx_testkit::s3::{self as moto, closed_endpoint, echoing_server};

async fn check(spec: &ConnectionSpec, secrets: &Secrets) -> CheckReport {
    let conn = ConnectionRef {
        name: "lake",
        spec,
        base_dir: std::env::temp_dir(),
        secrets,
    };
    crate::connectors::check(&conn).await
}

/// The report on a connection to `bucket` at `endpoint` with keys from a Secret, which must
/// be `reason` for not being ready, and name no key.
async fn refused(endpoint: String, bucket: &str, reason: &str) -> CheckReport {
    let report = check(&keyed(endpoint, bucket), &keyed_secrets()).await;
    assert!(!report.ready, "{report:?}");
    assert_eq!(report.reason.as_str(), reason, "{report:?}");
    assert_redacted(&report.message);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_bucket_is_connected() {
    let moto = moto::server();
    let bucket = moto.bucket("check");
    let secrets = Secrets::default();
    let report = check(
        &connection(&moto.endpoint(), &bucket, Some("raw")),
        &secrets,
    )
    .await;
    assert!(report.ready, "{report:?}");
    assert_eq!(report.reason.as_str(), "Connected");
    assert_eq!(
        report.message,
        format!("Connection \"lake\": listed s3://{bucket}/raw/ (no objects below it yet)")
    );
    let whole = connection(&moto.endpoint(), &bucket, None);
    let report = check(&whole, &secrets).await;
    assert_eq!(
        report.message,
        format!("Connection \"lake\": listed s3://{bucket}/ (no objects below it yet)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_not_found() {
    let endpoint = moto::server().endpoint();
    let report = refused(endpoint, "synqx-no-such-bucket", "NotFound").await;
    assert_eq!(
        report.message,
        "Connection \"lake\": listing s3://synqx-no-such-bucket/lake/: NoSuchBucket: The specified bucket does not exist: the bucket does not exist: create it, or fix s3.bucket (and s3.endpoint)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_keys_are_unauthorized() {
    let endpoint = moto::strict_server().endpoint();
    let report = refused(endpoint, "orders", "Unauthorized").await;
    assert!(
        report.message.starts_with(
            "Connection \"lake\": listing s3://orders/lake/: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.: check s3.accessKeyId and s3.secretAccessKey"
        ),
        "{}",
        report.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_echoed_by_a_rejecting_server_are_redacted() {
    let (endpoint, seen) = echoing_server();
    let report = refused(endpoint, "orders", "Unauthorized").await;
    let requests = seen.lock().map(|s| s.join("\n")).unwrap_or_default();
    assert!(
        requests.contains("AKIDSYNQXREDACTME01"),
        "the server did not see the key: {requests}"
    );
    assert!(
        requests.contains("max-keys=1"),
        "not a listing of one key: {requests}"
    );
    assert!(report.message.contains("Credential=***/"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unreachable_within_seconds() {
    let started = Instant::now();
    let report = check(
        &connection(&closed_endpoint(), "lake", None),
        &Secrets::default(),
    )
    .await;
    assert!(!report.ready);
    assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
    assert!(
        report.message.starts_with("Connection \"lake\": listing s3://lake/: ")
            && report.message.ends_with(
                ": check s3.endpoint and s3.region, and that the runner's network (DNS, a NetworkPolicy, a proxy) lets it reach the store"
            ),
        "{}",
        report.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_secret_is_invalid() {
    let report = check(&keyed(closed_endpoint(), "orders"), &Secrets::new([], [])).await;
    assert!(!report.ready);
    assert_eq!(report.reason.as_str(), "Invalid", "{report:?}");
    assert!(
        report.message.starts_with(
            "Connection \"lake\": s3.accessKeyId: secret key \"id\" of Secret \"lake-keys\" is missing"
        ),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("SYNQX_SECRET_LAKE_KEYS__ID"),
        "{}",
        report.message
    );
}
