#!/usr/bin/env bash
# examples/pizza/run.sh - the pizza story end to end against real servers,
# with its outcomes checked (`make examples`). Run from anywhere:
#
#   examples/pizza/run.sh
#
# 1. Builds weir-server, the weir CLI and the four programs (debug).
# 2. Starts a weir-server on 127.0.0.1 (free port, empty temp data dir).
# 3. Plays the story with the Rust programs (src/bin/):
#    - kitchen starts first and waits for the topic; order-service produces
#      the lunch and dinner orders keyed by customer; the kitchen bakes all
#      of them, each customer's in order (stream subscription);
#    - order-service runs again: every order is a duplicate (idempotency
#      ids), nothing is appended;
#    - billing charges through a queue subscription: provider timeouts are
#      retried and paid, gift-card orders fail 3 times and are dead-lettered
#      (with their weir-* headers); after the fix, billing --fixed --redrive
#      charges them, each order exactly once in the ledger;
#    - analytics replays the whole history (from the earliest offsets) and
#      the orders since dinner started (from a timestamp).
# 4. Runs walkthrough.sh (the same story with the weir CLI, self-checking)
#    against a second fresh server.
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/weir-target, like the
# Makefile); KEEP=1 keeps the work dir (logs, JSON summaries).
# Ends with "pizza: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
BIN=$CARGO_TARGET_DIR/debug
WORK=$(mktemp -d)
SERVER_PID=""
BG_PIDS=()

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
  if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$1"; }

# start_server NAME: a fresh server; sets SERVER_PID and WEIR_SERVER.
start_server() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  NO_COLOR=1 "$BIN/weir-server" --listen 127.0.0.1:0 --data-dir "$dir/data" \
    --log-format text >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -e 's/\x1b\[[0-9;]*m//g' "$dir/server.log" \
      | sed -n 's/.*weir listening.* listen=\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' | head -1)
    [ -n "$addr" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    cat "$dir/server.log" >&2
    echo "pizza: weir-server did not report its address" >&2
    exit 1
  fi
  export WEIR_SERVER=http://$addr
  echo "weir-server ($1) on $WEIR_SERVER"
}

# step NAME TIMEOUT_S OUT CMD...: runs CMD (stdout to $WORK/OUT.json,
# stderr to $WORK/OUT.log) with a bound; a failure is reported and shown.
step() {
  local name=$1 limit=$2 out=$3
  shift 3
  if timeout "$limit" "$@" >"$WORK/$out.json" 2>"$WORK/$out.log"; then
    ok "$name"
  else
    fail "$name (exit $?)"
    tail -30 "$WORK/$out.log" | sed 's/^/       /'
  fi
}

# check NAME EXPR: a Python expression over the JSON summaries, loaded as
# variables named after their files (order, kitchen, rerun, bill1, bill2,
# analytics).
check() {
  if python3 - "$WORK" "$2" <<'PY'
import json, os, sys
work, expr = sys.argv[1], sys.argv[2]
env = {}
for name in ("order", "kitchen", "rerun", "bill1", "bill2", "analytics"):
    path = os.path.join(work, name + ".json")
    try:
        lines = [l for l in open(path).read().splitlines() if l.strip()]
        env[name] = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        env[name] = None
try:
    ok = eval(expr, {}, env)
except Exception as e:  # a missing summary fails the check, with the reason
    print(f"       {type(e).__name__}: {e}")
    sys.exit(1)
sys.exit(0 if ok else 1)
PY
  then ok "$1"; else fail "$1   [$2]"; fi
}

echo "building weir-server, weir and the pizza programs (debug) in $CARGO_TARGET_DIR"
cargo build --quiet -p weir-server -p weir-client -p weir-example-pizza
command -v python3 >/dev/null 2>&1 || { echo "pizza: needs python3" >&2; exit 1; }

# ---------------------------------------------------------------- story
start_server story
cd "$WORK"

# The kitchen starts before there is any order (it waits for the topic).
timeout 120 "$BIN/kitchen" --expect 60 --timeout-s 90 >"$WORK/kitchen.json" 2>"$WORK/kitchen.log" &
KITCHEN=$!
BG_PIDS+=("$KITCHEN")
step "order-service produces 40 lunch + 20 dinner orders" 60 order \
  "$BIN/order-service" --lunch 40 --dinner 20 --customers 7 --partitions 3
