"""HTTP/2 (h2c), HPACK and gRPC.

Real traffic first: nghttpd, h2load, curl (prior knowledge, and the HTTP/1.1
Upgrade through nghttpx) and grpcio on loopback, captured by tcpdump and
replayed whole and cut mid-connection. Then crafted traffic for what real
peers rarely send: frames serialised by hyperframe, header blocks from one
hpack Encoder per side (one HPACK context per direction, as real peers keep),
wrapped in TCP by pcapgen. Last, hostile peers: floods, an HPACK bomb, rapid
reset, too many streams; the sensor must stay fast and bounded.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, PushPromiseFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from loopback import Capture, free_port
from pcapgen import Conv, flags, split

JSONL = ("--format", "jsonl", "-o", "-")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RESPONSE_LOSS = {"no_response", "response_gap", "response_truncated"}
REQUEST_LOSS = {"no_request", "request_gap", "request_truncated"}

live = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump"),
                          reason="needs root and tcpdump (.ci/run installs it)")


def anomalies(err):
    """The summary's detail line ('  name n, name n') as a dict."""
    return {k: int(v) for k, v in re.findall(r"([a-z0-9_]+) (\d+)(?:,|$)", err.split("\n", 1)[-1], re.M)}


def by_sid(recs):
    out = {r["h2_stream"]: r for r in recs}
    assert len(out) == len(recs), "one record per stream"
    backwards = [(r["h2_stream"], r["start_ns"], r["end_ns"]) for r in recs if not 0 < r["start_ns"] <= r["end_ns"]]
    assert not backwards, "stream, start_ns, end_ns: %s" % backwards
    return out


def is_subsequence(part, whole):
    it = iter(whole)
    return all(x in it for x in part)


