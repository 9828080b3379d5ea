//! No credential reaches anything a reader of the cluster can see. Distinctive user names,
//! passwords, keys and tokens, from a Secret and sealed, go to every connector kind the
//! control plane runs (PostgreSQL, MySQL, SQL Server, Redis, MongoDB, REST, S3, Snowflake,
//! BigQuery), most of them wrong so that every error path runs: the Connections' checks and
//! the steps of a run fail, a hostile server (standing in for an API, an S3 endpoint and
//! Snowflake) echoes the request it received, cut where a message is cut; one login is
//! right, so a step succeeds too. A step also meets a bad row whose value is as distinctive,
//! under `onError: fail`: its error names the row and the rejected file, never the value.
//! Then every object, status, Event, termination message and pod log of the namespace, the
//! operator's logs, its `/metrics` and the files the steps wrote are searched: no value, nor
//! the first characters of one, appears anywhere.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_e2e::cluster::{Cluster, wait_until};
use synqx_e2e::runs::{apply, connection, finished, folder, http_get, setup, start_run, step};
use synqx_e2e::secrets::{checked, lines_with, pod_logs, readable, seal, vault_published};
use synqx_testkit::emulators;
use synqx_testkit::postgres::psql;
use synqx_testkit::servers::{mongodb_uri, mysql, postgres, redis, with_login};

/// How many characters of a message the REST connector keeps of a response body.
const BODY_SHOWN: usize = 300;
/// How many leading characters of a secret make it recognisable: a value cut short must not
/// show this much of itself.
const HEAD: usize = 12;

/// Where a credential stands in a request: after one of these.
const MARKERS: [&str; 5] = [
    "Bearer ",
    "Basic ",
    "api_key=",
    "Credential=",
    "\"PASSWORD\":\"",
];

/// A server that answers every request with 401 and quotes it back, headers and body (as
/// careless servers do), with the credential placed where the connector cuts a body short: a
/// message must neither show the whole value nor its beginning. Returns the port and every
/// request received.
fn echo_server() -> (u16, Arc<Mutex<String>>) {
    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding the echo server: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the echo server's address: {e}"))
        .port();
    let received = Arc::new(Mutex::new(String::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A client that hangs up early is the client's business.
            let _ = answer(stream, &log);
        }
    });
    (port, received)
}

