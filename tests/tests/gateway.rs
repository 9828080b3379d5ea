//! The operator's gateway on the test control plane, as a client reaches it: tokens that
//! must be refused (forged, of an account without the right, of a deleted account), the
//! token in the WebSocket subprotocol, the lists, a follower seeing a step turn from Running
//! to Succeeded, 50 followers that reconnect again and again with `since` and still get
//! every message once and in order, and `synqx runs watch`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::DeleteParams;
use synqx_api::gateway::{Body, Message, PROTOCOL};
use synqx_api::run::{RunPhase, StepPhase};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_until};
use synqx_e2e::gateway::{Auth, Gate, Next, connect, get, next, wait_until_served, watch_path};
use synqx_e2e::runs::{apply, finished, setup, slow_query, sqlite, start_run, step, step_reaches};

/// `viewer` may get and list Pipelines and runs, `stranger` may do nothing, `leaver` has
/// viewer's rights (and is deleted by a test).
fn accounts() -> String {
    let account = |name: &str| {
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}}}\n---\n")
    };
    let binding = |name: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-viewer}}\nsubjects: [{{kind: ServiceAccount, name: {name}}}]\n---\n"
        )
    };
    [
        account("viewer"),
        account("stranger"),
        account("leaver"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-viewer}\nrules: [{apiGroups: [synqx.io], resources: [pipelines, pipelineruns], verbs: [get, list]}]\n---\n".to_string(),
        binding("viewer"),
        binding("leaver"),
    ]
    .concat()
}

/// A Pipeline of `steps` steps run one after the other, each a query on `db` that keeps it
/// busy for `rows` rows; after a first step `gated` (reading the [`Gate`] `api` into `db`)
/// when asked.
fn chain(name: &str, gated: bool, steps: usize, rows: u64) -> String {
    let mut yaml = format!(
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  steps:\n"
    );
    if gated {
        yaml.push_str(
            "    - {name: gated, sync: {source: {connection: api, asset: {fqn: records}}, destination: {connection: db, asset: {fqn: records}, mode: overwrite}}}\n",
        );
    }
    for n in 1..=steps {
        let depends = match (n, gated) {
            (1, false) => String::new(),
            (1, true) => ", dependsOn: [gated]".to_string(),
            _ => format!(", dependsOn: [s{}]", n - 1),
        };
        yaml.push_str(&format!(
            "    - {{name: s{n}{depends}, sql: {{connection: db, statements: [\"{}\"]}}}}\n",
            slow_query(rows)
        ));
    }
    yaml
}

async fn prepare(
    prefix: &str,
    pipeline: &str,
    gate: &Gate,
) -> (&'static Cluster, TestNamespace, tempfile::TempDir) {
    let (cluster, ns) = setup(prefix).await;
    let data = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}{}{}{}",
        accounts(),
        sqlite("db", &data.path().join("db.sqlite")),
        gate.connection("api"),
        pipeline
    );
    apply(cluster, &ns, &yaml);
    wait_until_served(cluster).await;
    (cluster, ns, data)
}

fn phase_of(message: &Message) -> Option<RunPhase> {
    match &message.body {
        Body::Run { phase, .. } => *phase,
        Body::Snapshot { run, .. } => run.status.phase,
        _ => None,
    }
}

