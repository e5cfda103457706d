#!/usr/bin/env bash
# The floor under `mdeliver -M` on a tmpfs: a C program that makes only the system calls the
# import makes for each message (an `O_TMPFILE` open in tmp/, one write of the message,
# `futimens`, `fstat`, `linkat` into new/, `close`) and nothing else (no reading, no parsing,
# no naming), timed side by side with `mdeliver -M` and mblaze's `mdeliver -M` on the same
# number of messages of the same sizes (1..8 KiB). Prints microseconds per message for each,
# best of R rounds run interleaved, and what "3x mblaze" (issue 14's target) would need.
# Not part of the test suite: a measurement. Needs cc, python3 and mblaze (apt-get install
# mblaze).
# Usage: bash bench/import-floor.sh [N] [ROUNDS]     (defaults 20000 and 5)
# MDELIVER=/path/to/mdeliver measures that binary (default: the static musl release build).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
rounds=${2:-5}
MBLAZE=/usr/bin/mdeliver
[[ -x $MBLAZE ]] || { echo "mblaze is not installed (apt-get install mblaze)" >&2; exit 1; }
if [[ -z "${MDELIVER:-}" ]]; then
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
    cargo build --release --quiet -p mdeliver --target x86_64-unknown-linux-musl
    MDELIVER="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/mdeliver"
fi
work=$(mktemp -d /dev/shm/mdeliver-floor.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The mbox: N messages of 1..8 KiB (the sizes also written to sizes.txt for the probe).
python3 - "$work" "$n" <<'PY'
import random, sys
work, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(15)
with open(f"{work}/in.mbox", "wb") as f, open(f"{work}/sizes.txt", "w") as s:
    for i in range(n):
        head = (f"From: s{i}@example.org\nTo: you@example.org\nSubject: {i}\n"
                "Date: Sat, 28 Nov 2026 18:03:09 +0000\n\n").encode()
        size = rnd.randint(1024, 8192)
        body = (b"x" * 75 + b"\n") * ((size - len(head)) // 76 + 1)
        msg = head + body[: size - len(head) - 1] + b"\n"
        f.write(b"From bench@example.org Sat Nov 28 18:03:09 2026\n" + msg + b"\n")
        s.write(f"{len(msg)}\n")
PY

cat >"$work/floor.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* floor MAILDIR SIZES: per size, the import's system calls for one message. */
int main(int argc, char **argv) {
    static char buf[16384];
    memset(buf, 'x', sizeof buf);
    char p[4096];
    snprintf(p, sizeof p, "%s/tmp", argv[1]);
    int tmp = open(p, O_RDONLY | O_DIRECTORY);
    snprintf(p, sizeof p, "%s/new", argv[1]);
    int new = open(p, O_RDONLY | O_DIRECTORY);
    FILE *sizes = fopen(argv[2], "r");
    if (tmp < 0 || new < 0 || !sizes) { perror("open"); return 1; }
    const struct timespec t[2] = {{1795888989, 0}, {1795888989, 0}};
    size_t len;
    for (long i = 0; fscanf(sizes, "%zu", &len) == 1; i++) {
        int fd = openat(tmp, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) || write(fd, buf, len) != (ssize_t)len || futimens(fd, t)) {
            perror("message"); return 1;
        }
        char name[160];
        snprintf(name, sizeof name, "1796647784.M%06ldP1Q%ldR0123456789abcdefV%lxI%lx.floor,S=%zu",
                 i % 1000000, i, (long)st.st_dev, (long)st.st_ino, len);
        if (linkat(fd, "", new, name, AT_EMPTY_PATH)) { perror("linkat"); return 1; }
        close(fd);
    }
    return 0;
}
C
cc -O2 -o "$work/floor" "$work/floor.c"

# Seconds of one run of "$@" into a fresh maildir $work/md, best kept per tool.
declare -A best
run() {
    local tool=$1; shift
    rm -rf "$work/md"; mkdir -p "$work/md/tmp" "$work/md/new" "$work/md/cur"
    local t0 t1 s
    t0=$(date +%s%N)
    "$@"
    t1=$(date +%s%N)
    local got
    got=$(find "$work/md/new" "$work/md/cur" -type f | wc -l)
    [[ $got == "$n" ]] || { echo "$tool stored $got of $n messages" >&2; exit 1; }
    s=$(( (t1 - t0) / 1000 ))
    if [[ -z "${best[$tool]:-}" || $s -lt ${best[$tool]} ]]; then best[$tool]=$s; fi
}
for _ in $(seq "$rounds"); do
    run floor "$work/floor" "$work/md" "$work/sizes.txt"
    run mdeliver "$MDELIVER" -M "$work/md" <"$work/in.mbox"
    run mblaze "$MBLAZE" -M "$work/md" <"$work/in.mbox"
done
us() { echo "scale=2; ${best[$1]} / $n" | bc; }
echo "| $n messages of 1-8 KiB on a tmpfs, best of $rounds | µs per message |"
echo "|---|---|"
echo "| the system calls alone (C) | $(us floor) |"
echo "| mdeliver -M | $(us mdeliver) |"
echo "| mblaze mdeliver -M | $(us mblaze) |"
echo "| 3x mblaze would need | $(echo "scale=2; ${best[mblaze]} / $n / 3" | bc) |"
