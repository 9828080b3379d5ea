//! A `synqx run` killed (SIGKILL) in the middle of loading a database table: what the table
//! holds afterwards, and what a run to completion makes of it.

mod support;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use support::*;

/// Rows of the generated source: enough that the load takes seconds in a debug build.
const BIG: i64 = 1_000_000;

/// A source table `{s}.big` of `rows` generated rows.
async fn big_source(conn: &mut sqlx::PgConnection, s: &str, rows: i64) {
    postgres::exec(
        conn,
        &format!(
            "CREATE TABLE {s}.big AS SELECT g::bigint AS id, md5(g::text) AS payload \
             FROM generate_series(1, {rows}) g"
        ),
    )
    .await;
}

/// Count and a digest of every row of a PostgreSQL table `(id, payload)`.
async fn pg_checksum(conn: &mut sqlx::PgConnection, table: &str) -> String {
    postgres::text(
        conn,
        &format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(id::text || '=' || payload, ',' ORDER BY id)), '') FROM {table}"
        ),
    )
    .await
    .unwrap_or_default()
}

/// Waits until `probe` counts a row (the load is under way), failing if the run ends first.
async fn wait_for(child: &mut Child, what: &str, mut probe: impl AsyncFnMut() -> i64) {
    let started = Instant::now();
    while probe().await == 0 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("synqx ended ({status}) before {what}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `probe` counts nothing (the server dropped the killed run's sessions).
async fn wait_until_gone(what: &str, mut probe: impl AsyncFnMut() -> i64) {
    let started = Instant::now();
    while probe().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server never noticed {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pipeline(name: &str, source: &str, connection: &str, target: &str, mode: &str) -> String {
    format!(
        r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: {name}}}
spec:
  steps:
    - name: load
      sync:
        source: {{connection: pg, asset: {{fqn: {source}}}}}
        destination: {{connection: {connection}, asset: {{fqn: {target}}}, {mode}}}
"#
    )
}

/// Sessions of the killed run still on the PostgreSQL server: every name a runner makes for
/// its work tables ends in `_<its process id in hex>_<n>`, and its statements name them.
fn pg_sessions_of(pid: u32) -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity WHERE position('_{pid:x}_' in query) > 0 \
         AND pid <> pg_backend_pid()"
    )
}

/// The killed run's COPY into one of its work tables has sent rows.
fn pg_copy_under_way(pid: u32) -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_progress_copy p USING (pid) \
         WHERE a.query LIKE 'COPY %FROM STDIN%' AND position('_{pid:x}_' in a.query) > 0 \
         AND p.tuples_processed > 0"
    )
}

/// Runs the pipeline of `dir`, kills it once its COPY into a work table (`what`) has sent rows,
/// and waits until the server has dropped the killed run's sessions.
async fn kill_during_the_copy(conn: &mut sqlx::PgConnection, dir: &Path, what: &str) {
    let mut child = spawn_synqx(dir, &["run", "pipeline.yaml", "--state", "state"]);
    let pid = child.id();
    let under_way = pg_copy_under_way(pid);
    wait_for(&mut child, what, async || {
        postgres::int(conn, &under_way).await
    })
    .await;
    synqx_testkit::kill(&mut child);
    let sessions = pg_sessions_of(pid);
    wait_until_gone("the killed run", async || {
        postgres::int(conn, &sessions).await
    })
    .await;
}

/// `{s}.{table}` as `(id, payload)` rows `'old <id>'` of ids `from..=1000`.
async fn old_table(conn: &mut sqlx::PgConnection, s: &str, table: &str, from: i64) {
    postgres::exec(
        conn,
        &format!(
            "CREATE TABLE {s}.{table} (id bigint PRIMARY KEY, payload text); \
             INSERT INTO {s}.{table} SELECT g, 'old ' || g FROM generate_series({from}, 1000) g"
        ),
    )
    .await;
}

/// Overwrite, killed during the COPY into `dst_synqx_new_…`: the old table keeps its rows and
/// the half-loaded table is gone with the transaction that created it.
#[test]
fn a_killed_postgres_overwrite_leaves_the_old_table() {
    runtime().block_on(async {
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "kill_over").await;
        let s = schema.name.clone();
        big_source(&mut conn, &s, BIG).await;
        old_table(&mut conn, &s, "dst", 1).await;
        let before = pg_checksum(&mut conn, &format!("{s}.dst")).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write_pipeline(
            d,
            &connections(None, None),
            &pipeline(
                "killover",
                &format!("{s}.big"),
                "pg",
                &format!("{s}.dst"),
                "mode: overwrite",
            ),
        );
        kill_during_the_copy(&mut conn, d, "the COPY into the new table").await;

        assert_eq!(pg_checksum(&mut conn, &format!("{s}.dst")).await, before);
        let leftovers = postgres::int(
            &mut conn,
            &format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{s}' AND c.relname LIKE '%synqx_new%'"
            ),
        )
        .await;
        assert_eq!(leftovers, 0, "a _synqx_new_ table outlived the killed run");
    });
}

