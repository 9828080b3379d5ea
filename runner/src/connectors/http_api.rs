//! What the connectors of HTTP warehouse APIs (snowflake, bigquery) share: how a failed
//! exchange is classified and reported, statements as messages quote them, casts that refuse
//! to lose values, and batches cut to the byte budget and streamed from a reading task.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

use crate::check::CheckReason;
use crate::error::{Error, Result};

/// The extension name JSON text carries, as the other connectors give it.
pub const JSON_EXTENSION: &str = "arrow.json";

/// Why an exchange failed, in the user's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No answer: refused, unknown host, timed out.
    Unreachable,
    /// Wrong credentials, an expired session, a missing privilege.
    Unauthorized,
    /// A database, schema, dataset or table that does not exist.
    NotFound,
    /// The service refused a statement (syntax, types, constraints).
    Statement,
    /// An answer this client cannot read.
    Protocol,
}

impl Kind {
    /// The reason `synqx check` reports for a failed probe.
    pub fn reason(self) -> CheckReason {
        match self {
            Kind::Unauthorized => CheckReason::Unauthorized,
            Kind::NotFound => CheckReason::NotFound,
            Kind::Unreachable | Kind::Statement | Kind::Protocol => CheckReason::Unreachable,
        }
    }
}

/// A failed exchange: its kind, the service's error code when it sent one, and the redacted
/// text, which starts with the Connection.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: Kind,
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into(),
        }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(Kind::Protocol, message)
    }

    /// The failure as the engine's error: `at` (the Connection) as context, the rest of the
    /// text, scrubbed once more by `redact`, as the message.
    pub fn into_error(self, at: &str, redact: impl Fn(&str) -> String) -> Error {
        let prefix = format!("{at}: ");
        let detail = redact(self.message.strip_prefix(&prefix).unwrap_or(&self.message));
        Error::database_detail(at, detail, self)
    }
}

/// What reqwest says about a failed request, without the URL (chunk and upload URLs are
/// presigned) and with the causes it wraps.
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A statement as messages quote it: its first words, never its values.
pub fn statement(sql: &str) -> String {
    let words: String = sql
        .split_whitespace()
        .take(12)
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() < sql.trim().len() {
        format!("`{words} …`")
    } else {
        format!("`{words}`")
    }
}

/// Whether a field carries JSON text.
pub fn is_json(field: &Field) -> bool {
    field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == JSON_EXTENSION)
}

/// The field marked as JSON text.
pub fn json_field(field: Field) -> Field {
    field.with_metadata(
        [(
            "ARROW:extension:name".to_string(),
            JSON_EXTENSION.to_string(),
        )]
        .into(),
    )
}

/// Why [`checked_cast`] failed: Arrow has no such cast, or a value does not fit.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// `row` counts from 1. The value is not named: the message may reach a run's status.
    #[error("row {row}: the value does not fit {target}")]
    DoesNotFit { row: usize, target: DataType },
}

/// A cast that fails instead of turning values into nulls, naming the first such row (not its
/// value: the message may reach a run's status).
pub fn checked_cast(array: &ArrayRef, target: &DataType) -> Result<ArrayRef, CastError> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    let out = cast(array, target)?;
    if out.null_count() > array.null_count() {
        let row = (0..array.len())
            .find(|&i| array.is_valid(i) && out.is_null(i))
            .unwrap_or(0);
        return Err(CastError::DoesNotFit {
            row: row + 1,
            target: target.clone(),
        });
    }
    Ok(out)
}

/// Each value of a binary column (Binary, LargeBinary, BinaryView, FixedSizeBinary) through
/// `f`, `None` for null.
pub fn binary_values<T>(
    array: &ArrayRef,
    f: impl Fn(&[u8]) -> T,
) -> Result<Vec<Option<T>>, ArrowError> {
    let bytes = cast(array, &DataType::LargeBinary)?;
    Ok(arrow::array::AsArray::as_binary::<i64>(&bytes)
        .iter()
        .map(|b| b.map(&f))
        .collect())
}

/// A batch cut into slices of about `budget` bytes.
pub fn cut(batch: &RecordBatch, budget: usize) -> Vec<RecordBatch> {
    let size = batch.get_array_memory_size().max(1);
    let rows = batch.num_rows();
    if size <= budget || rows <= 1 {
        return vec![batch.clone()];
    }
    let step = rows.div_ceil(size.div_ceil(budget.max(1))).max(1);
    (0..rows)
        .step_by(step)
        .map(|o| batch.slice(o, step.min(rows - o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn statements_are_quoted_by_their_first_words() {
        assert_eq!(statement("SELECT 1"), "`SELECT 1`");
        let long = "INSERT INTO T (A, B, C, D, E, F, G, H) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
        assert_eq!(
            statement(long),
            "`INSERT INTO T (A, B, C, D, E, F, G, H) VALUES …`"
        );
    }

    #[test]
    fn a_lossy_cast_names_the_row_and_not_the_value() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("1"), None, Some("x")]));
        assert_eq!(
            checked_cast(&text, &DataType::Int64)
                .unwrap_err()
                .to_string(),
            "row 3: the value does not fit Int64"
        );
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(Arc::ptr_eq(
            &checked_cast(&ints, &DataType::Int64).unwrap(),
            &ints
        ));
    }

    #[test]
    fn batches_are_cut_to_the_budget() {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let batch = RecordBatch::try_from_iter([("id", ids)]).unwrap();
        let parts = cut(&batch, 2000);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
        assert_eq!(cut(&batch, 1 << 20).len(), 1);
    }

    #[test]
    fn failures_become_errors_with_the_connection_as_context() {
        let f = Failure::new(Kind::NotFound, "Connection \"c\": no table t (pw hunter2)");
        let e = f.into_error("Connection \"c\"", |t| t.replace("hunter2", "***"));
        assert_eq!(e.to_string(), "Connection \"c\": no table t (pw ***)");
        assert_eq!(Kind::Statement.reason(), CheckReason::Unreachable);
    }
}
