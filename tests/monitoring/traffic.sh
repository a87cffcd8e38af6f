#!/usr/bin/env bash
# Generated traffic for scripts/check-monitoring.sh, with the real `weir` CLI:
# something for every panel of dashboards/*.json, and nothing that a healthy
# server should alert on (apart from one deliberate dead letter).
#
#   tests/monitoring/traffic.sh setup WEIR_CLI SERVER_URL LOG_DIR
#   tests/monitoring/traffic.sh run   WEIR_CLI SERVER_URL LOG_DIR SECONDS
#
# `setup` creates the topics and subscriptions (and prints them as
# "topics=a,b" and "subscriptions=t/s,..." lines for the series check);
# `run` sends traffic for SECONDS and returns. It leaves two WebSocket
# clients running (a `weir tail` and a `weir consume --ws`) and writes their
# PIDs to LOG_DIR/background.pids: the caller stops them after its queries
# (so the WebSocket panels have something open to show).
#
# Every CLI call is bounded by `timeout`; lags stay below 1000 messages and
# unacked messages below 300 s, so WeirConsumerLagGrowing and
# WeirOldestUnackedAgeHigh have no reason to go pending.
set -euo pipefail

mode=$1 WEIR=$2 SERVER=$3 LOGS=$4
export WEIR_SERVER=$SERVER
mkdir -p "$LOGS"

# One bounded CLI call; a failure is logged and counted (`run` fails at the end).
failures=0
w() {
  echo "+ weir $*" >>"$LOGS/cli.log"
  if ! timeout 20 "$WEIR" "$@" >>"$LOGS/cli.log" 2>&1; then
    echo "FAILED: weir $*" >>"$LOGS/cli.log"
    echo "traffic: FAILED: weir $*" >&2
    failures=$((failures + 1))
  fi
}

# Topics, subscriptions and what each is for (topic/subscription):
#   orders/billing   pulled over HTTP and acked
#   orders/audit     consumed over a subscription WebSocket (`consume --ws`)
#   events           WebSocket tail; produced in NDJSON batches (batch sizes)
#   ephemeral        retention of 2 s: retention deletions
#   payments/ledger  max_attempts 1: a nack dead-letters (the deliberate dead letter)
#   payments/retries nacks with a long backoff: nack redeliveries, delayed messages
#   payments/slow    ack timeout 1 s, left unacked: lease_expired redeliveries
#                    (max_attempts unlimited: expiries never dead-letter it)
#   bench, bench-consume/bench  `weir bench produce` / `weir bench consume`
TOPICS=(orders events ephemeral payments)
SUBS=(orders/billing orders/audit payments/ledger payments/retries payments/slow)

case $mode in
setup)
  w topics create orders --partitions 2
  w topics create events
  w topics create ephemeral --retention-ms 2000
  w topics create payments
  w subs create orders billing --start earliest
  w subs create orders audit --start earliest
  w subs create payments ledger --start earliest --max-attempts 1
  w subs create payments retries --start earliest --max-attempts 10 --backoff-initial-ms 120000 --backoff-max-ms 120000
  w subs create payments slow --start earliest --ack-timeout-ms 1000 --max-attempts unlimited
  if [ "$failures" -gt 0 ]; then
    echo "traffic: $failures CLI calls failed (see $LOGS/cli.log)" >&2
    exit 1
  fi
  (IFS=,; echo "topics=${TOPICS[*]}"; echo "subscriptions=${SUBS[*]}")
  ;;
run)
  seconds=$5
  end=$(($(date +%s) + seconds))
  : >"$LOGS/background.pids"
  # Long-running WebSocket clients (kinds "tail" and "subscribe").
  "$WEIR" tail events >"$LOGS/tail.log" 2>&1 &
  echo $! >>"$LOGS/background.pids"
  "$WEIR" consume --ws orders audit >"$LOGS/consume-ws.log" 2>&1 &
  echo $! >>"$LOGS/background.pids"

  # Throughput runs: many produce requests and group-commit batches.
  w bench produce --topic bench --duration 4 --concurrency 4 --batch 20 --size 200
  w bench consume --topic bench-consume --subscription bench --count 600 --batch 50 --concurrency 2 --duration 10

  # One message on payments, seen by its three subscriptions: `ledger` nacks
  # it (max_attempts 1: the deliberate dead letter), `retries` nacks it (it
  # waits 120 s as a delayed message), `slow` leases it without acking (the
  # lease expires after 1 s: a lease_expired redelivery).
  w produce payments poison
  w consume payments ledger --nack --reason "check-monitoring: deliberate dead letter" --count 1 --wait-ms 2000
  w consume payments retries --nack --reason "check-monitoring: retried later" --count 1 --wait-ms 2000
  w consume payments slow --no-ack --count 1 --wait-ms 2000

  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    i=$((i + 1))
    w produce orders "{\"order\":$i,\"item\":\"pizza\"}" "{\"order\":$i,\"item\":\"soda\"}"
    w produce -k "k$((i % 3))" orders "{\"order\":$i,\"item\":\"salad\"}"
    seq 1 $((1 + i % 12)) | sed "s/^/event-$i-/" | w produce events -f -
    w produce ephemeral "tick-$i"
    w consume orders billing --until-empty --max 50 --wait-ms 100
    if [ $((i % 10)) -eq 0 ]; then
      # The slow subscription's redelivered message: lease it again
      # (expires again), keeping lease_expired redeliveries coming.
      w consume payments slow --no-ack --until-empty --max 1 --wait-ms 100
    fi
    sleep 0.5
  done
  # Settle the leftover lease so nothing stays unacked for long.
  sleep 1
  w consume payments slow --until-empty --wait-ms 1500
  if [ "$failures" -gt 0 ]; then
    echo "traffic: $failures CLI calls failed (see $LOGS/cli.log)" >&2
    exit 1
  fi
  ;;
*)
  echo "usage: $0 setup|run WEIR_CLI SERVER_URL LOG_DIR [SECONDS]" >&2
  exit 2
  ;;
esac
