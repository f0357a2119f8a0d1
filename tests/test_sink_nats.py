"""nats:// sink against a real nats-server with JetStream: every record lands
in the stream once, including across a SIGKILL and restart of the server."""
import asyncio
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import msgpack
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from sensor.sinks import OutputError, open_outputs
from sensor.sinks.base import TransportError
from sensor.sinks.nats import NatsTransport
from loopback import free_port

STREAM, SUBJECT = "SENSOR", "sensor.records"

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server not installed (apt-get install nats-server)")


class NatsServer:
    """nats-server -js on a loopback port with its store in a temp dir; kill()
    and start() again keep both."""

    def __init__(self, store):
        self.port = free_port()
        self.store = store
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.02)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def url(self, query=f"stream={STREAM}&create=1&timeout=1"):
        return urlsplit(f"nats://127.0.0.1:{self.port}/{SUBJECT}?{query}")


@pytest.fixture
def server(tmp_path):
    s = NatsServer(tmp_path / "js")
    s.start()
    yield s
    s.kill()


@pytest.fixture
def transport(server):
    t = NatsTransport(server.url(), {})
    t.open()
    yield t
    t.close()


def records(n, start=0):
    return [msgpack.packb({"type": "http", "v": 1, "start_ns": 1_700_000_000_000_000_000 + i,
                           "network.community_id": f"1:flow{i % 13}=", "url.path": f"/items/{i}"})
            for i in range(start, start + n)]


def batches(recs, size):
    return [recs[i:i + size] for i in range(0, len(recs), size)]


def stream_contents(server):
    """(payload, Nats-Msg-Id) of every message in the stream, in stream order."""
    async def read():
        nc = await nats.connect(f"nats://127.0.0.1:{server.port}")
        js = nc.jetstream()
        count = (await js.stream_info(STREAM)).state.messages
        sub = await js.pull_subscribe(SUBJECT, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        got = []
        while len(got) < count:
            got += [(m.data, m.headers["Nats-Msg-Id"]) for m in await sub.fetch(1000, timeout=5)]
        await nc.close()
        return got
    return asyncio.run(read())


def test_every_record_arrives_with_its_message_id(server, transport):
    recs = records(3000)
    for batch in batches(recs, 500):
        transport.send(batch)
    assert (transport.acked, transport.duplicates) == (3000, 0)
    got = stream_contents(server)
    assert [data for data, _ in got] == recs
    assert [msg_id for _, msg_id in got] == transport.msg_ids(recs)
    assert len({msg_id for _, msg_id in got}) == 3000


def test_resent_batch_is_deduplicated_by_message_id(server, transport):
    batch = records(400)
    transport.send(batch)
    transport.send(batch)           # a retry after a lost PubAck sends the same bytes
    assert (transport.acked, transport.duplicates) == (800, 400)
    # a new sensor process (same id prefix) re-reading its spool: same ids
    again = NatsTransport(server.url(), {})
    again.open()
    again.send(batch[:100])
    again.close()
    assert again.duplicates == 100
    assert [data for data, _ in stream_contents(server)] == batch


def test_equal_records_in_a_batch_are_all_kept(server, transport):
    # identical exchanges pipelined in one packet encode to identical records
    batch = records(3) + records(1) + records(1)
    transport.send(batch)
    transport.send(batch)
    assert (transport.acked, transport.duplicates) == (10, 5)
    assert [data for data, _ in stream_contents(server)] == batch


def test_server_killed_mid_stream_loses_and_doubles_nothing(server, tmp_path):
    """Through the delivery queue (-o nats://...): SIGKILL of the server mid-stream, restart."""
    out = open_outputs([server.url().geturl()], spool_dir=str(tmp_path / "spool"), drain_timeout=30)
    queue = out.sinks[0]
    recs = records(6000)
    for batch in batches(recs, 500):
        out.write_encoded(b"".join(batch), len(batch))
    while queue.transport.acked < 2000:
        time.sleep(0.002)
    server.kill()
    time.sleep(1)
    server.start()
    out.close()
    c = queue.counters
    assert c["enqueued"] == c["sent"] == c["acked"] == 6000 and c["dropped"] == 0
    assert c["spooled"] > 0 and queue.spool.records == 0        # spooled, then drained
    assert queue.last_error.startswith(f"nats nats://127.0.0.1:{server.port}: ")
    got = [data for data, _ in stream_contents(server)]
    assert len(got) == len(set(got)) == 6000
    assert set(got) == set(recs)
    # the restarted server rebuilt its duplicate window from the store
    again = NatsTransport(server.url(), {})
    again.open()
    again.send(recs[:200])
    again.close()
    assert again.duplicates == 200


def test_shutdown_with_a_hung_server_keeps_the_deadline_and_spools(server, tmp_path):
    """SIGSTOP: the server holds its connections but never answers. close()
    returns by the drain deadline, what is left stays in the spool, and the
    next start sends it first."""
    url = server.url().geturl()
    spool = str(tmp_path / "spool")
    recs = records(3000)
    out = open_outputs([url], spool_dir=spool, drain_timeout=0.5)
    out.write_encoded(b"".join(recs[:1000]), 1000)
    while out.sinks[0].transport.acked < 1000:
        time.sleep(0.002)
    server.proc.send_signal(signal.SIGSTOP)
    try:
        out.write_encoded(b"".join(recs[1000:]), 2000)
        started = time.monotonic()
        out.close()
        # the deadline, then at most one bounded nats close and one connect attempt (timeout=1)
        assert time.monotonic() - started < 0.5 + 2.5
        assert out.sinks[0].spool.records == 2000
    finally:
        server.proc.send_signal(signal.SIGCONT)
    out = open_outputs([url], spool_dir=spool)
    out.close()
    assert out.sinks[0].counters["sent"] == 2000 and out.sinks[0].spool.records == 0
    got = [data for data, _ in stream_contents(server)]
    assert got == recs


def test_missing_stream_and_bad_urls_are_clear_errors(server):
    t = NatsTransport(server.url("stream=ABSENT&timeout=1"), {})
    with pytest.raises(TransportError, match="no stream ABSENT .add create=1"):
        t.open()
    t.close()
    with pytest.raises(OutputError, match="no subject"):
        NatsTransport(urlsplit(f"nats://127.0.0.1:{server.port}"), {})
    with pytest.raises(OutputError, match="create=1 needs stream"):
        NatsTransport(urlsplit(f"nats://127.0.0.1:{server.port}/x?create=1"), {})


def test_unreachable_server_fails_open_at_once():
    t = NatsTransport(urlsplit(f"nats://127.0.0.1:{free_port()}/{SUBJECT}"), {})
    started = time.monotonic()
    with pytest.raises(TransportError, match="no servers available for connection .last error: ConnectionRefusedError"):
        t.open()
    assert time.monotonic() - started < 1
    t.close()
