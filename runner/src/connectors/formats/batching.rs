//! Rows per batch from the byte budget: memory in flight is bounded by bytes, so a file of
//! wide rows is cut into fewer rows per batch than a file of narrow ones.

/// Most rows one batch holds, however narrow the rows.
pub const MAX_BATCH_ROWS: usize = 1_000_000;

/// Bytes an Arrow column adds to each row besides its value: an offset or a fixed-width slot
/// and a share of the validity bitmap.
const COLUMN_OVERHEAD: f64 = 8.0;

/// Estimated in-memory bytes of one row, from a sample of `sample_bytes` encoded bytes holding
/// `sample_rows` rows of `columns` columns.
pub fn row_bytes(sample_bytes: u64, sample_rows: usize, columns: usize) -> f64 {
    let per_row = if sample_rows == 0 {
        0.0
    } else {
        sample_bytes as f64 / sample_rows as f64
    };
    (per_row + COLUMN_OVERHEAD * columns as f64).max(1.0)
}

/// Rows per batch so that a batch holds about `batch_bytes`.
pub fn rows_per_batch(batch_bytes: usize, row_bytes: f64) -> usize {
    let rows = (batch_bytes as f64 / row_bytes.max(1.0)).floor();
    if rows.is_finite() {
        (rows as usize).clamp(1, MAX_BATCH_ROWS)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_byte_budget_within_bounds() {
        // 100 rows of 1,000 bytes in 2 columns: 1,016 bytes a row.
        let row = row_bytes(100_000, 100, 2);
        assert_eq!(row, 1016.0);
        assert_eq!(rows_per_batch(8 * 1024 * 1024, row), 8256);
        assert_eq!(rows_per_batch(10, row), 1);
        assert_eq!(rows_per_batch(usize::MAX, 1.0), MAX_BATCH_ROWS);
        assert_eq!(row_bytes(0, 0, 0), 1.0);
    }
}
