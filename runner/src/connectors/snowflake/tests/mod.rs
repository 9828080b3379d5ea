//! The connector against fakesnow (`scripts/emulators up` starts it and prints
//! `SYNQX_TEST_FAKESNOW`): every mapped type through a load and a read, each write mode,
//! incremental reads over three runs, a missing table, failed and cancelled overwrites, and
//! `synqx check`. Each test works in a database of its own. A missing emulator fails the test.

mod reads;
mod support;
mod types;
mod writes;
