//! What each connector block says about itself: its secret fields and the problems of its
//! fields alone (a Connection's other checks, such as Secrets the files lack, are in
//! `validate`). Paths are below the block, in YAML's spelling; `""` is the block itself.

use super::{
    BigQueryConnection, FilesystemConnection, MongoConnection, MysqlConnection, PaginationKind,
    PostgresConnection, RedisConnection, RestConnection, S3Connection, SnowflakeConnection,
    SqlServerConnection, SqliteConnection,
};
use crate::secret::SecretValue;

/// The longest one REST request may take.
const REST_MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most attempts of one REST request.
const REST_MAX_ATTEMPTS: u32 = 100;

/// A connector block of a Connection's spec.
pub trait Block {
    /// Every field that may hold a secret, set or not, with its path below the block.
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)>;
    /// What is wrong with the block's fields, as (path below the block, message).
    fn problems(&self) -> Vec<(String, String)>;
}

/// Collects problems under their paths.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push((path.to_string(), message.into()));
    }

    fn required(&mut self, path: &str, value: &str) -> &mut Self {
        if value.trim().is_empty() {
            self.push(path, "must not be empty");
        }
        self
    }

    fn port(&mut self, path: &str, port: Option<u16>) -> &mut Self {
        if port == Some(0) {
            self.push(path, "port must be from 1 to 65535");
        }
        self
    }

    fn http_url(&mut self, path: &str, url: Option<&str>) -> &mut Self {
        if let Some(url) = url.filter(|u| !u.is_empty())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            self.push(path, format!("\"{url}\" is not an http:// or https:// URL"));
        }
        self
    }

    fn json_pointer(&mut self, path: &str, pointer: Option<&str>, example: &str) -> &mut Self {
        if let Some(pointer) = pointer.filter(|x| !x.starts_with('/')) {
            self.push(
                path,
                format!("\"{pointer}\" is not a JSON pointer: start it with '/', e.g. {example}"),
            );
        }
        self
    }

    fn done(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.0)
    }
}

/// The blocks of the databases reached by host, port and database name.
macro_rules! server_block {
    ($block:ty, [$($secret:literal => $field:ident),*]) => {
        impl Block for $block {
            fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
                vec![("user", Some(&self.user)), $(($secret, self.$field.as_ref())),*]
            }

            fn problems(&self) -> Vec<(String, String)> {
                Problems::default()
                    .required("host", &self.host)
                    .required("database", &self.database)
                    .port("port", self.port)
                    .done()
            }
        }
    };
}

server_block!(PostgresConnection, ["password" => password, "sslRootCert" => ssl_root_cert]);
server_block!(MysqlConnection, ["password" => password, "sslRootCert" => ssl_root_cert]);
server_block!(SqlServerConnection, ["password" => password]);

impl Block for SnowflakeConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        vec![
            ("user", Some(&self.user)),
            ("password", self.password.as_ref()),
            ("privateKey", self.private_key.as_ref()),
        ]
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Problems::default();
        out.required("account", &self.account)
            .required("warehouse", &self.warehouse)
            .required("database", &self.database);
        if self.password.is_none() && self.private_key.is_none() {
            out.push("", "set password or privateKey");
        }
        out.done()
    }
}

impl Block for BigQueryConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        vec![("credentialsJson", self.credentials_json.as_ref())]
    }

    fn problems(&self) -> Vec<(String, String)> {
        Problems::default()
            .required("project", &self.project)
            .http_url("endpoint", self.endpoint.as_deref())
            .done()
    }
}

