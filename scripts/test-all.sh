#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, checks
# formatting and lints, then runs every test. Safe to run again; later runs reuse caches.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared, cached target directory so a warm rerun only rebuilds what changed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synqx/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A suite run rebuilds only what changed at crate level; incremental caches would add
# gigabytes to the target directory for little gain here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The suite is CI: tests that compare checked-in generated files refuse to rewrite them
# (UPDATE_MANIFESTS and the like fail the suite here instead of making it pass).
export CI="${CI:-true}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
# Old test executables of earlier runs (a new hash per change) would fill the disk over time.
scripts/prune-target "$CARGO_TARGET_DIR"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

step "test servers"
# Runs a `... up` script and takes in the exports it prints. `eval "$(x up)"` would carry on
# when x fails (eval of nothing succeeds); this stops the suite there, with x's error.
up() {
  local exports
  exports="$("$@" up)"
  eval "$exports"
}
# The test control plane (tests/cluster) is built from Go modules and needs these tools.
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go 1.26 or newer is needed to build the test control plane and Helm (tests/cluster/build);" >&2
  echo "       install it from https://go.dev/doc/install and run this again." >&2
  exit 1
fi
# The containerd node (tests/cluster/up --node containerd) and the image build need
# containerd, runc, the CNI plugins, buildah and skopeo, iptables, and a C compiler with a
# static libc for the pause binary.
# Each tool with the Debian package that brings it; only what is missing is installed, so a
# Node.js from elsewhere (NodeSource's ships its own npm, which Debian's npm conflicts with)
# stays as it is.
packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need openssl openssl; need curl curl; need python3 python3; need g++ g++
need containerd containerd; need runc runc; need buildah buildah; need skopeo skopeo
need iptables iptables; need ip iproute2; need cc gcc; need objcopy binutils
need node nodejs; need npm npm
[[ -x /usr/lib/cni/bridge ]] || packages+=(containernetworking-plugins)
# The web UI's tests drive Debian's chromium (headless) with playwright-core from npm.
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] || packages+=(libc6-dev)
# bigquery-emulator embeds ZetaSQL, which only clang compiles; fakesnow lives in a venv.
need clang++ clang
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
if (( ${#packages[@]} > 0 )); then
  sudo_if_needed=""; [[ "$(id -u)" != 0 ]] && sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed apt-get install -y -qq "${packages[@]}"
fi
# Helm for the chart tests, from its Go module (cached in ~/.cache/synqx/testbin).
tests/cluster/build helm >/dev/null
# moto's server mode is the local S3 the S3 connector's tests start on loopback.
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]"
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
command -v moto_server
# Prometheus and promtool from Debian's package: the alert rules' checks and unit tests, and
# a real Prometheus on loopback that scrapes the operator in the end-to-end tests.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  sudo_if_needed=""; [[ "$(id -u)" != 0 ]] && sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq && $sudo_if_needed apt-get install -y -qq prometheus
fi
promtool --version 2>&1 | sed -n 1p
# The ArgoCD health checks run in gopher-lua, ArgoCD's Lua engine, from a small Go harness.
tests/argocd-health/build
step "tests without servers"
# What `cargo test --workspace` runs on a fresh clone, before any server is up: a test that
# needs one but is not behind its feature fails here instead of passing later.
cargo test --workspace --locked

# PostgreSQL and MariaDB from Debian's packages, on loopback, for the database connectors.
up scripts/services
trap 'scripts/services down' EXIT
# redis-server from Debian's package and FerretDB (the MongoDB wire protocol), built once from
# its Go module into ~/.cache/synqx/testbin and storing its data in the PostgreSQL above.
up scripts/nosql-services
trap 'scripts/nosql-services down; scripts/services down' EXIT
# fakesnow (Snowflake's API, from PyPI), bigquery-emulator (built from its Go module once,
# about 9 minutes cold) and iridium-server (a TDS server, built once with cargo install, about
# 2 minutes) on loopback, for the warehouse and SQL Server connectors.
trap 'scripts/emulators down; scripts/nosql-services down; scripts/services down' EXIT
up scripts/emulators

step "format"
cargo fmt --all -- --check

# The end-to-end tests need the control plane started below; they build only with this on.
E2E=(--features synqx-e2e/control-plane)

step "lint"
# Every feature, so the tests that need servers, the control plane or the containerd node
# are linted too.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "control plane"
# The end-to-end tests run the built binaries as pods, so build them before starting.
cargo build --workspace --bins --locked
export SYNQX_BIN_DIR="$CARGO_TARGET_DIR/debug"
trap 'tests/cluster/down; scripts/emulators down; scripts/nosql-services down; scripts/services down' EXIT
tests/cluster/up >/dev/null

step "tests"
# The integration-test features compile the tests that need PostgreSQL, MariaDB, moto,
# redis-server, FerretDB and the warehouse emulators, and the control-plane feature the
# end-to-end tests; the servers were started above, and a test whose server is missing fails.
cargo test --workspace --locked "${E2E[@]}" --features synqx-runner/integration-tests \
  --features synqx-operator/s3-integration-tests

step "web UI in headless Chromium"
# Against `synqx run --ui` with the binary built above; chromium missing fails here.
tests/browser/run

step "tests on a containerd node"
# The same binaries in real containers: the image from the debug build (scripts/image
# build --bin-dir), one node shared by the tests of tests/tests/node.rs.
tests/cluster/down
export SYNQX_NODE_CLUSTER_DIR="$PWD/.synqx-node-cluster"
trap 'SYNQX_CLUSTER_DIR="$SYNQX_NODE_CLUSTER_DIR" tests/cluster/down; scripts/emulators down; scripts/nosql-services down; scripts/services down' EXIT
SYNQX_CLUSTER_DIR="$SYNQX_NODE_CLUSTER_DIR" tests/cluster/up --node containerd >/dev/null
cargo test -p synqx-e2e --locked --features containerd-node --test node

step "fuzz"
# 60 s of coverage-guided fuzzing of validate -> compile: libFuzzer through cargo-fuzz's
# sanitizer-free mode, which builds on stable Rust. New inputs go to a scratch folder; the
# checked-in corpus is only read.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
new_inputs="$(mktemp -d)"
cargo fuzz run --fuzz-dir fuzz --sanitizer none validate "$new_inputs" fuzz/corpus/validate \
  -- -max_total_time=60
rm -rf "$new_inputs"
