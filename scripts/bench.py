#!/usr/bin/env python3
"""`make bench`: the standard workloads against a fresh server, one table.

Starts the release `weir-server` on a free loopback port over a temporary
data directory (default settings: fsync = always), runs every workload with
`weir bench ... --output json`, stops the server and prints one summary
table (Markdown, ready for BENCHMARKS.md). Progress goes to stderr. The
last column is the server's resident memory right after each workload and,
in parentheses, its peak so far (node 1's in a cluster): memory is bounded
by configuration, not by the load, so it levels off.

    scripts/bench.py [--bin-dir DIR] [--seconds N] [--only NAME ...] [--cluster N]

The workloads are the issue's harness: 100-byte messages, batches of 100,
10 requests in flight (1,000 messages), durable acks.

`--cluster 3` runs the same workloads against a 3-node cluster on loopback
(every node on the same machine, its own data directory and ports;
topics get replication factor 3, so every produce waits for two fsyncs on
two nodes). The client talks to node 1; partitions led elsewhere are
forwarded. Subscriptions are per node in a cluster today, so the consume
and end-to-end rows read node 1's replica.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workloads(seconds):
    d = str(seconds)
    common = ["--batch", "100", "--concurrency", "10"]
    return [
        ("publish 100 B, json, 1 partition", "produce",
         ["produce", *common, "--partitions", "1", "--duration", d, "--encoding", "json"]),
        ("publish 100 B, binary, 1 partition", "produce",
         ["produce", *common, "--partitions", "1", "--duration", d, "--encoding", "binary"]),
        ("publish 100 B, binary, 1 partition, WebSocket", "produce",
         ["produce", *common, "--partitions", "1", "--duration", d, "--encoding", "binary",
          "--transport", "ws"]),
        ("publish 100 B, binary, 64 partitions", "produce",
         ["produce", *common, "--partitions", "64", "--duration", d, "--encoding", "binary"]),
        ("publish 100 B, json, 64 partitions", "produce",
         ["produce", *common, "--partitions", "64", "--duration", d, "--encoding", "json"]),
        ("publish 1 KiB, binary", "produce",
         ["produce", *common, "--size", "1024", "--partitions", "4", "--duration", d,
          "--encoding", "binary"]),
        ("consume + ack 100 B, json", "consume",
         ["consume", *common, "--partitions", "4", "--count", "1000000", "--encoding", "json"]),
        ("consume + ack 100 B, binary", "consume",
         ["consume", *common, "--partitions", "4", "--count", "1000000", "--encoding", "binary"]),
        ("consume + ack 100 B, batch ack ids, binary", "consume",
         ["consume", *common, "--partitions", "4", "--count", "1000000", "--encoding", "binary",
          "--ack", "batch"]),
        ("consume + ack 100 B, binary, WebSocket", "consume",
         ["consume", *common, "--partitions", "4", "--count", "1000000", "--encoding", "binary",
          "--transport", "ws"]),
        ("publish → receive at 5,000 msg/s", "e2e",
         ["e2e", "--rate", "5000", "--duration", str(max(seconds, 10))]),
        # A 1M-message backlog written just before: its flushes and
        # compactions run in the background during the measurement.
        ("publish → receive at 5,000 msg/s, 1M backlog compacting", "e2e-backlog",
         ["e2e", "--rate", "5000", "--duration", str(max(seconds, 10))]),
    ]


def last_json(text):
    """The last JSON document in `text` (reports may be pretty-printed)."""
    decoder = json.JSONDecoder()
    at, last = 0, None
    text = text.strip()
    while at < len(text):
        last, end = decoder.raw_decode(text, at)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    if last is None:
        raise SystemExit("bench: no report in the output")
    return last


def wait_ready(url, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("bench: the server did not become ready in 30 s")


def rss_mib(proc):
    """The server's resident memory now and its peak so far, in MiB, from
    Linux's /proc (None elsewhere)."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def rss_cell(rss):
    return "" if rss is None else f"{rss[0]:,} ({rss[1]:,})"


