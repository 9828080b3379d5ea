//! The GoogleSQL this connector sends: names in backquotes, the incremental condition with a
//! named parameter, and the statements that move a staged load into its table (append,
//! overwrite in one transaction, upsert by `MERGE`).

use super::types::TableField;
use crate::connectors::warehouse::{FqnError, merge_statement};

/// The staging table's column that keeps the order rows arrived in.
pub const ROW_COLUMN: &str = "_synqx_row";

/// A name in backquotes.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Column names are case-insensitive in BigQuery.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A table as a step names it: `table` (in the Connection's dataset), `dataset.table` or
/// `project.dataset.table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub project: Option<String>,
    pub dataset: String,
    pub name: String,
}

impl Table {
    pub fn parse(fqn: &str, dataset: Option<&str>) -> Result<Self, FqnError> {
        let parts: Vec<&str> = fqn.split('.').map(str::trim).collect();
        let shape = || FqnError::Shape {
            fqn: fqn.to_string(),
            forms: "table, dataset.table or project.dataset.table",
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(shape());
        }
        match parts.as_slice() {
            [t] => match dataset {
                Some(d) => Ok(Self {
                    project: None,
                    dataset: d.to_string(),
                    name: t.to_string(),
                }),
                None => Err(FqnError::NoDataset {
                    fqn: fqn.to_string(),
                }),
            },
            [d, t] => Ok(Self {
                project: None,
                dataset: d.to_string(),
                name: t.to_string(),
            }),
            [p, d, t] => Ok(Self {
                project: Some(p.to_string()),
                dataset: d.to_string(),
                name: t.to_string(),
            }),
            _ => Err(shape()),
        }
    }

    pub fn sql(&self) -> String {
        match &self.project {
            Some(p) => format!(
                "{}.{}.{}",
                ident(p),
                ident(&self.dataset),
                ident(&self.name)
            ),
            None => format!("{}.{}", ident(&self.dataset), ident(&self.name)),
        }
    }

    pub fn beside(&self, name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.project {
            Some(p) => write!(f, "{p}.{}.{}", self.dataset, self.name),
            None => write!(f, "{}.{}", self.dataset, self.name),
        }
    }
}

pub fn select(table: &Table) -> String {
    format!("SELECT * FROM {}", table.sql())
}

/// Rows above the watermark, which is bound as the STRING parameter `@watermark` and cast to
/// the cursor's own type.
pub fn incremental(base: &str, cursor: &TableField) -> String {
    format!(
        "SELECT * FROM ({base}) WHERE {} > CAST(@watermark AS {})",
        ident(&cursor.name),
        super::types::sql_type(cursor)
    )
}

/// The column type in DDL: `INT64`, `ARRAY<STRING>`, `STRUCT<x INT64>`.
pub fn ddl_type(field: &TableField) -> String {
    let element = if field.fields.is_empty() {
        field.kind.clone()
    } else {
        format!(
            "STRUCT<{}>",
            field
                .fields
                .iter()
                .map(|f| format!("{} {}", ident(&f.name), ddl_type(f)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if field.repeated() {
        format!("ARRAY<{element}>")
    } else {
        element
    }
}

pub fn add_column(table: &Table, field: &TableField) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        table.sql(),
        ident(&field.name),
        ddl_type(field)
    )
}

fn column_list(fields: &[TableField]) -> String {
    fields
        .iter()
        .map(|f| ident(&f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn insert_from_staging(table: &Table, staging: &Table, fields: &[TableField]) -> String {
    let names = column_list(fields);
    format!(
        "INSERT INTO {} ({names}) SELECT {names} FROM {}",
        table.sql(),
        staging.sql()
    )
}

/// Replaces every row in one transaction: readers see the old rows or the new ones.
pub fn overwrite(table: &Table, staging: &Table, fields: &[TableField]) -> String {
    format!(
        "BEGIN TRANSACTION; DELETE FROM {} WHERE TRUE; {}; COMMIT TRANSACTION;",
        table.sql(),
        insert_from_staging(table, staging, fields)
    )
}

/// Upserts the staged rows by key; of several staged rows with one key, the last one wins.
pub fn merge(table: &Table, staging: &Table, fields: &[TableField], key: &[String]) -> String {
    let keys: Vec<String> = key.iter().map(|k| ident(k)).collect();
    // `WHERE TRUE`: GoogleSQL takes QUALIFY only after a WHERE, GROUP BY or HAVING.
    let source = format!(
        "SELECT {} FROM {} WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {ROW_COLUMN} DESC) = 1",
        column_list(fields),
        staging.sql(),
        keys.join(", ")
    );
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    merge_statement(&table.sql(), &source, &names, key, ident, same_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, kind: &str) -> TableField {
        TableField {
            name: name.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn fqns_take_the_dataset_from_the_connection() {
        assert_eq!(
            Table::parse("orders", Some("sales")).unwrap().sql(),
            "`sales`.`orders`"
        );
        assert_eq!(Table::parse("p.d.t", None).unwrap().sql(), "`p`.`d`.`t`");
        assert_eq!(
            Table::parse("orders", None),
            Err(FqnError::NoDataset {
                fqn: "orders".into()
            })
        );
        assert!(Table::parse("a..b", None).is_err());
    }

    #[test]
    fn upsert_is_one_merge_that_keeps_the_last_row_of_a_key() {
        let t = Table::parse("sales.orders", None).unwrap();
        let s = t.beside("_synqx_stage_1");
        assert_eq!(
            merge(
                &t,
                &s,
                &[f("id", "INT64"), f("name", "STRING")],
                &["id".into()]
            ),
            "MERGE INTO `sales`.`orders` AS t USING (SELECT `id`, `name` FROM `sales`.`_synqx_stage_1` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY _synqx_row DESC) = 1) AS s ON t.`id` = s.`id` WHEN MATCHED THEN UPDATE SET `name` = s.`name` WHEN NOT MATCHED THEN INSERT (`id`, `name`) VALUES (s.`id`, s.`name`)"
        );
        assert_eq!(
            overwrite(&t, &s, &[f("id", "INT64")]),
            "BEGIN TRANSACTION; DELETE FROM `sales`.`orders` WHERE TRUE; INSERT INTO `sales`.`orders` (`id`) SELECT `id` FROM `sales`.`_synqx_stage_1`; COMMIT TRANSACTION;"
        );
    }

    #[test]
    fn nested_fields_have_their_ddl_types() {
        let tags = TableField {
            mode: Some("REPEATED".into()),
            ..f("tags", "STRING")
        };
        let rec = TableField {
            fields: vec![f("x", "INT64"), tags.clone()],
            ..f("st", "RECORD")
        };
        assert_eq!(ddl_type(&tags), "ARRAY<STRING>");
        assert_eq!(ddl_type(&rec), "STRUCT<`x` INT64, `tags` ARRAY<STRING>>");
        // schemaEvolution addColumns (bigquery-emulator cannot run ALTER TABLE).
        let t = Table::parse("sales.orders", None).unwrap();
        assert_eq!(
            add_column(&t, &tags),
            "ALTER TABLE `sales`.`orders` ADD COLUMN `tags` ARRAY<STRING>"
        );
        let cursor = f("updated_at", "TIMESTAMP");
        assert_eq!(
            incremental("SELECT * FROM `d`.`t`", &cursor),
            "SELECT * FROM (SELECT * FROM `d`.`t`) WHERE `updated_at` > CAST(@watermark AS TIMESTAMP)"
        );
    }
}
