//! The SQL the connector sends, generated from names and types. Pure, so every statement is
//! unit-tested; identifiers are always quoted and values always literals.

use super::{Table, literal, quote};
use crate::connectors::sql::{self, dialect::ColumnDef};

/// Name of the ordinal column of an upsert's staging table: the order rows arrived in, so the
/// last of several rows with one key wins.
pub const ORDINAL: &str = "__synqx_ordinal";

/// `CREATE TABLE` with the columns and, when given, the primary key.
pub fn create_table(table: &Table, columns: &[ColumnDef], primary_key: &[String]) -> String {
    sql::ddl::create_table(&table.sql(), columns, primary_key, quote)
}

/// A new table with everything of `like`: columns, defaults, constraints, indexes, comments.
pub fn create_like(table: &Table, like: &Table) -> String {
    format!(
        "CREATE TABLE {} (LIKE {} INCLUDING ALL)",
        table.sql(),
        like.sql()
    )
}

pub fn add_column(table: &Table, column: &ColumnDef) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        table.sql(),
        quote(&column.name),
        column.declared
    )
}

/// The staging table of an upsert: the target's columns (without its constraints, so
/// duplicate keys can land) and the arrival ordinal. Dropped with the transaction.
pub fn create_staging(staging: &str, like: &Table) -> [String; 2] {
    [
        format!(
            "CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP",
            quote(staging),
            like.sql()
        ),
        format!(
            "ALTER TABLE pg_temp.{} ADD COLUMN {} bigserial",
            quote(staging),
            quote(ORDINAL)
        ),
    ]
}

/// Merges the staging table into the target: per key the last row staged, inserted or
/// updated over the existing row.
pub fn merge(table: &Table, staging: &str, columns: &[String], key: &[String]) -> String {
    let cols = list(columns);
    let keys = list(key);
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {} ({cols})\nSELECT DISTINCT ON ({keys}) {cols} FROM pg_temp.{}\nORDER BY {keys}, {} DESC\nON CONFLICT ({keys}) {action}",
        table.sql(),
        quote(staging),
        quote(ORDINAL)
    )
}

/// The two statements that put a loaded table in place of the old one.
pub fn swap(table: &Table, loaded: &Table, existed: bool) -> Vec<String> {
    let mut statements = Vec::new();
    if existed {
        statements.push(format!("DROP TABLE {}", table.sql()));
    }
    statements.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        loaded.sql(),
        quote(&table.name)
    ));
    statements
}

/// Renames that give the indexes of a swapped-in table the names of the old table's indexes
/// they copy (an index and its copy have the same shape), so the names users and tools know
/// survive an overwrite. An index of the new table without a counterpart keeps its name.
pub fn index_renames(
    schema: &str,
    old: &[(String, String)],
    new: &[(String, String)],
) -> Vec<String> {
    let mut unused: Vec<&(String, String)> = old.iter().collect();
    let mut renames = Vec::new();
    for (name, shape) in new {
        if let Some(i) = unused.iter().position(|(_, s)| s == shape) {
            let (old_name, _) = unused.remove(i);
            if old_name != name {
                renames.push(format!(
                    "ALTER INDEX {}.{} RENAME TO {}",
                    quote(schema),
                    quote(name),
                    quote(old_name)
                ));
            }
        }
    }
    renames
}

/// `COPY … FROM STDIN` into the columns, in binary.
pub fn copy_in(target: &str, columns: &[String]) -> String {
    format!(
        "COPY {target} ({}) FROM STDIN (FORMAT binary)",
        list(columns)
    )
}

/// What the source selects: a column by name, or as text when it has no binary mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    pub as_text: bool,
}

/// The incremental filter: rows whose cursor is above the watermark, compared in the
/// cursor's own type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct After {
    pub column: String,
    pub watermark: String,
    /// `format_type` of the cursor column, e.g. `timestamp(3) with time zone`.
    pub sql_type: String,
}

/// `COPY (SELECT …) TO STDOUT` in binary, from a table (`"s"."t"`) or a query (`(…) q`),
/// filtered by the cursor and by `range` (a condition on the rows' place, e.g. a `ctid`
/// range of a parallel read).
pub fn copy_out(
    columns: &[Selected],
    from: &str,
    after: Option<&After>,
    range: Option<&str>,
) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            if c.as_text {
                format!("{0}::text AS {0}", quote(&c.name))
            } else {
                quote(&c.name)
            }
        })
        .collect();
    let mut conditions: Vec<String> = Vec::new();
    if let Some(a) = after {
        conditions.push(format!(
            "{} > {}::{}",
            quote(&a.column),
            literal(&a.watermark),
            a.sql_type
        ));
    }
    conditions.extend(range.map(str::to_string));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "COPY (SELECT {} FROM {from}{filter}) TO STDOUT (FORMAT binary)",
        select.join(", ")
    )
}

/// A user query as a relation of a `FROM`.
pub fn subquery(query: &str) -> String {
    // A trailing `;` is natural in a query written alone, and not allowed in a subquery.
    let query = query.trim().trim_end_matches(';').trim_end();
    format!("({query}) AS q")
}

