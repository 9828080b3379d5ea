//! A temporary lake for the connector's tests: a connection over a temp directory. The test
//! data is shared with the other file connectors (`formats::test_data`).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

use super::{FilesystemSink, FilesystemSource};
use crate::connectors::ConnectionRef;
pub(super) use crate::connectors::formats::test_data::{
    destination, id_values, ids, nested, ok, scalars, source,
};
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// A connection whose `filesystem.path` is `lake`, relative to a temp base directory.
pub(super) struct Lake {
    pub(super) base: tempfile::TempDir,
    pub(super) source: FilesystemSource,
    pub(super) sink: FilesystemSink,
}

impl Lake {
    pub(super) fn new() -> Self {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = ConnectionSpec {
            filesystem: Some(FilesystemConnection {
                path: "lake".into(),
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let conn = ConnectionRef {
            name: "lake",
            spec: &spec,
            base_dir: base.path().to_path_buf(),
            secrets: &secrets,
        };
        let (source, sink) = (
            ok(FilesystemSource::new(&conn)),
            ok(FilesystemSink::new(&conn)),
        );
        ok(std::fs::create_dir_all(base.path().join("lake")).map_err(|e| Error::io("lake", e)));
        Self { base, source, sink }
    }

    pub(super) fn root(&self) -> PathBuf {
        self.base.path().join("lake")
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    pub(super) fn put(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            ok(std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", e)));
        }
        ok(std::fs::write(&path, contents).map_err(|e| Error::io("write", e)));
    }

    pub(super) fn text(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    /// Every path below the root, relative and sorted, hidden ones included.
    pub(super) fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.path().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root(), "", &mut out);
        out.sort();
        out
    }

    pub(super) async fn read_with(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        batch_bytes: usize,
        rejects: Rejects,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let request = ReadRequest {
            spec,
            filter,
            batch_bytes,
            rejects,
        };
        crate::connectors::formats::test_data::read_all(&self.source, &request).await
    }

    pub(super) async fn read(&self, spec: SourceSpec) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_with(
            spec,
            None,
            crate::engine::DEFAULT_BATCH_BYTES,
            Rejects::failing(),
        )
        .await
    }

    /// All rows of a read as one batch.
    pub(super) async fn read_all(&self, spec: SourceSpec) -> Result<RecordBatch> {
        let (schema, batches) = self.read(spec).await?;
        concat_batches(&schema, &batches).map_err(|e| Error::arrow("concat", e))
    }

    pub(super) async fn write(
        &self,
        spec: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        let input = SchemaStream::new(schema, futures::stream::iter(batches));
        let request = WriteRequest {
            spec,
            batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        };
        self.sink.write(&request, input, &Counters::default()).await
    }
}
