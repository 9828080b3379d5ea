//! Row values withheld from what a database says. A server quotes the values of a row it
//! refused (`Key (email)=(ada@example.com) already exists`, `Duplicate entry '42' for key
//! 'PRIMARY'`, `Conversion failed when converting the varchar value 'x' to data type int`),
//! and those words would reach the step's status, its Events and the logs, which people read
//! who have no right to the data. Every driver error's text passes through [`withhold`]
//! before it becomes a message: the values become `…`, and what failed (the constraint, the
//! key's columns, the type, the column) stays. Rows SynqX refuses itself keep their values in
//! the rejected-rows file only.
//!
//! Each rule knows where a value starts and the words that follow it. The value ends at the
//! *last* place those words occur, so a value that happens to contain them is still withheld
//! whole; at worst a little of what follows goes with it.

/// What stands where a value was.
pub const WITHHELD: &str = "…";

/// Where a quoted value starts, and what may follow it (tried in order; the first one found
/// ends the value, at its last occurrence). With none found the value runs to the end.
struct Rule {
    start: &'static str,
    ends: &'static [&'static str],
}

const RULES: &[Rule] = &[
    // PostgreSQL, integrity violations (SQLSTATE class 23): `Key (a, b)=(1, x) already
    // exists.`, `… is not present in table "t".`, `… conflicts with existing key (a)=(2).`
    Rule {
        start: ")=(",
        ends: &[
            ") conflicts with existing key",
            ") already exists",
            ") is not present in table",
            ") is still referenced from table",
            ").",
            ")",
        ],
    },
    // PostgreSQL, NOT NULL and CHECK violations: `Failing row contains (1, null, x).`
    Rule {
        start: "Failing row contains (",
        ends: &[").", ")"],
    },
    // MySQL and MariaDB 1062: `Duplicate entry '42-x' for key 'PRIMARY'`.
    Rule {
        start: "Duplicate entry '",
        ends: &["' for key", "'"],
    },
    // MySQL 1366, 1292, 1411: `Incorrect integer value: 'x' for column 'n' at row 1`,
    // `Truncated incorrect DOUBLE value: 'x'`.
    Rule {
        start: "value: '",
        ends: &["' for column", "' for function", "'"],
    },
    // SQL Server 2627 and 2601: `The duplicate key value is (42, x).`
    Rule {
        start: "duplicate key value is (",
        ends: &[").", ")"],
    },
    // SQL Server 2628: `… column 'name'. Truncated value: 'abcdef'.`
    Rule {
        start: "Truncated value: '",
        ends: &["'."],
    },
    // SQL Server 245: `Conversion failed when converting the varchar value 'x' to data type
    // int.`; Snowflake 100037, 100038: `Numeric value 'x' is not recognized`.
    Rule {
        start: " value '",
        ends: &["' to data type", "' is not recognized", "'"],
    },
    // Snowflake 100035, 100040: `Timestamp 'x' is not recognized`, `Date 'x' is not
    // recognized`.
    Rule {
        start: "Timestamp '",
        ends: &["' is not recognized"],
    },
    Rule {
        start: "Date '",
        ends: &["' is not recognized"],
    },
    // Snowflake 100090: `Duplicate row detected during DML action Row Values: [1, "x"]`.
    Rule {
        start: "Row Values: [",
        ends: &["]"],
    },
    // BigQuery: `Could not parse 'x' as INT64 for field n`, `Could not cast literal "x" to
    // type DATE`, `Invalid date: 'x'`, `Invalid timestamp: 'x'`.
    Rule {
        start: "Could not parse '",
        ends: &["' as "],
    },
    Rule {
        start: "literal \"",
        ends: &["\" to type"],
    },
    Rule {
        start: "Invalid date: '",
        ends: &["'"],
    },
    Rule {
        start: "Invalid timestamp: '",
        ends: &["'"],
    },
    Rule {
        start: "Invalid datetime: '",
        ends: &["'"],
    },
];

/// `text` with every row value a database quoted in it replaced by [`WITHHELD`].
pub fn withhold(text: &str) -> String {
    RULES
        .iter()
        .fold(text.to_string(), |text, rule| apply(&text, rule))
}

/// Every value `rule` finds in `text` withheld.
fn apply(text: &str, rule: &Rule) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(rule.start) {
        let value_at = at + rule.start.len();
        out.push_str(&rest[..value_at]);
        out.push_str(WITHHELD);
        let after = &rest[value_at..];
        let end = rule
            .ends
            .iter()
            .find_map(|end| after.rfind(end))
            .unwrap_or(after.len());
        rest = &after[end..];
        // A value written over the rest of the text ends the search.
        if rest.is_empty() {
            break;
        }
    }
    out.push_str(rest);
    out
}

