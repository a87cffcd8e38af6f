#!/usr/bin/env bash
# scripts/check-docs.sh - the documentation check (`make docs`, part of
# `make test`). Run from anywhere:
#
#   scripts/check-docs.sh            # everything
#   scripts/check-docs.sh links      # one part: links, blocks, drift or run
#
# Checked files: README.md, docs/**/*.md, examples/**/*.md. The work is done
# by tests/docs/check_docs.py (its docstring is the reference):
#
# 1. links  - every relative link (and #anchor) resolves inside the
#             repository; README.md links to nothing outside it; code spans
#             naming repository paths exist.
# 2. blocks - ```json / ```toml / ```yaml blocks parse, JSON given to curl
#             parses, and every ```sh and ```json block of docs/ and
#             examples/ carries a marker: `<!-- docs-check: run -->`,
#             `<!-- docs-check: body METHOD PATH -->` or
#             `<!-- docs-check: skip (reason) -->` on the line above it.
# 3. drift  - docs/configuration.md names every option (server/weir.toml,
#             `weir-server --help`), docs/monitoring.md every metric and
#             alert, docs/api.md every API path, and docs/README.md and
#             README.md's "Documentation" section every docs page.
# 4. run    - for each page, a fresh weir-server (debug build, 127.0.0.1 on
#             a free port, empty temp data dir) and the page's `run` blocks
#             and `body` requests in order against it (a 4xx/5xx answer or a
#             failing command fails the page); then README.md's
#             "Quick start" curl and CLI commands the same way.
#
# Conventions for writers are in docs/contributing.md. Tools: the Python
# venv .tools/docs-check/venv (check-jsonschema, which brings ruamel.yaml
# for the YAML blocks; shared with examples/compose/check.sh), created on
# first use only.
#
# Environment:
#   WEIR_SERVER_BIN, WEIR_CLI_BIN  binaries to use (default: build with
#                                  `cargo build -p weir-server -p weir-client`
#                                  in $CARGO_TARGET_DIR, default
#                                  $HOME/.cache/weir-target, like the Makefile)
#   DOCS_ONLY=TEXT                 run only the pages whose name contains TEXT
#   KEEP=1                         keep the run's work dirs (script, output,
#                                  server log per page) in .tools/docs-check/runs
#
# Ends with "check-docs: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DC=$ROOT/.tools/docs-check
VENV=$DC/venv
PY_PKGS=(check-jsonschema==0.39.0)
CHECK=$ROOT/tests/docs/check_docs.py
ONLY_PART=${1:-all}
case "$ONLY_PART" in all | links | blocks | drift | run) ;; *)
  echo "usage: $0 [links|blocks|drift|run]" >&2; exit 2 ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
log() { printf '%s\n' "$*"; }

# ------------------------------------------------------------------ tools
stamp=$VENV/.weir-pins
if ! [ -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PY_PKGS[*]}" ]; then
  command -v python3 >/dev/null 2>&1 || { echo "check-docs: python3 is missing" >&2; exit 1; }
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "check-docs: install python3-venv" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  log "installing ${PY_PKGS[*]} into ${VENV#"$ROOT"/}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
  printf '%s' "${PY_PKGS[*]}" >"$stamp"
fi
PY=$VENV/bin/python
command -v curl >/dev/null 2>&1 || { echo "check-docs: curl is missing" >&2; exit 1; }

SERVER_BIN=${WEIR_SERVER_BIN:-}
CLI_BIN=${WEIR_CLI_BIN:-}
if [ "$ONLY_PART" = all ] || [ "$ONLY_PART" = drift ] || [ "$ONLY_PART" = run ]; then
  if [ -z "$SERVER_BIN" ] || [ -z "$CLI_BIN" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
    log "building weir-server and weir (debug) in $CARGO_TARGET_DIR"
    cargo build --quiet -p weir-server -p weir-client || { echo "check-docs: cargo build failed" >&2; exit 1; }
    SERVER_BIN=${SERVER_BIN:-$CARGO_TARGET_DIR/debug/weir-server}
    CLI_BIN=${CLI_BIN:-$CARGO_TARGET_DIR/debug/weir}
  fi
fi

# part NAME ARGS...: one static check, its problems listed on failure.
part() {
  local name=$1
  shift
  if "$PY" "$CHECK" "$@" >"$WORK/out.txt" 2>&1; then
    passed=$((passed + 1))
    log "ok   - $name ($(tail -1 "$WORK/out.txt"))"
  else
    failed=$((failed + 1))
    log "FAIL - $name"
    sed 's/^/       /' "$WORK/out.txt" | tail -60
  fi
}

want() { [ "$ONLY_PART" = all ] || [ "$ONLY_PART" = "$1" ]; }

want links && part "links and anchors resolve inside the repository" links
want blocks && part "code blocks parse and carry docs-check markers" blocks
want drift && part "reference pages cover every option, metric, alert, path and page" \
  drift --server-bin "$SERVER_BIN"

if want run; then
  args=(run --server-bin "$SERVER_BIN" --cli-bin "$CLI_BIN")
  [ -n "${DOCS_ONLY:-}" ] && args+=(--only "$DOCS_ONLY")
  if [ "${KEEP:-0}" = 1 ]; then
    rm -rf "$DC/runs"
    args+=(--work "$DC/runs")
  fi
  set +e
  "$PY" "$CHECK" "${args[@]}" | tee "$WORK/run.txt"
  set -e
  passed=$((passed + $(grep -c '^ok   - ' "$WORK/run.txt" || true)))
  failed=$((failed + $(grep -c '^FAIL - ' "$WORK/run.txt" || true)))
  if ! grep -q '^run: [0-9]* passed, 0 failed' "$WORK/run.txt"; then
    grep -q '^FAIL - ' "$WORK/run.txt" || failed=$((failed + 1))
  fi
fi

log ""
log "check-docs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
