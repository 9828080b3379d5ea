//! The vault on the real control plane: a PostgreSQL login sealed with `synqx seal` against
//! the namespace's published public key, kept in a Git-style file, opens only in the check
//! and step pods; the namespace's only Secret is the keyring, which the runner's identity
//! cannot read; the plaintext appears in no object, Event or pod log; a sealed value pasted
//! into another Connection and a Pipeline with an image of its own are refused, saying why.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use synqx_api::run::RunPhase;
use synqx_e2e::runs::{apply, csv_rows, finished, folder, pipeline_ready, setup, start_run, step};
use synqx_e2e::secrets::{checked, readable, seal, vault_published};
use synqx_testkit::postgres::psql;
use synqx_testkit::servers::postgres;

#[tokio::test]
async fn a_sealed_postgres_login_opens_only_in_the_pods_that_use_it() {
    let (cluster, ns) = setup("vault").await;
    let data = tempfile::tempdir().expect("tempdir");
    let schema = ns.name.replace('-', "_");
    let role = format!("{schema}_sealed_login");
    let password = format!("Zq7-{schema}-sealed-pw");
    psql(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders AS SELECT g AS id, g * 10 AS total FROM generate_series(1, 5) g; \
         CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON {schema}.orders TO {role}"
    ));

    // A namespace's first Connection makes the operator create its vault.
    apply(cluster, &ns, &folder("lake", &data.path().join("lake")));
    vault_published(&ns).await;

    let pg = postgres();
    let user = seal(cluster, &ns.name, "warehouse", "postgres.user", &role);
    let sealed_pw = seal(
        cluster,
        &ns.name,
        "warehouse",
        "postgres.password",
        &password,
    );
    assert!(sealed_pw.starts_with("sqx1:") && !sealed_pw.contains(&password));
    // What goes into Git: no Secret, only sealed values.
    let warehouse = |name: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: {name}}}\nspec:\n  postgres:\n    host: {}\n    port: {}\n    database: {}\n    sslMode: disable\n    user: {{sealed: \"{user}\"}}\n    password:\n      sealed: {sealed_pw}\n---\n",
            pg.host, pg.port, pg.database
        )
    };
    let pipeline = |name: &str, runner: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  runner: {runner}\n  steps:\n\
             \x20   - name: extract\n      sync:\n\
             \x20       source: {{connection: warehouse, asset: {{fqn: {schema}.orders}}}}\n\
             \x20       destination: {{connection: lake, asset: {{fqn: {name}/}}, format: csv, mode: overwrite}}\n---\n"
        )
    };
    apply(
        cluster,
        &ns,
        &format!("{}{}", warehouse("warehouse"), pipeline("orders", "{}")),
    );
    let (status, reason, message) = checked(&ns, "warehouse").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Connected"),
        "{message}"
    );

    start_run(cluster, &ns, "orders", "orders-1", "");
    let run = finished(&ns, "orders-1").await;
    assert_eq!(
        run.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded),
        "{:#?}",
        run.status
    );
    assert_eq!(step(&run, "extract").rows_written, Some(5));
    assert_eq!(csv_rows(&data.path().join("lake/orders")), 5);

    // The namespace holds no credential but the keyring, which the runner cannot read.
    let secrets: Api<Secret> = ns.api();
    let names: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .expect("list Secrets")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(names, vec!["synqx-vault".to_string()]);
    let token = cluster.kubectl(&["create", "token", "synqx-runner", "-n", &ns.name], None);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let runner = kube::Client::try_from(config).expect("client");
    let as_runner: Api<Secret> = Api::namespaced(runner, &ns.name);
    match as_runner.get("synqx-vault").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the runner read the keyring: {other:?}"),
    }

    // The same ciphertexts pasted into another Connection do not open there.
    apply(cluster, &ns, &warehouse("copied"));
    let (status, _, message) = checked(&ns, "copied").await;
    assert_eq!(status, "False", "{message}");
    assert!(
        message.contains(&format!(
            "Connection \"{}/copied\" field spec.postgres.",
            ns.name
        )) && message.contains("sealed for another Connection"),
        "{message}"
    );

    // An image of the Pipeline's own would receive the keyring: refused.
    apply(
        cluster,
        &ns,
        &pipeline("own-image", "{image: \"registry.example/dump:1\"}"),
    );
    let (status, message) = pipeline_ready(&ns, "own-image").await;
    assert_eq!(status, "False", "{message}");
    assert!(
        message
            .contains("spec.runner.image: \"registry.example/dump:1\" cannot open sealed values")
            && message.contains("Connection \"warehouse\" holds sealed values"),
        "{message}"
    );

    let everything = readable(cluster, &ns.name);
    assert!(everything.contains("synqx step"), "pod logs were read");
    for secret in [&password, &role] {
        let found: Vec<&str> = everything
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(
            found.is_empty(),
            "{secret} is readable in namespace {}: {found:#?}",
            ns.name
        );
    }

    psql(&format!("DROP SCHEMA {schema} CASCADE; DROP ROLE {role}"));
}
