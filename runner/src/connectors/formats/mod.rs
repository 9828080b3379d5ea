//! File formats (CSV, JSONL, Parquet) shared by every file connector: which files an FQN
//! selects, which format and compression they have, schema inference, and streaming readers
//! and writers. Nothing here touches a file system: readers take a `Read` (or a Parquet
//! `ChunkReader`) and writers a `Write`, so local directories and object stores share them.
//! `read` and `parts` are the source and sink logic of every file store: a store supplies
//! listing, opening (`scan::Opener`) and staging (`parts::PartStore`), nothing else.

pub mod batching;
pub mod convert;
pub mod csv;
pub mod evolution;
pub mod infer;
pub mod jsonl;
pub mod parquet;
pub mod parts;
pub mod pieces;
pub mod read;
pub mod scan;
#[cfg(test)]
pub mod tests;
pub mod write;

use std::io::{BufRead, BufReader, Read};

use globset::{GlobBuilder, GlobMatcher};
use synqx_api::pipeline::{Compression, CsvOptions, Destination, FileFormat, Source as SourceSpec};

use crate::error::{Error, Result};

/// Read buffer of text files: large enough that decoding, not system calls, dominates.
const READ_BUFFER: usize = 256 * 1024;

/// What an asset FQN selects below a connection's root.
#[derive(Clone, Debug)]
pub enum Selection {
    /// One file (or, when it turns out to be a directory, that folder).
    File(String),
    /// Every file below a folder; the prefix ends with `/`.
    Folder(String),
    /// Files matching a glob; `base` is the literal directory part that listing starts at.
    Glob {
        pattern: String,
        base: String,
        matcher: GlobMatcher,
    },
}

impl Selection {
    /// Parses an FQN: a trailing `/` is a folder, `*`, `?`, `[` or `{` make a glob (`**`
    /// crosses directories, `*` does not), anything else is one file.
    pub fn parse(fqn: &str) -> Result<Self> {
        let path = normalise(fqn)?;
        if path.contains(['*', '?', '[', '{']) {
            let matcher = GlobBuilder::new(&path)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Config(format!("asset fqn `{fqn}` is not a valid glob: {e}")))?
                .compile_matcher();
            let literal_dirs: Vec<&str> = path
                .split('/')
                .take_while(|part| !part.contains(['*', '?', '[', '{']))
                .collect();
            let base = literal_dirs
                .iter()
                .map(|d| format!("{d}/"))
                .collect::<String>();
            return Ok(Self::Glob {
                pattern: path,
                base,
                matcher,
            });
        }
        if path.is_empty() || fqn.ends_with('/') {
            return Ok(Self::Folder(if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            }));
        }
        Ok(Self::File(path))
    }

    /// The directory (relative to the root, empty or ending with `/`) that holds every
    /// selected file.
    pub fn base(&self) -> &str {
        match self {
            Self::File(_) => "",
            Self::Folder(prefix) => prefix,
            Self::Glob { base, .. } => base,
        }
    }

    /// Whether a file, named by its path relative to the root, is selected. Hidden files
    /// (`.name`, such as the temporaries of a write in progress) and `_name` markers are
    /// never part of a folder or glob.
    pub fn accepts(&self, relative: &str) -> bool {
        match self {
            Self::File(path) => relative == path,
            Self::Folder(prefix) => relative
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.is_empty() && !hidden(rest)),
            Self::Glob { base, matcher, .. } => {
                relative
                    .strip_prefix(base.as_str())
                    .is_some_and(|rest| !hidden(rest))
                    && matcher.is_match(relative)
            }
        }
    }

    /// The FQN as normalised, for messages.
    pub fn pattern(&self) -> &str {
        match self {
            Self::File(path) | Self::Folder(path) | Self::Glob { pattern: path, .. } => path,
        }
    }
}

/// Whether any component of a relative path is hidden.
fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|part| part.starts_with('.') || part.starts_with('_'))
}

