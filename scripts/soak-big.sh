#!/usr/bin/env bash
# Bigger runs of the real-system tests of issue 7 (hostile input, real faults, soaks), in
# release mode, one test binary at a time, with the sizes raised far beyond what the default
# suite (scripts/test-all.sh) uses:
#   kill -9 soak            MDELIVER_SOAK_KILL      deliveries (default here 20000; suite 2000)
#   concurrency soak        MDELIVER_SOAK_PROCS x MDELIVER_SOAK_PER
#                                                   (default here 64 x 1000; suite 64 x 100)
#   hostile input           2 GiB message and 1 GiB line (the suite runs these too)
# Optionally also fuzzes: FUZZ_SECONDS=N runs fuzz/run.sh N (seconds per target).
#
# Needs root for the tmpfs, setpriv and namespace cases (they are skipped, with the reason
# printed, otherwise) and the Debian packages util-linux (unshare, setpriv, mount) and
# faketime. Usage: scripts/soak-big.sh   (environment variables above override the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."

export MDELIVER_SOAK_KILL="${MDELIVER_SOAK_KILL:-20000}"
export MDELIVER_SOAK_PROCS="${MDELIVER_SOAK_PROCS:-64}"
export MDELIVER_SOAK_PER="${MDELIVER_SOAK_PER:-1000}"

for t in soak_kill soak_concurrency hostile_input hostile_fs hostile_maildir hostile_collide; do
    echo "== $t"
    cargo test --release -p mdeliver-tests --test "$t" -- --nocapture --test-threads=1
done

if [ -n "${FUZZ_SECONDS:-}" ]; then
    fuzz/run.sh "$FUZZ_SECONDS"
fi
