#!/usr/bin/env bash
# scripts/check-clients.sh - generate clients in other languages from the
# committed openapi/openapi.json with standard generators and run the same
# round trip with each against a real server (authentication on):
#
#   Python      openapi-python-client (PyPI)      tests/clients/python_roundtrip.py
#   TypeScript  openapi-typescript + openapi-fetch tests/clients/ts/roundtrip.ts
#               (npm, versions from the committed package-lock.json; the
#               round trip is type-checked with tsc --strict, then run)
#
# Each round trip creates a topic, produces JSON with a key and headers,
# reads it back, creates a queue subscription, pulls, acks, nacks, and gets
# problem documents as typed values. Tools go to .tools/clients/
# (gitignored), installed only when missing.
#
# Environment: WEIR_SERVER_BIN=PATH (default: cargo build -p weir-server).
# Ends with "check-clients: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SPEC=$ROOT/openapi/openapi.json
TOOLS=$ROOT/.tools/clients
VENV=$TOOLS/venv
GENERATOR=openapi-python-client==0.29.1
NODE_DIR=$TOOLS/ts
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
FAILED=0
log() { echo "check-clients: $*"; }
die() { echo "check-clients: $*" >&2; exit 1; }
run_step() {
  local what=$1; shift
  local out=$WORK/step.out started=$SECONDS
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1)); echo "ok   - $what ($((SECONDS - started)) s)"
    [ -n "${VERBOSE:-}" ] && cat "$out"
  else
    FAILED=$((FAILED + 1)); echo "FAIL - $what"; cat "$out"
  fi
  return 0
}

# ------------------------------------------------------------------ tools
# (pip's output is captured first: `grep -q` ending the pipe early would
# fail it under pipefail and reinstall every time.)
installed=$("$VENV/bin/python" -m pip show openapi-python-client 2>/dev/null || true)
if ! grep -q "^Version: ${GENERATOR#*==}$" <<<"$installed"; then
  log "installing $GENERATOR into .tools/clients/venv"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$GENERATOR" \
    || die "pip install $GENERATOR failed"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing node/npm (Debian packages nodejs npm)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm \
    || die "cannot install nodejs/npm"
fi
if ! cmp -s "$ROOT/tests/clients/ts/package-lock.json" "$NODE_DIR/package-lock.json" \
   || [ ! -d "$NODE_DIR/node_modules" ]; then
  log "installing the TypeScript generator (npm ci) into .tools/clients/ts"
  mkdir -p "$NODE_DIR"
  cp "$ROOT/tests/clients/ts/package.json" "$ROOT/tests/clients/ts/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

# ----------------------------------------------------------------- server
SERVER_BIN=${WEIR_SERVER_BIN:-}
if [ -z "$SERVER_BIN" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
  cargo build --quiet -p weir-server || die "cargo build -p weir-server failed"
  SERVER_BIN=$CARGO_TARGET_DIR/debug/weir-server
fi
TOKEN="clients-$(date +%s%N)"
cat >"$WORK/tokens.toml" <<TOML
[[tokens]]
principal = "generated-clients"
sha256 = "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)"
grants = [{ actions = ["admin"], topics = "*" }]
TOML
mkdir -p "$WORK/data"
NO_COLOR=1 "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/data" --log-format text \
  --auth-tokens-file "$WORK/tokens.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 200); do
  ADDR=$(sed -n 's/.*weir listening.* listen=\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -1)
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.05
done
[ -n "$ADDR" ] || { cat "$WORK/server.log" >&2; die "weir-server did not report its address"; }
BASE=http://$ADDR
log "weir-server pid $SERVER_PID listening on $BASE"

# ----------------------------------------------------------------- python
python_generate() {
  (cd "$WORK" && "$VENV/bin/openapi-python-client" generate --path "$SPEC" \
    --output-path "$WORK/python" --overwrite)
  [ -f "$WORK/python/weir_client/api/messages/produce.py" ] || { echo "no produce module generated"; return 1; }
  # Every module must import (a generator bug once broke the produce module).
  PYTHONPATH=$WORK/python "$VENV/bin/python" -c '
import importlib, pkgutil, weir_client.api as api
for m in pkgutil.walk_packages(api.__path__, "weir_client.api."):
    importlib.import_module(m.name)
import weir_client.models'
}
run_step "openapi-python-client generates an importable client" python_generate
python_roundtrip() {
  PYTHONPATH=$WORK/python "$VENV/bin/python" "$ROOT/tests/clients/python_roundtrip.py" "$BASE" "$TOKEN"
}
run_step "Python round trip against $BASE" python_roundtrip

# ------------------------------------------------------------- typescript
ts_generate() {
  mkdir -p "$WORK/ts"
  cp "$ROOT/tests/clients/ts/roundtrip.ts" "$ROOT/tests/clients/ts/tsconfig.json" \
     "$ROOT/tests/clients/ts/package.json" "$WORK/ts/"
  ln -s "$NODE_DIR/node_modules" "$WORK/ts/node_modules"
  (cd "$WORK/ts" && ./node_modules/.bin/openapi-typescript "$SPEC" -o schema.d.ts \
    && ./node_modules/.bin/tsc -p .)
}
run_step "openapi-typescript types + openapi-fetch round trip type-check (tsc --strict)" ts_generate
ts_roundtrip() {
  (cd "$WORK/ts" && node out/roundtrip.js "$BASE" "$TOKEN")
}
run_step "TypeScript round trip against $BASE" ts_roundtrip

server_alive() {
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "weir-server exited"; tail -50 "$WORK/server.log"; return 1; }
  if grep -Eq 'panicked|ERROR' "$WORK/server.log"; then grep -E 'panicked|ERROR' "$WORK/server.log"; return 1; fi
}
run_step "weir-server still up, no panic or error logged" server_alive

echo
echo "check-clients: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
