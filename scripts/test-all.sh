#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, checks
# formatting and lints, then runs every test. Safe to run again; later runs reuse caches.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared, cached target directory so a warm rerun only rebuilds what changed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synqx/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

step "test servers"
# moto's server mode is the local S3 the S3 connector's tests start on loopback.
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]"
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
command -v moto_server

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked
