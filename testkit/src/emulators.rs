//! Where the warehouse emulators listen. `scripts/emulators up` starts fakesnow (Snowflake's
//! API), bigquery-emulator and iridium-server (a TDS server) on loopback and prints
//! `SYNQX_TEST_FAKESNOW`, `SYNQX_TEST_BIGQUERY` (with `SYNQX_TEST_BIGQUERY_PROJECT`) and
//! `SYNQX_TEST_SQLSERVER`; without them the defaults are the ports it uses.

use crate::servers::Server;

/// The fakesnow server's base URL, which a Snowflake Connection takes as its `host`.
pub fn fakesnow() -> String {
    std::env::var("SYNQX_TEST_FAKESNOW").unwrap_or_else(|_| "http://127.0.0.1:54080".into())
}

/// bigquery-emulator: the URL a BigQuery Connection takes as its `endpoint`, and the project
/// the emulator was started with.
pub struct BigQueryEmulator {
    pub url: String,
    pub project: String,
}

pub fn bigquery() -> BigQueryEmulator {
    BigQueryEmulator {
        url: std::env::var("SYNQX_TEST_BIGQUERY")
            .unwrap_or_else(|_| "http://127.0.0.1:59050".into()),
        project: std::env::var("SYNQX_TEST_BIGQUERY_PROJECT")
            .unwrap_or_else(|_| "synqx-test".into()),
    }
}

/// iridium-server, standing in for SQL Server: a login `synqx`, database `synqx`.
pub fn sqlserver() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_SQLSERVER")
            .unwrap_or_else(|_| "sqlserver://synqx:Synqx-Test-1@127.0.0.1:51433/synqx".into()),
        1433,
    )
}

/// The message of a test that could not reach an emulator.
pub fn unreachable(what: &str, at: &str, error: impl std::fmt::Display) -> String {
    format!(
        "{what} at {at} is not reachable ({error}); start it with `eval \"$(scripts/emulators up)\"`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlserver_url_parses_into_a_login() {
        let s = Server::parse("sqlserver://synqx:Synqx-Test-1@127.0.0.1:51433/synqx", 1433);
        assert_eq!(
            (
                s.user.as_str(),
                s.password.as_str(),
                s.port,
                s.database.as_str()
            ),
            ("synqx", "Synqx-Test-1", 51433, "synqx")
        );
        assert!(unreachable("fakesnow", "http://x", "refused").contains("scripts/emulators up"));
    }
}
