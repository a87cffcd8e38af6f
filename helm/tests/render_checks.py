#!/usr/bin/env python3
"""Checks on manifests rendered from helm/weir; run by scripts/check-helm.sh.

Subcommands (each exits non-zero with a message on the first problem set):
  split RENDERED CORE_OUT CRD_OUT   core kinds -> CORE_OUT (YAML, for
                                    kubernetes-validate), CRD kinds -> CRD_OUT (JSON)
  asserts RENDERED --kinds K=N,...  structural and security assertions
  crd-fields CRD_JSON               required/unknown fields of ServiceMonitor
                                    and PrometheusRule (a strict whitelist)
  identical RENDERED DASHBOARDS_DIR dashboards and alert rules in the rendered
                                    manifests equal the files in dashboards/
  rules-file RENDERED OUT           write the PrometheusRule spec as a rule file
  smoke RENDERED BINARY             run a weir-server binary on loopback with the
                                    rendered container's env, args and weir.toml
                                    (listen/data dir/paths moved to temp places):
                                    /healthz, /readyz, /metrics answer, SIGTERM
                                    stops it cleanly
"""
import argparse
import json
import pathlib
import re
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "PodMonitor"}
DASHBOARD_GLOB = "weir-*.json"
ALERTS_FILE = "alerts.yml"
UID = 10001
# Keys of the server's config file (weir-server --print-default-config).
KNOWN_TOML_KEYS = {"listen", "data_dir", "fsync", "fsync_interval_ms", "log_format",
                   "log_level", "max_request_bytes", "shutdown_timeout_ms",
                   "retention_interval_ms", "write_buffer_bytes", "block_cache_bytes",
                   "metrics_per_topic", "ws_ping_interval_ms", "ws_idle_timeout_ms",
                   "ws_max_message_bytes", "ws_outbound_buffer", "ws_outbound_buffer_bytes",
                   "ws_slow_consumer_timeout_ms", "ws_publish_max_in_flight"}

errors = []


def err(msg):
    errors.append(msg)


