#!/usr/bin/env bash
# mbox import rate: a generated mbox of N messages (default 100 000, ~2.5 KiB each, mboxrd
# quoting, Status: on a third of them) imported with `mdeliver -M` (release build; default
# durability: each message fsynced, new/ and cur/ fsynced once per 1024 messages) and with
# `--no-fsync`, next to mblaze's `mdeliver -M` (fsyncs each message, never a directory), on
# tmpfs (/dev/shm) and on disk (a directory next to this repository). Prints msg/s and MiB/s
# of mbox input, and checks every run stored N messages. Not part of the test suite.
# Needs python3 and mblaze (apt-get install mblaze); Usage: bash bench/mbox-import.sh [N] [DISKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
disk=${2:-$(pwd)/..}
if [[ -z "${MDELIVER:-}" ]]; then
    cargo build --release --quiet -p mdeliver
    MDELIVER="${CARGO_TARGET_DIR:-target}/release/mdeliver"
fi
MBLAZE=/usr/bin/mdeliver
[[ -x $MBLAZE ]] || { echo "mblaze is not installed (apt-get install mblaze)" >&2; exit 1; }

work_shm=$(mktemp -d /dev/shm/mdeliver-bench.XXXXXX)
work_disk=$(mktemp -d "$disk/mdeliver-bench.XXXXXX")
trap 'rm -rf "$work_shm" "$work_disk"' EXIT
mbox=$work_shm/in.mbox
python3 - "$mbox" "$n" <<'PY'
import sys, random
path, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
words = [w.encode() for w in "the quick brown fox jumps over lazy dog mail delivery maildir mbox From".split()]
with open(path, 'wb') as f:
    for i in range(n):
        f.write(b"From sender%d@example.org Sat Nov 28 18:03:09 2026\n" % i)
        f.write(b"From: Sender %d <sender%d@example.org>\nTo: you@example.org\n" % (i, i))
        f.write(b"Subject: message %d\nDate: Sat, 28 Nov 2026 18:03:09 +0000\n" % i)
        f.write(b"Message-ID: <%d@example.org>\n" % i)
        if i % 3 == 0:
            f.write(b"Status: RO\n")
        f.write(b"\n")
        size = 0
        while size < 2300:
            line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
            if line.startswith(b"From "):
                line = b">" + line
            f.write(line)
            size += len(line)
        f.write(b"\n")
PY
bytes=$(stat -c %s "$mbox")
mib=$(python3 -c "print($bytes/1048576)")
echo "mbox: $n messages, $bytes bytes"

run() { # label dir command...
    local label=$1 dir=$2; shift 2
    rm -rf "$dir/md"; mkdir -p "$dir/md/tmp" "$dir/md/new" "$dir/md/cur"; sync
    local t0 t1
    t0=$(date +%s.%N)
    "$@" "$dir/md" < "$mbox"
    t1=$(date +%s.%N)
    local got
    got=$(find "$dir/md/new" "$dir/md/cur" -type f | wc -l)
    [[ $got == "$n" ]] || { echo "$label: stored $got of $n" >&2; exit 1; }
    python3 -c "
s=$t1-$t0
print(f'{\"$label\":44s} {s:8.2f} s {$n/s:10.0f} msg/s {$mib/s:8.1f} MiB/s')"
}

for where in tmpfs disk; do
    dir=$work_shm; [[ $where == disk ]] && dir=$work_disk
    run "$where: mdeliver -M" "$dir" "$MDELIVER" -M
    run "$where: mdeliver -M --no-fsync" "$dir" "$MDELIVER" -M --no-fsync
    run "$where: mblaze mdeliver -M" "$dir" "$MBLAZE" -M
done
