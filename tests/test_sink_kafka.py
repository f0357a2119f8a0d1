"""kafka:// sink against librdkafka's mock cluster (brokers speaking the Kafka
protocol on loopback ports): every record arrives, keyed by Community ID and
in order per key, through broker outages and a shutdown with the brokers
down too; exactly once except where the mock itself stores a retried
request twice (see test_brokers_down_mid_stream...)."""
import ctypes
import threading
import time
from collections import defaultdict
from urllib.parse import urlsplit

import msgpack
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from sensor.sinks import OutputError, open_outputs
from sensor.sinks.base import TransportError
from sensor.sinks.kafka import KafkaTransport, community_id

TOPIC, PARTITIONS, BROKERS = "records", 4, 3


def librdkafka():
    """The librdkafka that confluent-kafka loaded (its mock-cluster API is
    public C but not bound in Python)."""
    import confluent_kafka.cimpl  # noqa: F401  (maps the library)
    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps if "librdkafka" in line)
    lib = ctypes.CDLL(path)
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    for updown in (lib.rd_kafka_mock_broker_set_down, lib.rd_kafka_mock_broker_set_up):
        updown.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


class MockCluster:
    """A librdkafka mock cluster of its own (not inside the producer under
    test), so brokers can be taken down and up."""

    def __init__(self):
        self.lib = lib = librdkafka()
        errstr = ctypes.create_string_buffer(512)
        self.rk = lib.rd_kafka_new(0, lib.rd_kafka_conf_new(), errstr, len(errstr))  # 0: producer
        assert self.rk, errstr.value
        self.mc = lib.rd_kafka_mock_cluster_new(self.rk, BROKERS)
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self.mc).decode()
        self.first = self.bootstrap.split(",")[0]      # one broker: the client learns the rest
        assert lib.rd_kafka_mock_topic_create(self.mc, TOPIC.encode(), PARTITIONS, 1) == 0

    def set_all(self, up):
        switch = self.lib.rd_kafka_mock_broker_set_up if up else self.lib.rd_kafka_mock_broker_set_down
        for broker in range(1, BROKERS + 1):
            assert switch(self.mc, broker) == 0

    def destroy(self):
        self.lib.rd_kafka_mock_cluster_destroy(self.mc)
        self.lib.rd_kafka_destroy(self.rk)


@pytest.fixture
def cluster():
    c = MockCluster()
    yield c
    c.destroy()


def transport_for(bootstrap, query=""):
    t = KafkaTransport(urlsplit(f"kafka://{bootstrap}/{TOPIC}?reconnect.backoff.max.ms=200{query}"), {})
    t.open()
    return t


def records(n):
    return [msgpack.packb({"type": "http", "v": 1, "start_ns": 1_700_000_000_000_000_000 + i,
                           "end_ns": 1_700_000_000_000_000_000 + i,
                           "network.community_id": f"1:flow{i % 17}=", "url.path": f"/items/{i}"})
            for i in range(n)]


