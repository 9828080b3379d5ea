//! The SQL text the connector sends, built by pure functions so every statement is tested
//! without a server. Identifiers are bracket-quoted; values are typed `N'…'` literals, validated
//! first where their type is known.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};

use super::Table;
use super::quote;
use super::types::{ReadColumn, Select};
use crate::connectors::sql::{self, dialect::ColumnDef};
use crate::engine::cursor::FIX_WATERMARK;

/// The column of the staging table that numbers the rows in input order, so the last row of
/// a key wins the MERGE.
pub const ORDINAL_COLUMN: &str = "__synqx_ordinal";

/// A Unicode string literal: `N'…'` with quotes doubled.
pub fn literal(value: &str) -> String {
    format!("N'{}'", value.replace('\'', "''"))
}

/// The columns of a table, in order: name, type, precision and scale of decimals.
pub fn columns_query(table: &Table) -> String {
    let catalog = match &table.database {
        Some(db) => format!("{}.INFORMATION_SCHEMA.COLUMNS", quote(db)),
        None => "INFORMATION_SCHEMA.COLUMNS".to_string(),
    };
    format!(
        "SELECT COLUMN_NAME, DATA_TYPE, CAST(NUMERIC_PRECISION AS int), CAST(NUMERIC_SCALE AS int) FROM {catalog} WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        literal(&table.schema),
        literal(&table.name)
    )
}

/// The columns a query returns, described by the server without running it.
pub fn describe_query(query: &str) -> String {
    format!(
        "SELECT name, system_type_name, CAST(precision AS int), CAST(scale AS int), error_message FROM sys.dm_exec_describe_first_result_set({}, NULL, 0) WHERE is_hidden = 0 OR is_hidden IS NULL ORDER BY column_ordinal",
        literal(query)
    )
}

/// How a column appears in the SELECT list.
pub fn select_item(column: &ReadColumn) -> String {
    let name = quote(&column.name);
    match column.select {
        Select::Plain => name,
        Select::AsDecimal(p, s) => format!("CAST({name} AS decimal({p},{s})) AS {name}"),
        Select::AsText => format!("CAST({name} AS nvarchar(max)) AS {name}"),
        Select::AsWellKnownText => format!("{name}.STAsText() AS {name}"),
    }
}

/// `SELECT <columns> FROM <table>`, or the step's query as a derived table, with the cursor
/// condition when there is one.
pub fn select(source: Source<'_>, columns: &[ReadColumn], condition: Option<&str>) -> String {
    let list = columns
        .iter()
        .map(select_item)
        .collect::<Vec<_>>()
        .join(", ");
    let from = match source {
        Source::Table(table) => table.quoted(),
        Source::Query(query) => format!("(\n{query}\n) AS [synqx_source]"),
    };
    match condition {
        Some(c) => format!("SELECT {list} FROM {from} WHERE {c}"),
        None => format!("SELECT {list} FROM {from}"),
    }
}

/// The step's query as it is run: as written when nothing needs adding, so a query with its
/// own `ORDER BY` (which SQL Server forbids in a derived table) works; wrapped when the cursor
/// condition or a conversion the server must make (UDT types as text) needs it. money from an
/// unwrapped query arrives as a float and is rounded to four places.
pub fn select_query(query: &str, columns: &[ReadColumn], condition: Option<&str>) -> String {
    let plain = columns
        .iter()
        .all(|c| matches!(c.select, Select::Plain | Select::AsDecimal(..)));
    if plain && condition.is_none() {
        query.to_string()
    } else {
        select(Source::Query(query), columns, condition)
    }
}

/// What a source reads.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Table(&'a Table),
    Query(&'a str),
}

/// Why a watermark cannot be compared with its cursor column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error(
        "watermark `{watermark}` is not {expected} (cursor column \"{column}\" is {sql_type}; {})",
        FIX_WATERMARK
    )]
    Watermark {
        watermark: String,
        expected: &'static str,
        column: String,
        sql_type: String,
    },
    #[error(
        "cursor column \"{column}\" has the type {sql_type}, which cannot be compared (use a number, date, time or text column)"
    )]
    Uncomparable { column: String, sql_type: String },
}

