//! Reading a table or the step's query with binary `COPY … TO STDOUT`, decoded straight into
//! Arrow batches cut to the byte budget.
//!
//! The read runs in one `REPEATABLE READ READ ONLY` transaction, so the column types read
//! from the catalog and the rows the COPY sends come from one snapshot. A query's column
//! types come from a temporary view of it, created in that transaction and gone with it. The
//! incremental cursor is pushed down as `"cursor" > '<watermark>'::<its type>`, so the server
//! compares timestamps as timestamps and numbers as numbers.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor};
use tokio::sync::{mpsc, oneshot};

use super::catalog::{self, Column};
use super::config::PostgresConfig;
use super::connect::{connect, database, sqlstate};
use super::copy_out::CopyOutDecoder;
use super::ddl::{self, After, Selected};
use super::types::{PgType, arrow_type};
use super::{Table, quote};
use crate::connectors::sql::names::unique_suffix;
use crate::engine::cursor::FIX_WATERMARK;
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

/// Batches decoded ahead of the consumer: the channel holds at most this many.
const AHEAD: usize = 1;

/// Reads tables and queries of a PostgreSQL database.
pub struct PostgresSource {
    pub(super) settings: PostgresConfig,
}

#[async_trait]
impl Source for PostgresSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = self.settings.clone();
        let table = Table::parse(&settings.connection, &request.spec.asset.fqn)?;
        let query = request.spec.query_text().map(str::to_string);
        let read = Read {
            at: match &query {
                Some(_) => format!("{}, query of asset \"{table}\"", settings.at()),
                None => settings.at_table(&table),
            },
            settings,
            table,
            query,
            after: request.filter.clone().map(|f| (f.column, f.after)),
            batch_bytes: request.batch_bytes,
            parallelism: request.spec.parallelism.unwrap_or(1).max(1) as usize,
        };
        let (started_tx, started_rx) = oneshot::channel();
        let (batches_tx, batches_rx) = mpsc::channel::<Result<RecordBatch>>(AHEAD);
        let at = read.at.clone();
        let task = tokio::spawn(async move {
            read.run(started_tx, batches_tx).await;
        });
        // The task reports the schema once the COPY has started, or why it could not start.
        let schema = match started_rx.await {
            Ok(started) => started?,
            // It ended without a word: it panicked.
            Err(_) => {
                return Err(match task.await {
                    Err(e) => Error::internal(format!("{at}: the reading task"), e),
                    Ok(()) => Error::protocol(at, "the reading task ended before it started"),
                });
            }
        };
        Ok(SchemaStream::received(
            schema,
            batches_rx,
            task,
            format!("{at}: the reading task"),
        ))
    }
}

/// One read, owning its connection for its whole life.
pub(super) struct Read {
    pub(super) settings: PostgresConfig,
    /// `Connection "c", table "s.t"`, or the query's equivalent.
    pub(super) at: String,
    pub(super) table: Table,
    pub(super) query: Option<String>,
    /// Cursor column and watermark.
    pub(super) after: Option<(String, String)>,
    pub(super) batch_bytes: usize,
    /// Connections reading a table at once (`source.parallelism`).
    pub(super) parallelism: usize,
}

pub(super) type Started = oneshot::Sender<Result<arrow::datatypes::SchemaRef>>;

/// What a read selects, decided from the catalog in the read's transaction.
pub(super) struct Plan {
    selected: Vec<Selected>,
    from: String,
    after: Option<After>,
    /// Each column's name and the type its binary COPY data has.
    decoded: Vec<(String, PgType)>,
}

impl Plan {
    /// The COPY statement, for the whole relation or the rows `range` selects.
    pub(super) fn sql(&self, range: Option<&str>) -> String {
        ddl::copy_out(&self.selected, &self.from, self.after.as_ref(), range)
    }

    pub(super) fn decoder(&self, batch_bytes: usize, at: String) -> Result<CopyOutDecoder> {
        CopyOutDecoder::new(&self.decoded, batch_bytes, at)
    }
}

