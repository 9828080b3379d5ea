//! What the server knows about tables and queries: columns with their full type text, JSON
//! columns, unique keys.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Column, Executor, SqlSafeStr, TypeInfo};

use super::{TableRef, quote, work_table};

/// A column of a table or of a query's result.
#[derive(Clone, Debug)]
pub(super) struct CatalogColumn {
    pub name: String,
    /// `COLUMN_TYPE`: `bigint(20) unsigned`, `decimal(10,2)`, `enum('a','b')`.
    pub column_type: String,
    /// MySQL's `json`, or MariaDB's longtext with a `json_valid` check.
    pub json: bool,
}

/// The columns of a table in order; empty when it does not exist.
pub(super) async fn table_columns(
    conn: &mut MySqlConnection,
    table: &TableRef,
) -> sqlx::Result<Vec<CatalogColumn>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR)
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
         ORDER BY ORDINAL_POSITION",
    )
    .bind(&table.database)
    .bind(&table.table)
    .fetch_all(&mut *conn)
    .await?;
    let json_checked = if rows.is_empty() {
        Vec::new()
    } else {
        json_checked_columns(conn, table).await
    };
    Ok(rows
        .into_iter()
        .map(|(name, data_type, column_type)| CatalogColumn {
            json: data_type.eq_ignore_ascii_case("json")
                || json_checked.iter().any(|c| c.eq_ignore_ascii_case(&name)),
            name,
            column_type,
        })
        .collect())
}

/// Columns constrained by `CHECK (json_valid(`c`))`, which is how MariaDB declares `json`.
/// Servers without `information_schema.CHECK_CONSTRAINTS` (MySQL before 8.0.16) have no such
/// columns, so a failure to read it means none.
async fn json_checked_columns(conn: &mut MySqlConnection, table: &TableRef) -> Vec<String> {
    let clauses: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(CHECK_CLAUSE AS CHAR) FROM information_schema.CHECK_CONSTRAINTS
         WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(&table.database)
    .bind(&table.table)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    clauses
        .into_iter()
        .filter_map(|(clause,)| {
            let inner = clause
                .trim()
                .strip_prefix("json_valid(`")?
                .strip_suffix("`)")?;
            Some(inner.replace("``", "`"))
        })
        .collect()
}

/// The columns of a query's result. A temporary table created from the query with no rows has
/// the full type of every column (`decimal(12,2)`, `tinyint(1)`), which the protocol's column
/// definitions lack; a user who may not create temporary tables gets the protocol's types.
pub(super) async fn query_columns(
    conn: &mut MySqlConnection,
    query: &str,
) -> sqlx::Result<Vec<CatalogColumn>> {
    let probe = quote(&work_table("q", "probe"));
    let create =
        format!("CREATE TEMPORARY TABLE {probe} AS SELECT * FROM (\n{query}\n) AS synqx_q LIMIT 0");
    if (&mut *conn).execute(AssertSqlSafe(create)).await.is_ok() {
        let rows: sqlx::Result<Vec<(String, String)>> =
            sqlx::query_as(AssertSqlSafe(format!("SHOW COLUMNS FROM {probe}")))
                .fetch_all(&mut *conn)
                .await
                .map(
                    |rows: Vec<(String, String, String, String, Option<String>, String)>| {
                        rows.into_iter().map(|r| (r.0, r.1)).collect()
                    },
                );
        (&mut *conn)
            .execute(AssertSqlSafe(format!(
                "DROP TEMPORARY TABLE IF EXISTS {probe}"
            )))
            .await?;
        return Ok(rows?
            .into_iter()
            .map(|(name, column_type)| CatalogColumn {
                json: false,
                name,
                column_type,
            })
            .collect());
    }
    let described = (&mut *conn)
        .describe(AssertSqlSafe(query.to_string()).into_sql_str())
        .await?;
    Ok(described
        .columns()
        .iter()
        .map(|c| {
            let name = c.type_info().name().to_ascii_lowercase();
            let column_type = match name.as_str() {
                "boolean" => "tinyint(1)".to_string(),
                // The protocol does not carry precision and scale: exact as text.
                "decimal" => "decimal(65,30)".to_string(),
                _ => name.clone(),
            };
            CatalogColumn {
                name: c.name().to_string(),
                json: name == "json",
                column_type,
            }
        })
        .collect())
}

/// The column sets of the table's unique keys (its primary key among them).
pub(super) async fn unique_keys(
    conn: &mut MySqlConnection,
    table: &TableRef,
) -> sqlx::Result<Vec<Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND SUB_PART IS NULL
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(&table.database)
    .bind(&table.table)
    .fetch_all(&mut *conn)
    .await?;
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for (index, column) in rows {
        match keys.last_mut() {
            Some((name, columns)) if *name == index => columns.push(column),
            _ => keys.push((index, vec![column])),
        }
    }
    Ok(keys.into_iter().map(|(_, columns)| columns).collect())
}
