//! A temporary lake for the connector's tests: a Connection over a temp directory, opened
//! through the registry. The test data is shared with the other file connectors
//! (`formats::tests`).

use std::ops::Deref;
use std::path::{Path, PathBuf};

use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;

use crate::connectors::ConnectionRef;
pub(super) use crate::connectors::formats::tests::{
    destination, id_values, ids, nested, ok, scalars, source,
};
use crate::connectors::tests::Harness;
use crate::secrets::Secrets;

/// A Connection whose `filesystem.path` is `lake`, relative to a temp base directory.
pub(super) struct Lake {
    pub(super) base: tempfile::TempDir,
    harness: Harness,
}

impl Deref for Lake {
    type Target = Harness;

    fn deref(&self) -> &Harness {
        &self.harness
    }
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

    pub(super) fn put(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{relative}: {e}"));
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
}
