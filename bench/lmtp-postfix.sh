#!/usr/bin/env bash
# System calls per delivered message of `mdeliver lmtp` and of Dovecot's LMTP (Debian's
# dovecot-lmtpd, Maildir, mail_fsync=optimized) when the client is a real Postfix, which
# pipelines MAIL/RCPT/DATA (both servers announce PIPELINING) and caches LMTP connections, so a
# server sees long sessions of back-to-back transactions rather than one connection per message.
# bench/lmtp.sh drives the servers with `smtp-source -L` directly (no pipelining, a new session
# per message), which overstates a site's figure; this is the site's figure.
#
# A private Postfix (own config directory, queue, data directory and maillog in a temporary
# directory; SMTP on a free 127.0.0.1 port only; master.cf from /etc/postfix/master.cf with
# chroot off and the other inet services dropped) takes `smtp-source -s SESSIONS -m N -l 2000`
# over SMTP and hands every message to the server under test through
# `virtual_transport = lmtp:unix:SOCKET` (virtual_mailbox_maps = static:ok). Postfix's LMTP
# client settings, printed at the start of the run:
#   lmtp_destination_concurrency_limit = lmtp_initial_destination_concurrency = $CONCURRENCY
#     (default 8: at most 8 LMTP sessions at once, from the first message on;
#     default_process_limit = 100 is above it, so the limit is the concurrency)
#   lmtp_connection_cache_on_demand = yes, and lmtp_connection_cache_destinations = the socket's
#     path (Postfix matches a unix destination by its bare path), so connections are cached
#     always, not only when qmgr sees a backlog; lmtp_connection_reuse_time_limit = 300s,
#     lmtp_connection_reuse_count_limit = 0 (no count limit), lmtp_connection_cache_time_limit =
#     2s (idle time in the cache). CACHE=demand leaves out the permanent destination (Postfix's
#     default behaviour: cache only under backlog).
# The maillog's conn_use=K field (a delivery over a connection used for the K-th time) gives
# the share of deliveries over a reused connection, printed per server. On a cached connection
# Postfix sends each transaction as one pipelined MAIL+RCPT+DATA, the body, then RSET.
#
# The maildirs are on a fresh ext4 in an image file under $BENCH_DIR (default /var/tmp)
# mounted through a loop device, so /proc/diskstats counts only their device flushes; Postfix's
# queue is elsewhere (on $BENCH_DIR's own filesystem) and not counted. MAILBOXES (default 4)
# mailboxes u0 ... u{MAILBOXES-1} are made ahead, owned by the user mdbench (created if
# missing), and left to settle for 3 s (mdeliver keeps a maildir open only once its root has
# not changed for 2 s); the load is MAILBOXES smtp-source processes at once, one per mailbox,
# SESSIONS/MAILBOXES sessions each (SESSIONS default 8).
#
# mdeliver: `mdeliver lmtp --listen unix:SOCKET --socket-mode 0666 -c --maildir
# 'DIR/{domain}/{local}'` as root (it writes as each maildir's owner), under strace -f -c.
# Dovecot: `dovecot -F` with all its processes (master, config, log, auth, anvil, lmtp) under
# strace -f -c. Each count includes the server's start and stop (a fixed cost, which a run
# with fewer messages shows). Every message must arrive exactly once (files in new/ counted,
# nothing left in tmp/), Postfix's queue must drain and nothing may be deferred.
#
# Prints: server | messages | system calls per message | fsync-family (fsync + fdatasync +
# syncfs) per message | device flushes per message, then each server's top system calls per
# message (msg/s is under strace and only a hint). Not part of the test suite: a measurement on
# whatever machine runs it; about a minute for 2,000 messages and both servers on 2 CPUs.
#
# Usage (root): bash bench/lmtp-postfix.sh [MESSAGES]     (default 2000)
# SESSIONS=8, MAILBOXES=4 and CONCURRENCY=8 as above; CACHE=demand as above.
# MDELIVER=/path/to/mdeliver uses that binary instead of `cargo build --release -p mdeliver`.
# SERVERS='mdeliver dovecot' (the default) picks the servers; TOP=15 the breakdown's length;
# MD_OWNER=root makes mdeliver's maildirs root's (the server then writes as root, without switching
# its file-system credentials per delivery; Dovecot's stay mdbench's, its userdb's uid).
# VERBOSE=1 runs mdeliver with -v (a log line per delivery: more system calls); TIMEOUT=600
# bounds the load and the queue's drain in seconds; KEEP=1 keeps the temporary directory.
# Installs postfix (postfix, smtp-source), dovecot-lmtpd and strace with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-2000}
sessions=${SESSIONS:-8}
boxes=${MAILBOXES:-4}
conc=${CONCURRENCY:-8}
top_n=${TOP:-15}
limit=${TIMEOUT:-600}
servers=${SERVERS:-mdeliver dovecot}
domain=bench.test
if [[ $EUID -ne 0 ]]; then echo "run as root (Postfix, Dovecot, mount, strace)" >&2; exit 64; fi
if ((n % boxes)); then echo "MESSAGES ($n) must be a multiple of MAILBOXES ($boxes)" >&2; exit 64; fi
if ((sessions % boxes)); then echo "SESSIONS ($sessions) must be a multiple of MAILBOXES ($boxes)" >&2; exit 64; fi
source bench/lmtp-common.sh
lmtp_bench_tools
lmtp_bench_binary

