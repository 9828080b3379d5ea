//! The SQL this connector sends: names as Snowflake resolves them, table definitions, the
//! incremental condition, and the statements that move a staged load into its table (append,
//! overwrite by `SWAP WITH` or in one transaction, upsert by `MERGE`).

use arrow::datatypes::Field;

use super::types::{ColumnType, column_type, loads_as_json};
use crate::connectors::warehouse::{FqnError, merge_statement};

/// The staging table's column that keeps the order rows arrived in, so that an upsert keeps
/// the last row of each key.
pub const ROW_COLUMN: &str = "_SYNQX_ROW";

/// A name as SQL text. Snowflake folds unquoted names to upper case, so a name it would accept
/// unquoted is written upper case (`order_id` -> `"ORDER_ID"`, the column `order_id` resolves
/// to); any other name is quoted exactly as written (`"Order Id"`, `"orderId"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", stored_name(name).replace('"', "\"\""))
}

/// The name Snowflake stores for `name` written unquoted, or `name` itself when it needs quotes.
pub fn stored_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_ascii_uppercase()
    } else {
        name.to_string()
    }
}

/// The name a stored name is read as: one Snowflake folded from an unquoted name
/// (`ORDER_ID`) reads in lower case (`order_id`), the way it was most likely written, so names
/// round-trip from systems that keep lower case; any other name reads as stored.
pub fn read_name(stored: &str) -> String {
    let folded = stored
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && stored
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if folded {
        stored.to_ascii_lowercase()
    } else {
        stored.to_string()
    }
}

/// Whether two column names resolve to the same Snowflake column.
pub fn same_name(a: &str, b: &str) -> bool {
    stored_name(a) == stored_name(b)
}

/// A table as written in a step (`table`, `schema.table` or `database.schema.table`), with the
/// Connection's database and schema filling what is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub database: String,
    pub schema: String,
    pub name: String,
}

impl Table {
    pub fn parse(fqn: &str, database: &str, schema: &str) -> Result<Self, FqnError> {
        let parts: Vec<&str> = fqn.split('.').map(str::trim).collect();
        let shape = || FqnError::Shape {
            fqn: fqn.to_string(),
            forms: "table, schema.table or database.schema.table",
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(shape());
        }
        let (database, schema, name) = match parts.as_slice() {
            [t] => (database, schema, *t),
            [s, t] => (database, *s, *t),
            [d, s, t] => (*d, *s, *t),
            _ => return Err(shape()),
        };
        Ok(Self {
            database: stored_name(database),
            schema: stored_name(schema),
            name: stored_name(name),
        })
    }

    /// A table beside this one (same database and schema).
    pub fn beside(&self, name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..self.clone()
        }
    }

    /// A temporary stage of the session, named without database and schema: it lives
    /// in the session's own (the Connection's) database and schema.
    pub fn temporary(name: &str) -> Self {
        Self {
            database: String::new(),
            schema: String::new(),
            name: name.to_string(),
        }
    }

    /// The quoted three-part name (just the name for a temporary stage).
    pub fn sql(&self) -> String {
        if self.database.is_empty() {
            return quote(&self.name);
        }
        format!(
            "{}.{}.{}",
            quote(&self.database),
            quote(&self.schema),
            quote(&self.name)
        )
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.database, self.schema, self.name)
    }
}

/// A stored name, quoted.
fn quote(stored: &str) -> String {
    format!("\"{}\"", stored.replace('"', "\"\""))
}

/// `SELECT *` over a table or a query.
pub fn select(table: &Table, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("SELECT * FROM ({q}) AS q"),
        None => format!("SELECT * FROM {}", table.sql()),
    }
}

/// The column type a result column is compared as in the incremental condition.
pub fn sql_type(column: &ColumnType) -> String {
    let scale = column.scale();
    match column.kind.to_ascii_lowercase().as_str() {
        "fixed" => format!("NUMBER({},{scale})", column.precision.unwrap_or(38)),
        "real" => "FLOAT".into(),
        "boolean" => "BOOLEAN".into(),
        "date" => "DATE".into(),
        "time" => format!("TIME({})", column.scale.unwrap_or(9)),
        "timestamp_ntz" => format!("TIMESTAMP_NTZ({})", column.scale.unwrap_or(9)),
        "timestamp_ltz" => format!("TIMESTAMP_LTZ({})", column.scale.unwrap_or(9)),
        "timestamp_tz" => format!("TIMESTAMP_TZ({})", column.scale.unwrap_or(9)),
        _ => "VARCHAR".into(),
    }
}

