#!/usr/bin/env bash
# Real fuzzing of mdeliver with libFuzzer (cargo-fuzz). Not part of CI: CI replays the corpus
# on stable (tests/tests/fuzz_corpus.rs). This script installs what it needs itself:
#   - the nightly toolchain (rustup toolchain install nightly), for -Zsanitizer and libFuzzer;
#   - cargo-fuzz (cargo install cargo-fuzz --locked), from crates.io.
#
# Usage:
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#     SECONDS_PER_TARGET  default 60; each target is fuzzed for that long, one after another
#     TARGET...           default: every target in fuzz/Cargo.toml
#   Environment:
#     FUZZ_JOBS=N         libFuzzer workers per target (default 1; the machine may be shared)
#     FUZZ_MERGE=1        afterwards, merge new coverage into fuzz/corpus/<target>/ (minimised
#                         with -merge=1), to be committed with the fix of anything it found
#     FUZZ_SANITIZER=none|address (default none: the code under test is safe Rust, and
#                         without ASan a run executes several times more inputs)
#
# What it does per target: copies fuzz/corpus/<target>/ into fuzz/work/<target>/ (scratch,
# git-ignored), runs libFuzzer on it with the target's dictionary (fuzz/dict/<target>.dict)
# where there is one, a 10 s per-input timeout (a delivery machine that loops forever is a
# finding) and a 2 GiB RSS limit, and prints one summary line: executions, coverage
# (libFuzzer's `cov:` edges and `ft:` features), corpus size, and crashes. Crashing inputs
# land in fuzz/artifacts/<target>/; reproduce one on stable by copying it into
# fuzz/corpus/<target>/ and running `cargo test -p mdeliver-tests --test fuzz_corpus`.
# A log per target is kept in fuzz/work/<target>.log; the summary in fuzz/work/summary.txt.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
secs="${1:-60}"
shift || true

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^mdeliver-fuzz$')
fi

sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
mkdir -p work artifacts
summary="work/summary.txt"
: >"$summary"

# Build all targets once (nightly, release with debug assertions, coverage instrumentation).
for t in "${targets[@]}"; do
    cargo +nightly fuzz build --sanitizer "$sanitizer" "$t"
done

for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
    cp -n corpus/"$t"/* "work/$t/" 2>/dev/null || true
    dict=()
    [ -f "dict/$t.dict" ] && dict=(-dict="dict/$t.dict")
    echo "== fuzzing $t for ${secs}s"
    par=()
    # -jobs runs workers that log to fuzz-N.log; one job runs in-process, logging here.
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    set +e
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "work/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "${par[@]}" \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${dict[@]}" \
        >"work/$t.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -a 'stat::number_of_executed_units' "work/$t.log" | awk '{s+=$2} END {print s+0}' || true)
    last=$(grep -a -E '^#[0-9]+' "work/$t.log" | tail -n 1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
    crashes=$(find "artifacts/$t" -type f | wc -l || true)
    line="$t: ${secs}s, executions ${execs:-?}, cov ${cov:-?} edges, ft ${ft:-?} features, corpus ${corp:-?}, crash/timeout artifacts ${crashes}, exit ${rc}"
    echo "$line" | tee -a "$summary"
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "work/$t" -- \
            -merge=1 >"work/$t.merge.log" 2>&1 || true
    fi
done
echo "== summary (also in fuzz/work/summary.txt)"
cat "$summary"
