//! The SQLite connector on database files in temporary directories.

mod open;
mod schema;
mod sink;
mod source;
mod support;
