//! A local run whose PostgreSQL login is sealed: `synqx run --vault-key` opens the values in
//! memory, the rows arrive, and no output carries the credentials. Needs the PostgreSQL test
//! server (`scripts/services up`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

#[path = "../src/connectors/test_servers.rs"]
mod test_servers;

fn synqx(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(dir)
        .env_remove("SYNQX_VAULT_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[test]
fn a_local_run_opens_a_sealed_postgres_login_with_vault_key() {
    let url = test_servers::postgres_url();
    let rest = url.split_once('@').map_or("", |(_, r)| r);
    let (address, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = address.split_once(':').unwrap_or((address, "5432"));
    let schema = test_servers::unique_name("vault");
    let role = format!("{schema}_role");
    let password = format!("Pw-{schema}-sealed");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut admin = runtime.block_on(async {
        let mut c = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{}", test_servers::unreachable("PostgreSQL", &url, e)));
        exec(&mut c, &format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders AS SELECT g AS id, g * 10 AS total FROM generate_series(1, 25) g; \
             CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON {schema}.orders TO {role};"
        )).await;
        c
    });

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let keygen = synqx(d, &["vault", "keygen", "--out", "keyring.json"], None);
    assert!(keygen.status.success(), "{}", all(&keygen));
    std::fs::write(d.join("etl.pub"), &keygen.stdout).unwrap_or_else(|e| panic!("{e}"));
    let seal = |connection: &str, field: &str, value: &str| {
        let out = synqx(
            d,
            &[
                "seal",
                "--namespace",
                "etl",
                "--connection",
                connection,
                "--field",
                field,
                "--public-key",
                "etl.pub",
            ],
            Some(value),
        );
        assert!(out.status.success(), "{}", all(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let pipeline = |connection: &str, user: &str, pw: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: {connection}, namespace: etl}}\nspec:\n  postgres:\n    host: {host}\n    port: {port}\n    database: synqx\n    sslMode: disable\n    user: {{sealed: {user}}}\n    password: {{sealed: {pw}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: out, namespace: etl}}\nspec: {{sqlite: {{path: out.db}}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: sealed, namespace: etl}}\nspec:\n  steps:\n    - name: copy\n      sync:\n        source: {{connection: {connection}, asset: {{fqn: {schema}.orders}}}}\n        destination: {{connection: out, asset: {{fqn: orders}}, mode: overwrite}}\n"
        )
    };
    let user = seal("warehouse", "postgres.user", &role);
    let pw = seal("warehouse", "postgres.password", &password);
    std::fs::write(d.join("pipeline.yaml"), pipeline("warehouse", &user, &pw))
        .unwrap_or_else(|e| panic!("{e}"));

    // Without the keyring the run says what it needs.
    let out = synqx(d, &["run", "pipeline.yaml", "--state", "state"], None);
    assert!(!out.status.success());
    assert!(all(&out).contains("--vault-key FILE"), "{}", all(&out));

    let out = synqx(
        d,
        &[
            "run",
            "pipeline.yaml",
            "--state",
            "state",
            "--vault-key",
            "keyring.json",
        ],
        None,
    );
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(&password) && !text.contains(&role), "{text}");
    let rows = runtime.block_on(async {
        let mut out =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", d.join("out.db").display()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query_scalar::<_, i64>("SELECT sum(total) FROM orders")
            .fetch_one(&mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    });
    assert_eq!(rows, (1..=25).map(|g| g * 10).sum::<i64>());

    // The same ciphertexts pasted into another Connection do not open there.
    std::fs::write(d.join("moved.yaml"), pipeline("copied", &user, &pw))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = synqx(
        d,
        &[
            "run",
            "moved.yaml",
            "--state",
            "state",
            "--vault-key",
            "keyring.json",
        ],
        None,
    );
    let text = all(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("Connection \"etl/copied\" field spec.postgres.")
            && text.contains("sealed for another Connection"),
        "{text}"
    );
    assert!(!text.contains(&password) && !text.contains(&role), "{text}");
    // State and outputs keep no credential either.
    for entry in walk(d) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let content = String::from_utf8_lossy(&bytes);
        assert!(
            !content.contains(&password),
            "{} holds the password",
            entry.display()
        );
    }

    runtime.block_on(exec(
        &mut admin,
        &format!("DROP SCHEMA {schema} CASCADE; DROP ROLE {role};"),
    ));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