top=$(mktemp -d "${BENCH_DIR:-/var/tmp}/mdeliver-lmtp-postfix.XXXXXX")
chmod 755 "$top" # Postfix (as postfix) and Dovecot (as mdbench) walk through it
conf="$top/conf"
mkdir -p "$conf" "$top/queue" "$top/data" "$top/ext4"
chown postfix "$top/data"
ext4="$top/ext4"
truncate -s 2G "$top/ext4.img"
mkfs.ext4 -q -F "$top/ext4.img"
mount -o loop "$top/ext4.img" "$ext4"
chmod 755 "$ext4"
dev=$(basename "$(findmnt -no SOURCE --target "$ext4")")

server_pid= postfix_up=
cleanup() {
    set +e
    [[ -n "$postfix_up" ]] && timeout 30 postfix -c "$conf" stop >/dev/null 2>&1
    [[ -f "$top/dovecot.conf" ]] && timeout 10 doveadm -c "$top/dovecot.conf" stop 2>/dev/null
    if [[ -n "$server_pid" ]]; then
        pkill -TERM -P "$server_pid" 2>/dev/null; kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null
    fi
    sleep 0.5
    umount "$ext4" 2>/dev/null || { sleep 2; umount -l "$ext4" 2>/dev/null; }
    [[ -n "${KEEP:-}" ]] && { echo "kept $top" >&2; return; }
    rm -rf "$top"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# master.cf: Debian's, chroot off, SMTP on our port only, no other inet service.
awk -v port="$port" '
    /^#/ || /^[ \t]/ || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
    $2 == "inet" { next }
    { $5 = "n"; print }
' /etc/postfix/master.cf > "$conf/master.cf"

postfix_conf() { # $1: the LMTP socket of the server under test
    local cache_dest="$1"
    [[ ${CACHE:-always} == demand ]] && cache_dest=
    cat > "$conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $top/queue
data_directory = $top/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$domain
mydomain = $domain
myorigin = $domain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /var, /tmp, $top
maillog_file = $top/maillog
alias_maps =
alias_database =
biff = no
default_transport = discard
relay_transport = discard
virtual_mailbox_domains = $domain
virtual_mailbox_maps = static:ok
virtual_transport = lmtp:unix:$1
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
in_flow_delay = 0
default_process_limit = 100
lmtp_destination_concurrency_limit = $conc
lmtp_initial_destination_concurrency = $conc
lmtp_connection_cache_on_demand = yes
lmtp_connection_cache_destinations = $cache_dest
lmtp_connection_reuse_time_limit = 300s
lmtp_connection_reuse_count_limit = 0
lmtp_connection_cache_time_limit = 2s
CONF
}

start_postfix() { # $1: the LMTP socket
    postfix_conf "$1"
    : > "$top/maillog" && chmod 644 "$top/maillog"
    timeout 60 postfix -c "$conf" check
    timeout 60 postfix -c "$conf" start >/dev/null 2>&1 || { echo "postfix did not start" >&2; exit 1; }
    postfix_up=1
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "postfix did not open 127.0.0.1:$port within 20 s" >&2; exit 1
}
stop_postfix() {
    timeout 60 postfix -c "$conf" stop >/dev/null 2>&1 || true
    postfix_up=
    sleep 1 # its processes leave as the master tells them
}

# Wait (bounded) for a background process of ours to exit.
wait_exit() { # $1: pid; $2: seconds
    for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.1; done
    echo "process $1 did not exit within $2 s" >&2; return 1
}

mailboxes() { # $1: the directory of the domain's maildirs; $2: their owner
    local i
    for i in $(seq 0 $((boxes - 1))); do mkdir -p "$1/u$i"/{tmp,new,cur}; done
    chown -R "$2:" "$(dirname "$1")"
    sync
    sleep 3
}

dovecot_conf() { # $1: the mail directory
    lmtp_bench_dovecot_conf "$top/dovecot.conf" "$top" "$1/%d/%n" "$1/%d/%n" "$top/dovecot-lmtp"
}

start_mdeliver() { # $1: the mail directory
    local v=()
    [[ -n "${VERBOSE:-}" ]] && v=(-v)
    rm -f "$top/md.sock"
    strace -f -c -o "$top/strace.mdeliver" "$MDELIVER" lmtp "${v[@]}" --listen "unix:$top/md.sock" \
        --socket-mode 0666 -c --maildir "$1/{domain}/{local}" 2> "$top/mdeliver.log" &
    server_pid=$!
    wait_sock "$top/md.sock"
    sock="$top/md.sock"
}
stop_mdeliver() { # SIGTERM to the server (strace's child); strace then writes its summary
    kill -TERM "$(pgrep -P "$server_pid" || echo "$server_pid")"
    wait_exit "$server_pid" 30; server_pid=
}
start_dovecot() { # $1: the mail directory
    dovecot_conf "$1"
    rm -rf "$top/dc-run" "$top/dc-state" "$top/dovecot-lmtp"
    strace -f -c -o "$top/strace.dovecot" dovecot -F -c "$top/dovecot.conf" &
    server_pid=$!
    wait_sock "$top/dovecot-lmtp"
    sock="$top/dovecot-lmtp"
}
stop_dovecot() {
    timeout 10 doveadm -c "$top/dovecot.conf" stop 2>/dev/null || kill -TERM "$(pgrep -P "$server_pid" || echo "$server_pid")"
    wait_exit "$server_pid" 30; server_pid=
}

queue_empty() { timeout 30 postqueue -c "$conf" -p 2>&1 | grep -q 'Mail queue is empty'; }

# The load: MAILBOXES smtp-source processes at once, SESSIONS in all, N messages in all.
load() {
    local pids=() i
    for i in $(seq 0 $((boxes - 1))); do
        timeout "$limit" smtp-source -s $((sessions / boxes)) -m $((n / boxes)) -l 2000 \
            -f sender@client.test -t "u$i@$domain" "127.0.0.1:$port" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || { echo "smtp-source failed" >&2; exit 1; }; done
    local t=$SECONDS
    until queue_empty; do
        if ((SECONDS - t > limit)); then
            echo "Postfix's queue did not drain within $limit s:" >&2
            timeout 30 postqueue -c "$conf" -p | tail -20 >&2; exit 1
        fi
        sleep 0.2
    done
}

# Every message exactly once: n/boxes files in each new/, none in tmp/.
check() { # $1: the domain's maildir directory; $2: the server
    local i c bad=0
    for i in $(seq 0 $((boxes - 1))); do
        c=$(find "$1/u$i/new" -type f | wc -l)
        [[ $c -eq $((n / boxes)) ]] || { echo "$2: u$i has $c messages in new/, expected $((n / boxes))" >&2; bad=1; }
        c=$(find "$1/u$i/tmp" -type f | wc -l)
        [[ $c -eq 0 ]] || { echo "$2: u$i has $c files in tmp/" >&2; bad=1; }
    done
    c=$(grep -c 'status=deferred' "$top/maillog" || true)
    [[ $c -eq 0 ]] || { echo "$2: Postfix deferred $c deliveries:" >&2; grep 'status=deferred' "$top/maillog" | head -5 >&2; bad=1; }
    return $bad
}

printf '%s messages of 2,000 bytes, %s SMTP sessions into Postfix %s, %s mailboxes; Postfix LMTP concurrency %s (lmtp_destination_concurrency_limit, initial the same; default_process_limit 100), connection cache: %s; %s CPUs; load %s\n\n' \
    "$n" "$sessions" "$(postconf -h mail_version)" "$boxes" "$conc" \
    "$([[ ${CACHE:-always} == demand ]] && echo 'on demand (Postfix default)' || echo 'always (lmtp_connection_cache_destinations = socket path)')" \
    "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"

rows=() details=()
for server in $servers; do
    mail="$ext4/$server"
    owner=mdbench
    [[ $server == mdeliver ]] && owner=${MD_OWNER:-mdbench}
    mailboxes "$mail/$domain" "$owner"
    "start_$server" "$mail"
    start_postfix "$sock"
    f0=$(flushes)
    t0=$(date +%s.%N)
    load
    t1=$(date +%s.%N)
    f1=$(flushes)
    stop_postfix
    "stop_$server"
    check "$mail/$domain" "$server" || { tail -20 "$top/$server.log" >&2 2>/dev/null || true; exit 1; }
    s="$top/strace.$server"
    calls() { awk -v c="$1" '$NF == c { print $4 }' "$s"; }
    total=$(calls total)
    fs=$(awk '$NF ~ /^(fsync|fdatasync|syncfs)$/ { s += $4 } END { print s + 0 }' "$s")
    sent=$(grep -c 'status=sent' "$top/maillog" || true)
    reused=$(grep 'status=sent' "$top/maillog" | grep -c 'conn_use=' || true)
    conns=$(grep 'status=sent' "$top/maillog" | grep -vc 'conn_use=' || true)
    rows+=("$(printf '| %s | %d | %.1f | %.3f | %.3f | %.0f |' "$server" "$n" \
        "$(echo "$total / $n" | bc -l)" "$(echo "$fs / $n" | bc -l)" \
        "$(echo "($f1 - $f0) / $n" | bc -l)" "$(echo "$n / ($t1 - $t0)" | bc -l)")")
    d=$(printf '\n%s (maildirs owned by %s): %s system calls for %s messages; Postfix: %s deliveries, %s over a reused connection (conn_use=), %s new connections\n' \
        "$server" "$owner" "$total" "$n" "$sent" "$reused" "$conns")
    d+=$'\n'"| system call | per message | calls | errors |"$'\n'"|---|---|---|---|"
    d+=$'\n'$(awk -v n="$n" -v k="$top_n" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" {
            err = (NF == 6) ? $5 : 0
            printf "%s %d %d\n", $NF, $4, err
        }' "$s" | sort -k2,2nr | head -n "$top_n" |
        awk -v n="$n" '{ printf "| %s | %.2f | %d | %d |\n", $1, $2 / n, $2, $3 }')
    if [[ $server == mdeliver ]]; then
        w=$(grep -ciE 'warn|error|fail' "$top/mdeliver.log" || true)
        d+=$'\n'"mdeliver's log: $(wc -l < "$top/mdeliver.log") lines, $w with warn/error/fail"
        ((w)) && d+=$'\n'"$(grep -iE 'warn|error|fail' "$top/mdeliver.log" | head -5)"
    else
        # (less the master's own "Killed with signal 15" from doveadm stop)
        w=$(grep -iE 'warn|error|fatal|panic' "$top/dovecot.log" 2>/dev/null | grep -vc 'Killed with signal 15' || true)
        d+=$'\n'"Dovecot's log: ${w:-0} lines with warn/error/fatal/panic"
        ((w)) && d+=$'\n'"$(grep -iE 'warn|error|fatal|panic' "$top/dovecot.log" | grep -v 'Killed with signal 15' | head -5)"
    fi
    details+=("$d")
    cp "$top/maillog" "$top/maillog.$server"
done

printf '| server | messages | system calls per message | fsync-family per message (fsync+fdatasync+syncfs) | device flushes per message (%s) | msg/s (under strace) |\n' "$dev"
printf '|---|---|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
printf '%s\n' "${details[@]}"