impl Read {
    async fn run(self, started: Started, batches: mpsc::Sender<Result<RecordBatch>>) {
        let mut conn = match connect(&self.settings).await {
            Ok(conn) => conn,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let plan = match self.prepare(&mut conn).await {
            Ok(plan) => plan,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        if self.parallelism > 1 && self.query.is_none() {
            super::parallel::run(std::sync::Arc::new(self), conn, plan, started, batches).await;
            return;
        }
        let (sql, mut decoder) = match plan.decoder(self.batch_bytes, self.at.clone()) {
            Ok(decoder) => (plan.sql(None), decoder),
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let chunks = match conn.copy_out_raw(&sql).await {
            Ok(chunks) => chunks,
            Err(e) => {
                let _ = started.send(Err(self.explain(e)));
                return;
            }
        };
        if started.send(Ok(decoder.schema())).is_err() {
            return;
        }
        if self.stream(chunks, &mut decoder, &batches).await {
            // A read-only transaction has nothing to commit; rolling back also drops the
            // view of a query.
            let _ = conn.execute("ROLLBACK").await;
        }
        // Otherwise the COPY did not finish: dropping the connection ends it on the server.
    }

    /// Begins the transaction and learns the columns and how to read them.
    async fn prepare(&self, conn: &mut PgConnection) -> Result<Plan> {
        let at = &self.at;
        let columns = match &self.query {
            None => {
                self.execute(
                    conn,
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".into(),
                )
                .await?;
                catalog::table_columns(conn, &self.table)
                    .await
                    .map_err(|e| database(&self.settings, format!("{at}: reading its columns"), e))?
                    .ok_or_else(|| {
                        Error::protocol(
                            at.clone(),
                            format!(
                                "the source table does not exist in database \"{}\" (42P01); create it or fix asset.fqn (names are case-sensitive as written)",
                                self.settings.database
                            ),
                        )
                    })?
            }
            Some(query) => {
                // A view needs a writable transaction; it is switched to read-only right after.
                self.execute(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ".into())
                    .await?;
                let view = format!("synqx_query_{}", unique_suffix());
                self.execute(
                    conn,
                    format!(
                        "CREATE TEMP VIEW {} AS {}",
                        quote(&view),
                        query.trim().trim_end_matches(';')
                    ),
                )
                .await?;
                self.execute(conn, "SET TRANSACTION READ ONLY".into())
                    .await?;
                let oid = catalog::relation(conn, &format!("pg_temp.{}", quote(&view)))
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        Error::protocol(at.clone(), "the temporary view of the query vanished")
                    })?;
                catalog::columns(conn, oid).await.map_err(|e| {
                    database(&self.settings, format!("{at}: reading its columns"), e)
                })?
            }
        };
        let after = self.after(&columns)?;
        let text = PgType::builtin("text")
            .ok_or_else(|| Error::Config("the PostgreSQL type map has no text type".into()))?;
        let mut selected = Vec::with_capacity(columns.len());
        let mut decoded = Vec::with_capacity(columns.len());
        for column in &columns {
            let as_text = arrow_type(&column.pg).is_none();
            selected.push(Selected {
                name: column.name.clone(),
                as_text,
            });
            let pg = if as_text {
                text.clone()
            } else {
                column.pg.clone()
            };
            decoded.push((column.name.clone(), pg));
        }
        let from = match &self.query {
            Some(query) => ddl::subquery(query),
            None => self.table.sql(),
        };
        Ok(Plan {
            selected,
            from,
            after,
            decoded,
        })
    }

    /// The pushed-down cursor filter, in the cursor column's own type.
    fn after(&self, columns: &[Column]) -> Result<Option<After>> {
        let Some((cursor, watermark)) = &self.after else {
            return Ok(None);
        };
        let column = columns.iter().find(|c| &c.name == cursor).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            let of = match &self.query {
                Some(_) => "the query".to_string(),
                None => format!("table \"{}\"", self.table),
            };
            Error::Config(format!(
                "{}: incremental cursor column \"{cursor}\" is not a column of {of} (columns: {}); names are case-sensitive",
                self.settings.at(),
                names.join(", ")
            ))
        })?;
        Ok(Some(After {
            column: column.name.clone(),
            watermark: watermark.clone(),
            sql_type: column.pg.name.clone(),
        }))
    }

    /// Decodes the COPY data into batches and sends them on; whether the COPY was read to
    /// its end.
    pub(super) async fn stream(
        &self,
        mut chunks: futures::stream::BoxStream<'_, sqlx::Result<bytes::Bytes>>,
        decoder: &mut CopyOutDecoder,
        batches: &mpsc::Sender<Result<RecordBatch>>,
    ) -> bool {
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let pushed = match chunk {
                Ok(chunk) => decoder.push(&chunk, &mut out),
                Err(e) => Err(self.explain(e)),
            };
            for batch in out.drain(..) {
                // A failed send means the consumer is gone: the step failed or was cancelled.
                if batches.send(Ok(batch)).await.is_err() {
                    return false;
                }
            }
            if let Err(e) = pushed {
                let _ = batches.send(Err(e)).await;
                return false;
            }
        }
        let last = match decoder.finish() {
            Ok(None) => return true,
            Ok(Some(batch)) => Ok(batch),
            Err(e) => Err(e),
        };
        let failed = last.is_err();
        batches.send(last).await.is_ok() && !failed
    }

    pub(super) async fn execute(&self, conn: &mut PgConnection, sql: String) -> Result<()> {
        conn.execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| self.explain(e))
    }

    /// A server error of the read, with what to do for the common ones.
    pub(super) fn explain(&self, e: sqlx::Error) -> Error {
        let user = &self.settings.user;
        let hint = match sqlstate(&e).as_deref() {
            Some("42501") => format!(
                "; user \"{user}\" lacks the SELECT privilege: GRANT SELECT ON {} TO {} (and USAGE on its schema)",
                self.table.sql(),
                quote(user)
            ),
            Some("42P01") if self.query.is_some() => {
                "; a table the query reads does not exist".to_string()
            }
            Some("22007" | "22008" | "22P02" | "22003") if self.after.is_some() => {
                format!(
                    "; the stored watermark does not convert to the type of the cursor column ({FIX_WATERMARK})"
                )
            }
            _ => String::new(),
        };
        database(&self.settings, self.at.clone(), e).map_detail(|detail| format!("{detail}{hint}"))
    }
}
