#!/usr/bin/env bash
# Peak memory (max RSS, via GNU time) of delivering a small message and a 1 GiB message (piped,
# into two maildirs, --no-fsync) with the release binary: it must not grow with message size.
# Not part of the test suite. Needs /usr/bin/time (Debian package "time") and 2 GiB of disk.
# Usage: bash bench/memory.sh [SIZE_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
if [[ -z "${MDELIVER:-}" ]]; then
    cargo build --release --quiet -p mdeliver
    MDELIVER="${CARGO_TARGET_DIR:-target}/release/mdeliver"
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/time -f "small message:            max RSS %M KiB" \
    "$MDELIVER" -c --no-fsync "$dir/A" < examples/hello.eml
head -c "$size" /dev/zero | /usr/bin/time -f "$size bytes into 2 maildirs: max RSS %M KiB, %e s" \
    "$MDELIVER" -c --no-fsync "$dir/A" "$dir/B"
for m in A B; do
    n=$(find "$dir/$m/new" -type f -size "${size}c" | wc -l)
    [[ $n == 1 ]] || { echo "$m: large message missing" >&2; exit 1; }
done