def row(name, kind, report):
    if kind == "e2e":
        lat = report["latency_ms"]
        return (name, f'{report["achieved_rate"]:,.0f}', "",
                f'{lat["p50"]:.2f} / {lat["p99"]:.2f} / {lat["p999"]:.2f}',
                f'missing {report["missing"]}')
    lat = report["latency_ms"]
    return (name, f'{report["msgs_per_sec"]:,.0f}', f'{report["mb_per_sec"]:.1f}',
            f'{lat["p50"]:.2f} / {lat["p99"]:.2f} / {lat["p999"]:.2f}',
            f'{report["syncs_per_sec"]:,.0f} syncs/s')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/weir-target"))
    ap.add_argument("--bin-dir", default=os.path.join(target, "release"))
    ap.add_argument("--seconds", type=int, default=10, help="duration of each timed workload")
    ap.add_argument("--only", nargs="*", help="run only workloads whose name contains one of these")
    ap.add_argument("--cluster", type=int, default=1,
                    help="run against a cluster of this many nodes on loopback (replication factor 3)")
    args = ap.parse_args()
    server_bin = os.path.join(args.bin_dir, "weir-server")
    weir_bin = os.path.join(args.bin_dir, "weir")
    for b in (server_bin, weir_bin):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"bench: {b} not found; run `make build` first")

    data = tempfile.mkdtemp(prefix="weir-bench-")
    nodes = max(args.cluster, 1)
    ports = [free_port() for _ in range(nodes)]
    cluster_ports = [free_port() for _ in range(nodes)]
    url = f"http://127.0.0.1:{ports[0]}"
    log = open(os.path.join(data, "server.log"), "w")
    cluster_args = []
    if args.cluster > 1:
        secret = os.path.join(data, "cluster-secret")
        with open(secret, "w") as f:
            f.write("bench-cluster-secret-" + os.urandom(16).hex())
        peers = ",".join(f"{n + 1}=127.0.0.1:{p}" for n, p in enumerate(cluster_ports))
        cluster_args = [["--node-id", str(n + 1), "--peers", peers,
                         "--cluster-listen", f"127.0.0.1:{cluster_ports[n]}",
                         "--cluster-secret-file", secret] for n in range(nodes)]
    servers = [
        subprocess.Popen(
            [server_bin, "--listen", f"127.0.0.1:{ports[n]}",
             "--data-dir", os.path.join(data, f"db{n + 1}"), "--log-level", "warn",
             *(cluster_args[n] if cluster_args else [])],
            stdout=log, stderr=subprocess.STDOUT)
        for n in range(nodes)]
    rows = []
    try:
        for n in range(nodes):
            wait_ready(f"http://127.0.0.1:{ports[n]}", servers[n])
        for i, (name, kind, argv) in enumerate(workloads(args.seconds)):
            if args.only and not any(o in name for o in args.only):
                continue
            print(f"bench: [{i + 1}] {name} …", file=sys.stderr, flush=True)
            topic = f"bench-{i}"
            extra = ["--topic", topic]
            if kind == "e2e-backlog":
                fill = subprocess.run(
                    [weir_bin, "--server", url, "--output", "json", "bench", "produce",
                     "--batch", "1000", "--concurrency", "8", "--count", "1000000",
                     "--partitions", "4", "--encoding", "binary", "--topic", f"backlog-{i}",
                     "--keep"],
                    capture_output=True, text=True, timeout=600)
                if fill.returncode != 0:
                    print(fill.stderr, file=sys.stderr)
                    raise SystemExit("bench: filling the backlog failed")
                kind = "e2e"
            if kind in ("consume", "e2e"):
                extra += ["--subscription", f"bench-{i}"]
            out = subprocess.run(
                [weir_bin, "--server", url, "--output", "json", "bench", *argv, *extra],
                capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"bench: `{name}` failed ({out.returncode})")
            report = last_json(out.stdout)
            rows.append((*row(name, kind, report), rss_cell(rss_mib(servers[0]))))
    finally:
        for each in servers:
            each.send_signal(signal.SIGTERM)
        for each in servers:
            try:
                each.wait(timeout=60)
            except subprocess.TimeoutExpired:
                each.kill()
        log.close()
        if sys.exc_info()[0] is not None:
            with open(os.path.join(data, "server.log")) as f:
                tail = f.readlines()[-40:]
            print("bench: the servers' last log lines:\n" + "".join(tail), file=sys.stderr)
        shutil.rmtree(data, ignore_errors=True)

    head = ("workload", "msg/s", "MB/s", "latency ms p50 / p99 / p99.9", "",
            "server RSS MiB (peak)")
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
