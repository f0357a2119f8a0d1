"""HTTP/1 message framing and privacy edge cases (RFC 9112), through `sensor replay`."""
import random
import re

import pytest

from pcapgen import LOSS, T0, Conv, flags, request, response, subset, write

ANOMALIES = re.compile(r"\b[1-9]\d* anomalies")  # the stderr summary counts what it could not parse


def conv(server=("10.0.0.2", 80)):
    c = Conv(("10.0.0.1", 40000), server)
    c.handshake()
    return c


def chunked(*chunks, ext=b"", trailers=b""):
    """A chunked body: each chunk as size(hex)[ext] CRLF data CRLF, then 0, trailers, CRLF."""
    return b"".join(b"%X%s\r\n%s\r\n" % (len(d), ext, d) for d in chunks) + b"0\r\n" + trailers + b"\r\n"


def summary(recs):
    return [(r.get("method"), r.get("path"), r.get("status")) for r in recs]


def test_content_length_bodies(replay):
    c = conv()
    c.send_client(request("/items", "POST", b'{"a": 1}', [("Content-Type", "application/json")]), seg=30)
    c.send_server(response(201, b"x" * 2500, [("Content-Type", "application/octet-stream"),
                                               ("Content-Encoding", "gzip")]), seg=1000)
    c.fin()
    (rec,) = replay(c).records
    exp = {"method": "POST", "path": "/items", "status": 201,
           "http.request.content_type": "application/json", "http.request.content_encoding": None,
           "http.response.content_type": "application/octet-stream",
           "http.response.content_encoding": "gzip",
           "http.request.body.size": 8, "http.request.body.wire_size": 8,
           "http.response.body.size": 2500, "http.response.body.wire_size": 2500}
    assert subset(rec, exp) == exp
    assert flags(rec) == set()


def test_chunked_extensions_trailers_split_size_line(replay):
    c = conv()
    req_body = chunked(b"wiki", b"pedia")
    c.send_client(request("/upload", "PUT", req_body, [("Transfer-Encoding", "chunked")]))
    body = chunked(b"hello", b"z" * 26, ext=b';name="v"', trailers=b"X-Trailer: TRAILERSECRET\r\n")
    resp = response(200, body, [("Transfer-Encoding", "chunked"), ("Trailer", "X-Trailer")])
    size_line = resp.index(b"1A;")  # cut inside "1A", and later between CR and LF
    crlf = resp.index(b"z\r\n0\r\n") + 2
    c.send_server(resp, seg=[size_line + 1, crlf - size_line - 1])
    c.send_client(request("/next"))
    c.send_server(response(200, b"ok"))
    c.fin()
    run = replay(c)
    put, nxt = run.records
    exp = {"method": "PUT", "path": "/upload", "status": 200,
           "http.request.body.size": 9, "http.request.body.wire_size": len(req_body),
           "http.response.body.size": 31, "http.response.body.wire_size": len(body)}
    assert subset(put, exp) == exp
    assert summary([nxt]) == [("GET", "/next", 200)] and nxt["http.response.body.size"] == 2
    assert not (flags(put) | flags(nxt))
    assert b"TRAILERSECRET" not in run.out


@pytest.mark.parametrize("seg", [1, 3])
def test_tiny_segments(replay, seg):
    # Every framing element (CRLFs, chunk sizes, trailers, interim lines) split everywhere.
    c = conv()
    c.send_client(request("/a", "POST", chunked(b"abc", b"defg"), [("Transfer-Encoding", "chunked")])
                  + request("/b", "HEAD")
                  + request("/c?x=1", "PUT", b"12345", [("Expect", "100-continue")]), seg=seg)
    c.send_server(response(200, chunked(b"hello", b"w" * 20, ext=b";e=1", trailers=b"T: v\r\n"),
                           [("Transfer-Encoding", "chunked")])
                  + response(200, headers=[("Content-Length", 77)])
                  + response(100, length=False) + response(201, b"done"), seg=seg)
    c.fin()
    recs = sorted(replay(c).records, key=lambda r: r["path"])
    assert summary(recs) == [("POST", "/a", 200), ("HEAD", "/b", 200), ("PUT", "/c", 201)]
    assert [(r["http.request.body.size"], r["http.response.body.size"]) for r in recs] == \
        [(7, 25), (0, 0), (5, 4)]
    assert recs[2]["http.response.interim"] == [100]
    assert not any(flags(r) for r in recs)