/// Upsert, killed during the COPY into its staging table, then run again to completion: the
/// table ends exactly as one clean run makes it.
#[test]
fn a_killed_postgres_upsert_rerun_equals_a_clean_run() {
    runtime().block_on(async {
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "kill_upsert").await;
        let s = schema.name.clone();
        big_source(&mut conn, &s, BIG).await;
        // Rows the load replaces (1–1000) and six it must leave alone (-5–0).
        for table in ["dst", "reference"] {
            old_table(&mut conn, &s, table, -5).await;
        }
        let upsert = "mode: upsert, primaryKey: [id]";
        let clean = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_pipeline(
            clean.path(),
            &connections(None, None),
            &pipeline(
                "clean",
                &format!("{s}.big"),
                "pg",
                &format!("{s}.reference"),
                upsert,
            ),
        );
        run_ok(clean.path(), &[]);

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write_pipeline(
            d,
            &connections(None, None),
            &pipeline(
                "killupsert",
                &format!("{s}.big"),
                "pg",
                &format!("{s}.dst"),
                upsert,
            ),
        );
        kill_during_the_copy(&mut conn, d, "the COPY into the staging table").await;
        assert_eq!(
            postgres::int(&mut conn, &format!("SELECT count(*) FROM {s}.dst")).await,
            1006,
            "the killed upsert changed the table"
        );

        run_ok(d, &[]);
        assert_eq!(
            pg_checksum(&mut conn, &format!("{s}.dst")).await,
            pg_checksum(&mut conn, &format!("{s}.reference")).await
        );
        for (a, b) in [("dst", "reference"), ("reference", "dst")] {
            let sql = format!(
                "SELECT count(*) FROM (SELECT * FROM {s}.{a} EXCEPT ALL SELECT * FROM {s}.{b}) x"
            );
            assert_eq!(
                postgres::int(&mut conn, &sql).await,
                0,
                "rows of {a} missing in {b}"
            );
        }
        assert_eq!(
            postgres::int(&mut conn, &format!("SELECT count(*) FROM {s}.dst")).await,
            BIG + 6,
            "the source's rows plus the six it does not touch"
        );
    });
}

/// MariaDB overwrite, killed during the INSERTs into `dst_synqx_new_…`. As the MySQL sink
/// documents, MySQL commits DDL on its own, so the work table can outlive the run; the rows
/// were in the load's transaction, which died with the connection. The table itself is intact.
#[test]
fn a_killed_mariadb_overwrite_leaves_the_old_table() {
    runtime().block_on(async {
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "kill_maria").await;
        let s = schema.name.clone();
        big_source(&mut conn, &s, BIG / 5).await;
        let mut admin = mysql::connect(None).await;
        let db = mysql::Database::new("kill_maria").await;
        let m = db.name.clone();
        mysql::exec(
            &mut admin,
            &format!("CREATE TABLE {m}.dst (id bigint PRIMARY KEY, payload text)"),
        )
        .await;
        mysql::exec(
            &mut admin,
            &format!("INSERT INTO {m}.dst SELECT seq, CONCAT('old ', seq) FROM seq_1_to_1000"),
        )
        .await;
        let checksum = format!(
            "SELECT CONCAT(count(*), ':', COALESCE(SUM(CRC32(CONCAT(id, '=', payload))), 0)) FROM {m}.dst"
        );
        let my_text = async |c: &mut sqlx::MySqlConnection, sql: &str| -> String {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };
        let my_count = async |c: &mut sqlx::MySqlConnection, sql: &str| -> i64 {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };
        let before = my_text(&mut admin, &checksum).await;
        assert!(before.starts_with("1000:"), "{before}");

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write_pipeline(
            d,
            &connections(Some(&m), None),
            &pipeline("killmaria", &format!("{s}.big"), "my", "dst", "mode: overwrite"),
        );
        let mut child = spawn_synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
        let inserting = format!(
            "SELECT count(*) FROM information_schema.processlist WHERE db = '{m}' \
             AND info LIKE 'INSERT INTO%dst_synqx_new_%'"
        );
        wait_for(&mut child, "the INSERTs into the new table", async || {
            my_count(&mut admin, &inserting).await
        })
        .await;
        synqx_testkit::kill(&mut child);
        let sessions =
            format!("SELECT count(*) FROM information_schema.processlist WHERE db = '{m}'");
        wait_until_gone("the killed run", async || my_count(&mut admin, &sessions).await).await;

        assert_eq!(my_text(&mut admin, &checksum).await, before);
        let leftovers = mysql::rows(
            &mut admin,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{m}' \
                 AND table_name LIKE 'dst\\_synqx\\_new\\_%'"
            ),
        )
        .await;
        assert!(leftovers.len() <= 1, "{leftovers:?}");
        for name in leftovers.into_iter().flatten().flatten() {
            let rows = my_count(&mut admin, &format!("SELECT count(*) FROM {m}.`{name}`")).await;
            assert_eq!(rows, 0, "the work table {name} kept uncommitted rows");
        }
    });
}
