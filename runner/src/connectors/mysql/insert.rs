//! Multi-row `INSERT … VALUES (…),(…)` statements built as text in a reused buffer, each kept
//! under the session's statement size (below `max_allowed_packet`).

use arrow::array::{ArrayRef, RecordBatch};
use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use super::literal::{LiteralError, Values, prepare};
use super::quote;
use crate::connectors::formats::convert::value_text;
use crate::error::{BadRow, Error, Result};

/// A column written: where it is in the batches and how its values are written.
#[derive(Clone, Debug)]
pub(super) struct InsertColumn {
    /// Index in the input batches.
    pub index: usize,
    pub name: String,
    /// Its target column is MariaDB's `uuid`: 16-byte values are written as canonical text.
    pub uuid_text: bool,
}

/// Builds and sends the INSERT statements of one load.
pub(super) struct Inserter<'a> {
    at: &'a str,
    columns: &'a [InsertColumn],
    /// `INSERT INTO t (a, b) VALUES `.
    head: String,
    /// ` ON DUPLICATE KEY UPDATE …` for upserts, else empty.
    tail: String,
    limit: usize,
    statement: String,
    row: String,
}

impl<'a> Inserter<'a> {
    /// `upsert_key`: the key of an upsert, whose other columns take the new values.
    pub fn new(
        at: &'a str,
        table_sql: &str,
        columns: &'a [InsertColumn],
        upsert_key: Option<&[String]>,
        limit: usize,
    ) -> Self {
        let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        let head = format!("INSERT INTO {table_sql} ({}) VALUES ", names.join(", "));
        let tail = match upsert_key {
            None => String::new(),
            Some(key) => {
                let mut updated: Vec<&InsertColumn> = columns
                    .iter()
                    .filter(|c| !key.iter().any(|k| k.eq_ignore_ascii_case(&c.name)))
                    .collect();
                // All columns in the key: a duplicate changes nothing, but MySQL needs one
                // assignment.
                if updated.is_empty() {
                    updated = columns.iter().take(1).collect();
                }
                let sets: Vec<String> = updated
                    .iter()
                    .map(|c| format!("{0} = VALUES({0})", quote(&c.name)))
                    .collect();
                format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
            }
        };
        Self {
            at,
            columns,
            head,
            tail,
            limit,
            statement: String::new(),
            row: String::new(),
        }
    }

    /// Inserts every row of the batch; `first_row` counts the rows of the load before it, so
    /// errors name a row of the whole load (from 1).
    pub async fn insert(
        &mut self,
        conn: &mut MySqlConnection,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<()> {
        let prepared = self
            .columns
            .iter()
            .map(|c| {
                batch
                    .columns()
                    .get(c.index)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{}: the batch has no column \"{}\"",
                            self.at, c.name
                        ))
                    })
                    .and_then(|a| prepare(a).map_err(|e| column_error(self.at, &c.name, e)))
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let values = prepared
            .iter()
            .zip(self.columns)
            .map(|(array, c)| {
                Values::of(array, c.uuid_text).map_err(|e| column_error(self.at, &c.name, e))
            })
            .collect::<Result<Vec<_>>>()?;

