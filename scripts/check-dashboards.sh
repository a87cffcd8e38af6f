#!/usr/bin/env bash
# Checks the Grafana dashboards and Prometheus alert rules in dashboards/.
#
#   scripts/check-dashboards.sh [EXPOSED_METRICS_FILE]
#
# (a) promtool check rules / promtool test rules on dashboards/alerts.yml
# (b) every dashboards/*.json against the @grafana/schema `Dashboard` type
#     (TypeScript, tsc --strict), plus structural lint (uids, ids, datasource
#     variable, template variables used but not defined, overlapping panels)
#     and the provisioning examples in dashboards/provisioning/
# (c) every PromQL expression of the dashboards (panel targets, template
#     variable queries, annotations) through `promtool check rules`
# (d) every metric name used by dashboards and alerts is exposed by the server.
#
# EXPOSED_METRICS_FILE lists the names the server exposes, one per line, e.g.
#   curl -s http://127.0.0.1:8080/metrics | grep -v '^#' | sed 's/[{ ].*//' | sort -u > names.txt
# A raw /metrics scrape works too (its "# TYPE" lines are used). Default:
# dashboards/metric-names.txt (base names; "name histogram" accepts only the
# _bucket/_sum/_count series).
#
# Tools are installed on first use (idempotent): promtool from Debian's
# `prometheus` package (as root), node/npm from Debian, and the npm packages
# into .tools/grafana-schema (gitignored). Generated files go to
# .tools/check-dashboards/. Needs no network once the tools are installed.
set -euo pipefail