/// `SELECT … WHERE cursor > ?::TYPE`: the watermark is bound as text and cast to the cursor
/// column's own type, so timestamps compare as timestamps and numbers as numbers.
pub fn incremental(base: &str, cursor: &ColumnType) -> String {
    format!(
        "SELECT * FROM ({base}) AS s WHERE {} > CAST(? AS {})",
        quote(&cursor.name),
        sql_type(cursor)
    )
}

/// `CREATE TABLE` for the written fields, with the primary key (Snowflake records it, it does
/// not enforce it).
pub fn create_table(table: &Table, fields: &[Field], key: &[String]) -> String {
    let mut columns: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {}", ident(f.name()), column_type(f)))
        .collect();
    if !key.is_empty() {
        columns.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table.sql(),
        columns.join(", ")
    )
}

/// The staging table of a load, beside its table: a transient table (no fail-safe copies)
/// holding the written columns as loaded (JSON as text) and the arrival order. It is dropped
/// after the load, and after a failed one; a killed process leaves it behind, named
/// `SYNQX_STAGE_…`. (Not a temporary table: a `COPY INTO` a temporary table is what fakesnow
/// cannot resolve.)
pub fn create_staging(staging: &Table, fields: &[Field]) -> String {
    let mut columns: Vec<String> = fields
        .iter()
        .map(|f| {
            let kind = if loads_as_json(f) {
                "VARCHAR".to_string()
            } else {
                column_type(f)
            };
            format!("{} {kind}", ident(f.name()))
        })
        .collect();
    columns.push(format!("{ROW_COLUMN} NUMBER(19,0)"));
    format!(
        "CREATE TRANSIENT TABLE {} ({})",
        staging.sql(),
        columns.join(", ")
    )
}

/// `ALTER TABLE … ADD COLUMN` for a column the table gains.
pub fn add_column(table: &Table, field: &Field) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        table.sql(),
        ident(field.name()),
        column_type(field)
    )
}

/// The staged columns as the table takes them: JSON text parsed into VARIANT.
fn staged_values(fields: &[Field], prefix: &str) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            let c = format!("{prefix}{}", ident(f.name()));
            if loads_as_json(f) {
                format!("PARSE_JSON({c})")
            } else {
                c
            }
        })
        .collect()
}