@pytest.mark.parametrize("version,headers", [("1.0", []), ("1.1", [("Connection", "close")])])
def test_close_delimited_body(replay, version, headers):
    c = conv()
    c.send_client(request("/old", version=version))
    c.send_server(response(200, b"h" * 1234, [("Content-Type", "text/html"), *headers],
                           version=version, length=False), seg=500)
    c.fin("server")
    (rec,) = replay(c).records
    exp = {"path": "/old", "status": 200, "network.protocol.version": version,
           "http.response.body.size": 1234}
    assert subset(rec, exp) == exp
    assert not flags(rec) & LOSS


def test_transfer_encoding_overrides_content_length(replay):
    # RFC 9112 6.3: with both, Transfer-Encoding wins; CL=100 would swallow what follows.
    c = conv()
    both = [("Content-Length", 100), ("Transfer-Encoding", "chunked")]
    c.send_client(request("/smuggle", "POST", chunked(b"abc"), both))
    c.send_server(response(200, chunked(b"0123456789"), both))
    c.send_client(request("/next"))
    c.send_server(response(202, b"ok"))
    c.fin()
    post, nxt = replay(c).records
    assert summary([post, nxt]) == [("POST", "/smuggle", 200), ("GET", "/next", 202)]
    assert (post["http.request.body.size"], post["http.response.body.size"]) == (3, 10)


def test_head_response_has_no_body(replay):
    c = conv()
    c.send_client(request("/x", "HEAD"))
    c.send_server(response(200, headers=[("Content-Length", 500)]))
    c.send_client(request("/y"))
    c.send_server(response(200, b"abc"))
    c.fin()
    head, get = replay(c).records
    assert summary([head, get]) == [("HEAD", "/x", 200), ("GET", "/y", 200)]
    assert (head["http.response.body.size"], get["http.response.body.size"]) == (0, 3)


def test_204_and_304_have_no_body(replay):
    c = conv()
    c.send_client(request("/a"))
    c.send_server(response(204, length=False))
    c.send_client(request("/b", headers=[("If-None-Match", '"v1"')]))
    c.send_server(response(304, headers=[("ETag", '"v1"'), ("Content-Length", 1234)]))
    c.send_client(request("/c"))
    c.send_server(response(200, b"ok"))
    c.fin()
    recs = replay(c).records
    assert summary(recs) == [("GET", "/a", 204), ("GET", "/b", 304), ("GET", "/c", 200)]
    assert [r["http.response.body.size"] for r in recs] == [0, 0, 2]


@pytest.mark.parametrize("interim", [[100], [100, 100], [103, 100]])
def test_interim_responses(replay, interim):
    c = conv()
    req = request("/upload", "POST", b"hello", [("Expect", "100-continue")])
    c.send_client(req[:-5])  # headers, then wait for 100 Continue
    for code in interim:
        c.send_server(response(code, length=False))
    c.send_client(req[-5:])
    c.send_server(response(201, b"done"))
    c.fin()
    (rec,) = replay(c).records
    exp = {"method": "POST", "status": 201, "http.response.status_code": 201,
           "http.response.interim": interim, "http.request.body.size": 5,
           "http.response.body.size": 4, "http.response.header_names": ["content-length"]}
    assert subset(rec, exp) == exp


def test_pipelining(replay):
    c = conv()
    exchanges = [
        (request("/p1"), response(200, b"one")),
        (request("/p2", "POST", b"data"), response(201, b"")),
        (request("/p3", "HEAD"), response(200, headers=[("Content-Length", 999)])),
        (request("/p4", "DELETE"), response(404, b"missing")),
        (request("/p5"), response(500, b"boom" * 100)),
    ]
    c.send_client(b"".join(q for q, _ in exchanges))  # all requests in one segment
    c.send_server(b"".join(r for _, r in exchanges), seg=100)
    c.fin()
    recs = sorted(replay(c).records, key=lambda r: r["path"])
    assert summary(recs) == [("GET", "/p1", 200), ("POST", "/p2", 201), ("HEAD", "/p3", 200),
                             ("DELETE", "/p4", 404), ("GET", "/p5", 500)]
    assert [r["http.response.body.size"] for r in recs] == [3, 0, 0, 7, 400]


@pytest.mark.parametrize("raw", [False, True], ids=["default", "raw-targets"])
def test_absolute_form_target(replay, raw):
    c = conv()
    target = "http://example.com/a/b?x=1&y=2"
    c.send_client(request(target))
    c.send_server(response(200, b"ok"))
    c.fin()
    (rec,) = replay(c, args=["--raw-targets"] if raw else []).records
    exp = {"method": "GET", "path": target if raw else "/a/b", "url.path": "/a/b",
           "url.query.keys": ["x", "y"], "url.target": target if raw else None,
           "host": "example.com", "status": 200}
    assert subset(rec, exp) == exp


