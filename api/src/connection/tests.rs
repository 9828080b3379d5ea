//! The connector table: kinds, families, and what blocks say about themselves.

use super::*;

#[test]
fn kind_needs_exactly_one_block() {
    let mut spec = ConnectionSpec::default();
    assert_eq!(spec.kind(), None);
    spec.sqlite = Some(SqliteConnection {
        path: "x.db".into(),
    });
    assert_eq!(spec.kind(), Some(ConnectorKind::Sqlite));
    spec.filesystem = Some(FilesystemConnection {
        path: "data".into(),
    });
    assert_eq!(spec.kind(), None);
    assert_eq!(
        spec.kinds(),
        vec![ConnectorKind::Filesystem, ConnectorKind::Sqlite]
    );
}

#[test]
fn what_a_step_may_do_follows_from_the_family_in_the_table() {
    let of = |f: fn(ConnectorKind) -> bool| -> Vec<String> {
        ConnectorKind::ALL
            .iter()
            .filter(|k| f(**k))
            .map(|k| k.to_string())
            .collect()
    };
    assert_eq!(
        of(ConnectorKind::is_sql),
        [
            "postgres",
            "mysql",
            "sqlserver",
            "snowflake",
            "bigquery",
            "sqlite"
        ]
    );
    assert_eq!(of(ConnectorKind::is_files), ["s3", "filesystem"]);
    assert_eq!(
        of(|k| !k.can_be_destination()),
        ["rest"],
        "only the HTTP API is read-only"
    );
    assert_eq!(
        of(ConnectorKind::supports_upsert),
        [
            "postgres",
            "mysql",
            "sqlserver",
            "snowflake",
            "bigquery",
            "mongodb",
            "redis",
            "sqlite"
        ]
    );
}

#[test]
fn block_problems_are_named_below_spec_with_the_block_itself_by_its_name() {
    let spec = ConnectionSpec {
        s3: Some(S3Connection {
            bucket: "raw".into(),
            access_key_id: Some(SecretValue::plain("AKIA")),
            ..Default::default()
        }),
        snowflake: Some(SnowflakeConnection {
            account: "acme".into(),
            warehouse: " ".into(),
            database: "dw".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let paths: Vec<String> = spec.block_problems().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["snowflake.warehouse", "snowflake", "s3"]);
    let secrets: Vec<String> = spec.secret_values().into_iter().map(|(p, _)| p).collect();
    assert_eq!(secrets, ["snowflake.user", "s3.accessKeyId"]);
}

#[test]
fn secret_values_are_listed_with_paths() {
    let spec = ConnectionSpec {
        postgres: Some(PostgresConnection {
            host: "db".into(),
            database: "d".into(),
            user: SecretValue::plain("etl"),
            password: Some(SecretValue::from_secret("creds", "password")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let paths: Vec<String> = spec.secret_values().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["postgres.user", "postgres.password"]);
}
