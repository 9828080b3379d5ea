//! The work objects a load stages its rows in (a collection beside a MongoDB collection, a
//! staging table beside a Snowflake or BigQuery table) carry in their name the moment after
//! which no run can still use them: the step's deadline (its start plus `timeout`), or, for a
//! step without one, [`LIFETIME_WITHOUT_TIMEOUT`] after the load began. A load never swaps
//! its objects in after that moment (the engine stops a step at its deadline, and
//! [`Expiry::check`] refuses the swap of a step without one), so an object whose moment has
//! passed belongs to a run that was killed, and any later load into the same database, schema
//! or dataset drops it ([`Expiry::passed`]). Only names of exactly this shape are touched:
//! `<prefix><expiry, Unix seconds>_<clock>_<process>_<counter>`, the last three from
//! [`unique_suffix`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connectors::sql::unique_suffix;
use crate::engine::WriteRequest;
use crate::error::{Error, Result};

/// How long a load of a step without `timeout` may stage before it must be swapped in.
pub const LIFETIME_WITHOUT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The moment (Unix seconds) after which a load's staged objects belong to nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry(u64);

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Expiry {
    /// The expiry of a load the engine asked for: the step's deadline, else
    /// [`LIFETIME_WITHOUT_TIMEOUT`] from now; rounded up to the next second.
    pub fn of(request: &WriteRequest) -> Self {
        let now = SystemTime::now();
        let until = request
            .deadline
            .or_else(|| now.checked_add(LIFETIME_WITHOUT_TIMEOUT))
            .unwrap_or(now);
        Self(unix_seconds(until).saturating_add(1))
    }

    /// A new object's name: `prefix`, this expiry and a suffix no other load uses.
    pub fn name(self, prefix: &str) -> String {
        format!("{prefix}{}_{}", self.0, unique_suffix())
    }

    /// The expiry in `name`, when it is `prefix` followed by an expiry and a unique suffix.
    pub fn in_name(name: &str, prefix: &str) -> Option<Self> {
        let rest = name
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))?;
        let rest = &name[rest.len()..];
        let mut parts = rest.split('_');
        let seconds = parts.next().filter(|p| all(p, |c| c.is_ascii_digit()))?;
        let (clock, process, counter) = (parts.next()?, parts.next()?, parts.next()?);
        let shaped = all(clock, |c| c.is_ascii_hexdigit())
            && all(process, |c| c.is_ascii_hexdigit())
            && all(counter, |c| c.is_ascii_digit())
            && parts.next().is_none();
        shaped.then(|| seconds.parse().ok().map(Self)).flatten()
    }

    /// Whether `name` is one of these objects (after `prefix`) whose expiry has passed at `now`.
    pub fn passed(name: &str, prefix: &str, now: SystemTime) -> bool {
        Self::in_name(name, prefix).is_some_and(|e| e.0 < unix_seconds(now))
    }

    /// Refuses to swap in what was staged once the expiry has passed: a later load may have
    /// dropped part of it as an orphan. `here` names the destination.
    pub fn check(self, here: &str) -> Result<()> {
        if unix_seconds(SystemTime::now()) < self.0 {
            return Ok(());
        }
        Err(Error::Cancelled(format!(
            "{here}: the load staged for longer than {} (a step without `timeout` may stage that long; \
             later loads may then drop what it staged), so nothing was swapped in and the destination is \
             unchanged: set the step's `timeout` above the time the load takes and run it again",
            synqx_api::duration::format_duration(LIFETIME_WITHOUT_TIMEOUT)
        )))
    }
}

fn all(part: &str, f: impl Fn(char) -> bool) -> bool {
    !part.is_empty() && part.chars().all(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::tests::{destination, err};
    use synqx_api::pipeline::WriteMode;

    fn request(deadline: Option<SystemTime>) -> WriteRequest {
        WriteRequest {
            deadline,
            ..WriteRequest::to(destination("c", "t", WriteMode::Overwrite, &[], None))
        }
    }

    #[test]
    fn a_name_carries_the_step_deadline_or_a_day() {
        let deadline = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let expiry = Expiry::of(&request(Some(deadline)));
        assert_eq!(expiry, Expiry(1_900_000_001));
        let name = expiry.name("orders__synqx_new_");
        assert!(name.starts_with("orders__synqx_new_1900000001_"), "{name}");
        assert_eq!(Expiry::in_name(&name, "orders__synqx_new_"), Some(expiry));
        // Snowflake stores the name upper-cased: still ours.
        let upper = expiry.name("SYNQX_STAGE_").to_ascii_uppercase();
        assert_eq!(Expiry::in_name(&upper, "synqx_stage_"), Some(expiry));

        let now = unix_seconds(SystemTime::now());
        let a_day = Expiry::of(&request(None)).0 - now;
        assert!((86_400..=86_402).contains(&a_day), "{a_day}");
    }

    #[test]
    fn only_names_of_the_exact_shape_whose_moment_passed_are_orphans() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000);
        let p = "SYNQX_STAGE_";
        assert!(Expiry::passed("SYNQX_STAGE_1999_18a3f_1f2_0", p, now));
        assert!(
            !Expiry::passed("SYNQX_STAGE_2000_18a3f_1f2_0", p, now),
            "not yet passed"
        );
        assert!(!Expiry::passed("SYNQX_STAGE_2001_18a3f_1f2_0", p, now));
        for foreign in [
            "SYNQX_STAGE_1999_18a3f_1f2",      // no counter
            "SYNQX_STAGE_1999_18a3f_1f2_0_x",  // more after it
            "SYNQX_STAGE_x1999_18a3f_1f2_0",   // not a number
            "SYNQX_STAGE_1999_18g3f_1f2_0",    // not hex
            "MY_SYNQX_STAGE_1999_18a3f_1f2_0", // another prefix
            "SYNQX_STAGE_",
            "SYN",
        ] {
            assert!(!Expiry::passed(foreign, p, now), "{foreign}");
        }
        // A collection `c_x` is not staged for `c`.
        assert!(!Expiry::passed(
            "c_x__synqx_new_1_a_b_0",
            "c__synqx_new_",
            now
        ));
    }

    #[test]
    fn a_swap_after_the_expiry_is_refused_naming_the_destination() {
        assert!(Expiry(u64::MAX).check("table \"t\"").is_ok());
        let e = err(Expiry(1).check("Connection \"w\", table \"t\""));
        assert!(
            e.starts_with(
                "cancelled: Connection \"w\", table \"t\": the load staged for longer than 24h"
            ),
            "{e}"
        );
        assert!(e.contains("set the step's `timeout`"), "{e}");
    }
}
