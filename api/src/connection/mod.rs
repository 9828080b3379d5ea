//! The `Connection` resource: one physical system, described by exactly one connector block.

use std::collections::BTreeMap;
use std::fmt;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::secret::SecretValue;

mod blocks;

pub use self::blocks::Block;

/// `a, b or c`, of names.
macro_rules! or_list {
    ($last:ident) => { stringify!($last) };
    ($a:ident, $last:ident) => { concat!(stringify!($a), " or ", stringify!($last)) };
    ($a:ident, $($rest:ident),+) => { concat!(stringify!($a), ", ", or_list!($($rest),+)) };
}

/// Declares every connector block once: its kind, its field of [`ConnectionSpec`] (the name
/// written in YAML), its type, which describes itself through [`Block`], and its [`Family`].
/// A new connector is one line here, its block type, and its folder in the runner.
macro_rules! connectors {
    (
        $(#[doc = $doc0:literal])* $kind0:ident => $field0:ident: $block0:ty as $family0:ident,
        $( $(#[doc = $doc:literal])* $kind:ident => $field:ident: $block:ty as $family:ident, )*
    ) => {
        /// A Connection describes one physical system SynqX reads from or writes to. Exactly
        /// one connector block is set, like a Pod volume.
        #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
        #[kube(
            group = "synqx.io",
            version = "v1alpha1",
            kind = "Connection",
            doc = "Connection: one physical system SynqX reads from or writes to (a database, bucket, directory or API).",
            namespaced,
            status = "ConnectionStatus",
            shortname = "sqc",
            category = "synqx",
            printcolumn = r#"{"name":"Type","type":"string","jsonPath":".status.type","description":"Connector type"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Whether the last check succeeded"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        #[serde(rename_all = "camelCase")]
        #[x_kube(validation = kube::core::Rule::new(concat!(
            "[has(self.", stringify!($field0), ")",
            $( ", has(self.", stringify!($field), ")", )*
            "].filter(x, x).size() == 1"
        )).message(concat!(
            "exactly one connector block must be set (", or_list!($field0 $(, $field)*), ")"
        )))]
        pub struct ConnectionSpec {
            $(#[doc = $doc0])*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub $field0: Option<$block0>,
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$block>,
            )*
        }

        /// The kind of system a Connection points at, with what it can do.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ConnectorKind {
            $kind0,
            $($kind,)*
        }

        impl ConnectorKind {
            /// Every kind, in the order of the connector blocks.
            pub const ALL: &[ConnectorKind] = &[Self::$kind0, $(Self::$kind,)*];

            /// The connector block name, as written in YAML.
            pub fn block_name(self) -> &'static str {
                match self {
                    Self::$kind0 => stringify!($field0),
                    $(Self::$kind => stringify!($field),)*
                }
            }

            /// The family of systems it belongs to, which says what its steps may do.
            pub fn family(self) -> Family {
                match self {
                    Self::$kind0 => Family::$family0,
                    $(Self::$kind => Family::$family,)*
                }
            }
        }

        impl ConnectionSpec {
            /// The connector blocks that are set (a valid spec has exactly one), with their
            /// kinds, in the order of [`ConnectorKind::ALL`].
            pub fn blocks(&self) -> Vec<(ConnectorKind, &dyn Block)> {
                let mut set: Vec<(ConnectorKind, &dyn Block)> = Vec::new();
                if let Some(block) = &self.$field0 {
                    set.push((ConnectorKind::$kind0, block));
                }
                $(
                    if let Some(block) = &self.$field {
                        set.push((ConnectorKind::$kind, block));
                    }
                )*
                set
            }
        }
    };
}

connectors! {
    /// A PostgreSQL database.
    Postgres => postgres: PostgresConnection as Sql,
    /// A MySQL or MariaDB database.
    Mysql => mysql: MysqlConnection as Sql,
    /// A Microsoft SQL Server database.
    SqlServer => sqlserver: SqlServerConnection as Sql,
    /// A Snowflake account.
    Snowflake => snowflake: SnowflakeConnection as Sql,
    /// A Google BigQuery project.
    BigQuery => bigquery: BigQueryConnection as Sql,
    /// An HTTP JSON API.
    Rest => rest: RestConnection as Api,
    /// An S3 (or S3-compatible) bucket.
    S3 => s3: S3Connection as Files,
    /// A local directory: asset FQNs are paths below it; a trailing `/` means a folder of part
    /// files.
    Filesystem => filesystem: FilesystemConnection as Files,
    /// A MongoDB database.
    Mongodb => mongodb: MongoConnection as Documents,
    /// A Redis server.
    Redis => redis: RedisConnection as KeyValue,
    /// An embedded SQLite database file: asset FQNs are table names.
    Sqlite => sqlite: SqliteConnection as Sql,
}

