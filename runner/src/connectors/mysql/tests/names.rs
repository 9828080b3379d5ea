//! Names of the work tables a load creates.

use super::super::work_table;

#[test]
fn work_tables_fit_mysql_identifiers_and_differ() {
    let long = "t".repeat(64);
    let a = work_table(&long, "new");
    let b = work_table(&long, "new");
    assert_ne!(a, b);
    assert_eq!(a.chars().count(), 64, "{a}");
    assert!(a.starts_with("ttt") && a.contains("_synqx_new_"), "{a}");
    let short = work_table("orders", "old");
    assert!(short.starts_with("orders_synqx_old_"), "{short}");
}