fn list(names: &[String]) -> String {
    sql::ddl::identifiers(names, quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(schema: &str, name: &str) -> Table {
        Table {
            schema: schema.into(),
            name: name.into(),
        }
    }

    fn col(name: &str, declared: &str) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            declared: declared.into(),
        }
    }

    #[test]
    fn tables_are_created_with_quoted_names_and_a_primary_key() {
        let columns = [col("id", "bigint"), col("Name", "text")];
        assert_eq!(
            create_table(&t("Sales", "Orders"), &columns, &["id".into()]),
            "CREATE TABLE \"Sales\".\"Orders\" (\n  \"id\" bigint,\n  \"Name\" text,\n  PRIMARY KEY (\"id\")\n)"
        );
        assert_eq!(
            create_table(&t("public", "x"), &columns[..1], &[]),
            "CREATE TABLE \"public\".\"x\" (\n  \"id\" bigint\n)"
        );
        assert_eq!(
            add_column(&t("public", "x"), &col("a\"b", "numeric(10,2)")),
            "ALTER TABLE \"public\".\"x\" ADD COLUMN \"a\"\"b\" numeric(10,2)"
        );
        assert_eq!(
            create_like(&t("s", "x_synqx_new_1"), &t("s", "x")),
            "CREATE TABLE \"s\".\"x_synqx_new_1\" (LIKE \"s\".\"x\" INCLUDING ALL)"
        );
    }

    #[test]
    fn an_upsert_merges_the_last_staged_row_of_each_key() {
        assert_eq!(
            create_staging("stage_1", &t("s", "x")),
            [
                "CREATE TEMP TABLE \"stage_1\" (LIKE \"s\".\"x\") ON COMMIT DROP".to_string(),
                "ALTER TABLE pg_temp.\"stage_1\" ADD COLUMN \"__synqx_ordinal\" bigserial".into()
            ]
        );
        assert_eq!(
            merge(
                &t("s", "x"),
                "stage_1",
                &["id".into(), "v".into(), "w".into()],
                &["id".into()]
            ),
            "INSERT INTO \"s\".\"x\" (\"id\", \"v\", \"w\")\nSELECT DISTINCT ON (\"id\") \"id\", \"v\", \"w\" FROM pg_temp.\"stage_1\"\nORDER BY \"id\", \"__synqx_ordinal\" DESC\nON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\", \"w\" = EXCLUDED.\"w\""
        );
        assert!(
            merge(&t("s", "x"), "st", &["id".into()], &["id".into()])
                .ends_with("ON CONFLICT (\"id\") DO NOTHING")
        );
    }

    #[test]
    fn overwrite_swaps_the_loaded_table_in() {
        assert_eq!(
            swap(&t("s", "x"), &t("s", "x_synqx_new_1"), true),
            [
                "DROP TABLE \"s\".\"x\"",
                "ALTER TABLE \"s\".\"x_synqx_new_1\" RENAME TO \"x\""
            ]
        );
        assert_eq!(swap(&t("s", "x"), &t("s", "n"), false).len(), 1);
    }

    #[test]
    fn indexes_of_the_new_table_take_the_names_of_the_ones_they_copy() {
        let pair = |n: &str, s: &str| (n.to_string(), s.to_string());
        let old = [
            pair("t_pkey", "true btree (id)"),
            pair("by_name", "false btree (name)"),
            pair("gone", "false btree (note)"),
        ];
        let new = [
            pair("n_name_idx", "false btree (name)"),
            pair("n_pkey", "true btree (id)"),
            pair("n_extra_idx", "false btree (extra)"),
        ];
        assert_eq!(
            index_renames("s", &old, &new),
            [
                "ALTER INDEX \"s\".\"n_name_idx\" RENAME TO \"by_name\"",
                "ALTER INDEX \"s\".\"n_pkey\" RENAME TO \"t_pkey\""
            ]
        );
        assert!(index_renames("s", &old[..1], &[pair("t_pkey", "true btree (id)")]).is_empty());
    }

    #[test]
    fn copy_statements_select_text_fallbacks_and_push_the_cursor_down() {
        assert_eq!(
            copy_in("\"s\".\"x\"", &["id".into(), "v".into()]),
            "COPY \"s\".\"x\" (\"id\", \"v\") FROM STDIN (FORMAT binary)"
        );
        let columns = [
            Selected {
                name: "id".into(),
                as_text: false,
            },
            Selected {
                name: "shape".into(),
                as_text: true,
            },
        ];
        assert_eq!(
            copy_out(&columns, "\"s\".\"x\"", None, None),
            "COPY (SELECT \"id\", \"shape\"::text AS \"shape\" FROM \"s\".\"x\") TO STDOUT (FORMAT binary)"
        );
        let after = After {
            column: "updated_at".into(),
            watermark: "2024-01-01 00:00:00'; DROP TABLE x; --".into(),
            sql_type: "timestamp with time zone".into(),
        };
        assert_eq!(
            copy_out(
                &columns[..1],
                &subquery("SELECT * FROM t;  "),
                Some(&after),
                None
            ),
            "COPY (SELECT \"id\" FROM (SELECT * FROM t) AS q WHERE \"updated_at\" > '2024-01-01 00:00:00''; DROP TABLE x; --'::timestamp with time zone) TO STDOUT (FORMAT binary)"
        );
        assert_eq!(
            copy_out(
                &columns[..1],
                "\"s\".\"x\"",
                Some(&after),
                Some("ctid >= '(0,0)'::tid")
            ),
            "COPY (SELECT \"id\" FROM \"s\".\"x\" WHERE \"updated_at\" > '2024-01-01 00:00:00''; DROP TABLE x; --'::timestamp with time zone AND ctid >= '(0,0)'::tid) TO STDOUT (FORMAT binary)"
        );
    }
}