/// TLS mode of a PostgreSQL or MySQL connection: `require` (the default: TLS, certificate
/// not verified), `verify-ca` (certificate verified against the trusted roots),
/// `verify-full` (certificate and host name verified: the only mode that stops a server
/// impersonating another), `prefer` (TLS when the server offers it, so an attacker on the
/// path can downgrade it to plain TCP) or `disable` (plain TCP: the password crosses the
/// network readable).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    #[default]
    Require,
    VerifyCa,
    VerifyFull,
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// Connection to a PostgreSQL server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConnection {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database to connect to.
    pub database: String,
    /// Role to log in as.
    pub user: SecretValue,
    /// Password of the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValue>,
    /// TLS mode: `require` (default), `verify-ca`, `verify-full`, `prefer` or `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// The certificate authority that signed the server's certificate, for `sslMode:
    /// verify-full` or `verify-ca` with a private CA: PEM text (`-----BEGIN CERTIFICATE-----`,
    /// one or more), or the path of a PEM file (relative to the files' folder in a local run).
    /// Without it the system's trusted roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<SecretValue>,
}

/// Connection to a MySQL or MariaDB server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlConnection {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port (default 3306).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database (schema) to use.
    pub database: String,
    /// User to log in as.
    pub user: SecretValue,
    /// Password of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValue>,
    /// TLS mode: `require` (default), `verify-ca`, `verify-full`, `prefer` or `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// The certificate authority that signed the server's certificate, for `sslMode:
    /// verify-full` or `verify-ca` with a private CA: PEM text (`-----BEGIN CERTIFICATE-----`,
    /// one or more), or the path of a PEM file (relative to the files' folder in a local run).
    /// Without it the system's trusted roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<SecretValue>,
}

/// Connection to a Microsoft SQL Server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlServerConnection {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port (default 1433).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database to use.
    pub database: String,
    /// SQL login.
    pub user: SecretValue,
    /// Password of the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValue>,
    /// Encrypt the connection with TLS (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<bool>,
    /// Accept the server certificate without verification (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_server_certificate: Option<bool>,
}

/// Connection to a Snowflake account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnowflakeConnection {
    /// Account identifier, e.g. `myorg-myaccount`.
    pub account: String,
    /// Overrides the API host `<account>.snowflakecomputing.com`: a host name (a private
    /// link), or a URL with scheme and port (`http://127.0.0.1:54080` for a local test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// User to log in as.
    pub user: SecretValue,
    /// Password of the user (or use `privateKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValue>,
    /// PEM private key for key-pair authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretValue>,
    /// Virtual warehouse that runs the queries.
    pub warehouse: String,
    /// Database to use.
    pub database: String,
    /// Default schema (default `PUBLIC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Role to assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Connection to a Google BigQuery project.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BigQueryConnection {
    /// Google Cloud project id.
    pub project: String,
    /// Default dataset for unqualified table names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Location of the jobs (e.g. `EU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Service-account key JSON. Needed unless `endpoint` points at an emulator (workload
    /// identity is not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_json: Option<SecretValue>,
    /// Overrides the API endpoint (for a local emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How sinks send rows to their load jobs: `parquet` (default: typed columns, compressed)
    /// or `json` (newline-delimited JSON text). `json` is for emulators whose Parquet reader
    /// misreads typed columns, such as bigquery-emulator 0.6.6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_format: Option<BigQueryLoadFormat>,
}

/// The file format of a BigQuery sink's load jobs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BigQueryLoadFormat {
    #[default]
    Parquet,
    Json,
}

/// Pagination style of a REST API. `auto` (default) detects the style from the first
/// responses: an RFC 8288 `Link: <…>; rel="next"` header, a next-page URL in the body, a
/// cursor token sent back as a query parameter, or offset or page-number fields; it reads one
/// page when none is found. The other kinds force a style: `none` (one request returns
/// everything), `page` (a page-number query parameter), `offset` (an offset query parameter),
/// `cursor` (a token taken from each response body), `linkHeader` (the `Link` header) or
/// `nextUrl` (a next-page URL in the body, at `nextPath`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PaginationKind {
    #[default]
    Auto,
    None,
    Page,
    Offset,
    Cursor,
    LinkHeader,
    NextUrl,
}

