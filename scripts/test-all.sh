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
# The test control plane (tests/cluster) is built from Go modules and needs these tools.
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go 1.24 or newer is needed to build the test control plane (tests/cluster/build);" >&2
  echo "       install it from https://go.dev/doc/install and run this again." >&2
  exit 1
fi
missing=()
for tool in openssl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if (( ${#missing[@]} > 0 )); then
  sudo_if_needed=""; [[ "$(id -u)" != 0 ]] && sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq && $sudo_if_needed apt-get install -y -qq "${missing[@]}"
fi
# moto's server mode is the local S3 the S3 connector's tests start on loopback.
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]"
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
command -v moto_server
# PostgreSQL and MariaDB from Debian's packages, on loopback, for the database connectors.
eval "$(scripts/services up)"
trap 'scripts/services down' EXIT

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "control plane"
# The end-to-end tests run the built binaries as pods, so build them before starting.
cargo build --workspace --bins --locked
export SYNQX_BIN_DIR="$CARGO_TARGET_DIR/debug"
trap 'tests/cluster/down; scripts/services down' EXIT
tests/cluster/up >/dev/null

step "tests"
cargo test --workspace --locked
