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
nothing has to survive a restart but the record itself. Distinct
transactions encode to distinct bytes (capture time in nanoseconds and the
flow's Community ID lead each record) but for identical exchanges pipelined
in one packet: equal records in one batch are told apart by their rank in it
(`-2`, `-3`...), which a retry or the spool keeps (batches stay whole). The
same capture replayed twice within the window is deduped unless each run
sets its own `id=`.
"""
import asyncio
import concurrent.futures
import hashlib
import socket
import threading
from urllib.parse import parse_qsl

import nats
import nats.errors
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from . import OutputError
from .base import Transport, TransportError

CLOSE_TIMEOUT_S = 1.0

# what a failed connect or publish can raise (timeouts apart)
_NATS_ERRORS = (nats.errors.Error, OSError)


class NatsTransport(Transport):
    scheme = "nats"
    acks = True

    def __init__(self, url, options):
        super().__init__(url, options)
        query = dict(parse_qsl(url.query))
        self.subject = url.path.strip("/")
        if not self.subject:
            raise OutputError(f"{url.geturl()}: no subject (nats://host:port/SUBJECT)")
        self.stream = query.get("stream")
        self.create = query.get("create") == "1"
        if self.create and not self.stream:
            raise OutputError(f"{url.geturl()}: create=1 needs stream=NAME")
        try:
            self.dupe_window = float(query.get("dupe_window", 120))
            self.timeout = float(query.get("timeout", 5))
        except ValueError as e:
            raise OutputError(f"{url.geturl()}: {e}") from None
        self.id_prefix = query.get("id") or socket.gethostname()
        self.server = f"nats://{url.netloc}"
        self.acked = 0          # records the stream acknowledged
        self.duplicates = 0     # of those, copies the stream had already (dropped by msg id)
        self.last_error = None  # the client's latest asynchronous error (disconnects)
        self._nc = self._js = None
        self._loop = self._thread = None
        self._inflight = None   # the concurrent future send() or open() waits on
        self._closing = threading.Lock()

    def msg_ids(self, batch):
        """The Nats-Msg-Id of each record of `batch` (see the module docstring)."""
        ids, seen = [], {}
        for record in batch:
            digest = hashlib.blake2b(record, digest_size=16).hexdigest()
            rank = seen[digest] = seen.get(digest, 0) + 1
            ids.append(f"{self.id_prefix}-{digest}" if rank == 1 else f"{self.id_prefix}-{digest}-{rank}")
        return ids

    def _run(self, coro, what):
        """Runs `coro` on the client's loop within the timeout; its failures,
        and a close() from another thread meanwhile, as TransportError."""
        loop = self._loop
        try:
            if loop is None or loop.is_closed():
                coro.close()
                raise TransportError(f"nats {self.server}: {what}: closed")
            self._inflight = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, self.timeout), loop)
            # the backstop covers a loop stopped by close() before it ran the coroutine
            return self._inflight.result(self.timeout + 1)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            # a lost connection shows here too (PubAcks never come)
            raise TransportError(f"nats {self.server}: {what}: no answer in {self.timeout:g} s{self._why()}") from None
        except _NATS_ERRORS as e:
            raise TransportError(f"nats {self.server}: {what}: {str(e) or type(e).__name__}{self._why()}") from None
        except concurrent.futures.CancelledError:       # connection lost, or close() from another thread
            raise TransportError(f"nats {self.server}: {what}: connection closed{self._why()}") from None
        finally:
            self._inflight = None

    def _why(self):
        """The client's last asynchronous error: what a timeout or NoServersError hides."""
        return f" (last error: {self.last_error!r})" if self.last_error else ""

    def open(self):
        self.close()
        # nats-py is asyncio: its loop runs in a thread of its own so pings go
        # on between sends; send() hands it coroutines
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-sink", daemon=True)
        self._thread.start()
        self._run(self._connect(), "connect")

    async def _on_error(self, e):
        self.last_error = e

    async def _on_closed(self):
        # the server went away: the PubAcks awaited will never come, fail now
        nc, inflight = self._nc, self._inflight
        if nc is not None and nc.is_closed and inflight is not None:
            inflight.cancel()

    async def _connect(self):
        # no reconnects inside the client: a lost connection fails the send,
        # and the delivery queue opens again with its backoff (and spools)
        # (max_reconnect_attempts=1, no wait: the first connect fails fast too)
        nc = await nats.connect(self.server, name="sensor", connect_timeout=self.timeout, allow_reconnect=False,
                                max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=self._on_error,
                                closed_cb=self._on_closed)
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
        js = self._js
        if js is None:
            raise TransportError(f"nats {self.server}: not connected")
        acks = self._run(self._publish(js, batch), f"publish of {len(batch)} records")
        self.acked += len(acks)
        self.duplicates += sum(1 for a in acks if a.duplicate)

    async def _publish(self, js, batch):
        # all publishes go out before the first PubAck is awaited (pipelined)
        futures = []
        try:
            for record, msg_id in zip(batch, self.msg_ids(batch)):
                futures.append(await js.publish_async(
                    self.subject, record, stream=self.stream, headers={"Nats-Msg-Id": msg_id}))
            return await asyncio.gather(*futures)
        finally:
            for f in futures:
                f.cancel()  # the ones still waiting: frees their slots in the client

    def close(self):
        with self._closing:     # the queue's sender and its shutdown may both close
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        inflight = self._inflight
        if inflight is not None:
            inflight.cancel()       # a send() blocked in another thread returns now
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            _run_briefly(nc.close(), loop)      # bounded: a hung server never reads what it flushes
        _run_briefly(_cancel_tasks(), loop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _run_briefly(coro, loop):
    """Closing is best effort: at most CLOSE_TIMEOUT_S, errors ignored."""
    try:
        asyncio.run_coroutine_threadsafe(coro, loop).result(CLOSE_TIMEOUT_S)
    except Exception:
        pass


async def _cancel_tasks():
    """Ends the client's tasks (reader, flusher, pinger) before its loop stops."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
