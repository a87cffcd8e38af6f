#!/usr/bin/env bash
# examples/compose/check.sh - checks the Compose example without a container
# engine (`make examples`). Run from anywhere:
#
#   examples/compose/check.sh
#
# 1. docker-compose.yml is valid under the Compose specification JSON
#    schema (check-jsonschema's vendored copy of the compose-spec schema,
#    `--builtin-schema vendor.compose-spec`), and a broken copy is rejected.
# 2. prometheus/prometheus.yml passes `promtool check config` (the alert
#    rules file resolved to dashboards/alerts.yml, as it is mounted).
# 3. Every bind-mounted file or directory exists, the Grafana provider path
#    is where the dashboards are mounted, the data source and the scrape
#    target name services of the file.
# 4. A real weir-server (debug) with the demo tokens file: the demo token
#    works, no token gets 401, /metrics is open (what Prometheus needs).
#
# Not done here: `docker compose up` (no container engine on the build
# machines). WEIR_SERVER_BIN=PATH uses that server binary instead of
# building one. Tools: check-jsonschema into .tools/docs-check/venv (PyPI),
# promtool (`apt-get install prometheus`), only when missing.
# Ends with "compose: N passed, N failed"; exit 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
DIR=$ROOT/examples/compose
VENV=$ROOT/.tools/docs-check/venv
PY_PKGS=(check-jsonschema==0.39.0)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
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

passed=0
failed=0
run_step() {
  local name=$1 out=$WORK/step.log rc=0
  shift
  set +e
  (set -e; "$@") >"$out" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); echo "ok   - $name"
  else
    failed=$((failed + 1)); echo "FAIL - $name"; sed 's/^/       /' "$out" | tail -40
  fi
}

# ------------------------------------------------------------------ tools
stamp=$VENV/.weir-pins
if ! [ -x "$VENV/bin/check-jsonschema" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PY_PKGS[*]}" ]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "compose: install python3-venv" >&2; exit 1; }
    apt-get install -y -qq python3-venv >/dev/null
  }
  echo "installing ${PY_PKGS[*]} into ${VENV#"$ROOT"/}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
  printf '%s' "${PY_PKGS[*]}" >"$stamp"
fi
if ! command -v promtool >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "compose: promtool missing (apt-get install prometheus)" >&2; exit 1; }
  echo "installing prometheus (promtool)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  }
fi

# ------------------------------------------------------------- 1. schema
run_step "docker-compose.yml valid under the Compose specification schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$DIR/docker-compose.yml"

schema_rejects() {
  # The validator must be able to fail: a service with an unknown key.
  sed 's/^    image: prom\/prometheus/    imagee: prom\/prometheus/' "$DIR/docker-compose.yml" >"$WORK/broken.yml"
  grep -q imagee "$WORK/broken.yml"
  if "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$WORK/broken.yml"; then
    echo "the schema accepted a service with the unknown key 'imagee'"; return 1
  fi
}
run_step "the schema check rejects a broken copy" schema_rejects

# ------------------------------------------------------------ 2. promtool
prometheus_config() {
  sed "s|/etc/prometheus/rules/weir-alerts.yml|$ROOT/dashboards/alerts.yml|" \
    "$DIR/prometheus/prometheus.yml" >"$WORK/prometheus.yml"
  promtool check config "$WORK/prometheus.yml"
}
run_step "promtool check config prometheus/prometheus.yml (+ dashboards/alerts.yml)" prometheus_config

# ------------------------------------------------------ 3. wiring of files
wiring() {
  "$VENV/bin/python" - "$DIR" <<'PY'
import os, sys
from ruamel.yaml import YAML

d = sys.argv[1]
yaml = YAML(typ="safe")
compose = yaml.load(open(os.path.join(d, "docker-compose.yml")))
services = compose["services"]
errors = []
mounts = {}
for name, svc in services.items():
    for v in svc.get("volumes", []):
        source, target = v.split(":")[:2]
        mounts.setdefault(name, {})[target] = source
        if source.startswith((".", "/")):
            path = os.path.normpath(os.path.join(d, source))
            if not os.path.exists(path):
                errors.append(f"{name}: bind mount source {source} does not exist")
        elif source not in (compose.get("volumes") or {}):
            errors.append(f"{name}: volume {source} is not declared")
build = services["weir"]["build"]
if not os.path.exists(os.path.join(d, build["context"], build["dockerfile"])):
    errors.append("weir: the Dockerfile is not where build names it")

# Grafana: the provider reads the directory the dashboards are mounted on.
provider = yaml.load(open(os.path.join(d, "../../dashboards/provisioning/dashboards.yml")))
path = provider["providers"][0]["options"]["path"]
if os.path.normpath(mounts["grafana"].get(path, "")) != "../../dashboards":
    errors.append(f"grafana: the provider path {path} is not the mounted dashboards directory")
home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
if not os.path.exists(os.path.join(d, "../../dashboards", os.path.relpath(home, path))):
    errors.append(f"grafana: home dashboard {home} is not a mounted file")
datasource = yaml.load(open(os.path.join(d, "../../dashboards/provisioning/datasource.yml")))
url = datasource["datasources"][0]["url"]
if url != "http://prometheus:9090" or "prometheus" not in services:
    errors.append(f"grafana: data source url {url} is not the prometheus service")

# Prometheus: scrapes the weir service on the port the image listens on,
# and loads the rules file where it is mounted.
prom = yaml.load(open(os.path.join(d, "prometheus/prometheus.yml")))
targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
if targets != ["weir:8080"]:
    errors.append(f"prometheus: scrape targets {targets}, expected weir:8080")
for rule_file in prom["rule_files"]:
    if mounts["prometheus"].get(rule_file) != "../../dashboards/alerts.yml":
        errors.append(f"prometheus: rule file {rule_file} is not mounted from dashboards/alerts.yml")
tokens = services["weir"]["environment"]["WEIR_AUTH_TOKENS_FILE"]
if mounts["weir"].get(tokens) != "./weir/tokens.toml":
    errors.append(f"weir: {tokens} is not mounted from weir/tokens.toml")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
}
run_step "mounted files exist; provider path, data source, scrape target and rules wired" wiring

# ------------------------------------------------- 4. the server with them
SERVER_BIN=${WEIR_SERVER_BIN:-}
if [ -z "$SERVER_BIN" ]; then
  echo "building weir-server (debug) in $CARGO_TARGET_DIR"
  cargo build --quiet -p weir-server
  SERVER_BIN=$CARGO_TARGET_DIR/debug/weir-server
fi
server_with_demo_tokens() {
  NO_COLOR=1 "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/data" \
    --auth-tokens-file "$DIR/weir/tokens.toml" --auth-protect-metrics false \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*weir listening.* listen=\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$WORK/server.log"; return 1; }
  # This runs in run_step's subshell: stop the server on the way out here.
  trap 'kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null' EXIT
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://$addr/v1/topics")
  [ "$code" = 401 ] || { echo "no token: $code, expected 401"; return 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Authorization: Bearer weir-demo-token' "http://$addr/v1/topics")
  [ "$code" = 200 ] || { echo "demo token: $code, expected 200"; return 1; }
  curl -sf --max-time 10 "http://$addr/metrics" | grep -q '^weir_ready 1' \
    || { echo "/metrics without a token did not answer weir_ready 1"; return 1; }
}
run_step "weir-server with weir/tokens.toml: demo token 200, none 401, /metrics open" server_with_demo_tokens

echo ""
echo "compose: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
