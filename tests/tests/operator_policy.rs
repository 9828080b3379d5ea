//! What a Pipeline may ask of the operator, on the real control plane: an image the operator
//! does not allow and another service account are refused naming the field and the flag, the
//! service account is taken with `--allow-service-account-override`; a Secret without the
//! label `synqx.io/connection-secret: "true"` fails its Connection's check and the runs that
//! use it, with no pod, until it is labeled; ambient cloud credentials reach an S3
//! Connection only when it asks and the operator lends them.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use synqx_api::PipelineRun;
use synqx_api::run::RunPhase;
use synqx_e2e::cluster::wait_until;
use synqx_e2e::node::synqx_run;
use synqx_e2e::own_operator::OwnOperator;
use synqx_e2e::runs::{
    apply, connection, finished, folder, get_run, jobs_of, pipeline_ready, setup, start_run, step,
    wait_for_events,
};
use synqx_e2e::secrets::checked;
use synqx_testkit::servers::postgres;

/// Tests that replace the shared operator must not overlap with those that use it.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUNNER_IMAGE: &str = "ghcr.io/synqx/synqx:0.1.0";

/// A Pipeline of one `sql` step on `connection`, with `runner` as its `spec.runner`.
fn pipeline(name: &str, runner: &str, connection: &str) -> String {
    format!(
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  runner: {runner}\n  steps:\n    - {{name: only, sql: {{connection: {connection}, statements: [\"SELECT 1\"]}}}}\n---\n"
    )
}

fn phase(run: &PipelineRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// Waits until the Pipeline's `Ready` condition is `status`.
async fn pipeline_becomes(ns: &synqx_e2e::cluster::TestNamespace, name: &str, status: &str) {
    wait_until(
        Duration::from_secs(90),
        &format!("Pipeline {name} to be Ready={status}"),
        || async { pipeline_ready(ns, name).await.0 == status },
    )
    .await;
}

#[tokio::test]
async fn a_runner_image_the_operator_does_not_allow_is_refused_naming_field_and_flag() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("image").await;
    apply(
        cluster,
        &ns,
        &[
            connection("db", "sqlite: {path: db.sqlite}"),
            pipeline("tools", "{image: \"registry.example/tools:1\"}", "db"),
        ]
        .concat(),
    );
    let expected = format!(
        "Pipeline/tools: spec.runner.image: \"registry.example/tools:1\" is not a runner image this operator allows (allowed: {RUNNER_IMAGE}); remove spec.runner.image to use the operator's runner image, or an administrator can add it with --allowed-runner-images (Helm value runner.allowedImages)"
    );
    assert_eq!(
        pipeline_ready(&ns, "tools").await,
        ("False".to_string(), expected.clone())
    );
    wait_for_events(
        cluster,
        &ns,
        "tools",
        "an Invalid Event about Pipeline tools",
        |r| r.iter().any(|r| r == "Invalid"),
    )
    .await;
    // A run of it waits, saying why, and starts no Job.
    start_run(cluster, &ns, "tools", "tools-1", "");
    let waiting = || async {
        get_run(&ns, "tools-1")
            .await
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Waiting" && c.status == "True")
            .map(|c| c.message)
    };
    wait_until(
        Duration::from_secs(60),
        "run tools-1 to wait for its Pipeline",
        || async { waiting().await.is_some() },
    )
    .await;
    let message = waiting().await.unwrap_or_default();
    assert!(message.contains(&expected), "{message}");
    assert!(jobs_of(&ns, "tools-1").await.is_empty());
}

#[tokio::test]
async fn another_service_account_is_refused_unless_the_operator_allows_it() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("account").await;
    // An account with the runner's rights, as an administrator would make one.
    apply(
        cluster,
        &ns,
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: etl-runner}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: etl-runner}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: synqx-runner}}\n\
             subjects: [{{kind: ServiceAccount, name: etl-runner, namespace: {}}}]\n---\n{}{}",
            ns.name,
            connection("db", "sqlite: {path: db.sqlite}"),
            pipeline("as-etl", "{serviceAccountName: etl-runner}", "db"),
        ),
    );
    assert_eq!(
        pipeline_ready(&ns, "as-etl").await,
        (
            "False".to_string(),
            "Pipeline/as-etl: spec.runner.serviceAccountName: \"etl-runner\": this operator runs step pods as synqx-runner only; remove spec.runner.serviceAccountName, or an administrator can let Pipelines choose with --allow-service-account-override (Helm value runner.allowServiceAccountOverride)".to_string()
        )
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let operator = OwnOperator::start(
        cluster,
        &["--allow-service-account-override", "--log-format", "text"],
        &dir.path().join("operator.log"),
    )
    .await;
    pipeline_becomes(&ns, "as-etl", "True").await;
    start_run(cluster, &ns, "as-etl", "as-etl-1", "");
    let run = finished(&ns, "as-etl-1").await;
    drop(operator);
    assert_eq!(phase(&run), Some(RunPhase::Succeeded), "{:#?}", run.status);
    let accounts: Vec<Option<String>> = jobs_of(&ns, "as-etl-1")
        .await
        .into_iter()
        .map(|job| job.spec?.template.spec?.service_account_name)
        .collect();
    assert_eq!(accounts, vec![Some("etl-runner".to_string())]);
}

