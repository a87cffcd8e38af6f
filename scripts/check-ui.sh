#!/usr/bin/env bash
# scripts/check-ui.sh - the web console (/ui) in a real headless Chromium.
# Run from anywhere:
#
#   scripts/check-ui.sh
#
# Starts a real weir-server (debug build, 127.0.0.1 on a free port, empty
# temp data dir) twice - without authentication, then with a tokens file
# (an admin token and a consume-only one) - and drives the console with
# tests/ui/console.test.mjs: create a topic, produce, browse the message
# (pretty JSON, headers, hex, base64, by offset and by time), create a
# subscription and see its backlog go down after a consume, dead-letter a
# message and redrive it, an XSS payload shown as text (browser and live
# tail over the WebSocket), rates and lag on the overview, create/delete
# with confirmation; with authentication also the token prompt, a wrong
# token, and a restricted token seeing only its topic.
#
# Tools, installed only when missing (nothing downloaded at run time by
# the console itself):
#   chromium       Debian package (apt-get), launched headless; playwright
#                  never downloads browsers here (no `playwright install`)
#   playwright-core  npm, version from tests/ui/package-lock.json, into
#                  .tools/ui/ (gitignored)
#
# Environment:
#   WEIR_SERVER_BIN=PATH   server binary (default: cargo build -p weir-server)
#   CHROMIUM=PATH          browser (default /usr/bin/chromium)
#   VERBOSE=1              print the server logs even on success
# Ends with "check-ui: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools/ui
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# Upper bound of one browser run (each of its waits is bounded too).
RUN_TIMEOUT=300
WORK=$(mktemp -d)
SERVER_PID=""

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0
FAILED=0
log() { echo "check-ui: $*"; }
die() { echo "check-ui: $*" >&2; exit 1; }

# ------------------------------------------------------------------ tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*; install it and rerun"
  log "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  } || die "cannot install $*"
}
if [ ! -x "$CHROMIUM" ]; then
  [ "$CHROMIUM" = /usr/bin/chromium ] || die "no browser at CHROMIUM=$CHROMIUM"
  apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
if ! cmp -s "$ROOT/tests/ui/package-lock.json" "$TOOLS/package-lock.json" \
   || [ ! -f "$TOOLS/node_modules/playwright-core/package.json" ]; then
  log "installing playwright-core (npm ci) into .tools/ui"
  mkdir -p "$TOOLS"
  cp "$ROOT/tests/ui/package.json" "$ROOT/tests/ui/package-lock.json" "$TOOLS/"
  # playwright-core has no install script and downloads no browser.
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi
rm -rf "$TOOLS/report"

# ----------------------------------------------------------------- server
SERVER_BIN=${WEIR_SERVER_BIN:-}
if [ -z "$SERVER_BIN" ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found (or set WEIR_SERVER_BIN)"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
  log "building weir-server (debug) in $CARGO_TARGET_DIR"
  cargo build --quiet -p weir-server || die "cargo build -p weir-server failed"
  SERVER_BIN=$CARGO_TARGET_DIR/debug/weir-server
fi
[ -x "$SERVER_BIN" ] || die "no server binary at $SERVER_BIN"

# start_server NAME [ARGS...]: a fresh data dir; sets BASE.
start_server() {
  local name=$1
  shift
  mkdir -p "$WORK/$name"
  NO_COLOR=1 "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/$name/data" --log-format text \
    "$@" >"$WORK/$name/server.log" 2>&1 &
  SERVER_PID=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/$name/server.log" | sed -n 's/.*weir listening.* listen=\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' | head -1)
    [ -n "$addr" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    cat "$WORK/$name/server.log" >&2
    die "weir-server did not report its address"
  fi
  BASE=http://$addr
}

# browser_run NAME MODE: the scenario against the running server.
browser_run() {
  local name=$1 mode=$2 started=$SECONDS rc=0
  WEIR_UI_TOOLS=$TOOLS CHROMIUM=$CHROMIUM timeout --kill-after=10 "$RUN_TIMEOUT" \
    node "$ROOT/tests/ui/console.test.mjs" "$BASE" "$mode" >"$WORK/$name/browser.log" 2>&1 || rc=$?
  sed 's/^/    /' "$WORK/$name/browser.log"
  if [ "$rc" -eq 0 ] && grep -Eq 'panicked|ERROR' "$WORK/$name/server.log"; then
    echo "    weir-server logged errors or panics:"
    grep -E 'panicked|ERROR' "$WORK/$name/server.log" | head -20 | sed 's/^/    /'
    rc=1
  fi
  [ "$rc" -eq 124 ] && echo "    timed out after $RUN_TIMEOUT s"
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1)); echo "ok   - console in Chromium, $name ($((SECONDS - started)) s)"
    [ -n "${VERBOSE:-}" ] && sed 's/^/    server: /' "$WORK/$name/server.log"
  else
    FAILED=$((FAILED + 1)); echo "FAIL - console in Chromium, $name"
    tail -40 "$WORK/$name/server.log" | sed 's/^/    server: /'
  fi
  return 0
}

# Without authentication (`make run`).
start_server open
log "weir-server (no authentication) on $BASE"
browser_run open open
stop_server

# With authentication: an admin token and one that may only consume
# ui-orders (and, following it, its dead-letter topic).
ADMIN="ui-admin-$(date +%s%N)"
VIEWER="ui-viewer-$(date +%s%N)"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat >"$WORK/tokens.toml" <<TOML
[[tokens]]
principal = "console-admin"
sha256 = "$(sha "$ADMIN")"
grants = [{ actions = ["admin"], topics = "*" }]

[[tokens]]
principal = "console-viewer"
sha256 = "$(sha "$VIEWER")"
grants = [{ actions = ["consume"], topics = "ui-orders" }]
TOML
start_server auth --auth-tokens-file "$WORK/tokens.toml"
log "weir-server (tokens file) on $BASE"
WEIR_UI_TOKEN=$ADMIN WEIR_UI_VIEWER_TOKEN=$VIEWER browser_run auth auth
stop_server

echo "check-ui: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
