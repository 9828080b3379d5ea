//! A row that cannot be read, converted or written. Its message names where the row is, the
//! column and the problem; the value (and the whole row, where the system gave it) is kept
//! apart. Messages leave the process (a run's status, Events, the termination message, logs,
//! metrics) and may be read by people who must not see the data, so they carry positions,
//! columns and problems only; the value goes to the step's rejected file, which the message
//! names once it is written.

use std::fmt;
use std::path::{Path, PathBuf};

/// A bad row: where, which column, what is wrong, and the data that is never displayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BadRow {
    at: String,
    column: Option<String>,
    problem: String,
    value: Option<String>,
    row: Option<String>,
    kept_in: Option<PathBuf>,
    hints: Vec<String>,
}

impl BadRow {
    /// A bad row at `at` (`orders.csv: line 4`, `table shop.orders, row 12`) and what is wrong
    /// with it, worded without the value (`cannot parse the value as int64`).
    pub fn new(at: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            problem: problem.into(),
            ..Self::default()
        }
    }

    /// The column the problem is in.
    pub fn column(mut self, name: impl Into<String>) -> Self {
        self.column = Some(name.into());
        self
    }

    /// The offending value, for the rejected file only.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// The whole row as the source had it (a CSV line, a JSON object), for the rejected file
    /// only.
    pub fn row(mut self, row: impl Into<String>) -> Self {
        self.row = Some(row.into());
        self
    }

    /// What the user can do, shown after the problem.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The same bad row, its place prefixed with a wider one (`step "load"`, a batch).
    pub fn within(mut self, outer: impl fmt::Display) -> Self {
        self.at = if self.at.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.at)
        };
        self
    }

    /// Records that the rejected file at `path` holds the row.
    pub fn kept_in(mut self, path: &Path) -> Self {
        self.kept_in = Some(path.to_path_buf());
        self
    }

    /// Where the row is.
    pub fn location(&self) -> &str {
        &self.at
    }

    /// What is wrong, without the value.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The column the problem is in, if one is.
    pub fn column_name(&self) -> Option<&str> {
        self.column.as_deref()
    }

    /// The rejected file that holds the row, once written.
    pub fn rejected_file(&self) -> Option<&Path> {
        self.kept_in.as_deref()
    }

    /// Whether the row carries data (a value or the row) that only the rejected file may hold.
    pub fn has_data(&self) -> bool {
        self.value.is_some() || self.row.is_some()
    }

    /// The line of the rejected file: everything known about the row, the data included.
    pub fn record(&self) -> serde_json::Value {
        let mut record = serde_json::Map::new();
        record.insert("location".into(), self.at.clone().into());
        if let Some(column) = &self.column {
            record.insert("column".into(), column.clone().into());
        }
        record.insert("problem".into(), self.problem.clone().into());
        if let Some(value) = &self.value {
            record.insert("value".into(), value.clone().into());
        }
        if let Some(row) = &self.row {
            record.insert("row".into(), row.clone().into());
        }
        serde_json::Value::Object(record)
    }
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.at)?;
        if let Some(column) = &self.column {
            let sep = if self.at.is_empty() { "" } else { ", " };
            write!(f, "{sep}column \"{column}\"")?;
        }
        if !self.at.is_empty() || self.column.is_some() {
            f.write_str(": ")?;
        }
        f.write_str(&self.problem)?;
        if let Some(path) = &self.kept_in {
            write!(f, "; the row is in the rejected file {}", path.display())?;
        }
        for hint in &self.hints {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_place_column_and_problem_and_never_the_data() {
        let bad = BadRow::new("orders.csv: line 4", "cannot parse the value as float64")
            .column("total")
            .value("Ferdinand-4711")
            .row("3,Ferdinand-4711")
            .hint("fix the file");
        let shown = bad.to_string();
        assert_eq!(
            shown,
            "orders.csv: line 4, column \"total\": cannot parse the value as float64; fix the file"
        );
        assert_eq!(
            bad.record(),
            serde_json::json!({"location": "orders.csv: line 4", "column": "total",
                "problem": "cannot parse the value as float64", "value": "Ferdinand-4711",
                "row": "3,Ferdinand-4711"})
        );
        let kept = bad.kept_in(Path::new("/state/rejected/p/s-1.jsonl"));
        assert!(
            kept.to_string()
                .contains("; the row is in the rejected file /state/rejected/p/s-1.jsonl"),
            "{kept}"
        );
        assert!(!kept.to_string().contains("Ferdinand"), "{kept}");
    }

    #[test]
    fn a_wider_place_is_prefixed() {
        let bad = BadRow::new("", "the document is too large")
            .column("doc")
            .within("table t, row 2");
        assert_eq!(
            bad.to_string(),
            "table t, row 2, column \"doc\": the document is too large"
        );
        let bare = BadRow::new("", "no place");
        assert_eq!(bare.to_string(), "no place");
        assert!(!bare.has_data());
    }
}