#[tokio::test]
async fn a_secret_without_the_label_fails_the_check_and_the_runs_until_it_is_labeled() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("optin").await;
    let pg = postgres();
    let pg_login = |labels: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg-login, {labels}}}\nstringData: {{password: {:?}}}\n---\n",
            pg.password
        )
    };
    apply(
        cluster,
        &ns,
        &[
            pg_login(""),
            // The default sslMode (require): the test server serves TLS.
            connection(
                "warehouse",
                &format!(
                    "postgres: {{host: {}, port: {}, database: {}, user: {{value: {}}}, password: {{secretKeyRef: {{name: pg-login, key: password}}}}}}",
                    pg.host, pg.port, pg.database, pg.user
                ),
            ),
            pipeline("count", "{}", "warehouse"),
        ]
        .concat(),
    );
    let hint = "Secret \"pg-login\" is not labeled synqx.io/connection-secret: \"true\", so Connections may not use it; add the label synqx.io/connection-secret: \"true\" to the Secret if Connections may use it (kubectl label secret pg-login synqx.io/connection-secret=true)";
    let (status, reason, message) = checked(&ns, "warehouse").await;
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        (
            "False",
            "SecretNotLabeled",
            format!("postgres.password: {hint}").as_str()
        )
    );
    wait_for_events(
        cluster,
        &ns,
        "warehouse",
        "a SecretNotLabeled Event about Connection warehouse",
        |r| r.iter().any(|r| r == "SecretNotLabeled"),
    )
    .await;

    // A run fails its step with the reason, and no pod ever had the Secret.
    start_run(cluster, &ns, "count", "count-1", "");
    let run = finished(&ns, "count-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Failed), "{:#?}", run.status);
    assert_eq!(
        step(&run, "only").message.as_deref(),
        Some(
            format!(
                "the operator refused to start this step: Connection \"warehouse\": postgres.password: {hint}"
            )
            .as_str()
        ),
        "{:#?}",
        run.status
    );
    let pods: Api<Pod> = ns.api();
    let started = pods
        .list(&ListParams::default().labels("synqx.io/run=count-1"))
        .await
        .unwrap_or_else(|e| panic!("listing the pods of count-1: {e}"))
        .items;
    assert!(started.is_empty(), "a pod started: {started:?}");

    // Labeled, it is used: the check connects and a run succeeds.
    apply(
        cluster,
        &ns,
        &pg_login("labels: {synqx.io/connection-secret: \"true\"}"),
    );
    wait_until(
        Duration::from_secs(120),
        "Connection warehouse to connect once its Secret is labeled",
        || async { checked(&ns, "warehouse").await.1 == "Connected" },
    )
    .await;
    start_run(cluster, &ns, "count", "count-2", "");
    let run = finished(&ns, "count-2").await;
    assert_eq!(phase(&run), Some(RunPhase::Succeeded), "{:#?}", run.status);
}

#[tokio::test]
async fn ambient_credentials_reach_s3_only_when_the_connection_asks_and_the_operator_lends_them() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("ambient").await;
    let moto = synqx_testkit::s3::server();
    let bucket = moto.bucket("ambient");
    let inbox = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        inbox.path().join("orders.csv"),
        "id,name\n1,ada\n2,grace\n3,edsger\n",
    )
    .expect("orders.csv");
    let lake = |ambient: &str| {
        format!(
            "s3: {{bucket: {bucket}, endpoint: \"{}\", forcePathStyle: true, region: us-east-1{ambient}}}",
            moto.endpoint()
        )
    };
    // The step pods' environment holds AWS keys (moto takes any), as a node's or IRSA's would.
    let copy_to = |name: &str, lake: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n\
             \x20 runner:\n    env: [{{name: AWS_ACCESS_KEY_ID, value: ambient-key}}, {{name: AWS_SECRET_ACCESS_KEY, value: ambient-secret}}]\n\
             \x20 steps:\n    - name: copy\n      sync:\n\
             \x20       source: {{connection: inbox, asset: {{fqn: orders.csv}}}}\n\
             \x20       destination: {{connection: {lake}, asset: {{fqn: {name}/}}, format: csv, mode: overwrite}}\n---\n"
        )
    };
    apply(
        cluster,
        &ns,
        &[
            folder("inbox", inbox.path()),
            connection("asking", &lake(", useAmbientCredentials: true")),
            connection("silent", &lake("")),
            copy_to("via-asking", "asking"),
            copy_to("via-silent", "silent"),
        ]
        .concat(),
    );
    let withheld = "this operator lends no ambient cloud credentials to Connections; an administrator can allow them with --allow-ambient-credentials (Helm value runner.allowAmbientCredentials), or give the Connection its own keys";
    let none = "Connection \"silent\": s3 has no credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.useAmbientCredentials: true to use the AWS credentials of the environment (on a cluster the operator must allow them)";
    let (_, reason, message) = checked(&ns, "asking").await;
    assert_eq!(reason, "Invalid", "{message}");
    assert!(message.contains(withheld), "{message}");
    let (_, reason, message) = checked(&ns, "silent").await;
    assert_eq!(reason, "Invalid", "{message}");
    assert!(message.contains(none), "{message}");

    // A Connection with no credentials that does not ask for the environment's can never
    // work: the connectors' checks make its Pipeline Invalid, and no run of it starts a pod.
    // (The Pipeline names the Connection and the field as `synqx validate` prints them.)
    let invalid = format!(
        "Connection/silent: spec.s3: {}",
        none.trim_start_matches("Connection \"silent\": ")
    );
    invalid_naming(&ns, "via-silent", &invalid).await;

    // The operator lends nothing: asking does not reach the bucket either.
    start_run(cluster, &ns, "via-asking", "via-asking-1", "");
    let run = finished(&ns, "via-asking-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Failed), "{:#?}", run.status);
    let message = step(&run, "copy").message.clone().unwrap_or_default();
    assert!(message.contains(withheld), "{message}: {:#?}", run.status);

    // An operator that lends them: only the Connection that asks gets them.
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = OwnOperator::start(
        cluster,
        &["--allow-ambient-credentials", "--log-format", "text"],
        &dir.path().join("operator.log"),
    )
    .await;
    start_run(cluster, &ns, "via-asking", "via-asking-2", "");
    let asking = finished(&ns, "via-asking-2").await;
    invalid_naming(&ns, "via-silent", &invalid).await;
    drop(operator);
    assert_eq!(
        phase(&asking),
        Some(RunPhase::Succeeded),
        "{:#?}",
        asking.status
    );
    assert_eq!(step(&asking, "copy").rows_written, Some(3));

    let keys = moto.keys(&bucket);
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("via-asking/")),
        "{keys:?}"
    );
    // Read back from this machine with keys of its own.
    let read = tempfile::tempdir().expect("tempdir");
    synqx_run(
        cluster,
        &[
            connection(
                "lake",
                &format!(
                    "s3: {{bucket: {bucket}, endpoint: \"{}\", forcePathStyle: true, region: us-east-1, accessKeyId: {{value: testing}}, secretAccessKey: {{value: testing}}}}",
                    moto.endpoint()
                ),
            ),
            folder("out", &read.path().join("out")),
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: read-back}\nspec:\n  steps:\n\
             \x20   - name: copy\n      sync:\n\
             \x20       source: {connection: lake, asset: {fqn: via-asking/}, format: csv}\n\
             \x20       destination: {connection: out, asset: {fqn: orders.csv}, format: csv, mode: overwrite}\n"
                .to_string(),
        ]
        .concat(),
        read.path(),
    );
    let written = std::fs::read_to_string(read.path().join("out/orders.csv")).expect("orders.csv");
    assert_eq!(written, "id,name\n1,ada\n2,grace\n3,edsger\n");
}

/// Waits until the Pipeline `name` is not Ready with a message that holds `problem`.
async fn invalid_naming(ns: &synqx_e2e::cluster::TestNamespace, name: &str, problem: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("Pipeline {name} to be Invalid naming: {problem}"),
        || async {
            let (status, message) = pipeline_ready(ns, name).await;
            status == "False" && message.contains(problem)
        },
    )
    .await;
}
