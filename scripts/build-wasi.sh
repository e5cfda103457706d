#!/usr/bin/env bash
# Builds the release WASI module: cargo's `wasm` profile (opt-level "z", LTO, stripped), then
# binaryen's `wasm-opt -Oz` (Debian package `binaryen`). Prints the module's path.
# Usage: bash scripts/build-wasi.sh [--step]   (honours CARGO_TARGET_DIR)
#   --step: the module with the core's stepping ABI (the `step` feature), which the differential
#   test drives; built in its own directory (TARGET/step) so it never replaces the shipped one.
# Without wasm-opt the unoptimized module is used, with a warning on standard error.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
features=()
if [ "${1:-}" = "--step" ]; then
    target="$target/step"
    features=(--features step)
fi
# Panic locations carry their source file's path into the module; for a dependency that path
# starts with this machine's cargo home (/root/.cargo/registry/src/index.crates.io-<hash>/).
# Remapped to the crate's own path (clap_builder-4.6.7/src/...): about 2 KB less, and no build
# machine's path in the module. (The std paths are /rustc/<commit>/library/...: fixed.)
remap=""
for dir in "${CARGO_HOME:-${HOME:-/root}/.cargo}"/registry/src/*/; do
    [ -d "$dir" ] && remap+=" --remap-path-prefix=$dir="
done
# sha2's compact software SHA-256 (a rolled loop; the module has no SHA instructions to use
# anyway): about 7 KB less than the unrolled one, for the duplicate index's keys only.
compact='--cfg=sha2_backend_soft="compact"'
RUSTFLAGS="${RUSTFLAGS:-}$remap $compact" CARGO_TARGET_DIR="$target" cargo build --quiet \
    -p mdeliver-wasi --target wasm32-wasip1 --profile wasm "${features[@]}"
built="$target/wasm32-wasip1/wasm/mdeliver-wasi.wasm"
out="$target/wasm32-wasip1/wasm/mdeliver-wasi.opt.wasm"
if ! command -v wasm-opt >/dev/null; then
    # The unoptimized module itself: a copy under the optimized name would look fresh (newer
    # than the build) and be kept even once wasm-opt is installed.
    echo "build-wasi: wasm-opt not found (apt-get install binaryen): using the unoptimized module" >&2
    echo "$built"
    exit 0
fi
if [ ! -e "$out" ] || [ "$built" -nt "$out" ]; then
    # The features rustc enables by default for wasm32-wasip1, which binaryen must accept.
    # A name of this run's own: test binaries may run this script at the same time.
    wasm-opt -Oz --converge --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int "$built" -o "$out.part.$$"
    mv "$out.part.$$" "$out"
fi
echo "$out"
