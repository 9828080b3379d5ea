//! Overwrite: the staged rows replace the table's at one moment, so readers see the old rows
//! or the new ones, never neither, and a failed or killed load leaves the old ones.
//!
//! Snowflake's way is a swap: `CREATE TABLE <fresh> LIKE <table> COPY GRANTS`, fill `<fresh>`
//! from the staging table, `ALTER TABLE <table> SWAP WITH <fresh>`, then drop `<fresh>`, which
//! by then holds the old rows. A swap exchanges the two tables' names and nothing else: each
//! table keeps its own grants. So the table the name points to afterwards is the new one, with
//! the grants `COPY GRANTS` copied when the load began (every privilege but OWNERSHIP; the
//! schema's future grants are not applied to it), owned by the Connection's role; a grant made
//! on the table while the load ran went with the old table. Snowflake swaps only for a role
//! that owns both tables, so the Connection's role must own the table.
//!
//! A server that refuses the swap as a syntax error (code 001003 naming `SWAP` as the token it
//! cannot parse, as fakesnow 0.12.1 answers) gets the rows replaced in one transaction instead
//! (`BEGIN; DELETE; INSERT … SELECT …; COMMIT`), and the step's note says so. Only that answer
//! decides it; any other failure of the swap fails the load and leaves the old rows.
//! `<fresh>` is named like the staging table (`SYNQX_STAGE_<expiry>_<n>`), so what a killed
//! load leaves of it is dropped by a later load as the staging table is.

use arrow::datatypes::Field;

use super::connect::{Failure, Session, server_text};
use super::sql::{Table, create_like, delete_all, drop_table, insert_from_staging, swap};
use crate::engine::Counters;

/// Snowflake's code for a statement it cannot parse.
const SYNTAX_ERROR: &str = "001003";

/// Where the staged rows go and through which tables.
pub struct Overwrite<'a> {
    pub session: &'a Session,
    /// The destination as messages name it.
    pub here: &'a str,
    pub table: &'a Table,
    pub staging: &'a Table,
    /// The table filled and swapped in, beside `table`.
    pub fresh: &'a Table,
    pub written: &'a [Field],
}

impl Overwrite<'_> {
    /// Replaces the table's rows with the staged ones: by swap, or in one transaction where
    /// the server refuses the swap's syntax.
    pub async fn run(&self, counters: &Counters) -> Result<(), Failure> {
        let Self {
            session,
            table,
            staging,
            fresh,
            written,
            ..
        } = *self;
        session.query(&create_like(fresh, table), &[]).await?;
        let filled = session
            .query_async(&insert_from_staging(fresh, staging, written), &[])
            .await;
        // Whether a failure is the swap's own (and not the fill's).
        let (swapped, at_swap) = match filled {
            Ok(_) => (session.query(&swap(table, fresh), &[]).await, true),
            Err(e) => (Err(e), false),
        };
        // Before a swap `fresh` holds new rows, after it the old ones: dropped either way.
        let dropped = session.query(&drop_table(fresh), &[]).await;
        match swapped {
            Ok(_) => {
                if let Err(e) = dropped {
                    counters.note(format!(
                        "{}: the old rows, swapped out to \"{}\", were not dropped (a later load drops them once this step's deadline has passed): {}",
                        self.here,
                        fresh.name,
                        super::error(session.settings(), e)
                    ));
                }
                Ok(())
            }
            Err(e) if at_swap && refuses_swap(&e) => {
                counters.note(format!(
                    "{}: the server refused `ALTER TABLE … SWAP WITH` as a syntax error ({}), so the overwrite replaced the rows with DELETE and INSERT in one transaction",
                    self.here,
                    server_text(&e).and_then(|t| t.lines().next()).unwrap_or_default()
                ));
                self.in_one_transaction().await
            }
            Err(mut e) => {
                // Snowflake's 003xxx are access control errors.
                if at_swap && e.code.as_deref().is_some_and(|c| c.starts_with("003")) {
                    e.message.push_str(
                        " (an overwrite swaps the table in: the Connection's role must own the table)",
                    );
                }
                Err(e)
            }
        }
    }

    /// `BEGIN; DELETE; INSERT … SELECT …; COMMIT`, rolled back when a statement fails.
    async fn in_one_transaction(&self) -> Result<(), Failure> {
        let Self {
            session,
            table,
            staging,
            written,
            ..
        } = *self;
        session.query("BEGIN", &[]).await?;
        let replaced = async {
            session.query(&delete_all(table), &[]).await?;
            session
                .query_async(&insert_from_staging(table, staging, written), &[])
                .await?;
            session.query("COMMIT", &[]).await
        }
        .await;
        if replaced.is_err() {
            let _ = session.query("ROLLBACK", &[]).await;
        }
        replaced.map(drop)
    }
}

