//! The PostgreSQL connector: the COPY codec on hand-built bytes, and everything else against
//! the PostgreSQL test server.

mod codec;
#[cfg(feature = "postgres-integration-tests")]
mod codec_server;
#[cfg(feature = "postgres-integration-tests")]
mod errors;
mod names;
#[cfg(feature = "postgres-integration-tests")]
mod parallel;
#[cfg(feature = "postgres-integration-tests")]
mod session;
#[cfg(feature = "postgres-integration-tests")]
mod sink;
#[cfg(feature = "postgres-integration-tests")]
mod source;
#[cfg(feature = "postgres-integration-tests")]
mod support;
#[cfg(feature = "postgres-integration-tests")]
mod tls;
