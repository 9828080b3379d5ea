//! Streaming one CSV file as batches: the header names the columns, then blocks of whole
//! records are cut from the stream on one thread and parsed on the step's threads, and the
//! batches come out in file order with their bad rows sent to the rejects in line order.
//!
//! At most `threads + 1` blocks are read ahead of the batch the consumer takes, so memory
//! stays a few batches whatever the file's size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::blocks::{Block, BlockReader};
use super::decode::{Decoded, Layout, decode};
use super::{first_record, records};
use crate::connectors::formats::CsvSettings;
use crate::engine::Rejects;
use crate::error::{Error, Result};

type Input = Box<dyn Read + Send>;

/// Where decoded blocks come from.
enum Blocks {
    /// The file had no record at all.
    Empty,
    /// Read and parsed on the consumer's thread.
    Inline {
        reader: BlockReader<Input>,
        layout: Arc<Layout>,
        batch_rows: usize,
    },
    Parallel(Parallel),
}

/// Blocks parsed by worker threads, put back in file order.
struct Parallel {
    results: Receiver<(usize, Result<Decoded>)>,
    waiting: BTreeMap<usize, Result<Decoded>>,
    next: usize,
    /// A ticket lets the reading thread read one more block ahead.
    tickets: SyncSender<()>,
}

impl Parallel {
    fn start(
        reader: BlockReader<Input>,
        layout: Arc<Layout>,
        batch_rows: usize,
        threads: usize,
    ) -> Result<Self> {
        let ahead = threads + 1;
        let (tickets, ticket_box) = sync_channel::<()>(ahead);
        for _ in 0..ahead {
            let _ = tickets.try_send(());
        }
        let (jobs, job_queue) = sync_channel::<(usize, Block)>(ahead);
        let (results_tx, results) = sync_channel::<(usize, Result<Decoded>)>(ahead);
        let spawn_failed = |e: std::io::Error| Error::io(format!("reading {}", layout.file), e);
        let reading = results_tx.clone();
        std::thread::Builder::new()
            .name("synqx-csv-read".into())
            .spawn(move || read_ahead(reader, batch_rows, &ticket_box, &jobs, &reading))
            .map_err(spawn_failed)?;
        let queue = Arc::new(Mutex::new(job_queue));
        for _ in 0..threads {
            let (queue, results, layout) = (queue.clone(), results_tx.clone(), layout.clone());
            std::thread::Builder::new()
                .name("synqx-csv-parse".into())
                .spawn(move || parse_blocks(&queue, &results, &layout))
                .map_err(spawn_failed)?;
        }
        Ok(Self {
            results,
            waiting: BTreeMap::new(),
            next: 0,
            tickets,
        })
    }

    /// The next block in file order; `None` after the last.
    fn next(&mut self) -> Option<Result<Decoded>> {
        loop {
            if let Some(found) = self.waiting.remove(&self.next) {
                self.next += 1;
                let _ = self.tickets.try_send(());
                return Some(found);
            }
            // Every thread is gone once the file is read and parsed.
            let (index, decoded) = self.results.recv().ok()?;
            self.waiting.insert(index, decoded);
        }
    }
}

/// Records of one block when `threads` parse at once: the batch shared among the threads, so
/// that the `threads + 1` blocks in flight (each with its bytes, text and typed columns) hold
/// about one and a half batch budgets on two threads; the blocks become the batches. Smaller
/// blocks cost more than they save: each is a batch the writer encodes on its threads.
fn parallel_block_rows(batch_rows: usize, threads: usize) -> usize {
    let share = batch_rows / threads.max(1);
    share.max(1024).min(batch_rows)
}