fn column_list(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| ident(f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends the staged rows, in their order.
pub fn insert_from_staging(table: &Table, staging: &Table, fields: &[Field]) -> String {
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {ROW_COLUMN}",
        table.sql(),
        column_list(fields),
        staged_values(fields, "").join(", "),
        staging.sql()
    )
}

/// Replaces every row: run inside one transaction with the insert, so readers see the old rows
/// or the new ones, never neither (the overwrite of a server that refuses [`swap`]).
pub fn delete_all(table: &Table) -> String {
    format!("DELETE FROM {}", table.sql())
}

/// An empty table beside `table` with its columns, defaults, constraints and clustering, and
/// with its grants except OWNERSHIP (`COPY GRANTS`): the one an overwrite fills and swaps in.
/// It is owned by the Connection's role.
pub fn create_like(fresh: &Table, table: &Table) -> String {
    format!(
        "CREATE TABLE {} LIKE {} COPY GRANTS",
        fresh.sql(),
        table.sql()
    )
}

/// Exchanges two tables' names in one metadata operation: each keeps its rows, columns and
/// grants, so `table` then names the filled one and `fresh` the old rows.
pub fn swap(table: &Table, fresh: &Table) -> String {
    format!("ALTER TABLE {} SWAP WITH {}", table.sql(), fresh.sql())
}

/// `DROP TABLE IF EXISTS`, for a load's own tables.
pub fn drop_table(table: &Table) -> String {
    format!("DROP TABLE IF EXISTS {}", table.sql())
}

/// Upserts the staged rows by key; of several staged rows with one key, the last one wins.
pub fn merge(table: &Table, staging: &Table, fields: &[Field], key: &[String]) -> String {
    let source = format!(
        "SELECT {} FROM {} QUALIFY ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {ROW_COLUMN} DESC) = 1",
        fields
            .iter()
            .zip(staged_values(fields, ""))
            .map(|(f, v)| format!("{v} AS {}", ident(f.name())))
            .collect::<Vec<_>>()
            .join(", "),
        staging.sql(),
        key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
    );
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    merge_statement(&table.sql(), &source, &names, key, ident, same_name)
}

/// The columns of a table, in order, from the database's information schema.
pub fn columns_query(table: &Table) -> String {
    format!(
        "SELECT COLUMN_NAME, DATA_TYPE FROM {}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        quote(&table.database)
    )
}

/// The names of the tables in a schema (bound: the schema) whose names could be staging
/// tables; the caller picks them out exactly.
pub fn tables_query(table: &Table) -> String {
    format!(
        "SELECT TABLE_NAME FROM {}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE 'SYNQX%'",
        quote(&table.database)
    )
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;

    fn table() -> Table {
        Table::parse("sales.orders", "DB", "PUBLIC").unwrap()
    }

    #[test]
    fn names_fold_as_snowflake_folds_unquoted_ones() {
        assert_eq!(ident("order_id"), "\"ORDER_ID\"");
        assert_eq!(ident("ORDER_ID"), "\"ORDER_ID\"");
        assert_eq!(ident("orderId"), "\"orderId\"");
        assert_eq!(ident("Order \"Id\""), "\"Order \"\"Id\"\"\"");
        assert!(same_name("order_id", "ORDER_ID"));
        assert!(!same_name("orderId", "ORDERID"));
        assert_eq!(read_name("ORDER_ID"), "order_id");
        assert_eq!(read_name("orderId"), "orderId");
        assert_eq!(read_name("Order Id"), "Order Id");
    }

    #[test]
    fn fqns_take_database_and_schema_from_the_connection() {
        assert_eq!(table().sql(), "\"DB\".\"SALES\".\"ORDERS\"");
        assert_eq!(
            Table::parse("t", "DB", "PUBLIC").unwrap().to_string(),
            "DB.PUBLIC.T"
        );
        assert_eq!(
            Table::parse("x.y.z", "DB", "PUBLIC").unwrap().to_string(),
            "X.Y.Z"
        );
        assert!(Table::parse("a..b", "DB", "PUBLIC").is_err());
        assert!(Table::parse("a.b.c.d", "DB", "PUBLIC").is_err());
    }

    #[test]
    fn the_cursor_is_compared_in_its_own_type() {
        let cursor = ColumnType {
            name: "UPDATED_AT".into(),
            kind: "timestamp_ntz".into(),
            precision: Some(0),
            scale: Some(6),
            nullable: true,
        };
        assert_eq!(
            incremental(&select(&table(), None), &cursor),
            "SELECT * FROM (SELECT * FROM \"DB\".\"SALES\".\"ORDERS\") AS s WHERE \"UPDATED_AT\" > CAST(? AS TIMESTAMP_NTZ(6))"
        );
    }

    #[test]
    fn upsert_merges_the_last_staged_row_of_each_key() {
        let id = Field::new("id", DataType::Int64, false);
        let doc = Field::new("doc", DataType::Utf8, true)
            .with_metadata([("ARROW:extension:name".to_string(), "arrow.json".to_string())].into());
        let staging = table().beside("SYNQX_STAGE_1");
        let fields = [id, doc];
        assert_eq!(
            merge(&table(), &staging, &fields, &["id".into()]),
            "MERGE INTO \"DB\".\"SALES\".\"ORDERS\" AS t USING (SELECT \"ID\" AS \"ID\", PARSE_JSON(\"DOC\") AS \"DOC\" FROM \"DB\".\"SALES\".\"SYNQX_STAGE_1\" QUALIFY ROW_NUMBER() OVER (PARTITION BY \"ID\" ORDER BY _SYNQX_ROW DESC) = 1) AS s ON t.\"ID\" = s.\"ID\" WHEN MATCHED THEN UPDATE SET \"DOC\" = s.\"DOC\" WHEN NOT MATCHED THEN INSERT (\"ID\", \"DOC\") VALUES (s.\"ID\", s.\"DOC\")"
        );
        assert_eq!(
            create_staging(&staging, &fields),
            "CREATE TRANSIENT TABLE \"DB\".\"SALES\".\"SYNQX_STAGE_1\" (\"ID\" NUMBER(19,0), \"DOC\" VARCHAR, _SYNQX_ROW NUMBER(19,0))"
        );
        assert_eq!(
            create_table(&table(), &fields, &["id".into()]),
            "CREATE TABLE IF NOT EXISTS \"DB\".\"SALES\".\"ORDERS\" (\"ID\" NUMBER(19,0), \"DOC\" VARIANT, PRIMARY KEY (\"ID\"))"
        );
        assert_eq!(
            insert_from_staging(&table(), &staging, &fields),
            "INSERT INTO \"DB\".\"SALES\".\"ORDERS\" (\"ID\", \"DOC\") SELECT \"ID\", PARSE_JSON(\"DOC\") FROM \"DB\".\"SALES\".\"SYNQX_STAGE_1\" ORDER BY _SYNQX_ROW"
        );
    }
}
