//! Checked-in files generated from the code (CRDs, rendered manifests, ArgoCD test data):
//! a test compares them with what the code produces, and rewrites them when a developer asks
//! with an update variable. Under CI (`CI` set, as `scripts/test-all.sh` does) asking is an
//! error: a rewritten file would always match, and the check would prove nothing.

use std::ffi::OsString;

/// Whether `var` asks the test to rewrite its checked-in files. Panics under CI.
pub fn update_requested(var: &str) -> bool {
    update_requested_in(|name| std::env::var_os(name), var)
}

fn update_requested_in(env: impl Fn(&str) -> Option<OsString>, var: &str) -> bool {
    let asked = env(var).is_some();
    assert!(
        !(asked && env("CI").is_some()),
        "{var} is set under CI: checked-in files are compared there, never rewritten; unset {var}"
    );
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(set: &'static [&'static str]) -> impl Fn(&str) -> Option<OsString> {
        move |name| set.contains(&name).then(|| OsString::from("1"))
    }

    #[test]
    fn an_update_is_asked_by_its_variable_alone() {
        assert!(update_requested_in(env(&["UPDATE_X"]), "UPDATE_X"));
        assert!(!update_requested_in(env(&["CI"]), "UPDATE_X"));
        assert!(!update_requested_in(env(&[]), "UPDATE_X"));
    }

    #[test]
    #[should_panic(expected = "UPDATE_X is set under CI")]
    fn an_update_under_ci_fails() {
        update_requested_in(env(&["UPDATE_X", "CI"]), "UPDATE_X");
    }
}
