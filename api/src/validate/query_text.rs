//! The text of a `sql` transform, checked without a SQL parser: it must be one query over the
//! step's input. The runner parses and plans it with DDL, DML and statements refused; this
//! check says so earlier, in `synqx validate` and in the Pipeline's `Ready` condition.

/// Words a query starts with.
const QUERY_STARTS: [&str; 3] = ["SELECT", "WITH", "VALUES"];

/// Why `text` is not a query, when its first word says so.
pub fn transform_problem(text: &str) -> Option<String> {
    let first = first_word(text)?;
    let upper = first.to_ascii_uppercase();
    if QUERY_STARTS.contains(&upper.as_str()) {
        return None;
    }
    Some(format!(
        "`{upper}` is not allowed: a sql transform is one query over its input (SELECT … FROM input) and cannot create tables, read or write files, or change settings"
    ))
}

/// The first word of `text` after blanks, comments and opening parentheses.
fn first_word(text: &str) -> Option<&str> {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, line)| line);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass_and_statements_are_named() {
        for ok in [
            "SELECT * FROM input",
            "  -- totals\n select 1",
            "/* a */ (WITH x AS (SELECT 1) SELECT * FROM x)",
            "values (1)",
        ] {
            assert_eq!(transform_problem(ok), None, "{ok}");
        }
        for (bad, word) in [
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/var/run/secrets/kubernetes.io/serviceaccount/token'",
                "CREATE",
            ),
            ("copy (select 1) to '/tmp/x.csv'", "COPY"),
            ("/* hidden */ -- and\n  drop table input", "DROP"),
            ("SET datafusion.catalog.information_schema = true", "SET"),
        ] {
            let problem = transform_problem(bad).unwrap_or_default();
            assert!(
                problem.starts_with(&format!(
                    "`{word}` is not allowed: a sql transform is one query"
                )),
                "{bad}: {problem}"
            );
        }
    }
}
