//! The probe of `synqx check`: connect, authenticate and list the database's collections
//! (which also proves the credentials: the driver connects lazily). One attempt.

use synqx_api::connection::CheckReport;

use super::config::MongodbConfig;
use super::connect::{connect, reason};
use crate::check::{CheckReason, report};

pub async fn check(settings: MongodbConfig) -> CheckReport {
    let say = |r: CheckReason, what: String| {
        report(
            r,
            settings
                .redactor
                .redact(format!("{}: {what}", settings.at())),
        )
    };
    let db = match connect(&settings).await {
        Ok(db) => db,
        Err(e) => return say(CheckReason::Invalid, e.to_string()),
    };
    match db.list_collection_names().await {
        Ok(names) => say(
            CheckReason::Connected,
            format!(
                "connected to database \"{}\" ({} collections)",
                settings.database,
                names.len()
            ),
        ),
        Err(e) => say(
            reason(&e),
            format!("database \"{}\": {}", settings.database, e),
        ),
    }
}
