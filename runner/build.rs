//! Links the binaries with packed relative relocations (`DT_RELR`, glibc 2.36 and later: the
//! Debian 12 base of the image and of CI).
//!
//! A position-independent binary of this size carries about 200,000 relative relocations.
//! Stored the classic way (`.rela.dyn`, 24 bytes each) they are 4.9 MB that the dynamic
//! loader reads at every start, before any row: 5 MiB of a step's resident memory (a run
//! that moves three rows peaks at 28 MiB instead of 33, `synqx --version` at 8 instead of
//! 13). Packed, they take 55 kB. The binary stays position-independent (ASLR unchanged).
//! The operator links with this script too.

fn main() {
    // It reads no file of the package (a change to the script rebuilds it anyway): watching
    // the manifest keeps Cargo from running it again after every source change.
    println!("cargo::rerun-if-changed=Cargo.toml");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
