#!/usr/bin/env python3
"""Checks on manifests rendered from helm/weir; run by scripts/check-helm.sh.

Subcommands (each exits non-zero with a message on the first problem set):
  split RENDERED CORE_OUT CRD_OUT   core kinds -> CORE_OUT (YAML, for
                                    kubernetes-validate), CRD kinds -> CRD_OUT (JSON)
  asserts RENDERED --kinds K=N,...  structural and security assertions (with
                                    cluster.enabled also: replicas, Parallel, the
                                    node id script, peers, cluster port only on the
                                    headless Service, secret file mount, PDB quorum,
                                    NetworkPolicy rules for the cluster port)
  crd-fields CRD_JSON               required/unknown fields of ServiceMonitor
                                    and PrometheusRule (a strict whitelist)
  identical RENDERED DASHBOARDS_DIR dashboards and alert rules in the rendered
                                    manifests equal the files in dashboards/
  rules-file RENDERED OUT           write the PrometheusRule spec as a rule file
  smoke RENDERED BINARY             run a weir-server binary with the rendered
                                    container's env, args and weir.toml on 0.0.0.0
                                    (so protected mode applies; port, data dir and
                                    mounted files moved to temp places, Secrets and
                                    ConfigMaps laid out like the kubelet does, test
                                    certificates/JWKS/tokens from openssl): probes
                                    answer without credentials, requests without or
                                    with wrong credentials get 401 and with the test
                                    token / client certificate / JWT 200, /metrics
                                    as auth_protect_metrics says, a rotated tokens
                                    file and a renewed certificate are picked up
                                    without restart, SIGTERM stops it cleanly; with
                                    allow_anonymous, the same config without it is
                                    refused. --trace-writes: no file writes outside
                                    the data dir and /tmp (read-only root fs)
  smoke-cluster RENDERED BINARY     for a clustered render (cluster.enabled): start
                                    `replicas` servers with the pod's own command
                                    (the image's binary replaced by BINARY, HOSTNAME
                                    <statefulset>-N as in the pod), env and weir.toml,
                                    all on 127.0.0.1 with their own ports and data
                                    dirs and the peers moved to those ports; node 1
                                    started alone answers /healthz 200 and /readyz
                                    503 cluster_forming, then with the others all
                                    reach /readyz 200 within 30 s; GET /v1/cluster on
                                    pod N says node N+1, nodes 1..replicas, one
                                    leader; then a rolling restart as the StatefulSet
                                    controller does it (highest ordinal first, SIGTERM,
                                    start, wait for /readyz 200) with messages
                                    produced before and between the restarts: every
                                    acknowledged one is read back once through every
                                    node; each server stops on SIGTERM with status 0
"""
import argparse
import http.client
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
LIMIT_KEYS = {"max_connections", "max_concurrent_requests", "max_long_polls",
              "max_ws_per_principal", "max_topics", "max_subscriptions_per_topic",
              "max_headers_per_message", "max_inflight_request_bytes",
              "rate_limit_messages_per_s", "rate_limit_bytes_per_s", "rate_limit_requests_per_s",
              "header_read_timeout_ms", "request_body_timeout_ms"}
KNOWN_TOML_KEYS = {"listen", "data_dir", "fsync", "fsync_interval_ms", "log_format",
                   "log_level", "max_request_bytes", "shutdown_timeout_ms",
                   "retention_interval_ms", "write_buffer_bytes", "block_cache_bytes",
                   "metrics_per_topic", "ws_ping_interval_ms", "ws_idle_timeout_ms",
                   "ws_max_message_bytes", "ws_outbound_buffer", "ws_outbound_buffer_bytes",
                   "ws_slow_consumer_timeout_ms", "ws_publish_max_in_flight",
                   "auth_tokens_file", "auth_jwks_file", "auth_jwt_audience", "auth_jwt_issuer",
                   "auth_jwt_grants_claim", "auth_reload_interval_ms", "auth_protect_metrics",
                   "auth_protect_docs", "allow_anonymous", "tls_cert_file", "tls_key_file",
                   "tls_client_ca_file", "tls_client_auth",
                   "cluster_heartbeat_ms", "cluster_election_timeout_ms"} | LIMIT_KEYS
# Cluster options the chart passes per pod in the environment, never in weir.toml.
CLUSTER_ENV = ("WEIR_PEERS", "WEIR_CLUSTER_LISTEN", "WEIR_CLUSTER_SECRET_FILE")
CLUSTER_ENV_TOML_KEYS = {"node_id", "peers", "cluster_listen", "cluster_secret_file"}
# Files the chart mounts from Secrets/ConfigMaps, by mount directory.
AUTH_DIR, JWKS_DIR, TLS_DIR, CLIENT_CA_DIR = ("/etc/weir/auth", "/etc/weir/jwks", "/etc/weir/tls",
                                              "/etc/weir/client-ca")
CLUSTER_DIR = "/etc/weir/cluster"
# The image's server binary (Dockerfile ENTRYPOINT), exec'd by the clustered
# pod's command.
IMAGE_BINARY = "/usr/local/bin/weir-server"
# Plaintext of the test tokens whose sha256 the ci/*.yaml files carry.
CI_TOKENS = ("ci-admin-token", "ci-metrics-token", "ci-producer-token")
CERT_PRINCIPAL = "ci-cert-client"

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
    cfg = {}
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
    check_security(a, docs, pod, c, env, mounts, volumes, cfg, clients, headless)
    if "WEIR_PEERS" in env:
        check_cluster(docs, sts, c, env, ports, cfg, clients, headless)
    else:
        if spec.get("replicas") != 1:
            err(f"StatefulSet replicas is {spec.get('replicas')}: without clustering it must be 1")
        if spec.get("podManagementPolicy") != "OrderedReady":
            err("a single node keeps podManagementPolicy OrderedReady")
        if "command" in c:
            err("a single node runs the image's entrypoint (no command)")
        stray = [k for k in env if k in CLUSTER_ENV or k == "WEIR_NODE_ID"] + \
            [k for k in cfg if k.startswith("cluster_")] + \
            [f"port {p}" for p in ports if p != "http"] + \
            [f"Service {s['metadata']['name']} port {p['name']}" for s in services
             for p in s["spec"]["ports"] if p["name"] != "http"] + \
            [f"volume {v}" for v in volumes if v == "cluster-secret"]
        if stray:
            err(f"cluster settings without WEIR_PEERS (not clustered): {stray}")

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

    finish(f"asserts ok: {sorted(counts.items())}")


def mounted_file(path, mounts, volumes):
    """(volume, key) when PATH is an item of a read-only Secret/ConfigMap
    directory mount, else None (with an error)."""
    d, _, name = path.rpartition("/")
    m = mounts.get(d)
    v = volumes.get((m or {}).get("name"), {})
    src = v.get("secret") or v.get("configMap")
    if not m or not src:
        err(f"{path}: not inside a Secret/ConfigMap volume mount")
        return None
    if not m.get("readOnly"):
        err(f"{path}: the mount {d} must be readOnly")
    if m.get("subPath") or m.get("subPathExpr"):
        err(f"{path}: mounted with subPath, so updates of the Secret never reach the pod")
    items = src.get("items")
    if items is None:
        return v, name
    keys = [i["key"] for i in items if i.get("path") == name]
    if not keys:
        err(f"{path}: volume {m['name']} has no item with path {name}")
        return None
    return v, keys[0]


