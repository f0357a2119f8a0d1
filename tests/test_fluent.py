"""Fluent Forward v1: the Fluentd project's own Python client (fluent-logger)
into `sensor collect`, the sensor's Forward sink into `sensor collect` with
acks, gzip and a shared key, and into a hostile receiver that drops the
connection before acking (the batch is resent: at-least-once, no loss)."""
import socket
import ssl
import struct
import subprocess
import threading
import time

import msgpack
import pytest
from fluent import sender

from sensor.sinks import open_outputs
from sensor.sinks.fluent import MAX_MESSAGE, FluentTransport
from test_collect import SAMPLE, Collect, record
from test_sinks import write


def test_fluent_logger_into_collect(tmp_path):
    c = Collect("fluent://127.0.0.1:0", tmp_path / "out.msgpack")
    plain = sender.FluentSender("app", host="127.0.0.1", port=c.port)
    nano = sender.FluentSender("app", host="127.0.0.1", port=c.port, nanosecond_precision=True)
    for i in range(50):
        assert (plain if i % 2 else nano).emit("access", {"seq": i, "http.request.method": "GET",
                                                          "url.path": "/from-fluent-logger"})
    plain.close()
    nano.close()
    err = c.stop()
    assert sorted(r["seq"] for r in c.records()) == list(range(50))
    assert "50  GET /from-fluent-logger" in err


def test_replay_into_collect_with_acks_and_gzip(tmp_path):
    c = Collect("fluent://127.0.0.1:0", tmp_path / "out.msgpack")
    r = subprocess.run(["sensor", "replay", SAMPLE, "-o", "%s?compress=gzip&tag=api.http" % c.addr,
                        "--spool-dir", str(tmp_path / "spool")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "12 enqueued, 12 sent, 12 acked, 0 retried, 0 spooled, 0 dropped" in r.stderr
    err = c.stop()
    assert len(c.records()) == 12 and "1 acks" in err


@pytest.mark.parametrize("query", ["", "?compress=gzip", "?shared_key=s3cr3t&hostname=sensor-a"])
def test_sink_into_collect(tmp_path, query):
    listen = "fluent://127.0.0.1:0" + ("?shared_key=s3cr3t" if "shared_key" in query else "")
    c = Collect(listen, tmp_path / "out.msgpack")
    out = open_outputs(["fluent://127.0.0.1:%d%s" % (c.port, query)], spool_dir=str(tmp_path / "spool"))
    write(out, 0, 30_000)
    out.close()
    c.stop()
    q = out.sinks[0].counters
    assert q["sent"] == q["acked"] == 30_000 and q["spooled"] == q["dropped"] == 0
    assert sorted(r["seq"] for r in c.records()) == list(range(30_000))


def test_wrong_shared_key_spools(tmp_path):
    c = Collect("fluent://127.0.0.1:0?shared_key=right", tmp_path / "out.msgpack")
    out = open_outputs(["fluent://127.0.0.1:%d?shared_key=wrong" % c.port], spool_dir=str(tmp_path / "spool"),
                       drain_timeout=0.3)
    write(out, 0, 10)
    # the refusal, before close() cuts a handshake still under way
    deadline = time.monotonic() + 10
    while "shared key mismatch" not in out.summaries()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    out.close()
    c.stop()
    assert out.sinks[0].counters["spooled"] == 10 and not c.records()
    assert "fluent handshake refused: shared key mismatch" in out.summaries()[0]


class ForwardServer(threading.Thread):
    """A bare Forward receiver that keeps every message it gets and acks it,
    except that it drops the connection, unacked, after each of the first
    `drop_first` messages. TLS when given a server SSLContext."""

    def __init__(self, drop_first=0, tls=None):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drop_first, self.tls = drop_first, tls
        self.messages = []
        self.connections = 0
        self.start()

    def run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    self._serve(conn)
            except ssl.SSLError:        # a client that refused our certificate
                conn.close()

    def _serve(self, conn):
        u = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            u.feed(data)
            for msg in u:
                self.messages.append(msg)
                if self.drop_first:
                    self.drop_first -= 1
                    return
                options = msg[2] if isinstance(msg, list) and len(msg) > 2 else None
                if isinstance(options, dict) and "chunk" in options:       # the rest is not ours to ack
                    conn.sendall(msgpack.packb({"ack": options["chunk"]}))

    @staticmethod
    def entries(msg):
        """[EventTime, record] pairs of a PackedForward message."""
        u = msgpack.Unpacker(raw=False)
        u.feed(msg[1])
        return list(u)


def test_connection_dropped_before_ack_is_resent(tmp_path):
    srv = ForwardServer(drop_first=1)
    out = open_outputs(["fluent://127.0.0.1:%d?tag=t.x" % srv.port], spool_dir=str(tmp_path))
    write(out, 0, 5000)
    out.close()
    srv.listener.close()
    seqs = [rec["seq"] for m in srv.messages for _, rec in srv.entries(m)]
    first = [rec["seq"] for _, rec in srv.entries(srv.messages[0])]
    assert set(seqs) == set(range(5000))                        # no loss
    assert len(seqs) == 5000 + len(first)                        # the unacked message came again
    assert [rec["seq"] for _, rec in srv.entries(srv.messages[1])] == first
    q = out.sinks[0].counters
    assert q["acked"] == 5000 and q["retried"] == len(first) and srv.connections == 2
    tag, body, option = srv.messages[1]
    assert tag == "t.x" and option["size"] == len(first) and len(option["chunk"]) == 24
    t, rec = srv.entries(srv.messages[1])[0]                     # EventTime: ext 0, the record's start_ns
    assert t.code == 0 and struct.unpack(">II", t.data) == divmod(rec["start_ns"], 1_000_000_000)


def test_messages_stay_under_fluent_bits_buffer():
    from urllib.parse import urlsplit
    tr = FluentTransport(urlsplit("fluent://127.0.0.1:1"), {})
    batch = [record(i, pad="x" * 50_000) for i in range(300)]          # ~15 MB
    msgs = tr.messages(batch)
    assert len(msgs) == 3 and all(len(m) < MAX_MESSAGE for _, m in msgs)
    assert sum(msgpack.unpackb(m)[2]["size"] for _, m in msgs) == 300


def test_tls(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = ForwardServer(tls=ctx)
    out = open_outputs(["fluent://localhost:%d?tls=1&ca=%s" % (srv.port, cert)], spool_dir=str(tmp_path / "a"))
    write(out, 0, 100)
    out.close()
    assert out.sinks[0].counters["acked"] == 100
    t0 = time.monotonic()       # a server the sensor cannot verify: refused, spooled, no hang
    out = open_outputs(["fluent://localhost:%d?tls=1" % srv.port], spool_dir=str(tmp_path / "b"), drain_timeout=0.3)
    write(out, 0, 100)
    out.close()
    srv.listener.close()
    assert out.sinks[0].counters["spooled"] == 100 and time.monotonic() - t0 < 10
    assert "CERTIFICATE_VERIFY_FAILED" in out.summaries()[0]