/// How a REST API pages through results.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestPagination {
    /// Pagination style.
    #[serde(default)]
    pub kind: PaginationKind,
    /// Query parameter carrying the page number, offset or cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Query parameter carrying the page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_param: Option<String>,
    /// Page size to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// JSON pointer of the next cursor in a response body (for `cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_path: Option<String>,
    /// JSON pointer of the next page's URL in a response body (for `nextUrl`; default: the
    /// first of `next`, `next_url`, `links.next`, `paging.next`, `@odata.nextLink`,
    /// `nextLink`, `meta.next` that is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_path: Option<String>,
}

/// Authentication of a REST API. At most one method is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.bearerToken), has(self.basic), has(self.apiKey), has(self.oauth2)].filter(x, x).size() <= 1"
).message("at most one of bearerToken, basic, apiKey or oauth2 may be set"))]
pub struct RestAuth {
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretValue>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// A key sent in a header or a query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// OAuth2 client credentials: a token is requested before the first page and again when
    /// it expires or the API answers 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Auth>,
}

/// OAuth2 client-credentials grant (RFC 6749 section 4.4).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Auth {
    /// Token endpoint, e.g. `https://auth.example.com/oauth/token`.
    pub token_url: String,
    /// Client id.
    pub client_id: SecretValue,
    /// Client secret.
    pub client_secret: SecretValue,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// HTTP basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    pub username: SecretValue,
    /// Password.
    pub password: SecretValue,
}

/// An API key sent in a request header or a query parameter: exactly one of `header` and
/// `query`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.header) != has(self.query)"
).message("set exactly one of header and query"))]
pub struct ApiKeyAuth {
    /// Header name, e.g. `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Query parameter name, e.g. `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The key.
    pub value: SecretValue,
}

/// Connection to an HTTP JSON API. Asset FQNs are paths below `baseUrl`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestConnection {
    /// Base URL every asset path is resolved against.
    pub base_url: String,
    /// Authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RestAuth>,
    /// Extra request headers (not secret).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer to the array of records in a response, e.g. `/result/items` (default:
    /// found automatically: the body when it is an array, else the first array of objects
    /// under `data`, `items`, `results`, `records`, `value` or `entries`, else the only array
    /// of objects at the top level). A step's `source.recordsPath` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_path: Option<String>,
    /// Pagination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<RestPagination>,
    /// Query parameter that receives the watermark of an incremental sync. Without it the API
    /// cannot filter, and incremental steps reading from it are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_param: Option<String>,
    /// Requests per second at most (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Longest time one request may take, e.g. `30s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Attempts per request, the first included, when the API answers 429 or 5xx or the
    /// connection fails (default 5). A `Retry-After` header sets the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// Connection to an S3 bucket. Asset FQNs are keys below `prefix`; a trailing `/` means a
/// folder of part files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Connection {
    /// Bucket name.
    pub bucket: String,
    /// Region of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint override for S3-compatible stores (MinIO, a local test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Use path-style URLs (`endpoint/bucket/key`); needed by most S3-compatible stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Key prefix every asset FQN is below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Access key id (with `secretAccessKey`). Without keys, set `useAmbientCredentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretValue>,
    /// Secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretValue>,
    /// Session token of temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretValue>,
    /// Use the ambient AWS credentials of the process instead of keys: `AWS_*` environment
    /// variables, a web identity token (IRSA), the container or instance metadata service.
    /// On a cluster the operator lends them only when it runs with
    /// `--allow-ambient-credentials`; `synqx run` trusts its own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_ambient_credentials: Option<bool>,
}

/// A local directory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemConnection {
    /// Directory every asset FQN is below. A relative path starts at the directory of the YAML
    /// file that declares the Connection (`synqx run`), or at the working directory of the
    /// step's pod.
    pub path: String,
}

/// Connection to a MongoDB database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoConnection {
    /// Connection string (`mongodb://user:pass@host/`); it usually holds credentials.
    pub uri: SecretValue,
    /// Database; asset FQNs are collection names.
    pub database: String,
}

/// Connection to a Redis server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisConnection {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 6379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Logical database number (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    /// ACL user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretValue>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValue>,
    /// Use TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// An embedded SQLite database file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteConnection {
    /// Path of the database file; created when missing. A relative path starts at the
    /// directory of the YAML file that declares the Connection (`synqx run`), or at the working
    /// directory of the step's pod.
    pub path: String,
}

