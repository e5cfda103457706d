#!/usr/bin/env bash
# What a Sieve script costs, side by side in one run (release build, on tmpfs):
#   - `mdeliver sieve test` with a 50-rule script (header/address/size tests, fileinto, flags)
#     against the same command with a one-rule script: the cost of compiling and running 50
#     rules over a message's header, as a ratio;
#   - both against a plain delivery (`mdeliver --no-fsync` into a tmpfs maildir), the process
#     a delivery through a script would add them to;
#   - the real thing: `mdeliver --sieve fifty.sieve MAILDIR` (the script run, its plan recorded,
#     the keep stored through the exactly-once unit) against `mdeliver MAILDIR`, each message
#     distinct (a unit's retry of the same bytes would be a suppressed duplicate), with and
#     without fsync.
# The options are written `--sieve=FILE`, as an MTA's command line would, so the delivery takes
# the quick argument parser (`cli/src/quick_args.rs`); the separated `--sieve FILE` is parsed by
# clap, which costs some 3 ms of start-up.
# With CALLGRIND=1 (and valgrind installed), each delivery is also counted in instructions
# under callgrind (one message, without and with the script), which load does not change.
# Each is run in 5 interleaved rounds of N/5 (default N 2000); the fastest round counts (the
# least disturbed by other load). Prints microseconds per run and the ratios; the delivery rows
# also as CPU time (user + system), which other load disturbs less than the wall clock; and
# side by side per message (a plain delivery, then one through the script, each timed), the
# median of the per-message ratios.
# Not part of the test suite. Usage: bash bench/sieve.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
if [[ -z "${MDELIVER:-}" ]]; then
    cargo build --release --quiet -p mdeliver
    MDELIVER="${CARGO_TARGET_DIR:-target}/release/mdeliver"
fi
work=$(mktemp -d /dev/shm/mdeliver-sieve-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat > "$work/msg.eml" <<'MSG'
Return-Path: <alice@example.net>
From: Alice Example <alice@example.net>
To: Bob <bob@example.org>, team@lists.example.org
Cc: carol+notes@example.com
Subject: Quarterly report and the meeting on Thursday
List-Id: <team.lists.example.org>
Message-ID: <20261206.1234@example.net>
Date: Sun, 06 Dec 2026 12:00:00 +0000
X-Spam-Score: 3

Hello Bob,

the report is attached. See you on Thursday.
MSG
{
    echo 'require ["fileinto", "imap4flags", "relational", "comparator-i;ascii-numeric", "subaddress", "copy"];'
    for i in $(seq 1 50); do
        case $((i % 5)) in
            0) echo "if header :contains \"subject\" \"topic$i\" { fileinto \"f$i\"; stop; }" ;;
            1) echo "if address :domain \"from\" \"domain$i.example\" { fileinto :copy \"f$i\"; }" ;;
            2) echo "if header :matches \"list-id\" \"*list$i.*\" { addflag \"\\\\Seen\"; fileinto \"f$i\"; }" ;;
            3) echo "if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"$((i + 10))\" { fileinto \"spam$i\"; }" ;;
            4) echo "if anyof (address :detail \"cc\" \"tag$i\", size :over ${i}M) { fileinto \"f$i\"; }" ;;
        esac
    done
} > "$work/fifty.sieve"
echo 'if header :contains "subject" "nothing" { fileinto "x"; }' > "$work/one.sieve"
sed -i '1s/^/require "fileinto";\n/' "$work/one.sieve"
"$MDELIVER" sieve check "$work/fifty.sieve" >/dev/null
mkdir -p "$work/md/tmp" "$work/md/new" "$work/md/cur"
# Distinct messages for the delivery rows (one per run of a round).
k=$((n / 5))
mkdir -p "$work/msgs"
for i in $(seq 1 "$k"); do
    { echo "X-Sequence: $i"; cat "$work/msg.eml"; } > "$work/msgs/$i.eml"
done

round() { # command...: microseconds per run over n/5 runs
    local start end k=$((n / 5))
    start=$(date +%s%N)
    for _ in $(seq 1 "$k"); do "$@" >/dev/null; done
    end=$(date +%s%N)
    echo $(((end - start) / k / 1000))
}
min() { printf '%s\n' "$@" | sort -n | head -1; }
deliveries() { # label options...: microseconds per delivery of the k distinct messages,
    # wall clock and CPU time (user + system of the deliveries, which load disturbs less)
    local start end cpu md="$work/d-$1" TIMEFORMAT='%3U %3S'
    shift
    rm -rf "$md"
    mkdir -p "$md/tmp" "$md/new" "$md/cur"
    start=$(date +%s%N)
    cpu=$({ time for i in $(seq 1 "$k"); do
        "$MDELIVER" "$@" "$md" < "$work/msgs/$i.eml" 2>/dev/null
    done; } 2>&1)
    end=$(date +%s%N)
    echo "$(((end - start) / k / 1000)) $(python3 -c "u, s = '$cpu'.split(); print(round((float(u) + float(s)) * 1e6 / $k))")"
}
pairs() { # sync-option options...: per message, a plain delivery then one with the options,
    # each timed alone (bash's EPOCHREALTIME, no fork in the measure); prints "plain_us
    # sieve_us" lines. sync-option: --no-fsync, or --fsync (the default, flushed).
    local a="$work/p-plain" b="$work/p-sieve" t0 t1 t2 sync=()
    [[ "$1" == --no-fsync ]] && sync=(--no-fsync)
    shift
    rm -rf "$a" "$b"
    mkdir -p "$a/tmp" "$a/new" "$a/cur" "$b/tmp" "$b/new" "$b/cur"
    for i in $(seq 1 "$k"); do
        t0=$EPOCHREALTIME
        "$MDELIVER" "${sync[@]}" "$a" < "$work/msgs/$i.eml" 2>/dev/null
        t1=$EPOCHREALTIME
        "$MDELIVER" "${sync[@]}" "$@" "$b" < "$work/msgs/$i.eml" 2>/dev/null
        t2=$EPOCHREALTIME
        echo "$(( (${t1/./} - ${t0/./}) )) $(( (${t2/./} - ${t1/./}) ))"
    done
}
r_one=() r_fifty=() r_deliver=() r_sh=()
r_plain=() r_sieve=() r_plain_sync=() r_sieve_sync=()
c_plain=() c_sieve=() c_plain_sync=() c_sieve_sync=()
for _ in 1 2 3 4 5; do
    read -r w c < <(deliveries plain --no-fsync)
    r_plain+=("$w") c_plain+=("$c")
    read -r w c < <(deliveries sieve --no-fsync --sieve="$work/fifty.sieve")
    r_sieve+=("$w") c_sieve+=("$c")
    read -r w c < <(deliveries plain-sync)
    r_plain_sync+=("$w") c_plain_sync+=("$c")
    read -r w c < <(deliveries sieve-sync --sieve="$work/fifty.sieve")
    r_sieve_sync+=("$w") c_sieve_sync+=("$c")
    r_one+=("$(round "$MDELIVER" sieve test "$work/one.sieve" "$work/msg.eml")")
    r_fifty+=("$(round "$MDELIVER" sieve test "$work/fifty.sieve" "$work/msg.eml")")
    r_deliver+=("$(round sh -c "\"$MDELIVER\" --no-fsync \"$work/md\" < \"$work/msg.eml\"")")
    r_sh+=("$(round sh -c "true < \"$work/msg.eml\"")")
