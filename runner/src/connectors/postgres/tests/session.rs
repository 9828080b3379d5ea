//! What every session the connector opens sets, whatever the server, database or role
//! would set instead.

use synqx_testkit::unique_name;

use super::support::Pg;
use crate::connectors::postgres::config::PostgresConfig;
use crate::connectors::postgres::connect::connect;
use crate::connectors::postgres::literal;

#[tokio::test]
async fn a_watermark_literal_reads_back_exactly_when_the_role_turns_escapes_on() {
    let pg = Pg::new("pg_scs").await;
    let role = unique_name("sx_scs");
    pg.sql(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'scs-pw';
         ALTER ROLE \"{role}\" SET standard_conforming_strings = off"
    ))
    .await;
    let login = Pg::on_schema("public".into(), Some(&role), Some("scs-pw"));
    let read = async {
        let config = PostgresConfig::new(&login.conn())?;
        let mut session = connect(&config).await?;
        // A watermark with a backslash before a quote: with escapes on, `\'` would end the
        // literal early and the rest would be read as SQL.
        let watermark = r"2026-01-01 a\' OR true --";
        let query = format!(
            "SELECT current_setting('standard_conforming_strings'), {}::text",
            literal(watermark)
        );
        let row: (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .fetch_one(&mut session)
            .await
            .map_err(|e| crate::error::Error::database("the test session", e))?;
        Ok::<_, crate::error::Error>((row, watermark))
    }
    .await;
    pg.sql(&format!("DROP ROLE \"{role}\"")).await;
    let ((setting, back), watermark) = read.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(setting, "on");
    assert_eq!(back, watermark);
}
