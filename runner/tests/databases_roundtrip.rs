//! The database connectors end to end through `synqx run`: every mapped type through a
//! Parquet folder and between servers, and incremental runs that race concurrent inserts.

mod support;

use support::*;

/// Every column of the source table, its PostgreSQL type and the type the table created from
/// its Arrow schema gets back.
const PG_COLUMNS: &[(&str, &str, &str)] = &[
    ("id", "integer", "integer"),
    ("c_int2", "smallint", "smallint"),
    ("c_int8", "bigint", "bigint"),
    ("c_real", "real", "real"),
    ("c_double", "double precision", "double precision"),
    ("c_num", "numeric(38,10)", "numeric(38,10)"),
    ("c_money", "numeric(12,2)", "numeric(12,2)"),
    ("c_text", "text", "text"),
    ("c_varchar", "varchar(20)", "text"),
    ("c_char", "char(3)", "text"),
    ("c_bool", "boolean", "boolean"),
    ("c_date", "date", "date"),
    ("c_time", "time", "time without time zone"),
    ("c_ts", "timestamp", "timestamp without time zone"),
    ("c_tstz", "timestamptz", "timestamp with time zone"),
    ("c_interval", "interval", "interval"),
    ("c_uuid", "uuid", "uuid"),
    ("c_json", "json", "jsonb"),
    ("c_jsonb", "jsonb", "jsonb"),
    ("c_bytea", "bytea", "bytea"),
    ("c_ints", "integer[]", "integer[]"),
    ("c_texts", "text[]", "text[]"),
];

/// Row 1 is NULL everywhere; rows 2 and 3 hold each type's lowest and highest value the type
/// map says survives (dates and timestamps to the limits of Arrow's 32-bit days and 64-bit
/// microseconds, ±Infinity for floats, 38 digits of numeric(38,10)); row 4 NaN, the smallest
/// magnitudes, NUL bytes and arrays holding NULLs.
const PG_ROWS: &str = r#"
(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL),
(2, -32768, -9223372036854775808, '-Infinity', '-Infinity',
 -9999999999999999999999999999.9999999999, -9999999999.99, '', '', '', false,
 '4713-01-01 BC', '00:00:00', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC',
 '-178000000 years -2147483647 days -1000 hours -0.000001 seconds',
 '00000000-0000-0000-0000-000000000000', '{}', '[]', '', '{}', '{}'),
(3, 32767, 9223372036854775807, 'Infinity', 'Infinity',
 9999999999999999999999999999.9999999999, 9999999999.99,
 '日本語 🎉 "quoted" back\slash	tab
newline', 'üüüüüüüüüüüüüüüüüüüü', 'ab', true, '5874897-12-31', '23:59:59.999999',
 '294246-12-31 23:59:59.999999', '294246-12-31 23:59:59.999999+00',
 '178000000 years 2147483647 days 1000 hours 0.000001 seconds',
 'ffffffff-ffff-ffff-ffff-ffffffffffff',
 '{"b": [1, 2.5, null, true], "a": "é",   "a": "dup"}', '{"z": {"y": []}, "ü": "\u00e9"}',
 '\x00ff00ff00'::bytea, '{2147483647,-2147483648}', '{"日本",""}'),
(4, 0, 0, 'NaN', 'NaN', 0.0000000001, -0.01, ' ', ' ', 'é', false, '1970-01-01',
 '12:34:56.789012', '1999-12-31 23:59:59.5', '2000-01-01 00:00:00.000001+00', '0 seconds',
 '0f0e0d0c-0b0a-0908-0706-050403020100', 'null', '"string"', '\x00'::bytea,
 '{NULL,1,NULL}', '{NULL,"",NULL}')
"#;