# Resolve the optional argument before changing directory.
EXPOSED=""
if [[ $# -gt 1 ]]; then
  echo "usage: $0 [EXPOSED_METRICS_FILE]" >&2
  exit 2
fi
if [[ $# -eq 1 ]]; then
  if [[ ! -r "$1" ]]; then
    echo "check-dashboards: cannot read exposed-metrics file '$1'" >&2
    exit 2
  fi
  EXPOSED="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DASH_DIR=dashboards
ALERTS="$DASH_DIR/alerts.yml"
ALERTS_TEST="$DASH_DIR/alerts_test.yml"
NAMES_DEFAULT="$DASH_DIR/metric-names.txt"
NPM_DIR=.tools/grafana-schema
WORK=.tools/check-dashboards
GRAFANA_SCHEMA_VERSION=13.2.3
TYPESCRIPT_RANGE=5
JS_YAML_RANGE=4

[[ -n "$EXPOSED" ]] || EXPOSED="$ROOT/$NAMES_DEFAULT"

log() { printf '==> %s\n' "$*"; }
die() { printf 'check-dashboards: %s\n' "$*" >&2; exit 1; }

shopt -s nullglob
DASHBOARDS=("$DASH_DIR"/*.json)
shopt -u nullglob
[[ ${#DASHBOARDS[@]} -gt 0 ]] || die "no dashboards found in $DASH_DIR/*.json"
[[ -f "$ALERTS" ]] || die "missing $ALERTS"
[[ -f "$ALERTS_TEST" ]] || die "missing $ALERTS_TEST"

# ------------------------------------------------------------------ tools
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "$1 is missing; install it (Debian: apt-get install -y $2) and rerun"
  fi
  log "installing $2 (apt-get)"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $2 >/dev/null 2>&1 || {
    apt-get update >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $2 >/dev/null
  }
}

command -v promtool >/dev/null 2>&1 || apt_install promtool prometheus
command -v promtool >/dev/null 2>&1 || die "promtool still not found after installing prometheus"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install "node/npm" "nodejs npm"
fi

npm_pkg_version() { # prints the installed version of package $1 in $NPM_DIR, or nothing
  local pj="$NPM_DIR/node_modules/$1/package.json"
  if [[ -f "$pj" ]]; then node -p "require('./$pj').version" 2>/dev/null || true; fi
}
need_npm=0
[[ "$(npm_pkg_version @grafana/schema)" == "$GRAFANA_SCHEMA_VERSION" ]] || need_npm=1
[[ "$(npm_pkg_version typescript)" == "$TYPESCRIPT_RANGE".* ]] || need_npm=1
[[ "$(npm_pkg_version js-yaml)" == "$JS_YAML_RANGE".* ]] || need_npm=1
if [[ $need_npm -eq 1 ]]; then
  log "installing @grafana/schema@$GRAFANA_SCHEMA_VERSION typescript@$TYPESCRIPT_RANGE js-yaml@$JS_YAML_RANGE into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error \
    "@grafana/schema@$GRAFANA_SCHEMA_VERSION" "typescript@$TYPESCRIPT_RANGE" "js-yaml@$JS_YAML_RANGE" >/dev/null
fi

rm -rf "$WORK"
mkdir -p "$WORK"

# ------------------------------------------------------------------ helper
# One node program for the JSON/YAML/PromQL work; subcommands below.
cat >"$WORK/helper.cjs" <<'EOF_HELPER'
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require(path.resolve(process.env.NPM_DIR, 'node_modules/js-yaml'));

const [, , cmd, ...args] = process.argv;

function readJson(file) {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file}: invalid JSON: ${e.message}`); }
}

// All panels, rows' nested panels included.
function allPanels(d) {
  const out = [];
  const walk = (ps) => { for (const p of ps || []) { out.push(p); if (Array.isArray(p.panels)) walk(p.panels); } };
  walk(d.panels);
  return out;
}

// Every PromQL expression of a dashboard: {where, expr}.
function dashboardExprs(file, d) {
  const base = path.basename(file);
  const out = [];
  for (const p of allPanels(d)) {
    for (const t of p.targets || []) {
      if (typeof t.expr === 'string' && t.expr.trim()) out.push({ where: `${base}: panel "${p.title}" (id ${p.id}) query ${t.refId}`, expr: t.expr });
    }
  }
  for (const v of (d.templating && d.templating.list) || []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query && v.query.query) || '';
    const e = variableQueryExpr(q);
    if (e) out.push({ where: `${base}: variable "${v.name}"`, expr: e });
  }
  for (const a of (d.annotations && d.annotations.list) || []) {
    if (typeof a.expr === 'string' && a.expr.trim()) out.push({ where: `${base}: annotation "${a.name}"`, expr: a.expr });
  }
  return out;
}

// Grafana Prometheus variable query → the PromQL part (or null).
function variableQueryExpr(q) {
  q = q.trim();
  let m = q.match(/^label_values\s*\(([\s\S]*)\)$/);
  if (m) {
    const inner = m[1];
    let depth = 0, cut = -1, inStr = null;
    for (let i = 0; i < inner.length; i++) {
      const c = inner[i];
      if (inStr) { if (c === '\\') i++; else if (c === inStr) inStr = null; continue; }
      if (c === '"' || c === "'" || c === '`') inStr = c;
      else if ('({['.includes(c)) depth++;
      else if (')}]'.includes(c)) depth--;
      else if (c === ',' && depth === 0) cut = i;
    }
    return cut >= 0 ? inner.slice(0, cut).trim() : null; // label_values(label) has no metric
  }
  m = q.match(/^query_result\s*\(([\s\S]*)\)$/);
  if (m) return m[1].trim();
  if (/^(label_names|metrics)\s*\(/.test(q) || q === '') return null;
  return q; // a plain series query
}

// Grafana template variables → values promtool accepts.
function substituteVars(expr) {
  const durations = { __rate_interval: '5m', __interval: '1m', __range: '1h', __auto: '1m' };
  const numbers = { __interval_ms: '60000', __range_s: '3600', __range_ms: '3600000' };
  const repl = (name) => durations[name] || numbers[name] || 'placeholder';
  return expr
    .replace(/\$\{(\w+)(?::[^}]*)?\}/g, (_, n) => repl(n))
    .replace(/\[\[(\w+)(?::[^\]]*)?\]\]/g, (_, n) => repl(n))
    .replace(/\$(\w+)/g, (_, n) => repl(n));
}

function varsUsed(expr) {
  const out = new Set();
  for (const re of [/\$\{(\w+)(?::[^}]*)?\}/g, /\[\[(\w+)(?::[^\]]*)?\]\]/g, /\$(\w+)/g]) {
    for (const m of expr.matchAll(re)) out.add(m[1]);
  }
  return out;
}

// Metric names referenced by a PromQL expression (no full parser needed:
// strings, label matchers, ranges, grouping clauses and function calls are
// removed, the remaining identifiers are metric names).
const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
  'offset', 'bool', 'inf', 'nan', 'atan2']);
function metricNames(expr) {
  let s = expr;
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/#[^\n]*/g, ' ');
  s = s.replace(/\$\{\w+(?::[^}]*)?\}|\[\[\w+(?::[^\]]*)?\]\]|\$\w+/g, ' '); // template variables
  const names = new Set();
  // {__name__="x"} / {__name__=~"..."} selectors are not used here; flag them so they are not silently skipped.
  if (/__name__/.test(expr)) names.add('__name__ selector (unsupported by this check)');
  s = s.replace(/\{[^{}]*\}/g, ' ');
  s = s.replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ');
  s = s.replace(/\boffset\s+-?[0-9][0-9a-z]*/gi, ' ');
  s = s.replace(/@\s*(start\s*\(\s*\)|end\s*\(\s*\)|[0-9.]+)/g, ' ');
  const tok = /(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (const m of s.matchAll(tok)) {
    if (m[1] || !m[2]) continue;
    if (m[3]) continue; // function or aggregation
    if (KEYWORDS.has(m[2].toLowerCase())) continue;
    names.add(m[2]);
  }
  return names;
}

function alertExprs(file) {
  const doc = yaml.load(fs.readFileSync(file, 'utf8'));
  const out = [];
  for (const g of (doc && doc.groups) || []) {
    for (const r of g.rules || []) out.push({ where: `${path.basename(file)}: ${r.alert ? 'alert ' + r.alert : 'record ' + r.record}`, expr: String(r.expr) });
  }
  return out;
}

// Allowed series names from an exposed-names file.
function exposedNames(file) {
  const allowed = new Set();
  const base = new Set();
  const typed = new Map();
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    let m = line.match(/^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\w+)/);
    if (m) { typed.set(m[1], m[2]); continue; }
    if (line.startsWith('#')) continue;
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s+(counter|gauge|histogram|summary|untyped)\b)?/);
    if (!m) throw new Error(`${file}: cannot read line: ${raw}`);
    if (m[2]) typed.set(m[1], m[2]); else base.add(m[1]);
  }
  for (const [n, t] of typed) {
    if (t === 'histogram') ['_bucket', '_sum', '_count'].forEach((s) => allowed.add(n + s));
    else if (t === 'summary') [ '', '_sum', '_count'].forEach((s) => allowed.add(n + s));
    else allowed.add(n);
  }
  for (const n of base) {
    allowed.add(n);
    // untyped base names may be histograms: accept their series too
    if (!/_(bucket|sum|count)$/.test(n)) ['_bucket', '_sum', '_count'].forEach((s) => allowed.add(n + s));
  }
  return { allowed, listed: new Set([...typed.keys(), ...base]) };
}

