//! The connector against bigquery-emulator (`scripts/emulators up` starts it and prints
//! `SYNQX_TEST_BIGQUERY`): the mapped types through a load and a read, append and overwrite,
//! `schemaEvolution` fail and ignore, incremental reads over three runs, a missing table, a
//! failed and a cancelled overwrite, and `synqx check`.
//! Each test works in a dataset of its own. A missing emulator fails the test.
//!
//! Loads are Parquet (the default `loadFormat`) where the emulator reads them right: INT64,
//! FLOAT64, STRING, BOOL, RECORD and NULLs. Its Parquet reader misreads the other types
//! (NUMERIC and BIGNUMERIC read 0, DATE 1970-01-01, TIME and TIMESTAMP values off, JSON kept as
//! a JSON string) and fails on LIST columns (HTTP 500 "failed to convert array from struct"),
//! so the tests of those types load with `loadFormat: json`; the Parquet written for them is
//! checked in `load::tests`.
//!
//! Not here, because bigquery-emulator 0.6.6 gets them wrong (each is unit-tested against the
//! API reference's shapes instead): `MERGE` (its rewrite is not valid SQLite: "near
//! \"SELECT\": syntax error"; a test holds that answer), `BYTES` in loads (it keeps the base64 text instead of decoding it), JSON
//! numbers in loads (it stores them as strings), `ALTER TABLE … ADD COLUMN` for
//! `schemaEvolution: addColumns` ("Statement not supported: AlterTableStatement").

mod reads;
mod support;
mod types;
mod writes;
