//! The cloud warehouse connectors end to end through `synqx run`, against the emulators
//! `scripts/emulators up` starts (fakesnow, bigquery-emulator): PostgreSQL → Snowflake →
//! Parquet, and Parquet → BigQuery → PostgreSQL, each compared row for row with its source.

mod support;
mod warehouses_common;

use support::*;
use synqx_testkit::emulators;
use warehouses_common::{BigQuery, Fakesnow, fakesnow_connection};

/// A table of the types both warehouses map, with a NULL row.
const SOURCE: &str = "CREATE TABLE {s}.src (id integer, amount numeric(12,2), name text, flag boolean, \
     day date, at timestamptz, local_at timestamp, doc jsonb)";
const ROWS: &str = "INSERT INTO {s}.src VALUES \
     (1, 12.50, 'Zoë ✓', true, '2024-01-01', '2024-01-01 10:00:00.123456+00', '2024-01-01 10:00:00.5', '{\"a\": \"x\"}'), \
     (2, -0.01, '', false, '1999-12-31', '1999-12-31 23:59:59+00', '1999-12-31 23:59:59', '[\"y\"]'), \
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";
/// The columns compared, cast to the types both sides have after the trip.
const COMPARED: &str =
    "id::bigint, amount::numeric(12,2), name, flag, day, at, local_at, doc::jsonb";

/// Rows of `a` missing in `b`, compared on [`COMPARED`].
async fn missing(conn: &mut sqlx::postgres::PgConnection, s: &str, a: &str, b: &str) -> i64 {
    postgres::int(
        conn,
        &format!("SELECT count(*) FROM (SELECT {COMPARED} FROM {s}.{a} EXCEPT ALL SELECT {COMPARED} FROM {s}.{b}) x"),
    )
    .await
}

/// `dst` holds exactly the rows of `src`.
async fn same_rows(conn: &mut sqlx::postgres::PgConnection, s: &str) {
    assert_eq!(
        postgres::int(conn, &format!("SELECT count(*) FROM {s}.dst")).await,
        3
    );
    assert_eq!(
        missing(conn, s, "src", "dst").await,
        0,
        "source rows missing after the trip"
    );
    assert_eq!(
        missing(conn, s, "dst", "src").await,
        0,
        "rows the trip made up"
    );
}

#[test]
fn postgres_to_snowflake_to_parquet() {
    runtime().block_on(async {
        let url = emulators::fakesnow();
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "sf_e2e").await;
        let s = &schema.name;
        postgres::exec(&mut conn, &SOURCE.replace("{s}", s)).await;
        postgres::exec(&mut conn, &ROWS.replace("{s}", s)).await;
        let database = format!("E2E_{}", s.to_ascii_uppercase());
        Fakesnow::create_database(&url, &database).await;

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let lake = d.join("lake");
        let secret = r#"apiVersion: v1
kind: Secret
metadata: {name: sf-creds}
stringData: {password: "sf-e2e-pass"}
---
"#;
        let password = "{secretKeyRef: {name: sf-creds, key: password}}";
        let snowflake = fakesnow_connection("warehouse", &url, &database, password);
        write_pipeline(
            d,
            &format!("{secret}{snowflake}{}", connections(None, Some(&lake))),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: via-snowflake}}
spec:
  steps:
    - name: to-warehouse
      sync:
        source: {{connection: pg, asset: {{fqn: {s}.src}}}}
        destination: {{connection: warehouse, asset: {{fqn: orders}}, mode: overwrite}}
    - name: to-lake
      sync:
        source: {{connection: warehouse, asset: {{fqn: orders}}}}
        destination: {{connection: lake, asset: {{fqn: orders/}}, format: parquet, mode: overwrite}}
    - name: back
      sync:
        source: {{connection: lake, asset: {{fqn: orders/}}, format: parquet}}
        destination: {{connection: pg, asset: {{fqn: {s}.dst}}, mode: overwrite}}
"#
            ),
        );
        let out = run_ok(d, &[]);
        assert!(!out.contains("sf-e2e-pass"), "{out}");
        // fakesnow cannot parse the overwrite's `ALTER TABLE … SWAP WITH`; the step says how
        // it replaced the rows instead.
        assert!(
            out.contains("the server refused `ALTER TABLE … SWAP WITH` as a syntax error"),
            "{out}"
        );
        assert!(
            std::fs::read_dir(lake.join("orders"))
                .map(|r| r.count())
                .unwrap_or(0)
                > 0,
            "Parquet parts in the lake"
        );
        same_rows(&mut conn, s).await;
    });
}

#[test]
fn parquet_to_bigquery_to_postgres() {
    runtime().block_on(async {
        let bigquery = BigQuery::new();
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "bq_e2e").await;
        let s = &schema.name;
        postgres::exec(&mut conn, &SOURCE.replace("{s}", s)).await;
        postgres::exec(&mut conn, &ROWS.replace("{s}", s)).await;
        let dataset = format!("e2e_{s}");
        bigquery.create_dataset(&dataset).await;

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let lake = d.join("lake");
        // The emulator's Parquet reader misreads NUMERIC, DATE, TIMESTAMP and JSON.
        let lakehouse = bigquery.connection(
            "lakehouse",
            &dataset,
            &bigquery.url,
            "    loadFormat: json\n",
        );
        write_pipeline(
            d,
            &format!("{lakehouse}{}", connections(None, Some(&lake))),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: via-bigquery}}
spec:
  steps:
    - name: to-lake
      sync:
        source: {{connection: pg, asset: {{fqn: {s}.src}}}}
        destination: {{connection: lake, asset: {{fqn: orders/}}, format: parquet, mode: overwrite}}
    - name: to-warehouse
      sync:
        source: {{connection: lake, asset: {{fqn: orders/}}, format: parquet}}
        destination: {{connection: lakehouse, asset: {{fqn: orders}}, mode: overwrite}}
    - name: back
      sync:
        source: {{connection: lakehouse, asset: {{fqn: orders}}}}
        destination: {{connection: pg, asset: {{fqn: {s}.dst}}, mode: overwrite}}
"#
            ),
        );
        run_ok(d, &[]);
        same_rows(&mut conn, s).await;
    });
}
