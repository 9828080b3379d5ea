//! The Redis Connection parsed, its secrets resolved, without I/O.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A Redis Connection ready to open.
#[derive(Clone)]
pub struct RedisConfig {
    pub connection: String,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub redactor: Redactor,
}

impl RedisConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.block(conn.spec.redis.as_ref())?;
        let username = spec
            .username
            .as_ref()
            .map(|v| conn.resolve("redis.username", v))
            .transpose()?;
        let password = spec
            .password
            .as_ref()
            .map(|v| conn.secret("redis.password", v))
            .transpose()?;
        let host = conn.required("redis.host", &spec.host)?;
        Ok(Self {
            connection: conn.name.to_string(),
            host: host.to_string(),
            port: spec.port.unwrap_or(6379),
            db: spec.db.unwrap_or(0),
            username,
            password,
            tls: spec.tls.unwrap_or(false),
            redactor: conn.secrets.redactor(),
        })
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
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