// Names Prometheus itself generates per scrape target.
const PROMETHEUS_GENERATED = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped',
  'scrape_samples_post_metric_relabeling', 'scrape_series_added']);

function lint(files) {
  const errors = [];
  const uids = new Map();
  for (const file of files) {
    const b = path.basename(file);
    let d;
    try { d = readJson(file); } catch (e) { errors.push(e.message); continue; }
    const err = (m) => errors.push(`${b}: ${m}`);
    if (!d.uid) err('missing uid'); else if (uids.has(d.uid)) err(`uid "${d.uid}" also used by ${uids.get(d.uid)}`); else uids.set(d.uid, b);
    if (d.uid && d.uid.length > 40) err('uid longer than 40 characters');
    if (!d.title) err('missing title');
    if (!Array.isArray(d.tags) || !d.tags.includes('weir')) err('tags must include "weir"');
    if (!(d.schemaVersion >= 39)) err(`schemaVersion ${d.schemaVersion} < 39`);
    if (d.id !== undefined && d.id !== null) err('remove the instance-specific "id" (use null or omit it)');
    const vars = ((d.templating && d.templating.list) || []);
    const varNames = new Set(vars.map((v) => v.name));
    const dsVar = vars.find((v) => v.type === 'datasource');
    if (!dsVar || dsVar.name !== 'datasource' || dsVar.query !== 'prometheus') err('needs a template variable "datasource" of type datasource, query "prometheus"');
    const dsOk = (ds) => ds && ds.type === 'prometheus' && (ds.uid === '${datasource}' || ds.uid === '$datasource');
    for (const v of vars) {
      if (v.type === 'query' && !dsOk(v.datasource)) err(`variable "${v.name}": datasource must be {type: prometheus, uid: \${datasource}}`);
    }
    const ids = new Set();
    const rects = [];
    for (const p of allPanels(d)) {
      const where = `panel "${p.title}" (id ${p.id})`;
      if (typeof p.id !== 'number') err(`${where}: missing numeric id`);
      else if (ids.has(p.id)) err(`${where}: duplicate panel id`);
      ids.add(p.id);
      if (!p.title) err(`${where}: missing title`);
      const g = p.gridPos;
      if (!g || [g.x, g.y, g.w, g.h].some((n) => typeof n !== 'number')) { err(`${where}: missing gridPos`); continue; }
      if (g.x < 0 || g.w < 1 || g.x + g.w > 24) err(`${where}: gridPos outside the 24-column grid`);
      for (const r of rects) {
        if (g.x < r.g.x + r.g.w && r.g.x < g.x + g.w && g.y < r.g.y + r.g.h && r.g.y < g.y + g.h) err(`${where}: overlaps ${r.where}`);
      }
      rects.push({ g, where });
      if (p.type === 'row') continue;
      if (!dsOk(p.datasource)) err(`${where}: datasource must be {type: prometheus, uid: \${datasource}}`);
      const targets = p.targets || [];
      if (!targets.length) err(`${where}: no queries`);
      const refs = new Set();
      for (const t of targets) {
        if (!t.refId || refs.has(t.refId)) err(`${where}: missing or duplicate refId "${t.refId}"`);
        refs.add(t.refId);
        if (t.datasource && !dsOk(t.datasource)) err(`${where} query ${t.refId}: datasource must be \${datasource}`);
        if (!t.expr || !String(t.expr).trim()) err(`${where} query ${t.refId}: empty expr`);
      }
      if (['timeseries', 'stat', 'bargauge', 'gauge'].includes(p.type)) {
        const unit = p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.unit;
        if (!unit) err(`${where}: no unit (fieldConfig.defaults.unit)`);
      }
      if (!p.description) err(`${where}: no description`);
    }
    for (const { where, expr } of dashboardExprs(file, d)) {
      for (const v of varsUsed(expr)) {
        if (!v.startsWith('__') && !varNames.has(v)) err(`${where.slice(b.length + 2)}: uses undefined variable $${v}`);
      }
    }
  }
  if (errors.length) {
    console.error(errors.map((e) => '  ' + e).join('\n'));
    process.exit(1);
  }
  console.log(`  ${files.length} dashboards: uids, panel ids, layout, datasources, units, variables OK`);
}

