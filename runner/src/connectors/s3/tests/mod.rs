//! The S3 connector against moto's S3 server, and against fake servers that refuse or echo.

mod check;
mod read;
mod support;
mod write;