def consume(bootstrap):
    """(partition, key, value) of every message in the topic: each partition
    read from its start up to its high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test", "enable.auto.commit": False})
    partitions = [TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
    total = sum(high - low for low, high in (c.get_watermark_offsets(tp, timeout=5) for tp in partitions))
    c.assign(partitions)
    got, deadline = [], time.monotonic() + 20
    while len(got) < total and time.monotonic() < deadline:
        got += [(m.partition(), m.key().decode(), m.value()) for m in c.consume(1000, timeout=0.5) if not m.error()]
    c.close()
    return got


def assert_keyed_in_order(got, recs, once=True):
    """Every record arrived (exactly once unless once=False), under its
    Community ID, all of a flow in one partition, in the order sent."""
    if once:
        assert len(got) == len(recs)
    firsts = {}     # value -> (partition, key) of its first copy, in arrival order
    for partition, key, value in got:
        firsts.setdefault(value, (partition, key))
    assert sorted(firsts) == sorted(recs)
    partition_of, per_key = {}, defaultdict(list)
    for value, (partition, key) in firsts.items():
        rec = msgpack.unpackb(value)
        assert key == rec["network.community_id"]
        assert partition_of.setdefault(key, partition) == partition   # one flow, one partition
        per_key[key].append(rec["start_ns"])
    assert all(seq == sorted(seq) for seq in per_key.values())       # in the order sent


def test_community_id_is_read_without_decoding_the_rest():
    rec = msgpack.packb({"type": "http", "v": 1, "start_ns": 5, "network.community_id": "1:abc=", "x": [1]})
    assert community_id(rec) == "1:abc="
    assert community_id(msgpack.packb({"type": "stats", "packets": 3})) is None


def test_every_record_arrives_keyed_and_ordered_per_flow(cluster):
    t = transport_for(cluster.bootstrap, "&linger.ms=5")
    recs = records(5000)
    for i in range(0, len(recs), 1000):
        t.send(recs[i:i + 1000])
    t.close()
    assert (t.delivered, t.failed) == (5000, 0)
    assert_keyed_in_order(consume(cluster.bootstrap), recs)


def test_mock_cluster_from_the_url_query():
    # test.mock.num.brokers starts a mock cluster inside the producer itself
    t = transport_for("ignored:9092", "&test.mock.num.brokers=3")
    recs = records(300)
    t.send(recs)
    brokers = t.producer.list_topics(timeout=5).brokers.values()
    got = consume(",".join(f"{b.host}:{b.port}" for b in brokers))
    t.close()
    assert sorted(v for _, _, v in got) == sorted(recs)


def test_brokers_down_mid_stream_lose_nothing_and_keep_flow_order(cluster):
    t = transport_for(cluster.bootstrap, "&message.timeout.ms=20000")
    recs = records(20000)
    failures = []

    def sender():
        for i in range(0, len(recs), 1000):
            try:
                t.send(recs[i:i + 1000])
            except TransportError as e:
                failures.append(e)

    thread = threading.Thread(target=sender)
    thread.start()
    while t.delivered < 5000:
        time.sleep(0.002)
    cluster.set_all(up=False)
    time.sleep(1)
    stalled = t.delivered
    cluster.set_all(up=True)
    thread.join(timeout=30)
    assert not thread.is_alive() and not failures
    assert stalled < 20000, "the outage came too late to be seen"
    assert (t.delivered, t.failed) == (20000, 0)   # librdkafka's own retries got them all through
    t.close()
    # at least once: the mock broker checks producer sequence numbers only
    # for transactional producers, so a produce request it appended before
    # the disconnect and librdkafka then retried is stored twice (a real
    # broker drops it: enable.idempotence); each copy in order
    assert_keyed_in_order(consume(cluster.bootstrap), recs, once=False)


def test_outage_longer_than_message_timeout_spools_then_drains(cluster, tmp_path):
    """Through the delivery queue (-o kafka://...): sends fail after
    message.timeout.ms, the queue spools, and sends the spool once the brokers are back."""
    url = f"kafka://{cluster.first}/{TOPIC}?message.timeout.ms=1000&reconnect.backoff.max.ms=200"
    out = open_outputs([url], spool_dir=str(tmp_path / "spool"), drain_timeout=30)
    queue = out.sinks[0]
    recs = records(10000)
    out.write_encoded(b"".join(recs[:2000]), 2000)
    while queue.transport.delivered < 2000:
        time.sleep(0.002)
    cluster.set_all(up=False)
    out.write_encoded(b"".join(recs[2000:]), 8000)
    while not queue.counters["spooled"]:
        time.sleep(0.01)
    cluster.set_all(up=True)
    out.close()
    c = queue.counters
    assert c["enqueued"] == c["sent"] == c["acked"] == 10000 and c["dropped"] == 0
    assert c["spooled"] > 0 and queue.spool.records == 0        # spooled, then drained
    assert queue.last_error.startswith(f"kafka {cluster.first}/{TOPIC}: ")     # timed out, then no metadata
    # a batch that timed out was not on the brokers (they were down): no copies
    assert_keyed_in_order(consume(cluster.bootstrap), recs)


def test_shutdown_with_brokers_down_keeps_the_deadline_and_spools(cluster, tmp_path):
    """close() while a send waits on brokers that are gone: the send is purged
    at the drain deadline, the rest stays in the spool, the next start sends it."""
    url = f"kafka://{cluster.first}/{TOPIC}?message.timeout.ms=10000"
    spool = str(tmp_path / "spool")
    recs = records(5000)
    out = open_outputs([url], spool_dir=spool, drain_timeout=0.5)
    out.write_encoded(b"".join(recs[:1000]), 1000)
    while out.sinks[0].transport.delivered < 1000:
        time.sleep(0.002)
    cluster.set_all(up=False)
    out.write_encoded(b"".join(recs[1000:]), 4000)
    started = time.monotonic()
    out.close()
    # the deadline (not the 10 s message timeout), then at most one metadata
    # request (3 s) by the closing queue
    assert time.monotonic() - started < 0.5 + 3 + 1
    assert out.sinks[0].spool.records == 4000
    cluster.set_all(up=True)
    out = open_outputs([url], spool_dir=spool)
    out.close()
    assert out.sinks[0].counters["sent"] == 4000 and out.sinks[0].spool.records == 0
    assert_keyed_in_order(consume(cluster.bootstrap), recs)


def test_bad_configuration_is_a_clear_error(cluster):
    with pytest.raises(OutputError, match="want kafka://broker"):
        open_outputs(["kafka://broker:9092"])
    with pytest.raises(OutputError, match="No such configuration property"):
        open_outputs([f"kafka://{cluster.first}/{TOPIC}?no.such.setting=1"])
    with pytest.raises(OutputError, match="could not convert"):
        open_outputs([f"kafka://{cluster.first}/{TOPIC}?message.timeout.ms=soon"])
    cluster.set_all(up=False)
    t = KafkaTransport(urlsplit(f"kafka://{cluster.bootstrap}/{TOPIC}?message.timeout.ms=1000"), {})
    started = time.monotonic()
    with pytest.raises(TransportError, match="Failed to get metadata.*Connection refused"):
        t.open()
    assert time.monotonic() - started < 2


def test_broker_list_in_the_url(tmp_path):
    """-o kafka://b1,b2/topic: a bootstrap list is an output, not a bad port."""
    from sensor.sinks import open_outputs
    out = open_outputs(["kafka://127.0.0.1:1,127.0.0.1:2/t?test.mock.num.brokers=1"], spool_dir=str(tmp_path))
    out.write_encoded(msgpack.packb({"type": "http", "network.community_id": "1:x"}), 1)
    out.close()
    assert "1 acked" in " ".join(out.summaries())