fn answer(mut stream: TcpStream, log: &Mutex<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    // The body too: Snowflake's login sends the password in it.
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let body_at = head.find("\r\n\r\n").map_or(request.len(), |at| at + 4);
    while request.len() < body_at + length.min(1 << 20) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    if let Ok(mut log) = log.lock() {
        log.push_str(&request);
    }
    // The credential starts HEAD characters before the cut (the body is one line of dots
    // and no spaces before it, which the connector would fold).
    let start = MARKERS
        .iter()
        .find_map(|marker| request.find(marker).map(|at| at + marker.len()))
        .unwrap_or(0);
    let body = format!("{}{}", ".".repeat(BODY_SHOWN - HEAD), &request[start..]);
    write!(
        stream,
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The operator's own logs, from its pods in `synqx-system`: they must tell of `namespace`
/// (the run that ended there), or they were not found.
async fn operator_logs(cluster: &Cluster, namespace: &str) -> String {
    let told = || {
        let logs = pod_logs(cluster, "synqx-system");
        logs.lines()
            .any(|l| l.contains(namespace) && l.contains("run ended"))
    };
    wait_until(
        Duration::from_secs(30),
        &format!("the operator's logs to tell of the run in {namespace}"),
        || async { told() },
    )
    .await;
    pod_logs(cluster, "synqx-system")
}

/// The text of every file below `dir`.
fn files_below(dir: &std::path::Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&files_below(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[tokio::test]
async fn no_credential_shows_in_objects_events_logs_or_metrics() {
    let (cluster, ns) = setup("leaks").await;
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mark = ns.name.replace('-', "_");
    // Every value starts with its own tag, so the first HEAD characters name it alone.
    let value = |tag: &str| format!("{tag}{mark}_value");
    let (pg_user, pg_password) = (value("zqpgusr"), value("Zqpgpwd"));
    let (ok_user, ok_password) = (value("zqokusr"), value("Zqokpwd"));
    let (sealed_user, sealed_password) = (value("zqslusr"), value("Zqslpwd"));
    let (my_user, my_password) = (value("zqmyusr"), value("Zqmypwd"));
    let (redis_user, redis_password) = (value("zqrdusr"), value("Zqrdpwd"));
    let (mongo_user, mongo_password) = (value("zqmgusr"), value("Zqmgpwd"));
    let (token, api_key) = (value("Zqtoken"), value("Zqapkey"));
    let (basic_user, basic_password) = (value("zqbausr"), value("Zqbapwd"));
    let (ms_user, ms_password) = (value("zqmsusr"), value("Zqmspwd"));
    let (s3_key_id, s3_secret) = (value("ZQS3KEYID"), value("Zqs3sec"));
    let (sf_user, sf_password) = (value("zqsfusr"), value("Zqsfpwd"));
    // A value of a row, not a credential: it may reach the step's rejected file only.
    let bad_value = value("Zqbadrow");
    // Not a key that parses: the connector must refuse it without quoting it.
    let bq_key = value("Zqbqkey");
    let bq_credentials = format!(
        "{{\"type\": \"service_account\", \"client_email\": \"leak@synqx-test.iam.gserviceaccount.com\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{bq_key}\\n-----END PRIVATE KEY-----\\n\", \"token_uri\": \"http://127.0.0.1:1/token\"}}"
    );
    // What an `Authorization: Basic` header carries.
    let basic_header =
        base64::engine::general_purpose::STANDARD.encode(format!("{basic_user}:{basic_password}"));
    let secrets = [
        &pg_user,
        &pg_password,
        &ok_user,
        &ok_password,
        &sealed_user,
        &sealed_password,
        &my_user,
        &my_password,
        &redis_user,
        &redis_password,
        &mongo_user,
        &mongo_password,
        &token,
        &api_key,
        &basic_user,
        &basic_password,
        &basic_header,
        &ms_user,
        &ms_password,
        &s3_key_id,
        &s3_secret,
        &sf_user,
        &sf_password,
        &bq_key,
        &bad_value,
    ];

    psql(&format!(
        "CREATE SCHEMA {mark}; CREATE TABLE {mark}.orders AS SELECT g AS id, g * 10 AS total FROM generate_series(1, 5) g; \
         CREATE ROLE {ok_user} LOGIN PASSWORD '{ok_password}'; GRANT USAGE ON SCHEMA {mark} TO {ok_user}; GRANT SELECT ON {mark}.orders TO {ok_user}"
    ));
    let (port, received) = echo_server();

    // The bad row's file lies outside what is searched below.
    let inbox = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::write(
        inbox.path().join("orders.csv"),
        format!("id,amount\n1,10\n2,{bad_value}\n"),
    )
    .unwrap_or_else(|e| panic!("writing the bad row: {e}"));
    // A namespace's first Connection makes the operator create its vault.
    apply(cluster, &ns, &folder("lake", &data.path().join("lake")));
    vault_published(&ns).await;
    let sealed_user_value = seal(
        cluster,
        &ns.name,
        "pg-sealed",
        "postgres.user",
        &sealed_user,
    );
    let sealed_password_value = seal(
        cluster,
        &ns.name,
        "pg-sealed",
        "postgres.password",
        &sealed_password,
    );

    let (pg, my, rd) = (postgres(), mysql(), redis());
    let mongo_uri = with_login(&mongodb_uri(), &mongo_user, &mongo_password);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: leak-creds, labels: {{synqx.io/connection-secret: \"true\"}}}}\nstringData:\n\
         \x20 pg-user: {pg_user}\n  pg-password: {pg_password}\n  ok-user: {ok_user}\n  ok-password: {ok_password}\n\
         \x20 my-user: {my_user}\n  my-password: {my_password}\n  redis-user: {redis_user}\n  redis-password: {redis_password}\n\
         \x20 mongo-uri: {mongo_uri:?}\n  token: {token}\n  api-key: {api_key}\n\
         \x20 basic-user: {basic_user}\n  basic-password: {basic_password}\n\
         \x20 ms-user: {ms_user}\n  ms-password: {ms_password}\n\
         \x20 s3-key-id: {s3_key_id}\n  s3-secret: {s3_secret}\n\
         \x20 sf-user: {sf_user}\n  sf-password: {sf_password}\n  bq-credentials: {bq_credentials:?}\n---\n"
    );
    let ms = emulators::sqlserver();
    let echo = format!("http://127.0.0.1:{port}");
    let from = |key: &str| format!("{{secretKeyRef: {{name: leak-creds, key: {key}}}}}");
    let postgres_with = |user: &str, password: &str| {
        format!(
            "postgres: {{host: {}, port: {}, database: {}, sslMode: disable, user: {user}, password: {password}}}",
            pg.host, pg.port, pg.database
        )
    };
    let connections = [
        connection(
            "pg-secret",
            &postgres_with(&from("pg-user"), &from("pg-password")),
        ),
        connection(
            "pg-ok",
            &postgres_with(&from("ok-user"), &from("ok-password")),
        ),
        connection(
            "pg-sealed",
            &postgres_with(
                &format!("{{sealed: \"{sealed_user_value}\"}}"),
                &format!("{{sealed: \"{sealed_password_value}\"}}"),
            ),
        ),
        connection(
            "my-secret",
            &format!(
                "mysql: {{host: {}, port: {}, database: {}, sslMode: disable, user: {}, password: {}}}",
                my.host,
                my.port,
                my.database,
                from("my-user"),
                from("my-password")
            ),
        ),
        connection(
            "redis-secret",
            &format!(
                "redis: {{host: {}, port: {}, username: {}, password: {}}}",
                rd.host,
                rd.port,
                from("redis-user"),
                from("redis-password")
            ),
        ),
        connection(
            "mongo-secret",
            &format!(
                "mongodb: {{uri: {}, database: synqx_tests}}",
                from("mongo-uri")
            ),
        ),
        connection(
            "rest-bearer",
            &format!(
                "rest: {{baseUrl: \"http://127.0.0.1:{port}/\", auth: {{bearerToken: {}}}}}",
                from("token")
            ),
        ),
        connection(
            "rest-query",
            &format!(
                "rest: {{baseUrl: \"http://127.0.0.1:{port}/\", auth: {{apiKey: {{query: api_key, value: {}}}}}}}",
                from("api-key")
            ),
        ),
        connection(
            "rest-basic",
            &format!(
                "rest: {{baseUrl: \"{echo}/\", auth: {{basic: {{username: {}, password: {}}}}}}}",
                from("basic-user"),
                from("basic-password")
            ),
        ),
        connection(
            "ms-secret",
            &format!(
                "sqlserver: {{host: {}, port: {}, database: {}, encrypt: false, trustServerCertificate: true, user: {}, password: {}}}",
                ms.host,
                ms.port,
                ms.database,
                from("ms-user"),
                from("ms-password")
            ),
        ),
        connection(
            "s3-echo",
            &format!(
                "s3: {{bucket: lake, region: us-east-1, endpoint: \"{echo}\", forcePathStyle: true, accessKeyId: {}, secretAccessKey: {}}}",
                from("s3-key-id"),
                from("s3-secret")
            ),
        ),
        connection(
            "sf-echo",
            &format!(
                "snowflake: {{account: leak, host: \"{echo}\", warehouse: wh, database: db, user: {}, password: {}}}",
                from("sf-user"),
                from("sf-password")
            ),
        ),
        connection(
            "bq-key",
            &format!(
                "bigquery: {{project: synqx-test, dataset: leak, credentialsJson: {}}}",
                from("bq-credentials")
            ),
        ),
    ];
    // One step per Connection, each on its own, every one run even when others fail.
    let sources = [
        ("pg-secret", format!("{mark}.orders")),
        ("pg-ok", format!("{mark}.orders")),
        ("pg-sealed", format!("{mark}.orders")),
        ("my-secret", "orders".to_string()),
        ("redis-secret", format!("\"{mark}:*\"")),
        ("mongo-secret", "orders".to_string()),
        ("rest-bearer", "items".to_string()),
        ("rest-query", "items".to_string()),
        ("rest-basic", "items".to_string()),
        ("ms-secret", "dbo.orders".to_string()),
        ("s3-echo", "orders/".to_string()),
        ("sf-echo", "orders".to_string()),
        ("bq-key", "leak.orders".to_string()),
    ];
    let steps: String = sources
        .iter()
        .map(|(conn, fqn)| {
            // Files need their format; the other sources know their rows' shape.
            let format = if *conn == "s3-echo" { ", format: csv" } else { "" };
            format!(
                "    - name: from-{conn}\n      sync:\n\
                 \x20       source: {{connection: {conn}, asset: {{fqn: {fqn}}}{format}}}\n\
                 \x20       destination: {{connection: lake, asset: {{fqn: {conn}/}}, format: csv, mode: overwrite}}\n"
            )
        })
        .collect();
    let bad_row_step = "    - name: bad-row\n      sync:\n        onError: fail\n\
         \x20       source: {connection: inbox, asset: {fqn: orders.csv}, columns: {amount: int64}}\n\
         \x20       destination: {connection: lake, asset: {fqn: bad-row/}, format: csv, mode: overwrite}\n";
    let pipeline = format!(
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: leaky}}\nspec:\n  onFailure: Continue\n  steps:\n{steps}{bad_row_step}---\n"
    );
    apply(
        cluster,
        &ns,
        &format!(
            "{secret}{}{}{pipeline}",
            connections.concat(),
            folder("inbox", inbox.path())
        ),
    );

    for (conn, _) in &sources {
        let (status, reason, message) = checked(&ns, conn).await;
        let expected = if *conn == "pg-ok" { "True" } else { "False" };
        assert_eq!(status, expected, "Connection {conn}: {reason}: {message}");
    }

    start_run(cluster, &ns, "leaky", "leaky-1", "");
    let run = finished(&ns, "leaky-1").await;
    assert_eq!(
        run.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Failed),
        "{:#?}",
        run.status
    );
    for (conn, _) in &sources {
        let s = step(&run, &format!("from-{conn}"));
        if *conn == "pg-ok" {
            assert_eq!(s.rows_written, Some(5), "{s:#?}");
        } else {
            assert_eq!(s.phase, Some(StepPhase::Failed), "{s:#?}");
            assert!(
                s.message.as_deref().is_some_and(|m| m.contains(conn)),
                "step from-{conn} does not say what failed: {s:#?}"
            );
        }
    }
    let bad = step(&run, "bad-row");
    assert_eq!(bad.phase, Some(StepPhase::Failed), "{bad:#?}");
    assert!(
        bad.message.as_deref().is_some_and(|m| m
            .contains("orders.csv: line 3, column \"amount\": cannot parse the value as int64")
            && m.contains("the row is in the rejected file")),
        "the bad row's error does not say where it is: {bad:#?}"
    );
    // The credentials did go out: the API received them and quoted them back.
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    for sent in [
        format!("Bearer {token}"),
        api_key.clone(),
        format!("Basic {basic_header}"),
        format!("Credential={s3_key_id}/"),
        sf_password.clone(),
    ] {
        assert!(
            received.contains(&sent),
            "the echo server never received {}…: {received}",
            &sent[..HEAD]
        );
    }

    let everything = [
        readable(cluster, &ns.name),
        operator_logs(cluster, &ns.name).await,
        http_get(8080, "/metrics")
            .unwrap_or_else(|e| panic!("the operator's /metrics on port 8080: {e}")),
        files_below(data.path()),
    ]
    .concat();
    assert!(everything.contains("synqx step"), "pod logs were read");
    let heads: Vec<&str> = secrets.iter().map(|s| &s[..HEAD]).collect();
    let found = lines_with(&everything, &heads);
    assert!(
        found.is_empty(),
        "credentials are readable in namespace {}: {found:#?}",
        ns.name
    );

    psql(&format!("DROP SCHEMA {mark} CASCADE; DROP ROLE {ok_user}"));
}