/// The reading thread: a block for each ticket, until the file ends, an error, or the
/// consumer is gone.
fn read_ahead(
    mut reader: BlockReader<Input>,
    batch_rows: usize,
    tickets: &Receiver<()>,
    jobs: &SyncSender<(usize, Block)>,
    results: &SyncSender<(usize, Result<Decoded>)>,
) {
    let mut index = 0;
    while tickets.recv().is_ok() {
        match reader.next_block(batch_rows) {
            Ok(Some(block)) => {
                if jobs.send((index, block)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = results.send((index, Err(e)));
                return;
            }
        }
        index += 1;
    }
}

/// A parsing thread: blocks from the shared queue until it is closed.
fn parse_blocks(
    queue: &Mutex<Receiver<(usize, Block)>>,
    results: &SyncSender<(usize, Result<Decoded>)>,
    layout: &Layout,
) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((index, block)) = job else { return };
        if results.send((index, decode(&block, layout))).is_err() {
            return;
        }
    }
}

/// Streams one CSV file as batches of `schema`, mapping the file's columns by header name
/// (by position without a header); columns the file lacks are null.
pub struct CsvBatches {
    blocks: Blocks,
    rejects: Rejects,
    file: String,
    done: bool,
}

impl CsvBatches {
    /// `threads` parse blocks at once (1: on the caller's thread).
    pub fn new<R: Read + Send + 'static>(
        input: R,
        settings: &CsvSettings,
        file: &str,
        schema: SchemaRef,
        batch_rows: usize,
        threads: usize,
        rejects: Rejects,
    ) -> Result<Self> {
        let mut reader = BlockReader::new(Box::new(input) as Input, settings.delimiter, file);
        let names = loop {
            // The first record, skipping empty lines as the parser does.
            let Some(block) = reader.next_block(1)? else {
                return Ok(Self {
                    blocks: Blocks::Empty,
                    rejects,
                    file: file.to_string(),
                    done: true,
                });
            };
            let mut first = records(block.bytes.as_slice(), settings);
            if let Some((names, _)) = first_record(&mut first, settings, file)? {
                if !settings.header {
                    reader.unread(block);
                }
                break names;
            }
        };
        let positions = schema
            .fields()
            .iter()
            .map(|f| names.iter().position(|n| n == f.name()))
            .collect();
        let layout = Arc::new(Layout {
            file: file.to_string(),
            schema,
            names,
            positions,
            delimiter: settings.delimiter,
        });
        let batch_rows = batch_rows.max(1);
        let blocks = if threads > 1 {
            Blocks::Parallel(Parallel::start(
                reader,
                layout,
                parallel_block_rows(batch_rows, threads),
                threads,
            )?)
        } else {
            Blocks::Inline {
                reader,
                layout,
                batch_rows,
            }
        };
        Ok(Self {
            blocks,
            rejects,
            file: file.to_string(),
            done: false,
        })
    }

    fn next_decoded(&mut self) -> Option<Result<Decoded>> {
        match &mut self.blocks {
            Blocks::Empty => None,
            Blocks::Inline {
                reader,
                layout,
                batch_rows,
            } => match reader.next_block(*batch_rows) {
                Ok(Some(block)) => Some(decode(&block, layout)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
            Blocks::Parallel(parallel) => parallel.next(),
        }
    }

    /// Sends a block's bad rows to the rejects and returns its good rows.
    fn accept(&self, decoded: Decoded) -> Result<RecordBatch> {
        for bad in decoded.bad {
            self.rejects.reject(
                bad.bad
                    .within(format_args!("{}: line {}", self.file, bad.line)),
            )?;
        }
        Ok(decoded.batch)
    }
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(decoded) = self.next_decoded() else {
                self.done = true;
                return None;
            };
            match decoded.and_then(|d| self.accept(d)) {
                Ok(batch) if batch.num_rows() == 0 => {}
                Ok(batch) => return Some(Ok(batch)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::parallel_block_rows;

    #[test]
    fn parallel_blocks_are_a_share_of_the_batch_never_more() {
        assert_eq!(parallel_block_rows(65_536, 2), 32_768);
        assert_eq!(parallel_block_rows(65_536, 1), 65_536);
        assert_eq!(parallel_block_rows(100_000, 64), 1_562);
        assert_eq!(parallel_block_rows(100_000, 1_000), 1_024);
        assert_eq!(parallel_block_rows(500, 2), 500);
    }
}
