#!/usr/bin/env python3
"""Queries a real Prometheus (scraping a real Weir server) for
scripts/check-monitoring.sh. Standard library only.

    check_queries.py PROM_URL panels   --job J --instance I [--finite] [--label NAME]
    check_queries.py PROM_URL series   --job J --instance I --topics T,.. --subscriptions T/S,..
    check_queries.py PROM_URL alerts   --job J --instance I --since UNIX_TS [--expect ALERT:LABEL=V,..]
                                       [--require ALERT:LABEL=V,..]
    check_queries.py PROM_URL exprs    (prints the substituted expressions, one per line)

panels: every PromQL expression of dashboards/*.json (panel targets, rows'
        nested panels included, template-variable queries with --variables,
        annotations), Grafana variables substituted, through
        /api/v1/query; each must return at least one sample (with --finite:
        at least one that is not NaN/Inf, i.e. something Grafana can draw).
series: the counter series the server creates at 0 for every topic and
        subscription, so rate()/increase() see their first event.
alerts: no alert may be active (pending or firing) now or at any time since
        --since (the ALERTS series), except the ones given with --expect
        (allowed) or --require (allowed, and must have been active), and
        every rule must evaluate without error.
The last line printed is a one-line summary; the exit code is 1 on failure.
"""

import argparse
import glob
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# WEIR_DASHBOARDS_DIR: check other dashboards (e.g. a modified copy).
DASHBOARD_DIR = os.environ.get("WEIR_DASHBOARDS_DIR") or os.path.join(ROOT, "dashboards")
DASHBOARDS = sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))

# Grafana's built-in variables. The check scrapes every second, so Grafana's
# $__rate_interval (max(4 x scrape interval, $__interval + scrape interval))
# would be a few seconds; 1m keeps every rate() over the traffic phase.
BUILTIN = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__auto": "1m",
    "__interval_ms": "15000",
    "__range_s": "300",
    "__range_ms": "300000",
}


def get(prom, path, params=None, timeout=10):
    url = prom.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(prom, expr):
    return get(prom, "/api/v1/query", {"query": expr})


def all_panels(d):
    out = []

    def walk(ps):
        for p in ps or []:
            out.append(p)
            walk(p.get("panels"))

    walk(d.get("panels"))
    return out


