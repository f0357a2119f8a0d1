"""TCP reassembly edge cases (RFC 9293), observed through `sensor replay` records."""
import re

import pytest

from pcapgen import LOSS, T0, Conv, community_id, flags, request, response, subset, write


def transaction(c, path, status, body=b"ok"):
    c.send_client(request(path))
    c.send_server(response(status, body))


@pytest.mark.parametrize("client,server", [
    (("10.0.0.1", 40000), ("10.0.0.2", 80)),
    (("2001:db8::1", 40000), ("2001:db8::2", 80)),
], ids=["ipv4", "ipv6"])
def test_in_order_baseline(replay, client, server):
    c = Conv(client, server)
    c.handshake()
    (tq,) = c.send_client(request("/hello?name=x", headers=[("User-Agent", "probe/1.0"), ("Accept", "*/*")]))
    (ts,) = c.send_server(response(200, b"hello", [("Content-Type", "text/plain")]))
    c.fin()
    (rec,) = replay(c).records
    exp = {
        "type": "http", "v": 1, "method": "GET", "path": "/hello", "status": 200, "host": "example.com",
        "client.address": client[0], "client.port": client[1],
        "server.address": server[0], "server.port": server[1],
        "network.protocol.version": "1.1", "http.request.method": "GET", "url.path": "/hello",
        "url.query.keys": ["name"], "url.target": None,
        "http.request.header.host": "example.com", "user_agent.original": "probe/1.0",
        "http.response.status_code": 200, "http.response.content_type": "text/plain",
        "http.request.header_names": ["host", "user-agent", "accept"],
        "http.response.header_names": ["content-type", "content-length"],
        "http.response.body.size": 5, "http.response.body.wire_size": 5,
        "start_ns": tq, "end_ns": ts, "timing": {"request_end_ns": tq, "response_start_ns": ts},
        "network.community_id": community_id(*client, *server),
        "sensor.protocol_switch": None,
    }
    assert subset(rec, exp) == exp
    assert rec.get("http.request.body.size", 0) == 0
    assert flags(rec) == set()


def test_out_of_order_segments(replay):
    c = Conv()
    c.handshake()
    req = request("/ooo/path?q=1", headers=[("Accept", "*/*")])
    c.send_client(req, seg=[7, 12], order=[2, 0, 1])  # cuts inside the request line
    c.send_server(response(200, b"A" * 3000), seg=1200, order=[1, 2, 0])
    c.fin()
    (rec,) = replay(c).records
    exp = {"method": "GET", "path": "/ooo/path", "status": 200, "http.response.body.size": 3000}
    assert subset(rec, exp) == exp
    assert flags(rec) == set()


def test_exact_retransmissions_make_no_duplicates(replay):
    c = Conv()
    c.handshake()
    c.send_client(request("/dup", "POST", b"x" * 500), seg=200, order=[0, 1, 0, 1, 2, 2])
    c.send_server(response(201, b"y" * 2000), seg=700, order=[0, 0, 1, 2, 1])
    c.packet("client", request("/dup", "POST", b"x" * 500)[:200], rel=0)  # late stray copy
    c.fin()
    (rec,) = replay(c).records
    exp = {"method": "POST", "path": "/dup", "status": 201,
           "http.request.body.size": 500, "http.response.body.size": 2000}
    assert subset(rec, exp) == exp
    assert flags(rec) == set()


def test_overlap_with_different_data_first_copy_wins(replay):
    c = Conv()
    c.handshake()
    # 1. The same range twice with different bytes, in order.
    c.packet("client", request("/aaaa"), rel=0)
    c.send_client(request("/bbbb"))
    c.send_server(response(200, b"1"))
    # 2. Later data arrives first; an in-order retransmission covering it disagrees there.
    real, at = request("/keep/this"), c.next_rel("client")
    c.packet("client", real[9:], rel=at + 9)  # "/this HTTP/1.1..."
    c.send_client(real.replace(b"/this", b"/evil"))
    c.send_server(response(202, b"2"))
    # 3. Two out-of-order pieces overlap each other with different bytes before the hole fills.
    real, at = request("/abc/def/ghi"), c.next_rel("client")
    c.packet("client", real[8:], rel=at + 8)  # "/def/ghi HTTP/1.1..."
    c.packet("client", b"/abc/XXX", rel=at + 4)
    c.send_client(real, seg=[4], order=[0])  # only "GET " is left to send
    c.send_server(response(203, b"3"))
    c.fin()
    recs = replay(c).records
    assert [(r["path"], r["status"]) for r in recs] == \
        [("/aaaa", 200), ("/keep/this", 202), ("/abc/def/ghi", 203)]


