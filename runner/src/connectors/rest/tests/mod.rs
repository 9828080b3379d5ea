mod failures;
mod pagination;
mod probe;
mod records;
mod server;
mod source;
mod support;
