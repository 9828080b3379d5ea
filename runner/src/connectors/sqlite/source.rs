//! Reading a table or a query: the schema from declared types before the first row, the
//! incremental cursor pushed down into SQL, rows streamed into batches.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{
    Arguments, AssertSqlSafe, Column, Executor, SqlSafeStr, Sqlite, Statement, Transaction,
    TypeInfo,
};

use super::batch::{Origin, RowBatches};
use super::cell::Cell;
use super::connect::Database;
use super::types::{
    arrow_type, format_date, format_time, format_timestamp, parse_date, parse_time,
    parse_timestamp, type_name,
};
use super::{qualified, quote, same_name, table_columns};
use crate::connectors::sql::names::unique_suffix;
use crate::engine::cursor::FIX_WATERMARK;
use crate::engine::{CursorFilter, ReadRequest, SchemaStream, Source};
use crate::error::{Context, Error, Result};

/// Rows read ahead of the batch being built.
const ROWS_IN_FLIGHT: usize = 256;

/// Reads tables and queries of a SQLite database.
pub struct SqliteSource {
    pub(super) db: Database,
}

#[async_trait]
impl Source for SqliteSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let spec = &request.spec;
        let table = self.db.table_name(&spec.asset.fqn)?;
        let pool = self.db.pool().await?;
        // One read transaction holds the snapshot the schema is taken from and the rows are
        // read in. Reading the schema table first makes the connection notice schema changes
        // committed since it last looked: sqlx keeps the columns a statement had when first
        // prepared, so a statement prepared against an outdated schema would mismatch its rows.
        let mut tx = pool
            .begin()
            .await
            .context(|| format!("{}: starting a read transaction", self.db.at(&table)))?;
        sqlx::query("SELECT count(*) FROM \"main\".sqlite_master")
            .fetch_one(&mut *tx)
            .await
            .context(|| format!("{}: reading the schema", self.db.at(&table)))?;
        let query = spec.query_text();
        let at = match query {
            Some(_) => format!(
                "Connection \"{}\", query of asset \"{table}\"",
                self.db.config.connection
            ),
            None => self.db.at(&table),
        };
        let mut columns = match query {
            Some(q) => query_columns(&mut tx, q)
                .await
                .context(|| format!("{at}: preparing the query"))?,
            None => {
                let columns = table_columns(&mut *tx, "main", &table)
                    .await
                    .context(|| format!("{at}: reading its columns"))?;
                if columns.is_empty() {
                    return Err(Error::Config(format!("{at}: the table does not exist")));
                }
                // Generated columns are read like any other; hidden columns of virtual tables
                // are not part of `SELECT *` either.
                columns
                    .into_iter()
                    .filter(|c| c.hidden != 1)
                    .map(|c| (c.name, arrow_type(&c.declared)))
                    .collect()
            }
        };
        for (name, type_text) in &spec.columns {
            let index = columns
                .iter()
                .position(|(c, _)| c == name)
                .or_else(|| columns.iter().position(|(c, _)| same_name(c, name)));
            let Some(index) = index else {
                return Err(Error::Config(format!(
                    "{at}: columns override \"{name}\" is not a column (columns: {})",
                    column_list(&columns)
                )));
            };
            let data_type = crate::types::parse_arrow(type_text)
                .map_err(|e| Error::Config(format!("{at}: columns override \"{name}\": {e}")))?;
            columns[index].1 = Some(data_type);
        }

        let mut sql = match query {
            Some(q) => q.to_string(),
            None => {
                let list = columns
                    .iter()
                    .map(|(name, _)| quote(name))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("SELECT {list} FROM {}", qualified(&table))
            }
        };
        let mut args = SqliteArguments::default();
        let mut exact_filter = None;
        if let Some(filter) = &request.filter {
            let Some((_, data_type)) = columns
                .iter()
                .find(|(name, _)| same_name(name, &filter.column))
            else {
                return Err(Error::Config(format!(
                    "{at}: incremental cursor column \"{}\" is not a column (columns: {})",
                    filter.column,
                    column_list(&columns)
                )));
            };
            let pushed = pushdown(filter, data_type.as_ref())
                .map_err(|e| Error::Config(format!("{at}: {e}")))?;
            sql = match query {
                Some(q) => format!("SELECT * FROM (\n{q}\n) WHERE {}", pushed.condition),
                None => format!("{sql} WHERE {}", pushed.condition),
            };
            exact_filter = pushed.exact.then(|| filter.clone());
            pushed
                .bind(&mut args)
                .map_err(|e| Error::protocol(format!("{at}: binding the cursor"), e.to_string()))?;
        }

        let mut rows = stream_rows(tx, sql, args);
        let pending = if columns.iter().any(|(_, t)| t.is_none()) {
            rows.try_next()
                .await
                .context(|| format!("{at}: reading the first row"))?
        } else {
            None
        };
        let fields: Vec<Field> = columns
            .into_iter()
            .enumerate()
            .map(|(i, (name, data_type))| {
                let data_type = data_type.unwrap_or_else(|| {
                    pending
                        .as_ref()
                        .and_then(|row| Cell::read(row, i).ok())
                        .map_or(DataType::Utf8, Cell::inferred_type)
                });
                Field::new(name, data_type, true)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let origin = Origin {
            location: at,
            rejects: request.rejects.clone(),
            batch_bytes: request.batch_bytes.max(1),
            exact_filter,
        };
        let batches = RowBatches::new(rows, pending, schema.clone(), origin)?;
        Ok(SchemaStream::new(schema, batches.into_stream()))
    }
}

