"""kafka://broker[,broker]/topic: an idempotent confluent-kafka (librdkafka)
producer, one message per record, keyed by the record's Community ID so the
records of one flow land in one partition, in order.

Every query option is a librdkafka setting passed as is (`?linger.ms=20`,
`?compression.type=zstd`, `?test.mock.num.brokers=3` for librdkafka's
built-in mock cluster). Idempotence and acks=all are fixed: they are what
keeps a flow's records in order and each once when librdkafka retries on its
own. message.timeout.ms (default here 30000) bounds one send(): past it an
undelivered message is reported failed, the batch raises TransportError and
the delivery queue takes over (backoff, spool). It resends the batch whole
through a new producer (a new idempotence session), so delivery across that
is at least once: a message the broker stored but never acknowledged before
the failure is stored twice.
"""
import logging
from urllib.parse import parse_qsl

import msgpack
from confluent_kafka import KafkaException, Producer

from . import OutputError
from .base import Transport, TransportError

COMMUNITY_ID = "network.community_id"
MESSAGE_TIMEOUT_MS = 30000
FLUSH_MARGIN_S = 5      # flush outlives message.timeout.ms: every report is in when it returns
METADATA_TIMEOUT_S = 3  # open(): how long the cluster has to answer (at most message.timeout.ms)
BUFFER_FULL_WAIT_S = 0.1

# librdkafka logs every failed connection attempt; they go to this logger
# (silent unless the application configures logging), the error that
# matters reaches the TransportError through error_cb
LOG = logging.getLogger(__name__)
LOG.addHandler(logging.NullHandler())


def community_id(record):
    """The record's Community ID, or None; reads keys up to it (the record
    stage writes it fifth), not the whole map."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(record)
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() == COMMUNITY_ID:
            return unpacker.unpack()
        unpacker.skip()
    return None


class KafkaTransport(Transport):
    scheme = "kafka"
    acks = True

    def __init__(self, url, options):
        super().__init__(url, options)
        self.topic = url.path.strip("/")
        if not self.topic or not url.netloc:
            raise OutputError(f"{url.geturl()}: want kafka://broker[,broker]/topic")
        self.name = f"kafka {url.netloc}/{self.topic}"
        self.config = {"bootstrap.servers": url.netloc, "message.timeout.ms": MESSAGE_TIMEOUT_MS}
        self.config.update(parse_qsl(url.query))
        self.config.update({"enable.idempotence": True, "acks": "all", "error_cb": self._on_error,
                            "logger": LOG})
        try:
            message_timeout = float(self.config["message.timeout.ms"]) / 1000
            # a bad setting is an -o error now, not a failing sender later
            self.producer = Producer(self.config)
        except (ValueError, KafkaException) as e:
            raise OutputError(f"{url.geturl()}: {e.args[0].str() if isinstance(e, KafkaException) else e}") from None
        self.flush_timeout = message_timeout + FLUSH_MARGIN_S
        self.connect_timeout = min(message_timeout, METADATA_TIMEOUT_S)
        self.delivered = 0      # delivery reports: acknowledged by all in-sync replicas
        self.failed = 0         # delivery reports: given up (timeout, broker refusal)
        self.last_error = None  # latest client-level error (broker down, fatal idempotence state)
        self._batch_error = None

    def _on_error(self, err):
        self.last_error = err
        if err.fatal():
            # the idempotent producer cannot go on (e.g. sequence gap): the
            # batch fails, and the next open() starts a new producer
            self._batch_error = err

    def _on_delivery(self, err, msg):
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self._batch_error = self._batch_error or err

    def open(self):
        if self.producer is None:
            self.producer = Producer(self.config)
        try:
            # one metadata round trip: the cluster answers and knows the topic
            self.producer.list_topics(self.topic, timeout=self.connect_timeout)
        except KafkaException as e:
            self.close()
            why = f" ({self.last_error.str()})" if self.last_error else ""
            raise TransportError(f"{self.name}: {e.args[0].str()}{why}") from None

    def send(self, batch):
        producer = self.producer    # close() may drop it from another thread meanwhile
        if producer is None:
            raise TransportError(f"{self.name}: not connected")
        self._batch_error = None
        try:
            for record in batch:
                while True:
                    try:
                        producer.produce(self.topic, record, community_id(record), on_delivery=self._on_delivery)
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        producer.poll(BUFFER_FULL_WAIT_S)
        except KafkaException as e:  # a fatal producer state, an oversized record
            self._batch_error = e.args[0]
        left = producer.flush(self.flush_timeout)
        err = self._batch_error
        if left or err is not None:
            if err is not None and err.fatal():
                self.close()
            why = err.str() if err is not None else f"{left} records undelivered after {self.flush_timeout:g} s"
            raise TransportError(f"{self.name}: {why}")

    def close(self):
        """Drops the producer: what it still holds is purged (the delivery
        queue resends or spools the batch); the next open() makes a new one."""
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.purge()
            producer.flush(0)