def variable_expr(q):
    """Grafana Prometheus variable query -> its PromQL part (or None);
    the same rules as scripts/check-dashboards.sh."""
    q = q.strip()
    m = re.match(r"^label_values\s*\(([\s\S]*)\)$", q)
    if m:
        inner, depth, cut, in_str, i = m.group(1), 0, -1, None, 0
        while i < len(inner):
            c = inner[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == in_str:
                    in_str = None
            elif c in "\"'`":
                in_str = c
            elif c in "({[":
                depth += 1
            elif c in ")}]":
                depth -= 1
            elif c == "," and depth == 0:
                cut = i
            i += 1
        return inner[:cut].strip() if cut >= 0 else None
    m = re.match(r"^query_result\s*\(([\s\S]*)\)$", q)
    if m:
        return m.group(1).strip()
    if q == "" or re.match(r"^(label_names|metrics)\s*\(", q):
        return None
    return q


def dashboard_exprs(variables):
    """[(where, expr)] of every dashboard."""
    out = []
    for f in DASHBOARDS:
        base = os.path.basename(f)
        with open(f, encoding="utf-8") as fh:
            d = json.load(fh)
        for p in all_panels(d):
            for t in p.get("targets") or []:
                e = t.get("expr")
                if isinstance(e, str) and e.strip():
                    out.append((f'{base}: panel "{p.get("title")}" (id {p.get("id")}) query {t.get("refId")}', e))
        if variables:
            for v in (d.get("templating") or {}).get("list") or []:
                if v.get("type") != "query":
                    continue
                q = v.get("query")
                q = q if isinstance(q, str) else (q or {}).get("query", "")
                e = variable_expr(q)
                if e:
                    out.append((f'{base}: variable "{v.get("name")}"', e))
        for a in (d.get("annotations") or {}).get("list") or []:
            e = a.get("expr")
            if isinstance(e, str) and e.strip():
                out.append((f'{base}: annotation "{a.get("name")}"', e))
    return out


def substitute(expr, values):
    """$var, ${var}, ${var:fmt} and [[var]] -> values[var]; unknown
    dashboard variables (topic, subscription ...) -> ".*", which is what
    "All" sends for them (allValue ".*")."""

    def repl(name):
        if name in BUILTIN:
            return BUILTIN[name]
        return values.get(name, ".*")

    expr = re.sub(r"\$\{(\w+)(?::[^}]*)?\}", lambda m: repl(m.group(1)), expr)
    expr = re.sub(r"\[\[(\w+)(?::[^\]]*)?\]\]", lambda m: repl(m.group(1)), expr)
    return re.sub(r"\$(\w+)", lambda m: repl(m.group(1)), expr)


def samples(data):
    """Values of an instant query result as floats (one per series)."""
    t, r = data["resultType"], data["result"]
    if t == "vector":
        return [float(s["value"][1]) for s in r]
    if t == "scalar":
        return [float(r[1])]
    if t == "matrix":
        return [float(v[1]) for s in r for v in s["values"]]
    return []


def integer_histograms(prom, exprs):
    """Histograms (base names) whose finite bucket boundaries all lie halfway
    between integers (0.5, 1.5, 2.5, 4.5 ...): the server's buckets for
    integer counts (messages per request, operations per batch)."""
    names = set()
    for _, e in exprs:
        if "histogram_quantile" in e:
            names.update(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)_bucket\b", e))
    out = set()
    for n in sorted(names):
        les = [s["metric"].get("le") for s in query(prom, f"group by (le) ({n}_bucket)")["result"]]
        finite = [float(x) for x in les if x not in (None, "+Inf")]
        if finite and all(abs(x - math.floor(x) - 0.5) < 1e-9 for x in finite):
            out.add(n)
    return out


def cmd_panels(a):
    values = {"job": a.job, "instance": a.instance}
    exprs = dashboard_exprs(a.variables)
    # Quantiles of integer-valued histograms must be whole numbers (p50 of
    # "messages per request" cannot be 0.52); checked once there is traffic.
    ints = integer_histograms(a.prom, exprs) if a.finite else set()
    ok, bad = 0, []
    for where, raw in exprs:
        e = substitute(raw, values)
        try:
            vals = samples(query(a.prom, e))
        except Exception as ex:  # noqa: BLE001 - report every failure the same way
            bad.append((where, e, f"query failed: {ex}"))
            continue
        quantile_of_int = "histogram_quantile" in e and any(f"{n}_bucket" in e for n in ints)
        if not vals:
            bad.append((where, e, "empty result (Grafana: No data)"))
        elif a.finite and not any(math.isfinite(v) for v in vals):
            bad.append((where, e, f"only NaN/Inf values {vals[:4]} (nothing to draw)"))
        elif quantile_of_int and any(math.isfinite(v) and v != round(v) for v in vals):
            bad.append((where, e, f"quantile of an integer-valued histogram is not a whole number: {vals[:4]}"))
        else:
            ok += 1
    for where, e, why in bad:
        print(f"  FAIL {where}: {why}\n       {e}")
    kind = "with a finite value" if a.finite else "non-empty"
    if ints:
        kind += f"; quantiles of {', '.join(sorted(ints))} whole numbers"
    print(f"{a.label}: {ok} of {len(exprs)} dashboard queries returned data ({kind})")
    return 0 if not bad else 1


# Counter series the server creates at 0 when a topic or subscription is
# created (server/src/metrics.rs topic_created / subscription_created), so
# the first produce, ack, nack, redelivery or dead letter is an increase
# that rate()/increase() and WeirDeadLettersAppearing can see.
TOPIC_COUNTERS = [
    "weir_messages_produced_total",
    "weir_bytes_produced_total",
    "weir_retention_deleted_messages_total",
]
SUB_COUNTERS = [
    "weir_subscription_deliveries_total",
    "weir_subscription_acks_total",
    "weir_subscription_nacks_total",
    "weir_subscription_dead_lettered_total",
    "weir_subscription_circuit_breaker_trips_total",
]
REDELIVERY_REASONS = ["nack", "lease_expired", "disconnect"]


def cmd_series(a):
    sel = f'job="{a.job}", instance="{a.instance}"'
    want = []
    for t in filter(None, a.topics.split(",")):
        want += [(f'{m}{{{sel}, topic="{t}"}}', f"{m}{{topic={t}}}") for m in TOPIC_COUNTERS]
    for ts in filter(None, a.subscriptions.split(",")):
        t, s = ts.split("/", 1)
        lab = f'{sel}, topic="{t}", subscription="{s}"'
        want += [(f"{m}{{{lab}}}", f"{m}{{topic={t}, subscription={s}}}") for m in SUB_COUNTERS]
        want += [
            (f'weir_subscription_redeliveries_total{{{lab}, reason="{r}"}}',
             f"weir_subscription_redeliveries_total{{topic={t}, subscription={s}, reason={r}}}")
            for r in REDELIVERY_REASONS
        ]
    missing = []
    for e, name in want:
        if not samples(query(a.prom, e)):
            missing.append(name)
    for name in missing:
        print(f"  FAIL absent before its first event: {name}")
    print(f"series: {len(want) - len(missing)} of {len(want)} per-topic/per-subscription counter series exist at creation")
    return 0 if not missing else 1


def parse_expect(specs):
    """ALERT:label=value,label=value -> [(alert, {label: value})]"""
    out = []
    for s in specs or []:
        name, _, rest = s.partition(":")
        labels = dict(kv.split("=", 1) for kv in filter(None, rest.split(",")))
        out.append((name, labels))
    return out


def cmd_alerts(a):
    required = parse_expect(a.require)
    expected = parse_expect(a.expect) + required

    def is_expected(labels):
        return any(labels.get("alertname") == n and all(labels.get(k) == v for k, v in ls.items())
                   for n, ls in expected)

    def show(labels):
        keep = {k: v for k, v in labels.items() if k not in ("alertname", "alertstate", "severity", "__name__")}
        return labels.get("alertname", "?") + json.dumps(keep, sort_keys=True)

    failures = []
    # Rules loaded and evaluating without errors.
    groups = get(a.prom, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"] if r.get("type") == "alerting"]
    with open(os.path.join(DASHBOARD_DIR, "alerts.yml"), encoding="utf-8") as fh:
        want_rules = len(re.findall(r"^\s*- alert:", fh.read(), re.M))
    if len(rules) != want_rules:
        failures.append(f"{len(rules)} alerting rules loaded, alerts.yml has {want_rules}")
    for r in rules:
        if r.get("health") != "ok" or r.get("lastError"):
            failures.append(f"rule {r.get('name')}: health {r.get('health')} {r.get('lastError', '')}".strip())
    # Active now.
    active = get(a.prom, "/api/v1/alerts")["alerts"]
    noted = []
    for x in active:
        labels = dict(x["labels"], alertname=x["labels"].get("alertname"))
        if is_expected(labels):
            noted.append(f"{x['state']} {show(labels)}")
        else:
            failures.append(f"{x['state']} now: {show(labels)} (value {x.get('value')})")
    # Active at any time since --since (the start of the run): the ALERTS series.
    window = max(1, int(time.time() - a.since) + 5)
    hist = query(a.prom, f"max_over_time(ALERTS[{window}s])")["result"]
    seen = set()
    for s in hist:
        labels = s["metric"]
        key = (labels.get("alertstate"), show(labels))
        if key in seen or is_expected(labels):
            continue
        seen.add(key)
        # Alerts active now are reported above already.
        if not any(show(dict(x["labels"])) == key[1] and x["state"] == key[0] for x in active):
            failures.append(f"{labels.get('alertstate')} during the run: {show(labels)}")
    for name, ls in required:
        if not any(s["metric"].get("alertname") == name and all(s["metric"].get(k) == v for k, v in ls.items())
                   for s in hist):
            failures.append(f"{name}{json.dumps(ls, sort_keys=True)} was never pending or firing")
    for n in noted:
        print(f"  expected: {n}")
    for f in failures:
        print(f"  FAIL {f}")
    unexpected = [x for x in active if not is_expected(dict(x["labels"]))]
    n_firing = sum(1 for x in unexpected if x["state"] == "firing")
    exp = ", ".join(f"{x['labels'].get('alertname')} {x['state']}" for x in active if is_expected(dict(x["labels"])))
    print(f"alerts: {len(rules)} rules evaluated; {n_firing} alerts firing, {len(unexpected) - n_firing} pending"
          + (f" (expected: {exp})" if exp else "") + (f"; {len(failures)} problems" if failures else ""))
    return 0 if not failures else 1


def cmd_exprs(a):
    values = {"job": a.job, "instance": a.instance}
    for where, e in dashboard_exprs(True):
        print(f"{where}\t{substitute(e, values)}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prom")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("panels", "series", "alerts", "exprs"):
        s = sub.add_parser(name)
        s.add_argument("--job", default="weir")
        s.add_argument("--instance", default=".*")
        if name == "panels":
            s.add_argument("--finite", action="store_true")
            s.add_argument("--variables", action="store_true", help="also the template-variable queries")
            s.add_argument("--label", default="panels")
        if name == "series":
            s.add_argument("--topics", default="")
            s.add_argument("--subscriptions", default="")
        if name == "alerts":
            s.add_argument("--since", type=float, required=True)
            s.add_argument("--expect", action="append")
            s.add_argument("--require", action="append")
    a = p.parse_args()
    return {"panels": cmd_panels, "series": cmd_series, "alerts": cmd_alerts, "exprs": cmd_exprs}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
