"""nats://host:port/subject: NATS JetStream publish, one message per record,
each acknowledged by a PubAck.

Query options: stream=NAME (the stream expected to take the subject; the
server rejects a publish that lands elsewhere), create=1 (add the stream when
it is missing, file storage, with the duplicate window), dupe_window=SECONDS
(120), timeout=SECONDS (5: connect and PubAck wait for a batch), id=PREFIX
(the message-id prefix; the host name by default). User, password or token
go in the URL as nats-py reads them (nats://user:pass@host:port/subject).

Dedupe on redelivery: every message carries `Nats-Msg-Id: PREFIX-HASH`, HASH
the BLAKE2b-128 of the record's msgpack bytes. A batch resent after a lost
PubAck, re-read from the disk spool or sent again after a restart holds the
same bytes, so it gets the same ids and JetStream drops the copies still
inside the stream's duplicate window; no sequence number is needed, so
nothing has to survive a restart but the record itself. Two distinct
transactions never encode to the same bytes (capture time in nanoseconds and
the flow's Community ID lead each record); the same capture replayed twice
within the window does, and is deduped unless each run sets its own `id=`.
"""
import asyncio
import hashlib
import socket
import threading
from urllib.parse import parse_qsl

import nats
import nats.errors
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from .base import Transport, TransportError

# what a failed connect or publish can raise (timeouts apart)
_NATS_ERRORS = (nats.errors.Error, OSError)


class NatsTransport(Transport):
    scheme = "nats"

    def __init__(self, url, options):
        super().__init__(url, options)
        query = dict(parse_qsl(url.query))
        self.subject = url.path.strip("/")
        if not self.subject:
            raise ValueError(f"{url.geturl()}: no subject (nats://host:port/SUBJECT)")
        self.stream = query.get("stream")
        self.create = query.get("create") == "1"
        if self.create and not self.stream:
            raise ValueError(f"{url.geturl()}: create=1 needs stream=NAME")
        self.dupe_window = float(query.get("dupe_window", 120))
        self.timeout = float(query.get("timeout", 5))
        self.id_prefix = query.get("id") or socket.gethostname()
        self.server = f"nats://{url.netloc}"
        self.acked = 0          # records the stream acknowledged
        self.duplicates = 0     # of those, copies the stream had already (dropped by msg id)
        self.last_error = None  # the client's latest asynchronous error (disconnects)
        self._nc = self._js = None
        self._loop = asyncio.new_event_loop()
        # nats-py is asyncio: its loop runs in this thread so pings and
        # reconnects go on between sends; send() hands it coroutines.
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-sink", daemon=True)
        self._thread.start()

    def msg_id(self, record):
        return f"{self.id_prefix}-{hashlib.blake2b(record, digest_size=16).hexdigest()}"

    def _run(self, coro, what):
        try:
            return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, self.timeout), self._loop).result()
        except asyncio.TimeoutError:
            # the client retries on its own until then: its last error says why
            why = f" (last error: {self.last_error!r})" if self.last_error else ""
            raise TransportError(f"nats {self.server}: {what}: no answer in {self.timeout:g} s{why}") from None
        except _NATS_ERRORS as e:
            raise TransportError(f"nats {self.server}: {what}: {e!r}") from None

    def open(self):
        self._run(self._connect(), "connect")

    async def _on_error(self, e):
        self.last_error = e

    async def _connect(self):
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
        # reconnects forever: a server away is the queue's to wait out (with
        # its spool), each send() failing on its PubAck timeout meanwhile
        nc = await nats.connect(
            self.server, name="sensor", connect_timeout=self.timeout, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=self._on_error)
        js = nc.jetstream(timeout=self.timeout)
        try:
            await self._check_stream(js)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        self.last_error = None

    async def _check_stream(self, js):
        if not self.stream:
            try:
                await js.find_stream_name_by_subject(self.subject)
            except NotFoundError:
                raise TransportError(f"nats {self.server}: no stream takes subject {self.subject}") from None
            return
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            if not self.create:
                raise TransportError(f"nats {self.server}: no stream {self.stream} (add create=1 to the URL)") from None
            await js.add_stream(StreamConfig(
                name=self.stream, subjects=[self.subject], storage=StorageType.FILE,
                duplicate_window=self.dupe_window))

    def send(self, batch):
        if self._nc is None or self._nc.is_closed:
            self.open()
        acks = self._run(self._publish(batch), f"publish of {len(batch)} records")
        self.acked += len(acks)
        self.duplicates += sum(1 for a in acks if a.duplicate)

    async def _publish(self, batch):
        # all publishes go out before the first PubAck is awaited (pipelined)
        futures = []
        try:
            for record in batch:
                futures.append(await self._js.publish_async(
                    self.subject, record, stream=self.stream, headers={"Nats-Msg-Id": self.msg_id(record)}))
            return await asyncio.gather(*futures)
        finally:
            for f in futures:
                f.cancel()  # the ones still waiting: frees their slots in the client

    def close(self):
        if self._loop.is_closed():
            return
        if self._nc is not None:
            try:
                self._run(self._nc.close(), "close")
            except TransportError:
                pass
            self._nc = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