fn column_list(columns: &[(String, Option<DataType>)]) -> String {
    columns
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names and declared types of a query's columns. A temporary view keeps the declared type
/// text of every column (`DECIMAL TEXT(12,2)`, `TIMESTAMPTZ`), which sqlx's statement
/// description reduces to a few classes; statements a view cannot hold fall back to that.
async fn query_columns(
    conn: &mut SqliteConnection,
    query: &str,
) -> sqlx::Result<Vec<(String, Option<DataType>)>> {
    let view = format!("synqx_probe_{}", unique_suffix());
    let create = format!("CREATE TEMP VIEW {} AS\n{query}\n", quote(&view));
    if sqlx::query(AssertSqlSafe(create))
        .execute(&mut *conn)
        .await
        .is_ok()
    {
        let columns = table_columns(&mut *conn, "temp", &view).await;
        let drop = format!("DROP VIEW IF EXISTS \"temp\".{}", quote(&view));
        sqlx::query(AssertSqlSafe(drop)).execute(&mut *conn).await?;
        return Ok(columns?
            .into_iter()
            .map(|c| (c.name, arrow_type(&c.declared)))
            .collect());
    }
    let statement = (&mut *conn)
        .prepare(AssertSqlSafe(query.to_string()).into_sql_str())
        .await?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| {
            let data_type = match c.type_info().name() {
                "INTEGER" => Some(DataType::Int64),
                "REAL" => Some(DataType::Float64),
                "TEXT" => Some(DataType::Utf8),
                "BLOB" => Some(DataType::Binary),
                other => arrow_type(other).filter(|_| other != "NULL" && other != "NUMERIC"),
            };
            (c.name().to_string(), data_type)
        })
        .collect())
}

/// Rows of a statement run inside `tx`, from a task that owns the transaction (a stream
/// borrowing it could not outlive `read`). The channel keeps a few rows in flight; when the
/// stream is dropped, the task stops at its next row and the read transaction ends.
fn stream_rows(
    mut tx: Transaction<'static, Sqlite>,
    sql: String,
    args: SqliteArguments,
) -> BoxStream<'static, sqlx::Result<SqliteRow>> {
    // `None` marks the last row, so a task that stopped early is not taken for the end.
    let (sender, receiver) = tokio::sync::mpsc::channel(ROWS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut rows = sqlx::query_with(AssertSqlSafe(sql), args).fetch(&mut *tx);
        while let Some(row) = rows.next().await {
            let failed = row.is_err();
            if sender.send(Some(row)).await.is_err() || failed {
                return;
            }
        }
        let _ = sender.send(None).await;
    });
    Box::pin(futures::stream::unfold(
        Some(receiver),
        |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(Some(Ok(row))) => Some((Ok(row), Some(receiver))),
                Some(Some(Err(e))) => Some((Err(e), None)),
                Some(None) => None,
                None => Some((
                    Err(sqlx::Error::Protocol(
                        "the task reading rows stopped before the last row".into(),
                    )),
                    None,
                )),
            }
        },
    ))
}

/// The bound of an incremental read, typed like its column.
enum BoundValue {
    Int(i64),
    Real(f64),
    Text(String),
}

/// A pushed-down cursor condition.
struct Pushdown {
    condition: String,
    value: BoundValue,
    /// Whether the SQL comparison may let through rows that are not above the bound in the
    /// column's Arrow type (decimals compared as REAL, times compared as text), so batches are
    /// checked again.
    exact: bool,
}

