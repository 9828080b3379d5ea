//! The MongoDB Connection parsed, its URI resolved, without I/O.

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A MongoDB Connection ready to open.
#[derive(Clone)]
pub struct Settings {
    pub connection: String,
    pub uri: String,
    pub database: String,
    pub redactor: Redactor,
}

impl Settings {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.spec.mongodb.as_ref().ok_or_else(|| {
            Error::Config(format!("Connection \"{}\" has no mongodb block", conn.name))
        })?;
        let uri = conn.secrets.resolve(conn.name, "mongodb.uri", &spec.uri)?;
        let mut redactor = Redactor::default();
        redactor.add(&uri);
        if let Some(password) = uri_password(&uri) {
            redactor.add(&password);
        }
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(Error::Config(format!(
                "Connection \"{}\": mongodb.uri must start with mongodb:// or mongodb+srv://",
                conn.name
            )));
        }
        if spec.database.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": mongodb.database is empty",
                conn.name
            )));
        }
        Ok(Self {
            connection: conn.name.to_string(),
            uri,
            database: spec.database.trim().to_string(),
            redactor,
        })
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        format!("Connection \"{}\"", self.connection)
    }

    /// `Connection "c", collection "db.coll"`.
    pub fn at_collection(&self, collection: &str) -> String {
        format!(
            "{}, collection \"{}.{collection}\"",
            self.at(),
            self.database
        )
    }
}

/// The password of a `mongodb://user:password@host` URI, decoded.
fn uri_password(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let credentials = rest.split_once('@')?.0;
    let password = credentials.split_once(':')?.1;
    let url = reqwest::Url::parse(&format!("http://x:{password}@h/")).ok()?;
    let decoded = url.password()?;
    Some(percent_decode(decoded).unwrap_or_else(|| decoded.to_string()))
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::uri_password;

    #[test]
    fn the_password_of_a_uri_is_found_for_redaction() {
        assert_eq!(
            uri_password("mongodb://u:p%40ss@h:1/?a=b").as_deref(),
            Some("p@ss")
        );
        assert_eq!(uri_password("mongodb://h:1/"), None);
    }
}
