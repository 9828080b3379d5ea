mod overwrite;
mod roundtrip;
mod support;