impl Pushdown {
    fn bind(self, args: &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError> {
        match self.value {
            BoundValue::Int(v) => Arguments::add(args, v),
            BoundValue::Real(v) => Arguments::add(args, v),
            BoundValue::Text(v) => Arguments::add(args, v),
        }
    }
}

/// A watermark that does not convert to the type of its cursor column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "watermark `{watermark}` does not convert to the type {type_name} of cursor column \"{column}\" ({})",
    FIX_WATERMARK
)]
struct CursorError {
    watermark: String,
    type_name: String,
    column: String,
}

/// `cursor > bound`, with the bound converted to the column's type so SQLite compares numbers
/// with numbers and stored text with text of the same form.
fn pushdown(filter: &CursorFilter, data_type: Option<&DataType>) -> Result<Pushdown, CursorError> {
    let column = quote(&filter.column);
    let after = filter.after.trim();
    let bad = |t: &DataType| CursorError {
        watermark: after.to_string(),
        type_name: type_name(t),
        column: filter.column.clone(),
    };
    let compare = |value| Pushdown {
        condition: format!("{column} > ?"),
        value,
        exact: false,
    };
    let as_text = |text: Option<String>, t: &DataType| {
        let text = text.ok_or_else(|| bad(t))?;
        Ok(Pushdown {
            condition: format!("{column} > ?"),
            value: BoundValue::Text(text),
            exact: true,
        })
    };
    let Some(t) = data_type else {
        return Ok(compare(
            number(after).unwrap_or_else(|| BoundValue::Text(after.to_string())),
        ));
    };
    match t {
        t if t.is_integer() || t.is_floating() => Ok(compare(number(after).ok_or_else(|| bad(t))?)),
        DataType::Boolean => match after.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(compare(BoundValue::Int(1))),
            "false" | "0" => Ok(compare(BoundValue::Int(0))),
            _ => Err(bad(t)),
        },
        DataType::Decimal128(..) => {
            // REAL keeps about 15 digits: compare a little below the bound, then exactly in
            // Arrow.
            let v: f64 = after.parse().map_err(|_| bad(t))?;
            Ok(Pushdown {
                condition: format!("CAST({column} AS REAL) >= ?"),
                value: BoundValue::Real(v - v.abs() * 1e-12 - f64::MIN_POSITIVE),
                exact: true,
            })
        }
        DataType::Date32 => as_text(parse_date(after).and_then(format_date), t),
        DataType::Time64(_) => as_text(parse_time(after).and_then(format_time), t),
        DataType::Timestamp(_, tz) => as_text(
            parse_timestamp(after).and_then(|v| format_timestamp(v, tz.is_some())),
            t,
        ),
        _ => Ok(compare(BoundValue::Text(after.to_string()))),
    }
}

fn number(text: &str) -> Option<BoundValue> {
    match text.parse::<i64>() {
        Ok(v) => Some(BoundValue::Int(v)),
        Err(_) => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(BoundValue::Real),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sql::tests::cursor;

    #[test]
    fn bounds_take_the_column_type() {
        let p =
            pushdown(&cursor("c", "41"), Some(&DataType::Int16)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.condition, "\"c\" > ?");
        assert!(matches!(p.value, BoundValue::Int(41)));
        assert!(!p.exact);
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
        let p = pushdown(&cursor("c", "2024-01-02T03:04:05.5"), Some(&ts))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.value, BoundValue::Text(t) if t == "2024-01-02 03:04:05.500000"));
        assert!(p.exact);
        let tz = DataType::Timestamp(
            arrow::datatypes::TimeUnit::Microsecond,
            Some("+00:00".into()),
        );
        let p = pushdown(&cursor("c", "2024-01-02T04:04:05+01:00"), Some(&tz))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.value, BoundValue::Text(t) if t == "2024-01-02T03:04:05.000000Z"));
        let p = pushdown(&cursor("c", "12.50"), Some(&DataType::Decimal128(10, 2)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.condition, "CAST(\"c\" AS REAL) >= ?");
        assert!(matches!(p.value, BoundValue::Real(v) if v < 12.5 && v > 12.4999));
        assert!(
            matches!(pushdown(&cursor("c", "x"), None).map(|p| p.value), Ok(BoundValue::Text(t)) if t == "x")
        );
        let err = pushdown(&cursor("c", "soon"), Some(&DataType::Date32))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "watermark `soon` does not convert to the type date of cursor column \"c\" (reset it with `synqx state reset` or set it with `synqx state set`)"
            )
        );
    }
}
