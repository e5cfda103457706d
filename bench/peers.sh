#!/usr/bin/env bash
# mdeliver against the C delivery agents of Debian, side by side in one run: safecat, mblaze's
# mdeliver, maildrop's deliverquota and procmail, one process per message, with /bin/true
# spawned the same way as the floor. Workloads: sequential and P at once on a tmpfs (mounted
# here) and on a disk directory, and `-M` (mbox import) against mblaze's `mdeliver -M` on both.
# Every delivered file is checked byte for byte and leftovers in tmp/ are counted. Also prints
# system calls per delivery (strace -f) and peak RSS for each tool, and the CPU time (user +
# system) of each -M run, which a shared machine's load moves far less than msg/s. Not part of
# the test suite: a measurement. Root (it mounts a tmpfs and installs Debian packages).
#
# Usage: bash bench/peers.sh [DISK_DIR]
#   DISK_DIR  a directory on the disk to measure (default: a fresh ext4, made as mkfs.ext4
#             makes it, in an image under target/bench-disk mounted through a loop device:
#             the machine's own filesystem may be made otherwise, e.g. without a journal)
# Environment (defaults in brackets):
#   BENCH_N [2000]  messages per one-shot workload, sizes BENCH_MIN_KIB..BENCH_MAX_KIB [1..200]
#   BENCH_P [4]     deliveries at once in the parallel workloads
#   BENCH_MBOX_N [20000]  messages in the -M workloads (1..BENCH_MBOX_MAX_KIB [8] KiB); 0: skip
#   BENCH_ROUNDS [1]      repeat every workload and keep each tool's best
#   BENCH_ONLY            ";"-separated parts of workload names, e.g. "tmpfs, sequential;-M"
#   MDELIVER              the binary to measure (default: the static musl release build)
#   BENCH_BASELINE        another mdeliver binary measured alongside (e.g. an older build)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "peers.sh: run as root (mounts a tmpfs, installs packages)" >&2; exit 1; }
disk=${1:-}

need=()
for pair in safecat:/usr/bin/safecat mblaze:/usr/bin/mdeliver maildrop:/usr/sbin/deliverquota \
    procmail:/usr/bin/procmail strace:/usr/bin/strace time:/usr/bin/time; do
    [[ -x ${pair#*:} ]] || need+=("${pair%%:*}")
done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ -z "${MDELIVER:-}" ]]; then
    # The binary as installed: statically linked against musl (README "Installing").
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
    cargo build --release --quiet -p mdeliver --target x86_64-unknown-linux-musl
    MDELIVER="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/mdeliver"
fi

loop=
if [[ -z $disk ]]; then
    images=$(pwd)/target/bench-disk
    mkdir -p "$images"
    truncate -s 8G "$images/ext4.img"
    mkfs.ext4 -q -F "$images/ext4.img"
    disk=$(mktemp -d /tmp/mdeliver-peers-ext4.XXXXXX)
    mount -o loop "$images/ext4.img" "$disk"
    loop=$images/ext4.img
fi
mkdir -p "$disk"
tmpfs=$(mktemp -d /tmp/mdeliver-peers.XXXXXX)
mount -t tmpfs -o size=8g,mode=0700 mdeliver-bench "$tmpfs"
work=$(mktemp -d "$disk/peers.XXXXXX")
cleanup() {
    umount "$tmpfs"; rmdir "$tmpfs"; rm -rf "$work"
    if [[ -n $loop ]]; then umount "$disk"; rmdir "$disk"; rm -f "$loop"; fi
}
trap cleanup EXIT
python3 bench/peers.py "$tmpfs" "$work" "$MDELIVER"
