#!/usr/bin/env bash
# examples/pizza/walkthrough.sh - the pizza shop with the `weir` CLI only.
#
# Against a local server (`make run` in another terminal):
#
#   examples/pizza/walkthrough.sh
#
# Elsewhere: WEIR_SERVER=http://host:port (and WEIR_TOKEN=... when the
# server has authentication on). WEIR=path/to/weir picks the CLI binary
# (default: `weir` on PATH, else the build in $CARGO_TARGET_DIR).
#
# It uses its own topic, $TOPIC (default `orders-cli`), which it deletes
# and recreates first, so it can run again. Every step prints the command it
# runs, and the script checks the outcome it tells about (exit 1 when one is
# off): `make examples` runs it against a fresh server.
set -euo pipefail

TOPIC=${TOPIC:-orders-cli}
if [ -z "${WEIR:-}" ]; then
  if command -v weir >/dev/null 2>&1; then
    WEIR=weir
  else
    WEIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}/release/weir
    [ -x "$WEIR" ] || WEIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}/debug/weir
  fi
fi
command -v python3 >/dev/null 2>&1 || { echo "walkthrough: needs python3 (to check JSON output)" >&2; exit 1; }

checks=0
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
# run ARGS...: print and run `weir ARGS...` (human output).
run() { printf '$ weir %s\n' "$*" >&2; "$WEIR" "$@"; }
# json ARGS...: `weir --output json ARGS...`, quietly, for the checks.
json() { "$WEIR" --output json "$@"; }
# expect WHAT ACTUAL WANTED
expect() {
  if [ "$2" != "$3" ]; then
    printf 'walkthrough: FAILED: %s: got %s, expected %s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
  checks=$((checks + 1))
  printf '  ok: %s = %s\n' "$1" "$2"
}
# py EXPR: evaluates a Python expression over JSON on stdin (`d`), or over
# JSON lines (`lines`).
py() {
  python3 -c '
import json, sys
text = sys.stdin.read()
try:
    d = json.loads(text)
except ValueError:
    d = None
lines = [] if d is not None else [json.loads(l) for l in text.splitlines() if l.strip()]
print(eval(sys.argv[1]))' "$1"
}
now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }

say "A clean start: topic $TOPIC with 3 partitions"
json topics delete "$TOPIC" >/dev/null 2>&1 || true
json topics delete "$TOPIC.billing.dlq" >/dev/null 2>&1 || true
run topics create "$TOPIC" --partitions 3

say "The order service: lunch orders, keyed by customer (same key, same partition)"
order() { # order ID CUSTOMER SEQ PIZZA
  run produce "$TOPIC" "{\"order_id\": $1, \"customer\": \"$2\", \"seq\": $3, \"pizza\": \"$4\"}" --key "$2"
}
order 1 alice 1 margherita
order 2 bob 1 diavola
order 3 alice 2 funghi
order 4 carol 1 marinara
sleep 0.05
DINNER_FROM=$(now_ms)
sleep 0.05
say "Dinner orders (after $DINNER_FROM ms since the epoch)"
order 5 bob 2 margherita
order 6 carol 2 "quattro formaggi"
expect "messages in $TOPIC" "$(json topics describe "$TOPIC" | py 'sum(p["messages"] for p in d["partitions"])')" 6

say "The kitchen: a stream subscription, each partition in offset order"
run subs create "$TOPIC" kitchen --mode stream --start earliest
run consume "$TOPIC" kitchen --consumer oven-1 --until-empty --wait-ms 1000 --output json | tee "${TMPDIR:-/tmp}/kitchen.$$"
expect "pizzas baked" "$(py 'len(lines)' <"${TMPDIR:-/tmp}/kitchen.$$")" 6
expect "each customer's orders in order" "$(py '
all([m["value"]["seq"] for m in lines if m["key"] == c] == sorted(m["value"]["seq"] for m in lines if m["key"] == c) for c in {m["key"] for m in lines})' <"${TMPDIR:-/tmp}/kitchen.$$")" True
rm -f "${TMPDIR:-/tmp}/kitchen.$$"

say "A live look at the topic (WebSocket tail from the earliest message)"
run tail "$TOPIC" --from earliest --count 6

say "Billing: a queue subscription, 3 attempts, 100 ms between them, then the dead-letter topic"
run subs create "$TOPIC" billing --mode queue --start earliest --max-attempts 3 \
  --backoff-initial-ms 100 --backoff-max-ms 100 --backoff-multiplier 1 --jitter 0
say "Four charges go through"
run consume "$TOPIC" billing --count 4

say "The payment provider is down: the last two fail on every attempt"
run consume "$TOPIC" billing --nack --reason "payment provider down" --until-empty --wait-ms 1000
run subs describe "$TOPIC" billing
expect "billing dead-lettered" "$(json subs describe "$TOPIC" billing | py 'd["stats"]["dead_lettered"]')" 2
expect "billing backlog" "$(json subs describe "$TOPIC" billing | py 'd["stats"]["backlog"]')" 0

say "The dead letters: state, reason and attempts of each"
run dlq list "$TOPIC" billing
expect "dead letters listed" "$(json dlq list "$TOPIC" billing | py 'len(d["dead_letters"])')" 2

say "The provider is back: redrive, and charge them"
run dlq redrive "$TOPIC" billing
run consume "$TOPIC" billing --until-empty --wait-ms 1000
expect "billing dead-lettered after the redrive" "$(json subs describe "$TOPIC" billing | py 'd["stats"]["dead_lettered"]')" 0
expect "billing backlog after the redrive" "$(json subs describe "$TOPIC" billing | py 'd["stats"]["backlog"]')" 0

say "Analytics: replay every partition from offset 0 (stateless reads)"
total=0
for p in 0 1 2; do
  run read "$TOPIC" --partition "$p" --offset 0
  n=$(json read "$TOPIC" --partition "$p" --offset 0 | py 'len(d["messages"])')
  total=$((total + n))
done
expect "orders in the history" "$total" 6

say "Analytics: what came in since dinner started ($DINNER_FROM)"
since=0
for p in 0 1 2; do
  n=$(json read "$TOPIC" --partition "$p" --timestamp "$DINNER_FROM" | py 'len(d["messages"])')
  since=$((since + n))
done
run read "$TOPIC" --partition 0 --timestamp "$DINNER_FROM"
expect "dinner orders" "$since" 2

printf '\nwalkthrough: all %d checks passed\n' "$checks"
