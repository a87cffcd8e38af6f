#!/usr/bin/env bash
# scripts/check-monitoring.sh - the shipped dashboards and alerts against a
# real Prometheus scraping a real Weir server under traffic. Run from
# anywhere:
#
#   scripts/check-monitoring.sh
#
# 1. Starts weir-server (debug build, 127.0.0.1 on a free port, empty temp
#    data dir) and Prometheus (Debian's `prometheus` package, run as a plain
#    process on a free 127.0.0.1 port with a temp TSDB - never the system
#    service) scraping it every second as job "weir" (instance
#    127.0.0.1:PORT, the labels the dashboards select on), with
#    dashboards/alerts.yml loaded and evaluated every second.
# 2. Fresh server: every panel query of dashboards/*.json returns data
#    (a value of 0 instead of Grafana's "No data" before the first event).
# 3. Creates topics and subscriptions (tests/monitoring/traffic.sh setup):
#    their counter series must exist at 0 before their first event.
# 4. Traffic with the real `weir` CLI for $WEIR_MONITORING_SECONDS (default
#    60): bench produce/consume, single and batched produces, HTTP pulls and
#    acks, a WebSocket subscriber and tail, nacks, an expired lease,
#    retention deletions and one deliberate dead letter.
# 5. Every dashboard query (panels, template variables, annotations) with
#    Grafana variables substituted ($__rate_interval = 1m, $job = weir,
#    $instance = the server, $topic/$subscription = ".*", i.e. "All")
#    returns at least one finite value through /api/v1/query, and the
#    quantiles of integer-valued histograms (buckets ending at k + 0.5) are
#    whole numbers.
# 6. No alert is pending or firing, now or at any time during the run
#    (/api/v1/alerts and the ALERTS series), except WeirDeadLettersAppearing
#    for the deliberate dead letter - which must be - and WeirDiskUsageHigh if
#    the machine's disk really is < 15% free; every rule evaluates without error.
#
# Queries and checks: tests/monitoring/check_queries.py (Python standard
# library). Everything is bounded (timeouts on every wait and CLI call);
# processes are stopped by PID and the temp dir is removed on exit (kept
# with KEEP=1). Takes about 90 s once the server is built.
#
# Environment:
#   WEIR_SERVER_BIN, WEIR_CLI_BIN  binaries to use (default: build with
#                    `cargo build -p weir-server -p weir-client` and use
#                    $CARGO_TARGET_DIR/debug/{weir-server,weir}; like the
#                    Makefile, CARGO_TARGET_DIR defaults to $HOME/.cache/weir-target)
#   WEIR_MONITORING_SECONDS        traffic duration (default 60)
#   WEIR_DASHBOARDS_DIR            dashboards and alerts.yml to check (default:
#                                  dashboards/; e.g. a modified copy, to see
#                                  that the check catches a broken query)
#   KEEP=1                         keep the temp dir (logs, TSDB) and print it
#
# Ends with "check-monitoring: OK - N queries returned data, M alerts firing"
# (or FAILED ...); exit 1 on any failure.
set -euo pipefail

if [ -n "${WEIR_DASHBOARDS_DIR:-}" ]; then
  WEIR_DASHBOARDS_DIR=$(cd "$WEIR_DASHBOARDS_DIR" && pwd) || exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DASH_DIR=${WEIR_DASHBOARDS_DIR:-$ROOT/dashboards}
export WEIR_DASHBOARDS_DIR=$DASH_DIR # read by check_queries.py
check_queries() { python3 "$ROOT/tests/monitoring/check_queries.py" "$@"; }
TRAFFIC=$ROOT/tests/monitoring/traffic.sh
SECONDS_TRAFFIC=${WEIR_MONITORING_SECONDS:-60}
JOB=weir