/// Observed state of a Connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Connector type of the spec (`postgres`, `s3`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// `Ready` (the last check connected and authenticated), with reasons `Unreachable`,
    /// `Unauthorized`, `NotFound` or `Invalid` when it did not, `SecretNotFound` while a
    /// referenced Secret or key is missing and `SecretNotLabeled` while a referenced Secret
    /// lacks the label `synqx.io/connection-secret: "true"` (no check runs until then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Generation of the spec the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the last check finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
}

/// What kind of system a connector reaches, which decides what a step may do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Runs SQL: tables as assets, `sql` steps, queries on sources, upserts by key.
    Sql,
    /// Holds files: assets need a `format`; no keys to upsert on.
    Files,
    /// An HTTP API read page by page; nothing is written to it.
    Api,
    /// A document database: collections as assets, upserts by `_id`.
    Documents,
    /// A key-value store: keys built from a template, upserts by key.
    KeyValue,
}

impl ConnectorKind {
    /// Systems that run SQL: tables as assets, `sql` steps, queries on sources.
    pub fn is_sql(self) -> bool {
        self.family() == Family::Sql
    }

    /// Systems that hold files: assets need a `format`.
    pub fn is_files(self) -> bool {
        self.family() == Family::Files
    }

    /// Whether a step may write to this system.
    pub fn can_be_destination(self) -> bool {
        self.family() != Family::Api
    }

    /// Whether an upsert by primary key is possible (files have no keys to merge on).
    pub fn supports_upsert(self) -> bool {
        !self.is_files() && self.can_be_destination()
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.block_name())
    }
}

impl ConnectionSpec {
    /// The kinds of the connector blocks that are set (a valid spec has exactly one).
    pub fn kinds(&self) -> Vec<ConnectorKind> {
        self.blocks().into_iter().map(|(kind, _)| kind).collect()
    }

    /// The connector kind when exactly one block is set.
    pub fn kind(&self) -> Option<ConnectorKind> {
        match self.kinds().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Every secret field of the spec with its path below `spec` (e.g. `postgres.password`).
    pub fn secret_values(&self) -> Vec<(String, &SecretValue)> {
        let mut out = Vec::new();
        for (kind, block) in self.blocks() {
            for (path, value) in block.secrets() {
                if let Some(value) = value {
                    out.push((format!("{}.{path}", kind.block_name()), value));
                }
            }
        }
        out
    }

    /// Field problems of the connector blocks, as (path below `spec`, message).
    pub fn block_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (kind, block) in self.blocks() {
            for (path, message) in block.problems() {
                let path = match path.as_str() {
                    "" => kind.block_name().to_string(),
                    below => format!("{}.{below}", kind.block_name()),
                };
                out.push((path, message));
            }
        }
        out
    }
}

/// What `synqx check` reports for a Connection: written as JSON to the check Job's
/// termination message, read by the operator into the Connection's `Ready` condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Whether the check connected, authenticated and reached the target.
    pub ready: bool,
    /// Why the check ended as it did: `Connected` exactly when it is ready.
    pub reason: CheckReason,
    /// What was checked, or what failed and what to do (credentials redacted).
    pub message: String,
}

/// Why a check ended as it did: the `reason` of its [`CheckReport`], and of the Connection's
/// `Ready` condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckReason {
    /// Connected, authenticated and reached the target.
    Connected,
    /// The system did not answer: refused, unknown host, timed out.
    Unreachable,
    /// The system answered, but rejected the credentials or forbade the request.
    Unauthorized,
    /// The system answered, but the target (bucket, database, directory) does not exist.
    NotFound,
    /// The spec cannot work as written, or a secret it needs is missing.
    Invalid,
    /// This version of synqx has no connector for the system.
    Unsupported,
}

impl CheckReason {
    /// Every reason, for readers that must know each one.
    pub const ALL: [CheckReason; 6] = [
        Self::Connected,
        Self::Unreachable,
        Self::Unauthorized,
        Self::NotFound,
        Self::Invalid,
        Self::Unsupported,
    ];

    /// The reason as the report and the Connection's `Ready` condition write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::Unreachable => "Unreachable",
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "NotFound",
            Self::Invalid => "Invalid",
            Self::Unsupported => "Unsupported",
        }
    }
}

#[cfg(test)]
mod tests;
