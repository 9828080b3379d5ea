//! A Pipeline moving PostgreSQL -> Parquet -> MariaDB through Jobs on the real control plane:
//! the runner pods reach the database test servers with credentials from a Secret, row counts
//! land in the run's status and the incremental watermark in the Pipeline's.

use kube::Api;
use synqx_api::Pipeline;
use synqx_e2e::runs::{apply, connection, folder, setup, start_run, step, succeeded};
use synqx_testkit::mysql::mariadb;
use synqx_testkit::postgres::psql;
use synqx_testkit::servers::{mysql, postgres};

fn insert_orders(schema: &str, ids: std::ops::RangeInclusive<u32>) {
    let rows: Vec<String> = ids
        .map(|i| format!("({i}, {i}.25, 'order {i}', timestamptz '2026-01-01 00:00:00+00' + interval '{i} minutes')"))
        .collect();
    psql(&format!(
        "INSERT INTO {schema}.orders (id, amount, note, updated_at) VALUES {}",
        rows.join(", ")
    ));
}

fn watermark(pipeline: &Pipeline, step: &str) -> Option<String> {
    pipeline
        .status
        .as_ref()
        .and_then(|s| s.watermarks.get(step))
        .map(|w| w.value.clone())
}

#[tokio::test]
async fn postgres_to_parquet_to_mariadb_through_jobs() {
    let (cluster, ns) = setup("databases").await;
    let data = tempfile::tempdir().expect("tempdir");
    let schema = ns.name.replace('-', "_");
    psql(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, amount numeric(12,2), note text, updated_at timestamptz)"
    ));
    mariadb(&format!("CREATE DATABASE {schema}"));
    insert_orders(&schema, 1..=5);

    let (pg, my) = (postgres(), mysql());
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db-creds, labels: {{synqx.io/connection-secret: \"true\"}}}}\nstringData: {{pg: {:?}, my: {:?}}}\n---\n{}{}{}\
         apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: orders}}\nspec:\n  steps:\n\
         \x20   - name: extract\n      sync:\n\
         \x20       source: {{connection: warehouse, asset: {{fqn: {schema}.orders}}, incremental: {{cursor: id}}}}\n\
         \x20       destination: {{connection: lake, asset: {{fqn: orders/}}, format: parquet, mode: append}}\n\
         \x20   - name: load\n      sync:\n\
         \x20       source: {{connection: lake, asset: {{fqn: orders/}}, format: parquet}}\n\
         \x20       destination: {{connection: mart, asset: {{fqn: orders}}, mode: upsert, primaryKey: [id]}}\n",
        pg.password,
        my.password,
        connection(
            "warehouse",
            &format!(
                "postgres: {{host: {}, port: {}, database: {}, user: {{value: {}}}, password: {{secretKeyRef: {{name: db-creds, key: pg}}}}}}",
                pg.host, pg.port, pg.database, pg.user
            )
        ),
        folder("lake", &data.path().join("lake")),
        connection(
            "mart",
            &format!(
                "mysql: {{host: {}, port: {}, database: {schema}, sslMode: disable, user: {{value: {}}}, password: {{secretKeyRef: {{name: db-creds, key: my}}}}}}",
                my.host, my.port, my.user
            )
        ),
    );
    apply(cluster, &ns, &yaml);
    let pipelines: Api<Pipeline> = ns.api();

    start_run(cluster, &ns, "orders", "orders-1", "");
    let run = succeeded(&ns, "orders-1").await;
    assert_eq!(step(&run, "extract").rows_written, Some(5));
    assert_eq!(step(&run, "load").rows_written, Some(5));
    assert_eq!(
        mariadb(&format!(
            "SELECT count(*), sum(amount) FROM {schema}.orders"
        )),
        "5\t16.25"
    );
    let pipeline = pipelines.get("orders").await.expect("pipeline");
    assert_eq!(watermark(&pipeline, "extract").as_deref(), Some("5"));

    // The second run extracts only the new rows; the upsert leaves one row per id.
    insert_orders(&schema, 6..=8);
    psql(&format!(
        "UPDATE {schema}.orders SET note = 'changed' WHERE id = 2"
    ));
    start_run(cluster, &ns, "orders", "orders-2", "");
    let run = succeeded(&ns, "orders-2").await;
    let extract = step(&run, "extract");
    assert_eq!(
        (extract.rows_read, extract.rows_written),
        (Some(3), Some(3))
    );
    let window = extract.watermark.as_ref().expect("watermark window");
    assert_eq!(
        (window.from.as_deref(), window.to.as_deref()),
        (Some("5"), Some("8"))
    );
    assert_eq!(step(&run, "load").rows_written, Some(8));
    assert_eq!(
        mariadb(&format!(
            "SELECT count(*), count(DISTINCT id), max(id) FROM {schema}.orders"
        )),
        "8\t8\t8"
    );
    // Rows changed below the watermark are not re-read: incremental by id sees only new ids.
    assert_eq!(
        mariadb(&format!("SELECT note FROM {schema}.orders WHERE id = 2")),
        "order 2"
    );
    let pipeline = pipelines.get("orders").await.expect("pipeline");
    assert_eq!(watermark(&pipeline, "extract").as_deref(), Some("8"));

    psql(&format!("DROP SCHEMA {schema} CASCADE"));
    mariadb(&format!("DROP DATABASE {schema}"));
}
