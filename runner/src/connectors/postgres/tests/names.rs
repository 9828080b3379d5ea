//! Table names from FQNs, and quoting.

use super::super::*;

#[test]
fn fqns_name_a_table_of_a_schema_exactly_as_written() {
    let t = |fqn: &str| Table::parse("db", fqn);
    assert_eq!(
        t("orders").ok(),
        Some(Table {
            schema: "public".into(),
            name: "orders".into()
        })
    );
    assert_eq!(
        t("Sales.Orders").ok(),
        Some(Table {
            schema: "Sales".into(),
            name: "Orders".into()
        })
    );
    assert_eq!(
        t("\"my.schema\".\"a \"\"b\"\"\"").ok(),
        Some(Table {
            schema: "my.schema".into(),
            name: "a \"b\"".into()
        })
    );
    assert_eq!(
        t("Sales.Orders").map(|t| t.sql()).ok().as_deref(),
        Some("\"Sales\".\"Orders\"")
    );
    for bad in ["", "a.", ".a", "a.b.c", "\"open"] {
        let e = t(bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("Connection \"db\": asset"), "{bad}: {e}");
    }
}

#[test]
fn literals_and_identifiers_escape_their_quotes() {
    assert_eq!(literal("it's"), "'it''s'");
    assert_eq!(quote("a\"b"), "\"a\"\"b\"");
}