#[tokio::test]
async fn forged_unprivileged_and_deleted_account_tokens_are_refused() {
    let (cluster, ns, _data) = prepare(
        "gw-auth",
        &chain("quick", false, 1, 10),
        &Gate::start().await,
    )
    .await;
    start_run(cluster, &ns, "quick", "quick-1", "");
    finished(&ns, "quick-1").await;
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    let stranger = cluster.service_account_token(&ns.name, "stranger");
    let runs = format!("/api/v1/namespaces/{}/pipelineruns", ns.name);
    let pipelines = format!("/api/v1/namespaces/{}/pipelines", ns.name);

    let (code, body) = get(&runs, None).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (401, Some("Unauthorized")),
        "{body}"
    );
    // Shaped like a service-account token, signed by nobody the API server trusts.
    let forged = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZvcmdlZCJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06YWRtaW4ifQ.c2lnbmVkLWJ5LW5vYm9keQ";
    let (code, body) = get(&runs, Some(forged)).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = get(&runs, Some(&stranger)).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (403, Some("Forbidden")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("system:serviceaccount:{}:stranger", ns.name))
            && message.contains(&format!(
                "may not list pipelineruns.synqx.io in namespace {}",
                ns.name
            )),
        "{message}"
    );
    assert_eq!(get(&pipelines, Some(&stranger)).await.0, 403);

    let (code, body) = get(&runs, Some(&viewer)).await;
    assert_eq!(code, 200, "{body}");
    let run = &body["items"][0];
    assert_eq!(run["name"], "quick-1", "{body}");
    assert_eq!(run["pipeline"], "quick");
    assert_eq!(run["status"]["phase"], "Succeeded");
    assert_eq!(run["status"]["steps"][0]["name"], "s1");
    assert_eq!(run["status"]["steps"][0]["phase"], "Succeeded");
    let (code, body) = get(&pipelines, Some(&viewer)).await;
    assert_eq!(code, 200, "{body}");
    let pipeline = &body["items"][0];
    assert_eq!(pipeline["name"], "quick", "{body}");
    assert_eq!(pipeline["steps"], serde_json::json!(["s1"]));
    assert_eq!(pipeline["layers"], serde_json::json!([["s1"]]));
    assert_eq!(pipeline["ready"]["status"], "True");
    assert_eq!(pipeline["lastRun"]["name"], "quick-1");

    // The WebSocket refuses the same way, before it upgrades.
    let watch = watch_path(&ns.name, "quick-1", "");
    let refused = connect(&watch, Auth::Subprotocol(&stranger)).await.err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|(code, body)| *code == 403 && body.contains("stranger")),
        "{refused:?}"
    );
    let refused = connect(&watch, Auth::Header(forged)).await.err();
    assert_eq!(refused.map(|(code, _)| code), Some(401));

    // A token the API server stops accepting is refused at once: nothing is cached. The API
    // server keeps a TokenRequest token for at least 10 minutes, so the account is deleted
    // instead, which makes the API server refuse its still-unexpired token as it refuses an
    // expired one (TokenReview says unauthenticated).
    let leaver = cluster.service_account_token(&ns.name, "leaver");
    assert_eq!(get(&runs, Some(&leaver)).await.0, 200);
    let accounts: Api<ServiceAccount> = ns.api();
    accounts
        .delete("leaver", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the service account leaver: {e}"));
    wait_until(
        Duration::from_secs(30),
        "the deleted account's token to be refused",
        || async { get(&runs, Some(&leaver)).await.0 == 401 },
    )
    .await;
}