def test_sequence_wraparound(replay):
    c = Conv(isn_c=0xFFFFFF00, isn_s=0xFFFFFFF0)
    c.handshake()
    # 100-byte pieces: piece 2 straddles 2**32 on the client side and comes after piece 3.
    c.send_client(request("/wrap", "PUT", b"b" * 1000), seg=100, order=[0, 1, 3, 2, *range(4, 11)])
    c.send_server(response(200, b"r" * 700), seg=100)
    transaction(c, "/after", 204, b"")
    c.fin()
    recs = replay(c).records
    assert [(r["method"], r["path"], r["status"]) for r in recs] == \
        [("PUT", "/wrap", 200), ("GET", "/after", 204)]
    assert recs[0]["http.request.body.size"] == 1000
    assert recs[0]["http.response.body.size"] == 700
    assert all(flags(r) == set() for r in recs)


@pytest.mark.parametrize("side", ["request", "response"])
def test_lost_segment_in_body(replay, side):
    c = Conv()
    c.handshake()
    req = request("/one", "POST", b"y" * 3000) if side == "request" else request("/one")
    resp = response(200, b"z" * 3000)
    msg = {"request": req, "response": resp}[side]
    lose_middle = {"seg": [len(msg) - 2000, 1000], "order": [0, 2]}  # 1000 of its 3000 body bytes
    c.send_client(req, **(lose_middle if side == "request" else {}))
    c.send_server(resp, **(lose_middle if side == "response" else {}))
    transaction(c, "/two", 201)
    c.fin()
    one, two = replay(c).records
    assert (one["path"], one["status"], two["path"], two["status"]) == ("/one", 200, "/two", 201)
    assert f"{side}_gap" in flags(one)
    assert flags(two) == set()