impl Block for RestConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        let Some(auth) = &self.auth else {
            return Vec::new();
        };
        let mut out = vec![("auth.bearerToken", auth.bearer_token.as_ref())];
        if let Some(b) = &auth.basic {
            out.push(("auth.basic.username", Some(&b.username)));
            out.push(("auth.basic.password", Some(&b.password)));
        }
        if let Some(k) = &auth.api_key {
            out.push(("auth.apiKey.value", Some(&k.value)));
        }
        if let Some(o) = &auth.oauth2 {
            out.push(("auth.oauth2.clientId", Some(&o.client_id)));
            out.push(("auth.oauth2.clientSecret", Some(&o.client_secret)));
        }
        out
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Problems::default();
        out.required("baseUrl", &self.base_url);
        let oauth2 = self.auth.as_ref().and_then(|a| a.oauth2.as_ref());
        if let Some(o) = oauth2 {
            out.required("auth.oauth2.tokenUrl", &o.token_url);
        }
        out.http_url("baseUrl", Some(&self.base_url));
        if let Some(p) = &self.pagination {
            match p.kind {
                PaginationKind::Page | PaginationKind::Offset if p.param.is_none() => out.push(
                    "pagination.param",
                    "is required for page and offset pagination (the query parameter to advance)",
                ),
                PaginationKind::Cursor if p.cursor_path.is_none() => out.push(
                    "pagination.cursorPath",
                    "is required for cursor pagination (JSON pointer of the next cursor)",
                ),
                PaginationKind::Cursor if p.param.is_none() => out.push(
                    "pagination.param",
                    "is required for cursor pagination (the query parameter that sends the cursor back)",
                ),
                _ => {}
            }
            out.json_pointer(
                "pagination.cursorPath",
                p.cursor_path.as_deref(),
                "/meta/next",
            )
            .json_pointer("pagination.nextPath", p.next_path.as_deref(), "/meta/next");
        }
        // An empty records path is the body itself.
        out.json_pointer(
            "recordsPath",
            self.records_path.as_deref().filter(|x| !x.is_empty()),
            "/result/items",
        );
        match self.timeout.as_deref().map(crate::duration::parse_duration) {
            Some(Err(e)) => out.push("timeout", e.to_string()),
            Some(Ok(d)) if d > REST_MAX_TIMEOUT => out.push(
                "timeout",
                format!(
                    "{} is longer than 1h for one request",
                    crate::duration::format_duration(d)
                ),
            ),
            _ => {}
        }
        match self.max_attempts {
            Some(0) => out.push("maxAttempts", "must be at least 1"),
            Some(n) if n > REST_MAX_ATTEMPTS => out.push(
                "maxAttempts",
                format!("{n} is more than {REST_MAX_ATTEMPTS} attempts per request"),
            ),
            _ => {}
        }
        if self.rate_limit == Some(0) {
            out.push(
                "rateLimit",
                "must be at least 1 request per second (leave it out for no limit)",
            );
        }
        if let Some(k) = self.auth.as_ref().and_then(|a| a.api_key.as_ref())
            && k.header.is_some() == k.query.is_some()
        {
            out.push("auth.apiKey", "set exactly one of header and query");
        }
        out.http_url("auth.oauth2.tokenUrl", oauth2.map(|o| o.token_url.as_str()));
        out.done()
    }
}

impl Block for S3Connection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        vec![
            ("accessKeyId", self.access_key_id.as_ref()),
            ("secretAccessKey", self.secret_access_key.as_ref()),
            ("sessionToken", self.session_token.as_ref()),
        ]
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Problems::default();
        out.required("bucket", &self.bucket)
            .http_url("endpoint", self.endpoint.as_deref());
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            out.push(
                "",
                "accessKeyId and secretAccessKey go together: set both, or neither with useAmbientCredentials: true",
            );
        } else if self.access_key_id.is_some() && self.use_ambient_credentials == Some(true) {
            out.push(
                "useAmbientCredentials",
                "cannot go with accessKeyId and secretAccessKey: use the keys, or remove them to use the ambient credentials",
            );
        }
        out.done()
    }
}

impl Block for FilesystemConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        Vec::new()
    }

    fn problems(&self) -> Vec<(String, String)> {
        Problems::default().required("path", &self.path).done()
    }
}

impl Block for MongoConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        vec![("uri", Some(&self.uri))]
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Problems::default();
        out.required("database", &self.database);
        if let Some(uri) = self.uri.value.as_deref()
            && !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"))
        {
            out.push("uri", "must start with mongodb:// or mongodb+srv://");
        }
        out.done()
    }
}

impl Block for RedisConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        vec![
            ("username", self.username.as_ref()),
            ("password", self.password.as_ref()),
        ]
    }

    fn problems(&self) -> Vec<(String, String)> {
        Problems::default()
            .required("host", &self.host)
            .port("port", self.port)
            .done()
    }
}

impl Block for SqliteConnection {
    fn secrets(&self) -> Vec<(&'static str, Option<&SecretValue>)> {
        Vec::new()
    }

    fn problems(&self) -> Vec<(String, String)> {
        Problems::default().required("path", &self.path).done()
    }
}