#[tokio::test]
async fn a_follower_gets_the_snapshot_then_a_step_turning_running_to_succeeded() {
    let gate = Gate::start().await;
    let (cluster, ns, _data) = prepare("gw-follow", &chain("slow", true, 0, 0), &gate).await;
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    start_run(cluster, &ns, "slow", "slow-1", "");
    // synqx runs watch follows the same run, as a user would.
    let cli = tokio::process::Command::new(cluster.bin_dir.join("synqx"))
        .args(["runs", "watch", "slow-1", "-n", &ns.name])
        .args(["--gateway", "http://127.0.0.1:8081", "--token", &viewer])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .kill_on_drop(true)
        .output();
    let cli = tokio::spawn(cli);

    // The token in the subprotocol; the gateway selects the watch protocol, never echoing
    // the token's.
    let path = watch_path(&ns.name, "slow-1", "");
    let connected = connect(&path, Auth::Subprotocol(&viewer)).await;
    let Ok((mut socket, chosen)) = connected else {
        panic!(
            "the watch was refused: {connected:?}",
            connected = connected.err()
        )
    };
    assert_eq!(chosen.as_deref(), Some(PROTOCOL));
    let first = match next(&mut socket).await {
        Next::Message(first) => first,
        other => panic!("no snapshot: {other:?}"),
    };
    let Body::Snapshot {
        reset: None, run, ..
    } = &first.body
    else {
        panic!("the first message is not a plain snapshot: {first:?}")
    };
    assert_eq!(
        (run.name.as_str(), run.pipeline.as_str()),
        ("slow-1", "slow")
    );
    // The step cannot finish before the gate opens: the follower sees it happen.
    assert!(
        !phase_of(&first).is_some_and(RunPhase::is_finished),
        "{first:?}"
    );
    step_reaches(&ns, "slow-1", "gated", StepPhase::Running).await;
    gate.open();
    let mut last = first.seq;
    let mut transitions = Vec::new();
    loop {
        let message = match next(&mut socket).await {
            Next::Message(message) => message,
            other => panic!("{other:?} after message {last} and {transitions:?}"),
        };
        assert_eq!(
            message.seq,
            last + 1,
            "a gap or a repeat after {last}: {message:?}"
        );
        last = message.seq;
        if let Body::Step { from, step } = &message.body {
            transitions.push((step.name.clone(), *from, step.phase, step.rows_written));
        }
        if phase_of(&message).is_some_and(RunPhase::is_finished) {
            assert_eq!(phase_of(&message), Some(RunPhase::Succeeded));
            break;
        }
    }
    let run = finished(&ns, "slow-1").await;
    let written = step(&run, "gated").rows_written;
    assert_eq!(written, Some(2), "{run:?}");
    assert!(
        transitions.contains(&(
            "gated".into(),
            Some(StepPhase::Running),
            Some(StepPhase::Succeeded),
            written
        )),
        "{transitions:?}"
    );

    let output = tokio::time::timeout(Duration::from_secs(60), cli)
        .await
        .unwrap_or_else(|_| panic!("synqx runs watch did not end with the run"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("running synqx runs watch: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "synqx runs watch: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = stdout
        .rsplit("Pipeline slow run slow-1: ")
        .next()
        .unwrap_or_default();
    assert!(table.starts_with("Succeeded in "), "{stdout}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("gated ") && l.contains(" Succeeded  2 ")),
        "{stdout}"
    );
}

/// What one follower received: each message's JSON by sequence number, and how often it
/// reconnected.
struct Followed {
    messages: BTreeMap<u64, String>,
    reconnects: usize,
}

/// Follows `run` to its end, dropping the connection after every `every` messages and
/// resuming with `since`; fails on a gap, a repeat, or a snapshot where a resume was due.
/// Says on `ready` when it has its first snapshot.
async fn follow_with_reconnects(
    path: String,
    viewer: String,
    every: usize,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> Followed {
    let mut messages = BTreeMap::new();
    let mut since: Option<u64> = None;
    let mut reconnects = 0;
    loop {
        let url = match since {
            Some(s) => format!("{path}?since={s}"),
            None => path.clone(),
        };
        let (mut socket, _) = connect(&url, Auth::Header(&viewer))
            .await
            .unwrap_or_else(|(code, body)| panic!("{url}: {code} {body}"));
        let mut here = 0;
        loop {
            let message = match next(&mut socket).await {
                Next::Message(message) => message,
                other => panic!("{url}: {other:?} after {since:?}"),
            };
            match (&message.body, since) {
                (Body::Snapshot { .. }, Some(s)) => {
                    panic!("{url}: a snapshot instead of the messages after {s}: {message:?}")
                }
                (Body::Snapshot { .. }, None) => {
                    let _ = ready.send(());
                }
                (_, Some(s)) => {
                    assert_eq!(message.seq, s + 1, "{url}: a gap or a repeat: {message:?}");
                    let json = serde_json::to_string(&*message).unwrap_or_default();
                    messages.insert(message.seq, json);
                }
                (_, None) => panic!("{url}: no snapshot first: {message:?}"),
            }
            since = Some(message.seq);
            if phase_of(&message).is_some_and(RunPhase::is_finished) {
                return Followed {
                    messages,
                    reconnects,
                };
            }
            here += 1;
            if here % every == 0 {
                // Dropped without a goodbye, as a lost network drops it.
                drop(socket);
                reconnects += 1;
                break;
            }
        }
    }
}

#[tokio::test]
async fn fifty_followers_receive_every_message_in_order_across_forced_reconnects() {
    let gate = Gate::start().await;
    let (cluster, ns, _data) = prepare("gw-fifty", &chain("chain", true, 3, 300_000), &gate).await;
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    start_run(cluster, &ns, "chain", "chain-1", "");
    let path = watch_path(&ns.name, "chain-1", "");
    let (ready, mut connected) = tokio::sync::mpsc::unbounded_channel();
    let followers: Vec<_> = (0..50)
        .map(|i| {
            let follower =
                follow_with_reconnects(path.clone(), viewer.clone(), 1 + i % 3, ready.clone());
            tokio::spawn(follower)
        })
        .collect();
    // One more follows only step s2.
    let filtered = {
        let path = watch_path(&ns.name, "chain-1", "step=s2");
        let viewer = viewer.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let (mut socket, _) = connect(&path, Auth::Header(&viewer))
                .await
                .unwrap_or_else(|(code, body)| panic!("{path}: {code} {body}"));
            let mut steps = Vec::new();
            loop {
                let message = match next(&mut socket).await {
                    Next::Message(message) => message,
                    other => panic!("{path}: {other:?} before the run ended"),
                };
                match &message.body {
                    Body::Snapshot { run, .. } => {
                        let _ = ready.send(());
                        steps.extend(run.status.steps.iter().map(|s| s.name.clone()));
                    }
                    Body::Step { step, .. } => steps.push(step.name.clone()),
                    Body::Counters { steps: counted } => {
                        steps.extend(counted.iter().map(|s| s.name.clone()))
                    }
                    Body::Log { step, .. } => steps.push(step.clone()),
                    Body::Run { .. } => {}
                }
                if phase_of(&message).is_some_and(RunPhase::is_finished) {
                    return steps;
                }
            }
        })
    };
    // Every follower is in before the first step may finish.
    for n in 0..51 {
        tokio::time::timeout(Duration::from_secs(120), connected.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} of 51 followers connected within 120 s"));
    }
    gate.open();
    let mut all = Vec::new();
    for follower in followers {
        all.push(
            tokio::time::timeout(Duration::from_secs(300), follower)
                .await
                .unwrap_or_else(|_| panic!("a follower did not see the run end"))
                .unwrap_or_else(|e| panic!("a follower failed: {e}")),
        );
    }
    let run = finished(&ns, "chain-1").await;
    assert_eq!(
        run.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded)
    );
    // Every follower ends at the same message, and any two hold the same message under the
    // same number.
    let last: Vec<Option<u64>> = all
        .iter()
        .map(|f| f.messages.keys().max().copied())
        .collect();
    assert!(last.windows(2).all(|w| w[0] == w[1]), "{last:?}");
    let mut union: BTreeMap<u64, &String> = BTreeMap::new();
    for followed in &all {
        for (seq, json) in &followed.messages {
            let seen = union.entry(*seq).or_insert(json);
            assert_eq!(*seen, json, "message {seq} differs between followers");
        }
        // Each got every step turning Succeeded: all of them were in before the first did.
        for name in ["gated", "s1", "s2", "s3"] {
            assert!(
                followed
                    .messages
                    .values()
                    .any(|j| j.contains("\"type\":\"step\"")
                        && j.contains(&format!("\"name\":\"{name}\""))
                        && j.contains("\"phase\":\"Succeeded\"")),
                "{name} Succeeded missing: {:#?}",
                followed.messages
            );
        }
    }
    let reconnects: usize = all.iter().map(|f| f.reconnects).sum();
    assert!(
        reconnects >= 100,
        "only {reconnects} reconnections were forced"
    );

    let steps = tokio::time::timeout(Duration::from_secs(60), filtered)
        .await
        .unwrap_or_else(|_| panic!("the filtered follower did not see the run end"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        steps.iter().all(|s| s == "s2") && steps.contains(&"s2".to_string()),
        "{steps:?}"
    );
}

/// The web UI on the gateway in headless Chromium (`tests/browser/gateway.test.mjs`): a
/// token pasted once, kept in session storage only, and a run followed live. The step is
/// held on the gate until the page shows it running.
#[tokio::test]
async fn the_web_ui_asks_for_a_token_and_follows_a_run_live_in_chromium() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let gate = Gate::start().await;
    let (cluster, ns, _data) = prepare("gw-ui", &chain("slow", true, 1, 10), &gate).await;
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    start_run(cluster, &ns, "slow", "slow-1", "");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/run");
    let mut browser = tokio::process::Command::new(&script)
        .arg("gateway")
        .env(
            "GATEWAY",
            format!("http://127.0.0.1:{}", synqx_e2e::gateway::PORT),
        )
        .env("NAMESPACE", &ns.name)
        .env("PIPELINE", "slow")
        .env("RUN", "slow-1")
        .env("STEP", "gated")
        .env("TOKEN", &viewer)
        .env("ROWS", "2")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    let Some(stdout) = browser.stdout.take() else {
        panic!("the browser test's output is not piped")
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut said = Vec::new();
    // The page shows the step running (the gate holds it) before the gate opens.
    while let Ok(Some(line)) = lines.next_line().await {
        said.push(line.clone());
        if line == "RUNNING" {
            break;
        }
    }
    assert_eq!(said.last().map(String::as_str), Some("RUNNING"), "{said:?}");
    gate.open();
    while let Ok(Some(line)) = lines.next_line().await {
        said.push(line);
    }
    let status = browser
        .wait()
        .await
        .unwrap_or_else(|e| panic!("waiting for the browser test: {e}"));
    assert!(status.success(), "the browser test failed: {said:?}");
    assert_eq!(said.last().map(String::as_str), Some("OK"), "{said:?}");
    let run = finished(&ns, "slow-1").await;
    assert_eq!(step(&run, "gated").rows_written, Some(2), "{run:?}");
}
