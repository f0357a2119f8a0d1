#!/usr/bin/env python3
"""Rebuilds pcaps/sample-api.pcap: real HTTP/1.1 API traffic on loopback.

An aiohttp JSON API and Python http.client talk over 127.0.0.1 while tcpdump
captures (root, tcpdump and aiohttp needed). The exchanges cover what an API
inventory sees: GET by id, search with a query, POST/PUT/PATCH/DELETE with
JSON bodies, a chunked streaming response, gzip, 404, 500, HEAD, a 304 and
keep-alive connections.
"""
import asyncio
import gzip
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from aiohttp import web

PORT = 18080
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample-api.pcap")


def app():
    r = web.RouteTableDef()

    @r.get("/api/v1/users/{uid}")
    async def user(req):
        uid = int(req.match_info["uid"])
        if uid == 404:
            return web.json_response({"error": "not found"}, status=404)
        if req.headers.get("If-None-Match") == '"u%d"' % uid:
            return web.Response(status=304, headers={"ETag": '"u%d"' % uid})
        body = {"id": uid, "name": "user%d" % uid, "email": "user%d@example.org" % uid,
                "roles": ["reader"], "active": True}
        return web.json_response(body, headers={"ETag": '"u%d"' % uid})

    @r.get("/api/v1/search")
    async def search(req):
        q = req.query.get("q", "")
        items = [{"id": i, "title": "%s %d" % (q, i)} for i in range(int(req.query.get("limit", 5)))]
        data = json.dumps({"items": items}).encode()
        if "gzip" in req.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzip.compress(data), content_type="application/json",
                                headers={"Content-Encoding": "gzip"})
        return web.Response(body=data, content_type="application/json")

    @r.get("/api/v1/orders/{oid}/items")
    async def items(req):
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        for i in range(4):
            await resp.write(json.dumps({"sku": "SKU-%d" % i, "qty": i + 1}).encode() + b"\n")
        await resp.write_eof()
        return resp

    @r.post("/api/v1/orders")
    async def create(req):
        body = await req.json()
        return web.json_response({"id": "6f1c2a7e-0b8e-4d5b-9c1e-3f2d1a0b9c8d", "items": len(body["items"])},
                                 status=201, headers={"Location": "/api/v1/orders/6f1c2a7e"})

    @r.put("/api/v1/users/{uid}")
    @r.patch("/api/v1/users/{uid}")
    async def update(req):
        body = await req.json()
        return web.json_response(dict(body, id=int(req.match_info["uid"])))

    @r.delete("/api/v1/users/{uid}")
    async def delete(req):
        return web.Response(status=204)

    @r.get("/api/v1/reports/daily")
    async def boom(req):
        raise RuntimeError("report backend down")

    a = web.Application()
    a.add_routes(r)
    return a


def serve(ready):
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app(), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", PORT).start())
    ready.set()
    loop.run_forever()


def client():
    hdr = {"User-Agent": "sample-client/1.0", "Accept": "application/json"}
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    for path, extra in (("/api/v1/users/1", {}), ("/api/v1/users/2", {}),
                        ("/api/v1/users/2", {"If-None-Match": '"u2"'}),
                        ("/api/v1/users/404", {}),
                        ("/api/v1/search?q=shoes&limit=3", {"Accept-Encoding": "gzip"}),
                        ("/api/v1/orders/6f1c2a7e/items", {})):
        c.request("GET", path, headers=dict(hdr, **extra))
        c.getresponse().read()
    c.request("HEAD", "/api/v1/users/3", headers=hdr)
    c.getresponse().read()
    body = json.dumps({"items": [{"sku": "SKU-1", "qty": 2}], "card": "4111111111111111"})
    c.request("POST", "/api/v1/orders", body=body,
              headers=dict(hdr, **{"Content-Type": "application/json", "Authorization": "Bearer t0k3n"}))
    c.getresponse().read()
    c.close()
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    for method in ("PUT", "PATCH"):
        c.request(method, "/api/v1/users/7", body=json.dumps({"name": "seven"}),
                  headers=dict(hdr, **{"Content-Type": "application/json"}))
        c.getresponse().read()
    c.request("DELETE", "/api/v1/users/7", headers=hdr)
    c.getresponse().read()
    c.request("GET", "/api/v1/reports/daily", headers=dict(hdr, Connection="close"))
    c.getresponse().read()
    c.close()


def main():
    logging.disable(logging.ERROR)      # the 500 handler's traceback is expected
    ready = threading.Event()
    threading.Thread(target=serve, args=(ready,), daemon=True).start()
    ready.wait(10)
    cap = subprocess.Popen(["tcpdump", "--immediate-mode", "-q", "-i", "lo", "-s", "0", "-U", "-w", OUT, "tcp port %d" % PORT],
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    client()
    time.sleep(1.0)
    cap.send_signal(signal.SIGINT)
    cap.wait(10)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    sys.exit(main())
