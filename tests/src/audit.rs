//! The API server's audit log: `tests/cluster/up` records every request (who, verb,
//! resource, answer) as one JSON line, so tests can count what a client asked of the API
//! server, as the API server saw it.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;

use crate::cluster::Cluster;

/// The user of the operator installed by `manifests/install.yaml`.
pub const OPERATOR_USER: &str = "system:serviceaccount:synqx-system:synqx-operator";

/// One request, as the audit log records it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub verb: String,
    pub user: User,
    #[serde(default)]
    pub user_agent: String,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    pub request_u_r_i: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub username: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl Request {
    pub fn resource(&self) -> &str {
        self.object_ref.as_ref().map_or("", |o| o.resource.as_str())
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object_ref.as_ref()?.namespace.as_deref()
    }

    pub fn subresource(&self) -> Option<&str> {
        self.object_ref.as_ref()?.subresource.as_deref()
    }
}

/// The audit log of a test cluster.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The cluster's audit log; panics, saying what to do, when the cluster keeps none (it
    /// was started before `tests/cluster/up` turned the log on).
    pub fn of(cluster: &Cluster) -> Self {
        let path = cluster.run_dir.join("audit.log");
        assert!(
            path.is_file(),
            "{} does not exist: this test cluster was started without an audit log; stop it \
             with tests/cluster/down and run the tests again",
            path.display()
        );
        Self { path }
    }

    /// Where the log ends now: [`AuditLog::since`] reads what comes after.
    pub fn end(&self) -> u64 {
        std::fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
            .len()
    }

    /// Every request recorded after `offset`. A last line still being written is left out;
    /// any other line that is not an audit event fails the test.
    pub fn since(&self, offset: u64) -> Vec<Request> {
        let mut file = std::fs::File::open(&self.path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        file.seek(SeekFrom::Start(offset))
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        let mut text = String::new();
        file.read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("an audit line that is not an event ({e}): {line}"))
            })
            .collect()
    }
}

/// Requests counted by "verb resource[/subresource]", for messages.
pub fn tally<'a>(requests: impl IntoIterator<Item = &'a Request>) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in requests {
        let what = match r.subresource() {
            Some(sub) => format!("{} {}/{sub}", r.verb, r.resource()),
            None => format!("{} {}", r.verb, r.resource()),
        };
        *counts.entry(what).or_default() += 1;
    }
    counts.into_iter().collect()
}