// Grafana provisioning examples: parse and check the fields Grafana needs.
function provisioning(dir) {
  const errors = [];
  const load = (f) => { try { return yaml.load(fs.readFileSync(path.join(dir, f), 'utf8')); } catch (e) { errors.push(`${f}: ${e.message}`); return null; } };
  const dp = load('dashboards.yml');
  if (dp) {
    const ps = dp.providers || [];
    if (dp.apiVersion !== 1) errors.push('dashboards.yml: apiVersion must be 1');
    if (!ps.length) errors.push('dashboards.yml: no providers');
    for (const p of ps) {
      if (!p.name || p.type !== 'file' || !(p.options && p.options.path)) errors.push(`dashboards.yml: provider "${p.name}" needs name, type: file and options.path`);
      if (p.folder !== 'Weir') errors.push(`dashboards.yml: provider "${p.name}" should use folder "Weir"`);
    }
  }
  const ds = load('datasource.yml');
  if (ds) {
    const list = ds.datasources || [];
    if (ds.apiVersion !== 1) errors.push('datasource.yml: apiVersion must be 1');
    if (!list.some((d) => d.type === 'prometheus' && d.name && d.url)) errors.push('datasource.yml: needs a datasource with type prometheus, name and url');
  }
  if (errors.length) { console.error(errors.map((e) => '  ' + e).join('\n')); process.exit(1); }
  console.log('  provisioning/dashboards.yml and provisioning/datasource.yml OK');
}

