//! The MongoDB Connection parsed, its URI resolved, without I/O.

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A MongoDB Connection ready to open.
#[derive(Clone)]
pub struct MongodbConfig {
    pub connection: String,
    pub uri: String,
    pub database: String,
    pub redactor: Redactor,
}

impl MongodbConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.block(conn.spec.mongodb.as_ref())?;
        let uri = conn.secret("mongodb.uri", &spec.uri)?;
        let redactor = conn.secrets.redactor();
        // The URI as a whole is remembered by `secret`; its parts are too, since a driver's
        // message may quote the user or the password alone. The user is kept out of messages
        // when it came from a Secret or a sealed value, as a user field is.
        let (user, password) = uri_credentials(&uri);
        let from_secret = spec.uri.value.is_none();
        if let Some(password) = password {
            redactor.remember(&password);
        }
        if let Some(user) = user.filter(|_| from_secret) {
            redactor.remember_word(&user);
        }
        // `synqx validate` has no secret values: a placeholder stands for the URI.
        let known = uri != crate::secrets::PLACEHOLDER;
        if known && !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(Error::Config(format!(
                "Connection \"{}\": mongodb.uri must start with mongodb:// or mongodb+srv://",
                conn.name
            )));
        }
        let database = conn.required("mongodb.database", &spec.database)?;
        Ok(Self {
            connection: conn.name.to_string(),
            uri,
            database: database.to_string(),
            redactor,
        })
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }

    /// A collection an asset FQN names, checked as MongoDB names them (not empty, no `$`,
    /// no NUL, not in the `system.` namespace); returns where it is, for messages.
    pub fn collection(&self, fqn: &str) -> Result<String> {
        let name = fqn.trim();
        let at = self.at_collection(name);
        let why = if name.is_empty() {
            Some("the collection name is empty")
        } else if name.contains('$') || name.contains('\0') {
            Some("a collection name cannot contain $ or NUL")
        } else if name.starts_with("system.") {
            Some("collections in the system. namespace belong to the server")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::Config(format!("{at}: {why}"))),
            None => Ok(at),
        }
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

/// The user and the password of a `mongodb://user:password@host` URI, decoded (either may
/// be absent).
fn uri_credentials(uri: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = uri.split_once("://").map(|(_, rest)| rest) else {
        return (None, None);
    };
    // The user information ends at the last `@` of the authority (before the path and the
    // options, which may hold an `@` of their own).
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let Some((credentials, _)) = authority.rsplit_once('@') else {
        return (None, None);
    };
    let (user, password) = match credentials.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (credentials, None),
    };
    let decoded = |part: &str| {
        (!part.is_empty()).then(|| percent_decode(part).unwrap_or_else(|| part.to_string()))
    };
    (decoded(user), password.and_then(decoded))
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
    use super::uri_credentials;

    #[test]
    fn the_user_and_password_of_a_uri_are_found_for_redaction() {
        let found = uri_credentials;
        assert_eq!(
            found("mongodb://u%3Ax:p%40ss@h:1/?a=b"),
            (Some("u:x".into()), Some("p@ss".into()))
        );
        assert_eq!(
            found("mongodb+srv://only_user@h/"),
            (Some("only_user".into()), None)
        );
        assert_eq!(found("mongodb://h:1/"), (None, None));
        assert_eq!(found("mongodb://h:1/?appName=a@b"), (None, None));
    }
}
