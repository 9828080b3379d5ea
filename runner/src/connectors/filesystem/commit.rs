//! Making written files visible all at once. Files are written under hidden temporary names
//! (which readers skip) and renamed into place only at commit; until then a guard removes
//! them when the write fails, is cancelled or its future is dropped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::engine::WriteOutcome;
use crate::error::{Context, Error, Result};

/// Paths removed (files, or folders with their content) when dropped, unless released.
#[derive(Debug, Default)]
pub(super) struct Temporaries {
    paths: Vec<PathBuf>,
}

impl Temporaries {
    pub(super) fn add(&mut self, path: PathBuf) {
        self.paths.push(path);
    }

    fn release(&mut self) {
        self.paths.clear();
    }
}

impl Drop for Temporaries {
    fn drop(&mut self) {
        for path in self.paths.iter().rev() {
            // Best effort: a leftover is hidden from readers and named after its write.
            let _ = match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(path),
                Ok(_) => fs::remove_file(path),
                Err(_) => Ok(()),
            };
        }
    }
}

/// How staged files become the destination.
#[derive(Debug)]
pub(super) enum Swap {
    /// Nothing to change (an append of no rows).
    Nothing,
    /// Part files renamed from their hidden names to their final names; an existing final
    /// name is never overwritten.
    Parts(Vec<(PathBuf, PathBuf)>),
    /// A file written aside replaces the target in one rename.
    File { staged: PathBuf, target: PathBuf },
    /// A folder written aside replaces the target: the old one is renamed away, the new one
    /// in, and the old one removed.
    Folder {
        staged: PathBuf,
        target: PathBuf,
        old: PathBuf,
    },
}

/// A finished write waiting for its commit.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) swap: Swap,
    pub(super) temps: Temporaries,
    pub(super) outcome: WriteOutcome,
}

impl Staged {
    /// Makes the write visible. On error the destination is as it was.
    pub(super) fn commit(mut self) -> Result<WriteOutcome> {
        match std::mem::replace(&mut self.swap, Swap::Nothing) {
            Swap::Nothing => {}
            Swap::Parts(parts) => commit_parts(&parts)?,
            Swap::File { staged, target } => {
                fs::rename(&staged, &target)
                    .context(|| format!("replacing {}", target.display()))?;
                sync_dir(&target);
            }
            Swap::Folder {
                staged,
                target,
                old,
            } => commit_folder(&staged, &target, &old)?,
        }
        self.temps.release();
        Ok(self.outcome.clone())
    }
}

fn commit_parts(parts: &[(PathBuf, PathBuf)]) -> Result<()> {
    let mut done: Vec<&(PathBuf, PathBuf)> = Vec::new();
    for part in parts {
        let (staged, target) = part;
        let result = if target.exists() {
            Err(Error::Config(format!(
                "{} already exists; part files are never overwritten",
                target.display()
            )))
        } else {
            fs::rename(staged, target)
                .context(|| format!("renaming {} to {}", staged.display(), target.display()))
        };
        if let Err(e) = result {
            // Renamed parts go back to their hidden names, where the guard removes them.
            for (staged, target) in done.iter().map(|p| (&p.0, &p.1)) {
                let _ = fs::rename(target, staged);
            }
            return Err(e);
        }
        done.push(part);
    }
    if let Some((_, target)) = parts.first() {
        sync_dir(target);
    }
    Ok(())
}

fn commit_folder(staged: &Path, target: &Path, old: &Path) -> Result<()> {
    let had_old = target.exists();
    if had_old {
        fs::rename(target, old).context(|| format!("moving {} aside", target.display()))?;
    }
    if let Err(e) = fs::rename(staged, target) {
        if had_old {
            let _ = fs::rename(old, target);
        }
        return Err(Error::io(
            format!("moving {} into place", target.display()),
            e,
        ));
    }
    sync_dir(target);
    if had_old {
        let removed = if old.is_dir() {
            fs::remove_dir_all(old)
        } else {
            fs::remove_file(old)
        };
        // The new data is committed; a leftover old copy is hidden and only wastes space.
        let _ = removed;
    }
    Ok(())
}

/// Persists renames in a directory (best effort: not every platform can sync one).
fn sync_dir(child: &Path) {
    if let Some(parent) = child.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn dropped_staging_removes_its_temporaries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join(".a.synqx-tmp");
        let folder = dir.path().join(".b.synqx-tmp");
        write(&file, "x");
        write(&folder.join("part.csv"), "y");
        let mut temps = Temporaries::default();
        temps.add(file.clone());
        temps.add(folder.clone());
        drop(Staged {
            swap: Swap::File {
                staged: file.clone(),
                target: dir.path().join("a"),
            },
            temps,
            outcome: WriteOutcome::default(),
        });
        assert!(!file.exists() && !folder.exists());
    }

    #[test]
    fn folders_are_swapped_and_the_old_one_removed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("out");
        let staged = dir.path().join(".out.synqx-tmp-1");
        let old = dir.path().join(".out.synqx-old-1");
        write(&target.join("old.csv"), "old");
        write(&staged.join("new.csv"), "new");
        let mut temps = Temporaries::default();
        temps.add(staged.clone());
        let outcome = WriteOutcome { rows: 1, bytes: 3 };
        let staged_write = Staged {
            swap: Swap::Folder {
                staged: staged.clone(),
                target: target.clone(),
                old: old.clone(),
            },
            temps,
            outcome,
        };
        assert_eq!(
            staged_write.commit().ok(),
            Some(WriteOutcome { rows: 1, bytes: 3 })
        );
        assert_eq!(read(&target.join("new.csv")), "new");
        assert!(!target.join("old.csv").exists() && !old.exists() && !staged.exists());
    }

    #[test]
    fn parts_never_overwrite_and_roll_back_together() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (s1, t1) = (dir.path().join(".p1.tmp"), dir.path().join("p1.csv"));
        let (s2, t2) = (dir.path().join(".p2.tmp"), dir.path().join("p2.csv"));
        write(&s1, "1");
        write(&s2, "2");
        write(&t2, "existing");
        let mut temps = Temporaries::default();
        temps.add(s1.clone());
        temps.add(s2.clone());
        let staged = Staged {
            swap: Swap::Parts(vec![(s1.clone(), t1.clone()), (s2.clone(), t2.clone())]),
            temps,
            outcome: WriteOutcome::default(),
        };
        let err = staged
            .commit()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.ends_with("p2.csv already exists; part files are never overwritten"),
            "{err}"
        );
        assert!(!t1.exists() && !s1.exists() && !s2.exists());
        assert_eq!(read(&t2), "existing");
    }
}