def tls_record(rng, kind, n):
    return bytes([kind, 3, 3]) + n.to_bytes(2, "big") + rng.randbytes(n)


def test_connect_tunnel(replay):
    rng = random.Random(1)
    c = conv(("10.0.0.2", 3128))
    c.send_client(request("example.com:443", "CONNECT", host="example.com:443"))
    c.send_server(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    c.send_client(tls_record(rng, 0x16, 512))
    c.send_server(tls_record(rng, 0x16, 2000) + tls_record(rng, 0x14, 1))
    for _ in range(3):
        c.send_client(tls_record(rng, 0x17, 300))
        c.send_server(tls_record(rng, 0x17, 3000))
    c.fin()
    (rec,) = replay(c).records
    exp = {"method": "CONNECT", "status": 200, "host": "example.com:443",
           "sensor.protocol_switch": "connect"}
    assert subset(rec, exp) == exp


def test_refused_connect_keeps_parsing(replay):
    # Only a 2xx to CONNECT opens a tunnel (RFC 9110 9.3.6).
    c = conv(("10.0.0.2", 3128))
    c.send_client(request("example.com:443", "CONNECT", host="example.com:443"))
    c.send_server(response(407, b"auth first", [("Proxy-Authenticate", "Basic")]))
    c.send_client(request("http://example.com/after"))
    c.send_server(response(200, b"ok"))
    c.fin()
    conn, get = replay(c).records
    assert (conn["method"], conn["status"], get["path"], get["status"]) == ("CONNECT", 407, "/after", 200)
    assert conn.get("sensor.protocol_switch") is None and get.get("sensor.protocol_switch") is None


def ws_frame(payload, mask=None):
    """A text frame; client frames are masked (an all-zero key leaves the bytes readable)."""
    head = bytes([0x81, (0x80 if mask is not None else 0) | len(payload)])
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


UPGRADES = {  # request headers, 101 headers, (side, bytes) spoken after the switch
    "websocket": (
        [("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", 13)],
        [("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")],
        [("client", ws_frame(b"GET /fake HTTP/1.1\r\nHost: x\r\n\r\n", b"\0\0\0\0")),
         ("server", ws_frame(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
         ("client", ws_frame(b"hi", b"abcd"))],
    ),
    "h2c": (
        [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
         ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")],
        [("Connection", "Upgrade"), ("Upgrade", "h2c")],
        # client preface + SETTINGS; server SETTINGS, HEADERS(:status 200), DATA("hello")
        [("client", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")),
         ("server", bytes.fromhex("000000040000000000" "00000101040000000188" "000005000100000001")
          + b"hello")],
    ),
}


@pytest.mark.parametrize("proto", UPGRADES)
def test_protocol_upgrade(replay, proto):
    req_h, resp_h, after = UPGRADES[proto]
    c = conv()
    c.send_client(request("/chat", headers=req_h))
    c.send_server(response(101, headers=resp_h, length=False))
    for side, data in after:
        c.send(side, data)
    c.fin()
    rec, *rest = replay(c).records
    exp = {"method": "GET", "path": "/chat", "status": 101, "sensor.protocol_switch": proto}
    assert subset(rec, exp) == exp
    if proto == "h2c":
        # the upgraded request is answered on HTTP/2 stream 1: its own record
        (h2,) = rest
        exp = {"method": None, "status": 200, "h2_stream": 1, "network.protocol.version": "2",
               "http.response.body.size": 5}
        assert subset(h2, exp) == exp
        assert "h2c_upgrade" in h2["sensor.completeness"]
    else:
        assert rest == []


def test_declined_upgrade_keeps_parsing(replay):
    c = conv()
    c.send_client(request("/chat", headers=UPGRADES["websocket"][0]))
    c.send_server(response(200, b"no websocket here"))
    c.send_client(request("/next"))
    c.send_server(response(200, b"ok"))
    c.fin()
    recs = replay(c).records
    assert summary(recs) == [("GET", "/chat", 200), ("GET", "/next", 200)]
    assert all(r.get("sensor.protocol_switch") is None for r in recs)


def test_http10_keep_alive(replay):
    c = conv()
    c.send_client(request("/ten", version="1.0", host=None, headers=[("Connection", "keep-alive")]))
    c.send_server(response(200, b"10", [("Connection", "keep-alive")], version="1.0"))
    c.send_client(request("/ten2", version="1.0", host=None, headers=[("Connection", "keep-alive")]))
    c.send_server(response(404, b"", [("Connection", "keep-alive")], version="1.0"))
    c.fin()
    recs = replay(c).records
    assert summary(recs) == [("GET", "/ten", 200), ("GET", "/ten2", 404)]
    assert [(r["network.protocol.version"], r.get("host")) for r in recs] == [("1.0", None)] * 2


def test_http09_simple_request(replay):
    # The 0.9 response is a bare body ended by the server's close (RFC 1945 4.1).
    c = conv()
    c.send_client(b"GET /\r\n")
    (ts,) = c.send_server(b"<html>nine</html>\n")
    c.fin("server")
    (rec,) = replay(c).records
    exp = {"method": "GET", "path": "/", "network.protocol.version": "0.9",
           "http.response.body.size": 18, "end_ns": ts}
    assert subset(rec, exp) == exp


def test_obs_fold_continuation_lines(replay):
    c = conv()
    c.send_client(b"GET /fold HTTP/1.1\r\nHost: example.com\r\nX-Folded: one\r\n two\r\n\tthree\r\n"
                  b"Accept: */*\r\n\r\n")
    c.send_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: a\r\n b\r\n"
                  b"Content-Type: text/plain\r\n\r\nok")
    c.send_client(request("/after"))
    c.send_server(response(201, b"x"))
    c.fin()
    fold, after = replay(c).records
    exp = {"path": "/fold", "status": 200, "http.response.body.size": 2,
           "http.request.header_names": ["host", "x-folded", "accept"],
           "http.response.header_names": ["content-length", "x-folded", "content-type"],
           "http.response.content_type": "text/plain"}
    assert subset(fold, exp) == exp
    assert (after["path"], after["status"]) == ("/after", 201)


def test_bare_lf_line_endings(replay):
    # RFC 9112 2.2 lets a recipient accept a bare LF as a line terminator.
    c = conv()
    c.send_client(b"GET /lf HTTP/1.1\nHost: example.com\nUser-Agent: lf-agent\n\n")
    c.send_server(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    c.send_client(request("/crlf"))
    c.send_server(response(201, b"x"))
    c.fin()
    lf, crlf = replay(c).records
    exp = {"path": "/lf", "status": 200, "host": "example.com", "user_agent.original": "lf-agent",
           "http.response.body.size": 2}
    assert subset(lf, exp) == exp
    assert (crlf["path"], crlf["status"]) == ("/crlf", 201)


SECRET_QUERY = "/search?token=QVALtoken7f3a&user=QVALuser91bc&flag&empty="


def private_conv():
    c = conv()
    c.send_client(request(SECRET_QUERY, "POST", b"password=BODYSECRET55",
                          [("Content-Type", "application/x-www-form-urlencoded")]))
    c.send_server(response(200, b"RESPBODYSECRET88", [("Content-Type", "text/plain")]))
    c.fin()
    return c


def test_query_values_never_leak(replay, tmp_path):
    c = private_conv()
    run = replay(c)
    (rec,) = run.records
    exp = {"path": "/search", "url.query.keys": ["token", "user", "flag", "empty"]}
    assert subset(rec, exp) == exp
    binary = replay(c, out=["--format", "msgpack", "-o", "out.msgpack"])
    for blob in (run.out, run.err.encode(), (tmp_path / "out.msgpack").read_bytes(), binary.err.encode()):
        for secret in (b"QVAL", b"BODYSECRET", b"RESPBODYSECRET"):
            assert secret not in blob


def test_raw_targets_keep_query_but_not_bodies(replay):
    run = replay(private_conv(), args=["--raw-targets"])
    (rec,) = run.records
    assert (rec["path"], rec["url.target"], rec["url.path"]) == (SECRET_QUERY, SECRET_QUERY, "/search")
    assert b"BODYSECRET" not in run.out and b"RESPBODYSECRET" not in run.out


@pytest.mark.parametrize("raw", [False, True], ids=["default", "raw-targets"])
def test_header_values_never_leak(replay, raw):
    c = conv()
    c.send_client(request("/me", headers=[
        ("User-Agent", "agent/1"), ("Authorization", "Bearer HDRSECRETauth1"),
        ("Cookie", "sid=HDRSECRETcookie2"), ("X-Api-Key", "HDRSECRETkey3"),
        ("Referer", "http://example.com/?HDRSECRETref4")]))
    c.send_server(response(200, b"{}", [
        ("Set-Cookie", "s=HDRSECRETsetcookie5; HttpOnly"), ("X-Request-Id", "HDRSECRETid6"),
        ("Content-Type", "application/json")]))
    c.fin()
    run = replay(c, args=["--raw-targets"] if raw else [])
    (rec,) = run.records
    assert b"HDRSECRET" not in run.out and "HDRSECRET" not in run.err
    exp = {"host": "example.com", "user_agent.original": "agent/1",
           "http.request.header_names": ["host", "user-agent", "authorization", "cookie",
                                         "x-api-key", "referer"],
           "http.response.header_names": ["set-cookie", "x-request-id", "content-type",
                                          "content-length"]}
    assert subset(rec, exp) == exp


@pytest.mark.parametrize("port", [5555, 443])
def test_http_detected_by_content_not_port(replay, port):
    c = conv(("10.0.0.2", port))
    c.send_client(request("/odd-port"))
    c.send_server(response(200, b"ok"))
    c.fin()
    (rec,) = replay(c).records
    assert (rec["path"], rec["status"], rec["server.port"]) == ("/odd-port", 200, port)


def test_non_http_on_port_80_makes_no_records(replay):
    rng = random.Random(2)
    c = conv()
    c.send_server(b"SSH-2.0-OpenSSH_9.6\r\n")
    c.send_client(b"SSH-2.0-OpenSSH_9.6\r\n" + rng.randbytes(1500))
    c.send_server(rng.randbytes(3000))
    c.send_client(tls_record(rng, 0x16, 400))
    c.fin()
    run = replay(c)
    assert run.records == [] and ANOMALIES.search(run.err), run.err


def test_random_garbage_payloads(replay):
    rng = random.Random(3)
    segs = []
    for i, port in enumerate((80, 8080, 5555)):
        c = Conv(("10.0.0.9", 50000 + i), ("10.0.0.2", port), t0=T0 + i * 10**9)
        c.handshake()
        for _ in range(20):
            c.send(rng.choice(["client", "server"]), rng.randbytes(rng.randrange(1, 1400)))
        c.fin()
        segs += c.segs
    good = Conv(t0=T0 + 5 * 10**9)
    good.handshake()
    good.send_client(request("/still-works"))
    good.send_server(response(200, b"ok"))
    good.fin()
    run = replay(segs + good.segs)
    assert summary(run.records) == [("GET", "/still-works", 200)]
    assert ANOMALIES.search(run.err), run.err


def test_megabyte_header_line(replay):
    big = conv()
    big.send_client(b"GET /big HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n",
                    seg=8960)  # jumbo frames keep the capture small to build
    big.send_server(response(431))
    big.fin()
    good = Conv(("10.0.0.3", 40001), ("10.0.0.2", 80), t0=big.t + 10**9)
    good.handshake()
    good.send_client(request("/small"))
    good.send_server(response(200, b"ok"))
    good.fin()
    run = replay(big.segs + good.segs)
    assert ("GET", "/small", 200) in summary(run.records)
    assert ANOMALIES.search(run.err), run.err


@pytest.mark.parametrize("content", [None, b"", b"\xd4\xc3\xb2", b"hello, I am not a capture\n" * 20],
                         ids=["missing", "empty", "short-header", "text"])
def test_bad_input_files(replay, tmp_path, content):
    if content is not None:
        (tmp_path / "bad.pcap").write_bytes(content)
    run = replay("bad.pcap", ok=False)
    assert run.rc != 0 and run.out == b""
    errors = [line for line in run.err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "bad.pcap" in errors[0], run.err


def test_truncated_capture_keeps_earlier_records(replay, tmp_path):
    c = conv()
    for i in (1, 2, 3):
        c.send_client(request(f"/t{i}"))
        c.send_server(response(200, b"r" * 1000))
    write(tmp_path / "full.pcap", c.segs)
    data = (tmp_path / "full.pcap").read_bytes()
    cut = data.rindex(b"r" * 1000) + 500  # inside the packet record of the last response
    (tmp_path / "cut.pcap").write_bytes(data[:cut])
    run = replay("cut.pcap")  # exits 0 (observed, kept): a cut-off capture is only a warning
    assert "cut.pcap" in run.err  # the warning names the file
    assert [(r.get("path"), r.get("status")) for r in run.records][:2] == [("/t1", 200), ("/t2", 200)]