        self.statement.clear();
        self.statement.push_str(&self.head);
        let mut rows_in_statement = 0u64;
        let mut statement_first = first_row + 1;
        for row in 0..batch.num_rows() {
            let row_number = first_row + row as u64 + 1;
            self.row.clear();
            self.row.push('(');
            for (i, (v, column)) in values.iter().zip(self.columns).enumerate() {
                if i > 0 {
                    self.row.push_str(", ");
                }
                v.write(&mut self.row, row).map_err(|reason| {
                    let mut bad = BadRow::new(
                        format!("{}, row {row_number} of the load", self.at),
                        format!("the value {reason}"),
                    )
                    .column(&column.name);
                    if let Some(array) = prepared.get(i) {
                        bad = bad.value(value_text(array.as_ref(), row));
                    }
                    Error::from(bad)
                })?;
            }
            self.row.push(')');
            let full = self.statement.len() + 1 + self.row.len() + self.tail.len() > self.limit;
            if full && rows_in_statement > 0 {
                self.send(conn, statement_first).await?;
                self.statement.clear();
                self.statement.push_str(&self.head);
                rows_in_statement = 0;
                statement_first = row_number;
            }
            if rows_in_statement > 0 {
                self.statement.push(',');
            }
            self.statement.push_str(&self.row);
            rows_in_statement += 1;
        }
        if rows_in_statement > 0 {
            self.send(conn, statement_first).await?;
        }
        Ok(())
    }

    async fn send(&mut self, conn: &mut MySqlConnection, first_row: u64) -> Result<()> {
        self.statement.push_str(&self.tail);
        sqlx::raw_sql(AssertSqlSafe(self.statement.as_str()))
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, first_row))
    }

    /// A server error about a statement, with MySQL's `at row N` (counted in the statement)
    /// turned into the row of the load.
    fn error(&self, e: sqlx::Error, first_row: u64) -> Error {
        let text = e.to_string();
        let row = text
            .rfind(" at row ")
            .and_then(|i| text[i + 8..].trim().parse::<u64>().ok());
        match row {
            Some(n) => BadRow::new(
                format!(
                    "{}, row {} of the load",
                    self.at,
                    first_row + n.saturating_sub(1)
                ),
                format!("MySQL refused the row: {}", without_values(&text)),
            )
            .value(text)
            .into(),
            None => Error::database_detail(
                format!("{}: inserting rows from {first_row} of the load", self.at),
                text,
                e,
            ),
        }
    }
}

/// A server error about a row without the values it quotes: MySQL writes them in single
/// quotes after `value:` (`Incorrect integer value: 'x' for column …`), the column after it.
fn without_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("value: '") {
        out.push_str(&rest[..i + "value".len()]);
        let after = &rest[i + "value: '".len()..];
        match after.find("' for column") {
            Some(end) => rest = &after[end + 1..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// A column that cannot be written, with where it is: a failed cast keeps Arrow's error.
fn column_error(at: &str, column: &str, error: LiteralError) -> Error {
    match error {
        LiteralError::Cast { from, to, source } => Error::arrow(
            format!("{at}: column \"{column}\": converting {from} to {to}"),
            source,
        ),
        other => Error::Config(format!("{at}: column \"{column}\": {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_update_every_column_outside_the_key() {
        let columns = vec![
            InsertColumn {
                index: 0,
                name: "id".into(),
                uuid_text: false,
            },
            InsertColumn {
                index: 1,
                name: "na`me".into(),
                uuid_text: false,
            },
        ];
        let key = vec!["ID".to_string()];
        let inserter = Inserter::new("at", "`db`.`t`", &columns, Some(&key), 1000);
        assert_eq!(
            inserter.head,
            "INSERT INTO `db`.`t` (`id`, `na``me`) VALUES "
        );
        assert_eq!(
            inserter.tail,
            " ON DUPLICATE KEY UPDATE `na``me` = VALUES(`na``me`)"
        );
        let inserter = Inserter::new("at", "`t`", &columns[..1], Some(&key), 1000);
        assert_eq!(
            inserter.tail,
            " ON DUPLICATE KEY UPDATE `id` = VALUES(`id`)"
        );
    }

    #[test]
    fn server_errors_lose_the_values_they_quote_and_keep_the_column() {
        assert_eq!(
            without_values(
                "Incorrect integer value: 'Ferdinand-4711' for column `db`.`t`.`n` at row 2"
            ),
            "Incorrect integer value for column `db`.`t`.`n` at row 2"
        );
        assert_eq!(
            without_values("Incorrect date value: 'x' unterminated"),
            "Incorrect date value"
        );
        assert_eq!(
            without_values("Data too long for column 'name' at row 1"),
            "Data too long for column 'name' at row 1"
        );
    }
}
