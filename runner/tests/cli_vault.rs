//! `synqx vault` and `synqx seal` from the command line: a keyring file, its public key,
//! sealing from standard input, rotation and resealing files in place; and (with the
//! PostgreSQL test server) a local run whose login is sealed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn synqx(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(dir)
        .env_remove("SYNQX_VAULT_KEY")
        .env("KUBECONFIG", dir.join("no-cluster"))
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
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for synqx: {e}"))
}

/// `synqx vault reseal` of `warehouse.yaml` in `dir`, with the keyring there; its output.
fn reseal(dir: &Path) -> String {
    stdout(&synqx(
        dir,
        &[
            "vault",
            "reseal",
            "--vault-key",
            "keyring.json",
            "warehouse.yaml",
        ],
        None,
    ))
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "synqx failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The key id of a `sqx1-pub:<id>:<key>` line or a `sqx1:<id>:…` envelope.
fn key_id(text: &str) -> &str {
    text.split(':').nth(1).unwrap_or_default()
}

#[test]
fn keygen_pubkey_seal_rotate_and_reseal() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let public = stdout(&synqx(
        d,
        &["vault", "keygen", "--out", "keyring.json"],
        None,
    ));
    assert!(public.starts_with("sqx1-pub:k"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("keyring.json"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, 0o600, "the keyring is private");
    // A keyring is never overwritten.
    let again = synqx(d, &["vault", "keygen", "--out", "keyring.json"], None);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("keyring.json exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        stdout(&synqx(
            d,
            &["vault", "pubkey", "--vault-key", "keyring.json"],
            None
        )),
        public
    );

    // Sealing needs only the public key; a trailing line break is not part of the value.
    std::fs::write(d.join("etl.pub"), format!("# namespace etl\n{public}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let seal = |field: &str, value: &str| {
        stdout(&synqx(
            d,
            &[
                "seal",
                "--namespace",
                "etl",
                "--connection",
                "warehouse",
                "--field",
                field,
                "--public-key",
                "etl.pub",
            ],
            Some(value),
        ))
    };
    let password = seal("postgres.password", "Zq-vault-cli-pw\n");
    let user = seal("postgres.user", "zq_vault_cli_user");
    assert_eq!(key_id(&password), key_id(&public));
    assert!(!password.contains("Zq-vault-cli-pw"));
    let wrong_field = synqx(
        d,
        &[
            "seal",
            "--namespace",
            "etl",
            "--connection",
            "w",
            "--field",
            "postgres.pasword",
            "--public-key",
            "etl.pub",
        ],
        Some("x"),
    );
    assert!(!wrong_field.status.success());
    assert!(
        stderr(&wrong_field)
            .contains("--field postgres.pasword: not a secret field of a Connection"),
        "{}",
        stderr(&wrong_field)
    );

    // A Git-style file: comments and layout survive resealing.
    let yaml = format!(
        "# the warehouse, sealed for namespace etl\napiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: warehouse, namespace: etl}}\nspec:\n  postgres:\n    host: db.example   # the primary\n    database: analytics\n    user: {{sealed: \"{user}\"}}\n    password:\n      sealed: {password}\n"
    );
    std::fs::write(d.join("warehouse.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let rotated = synqx(d, &["vault", "rotate", "--vault-key", "keyring.json"], None);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let new_public = stdout(&synqx(
        d,
        &["vault", "pubkey", "--vault-key", "keyring.json"],
        None,
    ));
    assert_ne!(key_id(&new_public), key_id(&public));
    assert!(
        stderr(&rotated).contains(key_id(&new_public)),
        "{}",
        stderr(&rotated)
    );

    let out = reseal(d);
    assert!(out.contains("warehouse.yaml: 2 resealed"), "{out}");
    let resealed =
        std::fs::read_to_string(d.join("warehouse.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !resealed.contains(&password) && !resealed.contains(&user),
        "{resealed}"
    );
    assert_eq!(
        resealed
            .matches(&format!("sqx1:{}:", key_id(&new_public)))
            .count(),
        2,
        "{resealed}"
    );
    assert!(resealed.starts_with("# the warehouse, sealed for namespace etl\n"));
    assert!(resealed.contains("host: db.example   # the primary\n"));
    // Resealing again changes nothing.
    let out = reseal(d);
    assert!(
        out.contains("0 resealed") && out.contains("2 already sealed with it"),
        "{out}"
    );

    // A value pasted into another Connection is refused, naming where it is and what differs.
    let moved = resealed.replace("name: warehouse,", "name: lake,");
    std::fs::write(d.join("lake.yaml"), moved).unwrap_or_else(|e| panic!("{e}"));
    let refused = synqx(
        d,
        &[
            "vault",
            "reseal",
            "--vault-key",
            "keyring.json",
            "lake.yaml",
        ],
        None,
    );
    assert!(!refused.status.success());
    let e = stderr(&refused);
    assert!(
        e.contains("Connection \"etl/lake\" field spec.postgres.password")
            && e.contains("another Connection"),
        "{e}"
    );
}

#[test]
fn vault_commands_without_a_keyring_say_how_to_name_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = synqx(dir.path(), &["vault", "pubkey"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--vault-key FILE, or --namespace NS"),
        "{}",
        stderr(&out)
    );
    let out = synqx(
        dir.path(),
        &["vault", "pubkey", "--vault-key", "missing.json"],
        None,
    );
    assert!(
        stderr(&out).contains("reading the vault keyring missing.json"),
        "{}",
        stderr(&out)
    );
}

/// A local run whose PostgreSQL login is sealed: `synqx run --vault-key` opens the values in
/// memory, the rows arrive, and no output carries the credentials. Needs the PostgreSQL test
/// server (`scripts/services up`).
#[cfg(feature = "postgres-integration-tests")]
mod postgres {
    use std::path::Path;
    use std::process::Output;

    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::synqx;

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
        let server = synqx_testkit::servers::postgres();
        let url = server.url();
        let (host, port, database) = (&server.host, server.port, &server.database);
        let schema = synqx_testkit::unique_name("vault");
        let role = format!("{schema}_role");
        let password = format!("Pw-{schema}-sealed");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut admin = runtime.block_on(async {
        let mut c = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL test server at {url}: {e} (start it with `scripts/services up`)"));
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
                "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: {connection}, namespace: etl}}\nspec:\n  postgres:\n    host: {host}\n    port: {port}\n    database: {database}\n    sslMode: disable\n    user: {{sealed: {user}}}\n    password: {{sealed: {pw}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: out, namespace: etl}}\nspec: {{sqlite: {{path: out.db}}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: sealed, namespace: etl}}\nspec:\n  steps:\n    - name: copy\n      sync:\n        source: {{connection: {connection}, asset: {{fqn: {schema}.orders}}}}\n        destination: {{connection: out, asset: {{fqn: orders}}, mode: overwrite}}\n"
            )
        };
        let user = seal("warehouse", "postgres.user", &role);
        let pw = seal("warehouse", "postgres.password", &password);
        std::fs::write(d.join("pipeline.yaml"), pipeline("warehouse", &user, &pw))
            .unwrap_or_else(|e| panic!("{e}"));

        // A run with the keyring: its output, and all it printed.
        let run_sealed = |file: &str| {
            let out = synqx(
                d,
                &[
                    "run",
                    file,
                    "--state",
                    "state",
                    "--vault-key",
                    "keyring.json",
                ],
                None,
            );
            let text = all(&out);
            (out, text)
        };

        // Without the keyring the run says what it needs.
        let out = synqx(d, &["run", "pipeline.yaml", "--state", "state"], None);
        assert!(!out.status.success());
        assert!(all(&out).contains("--vault-key FILE"), "{}", all(&out));

        let (out, text) = run_sealed("pipeline.yaml");
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(&password) && !text.contains(&role), "{text}");
        let rows = runtime.block_on(async {
            let mut out = sqlx::SqliteConnection::connect(&format!(
                "sqlite://{}",
                d.join("out.db").display()
            ))
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
        let (out, text) = run_sealed("moved.yaml");
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
}