function tsgen(outDir, files) {
  fs.mkdirSync(outDir, { recursive: true });
  const header = [
    "import type { Dashboard } from '@grafana/schema';",
    '',
    '// A JSON literal cannot name a TypeScript string enum member (ThresholdsMode.Absolute',
    '// is "absolute" in dashboard JSON), so compare against the schema type with every',
    '// enum replaced by its literal values. Everything else is checked as declared.',
    'type Json<T> = T extends string ? `${T}`',
    '  : T extends number | boolean | null | undefined ? T',
    '  : T extends Array<infer U> ? Array<Json<U>>',
    '  : T extends object ? { [K in keyof T]: Json<T[K]> }',
    '  : T;',
    '',
  ].join('\n');
  const outs = [];
  for (const file of files) {
    const d = readJson(file);
    const name = path.basename(file, '.json').replace(/[^A-Za-z0-9_]/g, '_');
    const out = path.join(outDir, `${name}.ts`);
    fs.writeFileSync(out, `${header}// Source: ${file}\nexport const dashboard: Json<Dashboard> = ${JSON.stringify(d, null, 2)};\n`);
    outs.push(out);
  }
  console.log(outs.join('\n'));
}

function exprRules(out, files) {
  const groups = [];
  let n = 0;
  const index = [];
  for (const file of files) {
    const d = readJson(file);
    const rules = dashboardExprs(file, d).map(({ where, expr }) => {
      n++;
      index.push(`dashboard_expr_${n}\t${where}\t${expr.replace(/\s+/g, ' ')}`);
      return { record: `dashboard_expr_${n}`, expr: substituteVars(expr) };
    });
    groups.push({ name: path.basename(file), rules });
  }
  // JSON is valid YAML; promtool reads it as a rules file.
  fs.writeFileSync(out, JSON.stringify({ groups }, null, 2) + '\n');
  fs.writeFileSync(out + '.index.tsv', index.join('\n') + '\n');
  console.log(`  ${n} expressions from ${files.length} dashboards -> ${out}`);
}

function names(exposedFile, alertsFile, files) {
  const { allowed, listed } = exposedNames(exposedFile);
  if (!listed.size) { console.error(`  ${exposedFile} lists no metric names`); process.exit(1); }
  const uses = new Map(); // name -> [where]
  const add = (where, expr) => { for (const n of metricNames(expr)) { if (!uses.has(n)) uses.set(n, []); uses.get(n).push(where); } };
  for (const file of files) for (const { where, expr } of dashboardExprs(file, readJson(file))) add(where, expr);
  for (const { where, expr } of alertExprs(alertsFile)) add(where, expr);
  const unknown = [...uses.keys()].filter((n) => !allowed.has(n) && !PROMETHEUS_GENERATED.has(n)).sort();
  if (unknown.length) {
    console.error(`  metric names not exposed by the server (per ${exposedFile}):`);
    for (const n of unknown) {
      console.error(`    ${n}`);
      for (const w of [...new Set(uses.get(n))].slice(0, 5)) console.error(`        used in ${w}`);
    }
    process.exit(1);
  }
  const usedBases = new Set([...uses.keys()].map((n) => n.replace(/_(bucket|sum|count)$/, '')));
  const unused = [...listed].filter((n) => !uses.has(n) && !usedBases.has(n) && !usedBases.has(n.replace(/_(bucket|sum|count)$/, ''))).sort();
  console.log(`  ${uses.size} metric names used by ${files.length} dashboards and ${path.basename(alertsFile)}; all exposed (${exposedFile})`);
  if (unused.length) console.log(`  note: exposed but on no dashboard or alert: ${unused.join(', ')}`);
}

