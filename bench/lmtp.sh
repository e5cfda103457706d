#!/usr/bin/env bash
# `mdeliver lmtp` against Dovecot's LMTP (Debian's dovecot-lmtpd, Maildir, mail_fsync=optimized)
# and against one mdeliver process per message, all durable, driven by Postfix's
# `smtp-source -L` (2,000-byte bodies) at 1, 8 and 32 sessions, into one mailbox and into 1,000
# (`smtp-source -N`: one per message), on ext4 and on a tmpfs. The ext4 is a fresh filesystem in
# an image file under $BENCH_DIR (default /var/tmp), mounted through a loop device, so that a
# whole-filesystem flush (`syncfs`) flushes only the bench's own writes and /proc/diskstats
# counts only them; BENCH_EXT4=DIR uses the filesystem holding DIR instead. Prints msg/s and
# ratios with the group commit's batch sizes and the server's p50/p99 time from the end of DATA
# to the last reply, then the flushes and system calls per message (strace -f -c on the server,
# 8 sessions, ext4) with the device flushes /proc/diskstats counted, then the server's peak RSS
# with 32 sessions of 10 MiB messages. Not part of the test suite: a measurement on whatever
# machine runs it.
#
# Usage (root): bash bench/lmtp.sh [MESSAGES]       (default 1000 messages per run)
# MDELIVER=/path/to/mdeliver uses that binary instead of building the release one.
# MDELIVER_LMTP_GROUP_COMMIT=per-file (exported) makes the server flush each file and directory
# instead of one syncfs per batch, to compare the two.
# ROWS='ext4:1:1 ext4:1:32' runs only those rows (FS:MAILBOXES:SESSIONS); LMTP_ONLY=1 runs only
# the server's own column (no Dovecot, one-shot or per-file runs: "-") and skips the strace and
# RSS sections. BENCH_ROUNDS=R runs every row's servers R times, one after the other, and keeps
# each column's best run (a shared disk's flush time swings between runs: compare rounds).
# Installs dovecot-lmtpd, postfix (for smtp-source) and strace with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000}
if [[ $EUID -ne 0 ]]; then echo "run as root (Dovecot, tmpfs, strace)" >&2; exit 64; fi
source bench/lmtp-common.sh
lmtp_bench_tools
lmtp_bench_binary

top=$(mktemp -d "${BENCH_DIR:-/var/tmp}/mdeliver-lmtp-bench.XXXXXX")
chmod 755 "$top" # Dovecot delivers as mdbench
tmpfs="$top/tmpfs"
mkdir -p "$tmpfs" && mount -t tmpfs -o size=2g mdeliver-bench "$tmpfs"
ext4="$top/ext4"
mkdir -p "$ext4"
if [[ -n "${BENCH_EXT4:-}" ]]; then
    ext4=$(mktemp -d "$BENCH_EXT4/mdeliver-lmtp-ext4.XXXXXX")
else
    truncate -s 4G "$top/ext4.img"
    mkfs.ext4 -q -F "$top/ext4.img"
    mount -o loop "$top/ext4.img" "$ext4"
fi
chmod 755 "$ext4"
server_pid=
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [[ -f "$top/dovecot.conf" ]] && doveadm -c "$top/dovecot.conf" stop 2>/dev/null || true
    sleep 0.5
    umount "$tmpfs" 2>/dev/null || true
    if [[ -n "${BENCH_EXT4:-}" ]]; then rm -rf "$ext4"; else umount "$ext4" 2>/dev/null || true; fi
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
    lmtp_bench_dovecot_conf "$top/dovecot.conf" "$1" "$1/dc-mail/%n" "$1/dc-mail/%n" "$1/dovecot-lmtp"
}

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
    kill -TERM "$(pgrep -P "$server_pid" || echo "$server_pid")"
    wait "$server_pid" 2>/dev/null || true; server_pid=
}

# msg/s of smtp-source -L with $2 sessions into socket $1 (n messages, one recipient each; with
# $3 = 1000, a numbered recipient per message: as many mailboxes as messages).
drive() {
    local start end spread=()
    [[ ${3:-1} -gt 1 ]] && spread=(-N)
    start=$(date +%s.%N)
    smtp-source -L "${spread[@]}" -s "$2" -m "$n" -l 2000 -f s@bench.test -t u@bench.test "unix:$1"
    end=$(date +%s.%N)
    echo "$n / ($end - $start)" | bc -l
}
best() { echo "if ($1 > $2) $1 else $2" | bc -l; }
count() { find "$1" -path '*/new/*' -type f | wc -l; }

