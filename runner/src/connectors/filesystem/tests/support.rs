//! A temporary lake for the connector's tests: a Connection over a temp directory, opened
//! through the registry. The scenarios and test data are shared with the other file
//! connectors (`formats::tests`).

use std::path::{Path, PathBuf};

use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;

use crate::connectors::ConnectionRef;
use crate::connectors::formats::tests::lakes;
use crate::connectors::tests::{Harness, opened_through_harness};
use crate::secrets::Secrets;

/// A Connection whose `filesystem.path` is `lake`, relative to a temp base directory.
pub(super) struct Lake {
    base: tempfile::TempDir,
    harness: Harness,
}

opened_through_harness!(Lake);

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
        let harness = Harness::open(&ConnectionRef {
            name: "lake",
            spec: &spec,
            base_dir: base.path().to_path_buf(),
            secrets: &secrets,
        });
        std::fs::create_dir_all(base.path().join("lake")).unwrap_or_else(|e| panic!("{e}"));
        Self { base, harness }
    }

    pub(super) fn root(&self) -> PathBuf {
        self.base.path().join("lake")
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    /// Every path below the root, relative and sorted, hidden ones included; folders (with a
    /// trailing `/`) only when `folders` is set.
    fn walk(&self, folders: bool) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, folders: bool, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.path().is_dir() {
                    let name = format!("{name}/");
                    walk(&entry.path(), &name, folders, out);
                    if folders {
                        out.push(name);
                    }
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root(), "", folders, &mut out);
        out.sort();
        out
    }
}

impl lakes::Lake for Lake {
    fn location(&self) -> String {
        self.root().display().to_string()
    }

    async fn put(&self, relative: &str, contents: impl Into<Vec<u8>>) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, contents.into()).unwrap_or_else(|e| panic!("{relative}: {e}"));
    }

    async fn bytes(&self, relative: &str) -> Vec<u8> {
        std::fs::read(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    async fn size(&self, relative: &str) -> u64 {
        let meta = std::fs::metadata(self.path(relative));
        meta.unwrap_or_else(|e| panic!("{relative}: {e}")).len()
    }

    async fn files(&self) -> Vec<String> {
        self.walk(false)
    }

    /// Folders too: a write that does not commit must remove the folders it staged in.
    async fn snapshot(&self) -> Vec<String> {
        self.walk(true)
    }

    fn staging(&self) -> bool {
        self.walk(false).iter().any(|f| f.contains(".synqx-tmp"))
    }
}