WORK=$(mktemp -d)
SERVER_PID="" PROM_PID="" TRAFFIC_PID=""
BG_PIDS=()

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_background() {
  local pid
  if [ -f "$WORK/logs/background.pids" ]; then
    while read -r pid; do BG_PIDS+=("$pid"); done <"$WORK/logs/background.pids"
    rm -f "$WORK/logs/background.pids"
  fi
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  BG_PIDS=()
}
cleanup() {
  stop_pid "$TRAFFIC_PID"
  stop_background
  stop_pid "$PROM_PID"  # before the server: no WeirDown while stopping
  stop_pid "$SERVER_PID"
  if [ "${KEEP:-0}" = 1 ]; then
    echo "check-monitoring: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '==> %s\n' "$*"; }
die() {
  printf 'check-monitoring: FAILED - %s\n' "$*" >&2
  exit 1
}
show_logs() { # show_logs FILE...: the end of each log, for a failure
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- last lines of ${f#"$WORK"/} (without INFO)" >&2
    grep -v ' INFO ' "$f" | tail -n 25 >&2 || true
  done
}

# ------------------------------------------------------------------ tools
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "prometheus is missing; install it (Debian: apt-get install -y prometheus) and rerun"
  fi
  log "installing prometheus (apt-get)"
  # The package would start its system service: forbid service starts for the
  # installation (policy-rc.d, exit 101) unless a policy is already in place.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || {
    apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null
  } || rc=$?
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install prometheus failed"
fi
for t in prometheus curl python3 timeout; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found"
done

SERVER_BIN=${WEIR_SERVER_BIN:-}
CLI_BIN=${WEIR_CLI_BIN:-}
if [ -z "$SERVER_BIN" ] || [ -z "$CLI_BIN" ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found (or set WEIR_SERVER_BIN and WEIR_CLI_BIN)"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
  log "building weir-server and weir (debug) in $CARGO_TARGET_DIR"
  cargo build --quiet -p weir-server -p weir-client || die "cargo build failed"
  SERVER_BIN=${SERVER_BIN:-$CARGO_TARGET_DIR/debug/weir-server}
  CLI_BIN=${CLI_BIN:-$CARGO_TARGET_DIR/debug/weir}
fi
[ -x "$SERVER_BIN" ] || die "no server binary at $SERVER_BIN"
[ -x "$CLI_BIN" ] || die "no CLI binary at $CLI_BIN"

T0=$SECONDS
mkdir -p "$WORK/data" "$WORK/tsdb" "$WORK/logs"

# ------------------------------------------------------------------ server
# Retention runs every second so the 2 s retention of one topic deletes
# messages within the run.
NO_COLOR=1 "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/data" --log-format text \
  --retention-interval-ms 1000 >"$WORK/logs/server.log" 2>&1 &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 300); do
  ADDR=$(sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/logs/server.log" | sed -n 's/.*weir listening.* listen=\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' | head -1)
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ADDR" ] || { show_logs "$WORK/logs/server.log"; die "weir-server did not report its address"; }
BASE=http://$ADDR
log "weir-server pid $SERVER_PID on $BASE"

# --------------------------------------------------------------- prometheus
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $DASH_DIR/alerts.yml
scrape_configs:
  - job_name: $JOB
    static_configs:
      - targets: ["$ADDR"]
EOF
PROM=""
for attempt in 1 2 3; do
  port=$(free_port)
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$WORK/logs/prometheus.log" 2>&1 &
  PROM_PID=$!
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then PROM=http://127.0.0.1:$port; break; fi
    kill -0 "$PROM_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$PROM" ] && break
  stop_pid "$PROM_PID"
  PROM_PID=""
  echo "prometheus did not start on port $port (attempt $attempt)" >&2
done
[ -n "$PROM" ] || { show_logs "$WORK/logs/prometheus.log"; die "prometheus did not become ready"; }
log "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') pid $PROM_PID on $PROM"

# Wait (bounded) until the target has been scraped a few times: rate() needs
# two samples, and the rules need the series.
prom_value() { # prom_value EXPR: the first value of an instant query, or empty
  curl -sf --max-time 5 "$PROM/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
scrapes=""
for _ in $(seq 1 150); do
  scrapes=$(prom_value "count_over_time(up{job=\"$JOB\", instance=\"$ADDR\"}[1m]) and on() up{job=\"$JOB\", instance=\"$ADDR\"} == 1")
  [ -n "$scrapes" ] && [ "${scrapes%.*}" -ge 4 ] && break
  sleep 0.2
done
[ -n "$scrapes" ] && [ "${scrapes%.*}" -ge 4 ] ||
  { show_logs "$WORK/logs/prometheus.log" "$WORK/logs/server.log"; die "prometheus is not scraping $ADDR (job $JOB)"; }

failed=()
check() { # check NAME CMD...: runs a check, records a failure, keeps going
  local name=$1
  shift
  log "$name"
  if ! "$@"; then
    failed+=("$name")
  fi
}
RUN_START=$(date +%s)

# ------------------------------------------------------------ fresh server
check "fresh server: every panel query returns data" \
  check_queries "$PROM" panels --job "$JOB" --instance "$ADDR" --label "fresh server"

# ------------------------------------------------------- topics and series
setup_out=$("$TRAFFIC" setup "$CLI_BIN" "$BASE" "$WORK/logs") ||
  { show_logs "$WORK/logs/cli.log" "$WORK/logs/server.log"; die "creating topics and subscriptions failed"; }
TOPICS=$(sed -n 's/^topics=//p' <<<"$setup_out")
SUBSCRIPTIONS=$(sed -n 's/^subscriptions=//p' <<<"$setup_out")
sleep 2.5 # two scrapes
check "counter series of new topics and subscriptions exist at 0" \
  check_queries "$PROM" series --job "$JOB" --instance "$ADDR" --topics "$TOPICS" --subscriptions "$SUBSCRIPTIONS"

# ------------------------------------------------------------------ traffic
log "traffic for ${SECONDS_TRAFFIC}s (weir CLI; log: logs/cli.log)"
# In the background and waited for, so that an interrupt stops it at once.
timeout $((SECONDS_TRAFFIC + 90)) "$TRAFFIC" run "$CLI_BIN" "$BASE" "$WORK/logs" "$SECONDS_TRAFFIC" &
TRAFFIC_PID=$!
if ! wait "$TRAFFIC_PID"; then
  show_logs "$WORK/logs/cli.log"
  failed+=("traffic")
fi
TRAFFIC_PID=""
sleep 2 # the last scrape and rule evaluation after the traffic

# ------------------------------------------------------------------ queries
log "under traffic: every dashboard query returns a finite value"
queries_out=$(check_queries "$PROM" panels --job "$JOB" --instance "$ADDR" --variables --finite \
  --label "under traffic") && queries_rc=0 || queries_rc=$?
printf '%s\n' "$queries_out"
[ "$queries_rc" = 0 ] || failed+=("dashboard queries under traffic")

# ------------------------------------------------------------------- alerts
# Required: WeirDeadLettersAppearing for payments/ledger, whose message the
# traffic dead-letters on purpose - a dead letter is what that alert is for,
# and the first one of a subscription must be seen (its counter exists at 0).
# Nothing else may be pending or firing on this healthy run.
log "alerts: none pending or firing during the run (but the expected ones)"
expect=(--require "WeirDeadLettersAppearing:topic=payments,subscription=ledger")
# Also allowed: WeirDiskUsageHigh when the filesystem holding the temp data
# dir really has less than 15% (the alert's threshold) free - the alert then
# tells the truth about this machine, not about the server.
disk_free=$(python3 -c 'import os, sys; s = os.statvfs(sys.argv[1]); print(f"{s.f_bavail / s.f_blocks:.3f}")' "$WORK/data")
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 0.15 else 1)' "$disk_free"; then
  echo "  note: the filesystem of $WORK has only $disk_free free: WeirDiskUsageHigh is expected"
  expect+=(--expect "WeirDiskUsageHigh:instance=$ADDR")
fi
alerts_out=$(check_queries "$PROM" alerts --job "$JOB" --instance "$ADDR" --since "$RUN_START" "${expect[@]}") &&
  alerts_rc=0 || alerts_rc=$?
printf '%s\n' "$alerts_out"
[ "$alerts_rc" = 0 ] || failed+=("alerts")

stop_background

# ------------------------------------------------------------------ summary
n_queries=$(sed -n 's/^under traffic: \([0-9]*\) of.*/\1/p' <<<"$queries_out")
n_total=$(sed -n 's/^under traffic: [0-9]* of \([0-9]*\).*/\1/p' <<<"$queries_out")
alerts_line=$(sed -n 's/^alerts: [^;]*; //p' <<<"$alerts_out" | tail -1)
summary="${n_queries:-?} of ${n_total:-?} queries returned data, ${alerts_line:-? alerts firing} ($((SECONDS - T0))s)"
if [ ${#failed[@]} -gt 0 ]; then
  show_logs "$WORK/logs/server.log" "$WORK/logs/prometheus.log"
  printf 'check-monitoring: FAILED (%s) - %s\n' "$(IFS=';'; echo "${failed[*]}")" "$summary" >&2
  exit 1
fi
echo "check-monitoring: OK - $summary"