try {
  switch (cmd) {
    case 'lint': lint(args); break;
    case 'provisioning': provisioning(args[0]); break;
    case 'tsgen': tsgen(args[0], args.slice(1)); break;
    case 'exprs': exprRules(args[0], args.slice(1)); break;
    case 'names': names(args[0], args[1], args.slice(2)); break;
    default: throw new Error(`unknown subcommand ${cmd}`);
  }
} catch (e) {
  console.error('  ' + e.message);
  process.exit(1);
}
EOF_HELPER
helper() { NPM_DIR="$ROOT/$NPM_DIR" node "$WORK/helper.cjs" "$@"; }

failed=()
step() { # step NAME CMD...: runs CMD, records a failure without stopping
  local name=$1; shift
  log "$name"
  if "$@"; then
    :
  else
    failed+=("$name")
    printf '    FAILED: %s\n' "$name" >&2
  fi
}

# ------------------------------------------------------------------ (a)
alert_rules() {
  promtool check rules "$ALERTS" && promtool test rules "$ALERTS_TEST"
}
step "alert rules: promtool check rules + test rules" alert_rules

# ------------------------------------------------------------------ (b)
dashboard_lint() { helper lint "${DASHBOARDS[@]}" && helper provisioning "$DASH_DIR/provisioning"; }
step "dashboards: structure lint" dashboard_lint

dashboard_schema() {
  local ts_dir="$NPM_DIR/check" files
  rm -rf "$ts_dir"
  files=$(helper tsgen "$ts_dir" "${DASHBOARDS[@]}") || return 1
  # shellcheck disable=SC2086
  (cd "$NPM_DIR" && node_modules/.bin/tsc --noEmit --strict --skipLibCheck \
      --target es2022 --module esnext --moduleResolution bundler \
      ${files//$NPM_DIR\//}) || return 1
  echo "  ${#DASHBOARDS[@]} dashboards match @grafana/schema@$GRAFANA_SCHEMA_VERSION Dashboard (tsc --strict)"
}
step "dashboards: @grafana/schema Dashboard type (tsc)" dashboard_schema

# ------------------------------------------------------------------ (c)
dashboard_promql() {
  local rules="$WORK/dashboard-exprs.rules.yml" out
  helper exprs "$rules" "${DASHBOARDS[@]}" || return 1
  if ! out=$(promtool check rules "$rules" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "  (rule names map to panels in $rules.index.tsv)" >&2
    grep -o 'dashboard_expr_[0-9]*' <<<"$out" | sort -u | while read -r r; do
      grep -P "^$r\t" "$rules.index.tsv" >&2 || true
    done
    return 1
  fi
  printf '%s\n' "$out" | sed 's/^/  /'
}
step "dashboards: PromQL (promtool check rules)" dashboard_promql

# ------------------------------------------------------------------ (d)
metric_names() { helper names "$EXPOSED" "$ALERTS" "${DASHBOARDS[@]}"; }
step "metric names exposed by the server" metric_names

# ------------------------------------------------------------------ summary
if [[ ${#failed[@]} -gt 0 ]]; then
  printf 'check-dashboards: FAILED (%d of 5 checks): %s\n' "${#failed[@]}" "$(IFS=';'; echo "${failed[*]}")" >&2
  exit 1
fi
printf 'check-dashboards: OK - %d dashboards, %s alert rules tested, PromQL valid, all metric names exposed\n' \
  "${#DASHBOARDS[@]}" "$(grep -c '^ *- alert:' "$ALERTS")"
