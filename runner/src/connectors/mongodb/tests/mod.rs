mod roundtrip;
mod support;
