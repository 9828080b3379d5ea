//! A real Prometheus (Debian's package) on loopback, for end-to-end tests: started from a
//! config and rule files in its own folder, queried through its HTTP API, stopped and its
//! folder removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::monitoring;
use crate::runs::http_get;

/// Why an instant query gave no result; each names the query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{query}: {source}")]
    Http {
        query: String,
        source: std::io::Error,
    },
    #[error("{query}: {source}: {body}")]
    NotJson {
        query: String,
        body: String,
        source: serde_json::Error,
    },
    /// Prometheus answered with an error of its own.
    #[error("{query}: {kind}: {error}")]
    Refused {
        query: String,
        /// Its `errorType` and `error`, as the JSON it sent.
        kind: String,
        error: String,
    },
}

pub struct Prometheus {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml) and `files` (rules, by file name)
    /// in a fresh folder, and waits until it is ready.
    pub async fn start(config: &str, files: &[(&str, String)]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "synqx-prometheus-{}-{}",
            std::process::id(),
            chrono_free_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        std::fs::write(dir.join("prometheus.yml"), config)
            .unwrap_or_else(|e| panic!("writing prometheus.yml: {e}"));
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("finding a free port: {e}"));
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .unwrap_or_else(|e| panic!("creating the Prometheus log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("sharing the Prometheus log: {e}"));
        let child = Command::new(monitoring::prometheus())
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting prometheus: {e}"));
        let prometheus = Prometheus { child, port, dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http_get(port, "/-/ready").is_ok_and(|body| body.contains("Ready")) {
                return prometheus;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not become ready within 60 s:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of Prometheus's log, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or_default().to_string()
    }

    /// The result of an instant query: one entry per series; an error names the query.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, QueryError> {
        let query = || promql.to_string();
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let body = http_get(self.port, &path).map_err(|source| QueryError::Http {
            query: query(),
            source,
        })?;
        let answer: Value = match serde_json::from_str(&body) {
            Ok(answer) => answer,
            Err(source) => {
                return Err(QueryError::NotJson {
                    query: query(),
                    body,
                    source,
                });
            }
        };
        if answer["status"] != "success" {
            return Err(QueryError::Refused {
                query: query(),
                kind: answer["errorType"].to_string(),
                error: answer["error"].to_string(),
            });
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until `check` holds for the result of `promql`; panics naming `what` and the
    /// last result after `timeout`.
    pub async fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let result = self.query(promql);
            if let Ok(series) = &result
                && check(series)
            {
                return series.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; `{promql}` gave {result:?}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `alert` is firing with these labels in `ALERTS`.
    pub async fn wait_firing(&self, alert: &str, labels: &[(&str, &str)], timeout: Duration) {
        let mut selector = format!("alertname=\"{alert}\",alertstate=\"firing\"");
        for (name, value) in labels {
            selector.push_str(&format!(",{name}=\"{value}\""));
        }
        let query = format!("ALERTS{{{selector}}}");
        self.wait_for(&query, timeout, &format!("{alert} to fire"), |s| {
            !s.is_empty()
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of one series of a query result as a number.
pub fn value(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

fn chrono_free_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