/// `[cursor] > <typed literal>`, the incremental filter. The watermark is validated against
/// the column's type so a bad value fails here with a clear message, not on the server.
pub fn cursor_condition(column: &str, sql_type: &str, after: &str) -> Result<String, CursorError> {
    let name = quote(column);
    let after = after.trim();
    let bad = |expected: &'static str| CursorError::Watermark {
        watermark: after.to_string(),
        expected,
        column: column.to_string(),
        sql_type: sql_type.to_string(),
    };
    let value = match sql_type {
        "tinyint" | "smallint" | "int" | "bigint" => after
            .parse::<i64>()
            .map_err(|_| bad("an integer"))?
            .to_string(),
        "decimal" | "numeric" | "money" | "smallmoney" | "real" | "float" => {
            if !is_plain_number(after) {
                return Err(bad("a number"));
            }
            after.to_string()
        }
        "bit" => match after {
            "0" | "false" => "0".into(),
            "1" | "true" => "1".into(),
            _ => return Err(bad("a bit (0 or 1)")),
        },
        "date" => {
            let d = parse_date(after).ok_or_else(|| bad("a date (YYYY-MM-DD)"))?;
            format!(
                "CAST({} AS date)",
                literal(&d.format("%Y-%m-%d").to_string())
            )
        }
        "time" => {
            let t = NaiveTime::parse_from_str(after, "%H:%M:%S%.f")
                .map_err(|_| bad("a time (HH:MM:SS.ffffff)"))?;
            format!(
                "CAST({} AS time(7))",
                literal(&t.format("%H:%M:%S%.6f").to_string())
            )
        }
        "datetime" | "datetime2" | "smalldatetime" => {
            let t = parse_timestamp(after).ok_or_else(|| bad("a timestamp"))?;
            format!(
                "CAST({} AS datetime2(7))",
                literal(&t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
            )
        }
        "datetimeoffset" => {
            let t = parse_instant(after).ok_or_else(|| bad("a timestamp"))?;
            format!(
                "CAST({} AS datetimeoffset(7))",
                literal(&t.to_rfc3339_opts(SecondsFormat::Micros, false))
            )
        }
        "uniqueidentifier" => {
            let u = tiberius::Uuid::parse_str(after).map_err(|_| bad("a uuid"))?;
            format!("CAST({} AS uniqueidentifier)", literal(&u.to_string()))
        }
        "char" | "varchar" | "nchar" | "nvarchar" | "sysname" => literal(after),
        other => {
            return Err(CursorError::Uncomparable {
                column: column.to_string(),
                sql_type: other.to_string(),
            });
        }
    };
    Ok(format!("{name} > {value}"))
}

fn is_plain_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut parts = digits.splitn(2, ['e', 'E']);
    let mantissa = parts.next().unwrap_or_default();
    let exponent_ok = parts.next().is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && exponent_ok
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(text).map(|t| t.date()))
}

/// A timestamp without zone; one with a zone is taken in UTC.
fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).naive_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// An instant; a timestamp without zone is taken as UTC.
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    parse_timestamp(text).map(|t| t.and_utc())
}

/// `CREATE TABLE`, with `PRIMARY KEY (…)` when a key is given (its columns NOT NULL).
pub fn create_table(table: &str, columns: &[ColumnDef], key: &[String]) -> String {
    let columns: Vec<ColumnDef> = columns
        .iter()
        .map(|c| {
            let null = if key.contains(&c.name) {
                "NOT NULL"
            } else {
                "NULL"
            };
            ColumnDef {
                name: c.name.clone(),
                declared: format!("{} {null}", c.declared),
            }
        })
        .collect();
    sql::ddl::create_table(table, &columns, key, quote)
}

/// `ALTER TABLE … ADD …` for the columns the table lacks.
pub fn add_columns(table: &str, columns: &[ColumnDef]) -> String {
    let list = columns
        .iter()
        .map(|c| format!("{} {} NULL", quote(&c.name), c.declared))
        .collect::<Vec<_>>()
        .join(", ");
    format!("ALTER TABLE {table} ADD {list}")
}

/// Copies the staged rows into the target, by column name.
pub fn insert_select(target: &str, staging: &str, columns: &[String]) -> String {
    let list = quoted_list(columns);
    format!("INSERT INTO {target} ({list}) SELECT {list} FROM {staging}")
}

/// The statements that put the loaded table `new` in place of `table`, run in one
/// transaction: rename the old one aside, the new one into place, drop the old one.
/// `sp_rename` takes the new name bare (brackets would become part of it).
pub fn swap(table: &Table, new: &str, old: &str, existed: bool) -> Vec<String> {
    let rename = match &table.database {
        Some(db) => format!("EXEC {}.sys.sp_rename", quote(db)),
        None => "EXEC sp_rename".to_string(),
    };
    // The object is named within its database (the procedure of that database runs).
    let object = |name: &str| literal(&format!("{}.{}", quote(&table.schema), quote(name)));
    let mut out = Vec::new();
    if existed {
        out.push(format!(
            "{rename} {}, {}",
            object(&table.name),
            literal(old)
        ));
    }
    out.push(format!(
        "{rename} {}, {}",
        object(new),
        literal(&table.name)
    ));
    if existed {
        out.push(format!("DROP TABLE {}", table.with_name(old)));
    }
    out
}

/// The upsert: the last staged row of each key (by input order) updates the row with the
/// same key or is inserted. HOLDLOCK keeps a concurrent writer from inserting the same key
/// between the match and the insert.
pub fn merge(target: &str, staging: &str, columns: &[String], key: &[String]) -> String {
    let list = quoted_list(columns);
    let on = key
        .iter()
        .map(|k| format!("target.{0} = source.{0}", quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("target.{0} = source.{0}", quote(c)))
        .collect();
    let values = columns
        .iter()
        .map(|c| format!("source.{}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let matched = if updates.is_empty() {
        String::new()
    } else {
        format!("WHEN MATCHED THEN UPDATE SET {}\n", updates.join(", "))
    };
    format!(
        "MERGE {target} WITH (HOLDLOCK) AS target\nUSING (\n  SELECT {list} FROM (\n    SELECT {list}, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {} DESC) AS [__synqx_rn]\n    FROM {staging}\n  ) AS ranked WHERE [__synqx_rn] = 1\n) AS source\nON {on}\n{matched}WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({values});",
        quoted_list(key),
        quote(ORDINAL_COLUMN),
    )
}

/// Names as a statement lists them: `[a], [b]`.
fn quoted_list(names: &[String]) -> String {
    sql::ddl::identifiers(names, quote)
}

#[cfg(test)]
mod tests;
