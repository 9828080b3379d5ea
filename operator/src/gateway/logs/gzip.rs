//! One step attempt's log as the store keeps it: JSON lines (one [`LogLine`] a line), gzip
//! compressed one batch at a time. Each batch is a whole gzip member (header, data,
//! trailer), and concatenated members are one valid gzip stream, so a file cut short after
//! any batch (the operator killed mid-step) still reads back whole up to that batch. The log
//! is bounded in uncompressed bytes; lines past the bound are counted, and a marker line
//! saying how many were dropped ends the log when its attempt ends.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use synqx_api::gateway::LogLine;

/// The level of the marker line.
const MARKER_LEVEL: &str = "WARN";

/// The writing side of one attempt's log: how much is written, and how much was dropped.
#[derive(Debug)]
pub struct AttemptLog {
    max_bytes: u64,
    written: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl AttemptLog {
    /// A log that already holds `written` uncompressed bytes (0 when new; what a restarted
    /// operator finds in the store otherwise).
    pub fn new(max_bytes: u64, written: u64) -> Self {
        Self {
            max_bytes,
            written,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// The gzip member of the lines that fit the bound (none when no line fits): what to
    /// append to the attempt's file. Once a line does not fit, later ones are dropped too,
    /// so the log never has a hole in its middle.
    pub fn append(&mut self, lines: &[LogLine]) -> std::io::Result<Option<Vec<u8>>> {
        let mut batch = Vec::new();
        for line in lines {
            let mut json = serde_json::to_vec(line).map_err(std::io::Error::other)?;
            json.push(b'\n');
            let len = u64::try_from(json.len()).unwrap_or(u64::MAX);
            let fits = self.dropped_lines == 0
                && self
                    .written
                    .checked_add(len)
                    .is_some_and(|total| total <= self.max_bytes);
            if fits {
                self.written += len;
                batch.extend_from_slice(&json);
            } else {
                self.dropped_lines = self.dropped_lines.saturating_add(1);
                self.dropped_bytes = self.dropped_bytes.saturating_add(len);
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        member(&batch).map(Some)
    }

    /// Uncompressed bytes of the log so far, the marker included: where the next member
    /// starts (object stores name members by it).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The member of the marker line when lines were dropped: what ends the log.
    pub fn finish(&mut self, time: String) -> std::io::Result<Option<Vec<u8>>> {
        if self.dropped_lines == 0 {
            return Ok(None);
        }
        let marker = LogLine {
            time,
            level: Some(MARKER_LEVEL.into()),
            text: marker_text(self.max_bytes, self.dropped_lines, self.dropped_bytes),
        };
        let mut json = serde_json::to_vec(&marker).map_err(std::io::Error::other)?;
        json.push(b'\n');
        self.written = self
            .written
            .saturating_add(u64::try_from(json.len()).unwrap_or(u64::MAX));
        member(&json).map(Some)
    }
}

/// The text of the marker line.
pub fn marker_text(max_bytes: u64, lines: u64, bytes: u64) -> String {
    format!(
        "[synqx] log truncated: it reached its bound of {max_bytes} bytes (--logs-max-bytes); \
         {lines} later lines ({bytes} bytes) were dropped"
    )
}

/// `data` as one gzip member.
fn member(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The lines of a stored log (every whole member). A last member cut short (the operator
/// killed while appending it) is left out; a line that is not a [`LogLine`] is kept as text,
/// so nothing readable is lost.
pub fn decode(stored: &[u8]) -> Vec<LogLine> {
    let (_, text) = whole_members(stored);
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|_| LogLine {
                time: String::new(),
                level: None,
                text: l.to_string(),
            })
        })
        .collect()
}

/// The length of the stored log's whole members and their uncompressed bytes. Appending
/// after a damaged member would hide everything after it from readers, so a store cuts
/// the file to this length before it appends again.
pub fn whole_members(stored: &[u8]) -> (usize, Vec<u8>) {
    let mut rest = stored;
    let mut text = Vec::new();
    while !rest.is_empty() {
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        let mut member = Vec::new();
        if decoder.read_to_end(&mut member).is_err() {
            break;
        }
        text.extend_from_slice(&member);
        rest = decoder.into_inner();
    }
    (stored.len() - rest.len(), text)
}
