//! The SQLite connector on database files in temporary directories.

mod schema;
mod sink;
mod source;
mod support;
