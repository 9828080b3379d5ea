//! A `synqx run` killed (SIGKILL) in the middle of an overwrite into MongoDB (FerretDB),
//! Snowflake (fakesnow) and BigQuery (bigquery-emulator), at the one moment that matters:
//! the new rows are staged and the swap is on its way. A proxy between the runner and the
//! server holds the swap's request (MongoDB's `renameCollection`, BigQuery's transaction;
//! Snowflake's `ALTER TABLE … SWAP WITH`, and, in a second run, the transaction fakesnow gets
//! once it refused that swap as a syntax error) so the kill lands there every time. Then: the
//! destination holds exactly its old rows; a rerun after the killed step's deadline loads the
//! new rows and drops what the killed run staged (`connectors::staging`).

mod support;
mod warehouses_common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::Document;
use support::{LAKE, run_ok, runtime, spawn_synqx, write_pipeline};
use synqx_testkit::hold::HoldingProxy;
use synqx_testkit::{emulators, servers, unique_name};
use warehouses_common::{BigQuery, Fakesnow, fakesnow_connection};

/// The step's timeout: the killed run's staged objects are orphans once it has passed.
const TIMEOUT_SECONDS: u64 = 20;

type Rows = Vec<(i64, String)>;
type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `ids` as the rows `(id, "<tag> <id>")`.
fn rows(tag: &str, ids: std::ops::RangeInclusive<i64>) -> Rows {
    ids.map(|i| (i, format!("{tag} {i}"))).collect()
}

fn write_jsonl(path: &Path, rows: &Rows) {
    let text: String = rows
        .iter()
        .map(|(id, payload)| format!("{}\n", serde_json::json!({"id": id, "payload": payload})))
        .collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

/// One destination system, as the scenario needs it.
struct Target<'a> {
    /// The Secret and Connection documents of Connection `dest` reaching the server at
    /// `address` (the server's own, or the proxy's).
    connection: &'a dyn Fn(&str) -> String,
    /// The server's address as the Connection writes it, and its `host:port` inside it.
    address: String,
    upstream: String,
    /// What the runner sends to swap the staged rows in.
    swap: &'static [u8],
    /// How many staged objects hold the new rows when the swap is held (Snowflake's swap:
    /// the staging table and the filled copy of the table).
    staged_new: usize,
    /// Kill at the second rename of FerretDB's swap (old collection aside, new one in)
    /// rather than at the first request of the swap.
    between_renames: bool,
    /// The destination's FQN.
    fqn: String,
    /// Rows of a table or collection, sorted by id.
    read: &'a dyn Fn(String) -> Pending<'a, Rows>,
    /// The names of the objects loads staged beside the destination, and where their name's
    /// expiry starts.
    staged: &'a dyn Fn() -> Pending<'a, Vec<String>>,
    prefix: &'a str,
}

fn pipeline(fqn: &str, source: &str) -> String {
    format!(
        r#"{LAKE}apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: killed}}
spec:
  steps:
    - name: load
      timeout: {TIMEOUT_SECONDS}s
      sync:
        source: {{connection: lake, asset: {{fqn: {source}}}}}
        destination: {{connection: dest, asset: {{fqn: "{fqn}"}}, mode: overwrite}}
"#
    )
}

