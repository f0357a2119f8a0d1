"""`sensor collect`: Forward and plain msgpack streams in, records out, a
per-endpoint summary, clean stops. Also home of the Collect helper the sink
tests use as their collector."""
import gzip
import os
import signal
import socket
import subprocess
import time

import msgpack
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SAMPLE = os.path.join(ROOT, "pcaps", "sample-api.pcap")


class Collect:
    """A `sensor collect` process listening on `listen` (port 0: a free one),
    writing to `out`. .addr is the address it printed; stop() sends SIGTERM
    and returns its stderr (the summary)."""

    def __init__(self, listen, out, *args):
        self.out = out
        self.proc = subprocess.Popen(["sensor", "collect", "--listen", listen, "-o", str(out), *args],
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "listening on " in line, line + self.proc.stderr.read()
        self.addr = line.split("listening on ", 1)[1].strip()
        self.port = int(self.addr.rsplit(":", 1)[1]) if not self.addr.startswith("unix") else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        return err

    def records(self):
        with open(self.out, "rb") as f:
            return list(msgpack.Unpacker(f, raw=False))


def record(i, **extra):
    """A small synthetic http record with a sequence number."""
    rec = {"type": "http", "v": 1, "start_ns": 1_700_000_000_000_000_000 + i * 1000, "seq": i,
           "http.request.method": "GET", "url.path": "/items/%d" % (i % 3)}
    rec.update(extra)
    return msgpack.packb(rec)


def _sock(addr):
    host, port = addr.split("://")[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def test_plain_and_forward_modes_with_acks(tmp_path):
    c = Collect("fluent://127.0.0.1:0", tmp_path / "out.msgpack")
    s = _sock(c.addr)
    t = msgpack.ExtType(0, b"\x65\x00\x00\x00\x00\x00\x00\x07")      # EventTime
    s.sendall(record(0))                                                     # a plain record
    s.sendall(msgpack.packb(["app", 1700000000, {"seq": 1}]))               # Message
    s.sendall(msgpack.packb(["app", [[t, {"seq": 2}], [t, {"seq": 3}]], {"chunk": "c1"}]))   # Forward
    packed = b"".join(msgpack.packb([t, {"seq": k}]) for k in (4, 5))
    s.sendall(msgpack.packb(["app", packed, {"size": 2, "chunk": "c2"}]))   # PackedForward
    s.sendall(msgpack.packb(["app", gzip.compress(packed.replace(b"\x04", b"\x06").replace(b"\x05", b"\x07")),
                             {"size": 2, "chunk": "c3", "compressed": "gzip"}]))  # CompressedPackedForward
    u = msgpack.Unpacker(raw=False)
    acks = []
    while len(acks) < 3:
        u.feed(s.recv(1024))
        acks += [a["ack"] for a in u]
    assert acks == ["c1", "c2", "c3"]
    s.close()
    err = c.stop()
    assert sorted(r["seq"] for r in c.records()) == list(range(8))
    assert "8 records, 1 connections, 3 acks, 0 errors" in err
    assert "GET /items/0" in err


def test_replay_to_collect_jsonl_summary(tmp_path):
    c = Collect("tcp://127.0.0.1:0", tmp_path / "out.jsonl", "--format", "jsonl")
    r = subprocess.run(["sensor", "replay", SAMPLE, "-o", c.addr, "--spool-dir", str(tmp_path / "spool")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "12 enqueued, 12 sent, 0 acked, 0 retried, 0 spooled, 0 dropped" in r.stderr
    err = c.stop()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 12 and '"method":"PATCH"' in "".join(lines)
    assert "%s: 12 records, 1 connections" % c.addr in err
    assert "       1  DELETE /api/v1/users/" in err


def test_live_summary(tmp_path):
    c = Collect("tcp://127.0.0.1:0", tmp_path / "out.msgpack", "--summary-interval", "0.2")
    s = _sock(c.addr)
    s.sendall(record(1) + record(2))
    time.sleep(0.7)
    s.close()
    err = c.stop()
    assert err.count("%s: 2 records" % c.addr) >= 3         # live ones, then the final one
    assert err.count("       1  GET /items/1") >= 3


def test_unix_listener_removes_its_socket(tmp_path):
    path = tmp_path / "c.sock"
    c = Collect("unix://" + str(path), tmp_path / "out.msgpack")
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.sendall(record(1) + record(2))
    s.close()
    c.stop()
    assert [r["seq"] for r in c.records()] == [1, 2]
    assert not path.exists()


def test_shared_key_refused(tmp_path):
    c = Collect("fluent://127.0.0.1:0?shared_key=right", tmp_path / "out.msgpack")
    s = _sock(c.addr)
    u = msgpack.Unpacker(raw=False)
    u.feed(s.recv(1024))
    helo = next(u)
    assert helo[0] == "HELO" and len(helo[1]["nonce"]) == 16
    s.sendall(msgpack.packb(["PING", "client", b"salt", "0" * 128, "", ""]))
    u.feed(s.recv(1024))
    pong = next(u)
    assert pong[:3] == ["PONG", False, "shared key mismatch"]
    s.close()
    assert "1 errors" in c.stop()


def test_garbage_drops_that_connection_only(tmp_path):
    c = Collect("fluent://127.0.0.1:0", tmp_path / "out.msgpack")
    for junk in (b"\xc1", msgpack.packb(["app", b"not gzip", {"compressed": "gzip", "chunk": "x"}])):
        s = _sock(c.addr)
        s.sendall(junk)
        assert s.recv(100) == b""                   # closed on us, no ack
        s.close()
    s = _sock(c.addr)
    s.sendall(record(7))
    s.close()
    err = c.stop()
    assert [r["seq"] for r in c.records()] == [7]
    assert err.count("connection dropped") == 2 and "2 errors" in err


@pytest.mark.parametrize("listen, message", [
    ("http://127.0.0.1:1", "cannot listen on http://127.0.0.1:1"),
    ("tcp://127.0.0.1", "host and port needed"),
    ("unix://", "no socket path"),
])
def test_bad_listen_is_a_one_line_error(listen, message):
    r = subprocess.run(["sensor", "collect", "--listen", listen], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_address_in_use(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    t0 = time.monotonic()
    r = subprocess.run(["sensor", "collect", "--listen", "tcp://127.0.0.1:%d" % busy.getsockname()[1]],
                       capture_output=True, text=True, timeout=30)
    busy.close()
    assert r.returncode == 2 and "in use" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 10