if wait "$KITCHEN"; then ok "kitchen bakes while orders come in"; else
  fail "kitchen bakes while orders come in"; tail -30 "$WORK/kitchen.log" | sed 's/^/       /'; fi
check "order-service: 60 orders appended, none duplicate" \
  'order["appended"] == 60 and order["duplicates"] == 0 and order["gift_cards"] == 12'
check "kitchen: all 60 orders baked, none out of order per customer" \
  'kitchen["baked"] == 60 and kitchen["out_of_order"] == 0 and kitchen["backlog"] == 0'
check "kitchen: every customer's orders seen (1..n)" \
  'sum(kitchen["customers"].values()) == 60 and len(kitchen["customers"]) == 7'
check "kitchen: the three partitions were all used" \
  'sorted(kitchen["by_partition"]) == ["0", "1", "2"]'

step "order-service again (a retry of the whole run)" 60 rerun \
  "$BIN/order-service" --lunch 40 --dinner 20 --customers 7 --partitions 3
check "rerun: all 60 are duplicates, nothing appended (idempotency ids)" \
  'rerun["appended"] == 0 and rerun["duplicates"] == 60'

step "billing with the broken gift-card integration" 120 bill1 \
  "$BIN/billing" --ledger "$WORK/ledger.txt" --timeout-s 90
check "billing: 48 card orders charged, 16 of them after a provider timeout" \
  'bill1["charged"] == 48 and bill1["paid_after_retry"] == 16 and bill1["provider_timeouts"] == 16'
check "billing: 12 gift-card orders failed 3 times each, then dead-lettered" \
  'bill1["gift_card_failures"] == 36 and bill1["dead_lettered"] == 12 and bill1["backlog"] == 0'
check "billing: the dead-letter topic holds them with weir-attempts=3 and the reason" \
  'bill1["dead_letter_topic"]["topic"] == "orders.billing.dlq" and bill1["dead_letter_topic"]["messages"] == 12 and bill1["dead_letter_topic"]["attempts"] == {"3": 12} and bill1["dead_letter_topic"]["reasons"] == ["gift card service rejected"] and bill1["dead_letter_topic"]["orders"] == list(range(5, 61, 5))'

step "billing --fixed --redrive" 120 bill2 \
  "$BIN/billing" --ledger "$WORK/ledger.txt" --fixed --redrive --timeout-s 90
check "redrive: the 12 dead letters delivered again and charged" \
  'bill2["redriven"] == 12 and bill2["charged"] == 12 and bill2["dead_lettered"] == 0 and bill2["backlog"] == 0'
check "ledger: every order charged exactly once" \
  'bill2["charged_total"] == 60 and sorted(int(l) for l in open("ledger.txt")) == list(range(1, 61))'

DINNER_FROM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dinner_from_ms"])' "$WORK/order.json" 2>/dev/null || echo 0)
step "analytics replays the history and the orders since dinner" 60 analytics \
  "$BIN/analytics" --since-ms "$DINNER_FROM"
check "analytics: the whole history is the 60 orders (no duplicates from the rerun)" \
  'analytics["history"]["messages"] == 60 and analytics["history"]["distinct_orders"] == 60 and analytics["history"]["by_wave"] == {"lunch": 40, "dinner": 20}'
check "analytics: since the dinner timestamp, exactly the 20 dinner orders" \
  'analytics["since"]["figures"]["messages"] == 20 and analytics["since"]["figures"]["by_wave"] == {"dinner": 20}'

stop_server
cd "$ROOT"

# ----------------------------------------------------------- walkthrough
start_server walkthrough
if WEIR="$BIN/weir" timeout 180 bash examples/pizza/walkthrough.sh >"$WORK/walkthrough.log" 2>&1 \
  && grep -q '^walkthrough: all [0-9]* checks passed' "$WORK/walkthrough.log"; then
  ok "walkthrough.sh with the weir CLI ($(sed -n 's/^walkthrough: all \([0-9]*\) checks passed/\1/p' "$WORK/walkthrough.log") checks)"
else
  fail "walkthrough.sh with the weir CLI"
  tail -40 "$WORK/walkthrough.log" | sed 's/^/       /'
fi
stop_server

if grep -Eq 'panicked' "$WORK"/*/server.log; then
  fail "no server panic"
  grep -E 'panicked' "$WORK"/*/server.log | head -5
else
  ok "no server panic"
fi

echo ""
echo "pizza: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