def rendered_data(docs, volume, key):
    """Content of KEY of a Secret/ConfigMap the chart renders, or None."""
    import base64
    if "secret" in volume:
        for d in by_kind(docs, "Secret"):
            if d["metadata"]["name"] == volume["secret"]["secretName"]:
                if key not in (d.get("data") or {}):
                    err(f"Secret {d['metadata']['name']} lacks key {key}")
                    return None
                return base64.b64decode(d["data"][key]).decode("utf-8")
    elif "configMap" in volume:
        for d in by_kind(docs, "ConfigMap"):
            if d["metadata"]["name"] == volume["configMap"]["name"]:
                return (d.get("data") or {}).get(key)
    return None


def check_security(a, docs, pod, c, env, mounts, volumes, cfg, clients, headless):
    """Auth, TLS, probes, ServiceMonitor and NetworkPolicy agree with weir.toml."""
    tls_on = "tls_cert_file" in cfg
    required_cert = cfg.get("tls_client_auth") == "required"
    tokens_file = (env.get("WEIR_AUTH_TOKENS_FILE") or {}).get("value")
    auth_on = bool(tokens_file or cfg.get("auth_tokens_file") or cfg.get("auth_jwks_file"))

    # Protected mode, as the server applies it (listen is 0.0.0.0).
    if not auth_on and cfg.get("allow_anonymous") is not True:
        err("no tokens file and no JWKS, and allow_anonymous is not true: the server refuses to start")
    if auth_on and cfg.get("allow_anonymous"):
        err("allow_anonymous = true together with authentication")
    for k in ("auth_protect_metrics", "auth_protect_docs", "allow_anonymous"):
        if k in cfg and not isinstance(cfg[k], bool):
            err(f"weir.toml {k} must be a boolean")
    for k in LIMIT_KEYS:
        if k in cfg and not isinstance(cfg[k], int):
            err(f"weir.toml {k} must be an integer")

    # Every file the server reads is an item of a read-only directory mount.
    files = {}
    if tokens_file:
        files["tokens"] = tokens_file
    for key in ("auth_jwks_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        if key in cfg:
            files[key] = cfg[key]
    cluster_secret_file = (env.get("WEIR_CLUSTER_SECRET_FILE") or {}).get("value")
    if cluster_secret_file:
        files["cluster secret"] = cluster_secret_file
    used = set()
    for what, path in files.items():
        found = mounted_file(path, mounts, volumes)
        if found:
            used.add(found[0]["name"])
        if found and what == "cluster secret":
            if "secret" not in found[0]:
                err(f"{path}: the cluster secret must come from a Secret, not a ConfigMap")
            content = rendered_data(docs, *found)
            if content is not None and len(content.strip().encode()) < 16:
                err("the rendered cluster secret is shorter than 16 bytes (the server refuses it)")
        if found and what == "tokens" and tomllib is not None:
            content = rendered_data(docs, *found)
            if content is not None and not path.endswith((".yaml", ".yml")):
                try:
                    t = tomllib.loads(content)
                except tomllib.TOMLDecodeError as e:
                    err(f"rendered tokens file is not valid TOML: {e}")
                    continue
                entries = t.get("tokens")
                if set(t) != {"tokens"} or not isinstance(entries, list) or not entries:
                    err("rendered tokens file must be a non-empty [[tokens]] list")
                    continue
                for i, e in enumerate(entries):
                    if not set(e) <= {"principal", "sha256", "grants"} or "principal" not in e:
                        err(f"tokens[{i}]: fields {sorted(e)}")
                    if "sha256" in e and not re.fullmatch(r"[0-9a-f]{64}", e["sha256"]):
                        err(f"tokens[{i}].sha256 is not 64 lowercase hex digits")
                    if "sha256" not in e and "tls_client_ca_file" not in cfg:
                        err(f"tokens[{i}] has no sha256 and there is no mTLS")
                    for g in e.get("grants", []):
                        if not set(g) <= {"actions", "topics", "subscriptions"} or not g.get("actions"):
                            err(f"tokens[{i}] grant {g}")
                        bad = set(g.get("actions", [])) - {"produce", "consume", "manage", "admin", "metrics"}
                        if bad:
                            err(f"tokens[{i}]: unknown actions {sorted(bad)}")
    if "tls_client_ca_file" in cfg and cfg.get("tls_client_auth") not in ("optional", "required"):
        err("tls_client_auth must be optional or required with a client CA")
    extra = {m["name"] for m in a_extra_mounts(c)}
    for name, v in volumes.items():
        if ("secret" in v or "configMap" in v) and name not in used | extra | {"config"}:
            err(f"volume {name} is mounted but no server option reads it")
    read_secrets = {volumes[v]["secret"]["secretName"] for v in used if "secret" in volumes.get(v, {})}
    for s in by_kind(docs, "Secret"):
        if s["metadata"]["name"] not in read_secrets:
            err(f"Secret {s['metadata']['name']} is rendered but no server option reads it")

    # Probes: HTTPS when TLS is on; TCP when client certificates are required.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        p = c.get(probe)
        if p is None:
            if probe != "startupProbe" or a.require_startup:
                err(f"{probe} missing")
            continue
        if required_cert:
            if (p.get("tcpSocket") or {}).get("port") not in ("http", 8080) or "httpGet" in p:
                err(f"{probe}: with tls_client_auth = required it must be a tcpSocket check")
            continue
        hg = p.get("httpGet") or {}
        if hg.get("path") != path or hg.get("port") not in ("http", 8080):
            err(f"{probe} must GET {path} on port http")
        if hg.get("scheme", "HTTP") != ("HTTPS" if tls_on else "HTTP"):
            err(f"{probe} scheme {hg.get('scheme', 'HTTP')} but TLS is {'on' if tls_on else 'off'}")
    for s in clients + headless:
        for p in s["spec"]["ports"]:
            if p["name"] == "http" and p.get("appProtocol") != ("https" if tls_on else "http"):
                err(f"Service {s['metadata']['name']} appProtocol {p.get('appProtocol')} (TLS {tls_on})")

    # ServiceMonitor targets the client Service only, with scheme, TLS and
    # credentials that match the server.
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
            if ep.get("scheme") != ("https" if tls_on else "http"):
                err(f"ServiceMonitor scheme {ep.get('scheme')} but TLS is {'on' if tls_on else 'off'}")
            tc = ep.get("tlsConfig") or {}
            if tls_on and not (tc.get("ca") or tc.get("insecureSkipVerify")):
                err("ServiceMonitor over https needs tlsConfig.ca")
            if required_cert and not (tc.get("cert") and tc.get("keySecret")):
                err("ServiceMonitor needs a client certificate (tls_client_auth = required)")
            sm_ns = sm["metadata"].get("namespace")
            ca_secret = ((tc.get("ca") or {}).get("secret") or {}).get("name")
            tls_vol = volumes.get((mounts.get(TLS_DIR) or {}).get("name"), {})
            if ca_secret and ca_secret == (tls_vol.get("secret") or {}).get("secretName") \
                    and sm_ns != pod_namespace(docs):
                err("ServiceMonitor uses the server's TLS Secret from another namespace")
            authz = ep.get("authorization")
            if cfg.get("auth_protect_metrics") and not authz and not tc.get("cert"):
                err("auth_protect_metrics is on but the ServiceMonitor sends no credentials")
            if authz is not None:
                if authz.get("type") != "Bearer" or set(authz.get("credentials") or {}) != {"name", "key"}:
                    err(f"ServiceMonitor authorization {authz} is not {{type: Bearer, credentials: {{name, key}}}}")
            if "bearerTokenSecret" in ep or "bearerTokenFile" in ep:
                err("use authorization, not the deprecated bearerTokenSecret/bearerTokenFile")

    # NetworkPolicy selects the pod and opens the http port to clients; in a
    # cluster the node-to-node port only to the release's own pods.
    pod_labels = spec_pod_labels(docs)
    sts_selector = by_kind(docs, "StatefulSet")[0]["spec"]["selector"]["matchLabels"]
    clustered = "WEIR_PEERS" in env
    cluster_port = next((p["containerPort"] for p in c.get("ports", []) if p["name"] == "cluster"), None)
    for np_ in by_kind(docs, "NetworkPolicy"):
        sp = np_["spec"]
        if not subset(sp["podSelector"].get("matchLabels", {}), pod_labels):
            err("NetworkPolicy does not select the pod")
        if not sp.get("ingress"):
            err("NetworkPolicy has no ingress rule: every client is blocked")
        cluster_rules = 0
        for r in sp.get("ingress", []):
            if not r.get("from"):
                err("NetworkPolicy ingress rule without `from` allows everyone")
            rule_ports = [p.get("port") for p in r.get("ports") or []]
            if clustered and rule_ports in (["cluster"], [cluster_port]):
                cluster_rules += 1
                if r.get("from") != [{"podSelector": {"matchLabels": sts_selector}}]:
                    err(f"NetworkPolicy: the cluster port must be open only to this release's pods "
                        f"(podSelector {sts_selector}), not {r.get('from')}")
            elif rule_ports != ["http"]:
                err("NetworkPolicy ingress rules must open only port http"
                    + (" (and the cluster port to the release's pods)" if clustered else ""))
        if clustered and cluster_rules != 1:
            err("NetworkPolicy: a cluster needs one ingress rule for the node-to-node port")
        if clustered and "Egress" in sp.get("policyTypes", []):
            eg = sp.get("egress") or []
            if not any({p.get("port") for p in r.get("ports") or []} & {"cluster", cluster_port}
                       and {"podSelector": {"matchLabels": sts_selector}} in (r.get("to") or [])
                       for r in eg):
                err("NetworkPolicy restricts egress but the members cannot reach each other's cluster port")
            if not any({(p.get("port"), p.get("protocol", "TCP")) for p in r.get("ports") or []} >= {(53, "UDP")}
                       for r in eg):
                err("NetworkPolicy restricts egress but the members cannot resolve their peers (DNS, port 53)")
        if "Egress" in sp.get("policyTypes", []) and sp.get("egress") is None:
            err("NetworkPolicy with Egress policy must list egress (possibly [])")


def check_cluster(docs, sts, c, env, ports, cfg, clients, headless):
    """The clustered StatefulSet: members, node ids, peers, ports, Services,
    disruption budget."""
    import subprocess
    spec = sts["spec"]
    name = sts["metadata"]["name"]
    ns = sts["metadata"].get("namespace")
    n = spec.get("replicas")
    if not isinstance(n, int) or n < 3 or n % 2 == 0:
        err(f"clustered StatefulSet replicas is {n}: want an odd number >= 3")
        return
    if spec.get("podManagementPolicy") != "Parallel":
        err("a cluster needs podManagementPolicy Parallel (OrderedReady: pod 0 waits for a cluster "
            "that cannot form without the others)")
    if (spec.get("updateStrategy") or {}).get("type") != "RollingUpdate":
        err("a cluster needs updateStrategy RollingUpdate (one member at a time)")
    if "volumeClaimTemplates" not in spec:
        err("cluster members need their own persistent volumes (volumeClaimTemplates): not an emptyDir "
            "(a wiped member would rejoin under its old id), not one shared claim")
    for k in CLUSTER_ENV_TOML_KEYS & set(cfg):
        err(f"weir.toml sets {k}: the same for every pod, but it must be per pod / in the environment")
    cport = ports.get("cluster")
    if not isinstance(cport, int) or cport == ports.get("http"):
        err(f"container port cluster is {cport}: want its own port")
        return
    if (env.get("WEIR_CLUSTER_LISTEN") or {}).get("value") != f"0.0.0.0:{cport}":
        err(f"WEIR_CLUSTER_LISTEN must be 0.0.0.0:{cport} (an IP, the container's cluster port)")
    if "WEIR_NODE_ID" in env:
        err("WEIR_NODE_ID must not be in the environment: it differs per pod (the command derives it)")

    # Node id = ordinal + 1, by running the command's script with a stand-in
    # for the server.
    cmd = c.get("command") or []
    script = cmd[2] if len(cmd) >= 3 else ""
    if cmd[:2] != ["/bin/sh", "-c"] or len(cmd) != 4 or f'exec {IMAGE_BINARY} "$@"' not in script:
        err(f'the command must be /bin/sh -c \'... exec {IMAGE_BINARY} "$@"\' NAME (extraArgs as args)')
    else:
        probe = script.replace(f'exec {IMAGE_BINARY} "$@"', 'echo "$WEIR_NODE_ID" "$@"')
        for i in range(n):
            r = subprocess.run(["/bin/sh", "-c", probe, cmd[3], *c.get("args", []), "--x"],
                               env={"HOSTNAME": f"{name}-{i}", "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, timeout=10)
            want = " ".join([str(i + 1), *c.get("args", []), "--x"])
            if r.returncode != 0 or r.stdout.strip() != want:
                err(f"pod {name}-{i}: the command gives node id/args {r.stdout.strip()!r}, want {want!r}")
        r = subprocess.run(["/bin/sh", "-c", probe, cmd[3]], env={"HOSTNAME": "no-ordinal"},
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            err("the command starts the server although HOSTNAME has no ordinal")

    # Peers: every pod, by node id, under the headless Service.
    hl = headless[0]["metadata"]["name"] if len(headless) == 1 else "?"
    peers = (env.get("WEIR_PEERS") or {}).get("value") or ""
    items = [x.split("=", 1) for x in peers.split(",")]
    want_ids = [str(i + 1) for i in range(n)]
    if [x[0] for x in items] != want_ids or any(len(x) != 2 for x in items):
        err(f"WEIR_PEERS {peers!r}: want node ids {want_ids}, each once")
    else:
        for i, (_, addr) in enumerate(items):
            pat = rf"{re.escape(name)}-{i}\.{re.escape(hl)}\.{re.escape(ns or '')}\.svc\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?:{cport}"
            if not re.fullmatch(pat, addr):
                err(f"WEIR_PEERS node {i + 1} is {addr!r}: want {name}-{i}.{hl}.{ns}.svc.<domain>:{cport}")

    # The cluster port: on the headless Service, never on the client Service.
    for s in clients:
        for p in s["spec"]["ports"]:
            if p["name"] == "cluster" or p.get("targetPort") in ("cluster", cport) or p.get("port") == cport:
                err(f"client Service {s['metadata']['name']} exposes the cluster port")
    if len(headless) == 1:
        hp = [p for p in headless[0]["spec"]["ports"] if p["name"] == "cluster"]
        if len(hp) != 1 or hp[0].get("targetPort") not in ("cluster", cport):
            err("the headless Service must carry the cluster port (name cluster)")
        if headless[0]["spec"].get("publishNotReadyAddresses") is not True:
            err("the headless Service must publish not-ready pods (peers resolve before ready)")

    # A disruption may take at most a minority.
    tolerable = (n - 1) // 2
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if not pdbs:
        err("a cluster needs a PodDisruptionBudget")
    for pdb in pdbs:
        ps = pdb["spec"]
        mu, ma = ps.get("maxUnavailable"), ps.get("minAvailable")
        if isinstance(mu, int) and not 1 <= mu <= tolerable:
            err(f"PodDisruptionBudget maxUnavailable {mu}: want 1..{tolerable} of {n} members")
        if isinstance(ma, int) and not n - tolerable <= ma < n:
            err(f"PodDisruptionBudget minAvailable {ma}: want a majority ({n - tolerable}) and below {n}")


def a_extra_mounts(c):
    """Mounts the chart does not manage (values extraVolumeMounts)."""
    managed = {"/var/lib/weir", "/etc/weir/config", "/tmp", AUTH_DIR, JWKS_DIR, TLS_DIR,
               CLIENT_CA_DIR, CLUSTER_DIR}
    return [m for m in c.get("volumeMounts", []) if m["mountPath"] not in managed]


def pod_namespace(docs):
    return by_kind(docs, "StatefulSet")[0]["metadata"].get("namespace")


def spec_pod_labels(docs):
    return by_kind(docs, "StatefulSet")[0]["spec"]["template"]["metadata"]["labels"]


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


# --------------------------------------------------------------------- smoke
class Pki:
    """Test certificates and keys made with the openssl CLI: a CA, a server
    certificate for 127.0.0.1/localhost (RSA, PKCS#1 key like cert-manager's
    default), client certificates (EC) and an RSA key whose public half is a
    JWKS."""

    def __init__(self, d):
        import subprocess
        self.run = lambda *args: subprocess.run(["openssl", *args], check=True, cwd=d,
                                                capture_output=True)
        self.d = d
        d.mkdir()
        self.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.crt", "-days", "2", "-subj", "/CN=weir-check CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.ca = d / "ca.crt"
        self.serial = 1000
        self.server("server")
        self.jwt_key = d / "jwt.key"
        self.run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", "jwt.key")

    def _sign(self, name, csr_args, ext):
        self.serial += 1
        (self.d / f"{name}.ext").write_text(ext)
        self.run("req", "-new", *csr_args, "-out", f"{name}.csr")
        self.run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-set_serial", str(self.serial), "-days", "2", "-out", f"{name}.crt",
                 "-extfile", f"{name}.ext")
        return self.serial

    def server(self, name):
        """A server certificate; returns (cert, key, serial)."""
        self.run("genrsa", "-traditional", "-out", f"{name}.key", "2048")
        serial = self._sign(name, ["-key", f"{name}.key", "-subj", "/CN=weir-check"],
                            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
        return self.d / f"{name}.crt", self.d / f"{name}.key", serial

    def client(self, cn):
        name = f"client-{cn}"
        if not (self.d / f"{name}.crt").exists():
            self.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", f"{name}.key")
            self._sign(name, ["-key", f"{name}.key", "-subj", f"/CN={cn}"],
                       "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
        return str(self.d / f"{name}.crt"), str(self.d / f"{name}.key")

    def jwks(self):
        import base64
        out = self.run("rsa", "-in", "jwt.key", "-noout", "-modulus").stdout.decode()
        n = bytes.fromhex(out.strip().split("=", 1)[1])
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
        return json.dumps({"keys": [{"kty": "RSA", "kid": "weir-check", "use": "sig",
                                     "alg": "RS256", "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}]})

    def jwt(self, claims):
        import base64
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
        head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "weir-check"}).encode())
        body = b64(json.dumps(claims).encode())
        (self.d / "jwt.in").write_text(f"{head}.{body}")
        sig = self.run("dgst", "-sha256", "-sign", "jwt.key", "jwt.in").stdout
        return f"{head}.{body}.{b64(sig)}"


class _Abort(Exception):
    """The server did not come up: skip the remaining smoke checks."""


def sha256_hex(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def fixture_tokens(path, mtls):
    """A tokens file for an existing Secret the chart only references."""
    entries = [{"principal": "ci-admin", "sha256": sha256_hex("ci-admin-token"),
                "grants": [{"actions": ["admin"], "topics": "*"}]},
               {"principal": "prometheus", "sha256": sha256_hex("ci-metrics-token"),
                "grants": [{"actions": ["metrics"], "topics": "*"}]}]
    if mtls:
        entries.append({"principal": CERT_PRINCIPAL, "grants": [{"actions": ["admin"], "topics": "*"}]})
    if path.endswith((".yaml", ".yml")):
        return yaml.safe_dump({"tokens": entries}, sort_keys=False)
    out = ["# tokens file written by render_checks.py smoke"]
    for e in entries:
        out += ["", "[[tokens]]", f"principal = {json.dumps(e['principal'])}"]
        if "sha256" in e:
            out.append(f"sha256 = {json.dumps(e['sha256'])}")
        for g in e["grants"]:
            out += ["", "[[tokens.grants]]", f"actions = {json.dumps(g['actions'])}",
                    f"topics = {json.dumps(g['topics'])}"]
    return "\n".join(out) + "\n"


def parse_tokens(path, text):
    if path.endswith((".yaml", ".yml")):
        return (yaml.safe_load(text) or {}).get("tokens", [])
    return tomllib.loads(text).get("tokens", [])


def kubelet_write(host_dir, files, generation):
    """Write FILES ({name: text}) the way the kubelet's atomic writer updates a
    Secret/ConfigMap volume: a timestamped directory, the `..data` symlink
    swapped by rename, and per-file symlinks through `..data`."""
    import os
    host_dir.mkdir(parents=True, exist_ok=True)
    old = os.readlink(host_dir / "..data") if (host_dir / "..data").is_symlink() else None
    ts = f"..2025_01_01_00_00_00.{generation:09d}"
    (host_dir / ts).mkdir()
    for name, text in files.items():
        (host_dir / ts / name).write_text(text, encoding="utf-8")
        os.chmod(host_dir / ts / name, 0o440)
    tmp_link = host_dir / "..data_tmp"
    os.symlink(ts, tmp_link)
    os.replace(tmp_link, host_dir / "..data")
    for name in files:
        if not (host_dir / name).is_symlink():
            os.symlink(f"..data/{name}", host_dir / name)
    if old:
        import shutil
        shutil.rmtree(host_dir / old)


def check_writes(trace_path, allowed_dirs, test_root=None):
    """Errors for file writes outside ALLOWED_DIRS in an strace -f log (they
    would fail on the pod's read-only root filesystem). Paths under TEST_ROOT
    (the test's own tree, e.g. the mounted Secrets) count only when inside
    ALLOWED_DIRS, even if TEST_ROOT itself lies in an allowed directory."""
    write_re = re.compile(r'^\d+\s+(openat|open|creat|mkdir|mkdirat|rename|renameat2?|unlink|unlinkat|'
                          r'truncate|symlink|symlinkat|link|linkat|chmod|fchmodat)\((.*)$')
    bad = set()
    for line in pathlib.Path(trace_path).read_text(errors="replace").splitlines():
        m = write_re.match(line)
        if not m:
            continue
        call, rest = m.groups()
        if call in ("open", "openat") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", rest):
            continue
        if "= -1 " in rest and call in ("open", "openat"):
            continue  # a failed attempt, reported by the server itself if it matters
        for path in re.findall(r'"((?:[^"\\]|\\.)*)"', rest):
            if not path.startswith("/"):
                if rest.startswith("AT_FDCWD") or call in ("open", "creat", "mkdir", "rename",
                                                          "unlink", "truncate", "chmod"):
                    continue  # relative to the working directory = the data volume
                continue  # relative to an opened directory
            if path.startswith("/proc/self/") or re.match(r"/proc/\d+/task/\d+/comm", path) \
                    or path == "/dev/null":
                continue
            inside = lambda d: path == d or path.startswith(d.rstrip("/") + "/")  # noqa: E731
            ok = [d for d in allowed_dirs if inside(d)]
            if not ok or (test_root and inside(test_root)
                          and not any(len(d) > len(test_root) for d in ok)):
                bad.add(f"{call} {path}")
    for b in sorted(bad)[:20]:
        err(f"writes outside the data volume and /tmp (read-only root filesystem): {b}")


def lay_out_mounts(docs, c, volumes, cfg_dir, tmp, pki, mtls, generation):
    """Every Secret/ConfigMap mount of container C (but the config directory)
    under TMP/mnt, laid out like the kubelet does it, filled with the rendered
    data or, for objects the chart only references, test fixtures. Returns
    ({mount path: host dir}, {container path of a file: (host dir, {name: text})})."""
    import secrets
    host_of = {}
    mounted = {}
    for m in c.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        src = v.get("secret") or v.get("configMap")
        if m["mountPath"] == cfg_dir or not src:
            continue
        host = tmp / "mnt" / m["mountPath"].strip("/")
        files = {}
        for item in src.get("items", []):
            text = rendered_data(docs, v, item["key"])
            if text is None:
                text = {
                    AUTH_DIR: lambda p: fixture_tokens(p, mtls),
                    JWKS_DIR: lambda p: pki.jwks(),
                    TLS_DIR: lambda p: {"tls.crt": (pki.d / "server.crt").read_text(),
                                        "tls.key": (pki.d / "server.key").read_text(),
                                        "ca.crt": pki.ca.read_text()}[p],
                    CLIENT_CA_DIR: lambda p: pki.ca.read_text(),
                    CLUSTER_DIR: lambda p: secrets.token_urlsafe(32) + "\n",
                }.get(m["mountPath"], lambda p: "")(item["path"])
            files[item["path"]] = text
        kubelet_write(host, files, generation)
        host_of[m["mountPath"]] = host
        for name in files:
            mounted[f"{m['mountPath']}/{name}"] = (host, files)
    return host_of, mounted


def cmd_smoke(a):
    """Run the server with the rendered configuration; see the module doc."""
    import os
    import shutil
    import signal
    import socket
    import ssl
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    a.binary = str(pathlib.Path(a.binary).resolve())
    docs = load_docs(a.rendered)
    sts = by_kind(docs, "StatefulSet")[0]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    env_in = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
    if "WEIR_PEERS" in env_in:
        err("a clustered render (WEIR_PEERS): use `smoke-cluster`")
        return finish("")
    cfg_path = env_in["WEIR_CONFIG"]
    cfg_dir = cfg_path.rpartition("/")[0]
    cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config")
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name)
    toml_text = cm["data"][cfg_path.rpartition("/")[2]]
    cfg = tomllib.loads(toml_text)
    shutdown_ms = cfg.get("shutdown_timeout_ms", 30000)
    tls_on = "tls_cert_file" in cfg
    mtls = "tls_client_ca_file" in cfg
    required_cert = cfg.get("tls_client_auth") == "required"
    reload_s = cfg.get("auth_reload_interval_ms", 2000) / 1000

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scheme = "https" if tls_on else "http"
    base = f"{scheme}://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pki = Pki(tmp / "pki")
        data_dir = tmp / "data"
        data_dir.mkdir()
        (tmp / "tmp").mkdir()
        # Every Secret/ConfigMap mount, laid out like the kubelet does it.
        generation = 1
        host_of, mounted = lay_out_mounts(docs, c, volumes, cfg_dir, tmp, pki, mtls, generation)
        for d, host in host_of.items():
            toml_text = toml_text.replace(f'"{d}/', f'"{host}/')
        (tmp / "config").mkdir()
        (tmp / "config" / "weir.toml").write_text(toml_text, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir),
               "TMPDIR": str(tmp / "tmp")}
        for k, val in env_in.items():
            for d, host in host_of.items():
                if val.startswith(d + "/"):
                    val = str(host) + val[len(d):]
            env[k] = val
        env["WEIR_CONFIG"] = str(tmp / "config" / "weir.toml")
        # Listen on all interfaces like the pod: the server's protected mode applies.
        env["WEIR_LISTEN"] = f"0.0.0.0:{port}"
        env["WEIR_DATA_DIR"] = str(data_dir)

        tokens_path = env_in.get("WEIR_AUTH_TOKENS_FILE")
        entries = []
        if tokens_path:
            host, files = mounted[tokens_path]
            entries = parse_tokens(tokens_path, files[tokens_path.rpartition("/")[2]])

        def token_with(action):
            for t in CI_TOKENS:
                for e in entries:
                    if e.get("sha256", "").lower() == sha256_hex(t) and any(
                            action in g["actions"] and g["topics"] == "*" for g in e["grants"]):
                        return t
            return None

        def cert_principal_with(action):
            return any(e["principal"] == CERT_PRINCIPAL and "sha256" not in e and any(
                action in g["actions"] for g in e["grants"]) for e in entries)

        # With tls_client_auth = required every connection needs a certificate:
        # one whose CN has no tokens-file entry (a bearer token then decides),
        # and Prometheus' (CN prometheus, see ci/mtls-required-values.yaml).
        conn_cert = pki.client("weir-check-client") if required_cert else None
        prom_cert = pki.client("prometheus") if required_cert else None

        def get(path, token=None, cert=None, url_base=None):
            cert = cert or conn_cert
            req = urllib.request.Request((url_base or base) + path)
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            ctx = None
            if (url_base or base).startswith("https"):
                ctx = ssl.create_default_context(cafile=str(pki.ca))
                if cert and cert[0]:
                    ctx.load_cert_chain(*cert)
            try:
                with urllib.request.urlopen(req, timeout=3, context=ctx) as r:
                    return r.status, r.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as e:
                return e.code, ""
            except (OSError, ssl.SSLError, http.client.HTTPException):
                return None, ""

        checked = []

        def expect(what, path, want, **kw):
            status, body = get(path, **kw)
            checked.append(f"{what} -> {want}")
            if status != want:
                err(f"{what}: GET {path} answered {status}, want {want}")
            return body

        def eventually(cond, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if cond():
                    return True
                time.sleep(0.3)
            return False

        def served_serial():
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            if conn_cert:
                ctx.load_cert_chain(*conn_cert)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, \
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
                    return int(t.getpeercert()["serialNumber"], 16)
            except (OSError, ssl.SSLError):
                return None

        log_path = tmp / "server.log"
        cmd = [a.binary, *c.get("args", [])]
        trace = tmp / "strace.txt"
        if a.trace_writes:
            cmd = ["strace", "-f", "-qq", "-o", str(trace), "-e",
                   "trace=open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,"
                   "truncate,symlink,symlinkat,link,linkat,chmod,fchmodat", *cmd]
        with open(log_path, "wb") as log:
            # Own process group: whatever happens, nothing outlives the check.
            proc = subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

        def server_pid():
            """The server's pid (under strace it is strace's child)."""
            if not a.trace_writes:
                return proc.pid
            for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == proc.pid:
                    return int(stat.parent.name)
            return None
        try:
            up = eventually(lambda: proc.poll() is not None
                            or get("/healthz", cert=conn_cert)[0] == 200, 30)
            if not up or proc.poll() is not None:
                err("/healthz did not answer 200 within 30 s"
                    + (f" (server exited with {proc.returncode})" if proc.poll() is not None else ""))
                raise _Abort()
            # Probes carry no credentials (and, with TLS, no client certificate).
            if not eventually(lambda: get("/readyz", cert=conn_cert)[0] == 200, 15):
                err("/readyz did not answer 200 within 15 s (without credentials)")
            checked.append("/healthz and /readyz 200 without credentials")
            if tls_on:
                checked.append("no plain HTTP on the TLS port")
                if get("/healthz", url_base=f"http://127.0.0.1:{port}")[0] is not None:
                    err("TLS is on but the port also answers plain HTTP")
                if required_cert:
                    checked.append("no answer without a client certificate")
                    if get("/healthz", cert=("", ""))[0] is not None:
                        err("tls_client_auth = required but a client without certificate got an answer")
            auth_on = bool(tokens_path or "auth_jwks_file" in cfg)
            admin = token_with("admin")
            if auth_on:
                if not required_cert:
                    expect("no credentials", "/v1/topics", 401)
                    expect("unknown token", "/v1/topics", 401, token="not-a-known-token")
                if admin:
                    expect("admin token", "/v1/topics", 200, token=admin, cert=conn_cert)
                if mtls and cert_principal_with("admin"):
                    expect(f"client certificate CN={CERT_PRINCIPAL}", "/v1/topics", 200,
                           cert=pki.client(CERT_PRINCIPAL))
                if "auth_jwks_file" in cfg:
                    now = int(time.time())
                    claims = {"sub": "ci-jwt", "iat": now, "exp": now + 300,
                              "aud": cfg.get("auth_jwt_audience"), "iss": cfg.get("auth_jwt_issuer"),
                              cfg.get("auth_jwt_grants_claim", "weir"): [{"actions": ["admin"], "topics": "*"}]}
                    claims = {k: v for k, v in claims.items() if v is not None}
                    expect("JWT signed by the JWKS key", "/v1/topics", 200, token=pki.jwt(claims),
                           cert=conn_cert)
                    if "aud" in claims:
                        expect("JWT for another audience", "/v1/topics", 401,
                               token=pki.jwt({**claims, "aud": "someone-else"}), cert=conn_cert)
            else:
                expect("anonymous (allow_anonymous)", "/v1/topics", 200)
            if cfg.get("auth_protect_metrics"):
                if not required_cert:
                    expect("/metrics without credentials (auth_protect_metrics)", "/metrics", 401)
                metrics_token = token_with("metrics") if not required_cert else None
                body = expect("/metrics with Prometheus' credentials", "/metrics", 200,
                              token=metrics_token, cert=prom_cert)
            else:
                body = expect("/metrics without credentials", "/metrics", 200, cert=conn_cert)
            if body and "# TYPE" not in body:
                err("/metrics did not answer Prometheus text")
            if cfg.get("auth_protect_docs") and not required_cert:
                expect("/openapi.json without credentials (auth_protect_docs)", "/openapi.json", 401)
                if admin:
                    expect("/openapi.json with a token", "/openapi.json", 200, token=admin)

            # Secret rotation: the kubelet swaps ..data; the server re-reads.
            if tokens_path and admin:
                host, files = mounted[tokens_path]
                name = tokens_path.rpartition("/")[2]
                new = {**files, name: files[name].replace(sha256_hex(admin), sha256_hex("ci-rotated-token"))
                       .replace(sha256_hex(admin).upper(), sha256_hex("ci-rotated-token"))}
                generation += 1
                kubelet_write(host, new, generation)
                checked.append("rotated tokens file picked up")
                if not eventually(lambda: get("/v1/topics", token="ci-rotated-token", cert=conn_cert)[0] == 200
                                  and get("/v1/topics", token=admin, cert=conn_cert)[0] == 401,
                                  reload_s + 15):
                    err(f"rotated tokens file (kubelet ..data swap) not picked up within {reload_s + 15:.0f} s")
            if tls_on:
                crt, key, serial = pki.server("server-renewed")
                host = host_of[TLS_DIR]
                files = {p.name: (host / p.name).read_text() for p in host.iterdir()
                         if not p.name.startswith("..")}
                files.update({"tls.crt": crt.read_text(), "tls.key": key.read_text()})
                generation += 1
                kubelet_write(host, files, generation)
                checked.append("renewed certificate served")
                if not eventually(lambda: served_serial() == serial, reload_s + 15):
                    err(f"renewed certificate (kubelet ..data swap) not served within {reload_s + 15:.0f} s")
        except _Abort:
            pass
        finally:
            if proc.poll() is None:
                pid = server_pid()
                if pid:
                    os.kill(pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=shutdown_ms / 1000 + 10)
                except subprocess.TimeoutExpired:
                    err("server did not stop within shutdown_timeout_ms after SIGTERM")
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if not errors and proc.returncode != 0:
            err(f"server exited with status {proc.returncode} after SIGTERM")
        if a.trace_writes and trace.exists():
            # The pod's writable places: the data volume and the /tmp emptyDir.
            check_writes(trace, [str(data_dir), str(tmp / "tmp"), "/tmp"], test_root=str(tmp))

        # Protected mode: the same configuration without allow_anonymous must
        # be refused by the server, as the chart refuses to render it.
        if cfg.get("allow_anonymous") is True:
            checked.append("refused without allow_anonymous")
            refused = re.sub(r"(?m)^allow_anonymous = true$", "allow_anonymous = false", toml_text)
            (tmp / "config" / "weir.toml").write_text(refused, encoding="utf-8")
            shutil.rmtree(data_dir)
            data_dir.mkdir()
            with open(tmp / "refused.log", "wb") as log:
                r = subprocess.Popen([a.binary, *c.get("args", [])], env=env, cwd=data_dir,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                r.wait(timeout=20)
                if r.returncode == 0:
                    err("without allow_anonymous the server started on 0.0.0.0 (exit 0)")
                elif "anonymous" not in (tmp / "refused.log").read_text(errors="replace"):
                    err("without allow_anonymous the server failed, but not naming allow-anonymous")
            except subprocess.TimeoutExpired:
                os.killpg(r.pid, signal.SIGKILL)
                r.wait()
                err("without allow_anonymous the server started on 0.0.0.0 (protected mode missing)")
        if errors:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            print("server log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
    print("checked:\n  " + "\n  ".join(checked))
    finish(f"smoke ok: {a.binary} on 0.0.0.0 with the rendered config ({scheme}"
           f"{', mTLS ' + cfg.get('tls_client_auth', '') if mtls else ''}"
           f"{', auth' if tokens_path or 'auth_jwks_file' in cfg else ', anonymous'}), stopped cleanly "
           f"by SIGTERM{'; no writes outside the data dir and /tmp' if a.trace_writes else ''}")


def cmd_smoke_cluster(a):
    """Run the clustered render as replicas weir-server processes on loopback;
    see the module doc."""
    import os
    import shlex
    import signal
    import socket
    import ssl
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    a.binary = str(pathlib.Path(a.binary).resolve())
    docs = load_docs(a.rendered)
    sts = by_kind(docs, "StatefulSet")[0]
    sts_name = sts["metadata"]["name"]
    n = sts["spec"]["replicas"]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    env_in = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
    if "WEIR_PEERS" not in env_in:
        err("not a clustered render (no WEIR_PEERS): use `smoke`")
        return finish("")
    cmd_in = c.get("command") or []
    if len(cmd_in) < 3 or IMAGE_BINARY not in cmd_in[2]:
        err(f"the clustered container's command does not start {IMAGE_BINARY}")
        return finish("")
    cfg_path = env_in["WEIR_CONFIG"]
    cfg_dir = cfg_path.rpartition("/")[0]
    cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config")
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name)
    toml_text = cm["data"][cfg_path.rpartition("/")[2]]
    cfg = tomllib.loads(toml_text)
    shutdown_ms = cfg.get("shutdown_timeout_ms", 30000)
    tls_on = "tls_cert_file" in cfg
    mtls = "tls_client_ca_file" in cfg
    required_cert = cfg.get("tls_client_auth") == "required"
    scheme = "https" if tls_on else "http"

    # The rendered peers name pod <sts>-<id - 1>; here node id -> 127.0.0.1 ports.
    rendered_peers = dict(x.split("=", 1) for x in env_in["WEIR_PEERS"].split(","))
    if sorted(rendered_peers) != [str(i + 1) for i in range(n)]:
        err(f"WEIR_PEERS {env_in['WEIR_PEERS']!r} does not list nodes 1..{n}")
        return finish("")
    for node_id, addr in rendered_peers.items():
        if not addr.startswith(f"{sts_name}-{int(node_id) - 1}."):
            err(f"WEIR_PEERS: node {node_id} is {addr}, not pod {sts_name}-{int(node_id) - 1}")
    socks = []
    for _ in range(2 * n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    api_ports, cluster_ports = ports[:n], ports[n:]
    peers = ",".join(f"{i + 1}=127.0.0.1:{cluster_ports[i]}" for i in range(n))
    checked = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pki = Pki(tmp / "pki")
        host_of, mounted = lay_out_mounts(docs, c, volumes, cfg_dir, tmp, pki, mtls, 1)
        for d, host in host_of.items():
            toml_text = toml_text.replace(f'"{d}/', f'"{host}/')
        (tmp / "config").mkdir()
        (tmp / "config" / "weir.toml").write_text(toml_text, encoding="utf-8")
        # The pod's own command, with this binary for the image's.
        script = cmd_in[2].replace(IMAGE_BINARY, shlex.quote(a.binary))
        cmd = [*cmd_in[:2], script, *cmd_in[3:], *c.get("args", [])]

        def node_env(i):
            data_dir = tmp / f"node-{i}" / "data"
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir),
                   "TMPDIR": str(tmp / f"node-{i}" / "tmp"), "HOSTNAME": f"{sts_name}-{i}"}
            for k, val in env_in.items():
                for d, host in host_of.items():
                    if val.startswith(d + "/"):
                        val = str(host) + val[len(d):]
                env[k] = val
            env.update({"WEIR_CONFIG": str(tmp / "config" / "weir.toml"),
                        "WEIR_LISTEN": f"127.0.0.1:{api_ports[i]}",
                        "WEIR_DATA_DIR": str(data_dir),
                        "WEIR_CLUSTER_LISTEN": f"127.0.0.1:{cluster_ports[i]}",
                        "WEIR_PEERS": peers})
            return env, data_dir

        procs = {}

        def start(i):
            env, data_dir = node_env(i)
            data_dir.mkdir(parents=True, exist_ok=True)
            (tmp / f"node-{i}" / "tmp").mkdir(exist_ok=True)
            with open(tmp / f"node-{i}.log", "ab") as log:
                procs[i] = subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

        def stop(i):
            """SIGTERM by pid (the shell exec'd the server), then wait."""
            p = procs[i]
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=shutdown_ms / 1000 + 10)
                except subprocess.TimeoutExpired:
                    err(f"node {i + 1} did not stop within shutdown_timeout_ms after SIGTERM")
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    return
            if p.returncode != 0:
                err(f"node {i + 1} exited with status {p.returncode}")

        tokens_path = env_in.get("WEIR_AUTH_TOKENS_FILE")
        entries = []
        if tokens_path:
            _, files = mounted[tokens_path]
            entries = parse_tokens(tokens_path, files[tokens_path.rpartition("/")[2]])
        admin = next((t for t in CI_TOKENS for e in entries
                      if e.get("sha256", "").lower() == sha256_hex(t)
                      and any("admin" in g["actions"] and g["topics"] == "*" for g in e["grants"])), None)
        auth_on = bool(tokens_path or "auth_jwks_file" in cfg)
        client_cert = pki.client("weir-check-client") if required_cert else None

        def call(i, method, path, body=None, token=None):
            req = urllib.request.Request(f"{scheme}://127.0.0.1:{api_ports[i]}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode())
            if body is not None:
                req.add_header("content-type", "application/json")
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            ctx = None
            if tls_on:
                ctx = ssl.create_default_context(cafile=str(pki.ca))
                if client_cert:
                    ctx.load_cert_chain(*client_cert)
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                    return r.status, r.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode("utf-8", "replace")
            except (OSError, ssl.SSLError, http.client.HTTPException):
                return None, ""

        def eventually(cond, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if cond():
                    return True
                time.sleep(0.3)
            return False

        readyz_seen = set()

        def ready(i):
            status, body = call(i, "GET", "/readyz")
            try:
                readyz_seen.add(f"{status} {json.loads(body).get('status')}")
            except ValueError:
                readyz_seen.add(str(status) if status else "no answer yet")
            return status == 200

        def wait_ready(nodes, seconds, what):
            t0 = time.monotonic()
            pending = set(nodes)
            ok = eventually(lambda: not pending.difference_update(
                {i for i in pending if procs[i].poll() is None and ready(i)}) and not pending, seconds)
            if not ok:
                dead = [i + 1 for i in nodes if procs[i].poll() is not None]
                err(f"{what}: node(s) {sorted(i + 1 for i in pending)} not ready (/readyz 200) within "
                    f"{seconds} s" + (f"; exited: {dead}" if dead else ""))
                raise _Abort()
            return time.monotonic() - t0

        token = admin if auth_on else None
        acked = []

        def produce(via, value):
            """Produce one message through node VIA; counts it when acknowledged
            (a client retries 503s, with the same idempotency id)."""
            def attempt():
                status, _ = call(via, "POST", "/v1/topics/ci-ha/messages",
                                 {"messages": [{"value": value, "id": value}]}, token)
                return status == 200
            if eventually(attempt, 20):
                acked.append(value)
            else:
                err(f"produce of {value} through node {via + 1} not acknowledged within 20 s")

        try:
            # Node 1 alone (its peers not scheduled yet): alive for the
            # liveness and startup probes, not ready while the cluster forms.
            start(0)
            alone = {}
            eventually(lambda: procs[0].poll() is not None or (
                alone.update(healthz=call(0, "GET", "/healthz")[0], readyz=call(0, "GET", "/readyz"))
                or (alone["healthz"] == 200 and alone["readyz"][0] is not None)), 15)
            readyz_alone = alone.get("readyz", (None, ""))
            checked.append(f"node 1 alone: /healthz {alone.get('healthz')}, /readyz {readyz_alone[0]} "
                           f"{readyz_alone[1].strip()}")
            if alone.get("healthz") != 200 or readyz_alone[0] != 503 or "cluster_forming" not in readyz_alone[1]:
                err(f"node 1 without its peers: /healthz {alone.get('healthz')} (want 200: alive), /readyz "
                    f"{readyz_alone[0]} {readyz_alone[1].strip()!r} (want 503 cluster_forming)")
            for i in range(1, n):
                start(i)
            took = wait_ready(range(n), 30, "cluster formation")
            checked.append(f"{n} nodes formed a cluster, all /readyz 200 after {took:.1f} s "
                           f"(seen: {', '.join(sorted(readyz_seen))})")
            if auth_on and not required_cert:
                status, _ = call(0, "GET", "/v1/cluster")
                checked.append("GET /v1/cluster without credentials -> 401")
                if status != 401:
                    err(f"GET /v1/cluster without credentials answered {status}, want 401")
            if auth_on and not admin:
                print("note: no admin test token in the rendered tokens file: cluster view and "
                      "data checks skipped")
                raise _Abort()
            for i in range(n):
                status, body = call(i, "GET", "/v1/cluster", token=token)
                view = json.loads(body) if status == 200 else {}
                ids = sorted(x.get("id") for x in view.get("nodes", []))
                leaders = [x.get("id") for x in view.get("nodes", []) if x.get("state") == "leader"]
                if status != 200 or view.get("node_id") != i + 1 or ids != list(range(1, n + 1)) \
                        or len(leaders) != 1:
                    err(f"pod {sts_name}-{i}: GET /v1/cluster {status}: node_id {view.get('node_id')} "
                        f"(want {i + 1}), nodes {ids}, leaders {leaders}")
            checked.append(f"pod {sts_name}-N is node N+1; every node sees nodes 1..{n} and one leader")

            # A rolling update as the StatefulSet controller runs it: highest
            # ordinal first, the next pod only once the restarted one is ready.
            status, body = call(0, "PUT", "/v1/topics/ci-ha", {"partitions": n}, token)
            if status not in (200, 201):
                err(f"PUT /v1/topics/ci-ha answered {status}: {body[:200]}")
                raise _Abort()
            for k in range(3):
                produce(n - 1, f"before-{k}")
            for i in reversed(range(n)):
                stop(i)
                start(i)
                took = wait_ready([i], 30, f"rolling restart of node {i + 1}")
                checked.append(f"node {i + 1} restarted (SIGTERM, exit 0) and caught up in {took:.1f} s")
                produce((i + 1) % n, f"after-restart-{i + 1}")
            def read_all(via):
                got = []
                for part in range(n):
                    status, body = call(via, "GET", f"/v1/topics/ci-ha/partitions/{part}/messages"
                                        "?offset=0&limit=1000", token=token)
                    if status != 200:
                        return None
                    got += [m.get("value") for m in json.loads(body).get("messages", [])]
                return got
            for via in range(n):
                first = got = read_all(via)
                if first is None or any(v not in first for v in acked):
                    # Not yet applied there: allow a moment (eventual, not lost).
                    eventually(lambda: all(v in (read_all(via) or []) for v in acked), 10)
                    got = read_all(via)
                if got is None:
                    err(f"reading every partition through node {via + 1} failed")
                    continue
                missing = [v for v in acked if v not in got]
                twice = sorted({v for v in got if got.count(v) > 1})
                if missing or twice:
                    err(f"after the rolling restart, through node {via + 1}: acknowledged but missing "
                        f"{missing}, read twice {twice}")
                elif first is None or any(v not in first for v in acked):
                    print(f"note: node {via + 1}'s first read after the roll lacked acknowledged "
                          f"{[v for v in acked if v not in (first or [])]} (there a moment later)")
            checked.append(f"{len(acked)} acknowledged messages (before and between the restarts) "
                           f"read back once through every node")
        except _Abort:
            pass
        finally:
            for i in procs:
                stop(i)
        checked.append("every node stopped by SIGTERM with exit status 0")
        if errors:
            for i in range(n):
                log = tmp / f"node-{i}.log"
                if log.exists():
                    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                    print(f"node {i + 1} log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
    print("checked:\n  " + "\n  ".join(checked))
    if a.trace_writes:
        print("note: --trace-writes is not applied to the cluster (the single-node smoke covers it)")
    finish(f"smoke-cluster ok: {n} x {a.binary} on 127.0.0.1 with the rendered command, env and "
           f"weir.toml ({scheme}{', auth' if auth_on else ', anonymous'})")


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
    s.add_argument("--trace-writes", action="store_true",
                   help="run the server under strace and fail on writes outside the data dir")
    s = sub.add_parser("smoke-cluster")
    s.add_argument("rendered")
    s.add_argument("binary")
    s.add_argument("--trace-writes", action="store_true", help="accepted and ignored")
    a = p.parse_args()
    {"split": cmd_split, "asserts": cmd_asserts, "crd-fields": cmd_crd_fields,
     "identical": cmd_identical, "rules-file": cmd_rules_file, "smoke": cmd_smoke,
     "smoke-cluster": cmd_smoke_cluster}[a.cmd](a)


if __name__ == "__main__":
    main()
