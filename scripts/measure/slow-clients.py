#!/usr/bin/env python3
"""Slowloris against a release `weir-server`: N connections that send half a
request and then nothing. Reports how long they stay open, the server's RSS
while they are open, and /healthz latency for everyone else meanwhile.

    scripts/measure/slow-clients.py [--connections 1000] [--server PATH] [-- server flags]
"""
import argparse, http.client, json, os, re, shutil, socket, subprocess, sys, tempfile, time


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--server", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release/weir-server"))
    p.add_argument("extra", nargs="*")
    a = p.parse_args()
    data = tempfile.mkdtemp(prefix="weir-slow-")
    log = open(os.path.join(data, "server.log"), "w+")
    server = subprocess.Popen([a.server, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "d"), *a.extra],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        port = None
        for _ in range(200):
            log.seek(0)
            m = re.search(r"listen=127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1)); break
            time.sleep(0.05)
        if not port:
            sys.exit("server did not start")
        base = rss(server.pid)
        socks = []
        for _ in range(a.connections):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/topics/t/messages HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            socks.append(s)
        opened = time.time()
        time.sleep(0.5)
        held = rss(server.pid)
        worst = 0.0
        closed_at = None
        while time.time() - opened < 120:
            t = time.time()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/healthz"); c.getresponse().read(); c.close()
            worst = max(worst, time.time() - t)
            still = 0
            for s in socks:
                try:
                    if s.recv(1) == b"":
                        continue
                except BlockingIOError:
                    still += 1
                except OSError:
                    continue
            if still == 0:
                closed_at = time.time() - opened
                break
            time.sleep(0.2)
        print(json.dumps({"connections": a.connections, "rss_before_mib": base, "rss_with_slow_clients_mib": held,
                          "all_closed_after_s": round(closed_at, 1) if closed_at else None,
                          "worst_healthz_ms": round(worst * 1000, 1)}))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
