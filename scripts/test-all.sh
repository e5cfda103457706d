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

echo "== WASI module: builds for wasm32-wasip1 within its size budget (300 KiB)"
cargo build -p mdeliver-wasi --target wasm32-wasip1 --profile wasm
wasm="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/wasm/mdeliver-wasi.wasm"
size=$(stat -c %s "$wasm")
echo "mdeliver-wasi.wasm: $size bytes"
if [ "$size" -gt $((300 * 1024)) ]; then
    echo "mdeliver-wasi.wasm is over its 300 KiB budget" >&2
    exit 1
fi
cargo clippy -p mdeliver-wasi --target wasm32-wasip1 -- -D warnings

echo "== tests"
cargo test --workspace