@pytest.mark.parametrize("body", [b"", b"k=v"], ids=["no-body", "body"])
@pytest.mark.parametrize("side", ["request", "response"])
def test_lost_segment_in_headers_resyncs(replay, side, body):
    c = Conv()
    c.handshake()
    transaction(c, "/one", 200)
    # With a body, message 2 ends mid-line (no LF) right before message 3's segment.
    req2 = request("/two", "POST" if body else "GET", body,
                   [("User-Agent", "resync-test"), ("Accept", "*/*")])
    resp2 = response(201, body, [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
    lose_middle = {"seg": [25, 20], "order": [0, 2]}  # the lost piece is inside the header block
    c.send_client(req2, **(lose_middle if side == "request" else {}))
    c.send_server(resp2, **(lose_middle if side == "response" else {}))
    transaction(c, "/three", 202)
    c.fin()
    recs = {r.get("path"): r for r in replay(c).records}
    assert (recs["/one"]["status"], recs["/three"]["status"]) == (200, 202)
    assert flags(recs["/one"]) == set()
    assert not flags(recs["/three"]) & LOSS


@pytest.mark.parametrize("client,server", [
    (("10.0.0.1", 40000), ("10.0.0.2", 80)),
    (("10.0.0.1", 1024), ("10.0.0.2", 61000)),  # port numbers must not decide orientation
], ids=["server-port-80", "server-on-high-port"])
def test_midstream_start_orientation(replay, client, server):
    c = Conv(client, server)  # no handshake: capture begins with the server's response
    c.send_server(response(200, b"earlier"))
    transaction(c, "/a", 201)
    transaction(c, "/b", 404)
    recs = replay(c).records
    assert [(r.get("method"), r.get("path"), r["status"]) for r in recs] == \
        [(None, None, 200), ("GET", "/a", 201), ("GET", "/b", 404)]
    for r in recs:
        assert (r["client.address"], r["client.port"], r["server.address"], r["server.port"]) == \
            (*client, *server)
        assert "midstream" in flags(r)
    assert "no_request" in flags(recs[0])


def test_capture_starting_with_response_has_no_request(replay):
    c = Conv(("10.0.0.1", 40000), ("10.0.0.2", 8080))
    ts = c.send_server(response(200, b"x" * 2000, [("Content-Type", "text/html")]), seg=1000)
    c.fin("server")
    (rec,) = replay(c).records
    exp = {"method": None, "path": None, "status": 200, "server.address": "10.0.0.2",
           "server.port": 8080, "client.address": "10.0.0.1", "client.port": 40000,
           "http.response.content_type": "text/html", "http.response.body.size": 2000,
           "start_ns": ts[0], "end_ns": ts[-1]}
    assert subset(rec, exp) == exp
    assert "no_request" in flags(rec)


def test_one_sided_capture_client_only(replay):
    c = Conv()
    c.handshake()
    transaction(c, "/one", 200)
    c.send_client(request("/two", "POST", b"p" * 300))
    c.send_server(response(201))
    c.fin()
    recs = replay([s for s in c.segs if s.side == "client"]).records
    assert [(r["method"], r["path"], r.get("status")) for r in recs] == \
        [("GET", "/one", None), ("POST", "/two", None)]
    assert recs[1]["http.request.body.size"] == 300
    assert all("no_response" in flags(r) for r in recs)


def test_four_tuple_reuse(replay):
    a = Conv(isn_c=3_000_000_000, isn_s=4_000_000_000)
    a.handshake()
    transaction(a, "/first", 200)
    a.fin()
    # Same ports again after the close, with a lower ISN than the old stream reached.
    b = Conv(isn_c=1000, isn_s=2000, t0=a.t + 50_000_000)
    b.handshake()
    transaction(b, "/second", 201)
    b.fin()
    run = replay(a.segs + b.segs)
    recs = run.records
    assert [(r["path"], r["status"]) for r in recs] == [("/first", 200), ("/second", 201)]
    assert re.search(r"\b2 flows\b", run.err), run.err  # two connections in the stderr summary
    assert all(flags(r) == set() for r in recs)
    assert recs[0]["end_ns"] < recs[1]["start_ns"]


def test_keepalive_and_zero_window_probes(replay):
    c = Conv()
    c.handshake()
    transaction(c, "/one", 200)
    # Keep-alive probes (RFC 9293 3.8.4): one garbage byte at SND.NXT-1, from each side.
    for side in ("client", "server"):
        c.packet(side, b"\x00", rel=c.next_rel(side) - 1, flags="A")
        c.packet(Conv.peer(side), flags="A")
    # Zero-window probe: the first byte of the next request, refused (ACK does not move).
    req2 = request("/two")
    c.packet("server", flags="A", window=0)
    for _ in range(2):
        c.packet("client", req2[:1])
        c.packet("server", flags="A", window=0)
    c.send_client(req2)
    c.send_server(response(202, b"2"))
    c.fin()
    recs = replay(c).records
    assert [(r["path"], r["status"]) for r in recs] == [("/one", 200), ("/two", 202)]
    assert all(flags(r) == set() for r in recs)


def test_fin_overtaking_last_data_segment(replay):
    # Reordering puts the FIN (at its right sequence number) before the data it follows.
    c = Conv()
    c.handshake()
    c.send_client(request("/old", version="1.0"))
    resp = response(200, b"h" * 1000, version="1.0", length=False)
    c.send_server(resp, seg=[len(resp) - 200], order=[0])
    c.close("server")
    c.packet("server", resp[-200:], rel=len(resp) - 200)
    c.close("client")
    c.packet("server", flags="A")
    (rec,) = replay(c).records
    assert (rec["status"], rec["http.response.body.size"]) == (200, 1000)
    assert flags(rec) == set()


@pytest.mark.parametrize("end", ["rst", "capture-ends"])
def test_response_cut_short(replay, end):
    c = Conv()
    c.handshake()
    c.send_client(request("/cut"))
    c.send_server(response(200, b"q" * 1000)[:-700])  # 300 of 1000 body bytes
    if end == "rst":
        c.rst("server")
    (rec,) = replay(c).records
    assert (rec["path"], rec["status"]) == ("/cut", 200)
    assert "response_truncated" in flags(rec)


@pytest.mark.parametrize("nano", [False, True], ids=["usec-pcap", "nsec-pcap"])
def test_timestamps(replay, tmp_path, nano):
    t = T0 + 123_456_000 + (789 if nano else 0)
    c = Conv(t0=t)
    c.handshake()
    tq = c.send_client(request("/time"), seg=[10], at=t + 1_000_000)
    ts = c.send_server(response(200, b"x" * 40), seg=[20, 20], at=t + 250_000_000)
    c.fin()
    write(tmp_path / "ts.pcap", c.segs, nano=nano)
    (rec,) = replay(tmp_path / "ts.pcap").records
    assert (rec["start_ns"], rec["end_ns"], rec["timing"]) == \
        (tq[0], ts[-1], {"request_end_ns": tq[-1], "response_start_ns": ts[0]})


def test_lost_request_head_never_answered(replay):
    # found by fuzzing: a request whose head is lost leaves a placeholder that
    # no response ever fills; it must still come out (flagged), not crash
    c = Conv()
    c.handshake()
    transaction(c, "/one", 200)
    c.send_client(request("/two", "GET", b"", [("User-Agent", "lost"), ("Accept", "*/*")]),
                  seg=[25, 20], order=[0, 2])
    c.send_client(request("/three"))
    c.fin()
    recs = replay(c).records
    assert [(r["path"], r["status"]) for r in recs if r["path"]] == [("/one", 200), ("/three", None)]
    lost = [r for r in recs if r["method"] is None]
    assert len(lost) == 1 and {"request_gap", "no_response"} <= flags(lost[0])
