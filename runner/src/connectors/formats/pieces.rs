//! Text formats (CSV, JSON lines) formatted on the step's threads. Formatting values as text
//! is most of the cost of writing them, and one thread formatting while another decodes left
//! a core idle. A batch is cut into pieces of rows, a round of pieces (one per thread) is
//! formatted at once into buffers, and the buffers go out in row order. The buffers are kept
//! from one round to the next, so the text in memory is one piece per thread, not a batch.

use arrow::array::RecordBatch;

use crate::engine::threads;

/// Arrow bytes of a piece: about a megabyte of text each.
const PIECE_BYTES: usize = 1024 * 1024;

/// The buffers of one writer, one per thread.
pub struct Pieces {
    buffers: Vec<Vec<u8>>,
    piece_bytes: usize,
}

impl Pieces {
    /// As many buffers as the step has threads.
    pub fn per_thread() -> Self {
        Self::sized(threads::count(), PIECE_BYTES)
    }

    /// `threads` buffers, pieces of about `piece_bytes` Arrow bytes.
    pub fn sized(threads: usize, piece_bytes: usize) -> Self {
        Self {
            buffers: (0..threads.max(1)).map(|_| Vec::new()).collect(),
            piece_bytes: piece_bytes.max(1),
        }
    }

    /// Formats `batch` piece by piece with `format` (which appends a piece's rows as text to
    /// the buffer; rows must format alone, as CSV and JSON lines do) and hands each piece's
    /// text to `put`, in row order. Stops at the first error.
    pub fn write<E: Send>(
        &mut self,
        batch: &RecordBatch,
        format: impl Fn(&RecordBatch, &mut Vec<u8>) -> Result<(), E> + Sync,
        mut put: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let rows = batch.num_rows();
        let pieces = (batch.get_array_memory_size() / self.piece_bytes).max(self.buffers.len());
        let piece_rows = rows.div_ceil(pieces).max(1);
        let mut start = 0;
        while start < rows {
            let mut round = Vec::with_capacity(self.buffers.len());
            for buffer in self.buffers.iter_mut() {
                if start >= rows {
                    break;
                }
                let len = piece_rows.min(rows - start);
                buffer.clear();
                round.push((batch.slice(start, len), buffer));
                start += len;
            }
            let threads = round.len();
            let formatted = threads::map(round, threads, |(piece, buffer)| format(&piece, buffer));
            for (done, text) in formatted.into_iter().zip(&self.buffers) {
                done?;
                put(text)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// Each id on a line of its own, as a text format would write it.
    fn lines(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), String> {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("not an Int64 column")?;
        for id in ids.values() {
            if *id == 13 {
                return Err("row 13 does not format".into());
            }
            out.extend_from_slice(format!("{id}\n").as_bytes());
        }
        Ok(())
    }

    fn ids(from: i64, to: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..to))],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pieces_come_out_in_row_order_on_any_thread_count_and_size() {
        let batch = ids(100, 1100);
        let expected: String = (100..1100).map(|i| format!("{i}\n")).collect();
        for (threads, piece_bytes) in [(1, usize::MAX), (2, usize::MAX), (3, 64), (2, 1)] {
            let mut pieces = Pieces::sized(threads, piece_bytes);
            let mut out = Vec::new();
            let mut puts = 0;
            let written = pieces.write(&batch, lines, |text| {
                puts += 1;
                out.extend_from_slice(text);
                Ok::<(), String>(())
            });
            assert_eq!(written, Ok(()));
            assert_eq!(String::from_utf8_lossy(&out), expected, "{threads} threads");
            // Small pieces: many rounds, each piece handed over on its own.
            if piece_bytes < 100 {
                assert!(puts > 3 * threads, "{puts} pieces");
            }
        }
    }

    #[test]
    fn the_first_failed_piece_stops_the_write_after_the_pieces_before_it() {
        let mut pieces = Pieces::sized(2, 1);
        let mut out = Vec::new();
        let written = pieces.write(&ids(0, 40), lines, |text| {
            out.extend_from_slice(text);
            Ok::<(), String>(())
        });
        assert_eq!(written, Err("row 13 does not format".into()));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("0\n1\n") && !text.contains("13\n"),
            "{text}"
        );
        assert!(!text.contains("39\n"), "{text}");
    }
}