/// Old rows loaded; an overwrite with new rows killed with its swap held; the old rows still
/// there; a rerun once the killed step's deadline passed: the new rows, nothing staged left.
async fn killed_overwrite_leaves_the_old_rows(t: Target<'_>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::create_dir(d.join("lake")).unwrap_or_else(|e| panic!("{e}"));
    let (old, new) = (rows("old", 1..=10), rows("new", 5..=1504));
    write_jsonl(&d.join("lake/old.jsonl"), &old);
    write_jsonl(&d.join("lake/new.jsonl"), &new);
    let direct = (t.connection)(&t.address);

    write_pipeline(d, &direct, &pipeline(&t.fqn, "old.jsonl"));
    run_ok(d, &[]);
    assert_eq!((t.read)(t.fqn.clone()).await, old, "the first load");

    // FerretDB refuses the first rename (`dropTarget`), renames the old collection aside,
    // then the new one in: that third one is held.
    let nth = if t.between_renames { 3 } else { 1 };
    let proxy = HoldingProxy::start_at(&t.upstream, t.swap, nth);
    let via_proxy = (t.connection)(
        &t.address
            .replace(&t.upstream, &format!("127.0.0.1:{}", proxy.port)),
    );
    write_pipeline(d, &via_proxy, &pipeline(&t.fqn, "new.jsonl"));
    let mut child = spawn_synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
    proxy.wait_held(&mut child, Duration::from_secs(120));
    // The new rows are staged, whole, and not swapped in.
    let staged = (t.staged)().await;
    let objects = t.staged_new + usize::from(t.between_renames);
    assert_eq!(staged.len(), objects, "staged objects: {staged:?}");
    for name in &staged[..t.staged_new] {
        assert_eq!(
            (t.read)(name.clone()).await,
            new,
            "the staged rows of {name}"
        );
    }
    synqx_testkit::kill(&mut child);
    if t.between_renames {
        // Nothing lost: the old rows wait under the name they were renamed to, and the
        // collection is missing until a later overwrite renames them back.
        assert_eq!((t.read)(staged[1].clone()).await, old, "the old rows aside");
        assert_eq!((t.read)(t.fqn.clone()).await, Vec::new(), "{}", t.fqn);
    } else {
        assert_eq!(
            (t.read)(t.fqn.clone()).await,
            old,
            "the killed overwrite changed the destination"
        );
    }
    assert_eq!(
        (t.staged)().await,
        staged,
        "the killed run's staged objects"
    );

    // The staged object's name says when the killed step's deadline ended it.
    let expiry: u64 = staged[0][t.prefix.len()..]
        .split('_')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no expiry in {}", staged[0]));
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    assert!(
        expiry <= now() + TIMEOUT_SECONDS + 2,
        "expiry {expiry} is not the step's deadline"
    );
    while now() <= expiry {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    write_pipeline(d, &direct, &pipeline(&t.fqn, "new.jsonl"));
    let out = run_ok(d, &[]);
    for name in &staged {
        assert!(
            out.contains(&format!("\"{name}\"")),
            "the rerun names what it cleaned up ({name}):\n{out}"
        );
    }
    if t.between_renames {
        let restored = format!(
            "renamed \"{}\", the rows a killed overwrite had renamed aside, back to \"{}\"",
            staged[1], t.fqn
        );
        assert!(out.contains(&restored), "{restored}\nnot in:\n{out}");
    }
    assert_eq!((t.read)(t.fqn.clone()).await, new, "the rerun's rows");
    assert_eq!(
        (t.staged)().await,
        Vec::<String>::new(),
        "staged objects left"
    );
}

#[test]
fn a_killed_mongodb_overwrite_leaves_the_old_collection() {
    killed_mongodb_overwrite(false);
}

/// FerretDB swaps in two renames (it has no `dropTarget`): killed between them, the old rows
/// wait aside and the next overwrite renames them back before it loads.
#[test]
fn a_ferretdb_overwrite_killed_between_its_renames_loses_nothing() {
    killed_mongodb_overwrite(true);
}

/// The password of a `mongodb://user:password@host` URI.
fn killed_mongodb_overwrite(between_renames: bool) {
    runtime().block_on(async {
        let uri = servers::mongodb_uri();
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .unwrap_or_else(|e| panic!("{}", servers::nosql_unreachable("MongoDB", &uri, e)));
        // A database of its own: a rerun sweeps every expired staging collection of its
        // database, so a test sharing one would clean up the other's leftovers.
        let database = unique_name("killed_db");
        let db = client.database(&database);
        let collection = unique_name("killed");
        let prefix = format!("{collection}__synqx_new_");
        let connection = |uri: &str| {
            format!(
                r#"apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{uri: "{uri}"}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: dest}}
spec: {{mongodb: {{uri: {{secretKeyRef: {{name: creds, key: uri}}}}, database: {database}}}}}
---
"#
            )
        };
        let read = |name: String| -> Pending<'_, Rows> {
            let db = db.clone();
            Box::pin(async move {
                let mut cursor = db
                    .collection::<Document>(&name)
                    .find(mongodb::bson::doc! {})
                    .sort(mongodb::bson::doc! {"id": 1})
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut rows = Vec::new();
                while cursor
                    .advance()
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                {
                    let doc = cursor
                        .deserialize_current()
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let id = doc.get_i64("id").unwrap_or_else(|e| panic!("{doc}: {e}"));
                    let payload = doc
                        .get_str("payload")
                        .unwrap_or_else(|e| panic!("{doc}: {e}"));
                    rows.push((id, payload.to_string()));
                }
                rows
            })
        };
        let staged = || -> Pending<'_, Vec<String>> {
            let (db, collection) = (db.clone(), collection.clone());
            Box::pin(async move {
                let mut names: Vec<String> = db
                    .list_collection_names()
                    .await
                    .unwrap_or_else(|e| panic!("listing collections: {e}"))
                    .into_iter()
                    .filter(|n| n.starts_with(&format!("{collection}__synqx_")))
                    .collect();
                names.sort();
                names
            })
        };
        killed_overwrite_leaves_the_old_rows(Target {
            connection: &connection,
            upstream: servers::address_of(&uri),
            address: uri.clone(),
            swap: b"renameCollection",
            staged_new: 1,
            between_renames,
            fqn: collection.clone(),
            read: &read,
            staged: &staged,
            prefix: &prefix,
        })
        .await;
        let _ = db.drop().await;
    });
}

