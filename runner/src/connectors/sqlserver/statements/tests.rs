use super::super::types::read_column;
use super::*;

fn table(fqn: &str) -> Table {
    Table::parse("c", fqn).unwrap()
}

fn defs(list: &[(&str, &str)]) -> Vec<ColumnDef> {
    list.iter()
        .map(|(n, t)| ColumnDef {
            name: n.to_string(),
            declared: t.to_string(),
        })
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn literals_double_quotes_and_keep_unicode_with_the_n_prefix() {
    assert_eq!(literal("O'Brien"), "N'O''Brien'");
    assert_eq!(literal("''"), "N''''''");
    assert_eq!(literal("Zürich ✓ 北京"), "N'Zürich ✓ 北京'");
    assert_eq!(literal(""), "N''");
}

#[test]
fn catalog_queries_quote_names_as_literals() {
    assert_eq!(
        columns_query(&table("sales.o'rders")),
        "SELECT COLUMN_NAME, DATA_TYPE, CAST(NUMERIC_PRECISION AS int), CAST(NUMERIC_SCALE AS int) FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = N'sales' AND TABLE_NAME = N'o''rders' ORDER BY ORDINAL_POSITION"
    );
    assert!(columns_query(&table("dw.s.t")).contains("FROM [dw].INFORMATION_SCHEMA.COLUMNS"));
    assert!(
        describe_query("SELECT 'x' AS a")
            .contains("sys.dm_exec_describe_first_result_set(N'SELECT ''x'' AS a', NULL, 0)")
    );
}

#[test]
fn selects_list_columns_and_convert_the_ones_tiberius_cannot_read_exactly() {
    let columns = vec![
        read_column("id", "int", None, None).unwrap(),
        read_column("price]x", "money", None, None).unwrap(),
        read_column("path", "hierarchyid", None, None).unwrap(),
        read_column("shape", "geography", None, None).unwrap(),
    ];
    assert_eq!(
        select(Source::Table(&table("dbo.orders")), &columns, None),
        "SELECT [id], CAST([price]]x] AS decimal(19,4)) AS [price]]x], CAST([path] AS nvarchar(max)) AS [path], [shape].STAsText() AS [shape] FROM [dbo].[orders]"
    );
    let one = &columns[..1];
    assert_eq!(
        select_query("SELECT id FROM t ORDER BY id", &columns[..2], None),
        "SELECT id FROM t ORDER BY id"
    );
    assert_eq!(
        select_query("SELECT path FROM t", &columns[2..3], None),
        "SELECT CAST([path] AS nvarchar(max)) AS [path] FROM (\nSELECT path FROM t\n) AS [synqx_source]"
    );
    assert_eq!(
        select_query("SELECT id FROM t", one, Some("[id] > 5")),
        "SELECT [id] FROM (\nSELECT id FROM t\n) AS [synqx_source] WHERE [id] > 5"
    );
    assert_eq!(
        select(Source::Query("SELECT id FROM t"), one, Some("[id] > 5")),
        "SELECT [id] FROM (\nSELECT id FROM t\n) AS [synqx_source] WHERE [id] > 5"
    );
}

#[test]
fn cursor_conditions_use_typed_validated_literals() {
    for (column, sql_type, watermark, condition) in [
        (
            "updated_at",
            "datetime2",
            "2024-03-10T12:00:00.1234567",
            "[updated_at] > CAST(N'2024-03-10T12:00:00.123456' AS datetime2(7))",
        ),
        (
            "updated_at",
            "datetime",
            "2024-03-10 12:00:00",
            "[updated_at] > CAST(N'2024-03-10T12:00:00.000000' AS datetime2(7))",
        ),
        (
            "ts",
            "datetimeoffset",
            "2024-03-10T14:00:00+02:00",
            "[ts] > CAST(N'2024-03-10T12:00:00.000000+00:00' AS datetimeoffset(7))",
        ),
        ("id", "int", " 42 ", "[id] > 42"),
        (
            "id",
            "bigint",
            "-9223372036854775808",
            "[id] > -9223372036854775808",
        ),
        ("amount", "decimal", "12.50", "[amount] > 12.50"),
        ("f", "float", "1.5e-3", "[f] > 1.5e-3"),
        (
            "code",
            "nvarchar",
            "O'Brien; DROP TABLE x",
            "[code] > N'O''Brien; DROP TABLE x'",
        ),
        (
            "d",
            "date",
            "2024-03-10",
            "[d] > CAST(N'2024-03-10' AS date)",
        ),
        (
            "t",
            "time",
            "08:30:00",
            "[t] > CAST(N'08:30:00.000000' AS time(7))",
        ),
        (
            "g",
            "uniqueidentifier",
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "[g] > CAST(N'67e55044-10b1-426f-9247-bb680e5fe0c8' AS uniqueidentifier)",
        ),
    ] {
        assert_eq!(
            cursor_condition(column, sql_type, watermark),
            Ok(condition.to_string()),
            "{sql_type} {watermark:?}"
        );
    }
}

#[test]
fn cursor_watermarks_that_do_not_fit_the_column_are_rejected() {
    let e = cursor_condition("id", "int", "1 OR 1=1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "watermark `1 OR 1=1` is not an integer (cursor column \"id\" is int; reset it with `synqx state reset` or set it with `synqx state set`)"
    );
    for bad in ["1e", "--1", "1.2.3", "0x10", "", "1;"] {
        assert!(cursor_condition("a", "decimal", bad).is_err(), "{bad}");
    }
    assert!(cursor_condition("t", "datetime2", "yesterday").is_err());
    assert_eq!(
        cursor_condition("x", "varbinary", "00"),
        Err(CursorError::Uncomparable {
            column: "x".into(),
            sql_type: "varbinary".into()
        })
    );
}

#[test]
fn create_table_declares_types_nullability_and_the_primary_key() {
    let columns = defs(&[
        ("id", "bigint"),
        ("na]me", "nvarchar(max)"),
        ("k2", "nvarchar(450)"),
    ]);
    assert_eq!(
        create_table("[dbo].[t]", &columns, &[]),
        "CREATE TABLE [dbo].[t] (\n  [id] bigint NULL,\n  [na]]me] nvarchar(max) NULL,\n  [k2] nvarchar(450) NULL\n)"
    );
    assert_eq!(
        create_table("[dbo].[t]", &columns, &names(&["id", "k2"])),
        "CREATE TABLE [dbo].[t] (\n  [id] bigint NOT NULL,\n  [na]]me] nvarchar(max) NULL,\n  [k2] nvarchar(450) NOT NULL,\n  PRIMARY KEY ([id], [k2])\n)"
    );
}

#[test]
fn add_columns_and_insert_select_quote_every_name() {
    assert_eq!(
        add_columns("[s].[t]", &defs(&[("a b", "int"), ("c]", "date")])),
        "ALTER TABLE [s].[t] ADD [a b] int NULL, [c]]] date NULL"
    );
    assert_eq!(
        insert_select("[s].[t]", "[#stage_1]", &names(&["id", "x]"])),
        "INSERT INTO [s].[t] ([id], [x]]]) SELECT [id], [x]]] FROM [#stage_1]"
    );
}

#[test]
fn the_overwrite_swap_renames_aside_renames_into_place_and_drops() {
    let t = table("sales.orders");
    assert_eq!(
        swap(&t, "orders_synqx_new_1", "orders_synqx_old_1", true),
        vec![
            "EXEC sp_rename N'[sales].[orders]', N'orders_synqx_old_1'".to_string(),
            "EXEC sp_rename N'[sales].[orders_synqx_new_1]', N'orders'".to_string(),
            "DROP TABLE [sales].[orders_synqx_old_1]".to_string(),
        ]
    );
    assert_eq!(
        swap(&table("dw.s.o'x"), "n", "o", false),
        vec!["EXEC [dw].sys.sp_rename N'[s].[n]', N'o''x'".to_string()]
    );
}

#[test]
fn merge_keeps_the_last_row_of_a_key_and_updates_the_other_columns() {
    let sql = merge(
        "[dbo].[customers]",
        "[#synqx_stage]",
        &names(&["id", "name", "email"]),
        &names(&["id"]),
    );
    assert_eq!(
        sql,
        "MERGE [dbo].[customers] WITH (HOLDLOCK) AS target\nUSING (\n  SELECT [id], [name], [email] FROM (\n    SELECT [id], [name], [email], ROW_NUMBER() OVER (PARTITION BY [id] ORDER BY [__synqx_ordinal] DESC) AS [__synqx_rn]\n    FROM [#synqx_stage]\n  ) AS ranked WHERE [__synqx_rn] = 1\n) AS source\nON target.[id] = source.[id]\nWHEN MATCHED THEN UPDATE SET target.[name] = source.[name], target.[email] = source.[email]\nWHEN NOT MATCHED THEN INSERT ([id], [name], [email]) VALUES (source.[id], source.[name], source.[email]);"
    );
}

#[test]
fn merge_on_a_two_column_key_with_quoted_identifiers() {
    let sql = merge(
        "[s].[t]",
        "[#st]",
        &names(&["tenant]id", "order id", "total"]),
        &names(&["tenant]id", "order id"]),
    );
    assert!(
        sql.contains("PARTITION BY [tenant]]id], [order id] ORDER BY"),
        "{sql}"
    );
    assert!(
        sql.contains("ON target.[tenant]]id] = source.[tenant]]id] AND target.[order id] = source.[order id]\n"),
        "{sql}"
    );
    assert!(
        sql.contains("WHEN MATCHED THEN UPDATE SET target.[total] = source.[total]\n"),
        "{sql}"
    );
    // A table of key columns only has nothing to update.
    let keys_only = merge("[s].[t]", "[#st]", &names(&["a", "b"]), &names(&["a", "b"]));
    assert!(!keys_only.contains("WHEN MATCHED"), "{keys_only}");
    assert!(
        keys_only
            .ends_with("WHEN NOT MATCHED THEN INSERT ([a], [b]) VALUES (source.[a], source.[b]);")
    );
}
