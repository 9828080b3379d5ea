//! Names the SQL connectors make up for the tables and views they create beside a user's table,
//! and names as their messages list them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A suffix no other load of this or a concurrent runner uses, for work tables and views. The
/// clock is cut to 48 bits so that names stay well inside PostgreSQL's 63-byte identifiers;
/// the process id and a counter keep two loads of one moment apart.
pub fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}_{:x}_{}",
        nanos & 0xffff_ffff_ffff,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Connection "c", table "t"`: the start of every message about a table.
pub fn at_table(connection: &str, table: impl std::fmt::Display) -> String {
    format!("Connection \"{connection}\", table \"{table}\"")
}

/// Names as a message lists them: `"a", "b"`.
pub fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("\"{}\"", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_differ_and_are_identifier_safe() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
        assert!(a.len() <= 40, "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn messages_about_a_table_name_connection_and_table() {
        assert_eq!(
            at_table("shop-db", "sales.orders"),
            "Connection \"shop-db\", table \"sales.orders\""
        );
    }

    #[test]
    fn lists_names_in_quotes() {
        assert_eq!(quoted_list(&["a", "b c"]), "\"a\", \"b c\"");
        assert_eq!(quoted_list::<String>(&[]), "");
    }
}