/// Killed while `ALTER TABLE … SWAP WITH` is on its way, the moment of Snowflake's own path:
/// the staging table and the filled copy of the table both hold the new rows.
#[test]
fn a_snowflake_overwrite_killed_at_its_swap_leaves_the_old_table() {
    killed_snowflake_overwrite(b"SWAP WITH", 2);
}

/// fakesnow refuses the swap as a syntax error and the overwrite replaces the rows in one
/// transaction instead: killed when it begins, with the copy dropped and the staging table
/// left.
#[test]
fn a_snowflake_overwrite_killed_at_its_fallback_transaction_leaves_the_old_table() {
    killed_snowflake_overwrite(br#""sqlText":"BEGIN""#, 1);
}

fn killed_snowflake_overwrite(swap: &'static [u8], staged_new: usize) {
    runtime().block_on(async {
        let url = emulators::fakesnow();
        let database = unique_name("KILLED").to_ascii_uppercase();
        let fakesnow = Fakesnow::create_database(&url, &database).await;
        let connection =
            |host: &str| fakesnow_connection("dest", host, &database, "{value: unused}");
        let read = |table: String| -> Pending<'_, Rows> {
            let (fakesnow, database) = (&fakesnow, &database);
            Box::pin(async move {
                let sql = format!("SELECT ID, PAYLOAD FROM {database}.PUBLIC.{table} ORDER BY ID");
                as_rows(&sql, fakesnow.rows(&sql).await)
            })
        };
        let staged = || -> Pending<'_, Vec<String>> {
            let (fakesnow, database) = (&fakesnow, &database);
            Box::pin(async move {
                let sql = format!(
                    "SELECT TABLE_NAME FROM {database}.INFORMATION_SCHEMA.TABLES \
                     WHERE TABLE_SCHEMA = 'PUBLIC' AND TABLE_NAME LIKE 'SYNQX_STAGE_%' ORDER BY TABLE_NAME"
                );
                fakesnow.rows(&sql).await.into_iter().flatten().flatten().collect()
            })
        };
        killed_overwrite_leaves_the_old_rows(Target {
            connection: &connection,
            upstream: servers::address_of(&url),
            address: url.clone(),
            swap,
            staged_new,
            between_renames: false,
            fqn: "ORDERS".into(),
            read: &read,
            staged: &staged,
            prefix: "SYNQX_STAGE_",
        })
        .await;
    });
}

#[test]
fn a_killed_bigquery_overwrite_leaves_the_old_table() {
    runtime().block_on(async {
        let bigquery = BigQuery::new();
        let dataset = unique_name("killed");
        bigquery.create_dataset(&dataset).await;
        let connection = |endpoint: &str| bigquery.connection("dest", &dataset, endpoint, "");
        let read = |table: String| -> Pending<'_, Rows> {
            let (bigquery, dataset) = (&bigquery, &dataset);
            Box::pin(async move {
                let sql = format!("SELECT id, payload FROM `{dataset}`.`{table}` ORDER BY id");
                as_rows(&sql, bigquery.rows(&sql).await)
            })
        };
        let staged = || -> Pending<'_, Vec<String>> {
            let (bigquery, dataset) = (&bigquery, &dataset);
            Box::pin(async move {
                let mut names: Vec<String> = bigquery
                    .tables(dataset)
                    .await
                    .into_iter()
                    .filter(|n| n.starts_with("_synqx_stage_"))
                    .collect();
                names.sort();
                names
            })
        };
        killed_overwrite_leaves_the_old_rows(Target {
            connection: &connection,
            upstream: servers::address_of(&bigquery.url),
            address: bigquery.url.clone(),
            swap: b"BEGIN TRANSACTION",
            staged_new: 1,
            between_renames: false,
            fqn: "orders".into(),
            read: &read,
            staged: &staged,
            prefix: "_synqx_stage_",
        })
        .await;
    });
}

/// Rows of `(id, payload)` read back as text.
fn as_rows(sql: &str, rows: Vec<Vec<Option<String>>>) -> Rows {
    rows.into_iter()
        .map(|r| match r.as_slice() {
            [Some(id), Some(payload)] => (
                id.parse().unwrap_or_else(|e| panic!("{sql}: id {id}: {e}")),
                payload.clone(),
            ),
            other => panic!("{sql}: a row {other:?}"),
        })
        .collect()
}
