//! Cutting a CSV byte stream into blocks of whole records (see `split`), each with the line
//! number it starts at, so that blocks can be parsed independently and in parallel.

use std::io::Read;

use super::split::Splitter;
use crate::error::{Error, Result};

/// Bytes read from the input at a time.
const CHUNK: usize = 256 * 1024;

/// Whole records of a file.
pub struct Block {
    pub bytes: Vec<u8>,
    /// The parser's line number at the start of the block (1 + line feeds before it).
    pub first_line: u64,
    /// Records the block holds, counting empty lines: the most rows it can give.
    pub records: usize,
}

/// Reads blocks of at most `records` records from a stream.
pub struct BlockReader<R> {
    input: R,
    splitter: Splitter,
    /// Read but not yet handed out: the start of the next block, at a record boundary.
    carry: Vec<u8>,
    /// Line number at the start of `carry`.
    line: u64,
    eof: bool,
    file: String,
}

impl<R: Read> BlockReader<R> {
    pub fn new(input: R, delimiter: u8, file: &str) -> Self {
        Self {
            input,
            splitter: Splitter::new(delimiter),
            carry: Vec::new(),
            line: 1,
            eof: false,
            file: file.to_string(),
        }
    }

    /// The next block of at most `records` records (empty lines count); `None` at the end.
    pub fn next_block(&mut self, records: usize) -> Result<Option<Block>> {
        let records = records.max(1);
        let (mut scanned, mut found, mut newlines) = (0, 0, 0);
        loop {
            if scanned < self.carry.len() {
                let scan = self.splitter.scan(&self.carry[scanned..], records - found);
                scanned += scan.scanned;
                found += scan.records;
                newlines += scan.newlines;
                if found == records {
                    break;
                }
            }
            if self.eof {
                break;
            }
            self.fill()?;
        }
        if self.carry.is_empty() {
            return Ok(None);
        }
        // The next block starts with what follows the cut, in a buffer as large as this one.
        let mut rest = Vec::with_capacity(self.carry.capacity());
        rest.extend_from_slice(&self.carry[scanned..]);
        self.carry.truncate(scanned);
        let bytes = std::mem::replace(&mut self.carry, rest);
        let block = Block {
            bytes,
            first_line: self.line,
            records: found,
        };
        self.line += newlines;
        Ok(Some(block))
    }

    /// Puts a block back in front of what is left (a first record that was data, not a
    /// header).
    pub fn unread(&mut self, block: Block) {
        let mut bytes = block.bytes;
        bytes.extend_from_slice(&self.carry);
        self.carry = bytes;
        self.line = block.first_line;
    }

    /// Reads the next chunk of input into `carry`.
    fn fill(&mut self) -> Result<()> {
        let before = self.carry.len();
        // `read_to_end` reads into the buffer's spare room (nothing to zero first) and
        // retries interrupted reads.
        match (&mut self.input)
            .take(CHUNK as u64)
            .read_to_end(&mut self.carry)
        {
            Ok(read) => self.eof = read == 0,
            Err(e) => {
                self.carry.truncate(before);
                return Err(Error::io(format!("reading {}", self.file), e));
            }
        }
        Ok(())
    }
}
