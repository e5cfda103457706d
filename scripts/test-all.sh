#!/usr/bin/env bash
# Runs every mdeliver test on a fresh machine, installing what the tests need first.
# Usage: bash scripts/test-all.sh      (the README's test command; .ci/run calls it)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain targets"
rustup target add wasm32-wasip1 thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add wasm32-wasip1 thumbv7em-none-eabihf
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== mdeliver-core is no_std and alloc-free (thumbv7em-none-eabihf)"
cargo build -p mdeliver-core --target thumbv7em-none-eabihf

echo "== tests"
cargo test --workspace
