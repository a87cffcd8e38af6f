#!/usr/bin/env bash
# `make soak`: the long fault-injection runs, with progress and a summary.
#
#   kill9      kill -9 cycles under load     WEIR_FAULT_CYCLES (default 1000)
#   proxy      dropped responses              WEIR_PROXY_BATCHES (default 2000)
#   corruption damaged WAL / SST files        (one run of each variant)
#   powerloss  tests/tests/powerloss.rs       WEIR_POWERLOSS_CYCLES (default 50), if present
#   fuzz       scripts/fuzz.sh                WEIR_FUZZ_SECONDS (default 600), if present
#
# Each scenario prints `FAULT-SUMMARY scenario=.. cycles=.. faults=..
# acked_lost=.. duplicated=.. reordered=.. dead_lettered_twice=..` lines;
# they are collected into the table at the end. WEIR_FAULT_SEED replays a
# printed seed. Logs are kept under $SOAK_LOG_DIR (default target/soak).
# Exits non-zero when any scenario fails.
set -uo pipefail

cd "$(dirname "$0")/.."
export WEIR_FAULT_CYCLES="${WEIR_FAULT_CYCLES:-1000}"
export WEIR_PROXY_BATCHES="${WEIR_PROXY_BATCHES:-2000}"
export WEIR_POWERLOSS_CYCLES="${WEIR_POWERLOSS_CYCLES:-50}"
export WEIR_FUZZ_SECONDS="${WEIR_FUZZ_SECONDS:-600}"
LOG_DIR="${SOAK_LOG_DIR:-target/soak}"
mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR"/*.log

echo "==> building release binaries"
cargo build --release -p weir-server -p weir-client -p weir-lazyfs || exit 1
target_dir="${CARGO_TARGET_DIR:-target}"
export WEIR_SERVER_BIN="$PWD/$target_dir/release/weir-server"
case "$target_dir" in /*) export WEIR_SERVER_BIN="$target_dir/release/weir-server" ;; esac

failed=()
declare -A status_of

# run NAME COMMAND...: runs with progress lines shown, output logged.
run() {
    local name=$1
    shift
    local log="$LOG_DIR/$name.log"
    echo "==> $name: $*  (log: $log)"
    local started=$SECONDS
    # Progress lines (`cycle 17/1000 ...`, `proxy: ...`, summaries) are shown
    # as they come; everything goes to the log.
    "$@" 2>&1 | tee "$log" | grep --line-buffered -E 'cycle [0-9]+/|FAULT-SUMMARY|seed|panicked|test result' 
    local rc=${PIPESTATUS[0]}
    status_of[$name]=$rc
    echo "<== $name: exit $rc after $((SECONDS - started)) s"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

run kill9 cargo test --release -p weir-tests --test faults kill9 -- --nocapture --test-threads=1
run proxy cargo test --release -p weir-tests --test faults idempotent -- --nocapture --test-threads=1
run corruption cargo test --release -p weir-tests --test faults corruption -- --nocapture --test-threads=1
if [ -f tests/tests/powerloss.rs ]; then
    run powerloss cargo test --release -p weir-tests --test powerloss -- --nocapture --test-threads=1
else
    echo "==> powerloss: tests/tests/powerloss.rs not present, skipped"
fi
if [ -x scripts/fuzz.sh ] || [ -f scripts/fuzz.sh ]; then
    run fuzz bash scripts/fuzz.sh
else
    echo "==> fuzz: scripts/fuzz.sh not present, skipped"
fi

echo
echo "==> summary"
field() { # field NAME LINE: the value of NAME=... in LINE, or -
    local v
    v=$(sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2")
    echo "${v:--}"
}
printf '%-28s %8s %8s %10s %10s %9s %19s %7s\n' \
    scenario cycles faults acked_lost duplicated reordered dead_lettered_twice result
for log in "$LOG_DIR"/*.log; do
    name=$(basename "$log" .log)
    lines=$(grep -h '^FAULT-SUMMARY' "$log" || true)
    if [ -z "$lines" ]; then
        rc=${status_of[$name]:-?}
        printf '%-28s %8s %8s %10s %10s %9s %19s %7s\n' "$name" - - - - - - \
            "$([ "$rc" = 0 ] && echo ok || echo FAIL)"
        continue
    fi
    while IFS= read -r line; do
        result=$(field result "$line")
        [ "$result" = - ] && result=$([ "${status_of[$name]:-1}" = 0 ] && echo ok || echo FAIL)
        printf '%-28s %8s %8s %10s %10s %9s %19s %7s\n' \
            "$(field scenario "$line")" "$(field cycles "$line")" "$(field faults "$line")" \
            "$(field acked_lost "$line")" "$(field duplicated "$line")" \
            "$(field reordered "$line")" "$(field dead_lettered_twice "$line")" "$result"
    done <<<"$lines"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "soak FAILED: ${failed[*]} (logs in $LOG_DIR)"
    exit 1
fi
echo "soak passed"
