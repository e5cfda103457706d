#!/usr/bin/env bash
# `mdeliver lmtp` against Dovecot's LMTP (Debian's dovecot-lmtpd, Maildir, mail_fsync=optimized)
# and against one mdeliver process per message, all durable, driven by Postfix's
# `smtp-source -L` (2,000-byte bodies) at 1, 8 and 32 sessions into one mailbox, on ext4 (the
# filesystem holding $BENCH_DIR, default /var/tmp) and on a tmpfs. Prints msg/s and ratios, then
# the flushes and system calls per message (strace -f -c on the server, 8 sessions, ext4) with
# the device flushes /proc/diskstats counted, then the server's peak RSS with 32 sessions of
# 10 MiB messages. Not part of the test suite: a measurement on whatever machine runs it.
#
# Usage (root): bash bench/lmtp.sh [MESSAGES]       (default 1000 messages per run)
# MDELIVER=/path/to/mdeliver uses that binary instead of building the release one.
# Installs dovecot-lmtpd, postfix (for smtp-source) and strace with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000}
if [[ $EUID -ne 0 ]]; then echo "run as root (Dovecot, tmpfs, strace)" >&2; exit 64; fi
need=()
[[ -x /usr/lib/dovecot/lmtp ]] || need+=(dovecot-lmtpd)
command -v smtp-source >/dev/null || need+=(postfix)
command -v strace >/dev/null || need+=(strace)
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ -z "${MDELIVER:-}" ]]; then
    cargo build --release --quiet -p mdeliver
    MDELIVER="$PWD/${CARGO_TARGET_DIR:-target}/release/mdeliver"
fi
id mdbench >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin mdbench

top=$(mktemp -d "${BENCH_DIR:-/var/tmp}/mdeliver-lmtp-bench.XXXXXX")
chmod 755 "$top" # Dovecot delivers as mdbench
tmpfs="$top/tmpfs"
mkdir -p "$tmpfs" && mount -t tmpfs -o size=2g mdeliver-bench "$tmpfs"
server_pid=
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [[ -f "$top/dovecot.conf" ]] && doveadm -c "$top/dovecot.conf" stop 2>/dev/null || true
    sleep 0.5
    umount "$tmpfs" 2>/dev/null || true
    rm -rf "$top"
}
trap cleanup EXIT

# A message like smtp-source's: a short header and 2,000 bytes of body.
msg="$top/msg.eml"
{
    printf 'From: <s@bench.test>\nTo: <u@bench.test>\nSubject: bench\nMessage-Id: <bench@x>\n\n'
    for i in $(seq 25); do printf '%079d\n' "$i"; done
} > "$msg"

dovecot_conf() { # $1: work directory
    cat > "$top/dovecot.conf" <<CONF
base_dir = $1/dc-run
state_dir = $1/dc-state
log_path = $1/dovecot.log
protocols = lmtp
ssl = no
mail_location = maildir:$1/dc-mail/%n
mail_fsync = optimized
first_valid_uid = 1
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=mdbench gid=mdbench home=$1/dc-mail/%n
}
service lmtp {
  unix_listener $1/dovecot-lmtp {
    mode = 0666
  }
  process_limit = 64
}
CONF
}

wait_sock() { for _ in $(seq 200); do [[ -S $1 ]] && return 0; sleep 0.05; done; echo "no socket $1" >&2; return 1; }

start_dovecot() { # $1: work directory; $2...: a command prefix (strace)
    rm -rf "$1/dc-run" "$1/dc-state" "$1/dc-mail" "$1/dovecot-lmtp"
    mkdir -p "$1/dc-mail" && chown mdbench "$1/dc-mail"
    dovecot_conf "$1"
    "${@:2}" dovecot -F -c "$top/dovecot.conf" & server_pid=$!
    wait_sock "$1/dovecot-lmtp"
}
stop_dovecot() {
    doveadm -c "$top/dovecot.conf" stop 2>/dev/null || kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true; server_pid=
}
start_mdeliver() { # $1: work directory; $2...: a command prefix (strace)
    rm -rf "$1/md-mail" "$1/md.sock" && mkdir -p "$1/md-mail"
    "${@:2}" "$MDELIVER" lmtp -v --listen "unix:$1/md.sock" --socket-mode 0666 -c \
        --maildir "$1/md-mail/{local}" 2> "$1/md.log" & server_pid=$!
    wait_sock "$1/md.sock"
}
stop_mdeliver() { # (under strace, the server is strace's child)
    kill -TERM "$(pgrep -P "$server_pid" -x mdeliver || echo "$server_pid")"
    wait "$server_pid" 2>/dev/null || true; server_pid=
}

