mod keys;
mod overwrite;
mod roundtrip;
mod support;
