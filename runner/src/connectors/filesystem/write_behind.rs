//! A staged file written behind: every few MiB written, the kernel is asked to start writing
//! them to disk, without waiting for it. The `fsync` that commits the file then waits for its
//! last few MiB instead of all of it: a 123 MB CSV file's `fsync` took 55 ms of a 0.44 s
//! step when nothing had been written back before it (files smaller than the kernel's
//! background threshold stay in the page cache until then). The page cache also holds few
//! dirty pages of a long write, and a pod's memory cgroup counts those.

use std::fs::File;
use std::io::{self, Write};

/// Bytes after which their writeback is started.
pub const WRITE_BEHIND_BYTES: u64 = 8 * 1024 * 1024;

/// A file whose written bytes are handed to the kernel's writeback as they accumulate.
pub struct WriteBehind {
    file: File,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose writeback was started: the ranges before this offset.
    handed: u64,
    /// Ranges whose writeback the kernel agreed to start (`sync_file_range` returned 0).
    ranges: u64,
    /// Every range asked for, as (offset, length).
    #[cfg(test)]
    asked: Vec<(i64, i64)>,
}

impl WriteBehind {
    pub fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            handed: 0,
            ranges: 0,
            #[cfg(test)]
            asked: Vec::new(),
        }
    }

    /// Starts the writeback of what was written since the last range. A refusal loses
    /// nothing: the pages stay dirty and the commit's `fsync` writes them. An error of the
    /// disk during a writeback started here is reported by that `fsync` too: the kernel
    /// keeps it for the file, and the `fsync` goes through the same open file (`sink.rs`
    /// writes through a duplicate of its descriptor).
    fn start_writeback(&mut self) {
        let (Ok(offset), Ok(length)) = (
            i64::try_from(self.handed),
            i64::try_from(self.written - self.handed),
        ) else {
            return;
        };
        #[cfg(test)]
        self.asked.push((offset, length));
        if start_writeback(&self.file, offset, length) {
            self.ranges += 1;
        }
        self.handed = self.written;
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        if self.written - self.handed >= WRITE_BEHIND_BYTES {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writing the range's dirty pages and
/// returns without waiting for them. Whether the kernel took it.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: i64, length: i64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor belongs to `file`, open for the whole call; the call reads no
    // memory of this process and only schedules the writeback of the file's pages.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            length,
            libc::SYNC_FILE_RANGE_WRITE,
        ) == 0
    }
}

/// Elsewhere the commit's `fsync` writes the whole file.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: i64, _length: i64) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_few_mib_written_are_handed_to_the_kernel_and_the_file_is_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("out.csv");
        let file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = WriteBehind::new(file);
        // 20 MiB in 1 MiB writes, each filled with its own byte: two full ranges are
        // handed over (at 8 and 16 MiB), the last 4 MiB wait for the commit's fsync.
        let mut expected = Vec::new();
        for i in 0..20u8 {
            let chunk = vec![b'a' + i; 1024 * 1024];
            writer.write_all(&chunk).unwrap_or_else(|e| panic!("{e}"));
            expected.extend_from_slice(&chunk);
        }
        writer.flush().unwrap_or_else(|e| panic!("{e}"));
        let mib = 1024 * 1024;
        assert_eq!(writer.asked, [(0, 8 * mib), (8 * mib, 8 * mib)]);
        // This machine's kernel (as a node's) starts the writeback it is asked for.
        #[cfg(target_os = "linux")]
        assert_eq!(writer.ranges, 2, "ranges the kernel agreed to write back");
        drop(writer);
        let written = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            written == expected,
            "the file differs from what was written"
        );
    }
}
