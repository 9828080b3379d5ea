//! Reading the fields every database Connection block has alike (postgres, mysql, sqlserver):
//! the block itself and the text fields that must not be empty. Each connector keeps its own
//! defaults, options and secrets, which differ.

use crate::error::{Error, Result};

/// The connector's block of a Connection spec, or an error naming the Connection.
pub fn block<'a, T>(connection: &str, kind: &str, block: Option<&'a T>) -> Result<&'a T> {
    block.ok_or_else(|| Error::Config(format!("Connection \"{connection}\" has no {kind} block")))
}

/// A text field that must hold something, trimmed; `field` is its path, as `postgres.host`.
pub fn required<'a>(connection: &str, field: &str, value: &'a str) -> Result<&'a str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::Config(format!(
            "Connection \"{connection}\": {field} is empty"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_block_names_the_connection_and_kind() {
        let e = block::<u8>("warehouse", "postgres", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Connection \"warehouse\" has no postgres block"
        );
        assert_eq!(block("warehouse", "postgres", Some(&7)).unwrap(), &7);
    }

    #[test]
    fn required_fields_are_trimmed_and_must_not_be_blank() {
        assert_eq!(required("c", "mysql.host", "  db  ").unwrap(), "db");
        let e = required("c", "mysql.host", " \t").unwrap_err();
        assert_eq!(e.to_string(), "Connection \"c\": mysql.host is empty");
    }
}