# msg/s of smtp-source -L with $2 sessions into socket $1 (n messages, one recipient).
drive() {
    local start end
    start=$(date +%s.%N)
    smtp-source -L -s "$2" -m "$n" -l 2000 -f s@bench.test -t u@bench.test "unix:$1"
    end=$(date +%s.%N)
    echo "$n / ($end - $start)" | bc -l
}
count() { find "$1" -path '*/new/*' -type f | wc -l; }

# One mdeliver process per message, $2 at a time, into maildir $1.
oneshot() {
    local start end
    rm -rf "$1" && "$MDELIVER" -c "$1" < "$msg" && rm -f "$1"/new/*
    start=$(date +%s.%N)
    seq "$n" | xargs -P "$2" -I{} "$MDELIVER" --return-path s@bench.test \
        --delivered-to u@bench.test -i "$msg" "$1"
    end=$(date +%s.%N)
    [[ $(count "$1") -eq $n ]] || { echo "one-shot: expected $n messages" >&2; exit 1; }
    echo "$n / ($end - $start)" | bc -l
}

printf '%s messages of 2,000 bytes per run, 1 mailbox, everything durable; %s\n' "$n" "$(nproc) CPUs"
printf '| fs | sessions | Dovecot LMTP msg/s | mdeliver one-shot msg/s | mdeliver lmtp msg/s | lmtp / Dovecot | lmtp / one-shot | avg batch (flush requests) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for fs in ext4 tmpfs; do
    w="$top/$fs-work"; [[ $fs == tmpfs ]] && w="$tmpfs/work"
    mkdir -p "$w"
    for s in 1 8 32; do
        start_dovecot "$w"
        d=$(drive "$w/dovecot-lmtp" "$s")
        [[ $(count "$w/dc-mail") -eq $n ]] || { echo "dovecot: expected $n messages, got $(count "$w/dc-mail")" >&2; exit 1; }
        stop_dovecot
        o=$(oneshot "$w/oneshot" "$s")
        start_mdeliver "$w"
        m=$(drive "$w/md.sock" "$s")
        stop_mdeliver
        [[ $(count "$w/md-mail") -eq $n ]] || { echo "mdeliver lmtp: expected $n messages" >&2; exit 1; }
        batch=$(grep -o '[0-9.]* requests per batch' "$w/md.log" | cut -d' ' -f1)
        printf '| %s | %d | %.0f | %.0f | %.0f | %.2fx | %.2fx | %s |\n' "$fs" "$s" "$d" "$o" "$m" \
            "$(echo "$m / $d" | bc -l)" "$(echo "$m / $o" | bc -l)" "$batch"
    done
done

# Flushes and system calls per message: strace on the whole server (all processes), 8 sessions,
# ext4; device flushes from /proc/diskstats (flush requests completed, field 18).
dev=$(basename "$(findmnt -no SOURCE --target "$top")")
flushes() { awk -v d="$dev" '$3 == d { print $18 }' /proc/diskstats; }
writes() { awk -v d="$dev" '$3 == d { print $8 }' /proc/diskstats; }
printf '\nPer message, 8 sessions, ext4 (%s), under strace -f -c (the server only):\n' "$dev"
printf '| server | fsync | fdatasync | system calls (all) | device flushes | device writes |\n|---|---|---|---|---|---|\n'
w="$top/ext4-work"
for server in dovecot mdeliver; do
    "start_$server" "$w" strace -f -c -o "$top/strace.$server"
    f0=$(flushes); w0=$(writes)
    drive "$([[ $server == dovecot ]] && echo "$w/dovecot-lmtp" || echo "$w/md.sock")" 8 >/dev/null
    f1=$(flushes); w1=$(writes)
    "stop_$server"
    calls() { awk -v c="$1" '$NF == c { print $4 }' "$top/strace.$server"; }
    total=$(awk '$NF == "total" { print $4 }' "$top/strace.$server")
    printf '| %s | %.2f | %.2f | %.1f | %.2f | %.2f |\n' "$server" \
        "$(echo "0$(calls fsync) / $n" | bc -l)" \
        "$(echo "0$(calls fdatasync) / $n" | bc -l)" "$(echo "0$total / $n" | bc -l)" \
        "$(echo "($f1 - $f0) / $n" | bc -l)" "$(echo "($w1 - $w0) / $n" | bc -l)"
done

# Peak RSS of the server with 32 sessions of 10 MiB messages (64 messages), ext4.
start_mdeliver "$w"
smtp-source -L -s 32 -m 64 -l 10485760 -f s@bench.test -t u@bench.test "unix:$w/md.sock"
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
stop_mdeliver
printf '\nmdeliver lmtp peak RSS, 32 sessions x 10 MiB messages: %s KiB\n' "$rss"
