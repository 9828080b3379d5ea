//! Incremental cursors: the lower bound pushed down to sources, and the highest value seen.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::cmp::gt;
use arrow::compute::{SortOptions, cast, filter_record_batch};
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use arrow_ord::ord::make_comparator;
use chrono::{DateTime, NaiveDateTime};
use synqx_api::duration::parse_duration;
use synqx_api::run::watermark_too_long;

use crate::error::{Context, Error, Result};

/// Field metadata that says how a text cursor column orders, when not as text: the value
/// [`STREAM_ID_ORDER`] marks Redis stream entry ids (`<ms>-<seq>`, ordered as number pairs).
/// What to do about a watermark that does not fit its cursor column, for every message that
/// refuses one.
pub const FIX_WATERMARK: &str =
    "reset it with `synqx state reset` or set it with `synqx state set`";

pub const CURSOR_ORDER: &str = "synqx.cursor.order";
/// See [`CURSOR_ORDER`].
pub const STREAM_ID_ORDER: &str = "stream-id";

/// A Redis stream entry id as its two numbers.
pub fn stream_id(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Rows whose `column` is greater than `after` (exclusive). `after` is the stored watermark
/// minus the lookback window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorFilter {
    pub column: String,
    pub after: String,
}

/// The lower bound for a run: the watermark moved back by `lookback` (a duration for time
/// cursors, a number for numeric ones). `None` when there is no watermark yet.
pub fn lower_bound(watermark: Option<&str>, lookback: Option<&str>) -> Result<Option<String>> {
    let Some(wm) = watermark else { return Ok(None) };
    let Some(lb) = lookback.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(Some(wm.to_string()));
    };
    if let (Ok(w), Ok(l)) = (wm.parse::<i64>(), lb.parse::<i64>()) {
        return Ok(Some(w.saturating_sub(l).to_string()));
    }
    if let (Ok(w), Ok(l)) = (wm.parse::<f64>(), lb.parse::<f64>()) {
        return Ok(Some((w - l).to_string()));
    }
    let window =
        parse_duration(lb).map_err(|e| Error::Config(format!("incremental.lookback: {e}")))?;
    let window = chrono::Duration::from_std(window)
        .map_err(|e| Error::Config(format!("incremental.lookback: {e}")))?;
    // Checked: a watermark near the start of the calendar moved back by the window is an
    // error, not a panic.
    let before = || {
        Error::Config(format!(
            "incremental.lookback `{lb}` moves watermark `{wm}` before the earliest time there is"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(wm) {
        let bound = t.checked_sub_signed(window).ok_or_else(before)?;
        return Ok(Some(bound.to_rfc3339()));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(wm, format) {
            let bound = t.checked_sub_signed(window).ok_or_else(before)?;
            return Ok(Some(bound.format("%Y-%m-%dT%H:%M:%S%.f").to_string()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(wm, "%Y-%m-%d") {
        let days = chrono::Days::new(u64::try_from(window.num_days().max(1)).unwrap_or(1));
        let bound = d.checked_sub_days(days).ok_or_else(before)?;
        return Ok(Some(bound.to_string()));
    }
    Err(Error::Config(format!(
        "incremental.lookback `{lb}` cannot be applied to watermark `{wm}` (a number needs a numeric lookback, a time a duration)"
    )))
}

/// `after` as a one-element array of the column's type, for comparisons.
fn bound_as(after: &str, data_type: &DataType, column: &str) -> Result<ArrayRef> {
    let text: ArrayRef = Arc::new(StringArray::from(vec![after]));
    let typed = cast(&text, data_type).context(|| format!("watermark `{after}` does not convert to the type {data_type} of cursor column \"{column}\""))?;
    if typed.null_count() > 0 {
        return Err(Error::Config(format!(
            "watermark `{after}` does not convert to the type {data_type} of cursor column \"{column}\" ({FIX_WATERMARK})"
        )));
    }
    Ok(typed)
}

/// Where the cursor column `column` is in `batch`; a source without it is a spec error that
/// lists the columns it has.
fn cursor_index(batch: &RecordBatch, column: &str) -> Result<usize> {
    let schema = batch.schema();
    schema.index_of(column).map_err(|_| {
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::Config(format!(
            "incremental cursor column \"{column}\" is not in the source (columns: {})",
            columns.join(", ")
        ))
    })
}

/// Keeps the rows of `batch` whose cursor is above the bound.
pub fn filter_batch(batch: &RecordBatch, filter: &CursorFilter) -> Result<RecordBatch> {
    let column = batch.column(cursor_index(batch, &filter.column)?);
    let bound = bound_as(&filter.after, column.data_type(), &filter.column)?;
    let keep: BooleanArray = gt(column, &Scalar::new(bound))
        .context(|| format!("comparing cursor column \"{}\"", filter.column))?;
    filter_record_batch(batch, &keep).context(|| "filtering rows by cursor".to_string())
}

/// The highest cursor value seen so far, compared in the column's own type.
#[derive(Debug)]
pub struct MaxTracker {
    column: String,
    best: Option<ArrayRef>,
}

impl MaxTracker {
    pub fn new(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            best: None,
        }
    }

    /// Looks at one batch.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let index = cursor_index(batch, &self.column)?;
        let column = batch.column(index);
        if column.len() == column.null_count() {
            return Ok(());
        }
        let schema = batch.schema();
        let field = schema.field(index);
        if field.metadata().get(CURSOR_ORDER).map(String::as_str) == Some(STREAM_ID_ORDER) {
            return self.observe_stream_ids(column);
        }
        let cmp = make_comparator(column.as_ref(), column.as_ref(), SortOptions::default())
            .context(|| format!("cursor column \"{}\" cannot be ordered", self.column))?;
        let mut max: Option<usize> = None;
        for i in 0..column.len() {
            if column.is_null(i) {
                continue;
            }
            if max.is_none_or(|m| cmp(i, m).is_gt()) {
                max = Some(i);
            }
        }
        let Some(m) = max else { return Ok(()) };
        let candidate = column.slice(m, 1);
        let better = match &self.best {
            None => true,
            Some(best) if best.data_type() != candidate.data_type() => true,
            Some(best) => {
                make_comparator(candidate.as_ref(), best.as_ref(), SortOptions::default())
                    .context(|| format!("comparing cursor column \"{}\"", self.column))?(
                    0, 0
                )
                .is_gt()
            }
        };
        if better {
            self.check_length(&candidate)?;
            self.best = Some(candidate);
        }
        Ok(())
    }

    /// A new highest value must fit a watermark: refused while reading, before the sink
    /// commits anything, rather than after rows were written and the watermark cannot be kept.
    fn check_length(&self, candidate: &ArrayRef) -> Result<()> {
        let text = array_value_to_string(candidate.as_ref(), 0)
            .context(|| format!("formatting cursor column \"{}\"", self.column))?;
        match watermark_too_long(&text) {
            None => Ok(()),
            Some(problem) => Err(Error::Config(format!(
                "incremental cursor column \"{}\" reached a value that {problem}: choose a cursor column with short values, such as a timestamp or an id",
                self.column
            ))),
        }
    }

    /// Stream entry ids compare as number pairs: `10-0` is after `9-5`.
    fn observe_stream_ids(&mut self, column: &ArrayRef) -> Result<()> {
        let Some(text) = column.as_any().downcast_ref::<StringArray>() else {
            return Err(Error::Config(format!(
                "cursor column \"{}\" holds stream ids but is not text",
                self.column
            )));
        };
        let best = self
            .best
            .as_ref()
            .and_then(|b| b.as_any().downcast_ref::<StringArray>())
            .and_then(|b| stream_id(b.value(0)));
        let mut max = best.map(|id| (id, None));
        for value in text.iter().flatten() {
            let Some(id) = stream_id(value) else { continue };
            if max.is_none_or(|(m, _)| id > m) {
                max = Some((id, Some(value)));
            }
        }
        if let Some((_, Some(value))) = max {
            let best: ArrayRef = Arc::new(StringArray::from(vec![value]));
            self.check_length(&best)?;
            self.best = Some(best);
        }
        Ok(())
    }

    /// The highest value as text, in the form the source can parse back.
    pub fn value(&self) -> Result<Option<String>> {
        let Some(best) = &self.best else {
            return Ok(None);
        };
        array_value_to_string(best.as_ref(), 0)
            .context(|| format!("formatting cursor column \"{}\"", self.column))
            .map(Some)
    }
}

/// The later of two watermarks of the same column; the new one wins when they cannot be
/// compared as numbers or times.
pub fn later(old: Option<&str>, new: Option<&str>) -> Option<String> {
    match (old, new) {
        (None, n) => n.map(str::to_string),
        (o, None) => o.map(str::to_string),
        (Some(o), Some(n)) => {
            if let (Some(a), Some(b)) = (stream_id(o), stream_id(n)) {
                return Some(if b >= a { n } else { o }.to_string());
            }
            let newer = match (o.parse::<f64>(), n.parse::<f64>()) {
                (Ok(a), Ok(b)) => b >= a,
                _ => match (
                    DateTime::parse_from_rfc3339(o),
                    DateTime::parse_from_rfc3339(n),
                ) {
                    (Ok(a), Ok(b)) => b >= a,
                    _ => n >= o,
                },
            };
            Some(if newer { n } else { o }.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(column: ArrayRef) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "c",
            column.data_type().clone(),
            true,
        )]));
        RecordBatch::try_new(schema, vec![column]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn lookback_moves_the_bound_back() {
        assert_eq!(
            lower_bound(Some("100"), Some("10")).ok().flatten(),
            Some("90".into())
        );
        assert_eq!(
            lower_bound(Some("2024-01-01T02:00:00+00:00"), Some("2h"))
                .ok()
                .flatten(),
            Some("2024-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            lower_bound(Some("2024-01-01 02:00:00"), Some("30m"))
                .ok()
                .flatten(),
            Some("2024-01-01T01:30:00".into())
        );
        assert_eq!(lower_bound(None, Some("2h")).ok().flatten(), None);
        assert!(lower_bound(Some("abc"), Some("2h")).is_err());
    }

    #[test]
    fn filter_keeps_rows_above_the_bound_in_the_column_type() {
        let b = batch(Arc::new(Int64Array::from(vec![
            Some(5),
            Some(10),
            None,
            Some(11),
            Some(100),
        ])));
        let out = filter_batch(
            &b,
            &CursorFilter {
                column: "c".into(),
                after: "10".into(),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.num_rows(), 2);
        let err = filter_batch(
            &b,
            &CursorFilter {
                column: "c".into(),
                after: "ten".into(),
            },
        );
        assert!(err.is_err());
        let missing = filter_batch(
            &b,
            &CursorFilter {
                column: "x".into(),
                after: "1".into(),
            },
        );
        assert!(
            missing
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("not in the source (columns: c)")
        );
    }

    #[test]
    fn max_is_tracked_across_batches_and_round_trips() {
        let mut t = MaxTracker::new("c");
        let ts = |v: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("+00:00"))
        };
        t.observe(&batch(ts(vec![Some(1_700_000_000_000_000), None])))
            .unwrap_or_else(|e| panic!("{e}"));
        t.observe(&batch(ts(vec![Some(1_600_000_000_000_000)])))
            .unwrap_or_else(|e| panic!("{e}"));
        let v = t.value().ok().flatten().unwrap_or_default();
        assert!(v.starts_with("2023-11-14T22:13:20"), "{v}");
        // The text parses back to the same type for the next run's filter.
        let b = batch(ts(vec![
            Some(1_700_000_000_000_000),
            Some(1_700_000_000_000_001),
        ]));
        let out = filter_batch(
            &b,
            &CursorFilter {
                column: "c".into(),
                after: v,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.num_rows(), 1);

        let missing = MaxTracker::new("x")
            .observe(&b)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            missing,
            "incremental cursor column \"x\" is not in the source (columns: c)"
        );
    }

    #[test]
    fn a_cursor_value_too_long_for_a_watermark_fails_while_reading() {
        let mut t = MaxTracker::new("c");
        let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
        t.observe(&batch(text("a")))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = t
            .observe(&batch(text(&"z".repeat(5000))))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("incremental cursor column \"c\" reached a value that is 5000 bytes long as JSON; a watermark holds at most 1536"),
            "{e}"
        );
        // The watermark so far stays what it was.
        assert_eq!(t.value().ok().flatten().as_deref(), Some("a"));
    }

    #[test]
    fn a_lookback_before_the_calendar_starts_is_an_error_not_a_panic() {
        for wm in ["-262143-01-02", "-262143-01-01T00:00:00"] {
            let e = lower_bound(Some(wm), Some("3650d"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("before the earliest time there is"), "{wm}: {e}");
        }
    }

    #[test]
    fn later_never_goes_back() {
        assert_eq!(later(Some("10"), Some("9")).as_deref(), Some("10"));
        assert_eq!(later(Some("9"), Some("10")).as_deref(), Some("10"));
        assert_eq!(later(None, Some("a")).as_deref(), Some("a"));
        assert_eq!(
            later(Some("2024-01-02T00:00:00Z"), Some("2024-01-01T00:00:00Z")).as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
    }
}
