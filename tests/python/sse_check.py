#!/usr/bin/env python3
"""The Server-Sent Events endpoints driven by an independent client (the
standard library's http.client, no other dependency), against a real
`weir-server` on 127.0.0.1:0.

    sse_check.py PATH/TO/weir-server

Starts the server over a temporary data directory, runs the checks below in
order and ends with "N passed, N failed"; exits non-zero when any check
fails. Run by `make ws-python` (part of `make test`).
"""

import http.client
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

STEP_TIMEOUT = 20  # seconds for any one event or request (heartbeats: 15 s)


class Server:
    """A weir-server process; its output is drained so the pipe never fills."""

    def __init__(self, binary, data_dir):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env.update(RUST_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--log-format", "text", "--fsync", "never"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True)
        self.log = []
        lines = queue.Queue()

        def drain():
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                lines.put(line)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise RuntimeError("weir-server did not report `weir listening`:\n"
                                   + "\n".join(self.log[-50:])) from None
            found = re.search(r"weir listening.*listen=(\S+)", line)
            if found:
                self.host, port = found.group(1).rsplit(":", 1)
                self.port = int(port)
                break

    def connection(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=STEP_TIMEOUT)

    def http(self, method, path, body=None, headers=None):
        conn = self.connection()
        try:
            data = json.dumps(body) if body is not None else None
            all_headers = {"content-type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            text = response.read()
            return response.status, response.getheader("content-type"), json.loads(text or b"null")
        finally:
            conn.close()

    def events(self, path, headers=None):
        return EventStream(self, path, headers or {})


class EventStream:
    """One `text/event-stream` response, parsed line by line as the SSE
    specification says (like a browser's EventSource)."""

    def __init__(self, server, path, headers):
        self.conn = server.connection()
        self.conn.request("GET", path, headers={"accept": "text/event-stream", **headers})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, (path, self.response.status, self.response.read())
        content_type = self.response.getheader("content-type")
        assert content_type == "text/event-stream", content_type

    def next(self):
        """The next event as a dict (`id`, `event`, `data`, `comment`), or
        None when the server ended the stream."""
        event = {"data": []}
        while True:
            raw = self.response.readline()
            if not raw:
                return None
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if len(event) > 1 or event["data"]:
                    event["data"] = "\n".join(event["data"])
                    return event
                continue
            if line.startswith(":"):
                event["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"].append(value)
            elif name in ("id", "event"):
                event[name] = value

    def message(self):
        """The next `message` event (heartbeats skipped), its data parsed."""
        while True:
            event = self.next()
            assert event is not None, "the stream ended"
            if "comment" in event and "event" not in event:
                continue
            assert event.get("event") == "message", event
            event["json"] = json.loads(event["data"])
            return event

    def close(self):
        self.conn.close()


def produce(server, topic, messages):
    status, _, reply = server.http("POST", f"/v1/topics/{topic}/messages", {"messages": messages})
    assert status == 200, reply
    return reply["results"]


def check_tail_replays_then_resumes_with_last_event_id(server):
    status, _, _ = server.http("PUT", "/v1/topics/py", {"partitions": 3})
    assert status == 201, status
    produce(server, "py", [{"key": f"k{i}", "value": i} for i in range(30)])
    stream = server.events("/v1/topics/py/events?from=earliest")
    first = [stream.message() for _ in range(12)]
    stream.close()
    resume = first[-1]["id"]
    assert resume, first[-1]
    produce(server, "py", [{"key": f"k{i}", "value": i} for i in range(30, 35)])
    # What EventSource does when it reconnects.
    stream = server.events("/v1/topics/py/events?from=earliest", {"Last-Event-ID": resume})
    rest = [stream.message() for _ in range(23)]
    stream.close()
    seen = [(e["json"]["partition"], e["json"]["offset"]) for e in first + rest]
    assert len(set(seen)) == 35, f"duplicates: {seen}"
    for partition in range(3):
        offsets = [o for p, o in seen if p == partition]
        assert offsets == list(range(len(offsets))), f"partition {partition}: {offsets}"
    assert sorted(e["json"]["value"] for e in first + rest) == list(range(35))
    assert all("ack_id" not in e["json"] for e in first + rest)


def check_subscription_events_with_max_in_flight_and_http_acks(server):
    status, _, _ = server.http("PUT", "/v1/topics/pyq", {})
    assert status == 201, status
    retry = {"max_attempts": None,
             "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
    status, _, _ = server.http("PUT", "/v1/topics/pyq/subscriptions/work",
                               {"start": "earliest", "retry": retry})
    assert status == 201, status
    produce(server, "pyq", [{"value": i} for i in range(3)])
    stream = server.events("/v1/topics/pyq/subscriptions/work/events?max_in_flight=1")
    first = stream.message()
    assert first["id"] == first["json"]["ack_id"], first
    assert first["json"]["attempt"] == 1, first
    status, _, reply = server.http("POST", "/v1/topics/pyq/subscriptions/work/ack",
                                   {"ack_ids": [first["id"]]})
    assert status == 200 and reply["acked"] == 1, reply
    second = stream.message()
    assert second["json"]["value"] == 1, second
    stream.close()


def check_refusals_are_problem_documents(server):
    status, content_type, body = server.http("GET", "/v1/topics/nope/events")
    assert status == 404 and content_type == "application/problem+json", (status, content_type)
    assert body["code"] == "topic_not_found", body
    status, _, body = server.http("GET", "/v1/topics/py/events",
                                  headers={"Last-Event-ID": "garbage"})
    assert status == 400 and body["field"] == "Last-Event-ID", body


CHECKS = [
    check_tail_replays_then_resumes_with_last_event_id,
    check_subscription_events_with_max_in_flight_and_http_acks,
    check_refusals_are_problem_documents,
]


def main(binary):
    passed = failed = 0
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(binary, data_dir)
        try:
            for check in CHECKS:
                try:
                    check(server)
                    print(f"ok   {check.__name__}")
                    passed += 1
                except Exception:  # report every check, then fail the run
                    print(f"FAIL {check.__name__}")
                    traceback.print_exc()
                    failed += 1
        finally:
            if server.proc.poll() is None:
                server.proc.terminate()
                try:
                    server.proc.wait(15)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait()
            if failed:
                print("server log (last lines):\n" + "\n".join(server.log[-40:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: sse_check.py PATH/TO/weir-server")
    sys.exit(main(sys.argv[1]))
