//! Reading a set of files as one asset: the schema of the read (inferred once, before the
//! first row), then each file as a stream of batches of that schema. File connectors supply
//! the listing and an [`Opener`]; everything format-specific is here.

use std::collections::BTreeMap;
use std::io::Read;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::file::reader::ChunkReader;
use synqx_api::pipeline::{Compression, FileFormat};

use super::csv::{CsvBatches, CsvSampler};
use super::infer::{SAMPLE_RECORDS, apply_overrides, merge_columns};
use super::jsonl::{JsonlBatches, JsonlSampler};
use super::parquet::{ParquetBatches, file_schema};
use super::{CsvSettings, gzipped, text_input};
use crate::engine::Rejects;
use crate::error::{Error, Result};

/// How the files of a source are read.
#[derive(Clone, Debug)]
pub struct ReadSpec {
    pub format: FileFormat,
    pub compression: Option<Compression>,
    pub csv: CsvSettings,
    /// `columns`: column name to type name.
    pub overrides: BTreeMap<String, String>,
}

/// Opens files by the name they were listed under.
pub trait Opener: Send + Sync {
    /// What Parquet reads byte ranges from (a local file, or an object's bytes).
    type Chunks: ChunkReader + 'static;
    /// The file as a byte stream, still compressed.
    fn stream(&self, name: &str) -> Result<Box<dyn Read + Send>>;
    /// The file for random access.
    fn chunks(&self, name: &str) -> Result<Self::Chunks>;
    /// The file for reading only its Parquet footer (schema inference, appends): a store
    /// where every random read is a request can fetch just the tail instead of the file.
    fn footer(&self, name: &str) -> Result<Self::Chunks> {
        self.chunks(name)
    }
}

/// A stream of batches of one file.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// The schema of a read and the estimated in-memory bytes of a row.
#[derive(Clone, Debug)]
pub struct Scan {
    pub schema: SchemaRef,
    pub row_bytes: f64,
}

fn text<O: Opener>(
    spec: &ReadSpec,
    opener: &O,
    name: &str,
) -> Result<Box<dyn std::io::BufRead + Send>> {
    let gzip = gzipped(spec.compression, spec.format, name)?;
    Ok(text_input(opener.stream(name)?, gzip))
}

/// Infers the schema of `files` (named as listed, in read order). Text formats sample the
/// first records, across files when the first is short; a later file's header that names new
/// columns adds them (sampling that file for their types). Parquet reads every footer: files
/// that disagree on a column's type are an error naming the file. `asset` names the FQN in
/// messages.
pub fn infer<O: Opener>(
    spec: &ReadSpec,
    files: &[String],
    opener: &O,
    asset: &str,
) -> Result<Scan> {
    let Some(first) = files.first() else {
        return Err(Error::Config(format!("{asset}: no file to read")));
    };
    let (schema, row_bytes) = match spec.format {
        FileFormat::Csv => {
            let mut sampler = CsvSampler::default();
            for name in files {
                if sampler.rows() < SAMPLE_RECORDS {
                    sampler.sample(
                        text(spec, opener, name)?,
                        &spec.csv,
                        name,
                        SAMPLE_RECORDS - sampler.rows(),
                    )?;
                } else if spec.csv.header
                    && !sampler.knows(&super::csv::header(
                        text(spec, opener, name)?,
                        &spec.csv,
                        name,
                    )?)
                {
                    sampler.sample(text(spec, opener, name)?, &spec.csv, name, SAMPLE_RECORDS)?;
                }
            }
            sampler.finish().ok_or_else(|| {
                Error::Config(format!(
                    "{asset}: the CSV files are empty (no header row to name the columns)"
                ))
            })?
        }
        FileFormat::Jsonl => {
            let mut sampler = JsonlSampler::default();
            for name in files {
                if sampler.rows() < SAMPLE_RECORDS {
                    sampler.sample(
                        text(spec, opener, name)?,
                        name,
                        SAMPLE_RECORDS - sampler.rows(),
                    )?;
                } else if !sampler
                    .knows(&super::jsonl::first_keys(text(spec, opener, name)?, name)?)
                {
                    sampler.sample(text(spec, opener, name)?, name, SAMPLE_RECORDS)?;
                }
            }
            sampler.finish(asset)?.ok_or_else(|| {
                Error::Config(format!(
                    "{asset}: the JSONL files hold no JSON object to infer columns from"
                ))
            })?
        }
        FileFormat::Parquet => {
            let (mut schema, row_bytes) = file_schema(&opener.footer(first)?, first)?;
            for name in &files[1..] {
                let (other, _) = file_schema(&opener.footer(name)?, name)?;
                schema = merge_columns(&schema, &other, name, first, true)?;
            }
            (schema, row_bytes)
        }
    };
    let schema = apply_overrides(schema, &spec.overrides, asset)?;
    Ok(Scan {
        schema: std::sync::Arc::new(schema),
        row_bytes,
    })
}

/// Opens one file as batches of `schema` of at most `batch_rows` rows; bad rows go to
/// `rejects`.
pub fn open<O: Opener>(
    spec: &ReadSpec,
    name: &str,
    opener: &O,
    schema: SchemaRef,
    batch_rows: usize,
    rejects: Rejects,
) -> Result<Batches> {
    Ok(match spec.format {
        FileFormat::Csv => Box::new(CsvBatches::new(
            text(spec, opener, name)?,
            &spec.csv,
            name,
            schema,
            batch_rows,
            crate::engine::threads::count(),
            rejects,
        )?),
        FileFormat::Jsonl => Box::new(JsonlBatches::new(
            text(spec, opener, name)?,
            name,
            schema,
            batch_rows,
            rejects,
        )),
        FileFormat::Parquet => Box::new(ParquetBatches::new(
            opener.chunks(name)?,
            name,
            schema,
            batch_rows,
            rejects,
        )?),
    })
}
