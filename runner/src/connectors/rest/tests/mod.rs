mod failures;
mod pagination;
mod records;
mod server;
mod source;
mod support;