/// `(name, type)` of every column of the PostgreSQL table `table`, in order.
async fn column_types(conn: &mut sqlx::PgConnection, table: &str) -> Vec<Vec<Option<String>>> {
    postgres::rows(
        conn,
        &format!(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
    )
    .await
}

/// `(name, type)` as [`column_types`] lists them.
fn named_types<'a>(
    columns: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Vec<Option<String>>> {
    columns
        .into_iter()
        .map(|(n, t)| vec![Some(n.to_string()), Some(t.to_string())])
        .collect()
}

/// A Postgres table with every mapped type goes into a Parquet folder and from there into a
/// new table, in one pipeline, and comes back equal (EXCEPT both ways) and typed per the map.
#[test]
fn postgres_types_round_trip_through_parquet() {
    runtime().block_on(async {
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "rt_parquet").await;
        let s = &schema.name;
        let defs: Vec<String> = PG_COLUMNS
            .iter()
            .map(|(n, t, _)| format!("{n} {t}"))
            .collect();
        postgres::exec(
            &mut conn,
            &format!("CREATE TABLE {s}.src ({})", defs.join(", ")),
        )
        .await;
        postgres::exec(&mut conn, &format!("INSERT INTO {s}.src VALUES {PG_ROWS}")).await;

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let lake = d.join("lake");
        write_pipeline(
            d,
            &connections(None, Some(&lake)),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: roundtrip}}
spec:
  steps:
    - name: to-lake
      sync:
        source: {{connection: pg, asset: {{fqn: {s}.src}}}}
        # Parquet has no interval of months, days and microseconds (its INTERVAL holds
        # milliseconds): the column goes through the direct step below instead.
        transforms: [{{drop: [c_interval]}}]
        destination: {{connection: lake, asset: {{fqn: src/}}, format: parquet, mode: overwrite}}
    - name: direct
      sync:
        source: {{connection: pg, asset: {{fqn: {s}.src}}}}
        destination: {{connection: pg, asset: {{fqn: {s}.direct}}, mode: overwrite}}
    - name: back
      dependsOn: [to-lake]
      sync:
        source: {{connection: lake, asset: {{fqn: src/}}, format: parquet}}
        destination: {{connection: pg, asset: {{fqn: {s}.dst}}, mode: overwrite}}
"#
            ),
        );
        run_ok(d, &[]);

        // Without the drop, the step fails before writing a row and names the column.
        let bare = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_pipeline(
            bare.path(),
            &connections(None, Some(&bare.path().join("lake"))),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: interval}}
spec:
  steps:
    - name: to-lake
      sync:
        source: {{connection: pg, asset: {{fqn: {s}.src}}}}
        destination: {{connection: lake, asset: {{fqn: src/}}, format: parquet}}
"#
            ),
        );
        let t = run_failing(bare.path());
        assert!(
            t.contains("column \"c_interval\" is an interval") && t.contains("convert it in a transform"),
            "{t}"
        );

        let via_parquet: Vec<_> = PG_COLUMNS
            .iter()
            .filter(|c| c.0 != "c_interval")
            .collect();
        for (table, columns) in [("dst", via_parquet), ("direct", PG_COLUMNS.iter().collect())] {
            assert_eq!(
                column_types(&mut conn, &format!("{s}.{table}")).await,
                named_types(columns.iter().map(|(n, _, t)| (*n, *t))),
                "column types of the created table {table}"
            );

            // json becomes jsonb (JSON text carries the arrow.json extension, which a created
            // table stores as jsonb), so the source's json is compared as jsonb: key order,
            // whitespace and duplicate keys are what jsonb normalises anyway. char(3) becomes
            // text holding its padding ("ab "), so the target is compared as char(3) again.
            let list = |side: &str| -> String {
                columns
                    .iter()
                    .map(|(n, _, _)| match (*n, side) {
                        ("c_json", "src") => "c_json::jsonb".to_string(),
                        ("c_char", "src") => "c_char".to_string(),
                        ("c_char", _) => "c_char::char(3)".to_string(),
                        (n, _) => n.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            assert_eq!(
                postgres::int(&mut conn, &format!("SELECT count(*) FROM {s}.{table}")).await,
                4
            );
            for (a, b) in [("src", table), (table, "src")] {
                let sql = format!(
                    "SELECT count(*) FROM (SELECT {} FROM {s}.{a} EXCEPT ALL SELECT {} FROM {s}.{b}) x",
                    list(a),
                    list(b),
                );
                assert_eq!(postgres::int(&mut conn, &sql).await, 0, "rows of {a} missing in {b}");
            }
            // The padding is really kept, not re-added by the cast above.
            assert_eq!(
                postgres::text(&mut conn, &format!("SELECT c_char FROM {s}.{table} WHERE id = 3")).await,
                Some("ab ".into())
            );
        }
    });
}