done
one=$(min "${r_one[@]}")
fifty=$(min "${r_fifty[@]}")
deliver=$(min "${r_deliver[@]}")
sh_only=$(min "${r_sh[@]}")
echo "runs: $n each"
echo "sieve test, 1 rule:   ${one} us"
echo "sieve test, 50 rules: ${fifty} us (ratio to 1 rule: $(python3 -c "print(f'{$fifty/$one:.3f}')"))"
echo "delivery (--no-fsync, tmpfs, through sh): ${deliver} us; sh alone: ${sh_only} us"
echo "50-rule script over a delivery: $(python3 -c "print(f'{($deliver + $fifty - $one)/$deliver:.3f}')") (the script's extra time added to one delivery)"
plain=$(min "${r_plain[@]}")
sieve=$(min "${r_sieve[@]}")
plain_sync=$(min "${r_plain_sync[@]}")
sieve_sync=$(min "${r_sieve_sync[@]}")
echo "delivery without a script (--no-fsync): ${plain} us; with --sieve (50 rules): ${sieve} us; ratio $(python3 -c "print(f'{$sieve/$plain:.3f}')")"
echo "delivery without a script (fsync, tmpfs): ${plain_sync} us; with --sieve (50 rules): ${sieve_sync} us; ratio $(python3 -c "print(f'{$sieve_sync/$plain_sync:.3f}')")"
plain_cpu=$(min "${c_plain[@]}")
sieve_cpu=$(min "${c_sieve[@]}")
plain_sync_cpu=$(min "${c_plain_sync[@]}")
sieve_sync_cpu=$(min "${c_sieve_sync[@]}")
echo "CPU time per delivery (--no-fsync): plain ${plain_cpu} us; --sieve ${sieve_cpu} us; ratio $(python3 -c "print(f'{$sieve_cpu/$plain_cpu:.3f}')")"
echo "CPU time per delivery (fsync): plain ${plain_sync_cpu} us; --sieve ${sieve_sync_cpu} us; ratio $(python3 -c "print(f'{$sieve_sync_cpu/$plain_sync_cpu:.3f}')")"
# Side by side per message: load that comes and goes hits both of a pair alike, so the median
# of the per-message ratios is the wall-clock figure least moved by other load.
for sync in --no-fsync --fsync; do
    for _ in 1 2 3 4 5; do pairs "$sync" --sieve="$work/fifty.sieve"; done > "$work/pairs"
    python3 - "$work/pairs" "$sync" <<'PY'
import statistics, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
plain = statistics.median(p for p, _ in rows)
sieve = statistics.median(s for _, s in rows)
ratio = statistics.median(s / p for p, s in rows)
print(f"side by side per message ({sys.argv[2]}, {len(rows)} pairs): median plain {plain:.0f} us, "
      f"median --sieve {sieve:.0f} us; median of the per-message ratios {ratio:.3f}")
PY
done
echo "load: $(cat /proc/loadavg)"
if [[ "${CALLGRIND:-}" == 1 ]] && command -v valgrind >/dev/null; then
    instructions() { # options...: instructions of one --no-fsync delivery (a fresh message)
        local md="$work/cg-$RANDOM" out="$work/cg.out"
        mkdir -p "$md/tmp" "$md/new" "$md/cur"
        valgrind --tool=callgrind --callgrind-out-file="$out" "$MDELIVER" --no-fsync "$@" "$md" \
            < "$work/msgs/1.eml" 2>/dev/null
        callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
    }
    i_plain=$(instructions)
    i_sieve=$(instructions --sieve="$work/fifty.sieve")
    i_clap=$(instructions --sieve "$work/fifty.sieve")
    echo "instructions (callgrind): plain ${i_plain}; --sieve=FILE (50 rules) ${i_sieve}, ratio $(python3 -c "print(f'{$i_sieve/$i_plain:.3f}')"); --sieve FILE (clap) ${i_clap}, ratio $(python3 -c "print(f'{$i_clap/$i_plain:.3f}')")"
fi
