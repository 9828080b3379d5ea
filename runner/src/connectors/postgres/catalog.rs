//! What the catalog says about a table: whether it exists, its columns with their exact types,
//! and its keys. Tables are looked up by their quoted name, so the lookup sees what a
//! statement naming the table would see (`pg_temp.x` included).

use sqlx::postgres::PgConnection;

use super::Table;
use super::types::PgType;

/// A column of a table, view or query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub pg: PgType,
    pub nullable: bool,
}

/// The object id of a table, view or other relation; `None` when there is none.
pub async fn relation(conn: &mut PgConnection, sql_name: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
        .bind(sql_name)
        .fetch_one(conn)
        .await
}

/// Whether a schema exists.
pub async fn schema_exists(conn: &mut PgConnection, schema: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(conn)
        .await
}

/// The columns of a table, in order; `None` when it does not exist.
pub async fn table_columns(
    conn: &mut PgConnection,
    table: &Table,
) -> sqlx::Result<Option<Vec<Column>>> {
    match relation(conn, &table.sql()).await? {
        Some(oid) => columns(conn, oid).await.map(Some),
        None => Ok(None),
    }
}

/// The columns of a relation, in order. A domain reads as its base type, which is how binary
/// COPY sends it; only array types carry an element type.
pub async fn columns(conn: &mut PgConnection, oid: i64) -> sqlx::Result<Vec<Column>> {
    let rows: Vec<(String, i64, i32, Option<i64>, String, bool)> = sqlx::query_as(
        "SELECT a.attname::text,
                (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END)::int8,
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                (CASE WHEN e.typcategory = 'A' THEN e.typelem END)::int8,
                CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
                     ELSE format_type(a.atttypid, a.atttypmod) END,
                NOT a.attnotnull
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         JOIN pg_type e ON e.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END
         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, type_oid, typmod, element, type_name, nullable)| Column {
                name,
                pg: PgType {
                    oid: type_oid as u32,
                    typmod,
                    element: element.filter(|e| *e != 0).map(|e| e as u32),
                    name: type_name,
                },
                nullable,
            },
        )
        .collect())
}

/// The column sets of the unique constraints and indexes that `ON CONFLICT (…)` can use:
/// immediate, not partial, on plain columns.
pub async fn unique_keys(conn: &mut PgConnection, oid: i64) -> sqlx::Result<Vec<Vec<String>>> {
    sqlx::query_scalar(
        "SELECT ARRAY(SELECT a.attname::text
                      FROM unnest(i.indkey) AS k(attnum)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
         FROM pg_index i
         WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indimmediate
           AND i.indpred IS NULL AND i.indexprs IS NULL",
    )
    .bind(oid)
    .fetch_all(conn)
    .await
}

/// The indexes of a table: each name and its shape (uniqueness, method, columns, predicate),
/// which is the same for an index and its copy made by `CREATE TABLE … (LIKE … INCLUDING ALL)`.
pub async fn indexes(conn: &mut PgConnection, oid: i64) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT c.relname::text,
                i.indisunique::text || ' ' || regexp_replace(pg_get_indexdef(i.indexrelid), '^.*? USING ', '')
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = $1::int8::oid
         ORDER BY c.relname",
    )
    .bind(oid)
    .fetch_all(conn)
    .await
}

/// Whether `key` names exactly the columns of one of `keys`, in any order.
pub fn has_unique_key(keys: &[Vec<String>], key: &[String]) -> bool {
    let mut wanted: Vec<&str> = key.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    keys.iter().any(|k| {
        let mut names: Vec<&str> = k.iter().map(String::as_str).collect();
        names.sort_unstable();
        names == wanted
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_a_unique_index_on_the_same_columns_in_any_order() {
        let keys = vec![vec!["b".to_string(), "a".to_string()], vec!["id".into()]];
        assert!(has_unique_key(&keys, &["a".into(), "b".into()]));
        assert!(has_unique_key(&keys, &["id".into()]));
        assert!(!has_unique_key(&keys, &["a".into()]));
        assert!(!has_unique_key(&keys, &["ID".into()]));
        assert!(!has_unique_key(&[], &["id".into()]));
    }
}
