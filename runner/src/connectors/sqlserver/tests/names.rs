//! Asset FQNs as SQL Server tables.

use crate::connectors::sqlserver::*;

#[test]
fn fqns_name_tables_with_dbo_as_the_default_schema() {
    let t = Table::parse("c", "orders").unwrap();
    assert_eq!(
        (t.database.as_deref(), t.schema.as_str(), t.name.as_str()),
        (None, "dbo", "orders")
    );
    let t = Table::parse("c", "sales.orders").unwrap();
    assert_eq!(t.quoted(), "[sales].[orders]");
    let t = Table::parse("c", "dw.sales.orders").unwrap();
    assert_eq!(t.quoted(), "[dw].[sales].[orders]");
    let t = Table::parse("c", "[my.schema].[odd]]name]").unwrap();
    assert_eq!(t.schema, "my.schema");
    assert_eq!(t.name, "odd]name");
    assert_eq!(t.quoted(), "[my.schema].[odd]]name]");
}

#[test]
fn bad_fqns_are_rejected_with_the_connection_named() {
    for fqn in ["", "a..b", "a.b.c.d", "[open", "s."] {
        let e = Table::parse("wh", fqn).unwrap_err().to_string();
        assert!(e.starts_with("Connection \"wh\": asset"), "{fqn}: {e}");
    }
}

#[test]
fn identifiers_are_bracket_quoted_with_closing_brackets_doubled() {
    assert_eq!(quote("a]b"), "[a]]b]");
    assert_eq!(quote("[x]"), "[[x]]]");
    assert_eq!(quote("naïve col"), "[naïve col]");
}
