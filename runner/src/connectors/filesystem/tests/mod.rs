//! The filesystem connector on temporary directories.

mod read;
mod support;
mod write;