/// Whether a failed swap is the server refusing `SWAP WITH` as syntax (a server without it),
/// rather than this swap failing: Snowflake's code 001003 naming `SWAP` as the token it could
/// not parse (quoted: `unexpected 'SWAP'`, `at or near "SWAP"`), not merely in the statement a
/// parser quotes back.
fn refuses_swap(failure: &Failure) -> bool {
    failure.code.as_deref() == Some(SYNTAX_ERROR)
        && server_text(failure)
            .is_some_and(|text| text.contains("'SWAP'") || text.contains("\"SWAP\""))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use serde_json::{Value, json};
    use synqx_testkit::http::Reply;

    use super::*;
    use crate::connectors::http_api::Kind;
    use crate::connectors::snowflake::query::tests::session;

    const TABLE: &str = "\"DB\".\"SALES\".\"ORDERS\"";
    const STAGING: &str = "\"DB\".\"SALES\".\"SYNQX_STAGE_1900000001_A_B_0\"";
    const FRESH: &str = "\"DB\".\"SALES\".\"SYNQX_STAGE_1900000001_A_B_1\"";

    /// The answer to a statement that changed rows (the JSON result a DML statement returns).
    fn done() -> Reply {
        Reply::json(
            200,
            json!({"data": {"queryId": "01b2", "rowtype": [{"name": "number of rows inserted", "type": "fixed"}],
                            "queryResultFormat": "json", "rowset": [["2"]]},
                   "code": null, "message": null, "success": true}),
        )
    }

    /// What fakesnow 0.12.1 answers to `ALTER TABLE … SWAP WITH …`.
    fn fakesnow_refusal() -> Reply {
        Reply::json(
            200,
            json!({"data": {"errorCode": "001003", "sqlState": "42000"}, "code": "001003",
                   "message": format!("001003 (42000): Parser Error: syntax error at or near \"SWAP\"\n\nLINE 1: ALTER TABLE {TABLE} SWAP WITH {FRESH}\n{:38}^^^^", ""),
                   "success": false}),
        )
    }

    /// The statements and bindings an overwrite sends (after the login), against `replies`,
    /// with its result and the step's note.
    async fn overwrite(
        replies: Vec<Reply>,
    ) -> (Vec<(String, bool)>, Result<(), Failure>, Option<String>) {
        let (session, stub) = session(replies).await;
        let table = Table::parse("sales.orders", "DB", "PUBLIC").unwrap();
        let (staging, fresh) = (
            table.beside("SYNQX_STAGE_1900000001_A_B_0"),
            table.beside("SYNQX_STAGE_1900000001_A_B_1"),
        );
        let id = Field::new("id", DataType::Int64, false);
        let counters = Counters::default();
        let result = Overwrite {
            session: &session,
            here: "Connection \"sf\", table \"DB.SALES.ORDERS\"",
            table: &table,
            staging: &staging,
            fresh: &fresh,
            written: &[id],
        }
        .run(&counters)
        .await;
        let mut sent = Vec::new();
        for (i, request) in stub.requests().iter().enumerate().skip(1) {
            // Each statement is one query request of the SQL API as the drivers send it, in
            // order, with the session token and no bindings.
            assert_eq!(request.method, "POST");
            assert_eq!(request.path(), "/queries/v1/query-request");
            assert_eq!(
                request.header("Authorization"),
                Some("Snowflake Token=\"t1\"")
            );
            let body = request.json();
            assert_eq!(body["sequenceId"], i as u64, "{body}");
            assert_eq!(body.get("bindings"), None, "{body}");
            let sql = body["sqlText"].as_str().unwrap().to_string();
            sent.push((sql, body["asyncExec"] == Value::Bool(true)));
        }
        (sent, result, counters.notes())
    }

    fn statements(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(s, a)| (s.to_string(), *a)).collect()
    }

    #[tokio::test]
    async fn an_overwrite_fills_a_copy_of_the_table_and_swaps_it_in() {
        let (sent, result, note) = overwrite(vec![done(), done(), done(), done()]).await;
        result.unwrap();
        assert_eq!(
            sent,
            statements(&[
                (
                    &format!("CREATE TABLE {FRESH} LIKE {TABLE} COPY GRANTS"),
                    false
                ),
                (
                    &format!(
                        "INSERT INTO {FRESH} (\"ID\") SELECT \"ID\" FROM {STAGING} ORDER BY _SYNQX_ROW"
                    ),
                    true
                ),
                (&format!("ALTER TABLE {TABLE} SWAP WITH {FRESH}"), false),
                (&format!("DROP TABLE IF EXISTS {FRESH}"), false),
            ])
        );
        assert_eq!(note, None);
    }

    #[tokio::test]
    async fn a_server_that_cannot_parse_swap_gets_the_rows_replaced_in_one_transaction() {
        let (sent, result, note) = overwrite(vec![
            done(),
            done(),
            fakesnow_refusal(),
            done(),
            done(),
            done(),
            done(),
            done(),
        ])
        .await;
        result.unwrap();
        assert_eq!(
            sent[3..],
            statements(&[
                (&format!("DROP TABLE IF EXISTS {FRESH}"), false),
                ("BEGIN", false),
                (&format!("DELETE FROM {TABLE}"), false),
                (
                    &format!(
                        "INSERT INTO {TABLE} (\"ID\") SELECT \"ID\" FROM {STAGING} ORDER BY _SYNQX_ROW"
                    ),
                    true
                ),
                ("COMMIT", false),
            ])
        );
        assert_eq!(sent[2].0, format!("ALTER TABLE {TABLE} SWAP WITH {FRESH}"));
        assert_eq!(
            note.as_deref(),
            Some(
                "Connection \"sf\", table \"DB.SALES.ORDERS\": the server refused `ALTER TABLE … SWAP WITH` as a syntax error (001003 (42000): Parser Error: syntax error at or near \"SWAP\"), so the overwrite replaced the rows with DELETE and INSERT in one transaction"
            )
        );
    }

    #[tokio::test]
    async fn a_swap_that_fails_otherwise_fails_the_load_and_leaves_the_table() {
        // What Snowflake answers a role that does not own the table.
        let refused = Reply::json(
            200,
            json!({"data": {"errorCode": "003001", "sqlState": "42501"}, "code": "003001",
                   "message": "SQL access control error:\nInsufficient privileges to operate on table 'ORDERS'",
                   "success": false}),
        );
        let (sent, result, note) = overwrite(vec![done(), done(), refused, done()]).await;
        let e = result.unwrap_err();
        assert_eq!(e.kind, Kind::Statement);
        assert_eq!(
            e.message,
            format!(
                "Connection \"sf\": `ALTER TABLE {TABLE} SWAP WITH {FRESH}`: Snowflake error 003001: SQL access control error:\nInsufficient privileges to operate on table 'ORDERS' (an overwrite swaps the table in: the Connection's role must own the table)"
            )
        );
        // The filled copy is dropped; nothing touches the table.
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[3].0, format!("DROP TABLE IF EXISTS {FRESH}"));
        assert_eq!(note, None);
    }

    #[tokio::test]
    async fn a_failed_fill_drops_the_copy_and_never_swaps() {
        let broken = Reply::json(
            200,
            json!({"data": {"errorCode": "100038", "sqlState": "22018"}, "code": "100038",
                   "message": "Numeric value 'x' is not recognized", "success": false}),
        );
        let (sent, result, _) = overwrite(vec![done(), broken, done()]).await;
        assert_eq!(result.unwrap_err().code.as_deref(), Some("100038"));
        let sql: Vec<&str> = sent.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(sql[2..], [format!("DROP TABLE IF EXISTS {FRESH}").as_str()]);
    }

    #[test]
    fn only_a_syntax_error_naming_swap_falls_back() {
        let failure = |code: Option<&str>, text: &str| Failure {
            kind: Kind::Statement,
            code: code.map(str::to_string),
            message: format!(
                "Connection \"sf\": `ALTER TABLE … SWAP WITH …`: Snowflake error {}: {text}",
                code.unwrap_or("(no code)")
            ),
        };
        // fakesnow's answer, and the form of Snowflake's own syntax errors.
        assert!(refuses_swap(&failure(
            Some("001003"),
            "001003 (42000): Parser Error: syntax error at or near \"SWAP\"\n\nLINE 1: ALTER TABLE \"T\" SWAP WITH \"N\""
        )));
        assert!(refuses_swap(&failure(
            Some("001003"),
            "SQL compilation error:\nsyntax error line 1 at position 18 unexpected 'SWAP'."
        )));
        // A syntax error elsewhere (the statement quoted back names SWAP, the error does not),
        // or another error of the swap.
        assert!(!refuses_swap(&failure(
            Some("001003"),
            "Parser Error: syntax error at or near \"TABEL\"\n\nLINE 1: ALTER TABEL \"T\" SWAP WITH \"N\""
        )));
        assert!(!refuses_swap(&failure(
            Some("001003"),
            "SQL compilation error:\nsyntax error line 1 at position 6 unexpected 'TABEL'."
        )));
        assert!(!refuses_swap(&failure(
            Some("003001"),
            "Insufficient privileges to operate on table 'SWAP'"
        )));
        assert!(!refuses_swap(&failure(None, "'SWAP'")));
        assert!(!refuses_swap(&Failure::protocol("001003 SWAP")));
    }
}
