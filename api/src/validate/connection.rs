//! Checks of Connection documents and of the secret values they reference.

use super::{Bundle, Problem, name_of};
use crate::connection::{ConnectorKind, PaginationKind};
use crate::secret::{SecretValue, check_sealed_format};

/// The longest one REST request may take.
const REST_MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most attempts of one REST request.
const REST_MAX_ATTEMPTS: u32 = 100;

/// Reports the problems of every Connection.
pub(super) fn check_all(bundle: &Bundle, problems: &mut Vec<Problem>) {
    for doc in &bundle.connections {
        let resource = format!("Connection/{}", name_of(&doc.object.metadata));
        let mut push = |field: &str, message: String| {
            problems.push(Problem {
                file: doc.file.clone(),
                resource: Some(resource.clone()),
                field: (!field.is_empty()).then(|| field.to_string()),
                message,
                ..Default::default()
            })
        };
        let spec = &doc.object.spec;
        let kinds = spec.kinds();
        let all = ConnectorKind::ALL.map(|k| k.block_name()).join(", ");
        match kinds.as_slice() {
            [] => push(
                "spec",
                format!("exactly one connector block must be set, found none ({all})"),
            ),
            [_] => {}
            many => push(
                "spec",
                format!(
                    "exactly one connector block must be set, found {}: {}",
                    many.len(),
                    many.iter()
                        .map(|k| k.block_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
        for (path, value) in spec.secret_values() {
            if let Some(message) = secret_value_problem(bundle, value) {
                push(&format!("spec.{path}"), message);
            }
        }
        for (field, message) in block_problems(spec) {
            push(&format!("spec.{field}"), message);
        }
    }
}

/// What is wrong with one secret value, given the Secrets in the files.
pub(super) fn secret_value_problem(bundle: &Bundle, value: &SecretValue) -> Option<String> {
    if value.alternatives_set() != 1 {
        return Some(format!(
            "set exactly one of value, secretKeyRef or sealed (found {})",
            value.alternatives_set()
        ));
    }
    if let Some(Err(problem)) = value.sealed.as_deref().map(check_sealed_format) {
        return Some(problem.to_string());
    }
    if let Some(r) = &value.secret_key_ref {
        if r.name.is_empty() || r.key.is_empty() {
            return Some("secretKeyRef needs both name and key".into());
        }
        if let Some(secret) = bundle.secret(&r.name) {
            let mut keys: Vec<&str> = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .map(String::as_str)
                .collect();
            keys.extend(
                secret
                    .string_data
                    .iter()
                    .flat_map(|d| d.keys())
                    .map(String::as_str),
            );
            if !keys.contains(&r.key.as_str()) {
                keys.sort_unstable();
                return Some(format!(
                    "Secret \"{}\" has no key \"{}\" (keys: {})",
                    r.name,
                    r.key,
                    if keys.is_empty() {
                        "none".to_string()
                    } else {
                        keys.join(", ")
                    }
                ));
            }
        }
    }
    None
}

/// Field problems of the connector block, as (path below spec, message).
fn block_problems(spec: &crate::ConnectionSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut required = |path: &str, value: &str| {
        if value.trim().is_empty() {
            out.push((path.to_string(), "must not be empty".to_string()));
        }
    };
    if let Some(c) = &spec.postgres {
        required("postgres.host", &c.host);
        required("postgres.database", &c.database);
    }
    if let Some(c) = &spec.mysql {
        required("mysql.host", &c.host);
        required("mysql.database", &c.database);
    }
    if let Some(c) = &spec.sqlserver {
        required("sqlserver.host", &c.host);
        required("sqlserver.database", &c.database);
    }
    if let Some(c) = &spec.snowflake {
        required("snowflake.account", &c.account);
        required("snowflake.warehouse", &c.warehouse);
        required("snowflake.database", &c.database);
    }
    if let Some(c) = &spec.bigquery {
        required("bigquery.project", &c.project);
    }
    if let Some(c) = &spec.rest {
        required("rest.baseUrl", &c.base_url);
        if let Some(o) = c.auth.as_ref().and_then(|a| a.oauth2.as_ref()) {
            required("rest.auth.oauth2.tokenUrl", &o.token_url);
        }
    }
    if let Some(c) = &spec.s3 {
        required("s3.bucket", &c.bucket);
    }
    if let Some(c) = &spec.filesystem {
        required("filesystem.path", &c.path);
    }
    if let Some(c) = &spec.mongodb {
        required("mongodb.database", &c.database);
    }
    if let Some(c) = &spec.redis {
        required("redis.host", &c.host);
    }
    if let Some(c) = &spec.sqlite {
        required("sqlite.path", &c.path);
    }

    let ports = [
        ("postgres.port", spec.postgres.as_ref().and_then(|c| c.port)),
        ("mysql.port", spec.mysql.as_ref().and_then(|c| c.port)),
        (
            "sqlserver.port",
            spec.sqlserver.as_ref().and_then(|c| c.port),
        ),
        ("redis.port", spec.redis.as_ref().and_then(|c| c.port)),
    ];
    for (path, port) in ports {
        if port == Some(0) {
            out.push((path.to_string(), "port must be from 1 to 65535".to_string()));
        }
    }
    let urls = [
        (
            "rest.baseUrl",
            spec.rest.as_ref().map(|c| c.base_url.as_str()),
        ),
        (
            "s3.endpoint",
            spec.s3.as_ref().and_then(|c| c.endpoint.as_deref()),
        ),
        (
            "bigquery.endpoint",
            spec.bigquery.as_ref().and_then(|c| c.endpoint.as_deref()),
        ),
    ];
    for (path, url) in urls {
        if let Some(url) = url.filter(|u| !u.is_empty())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push((
                path.to_string(),
                format!("\"{url}\" is not an http:// or https:// URL"),
            ));
        }
    }
    if let Some(s3) = &spec.s3 {
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            out.push((
                "s3".to_string(),
                "accessKeyId and secretAccessKey go together: set both, or neither with useAmbientCredentials: true".to_string(),
            ));
        } else if s3.access_key_id.is_some() && s3.use_ambient_credentials == Some(true) {
            out.push((
                "s3.useAmbientCredentials".to_string(),
                "cannot go with accessKeyId and secretAccessKey: use the keys, or remove them to use the ambient credentials".to_string(),
            ));
        }
    }
    if let Some(sf) = &spec.snowflake
        && sf.password.is_none()
        && sf.private_key.is_none()
    {
        out.push((
            "snowflake".to_string(),
            "set password or privateKey".to_string(),
        ));
    }
    if let Some(p) = spec.rest.as_ref().and_then(|r| r.pagination.as_ref()) {
        match p.kind {
            PaginationKind::Page | PaginationKind::Offset if p.param.is_none() => out.push((
                "rest.pagination.param".to_string(),
                "is required for page and offset pagination (the query parameter to advance)"
                    .to_string(),
            )),
            PaginationKind::Cursor if p.cursor_path.is_none() => out.push((
                "rest.pagination.cursorPath".to_string(),
                "is required for cursor pagination (JSON pointer of the next cursor)".to_string(),
            )),
            PaginationKind::Cursor if p.param.is_none() => out.push((
                "rest.pagination.param".to_string(),
                "is required for cursor pagination (the query parameter that sends the cursor back)"
                    .to_string(),
            )),
            _ => {}
        }
        for (field, pointer) in [("cursorPath", &p.cursor_path), ("nextPath", &p.next_path)] {
            if let Some(pointer) = pointer.as_deref().filter(|x| !x.starts_with('/')) {
                out.push((
                    format!("rest.pagination.{field}"),
                    format!(
                        "\"{pointer}\" is not a JSON pointer: start it with '/', e.g. /meta/next"
                    ),
                ));
            }
        }
    }
    if let Some(rest) = &spec.rest {
        if let Some(pointer) = rest
            .records_path
            .as_deref()
            .filter(|x| !x.is_empty() && !x.starts_with('/'))
        {
            out.push((
                "rest.recordsPath".to_string(),
                format!(
                    "\"{pointer}\" is not a JSON pointer: start it with '/', e.g. /result/items"
                ),
            ));
        }
        match rest.timeout.as_deref().map(crate::duration::parse_duration) {
            Some(Err(e)) => out.push(("rest.timeout".to_string(), e.to_string())),
            Some(Ok(d)) if d > REST_MAX_TIMEOUT => out.push((
                "rest.timeout".to_string(),
                format!(
                    "{} is longer than 1h for one request",
                    crate::duration::format_duration(d)
                ),
            )),
            _ => {}
        }
        match rest.max_attempts {
            Some(0) => out.push((
                "rest.maxAttempts".to_string(),
                "must be at least 1".to_string(),
            )),
            Some(n) if n > REST_MAX_ATTEMPTS => out.push((
                "rest.maxAttempts".to_string(),
                format!("{n} is more than {REST_MAX_ATTEMPTS} attempts per request"),
            )),
            _ => {}
        }
        if rest.rate_limit == Some(0) {
            out.push((
                "rest.rateLimit".to_string(),
                "must be at least 1 request per second (leave it out for no limit)".to_string(),
            ));
        }
        if let Some(k) = rest.auth.as_ref().and_then(|a| a.api_key.as_ref())
            && k.header.is_some() == k.query.is_some()
        {
            out.push((
                "rest.auth.apiKey".to_string(),
                "set exactly one of header and query".to_string(),
            ));
        }
        if let Some(url) = rest
            .auth
            .as_ref()
            .and_then(|a| a.oauth2.as_ref())
            .map(|o| o.token_url.as_str())
            && !url.is_empty()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push((
                "rest.auth.oauth2.tokenUrl".to_string(),
                format!("\"{url}\" is not an http:// or https:// URL"),
            ));
        }
    }
    if let Some(uri) = spec.mongodb.as_ref().and_then(|m| m.uri.value.as_deref())
        && !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"))
    {
        out.push((
            "mongodb.uri".to_string(),
            "must start with mongodb:// or mongodb+srv://".to_string(),
        ));
    }
    out
}