/// An FQN as a relative path: no leading `/` or `./`, no empty or `.` components, and never
/// above the connection's root.
fn normalise(fqn: &str) -> Result<String> {
    let mut parts = Vec::new();
    for part in fqn.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::Config(format!(
                    "asset fqn `{fqn}` must stay below the connection's path (no `..`)"
                )));
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Checks a file source without touching a store: the FQN stays below the Connection's path
/// and is a valid glob, and the compression and CSV options fit the format.
pub fn validate_source(source: &SourceSpec) -> Result<()> {
    let fqn = &source.asset.fqn;
    Selection::parse(fqn)?;
    CsvSettings::from_options(source.csv.as_ref())?;
    if let Some(format) = format_of(source.format, fqn) {
        gzipped(source.compression, format, fqn)
            .map_err(|e| Error::Config(format!("asset {fqn}: {e}")))?;
    }
    Ok(())
}

/// Checks a file destination without touching a store: one file or a folder below the
/// Connection's path, a format, a compression of that format, a mode files can have.
pub fn validate_destination(destination: &Destination) -> Result<()> {
    parts::PartsTarget::resolve(destination).map(drop)
}

/// The format of a source: given, or implied by the FQN's extension.
pub fn format_of(explicit: Option<FileFormat>, fqn: &str) -> Option<FileFormat> {
    explicit.or_else(|| FileFormat::from_path(fqn))
}

/// The file extension of a format, without compression suffix.
pub fn extension(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Csv => "csv",
        FileFormat::Jsonl => "jsonl",
        FileFormat::Parquet => "parquet",
    }
}

/// Whether a text file is gzip-compressed: `compression` when given, else a `.gz` name.
/// Parquet compresses inside the file, so its files are never decompressed as a whole.
pub fn gzipped(explicit: Option<Compression>, format: FileFormat, name: &str) -> Result<bool> {
    if format == FileFormat::Parquet {
        return Ok(false);
    }
    let lower = name.to_ascii_lowercase();
    match explicit {
        Some(Compression::Gzip) => Ok(true),
        Some(Compression::None) => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "compression {other} is not available for {format} files (use gzip or none)"
        ))),
        None if lower.ends_with(".gz") => Ok(true),
        None if lower.ends_with(".zst") => Err(Error::Config(format!(
            "{name}: zstd-compressed {format} files are not supported (use gzip)"
        ))),
        None => Ok(false),
    }
}

/// A text file as a buffered stream, decompressed on the fly (never read whole).
pub fn text_input(raw: Box<dyn Read + Send>, gzip: bool) -> Box<dyn BufRead + Send> {
    if gzip {
        // Multi-member: appending to a `.gz` file adds a gzip member.
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, raw))
    }
}

/// CSV options with their defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvSettings {
    pub delimiter: u8,
    pub header: bool,
}

impl Default for CsvSettings {
    fn default() -> Self {
        Self {
            delimiter: b',',
            header: true,
        }
    }
}

impl CsvSettings {
    /// Checks the options: the delimiter is one ASCII character (`\t` may be written as the
    /// two characters `\t`) other than a quote or line break.
    pub fn from_options(options: Option<&CsvOptions>) -> Result<Self> {
        let mut settings = Self::default();
        let Some(options) = options else {
            return Ok(settings);
        };
        if let Some(text) = options.delimiter.as_deref() {
            settings.delimiter = match text {
                "\\t" => b'\t',
                _ if text.len() == 1 && text.is_ascii() && !matches!(text, "\"" | "\n" | "\r") => {
                    text.as_bytes()[0]
                }
                _ => {
                    return Err(Error::Config(format!(
                        "csv.delimiter must be one ASCII character other than a quote or line break, got `{text}`"
                    )));
                }
            };
        }
        settings.header = options.header.unwrap_or(true);
        Ok(settings)
    }
}

/// One step of a batch iterator: skips empty batches and ends after the end or the first
/// error, so readers only say how to read one batch.
pub(crate) fn next_batch(
    done: &mut bool,
    mut read: impl FnMut() -> Result<Option<arrow::array::RecordBatch>>,
) -> Option<Result<arrow::array::RecordBatch>> {
    while !*done {
        match read() {
            Ok(Some(batch)) if batch.num_rows() > 0 => return Some(Ok(batch)),
            Ok(Some(_)) => {}
            Ok(None) => *done = true,
            Err(e) => {
                *done = true;
                return Some(Err(e));
            }
        }
    }
    None
}
