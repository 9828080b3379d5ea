//! The probe of `synqx check`: the directory exists and can be listed.

use std::io::ErrorKind;

use synqx_api::connection::CheckReport;

use super::config::FilesystemConfig;
use crate::check::{CheckReason, report};

pub(super) async fn check(config: FilesystemConfig) -> CheckReport {
    let dir = config.root;
    let name = config.connection.as_str();
    let shown = dir.display();
    let fail = |reason: CheckReason, what: String| {
        report(reason, format!("Connection \"{name}\": {what}"))
    };
    let unreadable = |e: std::io::Error| {
        if e.kind() == ErrorKind::PermissionDenied {
            fail(
                CheckReason::Unauthorized,
                format!(
                    "cannot read directory {shown}: {e}: give the runner's user read access to it"
                ),
            )
        } else {
            fail(
                CheckReason::Unreachable,
                format!("cannot read directory {shown}: {e}"),
            )
        }
    };
    match tokio::fs::metadata(&dir).await {
        // A destination folder is created on the first write, as a SQLite file is: its
        // parent existing is enough.
        Err(e) if e.kind() == ErrorKind::NotFound && dir.parent().is_some_and(|p| p.is_dir()) => {
            return report(
                CheckReason::Connected,
                format!(
                    "Connection \"{name}\": directory {shown} does not exist yet: it will be created on the first write (its parent exists)"
                ),
            );
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return fail(
                CheckReason::NotFound,
                format!(
                    "directory {shown} does not exist: create or mount it, or fix filesystem.path (a relative path starts at the directory of the YAML file, or at the working directory of the runner's pod)"
                ),
            );
        }
        Err(e) => return unreadable(e),
        Ok(meta) if !meta.is_dir() => {
            return fail(
                CheckReason::Invalid,
                format!(
                    "{shown} is a file, not a directory: filesystem.path must name the directory the assets are below"
                ),
            );
        }
        Ok(_) => {}
    }
    // Listing one entry proves the directory can be listed; counting them could take long.
    let listed = match tokio::fs::read_dir(&dir).await {
        Ok(mut entries) => entries.next_entry().await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(first) => report(
            CheckReason::Connected,
            format!(
                "Connection \"{name}\": directory {shown} exists and can be listed ({})",
                if first.is_some() {
                    "not empty"
                } else {
                    "empty"
                }
            ),
        ),
        Err(e) => unreadable(e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use synqx_api::ConnectionSpec;
    use synqx_api::connection::FilesystemConnection;

    use super::*;

    async fn check_path(base: &Path, path: &str) -> CheckReport {
        let spec = ConnectionSpec {
            filesystem: Some(FilesystemConnection { path: path.into() }),
            ..Default::default()
        };
        crate::check::check_spec("lake", spec, base).await
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn an_existing_directory_is_ready() {
        let base = tempdir();
        let lake = base.path().join("lake");
        std::fs::create_dir(&lake).unwrap_or_else(|e| panic!("{e}"));
        let report = check_path(base.path(), "lake").await;
        assert!(report.ready, "{report:?}");
        assert_eq!(report.reason.as_str(), "Connected");
        assert_eq!(
            report.message,
            format!(
                "Connection \"lake\": directory {} exists and can be listed (empty)",
                lake.display()
            )
        );
        std::fs::write(lake.join("a.csv"), "id\n1\n").unwrap_or_else(|e| panic!("{e}"));
        let absolute = lake.display().to_string();
        let report = check_path(Path::new("/nowhere"), &absolute).await;
        assert!(report.message.ends_with("(not empty)"), "{report:?}");
    }

    #[tokio::test]
    async fn a_missing_directory_is_ready_when_its_parent_exists_else_not_found() {
        let base = tempdir();
        let report = check_path(base.path(), "lake").await;
        assert!(report.ready, "{report:?}");
        assert!(
            report
                .message
                .contains("will be created on the first write"),
            "{report:?}"
        );

        let report = check_path(base.path(), "deep/lake").await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "NotFound");
        assert!(
            report.message.starts_with(&format!(
                "Connection \"lake\": directory {} does not exist: create or mount it",
                base.path().join("deep/lake").display()
            )),
            "{}",
            report.message
        );
    }

    #[tokio::test]
    async fn a_file_is_not_a_directory() {
        let base = tempdir();
        std::fs::write(base.path().join("lake"), "x").unwrap_or_else(|e| panic!("{e}"));
        let report = check_path(base.path(), "lake").await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "Invalid");
        assert!(
            report
                .message
                .contains("is a file, not a directory: filesystem.path must name the directory"),
            "{}",
            report.message
        );
    }
}