/// How a MariaDB value read back as text (binary as HEX) reads in PostgreSQL after the move.
#[derive(Clone, Copy)]
enum Becomes {
    /// The same text.
    Same,
    /// 1/0 -> true/false.
    Bool,
    /// HEX -> bytea's `\x…` in lower case.
    Bytes,
    /// The same number (the two servers print floats differently).
    Float,
    /// The same JSON value (jsonb normalises the text).
    Json,
    /// UTC text -> `…+00`.
    Utc,
    /// The same date or datetime; a zero date (`0000-00-00`) becomes NULL.
    Date,
}

/// Column, MariaDB type, how it is read back there, the PostgreSQL type the created table gets.
#[rustfmt::skip]
const MY_COLUMNS: &[(&str, &str, &str, Becomes, &str)] = &[
    ("c_bool",      "tinyint(1)",         "c_bool",                    Becomes::Bool,  "boolean"),
    ("c_boolean",   "bool",               "c_boolean",                 Becomes::Bool,  "boolean"),
    ("c_bit1",      "bit(1)",             "c_bit1 + 0",                Becomes::Bool,  "boolean"),
    ("c_tiny",      "tinyint",            "c_tiny",                    Becomes::Same,  "smallint"),
    ("c_small",     "smallint",           "c_small",                   Becomes::Same,  "smallint"),
    ("c_medium",    "mediumint",          "c_medium",                  Becomes::Same,  "integer"),
    ("c_int",       "int",                "c_int",                     Becomes::Same,  "integer"),
    ("c_big",       "bigint",             "c_big",                     Becomes::Same,  "bigint"),
    ("c_utiny",     "tinyint unsigned",   "c_utiny",                   Becomes::Same,  "smallint"),
    ("c_usmall",    "smallint unsigned",  "c_usmall",                  Becomes::Same,  "integer"),
    ("c_umedium",   "mediumint unsigned", "c_umedium",                 Becomes::Same,  "bigint"),
    ("c_uint",      "int unsigned",       "c_uint",                    Becomes::Same,  "bigint"),
    ("c_ubig",      "bigint unsigned",    "c_ubig",                    Becomes::Same,  "numeric(20,0)"),
    ("c_float",     "float",              "c_float",                   Becomes::Float, "real"),
    ("c_double",    "double",             "c_double",                  Becomes::Float, "double precision"),
    ("c_dec",       "decimal(38,10)",     "c_dec",                     Becomes::Same,  "numeric(38,10)"),
    ("c_wide",      "decimal(65,30)",     "c_wide",                    Becomes::Same,  "text"),
    ("c_bits",      "bit(12)",            "LPAD(HEX(c_bits), 4, '0')", Becomes::Bytes, "bytea"),
    ("c_year",      "year",               "c_year",                    Becomes::Same,  "smallint"),
    ("c_char",      "char(3)",            "c_char",                    Becomes::Same,  "text"),
    ("c_varchar",   "varchar(20)",        "c_varchar",                 Becomes::Same,  "text"),
    ("c_text",      "text",               "c_text",                    Becomes::Same,  "text"),
    ("c_enum",      "enum('a','ü')",      "c_enum",                    Becomes::Same,  "text"),
    ("c_set",       "set('x','y')",       "c_set",                     Becomes::Same,  "text"),
    ("c_json",      "json",               "c_json",                    Becomes::Json,  "jsonb"),
    ("c_binary",    "binary(4)",          "HEX(c_binary)",             Becomes::Bytes, "bytea"),
    ("c_varbinary", "varbinary(10)",      "HEX(c_varbinary)",          Becomes::Bytes, "bytea"),
    ("c_blob",      "blob",               "HEX(c_blob)",               Becomes::Bytes, "bytea"),
    ("c_uuid",      "uuid",               "c_uuid",                    Becomes::Same,  "uuid"),
    ("c_date",      "date",               "c_date",                    Becomes::Date,  "date"),
    ("c_time",      "time(6)",            "c_time",                    Becomes::Same,  "time without time zone"),
    ("c_datetime",  "datetime(6)",        "c_datetime",                Becomes::Date,  "timestamp without time zone"),
    ("c_ts",        "timestamp(6) NULL",  "c_ts",                      Becomes::Utc,   "timestamp with time zone"),
];

