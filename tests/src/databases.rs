//! The database test servers of `scripts/services up` (PostgreSQL and MariaDB on loopback),
//! reached through their command-line clients so the end-to-end tests need no driver.

use std::process::Command;

/// One server: where it listens and how to log in.
#[derive(Clone, Debug)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Server {
    /// Parses `scheme://user:password@host:port/database`.
    fn parse(url: &str, default_port: u16) -> Server {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (login, place) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (user, password) = login.split_once(':').unwrap_or((login, ""));
        let (address, database) = place.split_once('/').unwrap_or((place, ""));
        let (host, port) = match address.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(default_port)),
            None => (address, default_port),
        };
        Server {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            database: database.split('?').next().unwrap_or_default().into(),
        }
    }
}

/// The PostgreSQL test server (`SYNQX_TEST_POSTGRES`, else the port `scripts/services` uses).
pub fn postgres() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://synqx:synqx@127.0.0.1:55432/synqx".into()),
        5432,
    )
}

/// The MariaDB test server (`SYNQX_TEST_MYSQL`, else the port `scripts/services` uses).
pub fn mysql() -> Server {
    Server::parse(
        &std::env::var("SYNQX_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://synqx:synqx@127.0.0.1:53306/synqx".into()),
        3306,
    )
}

fn run(mut command: Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start the client: {e}"));
    assert!(
        out.status.success(),
        "{what} failed (is the test server up? `scripts/services up`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs SQL on the PostgreSQL test server; returns the unaligned, tuples-only output.
pub fn psql(sql: &str) -> String {
    let s = postgres();
    let mut command = Command::new("psql");
    command
        .args([
            "-h",
            &s.host,
            "-p",
            &s.port.to_string(),
            "-U",
            &s.user,
            "-d",
        ])
        .arg(&s.database)
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .env("PGPASSWORD", &s.password);
    run(command, &format!("psql -c {sql:?}"))
}

/// Runs SQL on the MariaDB test server; returns the batch output without column names.
pub fn mariadb(sql: &str) -> String {
    let s = mysql();
    let mut command = Command::new("mariadb");
    command
        .args([
            "--no-defaults",
            "-N",
            "-B",
            "-h",
            &s.host,
            "-P",
            &s.port.to_string(),
        ])
        .args(["-u", &s.user])
        .arg(format!("-p{}", s.password))
        .args(["-e", sql]);
    run(command, &format!("mariadb -e {sql:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_their_parts() {
        let s = Server::parse(
            "postgres://etl:p%40ss@db.example:6543/warehouse?sslmode=disable",
            5432,
        );
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.password.as_str(),
                s.database.as_str()
            ),
            ("db.example", 6543, "etl", "p%40ss", "warehouse")
        );
        let s = Server::parse("mysql://root@localhost/app", 3306);
        assert_eq!((s.port, s.password.as_str()), (3306, ""));
    }
}