/// The text of a PostgreSQL data exception (SQLSTATE class 22) with its quoted values
/// withheld: `invalid input syntax for type integer: "x"`, `value "x" is out of range for
/// type integer`. Only that class is rewritten whole: elsewhere PostgreSQL quotes names
/// (`relation "t" does not exist`) a message must keep.
pub fn withhold_postgres_data_exception(sqlstate: &str, message: &str) -> String {
    // 22021 names the encoding in quotes and shows no value.
    if !sqlstate.starts_with("22") || sqlstate == "22021" {
        return message.to_string();
    }
    // The text between the first and the last quote is withheld as one: a value with quotes
    // of its own cannot end the withheld part early.
    match (message.find('"'), message.rfind('"')) {
        (Some(open), Some(close)) if close > open => {
            format!("{}{WITHHELD}{}", &message[..=open], &message[close..])
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_keys_and_failing_rows_keep_their_columns_only() {
        let cases = [
            (
                "duplicate key value violates unique constraint \"people_pkey\" (23505); Key (id, email)=(42, ada@example.com) already exists.",
                "duplicate key value violates unique constraint \"people_pkey\" (23505); Key (id, email)=(…) already exists.",
            ),
            (
                "insert or update on table \"t\" violates foreign key constraint \"t_fk\" (23503); Key (owner)=(secret-owner) is not present in table \"owners\".",
                "insert or update on table \"t\" violates foreign key constraint \"t_fk\" (23503); Key (owner)=(…) is not present in table \"owners\".",
            ),
            (
                "conflicting key value violates exclusion constraint \"no_overlap\" (23P01); Key (span)=([1,5)) conflicts with existing key (span)=([2,3)).",
                "conflicting key value violates exclusion constraint \"no_overlap\" (23P01); Key (span)=(…) conflicts with existing key (span)=(…).",
            ),
            (
                "null value in column \"name\" of relation \"people\" violates not-null constraint (23502); Failing row contains (7, null, hidden (x).).",
                "null value in column \"name\" of relation \"people\" violates not-null constraint (23502); Failing row contains (…).",
            ),
        ];
        for (said, shown) in cases {
            assert_eq!(withhold(said), shown);
        }
    }

    #[test]
    fn mysql_sqlserver_snowflake_and_bigquery_values_are_withheld() {
        let cases = [
            (
                "Duplicate entry '42-it's ada' for key 'PRIMARY'",
                "Duplicate entry '…' for key 'PRIMARY'",
            ),
            (
                "Incorrect integer value: 'forty two' for column `synqx`.`people`.`id` at row 3",
                "Incorrect integer value: '…' for column `synqx`.`people`.`id` at row 3",
            ),
            (
                "Truncated incorrect DOUBLE value: 'abc'",
                "Truncated incorrect DOUBLE value: '…'",
            ),
            (
                "Violation of PRIMARY KEY constraint 'PK_people'. Cannot insert duplicate key in object 'dbo.people'. The duplicate key value is (42, ada). (error 2627)",
                "Violation of PRIMARY KEY constraint 'PK_people'. Cannot insert duplicate key in object 'dbo.people'. The duplicate key value is (…). (error 2627)",
            ),
            (
                "String or binary data would be truncated in table 'synqx.dbo.people', column 'name'. Truncated value: 'Ada Love'. (error 2628)",
                "String or binary data would be truncated in table 'synqx.dbo.people', column 'name'. Truncated value: '…'. (error 2628)",
            ),
            (
                "Conversion failed when converting the varchar value 'ada' to data type int. (error 245)",
                "Conversion failed when converting the varchar value '…' to data type int. (error 245)",
            ),
            (
                "Numeric value 'ada' is not recognized",
                "Numeric value '…' is not recognized",
            ),
            (
                "Timestamp '2020-13-01' is not recognized",
                "Timestamp '…' is not recognized",
            ),
            (
                "Duplicate row detected during DML action\nRow Values: [42, \"ada\"]",
                "Duplicate row detected during DML action\nRow Values: […]",
            ),
            (
                "Could not parse 'ada' as INT64 for field id (position 0) starting at location 0",
                "Could not parse '…' as INT64 for field id (position 0) starting at location 0",
            ),
            (
                "Could not cast literal \"ada\" to type DATE",
                "Could not cast literal \"…\" to type DATE",
            ),
            ("Invalid date: '2020-13-01'", "Invalid date: '…'"),
        ];
        for (said, shown) in cases {
            assert_eq!(withhold(said), shown);
        }
    }

    #[test]
    fn names_and_texts_without_values_are_kept() {
        for said in [
            "relation \"people\" does not exist (42P01)",
            "Table 'synqx.people' doesn't exist",
            "Invalid object name 'dbo.people'. (error 208)",
            "Object 'DB.PUBLIC.PEOPLE' does not exist or not authorized.",
            "Data too long for column 'name' at row 1",
            "value too long for type character varying(3) (22001)",
        ] {
            assert_eq!(withhold(said), said);
        }
    }

    #[test]
    fn postgres_data_exceptions_withhold_their_quoted_values_only() {
        assert_eq!(
            withhold_postgres_data_exception(
                "22P02",
                "invalid input syntax for type integer: \"forty \"two\"\""
            ),
            "invalid input syntax for type integer: \"…\""
        );
        assert_eq!(
            withhold_postgres_data_exception(
                "22003",
                "value \"99999999999\" is out of range for type integer"
            ),
            "value \"…\" is out of range for type integer"
        );
        for (state, said) in [
            ("42P01", "relation \"people\" does not exist"),
            ("22021", "invalid byte sequence for encoding \"UTF8\": 0xff"),
            ("22001", "value too long for type character varying(3)"),
        ] {
            assert_eq!(withhold_postgres_data_exception(state, said), said);
        }
    }
}
