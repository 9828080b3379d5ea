//! The Redis Connection parsed, its secrets resolved, without I/O.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A Redis Connection ready to open.
#[derive(Clone)]
pub struct Settings {
    pub connection: String,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub redactor: Redactor,
}

impl Settings {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.spec.redis.as_ref().ok_or_else(|| {
            Error::Config(format!("Connection \"{}\" has no redis block", conn.name))
        })?;
        let mut redactor = Redactor::default();
        let mut secret =
            |field: &str, value: Option<&synqx_api::SecretValue>| -> Result<Option<String>> {
                value
                    .map(|v| {
                        let plain = conn.secrets.resolve(conn.name, field, v)?;
                        redactor.add(&plain);
                        Ok(plain)
                    })
                    .transpose()
            };
        let username = secret("redis.username", spec.username.as_ref())?;
        let password = secret("redis.password", spec.password.as_ref())?;
        if spec.host.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": redis.host is empty",
                conn.name
            )));
        }
        Ok(Self {
            connection: conn.name.to_string(),
            host: spec.host.trim().to_string(),
            port: spec.port.unwrap_or(6379),
            db: spec.db.unwrap_or(0),
            username,
            password,
            tls: spec.tls.unwrap_or(false),
            redactor,
        })
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        format!("Connection \"{}\"", self.connection)
    }

    /// `host:port/db`, for messages.
    pub fn server(&self) -> String {
        format!("{}:{} (db {})", self.host, self.port, self.db)
    }

    /// What the driver connects with.
    pub fn info(&self) -> Result<ConnectionInfo> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(u) = &self.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| Error::Config(format!("{}: {}", self.at(), self.redactor.redact(e))))?;
        Ok(info.set_redis_settings(redis))
    }
}
