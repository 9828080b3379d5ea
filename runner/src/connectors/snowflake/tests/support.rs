//! fakesnow for the tests: a Connection to a database of its own, the source and sink over
//! it, and SQL run in a session of its own.

use std::sync::Arc;

use synqx_api::connection::SnowflakeConnection;
use synqx_api::{ConnectionSpec, SecretValue};

use synqx_testkit::{emulators, unique_name};

use crate::connectors::Connector;
use crate::connectors::snowflake::Snowflake;
use crate::connectors::snowflake::config::SnowflakeConfig;
use crate::connectors::snowflake::connect::Session;
use crate::connectors::tests::warehouses::TestConnection;
use crate::connectors::tests::{Harness, ok};
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "warehouse";
pub(super) const PASSWORD: &str = "sf-pass-8c1f";

pub(super) fn spec(database: &str) -> ConnectionSpec {
    ConnectionSpec {
        snowflake: Some(SnowflakeConnection {
            account: "synqx-test".into(),
            host: Some(emulators::fakesnow()),
            user: SecretValue::plain("loader"),
            password: Some(SecretValue::from_secret("sf-creds", "password")),
            warehouse: "WH".into(),
            database: database.into(),
            schema: Some("PUBLIC".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A database of its own, with the connection's schema, and the source and sink over it.
pub(super) struct Warehouse(TestConnection);

impl std::ops::Deref for Warehouse {
    type Target = TestConnection;

    fn deref(&self) -> &TestConnection {
        &self.0
    }
}

impl Warehouse {
    pub(super) async fn new() -> Self {
        let database = unique_name("SYNQX_T").to_ascii_uppercase();
        let warehouse = Self(TestConnection {
            name: CONNECTION,
            spec: spec(&database),
            secrets: Secrets::new(
                [],
                [(
                    "SYNQX_SECRET_SF_CREDS__PASSWORD".to_string(),
                    PASSWORD.to_string(),
                )],
            ),
        });
        let session = warehouse.session().await;
        for sql in [
            format!("CREATE DATABASE IF NOT EXISTS {database}"),
            format!("CREATE SCHEMA IF NOT EXISTS {database}.PUBLIC"),
        ] {
            session
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        session.close().await;
        warehouse
    }

    pub(super) async fn session(&self) -> Session {
        let settings = ok(SnowflakeConfig::new(&self.conn()));
        Session::login(Arc::new(settings))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}",
                    emulators::unreachable("fakesnow", &emulators::fakesnow(), e)
                )
            })
    }

    /// A sink that loads with array-bound `INSERT`s, the path of stages this client cannot
    /// upload to (every real account's: their stages want client-side encryption).
    pub(super) fn binding_harness(&self) -> Harness {
        let mut config = ok(Snowflake::config(&self.conn()));
        config.stage_files = false;
        Harness {
            source: ok(Snowflake::source(ok(Snowflake::config(&self.conn())))),
            sink: ok(Snowflake::sink(config)),
        }
    }
}

/// Runs each statement in a session of its own, failing the test on any error.
pub(super) async fn run_sql(w: &Warehouse, statements: &[&str]) {
    let session = w.session().await;
    for sql in statements {
        session
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    session.close().await;
}
