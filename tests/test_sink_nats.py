"""nats:// sink against a real nats-server with JetStream: every record lands
in the stream once, including across a SIGKILL and restart of the server."""
import asyncio
import shutil
import signal
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import msgpack
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from sensor.sinks.base import TransportError
from sensor.sinks.nats import NatsTransport

STREAM, SUBJECT = "SENSOR", "sensor.records"

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server not installed (apt-get install nats-server)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    assert [msg_id for _, msg_id in got] == [transport.msg_id(r) for r in recs]
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


def test_server_killed_mid_stream_loses_and_doubles_nothing(server, transport):
    recs = records(6000)
    sent, failures = [], []

    def sender():
        # what the delivery queue does: resend the failed batch until acked
        for batch in batches(recs, 200):
            while True:
                try:
                    transport.send(batch)
                    break
                except TransportError as e:
                    failures.append(e)
                    time.sleep(0.1)
            sent.append(len(batch))

    thread = threading.Thread(target=sender)
    thread.start()
    while transport.acked < 2000:
        time.sleep(0.005)
    server.kill()
    time.sleep(0.5)
    server.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures, "the outage was never seen"
    assert all(str(e).startswith(f"nats nats://127.0.0.1:{server.port}") for e in failures)
    assert sum(sent) == 6000
    # the restarted server rebuilt its duplicate window from the store
    before = transport.duplicates
    transport.send(recs[:200])
    assert transport.duplicates - before == 200
    got = [data for data, _ in stream_contents(server)]
    assert len(got) == len(set(got)) == 6000
    assert set(got) == set(recs)


def test_missing_stream_and_bad_urls_are_clear_errors(server):
    t = NatsTransport(server.url("stream=ABSENT&timeout=1"), {})
    with pytest.raises(TransportError, match="no stream ABSENT .add create=1"):
        t.open()
    t.close()
    with pytest.raises(ValueError, match="no subject"):
        NatsTransport(urlsplit(f"nats://127.0.0.1:{server.port}"), {})
    with pytest.raises(ValueError, match="create=1 needs stream"):
        NatsTransport(urlsplit(f"nats://127.0.0.1:{server.port}/x?create=1"), {})


def test_unreachable_server_fails_open_within_the_timeout():
    t = NatsTransport(urlsplit(f"nats://127.0.0.1:{free_port()}/{SUBJECT}?timeout=0.5"), {})
    started = time.monotonic()
    with pytest.raises(TransportError, match="no answer in 0.5 s .last error: ConnectionRefusedError"):
        t.open()
    assert time.monotonic() - started < 2
    t.close()
