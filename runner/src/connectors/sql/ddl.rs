//! The DDL every SQL database writes alike, each with its own identifier quoting (`quote`):
//! lists of columns and the `CREATE TABLE` of a load.

use super::dialect::ColumnDef;

/// Identifiers as a statement lists them, each quoted the database's way: `"a", "b"`.
pub fn identifiers<S: AsRef<str>>(names: &[S], quote: fn(&str) -> String) -> String {
    names
        .iter()
        .map(|n| quote(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE` with the columns and, when `key` is not empty, `PRIMARY KEY (key…)`, one to
/// a line.
pub fn create_table(
    table: &str,
    columns: &[ColumnDef],
    key: &[String],
    quote: fn(&str) -> String,
) -> String {
    let mut lines: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.declared))
        .collect();
    if !key.is_empty() {
        lines.push(format!("PRIMARY KEY ({})", identifiers(key, quote)));
    }
    format!("CREATE TABLE {table} (\n  {}\n)", lines.join(",\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brackets(name: &str) -> String {
        format!("[{name}]")
    }

    fn column(name: &str, declared: &str) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            declared: declared.into(),
        }
    }

    #[test]
    fn identifiers_are_quoted_the_databases_way() {
        assert_eq!(identifiers(&["a", "b c"], brackets), "[a], [b c]");
        assert_eq!(identifiers::<String>(&[], brackets), "");
    }

    #[test]
    fn tables_are_created_one_column_a_line_with_the_key_last() {
        let columns = [column("id", "bigint"), column("name", "text")];
        assert_eq!(
            create_table("[t]", &columns, &["id".into()], brackets),
            "CREATE TABLE [t] (\n  [id] bigint,\n  [name] text,\n  PRIMARY KEY ([id])\n)"
        );
        assert_eq!(
            create_table("[t]", &columns[..1], &[], brackets),
            "CREATE TABLE [t] (\n  [id] bigint\n)"
        );
    }
}
