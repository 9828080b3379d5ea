//! REST, MongoDB and Redis through the `synqx` binary: `synqx check` on each, and one pipeline
//! API → MongoDB (upsert) → Redis hashes (overwrite) → Parquet, run twice, a nested object
//! carried all the way. Needs the servers
//! of `scripts/nosql-services up` (SYNQX_TEST_MONGODB, SYNQX_TEST_REDIS); the API is a stand-in
//! HTTP server on loopback in this test.

mod support;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use support::{LAKE, run_ok, synqx, text};
use synqx_testkit::http::{Reply, StandIn};
use synqx_testkit::{files, servers, unique_name};

/// An API of 25 records in pages of 10 with a `next` URL.
fn start_api() -> StandIn {
    StandIn::start(|request| {
        let page: i64 = request
            .query("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let records: Vec<serde_json::Value> = (page * 10..(page * 10 + 10).min(25))
            .map(|i| serde_json::json!({"id": i, "name": format!("n{i}"), "meta": {"tier": i % 3}}))
            .collect();
        let next = ((page + 1) * 10 < 25).then(|| format!("/items?page={}", page + 1));
        Reply::json(200, serde_json::json!({"data": records, "next": next}))
    })
}

#[test]
fn api_to_mongodb_to_redis_to_parquet_through_the_binary() {
    let mongo = servers::mongodb_uri();
    let redis = servers::redis();
    let api = start_api();
    let port = api.port;
    let collection = unique_name("cli_items");
    let prefix = unique_name("cli_item");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{mongo-uri: "{mongo}", redis-password: "{password}"}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: api}}
spec: {{rest: {{baseUrl: "http://127.0.0.1:{port}/"}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: docs}}
spec: {{mongodb: {{uri: {{secretKeyRef: {{name: creds, key: mongo-uri}}}}, database: synqx_tests}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: cache}}
spec: {{redis: {{host: "{host}", port: {rport}, password: {{secretKeyRef: {{name: creds, key: redis-password}}}}}}}}
---
{LAKE}apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: nosql}}
spec:
  steps:
    - name: api-to-docs
      sync:
        source: {{connection: api, asset: {{fqn: items}}}}
        destination: {{connection: docs, asset: {{fqn: {collection}}}, mode: upsert, primaryKey: [id]}}
    - name: docs-to-cache
      sync:
        source: {{connection: docs, asset: {{fqn: {collection}}}, projection: '{{"_id": 0}}'}}
        destination: {{connection: cache, asset: {{fqn: "{prefix}:{{id}}"}}, mode: overwrite, redis: {{kind: hash, ttl: 1h}}}}
    - name: cache-to-lake
      sync:
        source: {{connection: cache, asset: {{fqn: "{prefix}:*"}}}}
        destination: {{connection: lake, asset: {{fqn: items.parquet}}, mode: overwrite}}
"#,
        password = redis.password,
        host = redis.host,
        rport = redis.port,
    );
    std::fs::write(d.join("pipeline.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));

    let checked = text(&synqx(d, &["check", "pipeline.yaml"]));
    for name in ["api", "docs", "cache"] {
        assert!(
            checked
                .lines()
                .any(|l| l.contains(&format!("Connection/{name}")) && l.contains(": OK: ")),
            "{name} is not OK:\n{checked}"
        );
    }

    for run in 1..=2 {
        let out = run_ok(d, &[]);
        assert!(
            out.contains("pagination auto chose nextUrl (nextPath /next)"),
            "run {run}:\n{out}"
        );
        let batch = files::parquet_rows(&d.join("lake/items.parquet"));
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no {name}: {:?}", batch.schema()))
        };
        let (id, meta) = (column("id"), column("meta"));
        let mut ids = Vec::new();
        for r in 0..batch.num_rows() {
            let i = id.as_primitive::<Int64Type>().value(r);
            // The nested object went API → MongoDB subdocument → Redis field → text.
            let meta: serde_json::Value = serde_json::from_str(meta.as_string::<i32>().value(r))
                .unwrap_or_else(|e| panic!("meta of {i}: {e}"));
            assert_eq!(
                meta,
                serde_json::json!({"tier": i % 3}),
                "run {run}, id {i}"
            );
            ids.push(i);
        }
        ids.sort();
        assert_eq!(
            ids,
            (0..25).collect::<Vec<_>>(),
            "run {run}: upsert and overwrite keep one row per id"
        );
    }
}
