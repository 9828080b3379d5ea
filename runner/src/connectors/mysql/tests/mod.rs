//! The MySQL connector: names without a server, everything else against the MariaDB test
//! server.

#[cfg(feature = "mysql-integration-tests")]
mod errors;
mod names;
#[cfg(feature = "mysql-integration-tests")]
mod sink;
#[cfg(feature = "mysql-integration-tests")]
mod source;
#[cfg(feature = "mysql-integration-tests")]
mod support;
#[cfg(feature = "mysql-integration-tests")]
mod tls;
#[cfg(feature = "mysql-integration-tests")]
mod types;
