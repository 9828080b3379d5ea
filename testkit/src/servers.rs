//! Where the database test servers listen. `scripts/services up` starts PostgreSQL and
//! MariaDB on loopback and prints `SYNQX_TEST_POSTGRES` and `SYNQX_TEST_MYSQL` (and the TLS
//! MariaDB's `SYNQX_TEST_MYSQL_TLS` and the test CAs' `SYNQX_TEST_TLS_CA`,
//! `SYNQX_TEST_TLS_OTHER_CA`);
//! `scripts/nosql-services up` starts redis-server and FerretDB (MongoDB) and prints
//! `SYNQX_TEST_REDIS` and `SYNQX_TEST_MONGODB`. Without them the defaults are the ports the
//! scripts use.

/// One server: where it listens and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// `postgres` or `mysql`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Server {
    /// Parses `scheme://user:password@host:port/database?options`; the port defaults to
    /// `default_port`, the options are dropped.
    pub fn parse(url: &str, default_port: u16) -> Server {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (login, place) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (user, password) = login.split_once(':').unwrap_or((login, ""));
        let (address, database) = place.split_once('/').unwrap_or((place, ""));
        let (host, port) = match address.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .unwrap_or_else(|e| panic!("the port of {url} is not a number: {e}")),
            ),
            None => (address, default_port),
        };
        Server {
            scheme: scheme.into(),
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            database: database.split('?').next().unwrap_or_default().into(),
        }
    }

    /// The URL again, for `database` (another database of the same server).
    pub fn url_of(&self, database: &str) -> String {
        format!(
            "{}://{}:{}@{}:{}/{database}",
            self.scheme, self.user, self.password, self.host, self.port
        )
    }

    /// The URL of the server's own database.
    pub fn url(&self) -> String {
        self.url_of(&self.database)
    }

    /// The message of a test that could not reach this server.
    pub fn unreachable(&self, what: &str, error: impl std::fmt::Display) -> String {
        format!(
            "the {what} test server at {}:{} is not reachable ({error}); start it with `eval \"$(scripts/services up)\"`",
            self.host, self.port
        )
    }
}

/// The PostgreSQL test server: a superuser `synqx`, database `synqx`.
pub fn postgres() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://synqx:synqx@127.0.0.1:55432/synqx".into()),
        5432,
    )
}

/// The MariaDB test server: a user `synqx` with all privileges, database `synqx`.
pub fn mysql() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://synqx:synqx@127.0.0.1:53306/synqx".into()),
        3306,
    )
}

/// The second MariaDB test server, which serves TLS with a certificate [`tls_ca`] signed.
pub fn mysql_tls() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_MYSQL_TLS")
            .unwrap_or_else(|_| "mysql://synqx:synqx@127.0.0.1:53307/synqx".into()),
        3306,
    )
}

/// The certificate authority (a PEM file) that signed the certificate of the PostgreSQL and
/// TLS MariaDB test servers.
pub fn tls_ca() -> std::path::PathBuf {
    services_file("SYNQX_TEST_TLS_CA", "ca.crt")
}

/// A certificate authority (a PEM file) that signed nothing the test servers use.
pub fn tls_other_ca() -> std::path::PathBuf {
    services_file("SYNQX_TEST_TLS_OTHER_CA", "other-ca.crt")
}

/// A file `scripts/services` made: from `var`, else where the script keeps it by default.
fn services_file(var: &str, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    if let Ok(path) = std::env::var(var) {
        return path.into();
    }
    let dir = std::env::var("SYNQX_SERVICES_DIR").unwrap_or_else(|_| {
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        format!("/tmp/synqx-services-{uid}")
    });
    std::path::Path::new(&dir).join("tls").join(name)
}

/// The Redis test server: password `synqx` for the default user, database 0.
pub fn redis() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_REDIS")
            .unwrap_or_else(|_| "redis://:synqx@127.0.0.1:56379/0".into()),
        6379,
    )
}

/// The URI of the MongoDB test server (FerretDB), with the options its logins need
/// (`authMechanism=PLAIN`: FerretDB passes the login on to PostgreSQL).
pub fn mongodb_uri() -> String {
    std::env::var("SYNQX_TEST_MONGODB")
        .unwrap_or_else(|_| "mongodb://synqx:synqx@127.0.0.1:57017/?authMechanism=PLAIN".into())
}

/// `host:port` of a URL or URI: after the scheme and the login, before the path and options.
pub fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// The URI with another login (`user:password@`), its address, path and options kept.
pub fn with_login(uri: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let place = rest.rsplit_once('@').map_or(rest, |(_, p)| p);
    format!("{scheme}://{user}:{password}@{place}")
}

/// The message of a test that could not reach the Redis or MongoDB test server.
pub fn nosql_unreachable(what: &str, at: &str, error: impl std::fmt::Display) -> String {
    format!(
        "the {what} test server at {at} is not reachable ({error}); start it with `eval \"$(scripts/services up)\" && eval \"$(scripts/nosql-services up)\"`"
    )
}

/// A port on loopback nothing listens on, so a connection to it is refused at once: the
/// port of a listener just closed, which the system does not hand out again straight away.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot listen on loopback to find a closed port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the address of a loopback listener: {e}"))
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_logins_of_uris() {
        let uri = "mongodb://synqx:synqx@127.0.0.1:57017/?authMechanism=PLAIN";
        assert_eq!(address_of(uri), "127.0.0.1:57017");
        assert_eq!(address_of("http://127.0.0.1:59050"), "127.0.0.1:59050");
        assert_eq!(address_of("127.0.0.1:6379?x=1"), "127.0.0.1:6379");
        assert_eq!(
            with_login(uri, "leak", "s3cret"),
            "mongodb://leak:s3cret@127.0.0.1:57017/?authMechanism=PLAIN"
        );
        assert_eq!(
            with_login("redis://127.0.0.1:6379/0", "u", "p"),
            "redis://u:p@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn nothing_listens_on_a_closed_port() {
        let port = closed_port();
        let refused = std::net::TcpStream::connect(("127.0.0.1", port))
            .err()
            .unwrap_or_else(|| panic!("something answered on the closed port {port}"));
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{refused}"
        );
    }

    #[test]
    fn urls_parse_into_their_parts_and_back() {
        let s = Server::parse(
            "postgres://etl:p%40ss@db.example:6543/warehouse?sslmode=disable",
            5432,
        );
        assert_eq!(
            s,
            Server {
                scheme: "postgres".into(),
                host: "db.example".into(),
                port: 6543,
                user: "etl".into(),
                password: "p%40ss".into(),
                database: "warehouse".into(),
            }
        );
        assert_eq!(s.url(), "postgres://etl:p%40ss@db.example:6543/warehouse");
        assert_eq!(
            s.url_of("other"),
            "postgres://etl:p%40ss@db.example:6543/other"
        );
        let s = Server::parse("mysql://root@localhost/app", 3306);
        assert_eq!((s.port, s.password.as_str()), (3306, ""));
        assert!(
            s.unreachable("MariaDB", "refused")
                .contains("localhost:3306 is not reachable (refused)")
        );
    }
}