/// Row 1 NULL everywhere, rows 2 and 3 the lowest and highest values, row 4 zero dates (read
/// as NULL), NUL bytes and unicode. `time` stays within 00:00–24:00: MariaDB's wider range is
/// a bad row by the type map.
const MY_ROWS: &str = r#"
(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL),
(2, 0, false, b'0', -128, -32768, -8388608, -2147483648, -9223372036854775808, 0, 0, 0, 0, 0,
 -1.5, -1.7976931348623157e308, -9999999999999999999999999999.9999999999,
 -99999999999999999999999999999999999.999999999999999999999999999999, b'000000000000', 1901,
 '', '', '', 'a', '', '[]', x'00000000', x'', x'', '00000000-0000-0000-0000-000000000000',
 '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01'),
(3, 1, true, b'1', 127, 32767, 8388607, 2147483647, 9223372036854775807, 255, 65535, 16777215,
 4294967295, 18446744073709551615, 0.5, 1.7976931348623157e308,
 9999999999999999999999999999.9999999999,
 99999999999999999999999999999999999.999999999999999999999999999999, b'111111111111', 2155,
 'ab', 'üüüüüüüüüüüüüüüüüüüü', '日本語 🎉 "q" back\\slash\ttab\nnewline', 'ü', 'x,y',
 '{"b": [1, 2.5, null, true], "a": "é"}', x'00ff00ff', x'0000', x'00ff00',
 'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31', '23:59:59.999999',
 '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999'),
(4, 1, 0, b'0', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1e-30, 5e-324, 0.0000000001, 0.000000000000000000000000000001,
 b'000000000001', 2000, ' ', ' ', ' ', 'ü', 'y', '"string"', x'61000000', x'00', x'',
 '0f0e0d0c-0b0a-0908-0706-050403020100', '0000-00-00', '12:34:56.789012',
 '0000-00-00 00:00:00', '2000-01-01 00:00:00.000001')
"#;

fn expected_in_postgres(mysql: Option<&str>, how: Becomes) -> Option<String> {
    let v = mysql?;
    Some(match how {
        Becomes::Same => v.to_string(),
        Becomes::Bool => match v {
            "1" => "true".into(),
            "0" => "false".into(),
            other => panic!("not a MariaDB boolean: {other}"),
        },
        Becomes::Bytes => format!("\\x{}", v.to_ascii_lowercase()),
        Becomes::Float | Becomes::Json => v.to_string(),
        Becomes::Utc => format!("{v}+00"),
        Becomes::Date if v.starts_with("0000-00-00") => return None,
        Becomes::Date => v.to_string(),
    })
}

fn same_value(how: Becomes, expected: &Option<String>, actual: &Option<String>) -> bool {
    match (how, expected, actual) {
        (Becomes::Float, Some(e), Some(a)) => e.parse::<f64>().ok() == a.parse::<f64>().ok(),
        (Becomes::Json, Some(e), Some(a)) => {
            serde_json::from_str::<serde_json::Value>(e).ok()
                == serde_json::from_str::<serde_json::Value>(a).ok()
        }
        // Fractional seconds: MariaDB prints all six digits, PostgreSQL drops trailing zeros.
        (Becomes::Same | Becomes::Date | Becomes::Utc, Some(e), Some(a)) if e.contains(':') => {
            let trim = |s: &str| {
                let (head, zone) = s.split_at(s.find('+').unwrap_or(s.len()));
                let head = if head.contains('.') {
                    head.trim_end_matches('0').trim_end_matches('.')
                } else {
                    head
                };
                format!("{head}{zone}")
            };
            trim(e) == trim(a)
        }
        _ => expected == actual,
    }
}

