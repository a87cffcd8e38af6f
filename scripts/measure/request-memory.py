#!/usr/bin/env python3
"""Memory of a burst of large produce requests, as an operator would see it.

Starts a release `weir-server` on 127.0.0.1 over a temporary data directory,
sends CONCURRENCY produce requests of BODY_MIB MiB each at once (JSON
batches of 1 KiB base64 values from os.urandom, so nothing compresses),
and reports the server's peak RSS (VmHWM), its RSS once the burst is over
(after IDLE_S seconds) and how the requests were answered.

    scripts/measure/request-memory.py [--concurrency 20] [--body-mib 30] [--idle-s 10] [-- server flags]

Used for the "Security" figures in BENCHMARKS.md. Not a test: numbers
depend on the machine.
"""
import argparse, base64, http.client, json, os, re, shutil, subprocess, sys, tempfile, threading, time


def rss(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024  # MiB
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--body-mib", type=int, default=30)
    p.add_argument("--idle-s", type=float, default=10)
    p.add_argument("--server", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/weir-target")), "release/weir-server"))
    p.add_argument("extra", nargs="*")
    a = p.parse_args()
    data = tempfile.mkdtemp(prefix="weir-mem-")
    log = open(os.path.join(data, "server.log"), "w+")
    server = subprocess.Popen([a.server, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "d"), "--fsync", "never", *a.extra],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        port = None
        for _ in range(200):
            log.seek(0)
            m = re.search(r"listen=127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if not port:
            sys.exit("server did not start")
        def req(method, path, body=None, ctype="application/json"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request(method, path, body=body, headers={"content-type": ctype} if body is not None else {})
            r = c.getresponse(); r.read(); c.close()
            return r.status
        req("PUT", "/v1/topics/mem", b"{}")
        value = base64.b64encode(os.urandom(768)).decode()  # 1 KiB of base64
        one = json.dumps({"value_b64": value})
        n = a.body_mib * 1024 * 1024 // (len(one) + 1)
        body = ('{"messages":[' + ",".join([one] * n) + "]}").encode()
        base_rss = rss(server.pid, "VmRSS")
        statuses = []
        def send():
            try:
                statuses.append(req("POST", "/v1/topics/mem/messages", body))
            except Exception as e:  # noqa: BLE001 - report, not crash
                statuses.append(str(e))
        threads = [threading.Thread(target=send) for _ in range(a.concurrency)]
        started = time.time()
        for t in threads: t.start()
        for t in threads: t.join()
        took = time.time() - started
        peak = rss(server.pid, "VmHWM")
        time.sleep(a.idle_s)
        after = rss(server.pid, "VmRSS")
        counts = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        print(json.dumps({"concurrency": a.concurrency, "body_mib": len(body) // (1 << 20), "messages_per_body": n,
                          "rss_before_mib": base_rss, "peak_rss_mib": peak, "rss_after_idle_mib": after,
                          "idle_s": a.idle_s, "seconds": round(took, 1), "statuses": counts}))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