def replay_file(path, *args):
    p = subprocess.run(["sensor", "replay", str(path), *JSONL, *args], capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0 and "Traceback" not in err, err
    recs = sorted((json.loads(x) for x in p.stdout.splitlines()), key=lambda r: r["start_ns"])
    return SimpleNamespace(records=recs, err=err)


# ------------------------------------------------------------------ real traffic

def start(argv, port, what):
    """Start a server and wait until it accepts (before any capture starts)."""
    if not shutil.which(argv[0]):
        pytest.skip("%s missing (%s; .ci/run installs it)" % (argv[0], what))
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        assert p.poll() is None, "%s exited" % argv
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            time.sleep(0.025)
    p.kill()
    raise AssertionError("%s does not listen" % argv)




# ASCII bodies: no byte run looks like a frame header; c.txt spans several loopback segments
SIZES = {"/a.txt": 1000, "/b.txt": 20000, "/c.txt": 100000}


@pytest.fixture(scope="module")
def nghttpd(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    for path, n in SIZES.items():
        (www / path[1:]).write_bytes((b"0123456789abcdef" * (n // 16 + 1))[:n])
    port = free_port()
    p = start(["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(www), "--echo-upload", str(port)],
              port, "Debian nghttp2-server")
    yield port
    p.terminate()
    p.wait(10)


def run(argv):
    if not shutil.which(argv[0]):
        pytest.skip("%s missing (.ci/run installs it)" % argv[0])
    return subprocess.run(argv, check=True, capture_output=True, timeout=30).stdout.decode()


URIS = ["/a.txt", "/b.txt", "/c.txt", "/missing"]


@pytest.fixture(scope="module")
def h2load_capture(nghttpd, tmp_path_factory):
    """3 h2load connections x 8 GETs at 4 concurrent streams, 1 connection of
    4 POSTs echoed back, 1 curl HEAD; replayed whole."""
    if os.geteuid() != 0 or not shutil.which("tcpdump"):
        pytest.skip("needs root and tcpdump")
    tmp = tmp_path_factory.mktemp("h2load")
    base = "http://127.0.0.1:%d" % nghttpd
    (tmp / "up.bin").write_bytes(b"u" * 5000)
    with Capture(tmp / "h2load.pcap", nghttpd) as cap:
        out = run(["h2load", "-n", "24", "-c", "3", "-m", "4", *[base + u for u in URIS]])
        assert "24 done" in out and "18 2xx, 0 3xx, 6 4xx" in out, out
        out = run(["h2load", "-n", "4", "-c", "1", "-m", "2", "-d", str(tmp / "up.bin"), base + "/echo"])
        assert "4 succeeded" in out, out
        run(["curl", "-sSf", "--http2-prior-knowledge", "-I", base + "/b.txt"])
        path = cap.stop()
    return SimpleNamespace(path=path, port=nghttpd, full=replay_file(path).records)


@live
def test_h2load_and_curl_every_request_recorded(h2load_capture):
    recs, port = h2load_capture.full, h2load_capture.port
    conns = {}
    for r in recs:
        conns.setdefault(r["client.port"], []).append(r)
        assert r["network.protocol.version"] == "2" and r["server.port"] == port
        assert r["host"] == "127.0.0.1:%d" % port and r["http2.stream_id"] == r["h2_stream"]
        assert flags(r) == set(), r
        t = r["timing"]
        assert r["start_ns"] <= t["request_end_ns"] <= t["response_start_ns"] <= r["end_ns"]
    assert sorted(len(c) for c in conns.values()) == [1, 4, 8, 8, 8]
    for c in conns.values():
        c.sort(key=lambda r: r["h2_stream"])
        assert [r["h2_stream"] for r in c] == list(range(1, 2 * len(c), 2))   # odd, distinct, none skipped
        kind = c[0]["method"]
        if kind == "GET":
            # h2load cycles the URIs on each connection: stream 2i+1 asked for URIS[i % 4]
            assert [r["path"] for r in c] == [URIS[i % 4] for i in range(8)]
            for r in c:
                assert r["method"] == "GET" and r["user_agent.original"].startswith("h2load")
                assert r["http.request.body.size"] == 0
                if r["path"] == "/missing":
                    assert r["status"] == 404 and r["http.response.body.size"] > 0
                else:
                    assert r["status"] == 200 and r["http.response.body.size"] == SIZES[r["path"]]
                    assert r["http.response.body.wire_size"] == SIZES[r["path"]]
                    assert "content-length" in r["http.response.header_names"]
        elif kind == "POST":
            for r in c:
                assert (r["path"], r["status"]) == ("/echo", 200)
                assert r["http.request.body.size"] == r["http.response.body.size"] == 5000
        else:
            (r,) = c
            assert (r["method"], r["path"], r["status"]) == ("HEAD", "/b.txt", 200)
            assert r["http.response.body.size"] == 0 and r["user_agent.original"].startswith("curl/")


@pytest.fixture(scope="module")
def nghttpx(nghttpd):
    """nghttpx in front of nghttpd: it accepts HTTP/1.1 Upgrade: h2c (nghttpd does not)."""
    port = free_port()
    p = start(["nghttpx", "--conf=/dev/null", "--single-process", "-L", "FATAL",
               "--frontend=127.0.0.1,%d;no-tls" % port, "--backend=127.0.0.1,%d;;proto=h2" % nghttpd],
              port, "Debian nghttp2-proxy")
    yield port
    p.terminate()
    p.wait(10)


@live
def test_curl_upgrade_h2c(tmp_path, nghttpx):
    base = "http://127.0.0.1:%d" % nghttpx
    with Capture(tmp_path / "up.pcap", nghttpx) as cap:
        out = run(["curl", "-sSf", "--http2", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_version} ",
                   base + "/b.txt", base + "/a.txt"])
        assert out.split() == ["2", "2"], out                  # one connection: upgraded, then reused
        path = cap.stop()
    recs = replay_file(path).records
    assert len({r["client.port"] for r in recs}) == 1
    h1, s1, s3 = recs
    # the HTTP/1.1 request and its 101 ...
    assert (h1["network.protocol.version"], h1["method"], h1["path"], h1["status"]) == ("1.1", "GET", "/b.txt", 101)
    assert h1["sensor.protocol_switch"] == "h2c" and "http2-settings" in h1["http.request.header_names"]
    # ... then the HTTP/2 response on stream 1, which answers that request
    assert (s1["network.protocol.version"], s1["h2_stream"], s1["status"]) == ("2", 1, 200)
    assert "h2c_upgrade" in flags(s1) and s1["method"] is None and s1["http.response.body.size"] == 20000
    assert not flags(s1) & (RESPONSE_LOSS | {"hpack_unknown"})
    assert (s3["h2_stream"], s3["method"], s3["path"], s3["status"]) == (3, "GET", "/a.txt", 200)
    assert s3["http.response.body.size"] == 1000 and flags(s3) == set()


@live
def test_grpc_calls(tmp_path):
    grpc = pytest.importorskip("grpc", reason="grpcio missing (test extras)")

    def echo(req, ctx):
        return req

    def missing(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def count(req, ctx):
        for i in range(int(req)):
            yield b"m%d" % i

    def total(it, ctx):
        return b"%d" % sum(len(x) for x in it)

    def chat(it, ctx):
        for x in it:
            yield x[::-1]

    handler = grpc.method_handlers_generic_handler("demo.v1.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    })
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # no proxy from the environment: the channel goes straight to the port we capture (connects on first call)
    ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.enable_http_proxy", 0)])
    try:
        with Capture(tmp_path / "grpc.pcap", port) as cap:
            call = lambda kind, m: getattr(ch, kind)("/demo.v1.Echo/" + m)   # noqa: E731  (bytes in, bytes out)
            assert call("unary_unary", "Echo")(b"ping", timeout=10) == b"ping"
            with pytest.raises(grpc.RpcError) as e:
                call("unary_unary", "Missing")(b"x", timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert len(list(call("unary_stream", "Count")(b"7", timeout=10))) == 7
            assert call("stream_unary", "Sum")(iter([b"abc", b"de", b"f"]), timeout=10) == b"6"
            assert list(call("stream_stream", "Chat")(iter([b"ab", b"cd", b"ef", b"gh"]), timeout=10)) == \
                [b"ba", b"dc", b"fe", b"hg"]
            big = b"B" * 300000                           # many DATA frames, one message
            assert call("unary_unary", "Echo")(big, timeout=10) == big
            assert call("unary_unary", "Echo")(b"z" * 10000, compression=grpc.Compression.Gzip, timeout=10) == \
                b"z" * 10000
            ch.close()
            path = cap.stop()
    finally:
        ch.close()
        server.stop(0)
    recs = replay_file(path).records
    assert [r["rpc.method"] for r in recs] == ["Echo", "Missing", "Count", "Sum", "Chat", "Echo", "Echo"]
    assert len({r["client.port"] for r in recs}) == 1 and {r["server.port"] for r in recs} == {port}
    assert len({r["h2_stream"] for r in recs}) == 7
    for r in recs:
        assert (r["rpc.system"], r["rpc.service"], r["method"], r["status"]) == ("grpc", "demo.v1.Echo", "POST", 200)
        assert r["path"] == "/demo.v1.Echo/" + r["rpc.method"] and flags(r) == set(), r
        assert r["http.request.content_type"].startswith("application/grpc")
    echo_, missing_, count_, _, _, big_, gz = recs
    msgs = lambda r: (r["sensor.grpc.request_messages"], r["sensor.grpc.response_messages"])  # noqa: E731
    assert [msgs(r) for r in recs] == [(1, 1), (1, 0), (1, 7), (3, 1), (4, 4), (1, 1), (1, 1)]
    assert [r["rpc.grpc.status_code"] for r in recs] == [0, 5, 0, 0, 0, 0, 0]
    # the failure is a Trailers-Only response: grpc-status in the only header block
    assert "grpc-status" in missing_["http.response.header_names"] and missing_["http.response.body.size"] == 0
    assert echo_["http.request.body.size"] == echo_["http.response.body.size"] == 5 + 4
    assert count_["http.response.body.size"] == 7 * 5 + 7 * 2
    assert big_["http.request.body.size"] == big_["http.response.body.size"] == 5 + 300000
    assert gz["sensor.grpc.compressed"] is True and gz["http.request.body.size"] < 1000
    assert not any(r["sensor.grpc.compressed"] for r in recs[:-1])


class Pkt(NamedTuple):
    off: int        # of its pcap record
    ts: int         # ns
    sport: int
    dport: int
    size: int       # TCP payload bytes
    payload: int    # where they start in the file


class Pcap:
    """The packets of a tcpdump capture on loopback (pcap, Ethernet, IPv4), to cut it."""

    def __init__(self, path):
        self.data = Path(path).read_bytes()
        assert self.data[:4] == b"\xd4\xc3\xb2\xa1" and self.data[20:24] == b"\x01\0\0\0"
        self.pkts, off = [], 24
        while off < len(self.data):
            sec, usec, caplen = struct.unpack_from("<III", self.data, off)
            ip = off + 16 + 14
            ihl = (self.data[ip] & 15) * 4
            sport, dport = struct.unpack_from("!HH", self.data, ip + ihl)
            thl = (self.data[ip + ihl + 12] >> 4) * 4
            size = struct.unpack_from("!H", self.data, ip + 2)[0] - ihl - thl
            self.pkts.append(Pkt(off, sec * 10**9 + usec * 1000, sport, dport, size, ip + ihl + thl))
            off += 16 + caplen

    def cut(self, k, dst):
        """Write the capture without its first k packets."""
        Path(dst).write_bytes(self.data[:24] + self.data[self.pkts[k].off:])
        return dst


def check_cut(full, cut, pkts, k, port):
    """A replay of a capture without its first k packets against the full replay."""
    fulls = {(r["client.port"], r["h2_stream"]): r for r in full}
    cut_ts = pkts[k - 1].ts
    conn = lambda p: p.sport if p.dport == port else p.dport      # noqa: E731  (the client port)
    lost_data = {conn(p) for p in pkts[:k] if p.size}
    touched = {conn(p) for p in pkts[:k]}
    for r in cut:
        key = (r["client.port"], r["h2_stream"])
        assert key in fulls, "invented stream %s after a cut of %d packets" % (key, k)
        f, fl = fulls[key], flags(r)
        for field in ("method", "path", "status", "host", "user_agent.original", "http.response.content_type"):
            assert r.get(field) in (None, f.get(field)), (k, field, r, f)
        for side in ("request", "response"):
            key_ = "http.%s.header_names" % side
            assert is_subsequence(r.get(key_) or [], f.get(key_) or []), (k, r, f)
        if key[0] in lost_data:
            assert "midstream" in fl, r
        elif key[0] in touched:     # only handshake packets lost: nothing else may change
            assert dict(r, **{"sensor.completeness": sorted(fl - {"midstream"})}) == \
                dict(f, **{"sensor.completeness": sorted(flags(f))}), (k, r, f)
        else:
            assert r == f           # connections that began after the cut are seen whole
        if r["method"] is not None and r["host"] is None:
            assert "hpack_unknown" in fl, r        # never guessed, always said
        if r["method"] is None:
            assert fl & {"no_request", "hpack_unknown"}, r
        if r["method"] is not None and not fl & REQUEST_LOSS:
            assert r["http.request.body.size"] == f["http.request.body.size"], (k, r)
        if r["status"] is not None and not fl & RESPONSE_LOSS:
            assert r["http.response.body.size"] == f["http.response.body.size"], (k, r)
        elif r["status"] is None:
            assert fl & (RESPONSE_LOSS | {"hpack_unknown"}), r
    # every request sent after the cut point is found again; what HPACK could not tell is said
    got = {(r["client.port"], r["h2_stream"]): r for r in cut}
    for key, f in fulls.items():
        if f["start_ns"] > cut_ts:
            assert key in got, "stream %s, requested after a cut of %d packets, not reported" % (key, k)
            r = got[key]
            if "hpack_unknown" not in flags(r):
                assert (r["method"], r["path"], r["host"]) == (f["method"], f["path"], f["host"]), (k, r, f)


@live
def test_midstream_cuts_of_h2load_capture(h2load_capture, tmp_path):
    full, port = h2load_capture.full, h2load_capture.port
    cap = Pcap(h2load_capture.path)
    pkts = cap.pkts
    # right after the first request segment of the first connection: its preface, SETTINGS
    # and first HEADERS (with the HPACK insertions every later request refers to) are gone
    first = next(i for i, p in enumerate(pkts) if p.dport == port and p.size)
    # capture starts inside a DATA frame: a segment opening with body bytes (ASCII; frame headers open with 0)
    inside = [k for k, p in enumerate(pkts) if p.sport == port and p.size and cap.data[p.payload] != 0][:3]
    assert inside
    for k in sorted({first + 1, first + 2, first + 3, *inside, *range(1, len(pkts), max(1, len(pkts) // 12))}):
        res = replay_file(cap.cut(k, tmp_path / "cut.pcap"))
        check_cut(full, res.records, pkts, k, port)
        if k == first + 1:
            # nghttp2 never indexes :path, so method and path stay known; :authority was indexed
            hidden = [r for r in res.records if "hpack_unknown" in flags(r)]
            assert hidden and all(r["method"] == "GET" and r["path"] in URIS and r["host"] is None for r in hidden)


@live
def test_midstream_hpack_resynchronises(tmp_path, nghttpd):
    """An h2 client whose later requests push the lost HPACK entries out of
    the table: once the encoder has to send them again, requests decode whole."""
    h2 = pytest.importorskip("h2.connection", reason="h2 missing (test extras)")
    from h2.config import H2Configuration
    from h2.events import DataReceived, StreamEnded
    base = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % nghttpd),
            (":path", "/a.txt"), ("user-agent", "resync-test/1.0"), ("x-tenant", "acme-corporation")]
    reqs = [base] * 6 + [base + [("x-pad", "%04d" % i + "p" * 1500)] for i in range(6)] + [base] * 6
    conn = h2.H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    with Capture(tmp_path / "rs.pcap", nghttpd) as cap, socket.create_connection(("127.0.0.1", nghttpd)) as s:
        for hdrs in reqs:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, hdrs, end_stream=True)
            s.sendall(conn.data_to_send())             # the first one with the preface: one segment
            done = False
            while not done:
                chunk = s.recv(65536)
                assert chunk
                for ev in conn.receive_data(chunk):
                    if isinstance(ev, DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    done |= isinstance(ev, StreamEnded) and ev.stream_id == sid
                s.sendall(conn.data_to_send())
        conn.close_connection()
        s.sendall(conn.data_to_send())
        s.close()
        path = cap.stop()
    full = replay_file(path).records
    assert [r["h2_stream"] for r in full] == list(range(1, 2 * len(reqs), 2)) and all(flags(r) == set() for r in full)
    cap = Pcap(path)
    k = next(i for i, p in enumerate(cap.pkts) if p.dport == nghttpd and p.size) + 1   # preface + request 1 gone
    cut = replay_file(cap.cut(k, tmp_path / "cut.pcap")).records
    check_cut(full, cut, cap.pkts, k, nghttpd)
    assert [r["h2_stream"] for r in cut] == [r["h2_stream"] for r in full]
    assert "no_request" in flags(cut[0]) and cut[0]["status"] == 200      # its response came after the cut
    # requests 2-6 refer to entries request 1 inserted: absent, flagged
    for r in cut[1:6]:
        assert r["host"] is None and r.get("user_agent.original") is None and "hpack_unknown" in flags(r)
        assert "x-tenant" not in r["http.request.header_names"]
    # the last requests follow the padded ones that evicted everything: the client
    # sent its fields again, and the request side decodes whole
    for r, f in zip(cut[-6:], full[-6:]):
        assert (r["host"], r["user_agent.original"], r["http.request.header_names"]) == \
            (f["host"], f["user_agent.original"], ["user-agent", "x-tenant"])


# ------------------------------------------------------------------ crafted frames

def req_fields(path, method="GET", authority="api.test", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path), *extra]


def raw_frame(ftype, sid, payload, flag_byte=0):
    """Any frame type, as 9 header bytes and the payload (hyperframe's ExtensionFrame writes length 0)."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flag_byte]) + sid.to_bytes(4, "big") + payload


def data(sid, payload, end=False, pad=None):
    f = DataFrame(sid, payload, flags=["END_STREAM"] if end else [])
    if pad is not None:
        f.flags.add("PADDED")
        f.pad_length = pad
    return f.serialize()


class H2(Conv):
    """A Conv speaking HTTP/2 with prior knowledge. Builders return frame
    bytes; send them with send_client / send_server."""

    def __init__(self, preface=True, handshake=True, **kw):
        super().__init__(**kw)
        self.enc = {"client": Encoder(), "server": Encoder()}
        if handshake:
            self.handshake()
        if preface:
            self.send_client(PREFACE + SettingsFrame(0).serialize())
            self.send_server(SettingsFrame(0).serialize() + SettingsFrame(0, flags=["ACK"]).serialize())
            self.send_client(SettingsFrame(0, flags=["ACK"]).serialize())

    def headers(self, side, sid, fields, end=False, pad=None, priority=False, split_at=None, block=None):
        """HEADERS, plus CONTINUATIONs when split_at lists fragment sizes."""
        frags = split(block if block is not None else self.enc[side].encode(fields), split_at or [1 << 30])
        f = HeadersFrame(sid, frags[0], flags=(["END_STREAM"] if end else []) + ([] if split_at else ["END_HEADERS"]))
        if pad is not None:
            f.flags.add("PADDED")
            f.pad_length = pad
        if priority:
            f.flags.add("PRIORITY")
            f.depends_on, f.stream_weight, f.exclusive = 0, 200, True
        out = [f.serialize()]
        for i, frag in enumerate(frags[1:], 2):
            out.append(ContinuationFrame(sid, frag, flags=["END_HEADERS"] if i == len(frags) else []).serialize())
        return b"".join(out)

    def req(self, sid, path, method="GET", end=True, extra=(), **kw):
        return self.headers("client", sid, req_fields(path, method, extra=extra), end=end, **kw)

    def resp(self, sid, status=200, body=None, extra=(), end=False, **kw):
        """Response HEADERS, and a DATA frame ending the stream when body is given."""
        h = self.headers("server", sid, [(":status", str(status)), *extra], end=end, **kw)
        return h if body is None else h + data(sid, body, end=True)


def test_padding_and_priority(replay):
    c = H2()
    c.send_client(c.req(1, "/upload", "POST", end=False, pad=7, priority=True,
                        extra=[("content-type", "application/json")])
                  + PriorityFrame(3, depends_on=1, stream_weight=16).serialize()     # an idle stream: no record
                  + data(1, b"x" * 100, pad=10) + data(1, b"y" * 50, end=True, pad=0))
    c.send_server(c.resp(1, 201, extra=[("content-type", "text/plain")], pad=3) + data(1, b"z" * 20, end=True, pad=255))
    c.fin()
    (r,) = replay(c).records
    assert (r["method"], r["path"], r["status"], r["host"], r["h2_stream"]) == ("POST", "/upload", 201, "api.test", 1)
    assert r["http.request.header_names"] == ["content-type"] and r["http.response.content_type"] == "text/plain"
    assert r["http.request.body.size"] == 150 and r["http.request.body.wire_size"] == (1 + 100 + 10) + (1 + 50)
    assert r["http.response.body.size"] == 20 and r["http.response.body.wire_size"] == 1 + 20 + 255
    assert flags(r) == set()


def test_continuation_block_split_in_three(replay):
    c = H2()
    extra = [("user-agent", "split/1"), ("accept", "application/json"), ("x-trace", "t" * 40)]
    block = c.enc["client"].encode(req_fields("/split", extra=extra))
    # fragments cut anywhere, even inside a field
    c.send_client(c.headers("client", 1, None, end=True, block=block, split_at=[5, len(block) // 2 - 5]))
    resp = c.enc["server"].encode([(":status", "200"), ("content-type", "text/csv"), ("x-long", "v" * 300)])
    c.send_server(c.headers("server", 1, None, block=resp, split_at=[1, 200]) + data(1, b"a,b\n", end=True))
    c.fin()
    (r,) = replay(c).records
    assert (r["method"], r["path"], r["status"], r["user_agent.original"]) == ("GET", "/split", 200, "split/1")
    assert r["http.request.header_names"] == ["user-agent", "accept", "x-trace"]
    assert r["http.response.header_names"] == ["content-type", "x-long"] and r["http.response.body.size"] == 4
    assert flags(r) == set()


def conversation(c, **seg):
    """Three concurrent GETs with control frames between them, sent with `seg` cutting."""
    c.send_client(PingFrame(0, opaque_data=b"12345678").serialize() + c.req(1, "/one") + c.req(3, "/two")
                  + WindowUpdateFrame(0, window_increment=1 << 20).serialize() + c.req(5, "/three"), **seg)
    c.send_server(PingFrame(0, opaque_data=b"12345678", flags=["ACK"]).serialize()
                  + c.resp(3, 404, b"") + c.resp(1, 200, b"1" * 30)
                  + c.resp(5, 200, b"3" * 300, extra=[("content-type", "text/plain")]), **seg)
    c.fin()


def test_frames_per_segment_and_one_byte_segments(replay):
    whole = H2(preface=False)
    whole.send_client(PREFACE + SettingsFrame(0).serialize(), seg=10000)
    whole.send_server(SettingsFrame(0).serialize(), seg=10000)
    conversation(whole, seg=10000)                   # many frames per segment
    bytewise = H2(preface=False, client=("10.0.0.3", 40001))
    bytewise.send_client(PREFACE)
    bytewise.send_client(SettingsFrame(0).serialize(), seg=1)
    bytewise.send_server(SettingsFrame(0).serialize(), seg=1)
    conversation(bytewise, seg=1)                    # every frame over 1-byte segments
    recs = replay(whole, bytewise).records
    view = lambda r: {k: v for k, v in r.items() if k in (   # noqa: E731
        "method", "path", "status", "h2_stream", "http.response.body.size", "http.response.header_names",
        "http.request.header_names", "sensor.completeness", "host")}
    a = sorted((view(r) for r in recs if r["client.port"] == 40000), key=lambda v: v["h2_stream"])
    b = sorted((view(r) for r in recs if r["client.port"] == 40001), key=lambda v: v["h2_stream"])
    assert a == b
    assert [(v["h2_stream"], v["path"], v["status"], v["http.response.body.size"]) for v in a] == \
        [(1, "/one", 200, 30), (3, "/two", 404, 0), (5, "/three", 200, 300)]
    assert all(v["sensor.completeness"] == [] for v in a)


@pytest.mark.parametrize("pieces", [[1], [3], [4], [20], [1] * 24], ids=["1", "3", "4", "20", "bytewise"])
def test_preface_in_pieces(replay, pieces):
    """The first segment may hold only a piece of the preface ("P" might still
    become "PUT", "PRI" a PRI request line): detection waits for more bytes."""
    c = H2(preface=False)
    c.send_client(PREFACE + SettingsFrame(0).serialize() + c.req(1, "/p"), seg=pieces)
    c.send_server(SettingsFrame(0).serialize() + c.resp(1, 200, b"ok"))
    c.fin()
    (r,) = replay(c).records
    assert (r["network.protocol.version"], r["method"], r["path"], r["status"]) == ("2", "GET", "/p", 200)
    assert flags(r) == set()


def test_midstream_attach_inside_data_frame(replay):
    """The capture starts inside a response body: the connection is still
    HTTP/2, found at the next segment that starts with frames."""
    c = H2(preface=False, handshake=False)
    c.send_server(b"0123456789abcdef" * 100)                 # the tail of a DATA frame of an earlier stream
    c.send_client(c.req(9, "/later"))                        # static entries and literals: no table needed
    c.send_server(c.resp(9, 200, b"ok"))
    c.fin()
    recs = replay(c).records
    assert [(r["h2_stream"], r["method"], r["path"], r["status"]) for r in recs] == [(9, "GET", "/later", 200)]
    assert "midstream" in flags(recs[0]) and recs[0]["network.protocol.version"] == "2"


def test_unknown_frame_types_skipped_by_length(replay):
    c = H2()
    # a request inside an unknown frame (its own HPACK context: peers never decode it)
    lure = HeadersFrame(99, Encoder().encode(req_fields("/lure")), flags=["END_STREAM", "END_HEADERS"]).serialize()
    c.send_client(raw_frame(0xFA, 0, lure) + c.req(1, "/real", "POST", end=False)
                  + raw_frame(0x0B, 1, b"\x00" * 16000, flag_byte=0xFF)      # over many segments
                  + data(1, b"q" * 10, end=True))
    c.send_server(raw_frame(0x0A, 0, b"\x00\x00h2=\":443\"") + c.resp(1, 200, b"ok"))   # ALTSVC: unknown here
    c.fin()
    (r,) = replay(c).records
    assert (r["h2_stream"], r["method"], r["path"], r["status"]) == (1, "POST", "/real", 200)
    assert r["http.request.body.size"] == 10 and r["http.response.body.size"] == 2 and flags(r) == set()


def test_header_table_size_settings(replay):
    c = H2()
    # the client lets the server's encoder use 8192 bytes: both 3000-byte entries stay referable
    c.send_client(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 8192}).serialize() + c.req(1, "/big"))
    c.send_server(SettingsFrame(0, flags=["ACK"]).serialize())
    c.enc["server"].header_table_size = 8192        # announced at the start of the next block
    big = [("x-big-a", "a" * 3000), ("x-big-b", "b" * 3000)]
    c.send_server(c.resp(1, 200, b"", extra=big))
    c.send_client(c.req(3, "/big"))
    c.send_server(c.resp(3, 200, b"", extra=big))   # two indexed fields, the older beyond 4096 bytes
    # the server shrinks the client's table to 0 and back: two size updates in one block (RFC 7541 4.2)
    c.send_server(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 0}).serialize())
    c.send_server(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 4096}).serialize())
    c.enc["client"].header_table_size = 0
    c.enc["client"].header_table_size = 4096
    c.send_client(c.req(5, "/after", extra=[("x-k", "v")]))
    c.send_client(c.req(7, "/after", extra=[("x-k", "v")]))      # refers to what request 5 inserted
    c.send_server(c.resp(5, 204, end=True) + c.resp(7, 204, end=True))
    c.fin()
    res = replay(c)
    s = by_sid(res.records)
    assert s[3]["http.response.header_names"] == ["x-big-a", "x-big-b"] == s[1]["http.response.header_names"]
    for sid in (5, 7):
        assert (s[sid]["path"], s[sid]["host"], s[sid]["status"]) == ("/after", "api.test", 204)
        assert s[sid]["http.request.header_names"] == ["x-k"]
    assert all(flags(r) == set() for r in res.records) and not anomalies(res.err)


def test_rst_stream(replay):
    c = H2()
    c.send_client(c.req(1, "/download") + c.req(3, "/ok") + c.req(5, "/refused"))
    c.send_server(c.resp(1, 200) + data(1, b"d" * 3000) + RstStreamFrame(5, error_code=7).serialize())
    c.send_client(RstStreamFrame(1, error_code=8).serialize())            # CANCEL mid-response
    c.send_server(c.resp(3, 200, b"fine"))
    c.fin()
    s = by_sid(replay(c).records)
    assert "reset" in flags(s[1]) and s[1]["http2.error_code"] == 8
    assert (s[1]["status"], s[1]["http.response.body.size"]) == (200, 3000)
    assert "reset" in flags(s[5]) and s[5]["http2.error_code"] == 7 and s[5]["status"] is None
    assert flags(s[3]) == set() and "http2.error_code" not in s[3] and s[3]["http.response.body.size"] == 4


def test_truncated_response_ends_at_its_last_byte(replay):
    c = H2()
    c.send_client(c.req(1, "/cut"))
    last = c.send_server(c.resp(1, 200) + data(1, b"x" * 3000))[-1]   # no END_STREAM: the connection closes
    c.fin(first="server")
    (r,) = replay(c).records
    assert "response_truncated" in flags(r) and r["http.response.body.size"] == 3000
    assert r["end_ns"] == last


def test_goaway_refuses_later_streams(replay):
    c = H2()
    c.send_client(b"".join(c.req(sid, "/g%d" % sid) for sid in (1, 3, 5, 7)))
    c.send_server(c.resp(1, 200, b"one") + GoAwayFrame(0, last_stream_id=3, error_code=0).serialize())
    c.send_server(c.resp(3, 200, b"three"))          # at or below last_stream_id: still answered
    c.fin(first="server")
    s = by_sid(replay(c).records)
    for sid in (1, 3):
        assert s[sid]["status"] == 200 and flags(s[sid]) == set() and "http2.error_code" not in s[sid]
    for sid in (5, 7):
        # NO_ERROR is a code too: 0 must be written, not dropped
        assert s[sid]["path"] == "/g%d" % sid and s[sid]["status"] is None
        assert "reset" in flags(s[sid]) and s[sid]["http2.error_code"] == 0


def test_push_promise(replay):
    c = H2()
    c.send_client(c.req(1, "/page"))
    promise = c.enc["server"].encode(req_fields("/style.css"))   # the promised request: server's HPACK context
    c.send_server(PushPromiseFrame(1, promised_stream_id=2, data=promise, flags=["END_HEADERS"]).serialize()
                  + c.resp(1, 200, b"<html/>", extra=[("content-type", "text/html")])
                  + c.resp(2, 200, b"body{}", extra=[("content-type", "text/css")]))
    c.fin()
    s = by_sid(replay(c).records)
    assert sorted(s) == [1, 2]
    assert (s[1]["path"], s[1]["status"], s[1]["http.response.content_type"]) == ("/page", 200, "text/html")
    assert flags(s[1]) == set()
    p = s[2]
    assert (p["method"], p["path"], p["host"], p["status"]) == ("GET", "/style.css", "api.test", 200)
    assert flags(p) == {"pushed"} and p["http.response.content_type"] == "text/css"
    assert p["http.response.body.size"] == 6


def test_interim_responses_and_trailers(replay):
    c = H2()
    c.send_client(c.req(1, "/upload", "PUT", end=False, extra=[("expect", "100-continue")]))
    c.send_server(c.resp(1, 100))
    c.send_client(data(1, b"p" * 500) + c.headers("client", 1, [("x-req-checksum", "abc")], end=True))
    c.send_server(c.resp(1, 103, extra=[("link", "</a.css>; rel=preload")])
                  + c.resp(1, 201, extra=[("content-type", "application/json")]) + data(1, b"{}")
                  + c.headers("server", 1, [("x-checksum", "1234")], end=True))
    c.fin()
    (r,) = replay(c).records
    assert (r["method"], r["path"], r["status"]) == ("PUT", "/upload", 201)      # trailers overwrite nothing
    assert r["http.response.interim"] == [100, 103]
    assert "link" not in r["http.response.header_names"] and r["http.response.content_type"] == "application/json"
    assert r["http.request.header_names"] == ["expect"]
    assert r["http.request.body.size"] == 500 and r["http.response.body.size"] == 2
    assert flags(r) == set()


def grpc_msg(payload, compressed=False):
    return bytes([compressed]) + len(payload).to_bytes(4, "big") + payload


def test_cookie_crumbs_read_as_one_cookie_field(replay):
    """HTTP/2 may split a Cookie field into crumbs (RFC 9113 8.2.3): the
    record names it once and finds the same as for HTTP/1.1's single field."""
    crumbs = [("cookie", "sid=Zk3j29sLq0aPz8XvB1nM4wQe"), ("cookie", "theme=dark"), ("cookie", "lang=en")]
    c = H2()
    c.send_client(c.req(1, "/me", extra=[("user-agent", "t/1"), *crumbs, ("accept", "*/*")]))
    c.send_server(c.resp(1, 200, body=b"{}", extra=[("content-type", "application/json")]))
    c.fin()
    h1 = Conv()
    h1.handshake()
    h1.send_client(b"GET /me HTTP/1.1\r\nuser-agent: t/1\r\ncookie: %s\r\naccept: */*\r\n\r\n"
                   % "; ".join(v for _, v in crumbs).encode())
    h1.send_server(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
    h1.fin()
    r2, r1 = replay(c).records[0], replay(h1).records[0]
    assert r2["http.request.header_names"] == r1["http.request.header_names"] == ["user-agent", "cookie", "accept"]
    for key in ("sensor.auth", "sensor.sensitive"):
        assert r2[key] == r1[key]
    assert r2["sensor.auth"] == {"scheme": "cookie-session", "name": "sid"}


def test_extended_connect_websocket(replay):
    """RFC 8441: a WebSocket over one stream (:method CONNECT with :protocol)
    is one record naming the protocol, its frames counted as DATA; the
    connection's other streams go on as usual."""
    c = H2()
    c.send_server(SettingsFrame(0, settings={0x8: 1}).serialize())      # SETTINGS_ENABLE_CONNECT_PROTOCOL
    c.send_client(c.headers("client", 1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                          (":path", "/chat?room=1"), (":authority", "api.test"),
                                          ("sec-websocket-version", "13")]))
    c.send_server(c.resp(1, 200))
    c.send_client(data(1, b"\x81\x85" + b"\0" * 4 + b"hello"))
    c.send_client(c.req(3, "/health"))
    c.send_server(c.resp(3, 200, body=b"ok") + data(1, b"\x81\x02hi"))
    c.send_client(data(1, b"\x88\x80" + b"\0" * 4, end=True))
    c.send_server(data(1, b"\x88\x00", end=True))
    c.fin()
    ws, health = sorted(replay(c).records, key=lambda r: r["h2_stream"])
    assert (ws["method"], ws["path"], ws["status"], ws["sensor.protocol_switch"]) == ("CONNECT", "/chat", 200, "websocket")
    assert (ws["http.request.body.size"], ws["http.response.body.size"]) == (17, 6) and flags(ws) == set()
    assert (health["path"], health["status"], health["http.response.body.size"]) == ("/health", 200, 2)


def test_grpc_framing_across_data_frames(replay):
    c = H2()
    req_h = req_fields("/pkg.sub.Svc/Do", "POST", extra=[("content-type", "application/grpc+proto"),
                                                        ("te", "trailers")])
    body = grpc_msg(b"a" * 10) + grpc_msg(b"b" * 70000, compressed=True) + grpc_msg(b"")
    # frames end inside a message, inside a prefix, and split the last (empty) message's prefix
    cuts = [12, 2, 3, 16000, 16000, 16000, 16000, 6006]
    c.send_client(c.headers("client", 1, req_h)
                  + b"".join(data(1, p) for p in split(grpc_msg(b"x") + grpc_msg(b"yy"), [3]))
                  + data(1, b"", end=True))
    c.send_server(c.resp(1, 200, extra=[("content-type", "application/grpc"), ("grpc-encoding", "gzip")])
                  + b"".join(data(1, p) for p in split(body, cuts))
                  + c.headers("server", 1, [("grpc-status", "14"), ("grpc-message", "unavailable")], end=True))
    c.fin()
    (r,) = replay(c).records
    assert (r["rpc.system"], r["rpc.service"], r["rpc.method"]) == ("grpc", "pkg.sub.Svc", "Do")
    assert r["rpc.grpc.status_code"] == 14 and r["sensor.grpc.compressed"] is True
    assert (r["sensor.grpc.request_messages"], r["sensor.grpc.response_messages"]) == (2, 3)
    assert r["http.response.body.size"] == len(body) and flags(r) == set()


def test_concurrent_streams_finish_out_of_order(replay):
    c = H2()
    want = {1: (200, 5000), 3: (404, 7), 5: (201, 0), 7: (500, 12000)}
    c.send_client(b"".join(c.req(sid, "/r/%d" % sid) for sid in want))
    out = [c.resp(7, 500), c.resp(3, 404), data(7, b"7" * 6000), c.resp(1, 200), data(3, b"3" * 7, end=True),
           data(1, b"1" * 2500), c.resp(5, 201, b""), data(7, b"7" * 6000, end=True), data(1, b"1" * 2500, end=True)]
    c.send_server(b"".join(out))
    c.fin()
    s = by_sid(replay(c, args=("--raw-targets",)).records)
    for sid, (status, size) in want.items():
        assert (s[sid]["path"], s[sid]["status"], s[sid]["http.response.body.size"]) == ("/r/%d" % sid, status, size)
        assert flags(s[sid]) == set()
    assert [sid for _, sid in sorted((r["end_ns"], r["h2_stream"]) for r in s.values())] == [3, 5, 7, 1]


def test_gap_inside_data_frame(replay):
    c = H2()
    c.send_client(c.req(1, "/big"))
    resp = c.resp(1, 200, b"B" * 5000)
    head = len(resp) - 5000                     # HEADERS + DATA frame header
    c.send_server(resp, seg=[head + 100, 1000, 1000], order=[0, 2, 3])    # 1000 payload bytes never captured
    c.send_client(c.req(3, "/after"))
    c.send_server(c.resp(3, 200, b"A" * 70))
    c.fin()
    res = replay(c)
    s = by_sid(res.records)
    assert "response_gap" in flags(s[1]) and s[1]["status"] == 200
    assert s[1]["http.response.body.size"] == 5000        # sizes count the missing bytes
    assert (s[3]["path"], s[3]["status"], s[3]["http.response.body.size"]) == ("/after", 200, 70)
    assert flags(s[3]) == set()
    assert "h2_lost_frame_sync" not in anomalies(res.err)      # the frame length carried the parser over the hole


def test_gap_across_frame_headers(replay):
    c = H2()
    c.send_client(c.req(1, "/one") + c.req(3, "/two"))
    a = c.resp(1, 200, extra=[("content-type", "text/plain")]) + data(1, b"1" * 1000)
    b = data(1, b"1" * 500, end=True) + c.resp(3, 200, b"lost", extra=[("x-lost", "yes")])
    c.send_server(a + b, seg=[len(a)], order=[0])          # b: frame headers and an HPACK insertion lost
    c.send_client(c.req(5, "/five") + c.req(7, "/seven"))
    c.send_server(c.resp(5, 200, b"5" * 50, extra=[("x-fresh", "1")])
                  + c.resp(7, 200, b"7" * 70, extra=[("x-lost", "yes")]))   # refers to the lost entry
    c.fin()
    res = replay(c)
    s = by_sid(res.records)
    assert anomalies(res.err).get("h2_lost_frame_sync", 0) >= 1
    assert s[1]["status"] == 200 and "response_gap" in flags(s[1])
    assert s[3]["status"] is None and "response_gap" in flags(s[3])
    # the next segment starts at a frame: later streams are found again
    assert (s[5]["path"], s[5]["status"], s[5]["http.response.body.size"]) == ("/five", 200, 50)
    assert s[5]["http.response.header_names"] == ["x-fresh"] and flags(s[5]) == set()
    assert (s[7]["path"], s[7]["status"], s[7]["http.response.body.size"]) == ("/seven", 200, 70)
    assert "hpack_unknown" in flags(s[7]) and "x-lost" not in s[7]["http.response.header_names"]


def test_hpack_error_counted_nothing_guessed(replay):
    c = H2()
    c.send_client(c.req(1, "/first", extra=[("x-tenant", "acme")]))
    # never-indexed literals (the table is untouched), then index 190: beyond the table (RFC 7541 2.3.3)
    bad = Encoder().encode([(n, v, True) for n, v in req_fields("/bad")]) + b"\xff\x7f"
    c.send_client(c.headers("client", 3, None, end=True, block=bad))
    c.send_client(c.req(5, "/later", extra=[("x-tenant", "acme")]))     # refers to stream 1's entries
    c.send_server(c.resp(1, 200, b"") + c.resp(3, 400, b"") + c.resp(5, 200, b""))
    c.fin()
    res = replay(c)
    s = by_sid(res.records)
    assert anomalies(res.err).get("h2_hpack_error") == 1
    assert (s[1]["host"], s[1]["http.request.header_names"], flags(s[1])) == ("api.test", ["x-tenant"], set())
    assert s[3]["status"] == 400 and s[3]["path"] in (None, "/bad")
    assert (s[5]["path"], s[5]["status"]) == ("/later", 200)
    assert s[5]["host"] in (None, "api.test") and is_subsequence(s[5]["http.request.header_names"], ["x-tenant"])
    if s[5]["host"] is None or not s[5]["http.request.header_names"]:
        assert "hpack_unknown" in flags(s[5])


# ------------------------------------------------------------------ hostile peers

PEAK = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print('peak_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def run_bounded(tmp_path, conv):
    """Replay in a fresh process that reports the sensor's peak RSS (raw
    targets: paths tell the streams apart)."""
    f = tmp_path / "hostile.pcap"
    conv.write(f)
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-c", PEAK, "sensor", "replay", str(f), *JSONL, "--raw-targets"],
                       capture_output=True, timeout=60)
    seconds = time.monotonic() - t
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0 and "Traceback" not in err, err
    peak_mb = int(re.search(r"peak_kb (\d+)", err).group(1)) / 1024
    err = err[:err.rindex("peak_kb")]
    recs = [json.loads(x) for x in p.stdout.splitlines()]
    return SimpleNamespace(records=recs, anomalies=anomalies(err), peak_mb=peak_mb, seconds=seconds)


@pytest.fixture(scope="module")
def baseline_mb(tmp_path_factory):
    """Peak RSS of the sensor on a tiny HTTP/2 capture."""
    c = H2()
    c.send_client(c.req(1, "/"))
    c.send_server(c.resp(1, 200, b"x"))
    c.fin()
    return run_bounded(tmp_path_factory.mktemp("baseline"), c).peak_mb


def assert_bounded(res, baseline_mb, seconds=5):
    assert res.seconds < seconds
    assert res.peak_mb < 200 and res.peak_mb - baseline_mb < 24, (res.peak_mb, baseline_mb)


def bulk(c, side, frames, seg=65000):
    """Send frame bytes in loopback-sized segments (keeps big captures quick to build)."""
    c.send(side, b"".join(frames), seg=seg)


def test_continuation_flood(tmp_path, baseline_mb):
    c = H2()
    field = c.enc["client"].encode([("x-flood", "f" * 16000)], huffman=False)
    flood = [HeadersFrame(1, c.enc["client"].encode(req_fields("/flood")))]     # no END_HEADERS
    flood += [ContinuationFrame(1, field) for _ in range(2000)]                 # 32 MB of one header block
    flood.append(ContinuationFrame(1, b"", flags=["END_HEADERS"]))
    bulk(c, "client", [f.serialize() for f in flood])
    c.send_client(c.req(3, "/after"))
    c.send_server(c.resp(3, 200, b"fine"))
    c.fin()
    res = run_bounded(tmp_path, c)
    assert_bounded(res, baseline_mb)
    assert res.anomalies.get("h2_header_block_too_large", 0) >= 1
    after = [r for r in res.records if r["h2_stream"] == 3]
    assert [(r["method"], r["path"], r["status"]) for r in after] == [("GET", "/after", 200)]
    assert all(r["path"] in (None, "/flood") for r in res.records if r["h2_stream"] == 1)


def test_hpack_bomb(tmp_path, baseline_mb):
    c = H2()
    c.send_client(c.headers("client", 1, req_fields("/seed", extra=[("x-bomb", "b" * 4000)]), end=True))
    assert c.enc["client"].header_table.dynamic_entries[0][0] == b"x-bomb"     # the entry at index 62
    blocks = []
    for sid in range(3, 3 + 2 * 50, 2):              # 50 blocks of 16000 references: 3.2 GB if expanded
        # never-indexed literals leave the table alone; then index 62, 16000 times
        block = Encoder().encode([(n, v, True) for n, v in req_fields("/bomb")]) + b"\xbe" * 16000
        blocks.append(c.headers("client", sid, None, end=True, block=block))
    bulk(c, "client", blocks)
    c.send_server(b"".join(c.resp(sid, 200, b"") for sid in range(1, 103, 2)))
    c.fin()
    res = run_bounded(tmp_path, c)
    assert_bounded(res, baseline_mb)
    assert res.anomalies.get("h2_header_list_too_large", 0) >= 1
    s = by_sid(res.records)
    assert len(s) == 51
    for sid in range(3, 103, 2):
        assert (s[sid]["method"], s[sid]["path"], s[sid]["status"]) == ("GET", "/bomb", 200)
        assert len(s[sid]["http.request.header_names"]) <= (64 << 10) // 4000
        assert "headers_truncated" in flags(s[sid])         # the cut is said, not only counted


def test_rapid_reset(tmp_path, baseline_mb):
    c = H2()
    frames = []
    for sid in range(1, 20001, 2):
        frames.append(c.req(sid, "/rr"))
        frames.append(RstStreamFrame(sid, error_code=8).serialize())
    bulk(c, "client", frames)
    c.fin()
    res = run_bounded(tmp_path, c)
    assert_bounded(res, baseline_mb)
    assert len(res.records) == 10000
    assert sorted(r["h2_stream"] for r in res.records) == list(range(1, 20001, 2))
    assert all("reset" in flags(r) and r["http2.error_code"] == 8 and r["path"] == "/rr" for r in res.records)


def test_too_many_concurrent_streams(tmp_path, baseline_mb):
    c = H2()
    sids = range(1, 2 * 1100, 2)
    bulk(c, "client", [c.req(sid, "/r/%d" % sid) for sid in sids])
    bulk(c, "server", [c.resp(sid, 200 + sid % 7, b"") for sid in sids])
    c.fin()
    res = run_bounded(tmp_path, c)
    assert_bounded(res, baseline_mb)
    assert res.anomalies.get("h2_too_many_streams", 0) >= 1
    assert 1024 <= len(res.records) <= 1100
    assert len({r["h2_stream"] for r in res.records}) == len(res.records)
    for r in res.records:
        sid = r["h2_stream"]
        assert r["path"] in (None, "/r/%d" % sid) and r["status"] in (None, 200 + sid % 7)
    full = [r for r in res.records if r["method"] and r["status"]]
    assert len(full) >= 1024


def test_non_ascii_digits_in_status_fields(replay):
    # "2²0" and "¹" pass str.isdigit() but not int(): never a crash, never a guess
    c = Conv()
    c.handshake()
    enc_c, enc_s = Encoder(), Encoder()
    c.send_client(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize() + HeadersFrame(
        1, enc_c.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/p")]),
        flags=["END_HEADERS", "END_STREAM"]).serialize())
    c.send_server(SettingsFrame(0).serialize() + HeadersFrame(
        1, enc_s.encode([(":status", "2²0"), ("grpc-status", "¹")]), flags=["END_HEADERS", "END_STREAM"]).serialize())
    c.fin()
    (r,) = replay(c).records
    assert (r["method"], r["path"], r["status"]) == ("GET", "/p", None)
    assert "rpc.grpc.status_code" not in r