/// A MariaDB table with every type of the MySQL type map moves into PostgreSQL in one step;
/// each value read back there is the one MariaDB holds, in the mapped type.
#[test]
fn mariadb_types_arrive_in_postgres() {
    runtime().block_on(async {
        let db = mysql::Database::new("rt_maria").await;
        let mut mc = mysql::connect(Some(&db.name)).await;
        mysql::exec(&mut mc, "SET time_zone = '+00:00'").await;
        let defs: Vec<String> = MY_COLUMNS
            .iter()
            .map(|(n, t, ..)| format!("{n} {t}"))
            .collect();
        mysql::exec(
            &mut mc,
            &format!("CREATE TABLE src (id int PRIMARY KEY, {})", defs.join(", ")),
        )
        .await;
        mysql::exec(&mut mc, &format!("INSERT INTO src VALUES {MY_ROWS}")).await;

        let mut conn = postgres::connect().await;
        postgres::exec(&mut conn, "SET TIME ZONE 'UTC'").await;
        let schema = postgres::Schema::new(&mut conn, "rt_maria").await;
        let s = &schema.name;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write_pipeline(
            d,
            &connections(Some(&db.name), None),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: maria}}
spec:
  steps:
    - name: move
      sync:
        source: {{connection: my, asset: {{fqn: src}}}}
        destination: {{connection: pg, asset: {{fqn: {s}.dst}}, mode: overwrite}}
"#
            ),
        );
        run_ok(d, &[]);

        // MariaDB's `int` id is an `integer` too.
        let id = std::iter::once(("id", "integer"));
        assert_eq!(
            column_types(&mut conn, &format!("{s}.dst")).await,
            named_types(id.chain(MY_COLUMNS.iter().map(|(n, .., t)| (*n, *t)))),
            "column types of the table created in PostgreSQL"
        );

        // Every column as text, by id.
        let select = |from: &str, column: fn(&(&str, &str, &str, Becomes, &str)) -> String| {
            let columns: Vec<String> = MY_COLUMNS.iter().map(column).collect();
            format!("SELECT {} FROM {from} ORDER BY id", columns.join(", "))
        };
        let mysql_side = mysql::rows(
            &mut mc,
            &select("src", |c| format!("CAST({} AS CHAR)", c.2)),
        )
        .await;
        let pg_side = postgres::rows(
            &mut conn,
            &select(&format!("{s}.dst"), |c| format!("{}::text", c.0)),
        )
        .await;
        assert_eq!(pg_side.len(), 4, "rows in PostgreSQL");
        assert_eq!(mysql_side.len(), 4, "rows in MariaDB");
        let mut wrong = Vec::new();
        for (row, (m, p)) in mysql_side.iter().zip(&pg_side).enumerate() {
            for (i, (name, _, _, how, _)) in MY_COLUMNS.iter().enumerate() {
                let expected = expected_in_postgres(m[i].as_deref(), *how);
                if !same_value(*how, &expected, &p[i]) {
                    wrong.push(format!(
                        "row {}: {name}: MariaDB {:?}, expected {expected:?}, PostgreSQL {:?}",
                        row + 1,
                        m[i],
                        p[i]
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "values that changed:\n{}",
            wrong.join("\n")
        );
        // Anchors the comparison above cannot vouch for on its own: the extremes really are
        // there, and a zero date really is NULL.
        let anchors = postgres::rows(
            &mut conn,
            &format!(
                "SELECT c_ubig::text, c_big::text, c_bits::text, c_date::text, c_bool::text, \
                 c_varchar FROM {s}.dst WHERE id IN (3, 4) ORDER BY id"
            ),
        )
        .await;
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            anchors,
            vec![
                vec![
                    some("18446744073709551615"),
                    some("9223372036854775807"),
                    some("\\x0fff"),
                    some("9999-12-31"),
                    some("true"),
                    some(&"ü".repeat(20))
                ],
                vec![
                    some("10"),
                    some("5"),
                    some("\\x0001"),
                    None,
                    some("true"),
                    some(" ")
                ],
            ]
        );

        // MariaDB text may hold NUL, PostgreSQL text cannot: the run fails naming the column
        // and row, and the overwrite leaves the table as it was.
        mysql::exec(&mut mc, "INSERT INTO src (id, c_text) VALUES (5, 'a\\0b')").await;
        let t = run_failing(d);
        assert!(
            t.contains("row 5, column \"c_text\"") && t.contains("NUL character"),
            "{t}"
        );
        assert_eq!(
            postgres::int(&mut conn, &format!("SELECT count(*) FROM {s}.dst")).await,
            4
        );
        drop(schema);
        drop(db);
    });
}