# One mdeliver process per message, $2 at a time, into maildir $1 (with $3 = 1000, into the
# existing maildir $1/N for message N).
oneshot() {
    local start end dest=''
    rm -rf "$1" && mkdir -p "$1"
    if [[ ${3:-1} -gt 1 ]]; then
        dest='/{}'
        eval "mkdir -p \"\$1\"/{0..$n}/{tmp,new,cur}"
        sync
    else
        "$MDELIVER" -c "$1" < "$msg" && rm -f "$1"/new/*
    fi
    start=$(date +%s.%N)
    seq "$n" | xargs -P "$2" -I{} "$MDELIVER" --return-path s@bench.test \
        --delivered-to u@bench.test -i "$msg" "$1$dest"
    end=$(date +%s.%N)
    [[ $(count "$1") -eq $n ]] || { echo "one-shot: expected $n messages" >&2; exit 1; }
    echo "$n / ($end - $start)" | bc -l
}

# The mailboxes the run sends to (u; with $3 = 1000, smtp-source -N's 0u ... Nu), made before
# the run: a site's mailboxes exist already, and making them is not what is measured. Then 2 s
# pass: the server keeps a maildir open between deliveries only once its root has not changed
# for 2 s (the README's LMTP section). $1: the directory; $2: the owner.
mailboxes() {
    if [[ ${3:-1} -gt 1 ]]; then
        eval "mkdir -p \"\$1\"/{0..$n}u/{tmp,new,cur}"
    else
        mkdir -p "$1"/u/{tmp,new,cur}
    fi
    chown -R "$2" "$1"
    sync
    sleep 2.1
}

printf '%s messages of 2,000 bytes per run, everything durable; %s CPUs; load %s\n' "$n" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| fs | mailboxes | sessions | Dovecot LMTP msg/s | mdeliver one-shot msg/s | mdeliver lmtp msg/s | lmtp / Dovecot | lmtp / one-shot | lmtp per-file flushes msg/s | avg batch (flush requests) | lmtp p50 / p99 end of DATA to last reply (ms) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
rows=${ROWS:-$(for fs in ext4 tmpfs; do for b in 1 1000; do for s in 1 8 32; do echo "$fs:$b:$s"; done; done; done)}
for row in $rows; do
    IFS=: read -r fs boxes s <<< "$row"
    w="$ext4/work"; [[ $fs == tmpfs ]] && w="$tmpfs/work"
    mkdir -p "$w"
    d=0 o=0 p=0 m=0
    for _ in $(seq "${BENCH_ROUNDS:-1}"); do
        if [[ -z "${LMTP_ONLY:-}" ]]; then
            start_dovecot "$w"
            mailboxes "$w/dc-mail" mdbench "$boxes"
            d=$(best "$d" "$(drive "$w/dovecot-lmtp" "$s" "$boxes")")
            [[ $(count "$w/dc-mail") -eq $n ]] || { echo "dovecot: expected $n messages, got $(count "$w/dc-mail")" >&2; exit 1; }
            stop_dovecot
            o=$(best "$o" "$(oneshot "$w/oneshot" "$s" "$boxes")")
            # The same server flushing each file and directory (the way before syncfs).
            MDELIVER_LMTP_GROUP_COMMIT=per-file start_mdeliver "$w"
            mailboxes "$w/md-mail" root "$boxes"
            p=$(best "$p" "$(drive "$w/md.sock" "$s" "$boxes")")
            stop_mdeliver
            [[ $(count "$w/md-mail") -eq $n ]] || { echo "mdeliver lmtp per-file: expected $n messages" >&2; exit 1; }
            rm -rf "$w/oneshot" "$w/md-mail" "$w/dc-mail"
        fi
        start_mdeliver "$w"
        mailboxes "$w/md-mail" root "$boxes"
        r=$(drive "$w/md.sock" "$s" "$boxes")
        stop_mdeliver
        [[ $(count "$w/md-mail") -eq $n ]] || { echo "mdeliver lmtp: expected $n messages" >&2; exit 1; }
        rm -rf "$w/md-mail"
        # The batches and latencies of the best run.
        if [[ $(echo "$r > $m" | bc -l) == 1 ]]; then
            m=$r
            batch=$(grep -o '[0-9.]* requests per batch' "$w/md.log" | cut -d' ' -f1)
            lat=$(grep -o 'p50 [0-9.]* ms, p99 [0-9.]* ms' "$w/md.log" | awk '{ print $2 " / " $5 }')
            summary=$(grep 'group commit:' "$w/md.log" || true)
        fi
    done
    if [[ -z "${LMTP_ONLY:-}" ]]; then
        others=$(printf '%.0f | %.0f | %.0f | %.2fx | %.2fx | %.0f' "$d" "$o" "$m" \
            "$(echo "$m / $d" | bc -l)" "$(echo "$m / $o" | bc -l)" "$p")
    else
        others=$(printf -- '- | - | %.0f | - | - | -' "$m")
    fi
    printf '| %s | %d | %d | %s | %s | %s |\n' "$fs" "$boxes" "$s" "$others" "$batch" "$lat"
    echo "$summary" >> "$top/batches.log"
done
printf '\nOn ext4 every batch is names alone (each file is written back before it is named), which\n'
printf 'both lmtp columns flush per directory: there the two differ only by run-to-run noise.\n'
printf '\nGroup commit per run (same order as the rows):\n'
sed 's/^/    /' "$top/batches.log"
[[ -n "${LMTP_ONLY:-}" ]] && exit 0

# Flushes and system calls per message: strace on the whole server (all processes), 8 sessions,
# ext4; device flushes from /proc/diskstats (flush requests completed: the 16th statistic after
# the device name, awk's $19).
dev=$(basename "$(findmnt -no SOURCE --target "$ext4")")
writes() { awk -v d="$dev" '$3 == d { print $8 }' /proc/diskstats; }
printf '\nPer message, 8 sessions, ext4 (%s), under strace -f -c (the server only):\n' "$dev"
printf '| server | fsync | fdatasync | syncfs | system calls (all) | device flushes | device writes | device flushes per group-commit batch |\n|---|---|---|---|---|---|---|---|\n'
w="$ext4/work"
for server in dovecot mdeliver; do
    "start_$server" "$w" strace -f -c -o "$top/strace.$server"
    if [[ $server == dovecot ]]; then mailboxes "$w/dc-mail" mdbench 1; else mailboxes "$w/md-mail" root 1; fi
    f0=$(flushes); w0=$(writes)
    drive "$([[ $server == dovecot ]] && echo "$w/dovecot-lmtp" || echo "$w/md.sock")" 8 >/dev/null
    f1=$(flushes); w1=$(writes)
    "stop_$server"
    calls() { awk -v c="$1" '$NF == c { print $4 }' "$top/strace.$server"; }
    total=$(awk '$NF == "total" { print $4 }' "$top/strace.$server")
    per_batch=-
    if [[ $server == mdeliver ]]; then
        b=$(grep -o 'group commit: [0-9]* batches' "$w/md.log" | awk '{ print $3 }')
        per_batch=$(printf '%.2f' "$(echo "($f1 - $f0) / $b" | bc -l)")
    fi
    printf '| %s | %.2f | %.2f | %.3f | %.1f | %.2f | %.2f | %s |\n' "$server" \
        "$(echo "0$(calls fsync) / $n" | bc -l)" \
        "$(echo "0$(calls fdatasync) / $n" | bc -l)" "$(echo "0$(calls syncfs) / $n" | bc -l)" \
        "$(echo "0$total / $n" | bc -l)" \
        "$(echo "($f1 - $f0) / $n" | bc -l)" "$(echo "($w1 - $w0) / $n" | bc -l)" "$per_batch"
done

# Peak RSS of the server with 32 sessions of 10 MiB messages (64 messages), ext4.
start_mdeliver "$w"
smtp-source -L -s 32 -m 64 -l 10485760 -f s@bench.test -t u@bench.test "unix:$w/md.sock"
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
stop_mdeliver
printf '\nmdeliver lmtp peak RSS, 32 sessions x 10 MiB messages: %s KiB\n' "$rss"
