//! Reaching the files: listing what an FQN selects below the connection's root, and opening
//! them.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::connectors::formats::Selection;
use crate::connectors::formats::read::Listed;
use crate::connectors::formats::scan::Opener;
use crate::error::{Context, Result};

/// Opens files below the connection's root.
pub(super) struct DirOpener {
    pub(super) root: PathBuf,
}

impl Opener for DirOpener {
    type Chunks = File;

    fn stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.chunks(name)?))
    }

    fn chunks(&self, name: &str) -> Result<File> {
        let path = self.root.join(name);
        File::open(&path).context(|| format!("opening {}", path.display()))
    }
}

/// The files selected, sorted by path, and whether the FQN named a single file (whose
/// extension then does not have to match the format).
pub(super) fn list(root: &Path, selection: &Selection) -> Result<(Vec<Listed>, bool)> {
    if let Selection::File(name) = selection {
        let path = root.join(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => return list(root, &Selection::Folder(format!("{name}/"))),
            Ok(meta) => {
                let modified = meta
                    .modified()
                    .context(|| format!("reading the modification time of {}", path.display()))?;
                return Ok((
                    vec![Listed {
                        name: name.clone(),
                        modified,
                        size: meta.len(),
                    }],
                    true,
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Vec::new(), true)),
            Err(e) => {
                return Err(crate::error::Error::io(
                    format!("reading {}", path.display()),
                    e,
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &root.join(selection.base()),
        selection.base(),
        selection,
        &mut out,
    )?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, false))
}

fn walk(dir: &Path, prefix: &str, selection: &Selection, out: &mut Vec<Listed>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("listing {}", dir.display()),
                e,
            ));
        }
    };
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().to_string();
        if file_name.starts_with('.') || file_name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let name = format!("{prefix}{file_name}");
        let kind = entry
            .file_type()
            .context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            // Symlinked folders are not followed, so a link cycle cannot loop the walk.
            walk(&path, &format!("{name}/"), selection, out)?;
            continue;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && selection.accepts(&name) {
            let modified = meta
                .modified()
                .context(|| format!("reading the modification time of {}", path.display()))?;
            out.push(Listed {
                name,
                modified,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use synqx_api::pipeline::FileFormat;

    use super::*;
    use crate::connectors::formats::read::{FormatError, common_format};

    #[test]
    fn folders_and_globs_list_sorted_visible_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for name in [
            "raw/b.csv",
            "raw/a.csv",
            "raw/2024/c.csv",
            "raw/.tmp.csv",
            "raw/_SUCCESS",
            "raw/x.jsonl",
            "other/d.csv",
        ] {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            fs::write(&path, "a\n1\n").unwrap_or_else(|e| panic!("{e}"));
        }
        let names = |fqn: &str| {
            let selection = Selection::parse(fqn).unwrap_or_else(|e| panic!("{e}"));
            list(dir.path(), &selection)
                .unwrap_or_else(|e| panic!("{e}"))
                .0
                .into_iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("raw/"),
            vec!["raw/2024/c.csv", "raw/a.csv", "raw/b.csv", "raw/x.jsonl"]
        );
        assert_eq!(names("raw"), names("raw/"));
        assert_eq!(names("raw/*.csv"), vec!["raw/a.csv", "raw/b.csv"]);
        assert_eq!(
            names("**/*.csv"),
            vec!["other/d.csv", "raw/2024/c.csv", "raw/a.csv", "raw/b.csv"]
        );
        assert_eq!(names("raw/a.csv"), vec!["raw/a.csv"]);
        assert!(names("missing/").is_empty() && names("missing.csv").is_empty());
        let selection = Selection::parse("raw/").unwrap_or_else(|e| panic!("{e}"));
        let (files, _) = list(dir.path(), &selection).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            common_format(&files).map_err(|e| e.to_string()),
            Err("the files have several formats (csv, jsonl)".into())
        );
        assert_eq!(
            common_format(&files),
            Err(FormatError::Several(vec![
                FileFormat::Csv,
                FileFormat::Jsonl
            ]))
        );
        assert_eq!(common_format(&files[..2]), Ok(FileFormat::Csv));
    }
}
