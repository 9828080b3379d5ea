//! Writing files: the scenarios every file connector shares (`formats::tests::lakes`).

use super::support::Lake;
use crate::connectors::formats::tests::lakes::lake_tests;

lake_tests!(#[tokio::test] Lake::new() => write);
