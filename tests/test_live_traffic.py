"""Real servers and clients on loopback, captured by tcpdump, replayed.

Hand-checked pairing under pipelining: every path names the status its
response must carry, so a record pairing a request with the wrong response
fails. (tshark links pipelined responses to the wrong requests.)
"""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading

import pytest
from aiohttp import web

from loopback import Capture, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump"),
                                reason="needs root and tcpdump (.ci/run installs it)")


@pytest.fixture(scope="module")
def server():
    port = free_port()

    async def status(req):
        code = int(req.match_info["code"])
        if code in (204, 304):
            return web.Response(status=code)
        return web.Response(status=code, body=b"x" * code, content_type="application/json")

    async def echo(req):
        return web.Response(body=await req.read(), content_type="application/octet-stream")

    app = web.Application()
    app.add_routes([web.route("*", "/status/{code}", status), web.post("/echo", echo)])
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(10)
    yield port
    loop.call_soon_threadsafe(loop.stop)


def replay(path):
    r = subprocess.run(["sensor", "replay", str(path), "--format", "jsonl", "--raw-targets"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_pipelined_requests_pair_with_their_responses(tmp_path, server):
    cap = Capture(tmp_path / "p.pcap", server)
    codes = [200, 201, 404, 202, 500, 203, 204, 206, 410, 503]
    reqs = b"".join(b"GET /status/%d HTTP/1.1\r\nHost: api.local\r\n\r\n" % c for c in codes)
    reqs += b"HEAD /status/299 HTTP/1.1\r\nHost: api.local\r\n\r\n"
    reqs += b"POST /echo HTTP/1.1\r\nHost: api.local\r\nContent-Length: 5\r\n\r\nhello"
    reqs += b"GET /status/207 HTTP/1.1\r\nHost: api.local\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server)) as s:
        s.sendall(reqs)             # all at once, before any response
        while s.recv(65536):
            pass
    cap.stop()
    recs = replay(cap.path)
    got = [(r["method"], r["path"], r["status"]) for r in recs]
    want = [("GET", "/status/%d" % c, c) for c in codes] + [("HEAD", "/status/299", 299),
                                                            ("POST", "/echo", 200), ("GET", "/status/207", 207)]
    assert got == want
    by_path = {r["path"]: r for r in recs}
    assert by_path["/status/404"]["http.response.body.size"] == 404
    assert by_path["/status/299"]["http.response.body.size"] == 0        # HEAD: no body
    assert by_path["/echo"]["http.request.body.size"] == 5
    assert all(r["sensor.completeness"] == [] for r in recs)
    # requests went out in one burst; responses follow in order
    starts = [r["timing"]["response_start_ns"] for r in recs]
    assert starts == sorted(starts)


def test_curl_expect_100_continue_and_chunked_upload(tmp_path, server):
    if not shutil.which("curl"):
        pytest.skip("curl missing")
    cap = Capture(tmp_path / "c.pcap", server)
    body = tmp_path / "body.bin"
    body.write_bytes(b"z" * 200000)
    url = "http://127.0.0.1:%d/echo" % server
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", "Expect: 100-continue", "--data-binary",
                    "@%s" % body, url], check=True, timeout=30)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", "Transfer-Encoding: chunked", "--data-binary",
                    "@%s" % body, url], check=True, timeout=30)
    cap.stop()
    recs = replay(cap.path)
    assert [(r["method"], r["status"]) for r in recs] == [("POST", 200), ("POST", 200)]
    assert recs[0].get("http.response.interim") == [100]
    for r in recs:
        assert r["http.request.body.size"] == 200000 and r["http.response.body.size"] == 200000
    assert recs[1]["http.request.body.wire_size"] > 200000          # chunk framing counted on the wire
