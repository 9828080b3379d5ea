//! What the SQLite tests share: a real database file in a temporary directory, opened through
//! the registry, and read back through SQLite itself so assertions see what was committed.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection as RawConnection};
use sqlx::{AssertSqlSafe, Connection};
use synqx_api::ConnectionSpec;
use synqx_api::connection::SqliteConnection;
use synqx_api::pipeline::Source as SourceSpec;
use synqx_testkit::rows::{cells, hex, lines};

use super::super::SqliteConfig;
use super::super::cell::Cell;
use super::super::connect::Database;
use crate::connectors::ConnectionRef;
use crate::connectors::tests::{Harness, opened_through_harness, specs_naming};
pub(super) use crate::connectors::tests::{err, ok, people};
use crate::engine::{CursorFilter, Rejects, Sink};
use crate::error::Result;
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "local-db";

/// A database file below a directory that does not exist yet.
pub(super) struct Db {
    pub dir: tempfile::TempDir,
    spec: ConnectionSpec,
    secrets: Secrets,
    path: PathBuf,
    harness: Harness,
}

opened_through_harness!(Db);

impl Db {
    pub async fn new() -> Db {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = ConnectionSpec {
            sqlite: Some(SqliteConnection {
                path: "nested/dir/warehouse.db".into(),
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let path: PathBuf = dir.path().join("nested/dir/warehouse.db");
        // Opening through the connector creates the directory and the file.
        let conn = ConnectionRef {
            name: CONNECTION,
            spec: &spec,
            base_dir: dir.path().into(),
            secrets: &secrets,
        };
        let db = Database::new(ok(SqliteConfig::new(&conn)));
        ok(db.pool().await);
        assert!(path.is_file());
        let harness = Harness::open(&conn);
        Db {
            dir,
            spec,
            secrets,
            path,
            harness,
        }
    }

    /// A new connection: one kept open could prepare statements against the schema it saw
    /// before the connector changed it.
    async fn fresh(&self) -> RawConnection {
        let options = SqliteConnectOptions::new().filename(&self.path);
        RawConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: CONNECTION,
            spec: &self.spec,
            base_dir: self.dir.path().into(),
            secrets: &self.secrets,
        }
    }

    /// A sink of its own, apart from the harness's.
    pub fn own_sink(&self) -> Arc<dyn Sink> {
        ok(crate::connectors::sink(&self.conn()))
    }

    pub async fn sql(&self, sql: &str) {
        let mut conn = self.fresh().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of a query, its values in SQLite's literal form joined by `, `.
    pub async fn dump(&self, sql: &str) -> Vec<String> {
        let mut conn = self.fresh().await;
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        lines(cells(&rows, |row, i| {
            match Cell::read(row, i).unwrap_or_else(|e| panic!("{e}")) {
                Cell::Null => "NULL".to_string(),
                Cell::Int(v) => v.to_string(),
                Cell::Real(v) => format!("{v:?}"),
                Cell::Text(s) => format!("'{s}'"),
                Cell::Blob(b) => format!("x'{}'", hex(b)),
            }
        }))
    }

    /// Reads through the source with a 1 MiB batch budget.
    pub async fn read(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        rejects: Rejects,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_with(spec, filter, 1 << 20, rejects).await
    }
}

specs_naming!(CONNECTION);

pub(super) fn decimals(values: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(p, s)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}
