//! What a `sql` transform may run: one query over the step's input, nothing else. Its text is
//! written by whoever writes the Pipeline and runs inside the step's pod, next to the pod's
//! credentials and service-account token, so DataFusion plans it with DDL (`CREATE EXTERNAL
//! TABLE … LOCATION '/var/run/secrets/…'`), DML (`COPY … TO`, `INSERT`) and statements (`SET`)
//! refused, and the session has no object store to reach files through.

use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

/// Plans `query` as a read of the session's tables; anything else is
/// [`Refusal::Refused`], naming what it asked for.
pub async fn plan(ctx: &SessionContext, query: &str) -> Result<DataFrame, Refusal> {
    if let Some(what) = not_a_query(query) {
        return Err(Refusal::Refused(what));
    }
    // The plan check below catches what the parse above let through (a statement inside a
    // query, a kind the parser reads as a query).
    let only_queries = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    ctx.sql_with_options(query, only_queries)
        .await
        .map_err(|e| match refused(&e) {
            Some(what) => Refusal::Refused(what),
            None => Refusal::Other(e),
        })
}

/// Why a `sql` transform's text was not planned.
pub enum Refusal {
    /// It asks for something other than a query: the kind of statement.
    Refused(String),
    /// It does not plan (syntax, unknown column).
    Other(DataFusionError),
}

impl Refusal {
    /// The message for a refused statement.
    pub fn message(what: &str) -> String {
        format!(
            "{what} is not allowed: a sql transform runs one query over its input (SELECT … FROM input) and cannot create tables, read or write files, or change settings"
        )
    }
}

/// What the text asks for when it is not exactly one query; `None` for one query, and for
/// text that does not parse (planning then says where).
fn not_a_query(text: &str) -> Option<String> {
    let statements = DFParser::parse_sql(text).ok()?;
    if statements.len() > 1 {
        return Some("more than one statement".into());
    }
    let statement = statements.front()?;
    Some(match statement {
        Statement::Statement(s) if matches!(**s, SqlStatement::Query(_)) => return None,
        Statement::Statement(s) => {
            let text = s.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            match words.as_slice() {
                [first, second] if ["CREATE", "DROP", "ALTER"].contains(first) => {
                    format!("{first} {second}")
                }
                [first, ..] => first.to_string(),
                [] => "an empty statement".into(),
            }
        }
        Statement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        Statement::CopyTo(_) => "COPY … TO".into(),
        Statement::Explain(_) => "EXPLAIN".into(),
        Statement::Reset(_) => "RESET".into(),
    })
}

/// The statement kind DataFusion's plan check refused, from its error.
fn refused(e: &DataFusionError) -> Option<String> {
    let DataFusionError::Plan(said) = e else {
        return None;
    };
    [
        "DDL not supported: ",
        "DML not supported: ",
        "Statement not supported: ",
    ]
    .iter()
    .find_map(|prefix| said.strip_prefix(prefix))
    .map(|what| what.trim().to_string())
}

/// Takes away the session's file system: DataFusion registers the local file system for
/// `file://` in every new runtime, and a step's transforms never read files.
pub fn without_files(ctx: &SessionContext) -> Result<(), DataFusionError> {
    let local = ObjectStoreUrl::local_filesystem();
    ctx.runtime_env().deregister_object_store(local.as_ref())?;
    Ok(())
}
