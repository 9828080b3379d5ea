//! The `sql` step body: statements run on a SQL Connection, in one transaction.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use synqx_api::ConnectorKind;

use super::ConnectionRef;
use crate::error::{Error, Result};

/// Runs the statements in order in one transaction; returns the rows they affected.
pub async fn run(conn: &ConnectionRef<'_>, statements: &[String]) -> Result<u64> {
    match conn.kind()? {
        ConnectorKind::Sqlite => {
            let Some(sqlite) = &conn.spec.sqlite else {
                return Err(Error::Config(format!(
                    "Connection \"{}\" has no sqlite block",
                    conn.name
                )));
            };
            let path = conn.path(&sqlite.path);
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .map_err(|e| Error::database(format!("Connection \"{}\"", conn.name), e))?
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::from_secs(30));
            let mut db = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| {
                    Error::database(
                        format!("Connection \"{}\": opening {}", conn.name, path.display()),
                        e,
                    )
                })?;
            let mut tx = db
                .begin()
                .await
                .map_err(|e| Error::database(format!("Connection \"{}\"", conn.name), e))?;
            let mut affected = 0;
            // The statements are the pipeline author's own SQL, run as written.
            for (i, statement) in statements.iter().enumerate() {
                let done = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        Error::database(format!("Connection \"{}\": statements[{i}]", conn.name), e)
                    })?;
                affected += done.rows_affected();
            }
            tx.commit()
                .await
                .map_err(|e| Error::database(format!("Connection \"{}\": commit", conn.name), e))?;
            Ok(affected)
        }
        ConnectorKind::Mysql => super::mysql::sql::run(conn, statements).await,
        ConnectorKind::SqlServer => super::sqlserver::sql::run(conn, statements).await,
        ConnectorKind::Postgres => super::postgres::sql::run(conn, statements).await,
        other => Err(Error::Config(format!(
            "Connection \"{}\": sql steps on {other} cannot run in this version of synqx (available: mysql, postgres, sqlite, sqlserver)",
            conn.name
        ))),
    }
}