#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Postgres,
    Mariadb,
}

/// Runs `sql` on the source's server: MariaDB when there is a connection to it, else PostgreSQL.
async fn exec_at_source(
    pg_conn: &mut sqlx::PgConnection,
    my_conn: Option<&mut sqlx::MySqlConnection>,
    sql: &str,
) {
    match my_conn {
        Some(c) => mysql::exec(c, sql).await,
        None => postgres::exec(pg_conn, sql).await,
    }
}

/// Inserts rows `(id, cursor)` into the source table.
async fn insert_source(
    pg_conn: &mut sqlx::PgConnection,
    my_conn: Option<&mut sqlx::MySqlConnection>,
    table: &str,
    rows: &[(i64, i64)],
) {
    let values: Vec<String> = rows
        .iter()
        .map(|(id, cur)| format!("({id}, {cur}, 'row {id}')"))
        .collect();
    let sql = format!("INSERT INTO {table} VALUES {}", values.join(", "));
    exec_at_source(pg_conn, my_conn, &sql).await;
}

/// Three incremental runs into PostgreSQL while rows keep arriving. Run 1 reads ids 1–20 with
/// cursors 1–10, two rows per value (equal cursors within a run all move). Run 2's source
/// query sleeps per row; while it sleeps, ids 41–44 are committed with cursors 20, 20 (equal to
/// the maximum run 2 reads), 21 and 22. Run 2 reads from a snapshot taken before them, so its
/// watermark is 20. Run 3 reads `cursor > 20`: ids 43 and 44 move, ids 41 and 42 are skipped
/// for good — a row that commits late with a cursor equal to the watermark is never seen
/// again. With `lookback: 1` and `upsert`, run 3 reads `cursor > 19` and merges by id, so the
/// late rows arrive too and nothing is doubled.
fn incremental_with_concurrent_inserts(origin: Origin, lookback: bool) {
    runtime().block_on(async {
        let mut conn = postgres::connect().await;
        let schema = postgres::Schema::new(&mut conn, "incr").await;
        let s = schema.name.clone();
        let mut admin = mysql::connect(None).await;
        let db = match origin {
            Origin::Mariadb => Some(mysql::Database::new("incr").await),
            Origin::Postgres => None,
        };
        let mut mc = match &db {
            Some(db) => Some(mysql::connect(Some(&db.name)).await),
            None => None,
        };
        let (src, ctl, query, connection) = match origin {
            Origin::Postgres => (
                format!("{s}.src"),
                format!("{s}.ctl"),
                format!(
                    "SELECT id, cur, payload FROM {s}.src WHERE pg_sleep((SELECT secs FROM {s}.ctl)) IS NOT NULL"
                ),
                "pg",
            ),
            Origin::Mariadb => (
                "src".to_string(),
                "ctl".to_string(),
                "SELECT id, cur, payload FROM src WHERE SLEEP((SELECT secs FROM ctl)) = 0"
                    .to_string(),
                "my",
            ),
        };
        for sql in [
            format!("CREATE TABLE {src} (id bigint PRIMARY KEY, cur bigint NOT NULL, payload text)"),
            format!("CREATE TABLE {ctl} (secs double precision)"),
            format!("INSERT INTO {ctl} VALUES (0)"),
        ] {
            exec_at_source(&mut conn, mc.as_mut(), &sql).await;
        }
        let pairs = |ids: std::ops::RangeInclusive<i64>| -> Vec<(i64, i64)> {
            ids.map(|id| (id, (id + 1) / 2)).collect()
        };
        insert_source(&mut conn, mc.as_mut(), &src, &pairs(1..=20)).await;

        let (mode, incremental) = if lookback {
            (
                "mode: upsert, primaryKey: [id]",
                "{cursor: cur, lookback: \"1\"}",
            )
        } else {
            ("mode: append", "{cursor: cur}")
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        write_pipeline(
            d,
            &connections(db.as_ref().map(|db| db.name.as_str()), None),
            &format!(
                r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: incr}}
spec:
  steps:
    - name: load
      sync:
        source:
          connection: {connection}
          asset: {{fqn: {src}}}
          query: "{query}"
          incremental: {incremental}
        destination: {{connection: pg, asset: {{fqn: {s}.dst}}, {mode}}}
"#
            ),
        );
        let ids_sql = format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {s}.dst");
        let list = |r: std::ops::RangeInclusive<i64>, extra: &[i64]| -> String {
            r.chain(extra.iter().copied())
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };

        run_ok(d, &[]);
        assert_eq!(postgres::text(&mut conn, &ids_sql).await.unwrap_or_default(), list(1..=20, &[]), "after run 1");
        assert_eq!(watermark(d, "incr", "load").as_deref(), Some("10"));

        insert_source(&mut conn, mc.as_mut(), &src, &pairs(21..=40)).await;
        exec_at_source(&mut conn, mc.as_mut(), &format!("UPDATE {ctl} SET secs = 0.1")).await;
        let mut run2 = spawn_synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
        // The source is inside its statement once a row's sleep shows on the server: its
        // snapshot (PostgreSQL) or read view (InnoDB, opened at the first row) is taken.
        let sleeping = match origin {
            Origin::Postgres => format!(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%{s}.ctl%'"
            ),
            Origin::Mariadb => format!(
                "SELECT count(*) FROM information_schema.processlist WHERE state = 'User sleep' AND db = '{}'",
                db.as_ref().map(|d| d.name.as_str()).unwrap_or_default()
            ),
        };
        let started = std::time::Instant::now();
        loop {
            let n = match origin {
                Origin::Postgres => postgres::int(&mut conn, &sleeping).await,
                Origin::Mariadb => {
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sleeping.clone()))
                        .fetch_one(&mut admin)
                        .await
                        .unwrap_or_else(|e| panic!("{sleeping}: {e}"))
                }
            };
            if n > 0 {
                break;
            }
            if let Ok(Some(status)) = run2.try_wait() {
                panic!("run 2 ended ({status}) before its source was seen reading");
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "run 2's source never showed up on the server"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        insert_source(
            &mut conn,
            mc.as_mut(),
            &src,
            &[(41, 20), (42, 20), (43, 21), (44, 22)],
        )
        .await;
        assert!(
            matches!(run2.try_wait(), Ok(None)),
            "run 2 must still be reading when the late rows commit, or the race is not real"
        );
        let out = run2.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "run 2 failed:\n{}", text(&out));
        assert_eq!(postgres::text(&mut conn, &ids_sql).await.unwrap_or_default(), list(1..=40, &[]), "after run 2");
        assert_eq!(watermark(d, "incr", "load").as_deref(), Some("20"));

        exec_at_source(&mut conn, mc.as_mut(), &format!("UPDATE {ctl} SET secs = 0")).await;
        run_ok(d, &[]);
        let after3 = if lookback {
            list(1..=44, &[])
        } else {
            list(1..=40, &[43, 44])
        };
        assert_eq!(postgres::text(&mut conn, &ids_sql).await.unwrap_or_default(), after3, "after run 3");
        assert_eq!(
            postgres::int(
                &mut conn,
                &format!("SELECT count(*) - count(DISTINCT id) FROM {s}.dst")
            )
            .await,
            0,
            "a row moved twice"
        );
        assert_eq!(watermark(d, "incr", "load").as_deref(), Some("22"));
        drop(schema);
        drop(db);
    });
}

#[test]
fn postgres_incremental_skips_late_rows_at_the_watermark() {
    incremental_with_concurrent_inserts(Origin::Postgres, false);
}

#[test]
fn postgres_incremental_with_lookback_and_upsert_takes_late_rows() {
    incremental_with_concurrent_inserts(Origin::Postgres, true);
}

#[test]
fn mariadb_incremental_skips_late_rows_at_the_watermark() {
    incremental_with_concurrent_inserts(Origin::Mariadb, false);
}

#[test]
fn mariadb_incremental_with_lookback_and_upsert_takes_late_rows() {
    incremental_with_concurrent_inserts(Origin::Mariadb, true);
}
