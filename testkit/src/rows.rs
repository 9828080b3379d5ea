//! Query results as plain values, whatever the database: each driver's test helper says how
//! one value reads, these walk the rows.

use sqlx::Row;

/// Every row of a result, each column's value as `cell` reads it (the row and the column's
/// index).
pub fn cells<R: Row, T>(rows: &[R], mut cell: impl FnMut(&R, usize) -> T) -> Vec<Vec<T>> {
    rows.iter()
        .map(|row| (0..row.len()).map(|i| cell(row, i)).collect())
        .collect()
}

/// Every row as one line, its values joined by `, `: what a test compares a table with.
pub fn lines(rows: Vec<Vec<String>>) -> Vec<String> {
    rows.into_iter().map(|row| row.join(", ")).collect()
}

/// Bytes in lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_join_values_and_hex_pads_every_byte() {
        let table = vec![
            vec!["1".to_string(), "'a'".to_string()],
            vec!["2".to_string(), "NULL".to_string()],
        ];
        assert_eq!(lines(table), ["1, 'a'", "2, NULL"]);
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
