//! Files read back for assertions: a Parquet file's rows and the codecs its metadata names,
//! and every Parquet part of a folder.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Every row of a Parquet file, as one batch.
pub fn parquet_rows(path: &Path) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: SchemaRef = reader.schema();
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    concat_batches(&schema, &batches).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The codec of every column chunk of every row group, as the file's metadata records them.
pub fn parquet_codecs(path: &Path) -> Vec<Compression> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader =
        SerializedFileReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|group| group.columns().iter().map(|c| c.compression()))
        .collect()
}

/// The `*.parquet` files of a folder (not below it), sorted; hidden files are left out.
pub fn parquet_parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    parts.sort();
    parts
}

/// Every row of every Parquet part of a folder, as one batch (the parts share one schema).
pub fn parquet_folder_rows(dir: &Path) -> RecordBatch {
    let parts = parquet_parts(dir);
    let batches: Vec<RecordBatch> = parts.iter().map(|p| parquet_rows(p)).collect();
    let Some(first) = batches.first() else {
        panic!("{} holds no Parquet part", dir.display());
    };
    concat_batches(&first.schema(), &batches)
        .unwrap_or_else(|e| panic!("{}: the parts differ: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::ZstdLevel;
    use parquet::file::properties::WriterProperties;

    use super::*;

    fn write(path: &Path, values: Vec<i64>, compression: Compression) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
            .unwrap_or_else(|e| panic!("{e}"));
        let file = File::create(path).unwrap_or_else(|e| panic!("{e}"));
        let props = WriterProperties::builder()
            .set_compression(compression)
            .build();
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props)).unwrap_or_else(|e| panic!("{e}"));
        writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        writer.close().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn parts_are_read_back_with_their_codecs() {
        let dir = std::env::temp_dir().join(crate::unique_name("testkit_parquet"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        write(&dir.join("b.parquet"), vec![3], Compression::SNAPPY);
        let zstd = Compression::ZSTD(ZstdLevel::default());
        write(&dir.join("a.parquet"), vec![1, 2], zstd);
        write(&dir.join(".hidden.parquet"), vec![9], Compression::SNAPPY);
        assert_eq!(parquet_codecs(&dir.join("a.parquet")), vec![zstd]);
        assert_eq!(parquet_parts(&dir).len(), 2);
        let rows = parquet_folder_rows(&dir);
        let ids = rows
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.values().to_vec());
        assert_eq!(ids, Some(vec![1, 2, 3]));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
}
