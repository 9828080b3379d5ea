//! Deterministic names: the same run, step and attempt always give the same Job name, so a
//! restarted operator finds what it created instead of creating it again.

use ring::digest::{SHA256, digest};

/// The longest name a label value (and so a Job name, which becomes one) may have.
pub const MAX_NAME: usize = 63;

/// `{run}-{step}-{attempt}`, or when that is too long, a prefix of it and a hash of the whole.
pub fn job_name(run: &str, step: &str, attempt: u32) -> String {
    fit(&format!("{run}-{step}-{attempt}"))
}

/// The run a schedule creates for the fire time `unix_minutes`: fixed per fire time, so two
/// operators (or one restarted) cannot fire the same time twice.
pub fn scheduled_run_name(pipeline: &str, fire_unix_seconds: i64) -> String {
    fit(&format!("{pipeline}-{}", fire_unix_seconds / 60))
}

/// The ControllerRevision holding one plan of a pipeline.
pub fn revision_name(pipeline: &str, plan_hash: &str) -> String {
    let short = &plan_hash[..10.min(plan_hash.len())];
    fit(&format!("{pipeline}-{short}"))
}

/// Cuts a name to 63 characters, keeping it unique with a hash of the full name.
pub fn fit(name: &str) -> String {
    if name.len() <= MAX_NAME {
        return name.to_string();
    }
    let hash: String = digest(&SHA256, name.as_bytes()).as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = MAX_NAME - hash.len() - 1;
    let mut prefix = name[..keep].to_string();
    while prefix.ends_with('-') || prefix.ends_with('.') {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(
            job_name("orders-28871234", "load", 2),
            "orders-28871234-load-2"
        );
        assert_eq!(
            revision_name("orders", "0123456789abcdef"),
            "orders-0123456789"
        );
        assert_eq!(
            scheduled_run_name("orders", 1_800_000_000),
            "orders-30000000"
        );
    }

    #[test]
    fn long_names_are_cut_to_63_and_stay_distinct() {
        let run = "a-very-long-pipeline-name-that-goes-on-and-on-28871234";
        let first = job_name(run, "extract-customers-from-the-warehouse", 1);
        let second = job_name(run, "extract-customers-from-the-warehouse", 2);
        assert!(
            first.len() <= MAX_NAME && second.len() <= MAX_NAME,
            "{first} {second}"
        );
        assert_ne!(first, second);
        assert_eq!(
            first,
            job_name(run, "extract-customers-from-the-warehouse", 1),
            "deterministic"
        );
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
