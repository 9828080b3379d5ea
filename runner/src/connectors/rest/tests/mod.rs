mod failures;
mod pagination;
mod probe;
mod records;
mod source;
mod support;
