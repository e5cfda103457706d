#!/usr/bin/env bash
# Times N sequential deliveries, one mdeliver process each (default durability and --no-fsync),
# against spawning /bin/true N times from the same loop, and prints the ratios.
# Not part of the test suite: a measurement on whatever machine runs it.
#
# Usage: bash bench/spawn.sh [N] [MAILDIR_PARENT]
#   N               deliveries per variant (default 2000)
#   MAILDIR_PARENT  where the scratch maildirs go (default: a new directory under $TMPDIR or
#                   /tmp; pass a directory on the filesystem you care about, since fsync cost
#                   depends on it)
# MDELIVER=/path/to/mdeliver uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-2000}
parent=${2:-$(mktemp -d)}
if [[ -z "${MDELIVER:-}" ]]; then
    cargo build --release --quiet -p mdeliver
    MDELIVER="${CARGO_TARGET_DIR:-target}/release/mdeliver"
fi
msg=examples/hello.eml

# Seconds (with nanoseconds) for running "$@" n times, each as its own process.
time_loop() {
    local start end
    start=$(date +%s.%N)
    for ((i = 0; i < n; i++)); do
        "$@" < "$msg"
    done
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

rm -rf "$parent/bench-durable" "$parent/bench-nofsync"
"$MDELIVER" -c "$parent/bench-durable" < "$msg"
"$MDELIVER" -c "$parent/bench-nofsync" < "$msg"

t_true=$(time_loop /bin/true)
t_nofsync=$(time_loop "$MDELIVER" --no-fsync "$parent/bench-nofsync")
t_durable=$(time_loop "$MDELIVER" "$parent/bench-durable")

delivered=$(( $(ls "$parent/bench-durable/new" | wc -l) + $(ls "$parent/bench-nofsync/new" | wc -l) - 2 ))
if (( delivered != 2 * n )); then
    echo "expected $((2 * n)) deliveries, found $delivered" >&2
    exit 1
fi

fs=$(stat -f -c %T "$parent")
printf 'N=%d, maildirs on %s (%s)\n' "$n" "$parent" "$fs"
printf '%-28s %9.3f s  %8.1f us/run  %6.2fx\n' \
    "/bin/true" "$t_true" "$(echo "$t_true * 1000000 / $n" | bc -l)" 1 \
    "mdeliver --no-fsync" "$t_nofsync" "$(echo "$t_nofsync * 1000000 / $n" | bc -l)" \
    "$(echo "$t_nofsync / $t_true" | bc -l)" \
    "mdeliver (durable)" "$t_durable" "$(echo "$t_durable * 1000000 / $n" | bc -l)" \
    "$(echo "$t_durable / $t_true" | bc -l)"
rm -rf "$parent/bench-durable" "$parent/bench-nofsync"
