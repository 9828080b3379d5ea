//! Deterministic names: the same run, step and attempt always give the same Job name, so a
//! restarted operator finds what it created instead of creating it again. The Jobs of runs
//! and of Connection checks also carry a hash of the UID of the object they belong to, so two
//! objects never claim one name: run `a-b` step `c` and run `a` step `b-c`, or run `db` step
//! `check` and the check of Connection `db`, read alike but hash apart.

use ring::digest::{SHA256, digest};

/// The longest name a label value (and so a Job name, which becomes one) may have.
pub const MAX_NAME: usize = 63;
/// Hex digits of the hash that tells apart the Jobs of different objects.
const TAG: usize = 10;

/// `{run}-{step}-{attempt}-{tag}`: the tag hashes the run's UID, the step and the attempt.
pub fn job_name(run: &str, run_uid: &str, step: &str, attempt: u32) -> String {
    tagged(
        &format!("{run}-{step}-{attempt}"),
        &format!("run\0{run_uid}\0{step}\0{attempt}"),
    )
}

/// `{connection}-check-{generation}-{tag}`: the check Job of one generation of a Connection;
/// the tag hashes the Connection's UID and the generation.
pub fn check_job_name(connection: &str, connection_uid: &str, generation: i64) -> String {
    tagged(
        &format!("{connection}-check-{generation}"),
        &format!("check\0{connection_uid}\0{generation}"),
    )
}

/// `readable`, cut so that `-{tag}` fits, followed by the hash of `key`.
fn tagged(readable: &str, key: &str) -> String {
    let tag = &hex(key)[..TAG];
    let mut prefix: String = readable.chars().take(MAX_NAME - TAG - 1).collect();
    while prefix.ends_with('-') || prefix.ends_with('.') {
        prefix.pop();
    }
    format!("{prefix}-{tag}")
}

fn hex(text: &str) -> String {
    digest(&SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let hash = &hex(name)[..TAG];
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
    fn short_names_are_kept_with_their_tag() {
        let name = job_name("orders-28871234", "uid-1", "load", 2);
        assert!(name.starts_with("orders-28871234-load-2-"), "{name}");
        assert_eq!(name.len(), "orders-28871234-load-2-".len() + TAG);
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
    fn names_that_read_alike_belong_to_one_object_only() {
        // Run a-b step c and run a step b-c.
        assert_ne!(
            job_name("a-b", "uid-1", "c", 1),
            job_name("a", "uid-2", "b-c", 1)
        );
        // Run db step check and the check of Connection db.
        assert_ne!(
            job_name("db", "uid-1", "check", 1),
            check_job_name("db", "uid-2", 1)
        );
        // A run deleted and created again with the same name: new Jobs.
        assert_ne!(
            job_name("r", "uid-1", "s", 1),
            job_name("r", "uid-2", "s", 1)
        );
        assert_eq!(
            job_name("r", "uid-1", "s", 1),
            job_name("r", "uid-1", "s", 1)
        );
    }

    #[test]
    fn long_names_are_cut_to_63_and_stay_distinct() {
        let run = "a-very-long-pipeline-name-that-goes-on-and-on-28871234";
        let step = "extract-customers-from-the-warehouse";
        let first = job_name(run, "uid-1", step, 1);
        let second = job_name(run, "uid-1", step, 2);
        assert!(
            first.len() <= MAX_NAME && second.len() <= MAX_NAME,
            "{first} {second}"
        );
        assert_ne!(first, second);
        assert_eq!(first, job_name(run, "uid-1", step, 1), "deterministic");
        for name in [
            first,
            check_job_name(run, "uid-1", i64::MAX),
            fit(&run.repeat(3)),
        ] {
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }
}
