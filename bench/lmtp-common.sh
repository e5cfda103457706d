# What bench/lmtp.sh and bench/lmtp-postfix.sh share; sourced by both (not run by itself).

# Installs Dovecot's LMTP server, Postfix (smtp-source) and strace where missing.
lmtp_bench_tools() {
    local need=()
    [[ -x /usr/lib/dovecot/lmtp ]] || need+=(dovecot-lmtpd)
    command -v smtp-source >/dev/null && command -v postfix >/dev/null || need+=(postfix)
    command -v strace >/dev/null || need+=(strace)
    if ((${#need[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

# MDELIVER, unless given: the release build, built now. And the user the mailboxes belong to.
lmtp_bench_binary() {
    if [[ -z "${MDELIVER:-}" ]]; then
        cargo build --release --quiet -p mdeliver
        MDELIVER="$PWD/${CARGO_TARGET_DIR:-target}/release/mdeliver"
    fi
    id mdbench >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin mdbench
}

# Writes a Dovecot configuration for LMTP only into Maildirs, as mdbench, flushing as
# `mail_fsync = optimized`. $1: the file; $2: its run, state and log directory; $3: the mail
# location's directory and $4: a user's home (Dovecot variables such as %n, %d); $5: the
# listening socket.
lmtp_bench_dovecot_conf() {
    cat > "$1" <<CONF
base_dir = $2/dc-run
state_dir = $2/dc-state
log_path = $2/dovecot.log
protocols = lmtp
ssl = no
mail_location = maildir:$3
mail_fsync = optimized
first_valid_uid = 1
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=mdbench gid=mdbench home=$4
}
service lmtp {
  unix_listener $5 {
    mode = 0666
  }
  process_limit = 64
}
CONF
}

# Waits (up to 10 s) for the socket $1.
wait_sock() { for _ in $(seq 200); do [[ -S $1 ]] && return 0; sleep 0.05; done; echo "no socket $1" >&2; return 1; }

# Flush requests completed by the block device $dev (/proc/diskstats' 16th statistic after
# the name).
flushes() { awk -v d="$dev" '$3 == d { print $19 }' /proc/diskstats; }
