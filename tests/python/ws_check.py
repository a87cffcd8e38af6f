#!/usr/bin/env python3
"""The WebSocket endpoints driven by an independent client (Python
`websockets`), against a real `weir-server` on 127.0.0.1:0.

    ws_check.py PATH/TO/weir-server

Starts the server over a temporary data directory, runs the checks below in
order (the last one stops the server) and ends with "N passed, N failed";
exits non-zero when any check fails. Run by `make ws-python` (part of
`make test`), which installs `websockets` into .tools/ first.
"""

import asyncio
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
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

STEP_TIMEOUT = 15  # seconds for any one frame or request


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
                self.addr = found.group(1)
                break

    def http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.addr}{path}", data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=STEP_TIMEOUT) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ws(self, path):
        return connect(f"ws://{self.addr}{path}", open_timeout=STEP_TIMEOUT)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))


async def check_tail_sees_pipelined_publishes(server):
    status, _ = server.http("PUT", "/v1/topics/py", {"partitions": 2})
    assert status == 201, status
    async with server.ws("/v1/topics/py/ws?from=earliest") as tail, \
            server.ws("/v1/topics/py/ws/publish") as publish:
        sent = []
        for i in range(10):
            messages = [{"key": f"k{i}", "value": {"i": i, "j": j}} for j in range(i % 3 + 1)]
            sent.append(messages)
            await publish.send(json.dumps(
                {"type": "publish", "request_id": f"r{i}", "messages": messages}))
        stored = {}
        for i, messages in enumerate(sent):
            reply = await recv_json(publish)
            assert reply["type"] == "published", reply
            assert reply["request_id"] == f"r{i}", f"reply out of order: {reply}"
            for message, result in zip(messages, reply["results"], strict=True):
                stored[(result["partition"], result["offset"])] = message["value"]
        seen = {}
        while len(seen) < len(stored):
            frame = await recv_json(tail)
            assert frame["type"] == "message" and "ack_id" not in frame, frame
            seen[(frame["partition"], frame["offset"])] = frame["value"]
        assert seen == stored, (seen, stored)
    for partition in (0, 1):
        status, page = server.http(
            "GET", f"/v1/topics/py/partitions/{partition}/messages?offset=0&limit=1000")
        assert status == 200, page
        for message in page["messages"]:
            assert stored[(partition, message["offset"])] == message["value"], message


async def check_malformed_frame_keeps_the_socket(server):
    async with server.ws("/v1/topics/py/ws/publish") as publish:
        await publish.send("this is not json")
        reply = await recv_json(publish)
        assert reply["type"] == "error" and reply["code"] == "invalid_request", reply
        await publish.send(json.dumps({"type": "publish", "request_id": "x",
                                       "messages": [{"value": 1, "unknown": 2}]}))
        reply = await recv_json(publish)
        assert reply["code"] == "invalid_request" and reply["request_id"] == "x", reply
        await publish.send(json.dumps({"type": "publish", "request_id": "ok",
                                       "messages": [{"value": "fine"}]}))
        reply = await recv_json(publish)
        assert reply["type"] == "published" and reply["request_id"] == "ok", reply


async def check_binary_frame_closes_with_1003(server):
    # A publish socket takes binary batches: garbage gets an error frame
    # and the socket stays open.
    async with server.ws("/v1/topics/py/ws/publish") as publish:
        await publish.send(b"\x00\x01")
        reply = await recv_json(publish)
        assert reply["type"] == "error" and reply["code"] == "invalid_request", reply
    # Any other socket closes with 1003 on a binary frame.
    async with server.ws("/v1/topics/py/ws") as tail:
        await tail.send(b"\x00\x01")
        try:
            while True:
                await asyncio.wait_for(tail.recv(), STEP_TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1003, closed


async def check_unknown_topic_is_refused_with_a_problem(server):
    try:
        async with server.ws("/v1/topics/nope/ws"):
            pass
    except InvalidStatus as refused:
        response = refused.response
        assert response.status_code == 404, response.status_code
        assert response.headers["content-type"] == "application/problem+json"
        assert json.loads(response.body)["code"] == "topic_not_found", response.body
    else:
        raise AssertionError("connected to an unknown topic")


async def check_shutdown_closes_with_1001(server):
    async with server.ws("/v1/topics/py/ws") as tail:
        # The socket is open and served before the server is told to stop.
        await tail.ping()
        server.proc.terminate()
        try:
            while True:
                await asyncio.wait_for(tail.recv(), STEP_TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
    code = await asyncio.to_thread(server.proc.wait, STEP_TIMEOUT)
    assert code == 0, f"server exited with {code}"


async def check_subscription_socket_credit_ack_and_release(server):
    status, _ = server.http("PUT", "/v1/topics/pyq", {})
    assert status == 201, status
    retry = {"max_attempts": None,
             "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
    status, _ = server.http("PUT", "/v1/topics/pyq/subscriptions/work",
                            {"start": "earliest", "retry": retry})
    assert status == 201, status
    status, _ = server.http("POST", "/v1/topics/pyq/messages",
                            {"messages": [{"value": i} for i in range(5)]})
    assert status == 200, status
    async with server.ws("/v1/topics/pyq/subscriptions/work/ws") as sub:
        await sub.send(json.dumps({"type": "credit", "messages": 3}))
        got = [await recv_json(sub) for _ in range(3)]
        assert all(f["type"] == "message" and f["attempt"] == 1 for f in got), got
        try:
            extra = await asyncio.wait_for(sub.recv(), 0.5)
            raise AssertionError(f"sent beyond the credit: {extra}")
        except asyncio.TimeoutError:
            pass
        await sub.send(json.dumps({"type": "ack", "request_id": "a1",
                                   "ack_ids": [got[0]["ack_id"], "AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"]}))
        reply = await recv_json(sub)
        assert reply == {"type": "acked", "request_id": "a1", "count": 1,
                         "unknown": ["AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"]}, reply
    # Closing released the two unacked leases: an HTTP pull gets them back.
    deadline = time.monotonic() + STEP_TIMEOUT
    values = set()
    while len(values) < 4 and time.monotonic() < deadline:
        status, page = server.http("POST", "/v1/topics/pyq/subscriptions/work/pull",
                                   {"max_messages": 10, "wait_ms": 500})
        assert status == 200, page
        values.update(m["value"] for m in page["messages"])
    assert values == {1, 2, 3, 4}, values


CHECKS = [
    check_tail_sees_pipelined_publishes,
    check_subscription_socket_credit_ack_and_release,
    check_malformed_frame_keeps_the_socket,
    check_binary_frame_closes_with_1003,
    check_unknown_topic_is_refused_with_a_problem,
    check_shutdown_closes_with_1001,  # last: stops the server
]


async def main(binary):
    passed = failed = 0
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(binary, data_dir)
        try:
            for check in CHECKS:
                try:
                    await asyncio.wait_for(check(server), 60)
                    print(f"ok   {check.__name__}")
                    passed += 1
                except Exception:  # report every check, then fail the run
                    print(f"FAIL {check.__name__}")
                    traceback.print_exc()
                    failed += 1
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
            if failed:
                print("server log (last lines):\n" + "\n".join(server.log[-40:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ws_check.py PATH/TO/weir-server")
    sys.exit(asyncio.run(main(sys.argv[1])))