def finish(ok_msg):
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(ok_msg)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def raw_docs(path):
    """The rendered text split into documents (helm separates them with ---)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return [d for d in re.split(r"(?m)^---[ \t]*$\n?", text) if d.strip()]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


# --------------------------------------------------------------------- split
def cmd_split(a):
    docs = load_docs(a.rendered)
    core = [d for d in docs if d.get("kind") not in CRD_KINDS]
    crd = [d for d in docs if d.get("kind") in CRD_KINDS]
    with open(a.core_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(a.crd_out, "w", encoding="utf-8") as f:
        json.dump(crd, f)
    print(f"{len(core)} core documents, {len(crd)} custom resources")


# ------------------------------------------------------------------- asserts
def cmd_asserts(a):
    docs = load_docs(a.rendered)
    counts = {}
    for d in docs:
        counts[d["kind"]] = counts.get(d["kind"], 0) + 1
    want = dict((k, int(v)) for k, v in (kv.split("=") for kv in a.kinds.split(",") if kv))
    if counts != want:
        err(f"rendered kinds {sorted(counts.items())} != expected {sorted(want.items())}")

    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    if len(names) != len(docs):
        err("two rendered objects share kind and name")
    for d in docs:
        md = d.get("metadata", {})
        for k, v in (md.get("labels") or {}).items():
            if not isinstance(v, str):
                err(f"{d['kind']}/{md.get('name')}: label {k} is not a string")

    sts_list = by_kind(docs, "StatefulSet")
    if len(sts_list) != 1:
        return finish("")
    sts = sts_list[0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas") != 1:
        err(f"StatefulSet replicas is {spec.get('replicas')}, must be 1 until clustering exists")
    if not subset(spec["selector"]["matchLabels"], pod_labels):
        err("StatefulSet selector does not match its pod labels")

    services = by_kind(docs, "Service")
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    clients = [s for s in services if s["spec"].get("clusterIP") != "None"]
    if len(headless) != 1 or len(clients) != 1:
        err("want exactly one headless and one client Service")
    elif spec.get("serviceName") != headless[0]["metadata"]["name"]:
        err("StatefulSet serviceName is not the headless Service")

    # Pod security.
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != UID:
        err("pod securityContext must set runAsNonRoot: true and runAsUser: 10001")
    if psc.get("fsGroup") is None:
        err("pod securityContext must set fsGroup (data volume ownership)")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        err("pod seccompProfile must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        err("pod must not mount a service account token")

    containers = pod["containers"]
    if len(containers) != 1:
        err("want one container")
    c = containers[0]
    csc = c.get("securityContext") or {}
    for key, val in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False),
                     ("runAsNonRoot", True)):
        if csc.get(key) is not val:
            err(f"container securityContext.{key} must be {val}")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        err("container must drop ALL capabilities")
    if (csc.get("seccompProfile") or {}).get("type", "RuntimeDefault") != "RuntimeDefault":
        err("container seccompProfile must be RuntimeDefault")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http") != 8080:
        err("container must expose port http=8080")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        p = c.get(probe)
        if p is None:
            if probe != "startupProbe" or a.require_startup:
                err(f"{probe} missing")
            continue
        hg = p.get("httpGet") or {}
        if hg.get("path") != path or hg.get("port") not in ("http", 8080):
            err(f"{probe} must GET {path} on port http")

    env = {e["name"]: e for e in c.get("env", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes and m["name"] not in claims:
            err(f"volumeMount {m['name']} has no volume")
    if len(mounts) != len(c.get("volumeMounts", [])):
        err("two volumeMounts share a mountPath")
    for v in volumes:
        if v in claims:
            err(f"volume {v} also defined by a volumeClaimTemplate")

    # Data volume.
    data_dir = (env.get("WEIR_DATA_DIR") or {}).get("value")
    if data_dir != "/var/lib/weir" or data_dir not in mounts:
        err("WEIR_DATA_DIR must be /var/lib/weir and mounted")
    elif mounts[data_dir].get("readOnly"):
        err("data volume must be writable")
    if (env.get("WEIR_LISTEN") or {}).get("value") != "0.0.0.0:8080":
        err("WEIR_LISTEN must be 0.0.0.0:8080")

    # Config file.
    cfg_path = (env.get("WEIR_CONFIG") or {}).get("value", "")
    cfg_dir, _, cfg_key = cfg_path.rpartition("/")
    cm_vol = volumes.get((mounts.get(cfg_dir) or {}).get("name"), {}).get("configMap")
    if not cm_vol or not mounts[cfg_dir].get("readOnly"):
        err("WEIR_CONFIG must point into a read-only ConfigMap mount")
        toml_text = None
    else:
        cms = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_vol["name"]]
        toml_text = cms[0]["data"].get(cfg_key) if cms else None
        if toml_text is None:
            err(f"ConfigMap {cm_vol['name']} has no key {cfg_key}")
    shutdown_ms = None
    if toml_text is not None and tomllib is not None:
        try:
            cfg = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            err(f"weir.toml is not valid TOML: {e}")
            cfg = {}
        missing = {"listen", "data_dir", "fsync", "log_format", "shutdown_timeout_ms"} - set(cfg)
        if missing:
            err(f"weir.toml lacks {sorted(missing)}")
        if set(cfg) - KNOWN_TOML_KEYS:
            err(f"weir.toml has keys the server does not know: {sorted(set(cfg) - KNOWN_TOML_KEYS)}")
        if cfg.get("listen") != "0.0.0.0:8080" or cfg.get("data_dir") != data_dir:
            err("weir.toml listen/data_dir disagree with the container")
        if cfg.get("fsync") not in ("always", "interval", "never"):
            err("weir.toml fsync invalid")
        if not isinstance(cfg.get("shutdown_timeout_ms"), int):
            err("weir.toml shutdown_timeout_ms must be an integer")
        else:
            shutdown_ms = cfg["shutdown_timeout_ms"]
        for k in ("fsync_interval_ms", "max_request_bytes", "retention_interval_ms",
                  "write_buffer_bytes", "block_cache_bytes"):
            if k in cfg and not isinstance(cfg[k], int):
                err(f"weir.toml {k} must be an integer")
    tgps = pod.get("terminationGracePeriodSeconds")
    if not isinstance(tgps, int) or (shutdown_ms is not None and tgps * 1000 <= shutdown_ms):
        err(f"terminationGracePeriodSeconds {tgps} must exceed shutdown_timeout_ms {shutdown_ms}")
    if not str(spec["template"]["metadata"].get("annotations", {}).get("checksum/config", "")):
        err("pod template lacks checksum/config annotation")

    # Services and disruption budget select the pod.
    for s in services:
        if not subset(s["spec"]["selector"], pod_labels):
            err(f"Service {s['metadata']['name']} does not select the pod")
        for p in s["spec"]["ports"]:
            if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                err(f"Service {s['metadata']['name']} targets unknown port {p.get('targetPort')}")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        if not subset(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            err("PodDisruptionBudget does not select the pod")
        if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
            err("PodDisruptionBudget needs exactly one of minAvailable/maxUnavailable")

    # Service account.
    sa_name = pod.get("serviceAccountName")
    sas = by_kind(docs, "ServiceAccount")
    if sas and sas[0]["metadata"]["name"] != sa_name:
        err("pod does not use the chart's ServiceAccount")

    # Auth (optional).
    tokens_file = (env.get("WEIR_AUTH_TOKENS_FILE") or {}).get("value")
    secret_vols = {n: v["secret"] for n, v in volumes.items() if "secret" in v}
    if tokens_file:
        tdir, _, tkey = tokens_file.rpartition("/")
        m = mounts.get(tdir)
        sv = secret_vols.get((m or {}).get("name"))
        if not m or not m.get("readOnly") or not sv:
            err("WEIR_AUTH_TOKENS_FILE must point into a read-only Secret mount")
        elif not any(i.get("path") == tkey for i in sv.get("items", [])):
            err("the Secret mount does not provide the tokens file")
        else:
            secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
            if sv["secretName"] in secrets:
                key = sv["items"][0]["key"]
                if key not in (secrets[sv["secretName"]].get("data") or {}):
                    err(f"Secret {sv['secretName']} lacks key {key}")
    elif secret_vols or by_kind(docs, "Secret"):
        err("auth Secret rendered or mounted while auth is disabled")

    # ServiceMonitor targets the client Service only.
    for sm in by_kind(docs, "ServiceMonitor"):
        sel = sm["spec"]["selector"].get("matchLabels", {})
        if len(clients) == 1 and not subset(sel, clients[0]["metadata"]["labels"]):
            err("ServiceMonitor does not select the client Service")
        if len(headless) == 1 and subset(sel, headless[0]["metadata"]["labels"]):
            err("ServiceMonitor also selects the headless Service (double scrape)")
        svc_ports = {p["name"] for p in clients[0]["spec"]["ports"]} if clients else set()
        for ep in sm["spec"]["endpoints"]:
            if ep.get("port") not in svc_ports or ep.get("path") != "/metrics":
                err("ServiceMonitor endpoint must scrape /metrics on a Service port")
    finish(f"asserts ok: {sorted(counts.items())}")


# ---------------------------------------------------------------- crd-fields
LABELMAP = "labelmap"
SM_ENDPOINT_KEYS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
                    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
                    "params", "tlsConfig", "authorization", "basicAuth", "bearerTokenSecret",
                    "oauth2", "followRedirects", "enableHttp2", "filterRunning",
                    "proxyUrl", "trackTimestampsStaleness"}
RELABEL_KEYS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus",
                "replacement", "action"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop",
                   "labelkeep", "lowercase", "uppercase", "keepequal", "dropequal",
                   "Replace", "Keep", "Drop", "HashMod", "LabelMap", "LabelDrop",
                   "LabelKeep", "Lowercase", "Uppercase", "KeepEqual", "DropEqual"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy",
              "query_offset", "labels"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                      r"(([0-9]+)s)?(([0-9]+)ms)?)$")
METADATA_KEYS = {"name", "namespace", "labels", "annotations"}


def check_keys(where, obj, allowed, required=()):
    if not isinstance(obj, dict):
        err(f"{where}: must be an object")
        return False
    for k in set(obj) - set(allowed):
        err(f"{where}: unknown field {k!r}")
    for k in required:
        if k not in obj:
            err(f"{where}: missing required field {k!r}")
    return True


def check_strmap(where, obj):
    if obj is None:
        return
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in obj.items()):
        err(f"{where}: must map strings to strings")


def check_duration(where, v):
    if v is not None and (not isinstance(v, str) or not DURATION.match(v) or v == ""):
        err(f"{where}: {v!r} is not a Prometheus duration")


def check_relabel(where, items):
    if items is None:
        return
    if not isinstance(items, list):
        return err(f"{where}: must be a list")
    for i, r in enumerate(items):
        w = f"{where}[{i}]"
        if check_keys(w, r, RELABEL_KEYS):
            if "action" in r and r["action"] not in RELABEL_ACTIONS:
                err(f"{w}: unknown action {r['action']!r}")
            if not isinstance(r.get("sourceLabels", []), list):
                err(f"{w}: sourceLabels must be a list")


def check_common(where, d):
    check_keys(where, d, {"apiVersion", "kind", "metadata", "spec"},
               ["apiVersion", "kind", "metadata", "spec"])
    if d.get("apiVersion") != "monitoring.coreos.com/v1":
        err(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    md = d.get("metadata") or {}
    check_keys(f"{where}.metadata", md, METADATA_KEYS, ["name"])
    check_strmap(f"{where}.metadata.labels", md.get("labels"))
    check_strmap(f"{where}.metadata.annotations", md.get("annotations"))


def check_servicemonitor(where, d):
    check_common(where, d)
    spec = d.get("spec") or {}
    check_keys(f"{where}.spec", spec, {"jobLabel", "targetLabels", "podTargetLabels",
                                       "endpoints", "selector", "namespaceSelector",
                                       "sampleLimit", "scrapeProtocols", "attachMetadata"},
               ["selector", "endpoints"])
    sel = spec.get("selector") or {}
    check_keys(f"{where}.spec.selector", sel, {"matchLabels", "matchExpressions"})
    check_strmap(f"{where}.spec.selector.matchLabels", sel.get("matchLabels"))
    nss = spec.get("namespaceSelector")
    if nss is not None and check_keys(f"{where}.spec.namespaceSelector", nss, {"any", "matchNames"}):
        if not isinstance(nss.get("matchNames", []), list):
            err(f"{where}.spec.namespaceSelector.matchNames must be a list")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        return err(f"{where}.spec.endpoints must be a non-empty list")
    for i, ep in enumerate(eps):
        w = f"{where}.spec.endpoints[{i}]"
        if not check_keys(w, ep, SM_ENDPOINT_KEYS):
            continue
        if "port" not in ep and "targetPort" not in ep:
            err(f"{w}: needs port or targetPort")
        if "port" in ep and not isinstance(ep["port"], str):
            err(f"{w}.port must be a port name (string)")
        if ep.get("scheme", "http") not in ("http", "https", "HTTP", "HTTPS"):
            err(f"{w}.scheme invalid")
        check_duration(f"{w}.interval", ep.get("interval"))
        check_duration(f"{w}.scrapeTimeout", ep.get("scrapeTimeout"))
        if not isinstance(ep.get("honorLabels", False), bool):
            err(f"{w}.honorLabels must be a boolean")
        check_relabel(f"{w}.relabelings", ep.get("relabelings"))
        check_relabel(f"{w}.metricRelabelings", ep.get("metricRelabelings"))


def check_prometheusrule(where, d):
    check_common(where, d)
    spec = d.get("spec") or {}
    check_keys(f"{where}.spec", spec, {"groups"}, ["groups"])
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return err(f"{where}.spec.groups must be a non-empty list")
    seen = set()
    for i, g in enumerate(groups):
        w = f"{where}.spec.groups[{i}]"
        if not check_keys(w, g, GROUP_KEYS, ["name", "rules"]):
            continue
        if not isinstance(g.get("name"), str) or not g.get("name"):
            err(f"{w}.name must be a non-empty string")
        elif g["name"] in seen:
            err(f"{w}.name {g['name']!r} is not unique")
        seen.add(g.get("name"))
        check_duration(f"{w}.interval", g.get("interval"))
        rules = g.get("rules")
        if not isinstance(rules, list):
            err(f"{w}.rules must be a list")
            continue
        for j, r in enumerate(rules):
            wr = f"{w}.rules[{j}]"
            if not check_keys(wr, r, RULE_KEYS, ["expr"]):
                continue
            if ("alert" in r) == ("record" in r):
                err(f"{wr}: exactly one of alert and record")
            if not isinstance(r.get("expr"), (str, int)) or r.get("expr") == "":
                err(f"{wr}.expr must be a non-empty string")
            check_duration(f"{wr}.for", r.get("for"))
            check_duration(f"{wr}.keep_firing_for", r.get("keep_firing_for"))
            check_strmap(f"{wr}.labels", r.get("labels"))
            check_strmap(f"{wr}.annotations", r.get("annotations"))
            if "record" in r and "annotations" in r:
                err(f"{wr}: recording rules have no annotations")


def cmd_crd_fields(a):
    docs = json.loads(pathlib.Path(a.crd_json).read_text(encoding="utf-8"))
    for d in docs:
        where = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        if d.get("kind") == "ServiceMonitor":
            check_servicemonitor(where, d)
        elif d.get("kind") == "PrometheusRule":
            check_prometheusrule(where, d)
        else:
            err(f"{where}: no field check for this kind")
    finish(f"crd fields ok: {len(docs)} custom resources")


# ----------------------------------------------------------------- identical
def prometheusrule_raw_spec(rendered):
    """The text under `spec:` of the PrometheusRule document, dedented by 2."""
    found = [d for d in raw_docs(rendered) if re.search(r"(?m)^kind: PrometheusRule$", d)]
    if len(found) != 1:
        return None
    lines = found[0].split("\n")
    try:
        start = lines.index("spec:")
    except ValueError:
        return None
    out = []
    for ln in lines[start + 1:]:
        if ln.startswith("  "):
            out.append(ln[2:])
        elif ln.strip() == "":
            out.append("")
        else:
            break  # a new top-level key: spec ended
    return "\n".join(out)


def cmd_identical(a):
    ddir = pathlib.Path(a.dashboards_dir)
    docs = load_docs(a.rendered)
    files = sorted(ddir.glob(DASHBOARD_GLOB))
    checked = 0

    cms = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]
    if a.expect_dashboards:
        if len(cms) != 1:
            err("expected one dashboards ConfigMap")
        else:
            data = cms[0].get("data") or {}
            if cms[0].get("binaryData"):
                err("dashboards must be in data, not binaryData")
            want = {f.name for f in files}
            if set(data) != want:
                err(f"dashboards ConfigMap keys {sorted(data)} != files {sorted(want)} in {ddir}")
            for f in files:
                if f.name not in data:
                    continue
                if data[f.name].encode("utf-8") != f.read_bytes():
                    err(f"dashboards ConfigMap key {f.name} differs from {f}")
                else:
                    try:
                        json.loads(data[f.name])
                    except ValueError as e:
                        err(f"{f} is not valid JSON: {e}")
                    checked += 1

    rules = by_kind(docs, "PrometheusRule")
    if a.expect_rules:
        src = ddir / ALERTS_FILE
        if len(rules) != 1:
            err("expected one PrometheusRule")
        elif not src.is_file():
            err(f"{src} missing")
        else:
            raw = src.read_bytes().decode("utf-8")
            rendered_raw = prometheusrule_raw_spec(a.rendered)
            if rendered_raw is None:
                err("could not find the PrometheusRule spec text")
            elif rendered_raw.rstrip() != raw.rstrip():
                a_lines, b_lines = raw.rstrip().split("\n"), rendered_raw.rstrip().split("\n")
                for n, (x, y) in enumerate(zip(a_lines, b_lines), 1):
                    if x != y:
                        err(f"PrometheusRule spec differs from {src} at line {n}: {x!r} != {y!r}")
                        break
                else:
                    err(f"PrometheusRule spec differs from {src} in length "
                        f"({len(b_lines)} vs {len(a_lines)} lines)")
            parsed = yaml.safe_load(raw)
            if rules[0].get("spec") != parsed:
                err(f"PrometheusRule spec does not parse to the content of {src}")
            else:
                checked += 1
    elif rules:
        err("PrometheusRule rendered although not expected")
    finish(f"identical ok: {checked} file(s) from {ddir} match the rendered manifests")


def cmd_rules_file(a):
    rules = by_kind(load_docs(a.rendered), "PrometheusRule")
    if len(rules) != 1:
        err("expected one PrometheusRule")
        return finish("")
    with open(a.out, "w", encoding="utf-8") as f:
        yaml.safe_dump(rules[0]["spec"], f, sort_keys=False)
    finish(f"wrote {a.out}")


def cmd_smoke(a):
    import os
    import signal
    import socket
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    docs = load_docs(a.rendered)
    sts = by_kind(docs, "StatefulSet")[0]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env_in = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
    cfg_path = env_in["WEIR_CONFIG"]
    cm_name = next(v["configMap"]["name"] for v in sts["spec"]["template"]["spec"]["volumes"]
                   if "configMap" in v)
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name)
    toml_text = cm["data"][cfg_path.rpartition("/")[2]]
    shutdown_ms = 30000
    m = re.search(r"(?m)^shutdown_timeout_ms = ([0-9]+)$", toml_text)
    if m:
        shutdown_ms = int(m.group(1))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "config").mkdir()
        (tmp / "config" / "weir.toml").write_text(toml_text, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env_in}
        env["WEIR_CONFIG"] = str(tmp / "config" / "weir.toml")
        env["WEIR_LISTEN"] = f"127.0.0.1:{port}"
        env["WEIR_DATA_DIR"] = str(tmp / "data")
        if "WEIR_AUTH_TOKENS_FILE" in env:
            (tmp / "auth").mkdir()
            secrets = by_kind(docs, "Secret")
            import base64
            content = (base64.b64decode(next(iter(secrets[0]["data"].values()))) if secrets
                       else b"# tokens from an existing Secret\n")
            (tmp / "auth" / "tokens").write_bytes(content)
            env["WEIR_AUTH_TOKENS_FILE"] = str(tmp / "auth" / "tokens")
        log_path = tmp / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([a.binary, *c.get("args", [])], env=env, cwd=tmp,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            def get(path):
                try:
                    with urllib.request.urlopen(base + path, timeout=2) as r:
                        return r.status, r.read().decode("utf-8", "replace")
                except urllib.error.HTTPError as e:
                    return e.code, ""
                except OSError:
                    return None, ""

            def wait_for(path, seconds):
                end = time.monotonic() + seconds
                while time.monotonic() < end and proc.poll() is None:
                    status, body = get(path)
                    if status == 200:
                        return body
                    time.sleep(0.2)
                return None

            if wait_for("/healthz", 30) is None:
                err("/healthz did not answer 200 within 30 s"
                    + (f" (server exited with {proc.returncode})" if proc.poll() is not None else ""))
            elif wait_for("/readyz", 15) is None:
                err("/readyz did not answer 200 within 15 s")
            else:
                body = wait_for("/metrics", 5)
                if body is None or "# TYPE" not in body:
                    err("/metrics did not answer Prometheus text")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=shutdown_ms / 1000 + 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    err("server did not stop within shutdown_timeout_ms after SIGTERM")
        if not errors and proc.returncode != 0:
            err(f"server exited with status {proc.returncode} after SIGTERM")
        if errors:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            print("server log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
    finish(f"smoke ok: {a.binary} served /healthz, /readyz, /metrics with the rendered "
           f"config and stopped cleanly on SIGTERM")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("rendered")
    s.add_argument("core_out")
    s.add_argument("crd_out")
    s = sub.add_parser("asserts")
    s.add_argument("rendered")
    s.add_argument("--kinds", required=True)
    s.add_argument("--require-startup", action="store_true")
    s = sub.add_parser("crd-fields")
    s.add_argument("crd_json")
    s = sub.add_parser("identical")
    s.add_argument("rendered")
    s.add_argument("dashboards_dir")
    s.add_argument("--expect-dashboards", action="store_true")
    s.add_argument("--expect-rules", action="store_true")
    s = sub.add_parser("rules-file")
    s.add_argument("rendered")
    s.add_argument("out")
    s = sub.add_parser("smoke")
    s.add_argument("rendered")
    s.add_argument("binary")
    a = p.parse_args()
    {"split": cmd_split, "asserts": cmd_asserts, "crd-fields": cmd_crd_fields,
     "identical": cmd_identical, "rules-file": cmd_rules_file, "smoke": cmd_smoke}[a.cmd](a)


if __name__ == "__main__":
    main()
