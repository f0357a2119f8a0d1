"""The delivery queue in front of every network transport: a bounded queue
of encoded records, a sender thread that batches them (by count, bytes and
time), retries a failed batch with exponential backoff and jitter, spools
batches to disk while the collector is away, and sends the spool first (in
order) once it is back.

Full queue: `block` makes the producer wait (replay: nothing lost), `drop`
drops the incoming records and counts them (live capture: never stall the
capture loop). close() drains within a deadline and leaves the rest in the
spool, which the next start sends first.

Counters (records): enqueued, sent (delivered: the transport returned),
acked (delivered and acknowledged by the protocol), retried (sent again
after a failure), spooled (written to the spool), dropped (queue full under
`drop`, spool full or unwritable).
"""
import random
import threading
import time
from collections import deque

import msgpack

from .base import TransportError

COUNTERS = ("enqueued", "sent", "acked", "retried", "spooled", "dropped")


class DeliveryQueue:
    takes_records = True        # Outputs hands it records already split, to put()

    def __init__(self, name, transport, spool, policy="block", max_records=100_000, max_bytes=64 << 20,
                 batch_records=2000, batch_bytes=1 << 20, linger=0.2, retries=2, backoff=0.1, max_backoff=5.0):
        self.name = name
        self.transport = transport
        self.spool = spool
        self.policy = policy
        self.max_records, self.max_bytes = max_records, max_bytes
        self.batch_records, self.batch_bytes, self.linger = batch_records, batch_bytes, linger
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.count = 0              # records handed to this output
        self.last_error = None      # the transport's, for the summary
        self._q = deque()
        self._qbytes = 0
        self._cond = threading.Condition()
        self._closing = False       # no more records: send what is left, then stop
        self._stop = threading.Event()      # deadline passed: spool what is left, now
        self._thread = threading.Thread(target=self._run, name="sink " + name, daemon=True)
        self._thread.start()

    # -- producer side ---------------------------------------------------
    def put(self, records):
        """Queues encoded records (one msgpack object each)."""
        self.count += len(records)
        size = sum(map(len, records))
        with self._cond:
            if self._stop.is_set():
                self.counters["dropped"] += len(records)
                return
            if self.policy == "block":
                # a batch larger than the whole queue still goes in, once the queue is empty
                while self._q and (len(self._q) + len(records) > self.max_records
                                   or self._qbytes + size > self.max_bytes):
                    self._cond.wait()
                    if self._stop.is_set():
                        self.counters["dropped"] += len(records)
                        return
            elif len(self._q) + len(records) > self.max_records or self._qbytes + size > self.max_bytes:
                keep, size, free = 0, 0, self.max_bytes - self._qbytes
                for rec in records[:max(0, self.max_records - len(self._q))]:
                    if size + len(rec) > free:
                        break
                    size += len(rec)
                    keep += 1
                self.counters["dropped"] += len(records) - keep
                records = records[:keep]
            self._q.extend(records)
            self._qbytes += size
            self.counters["enqueued"] += len(records)
            self._cond.notify_all()

    def reopen(self):
        """SIGHUP: nothing to reopen."""

    def flush(self):
        """Nothing to flush: queued records leave within the linger time."""

    def begin_close(self):
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def close(self, deadline):
        """Drains until `deadline` (time.monotonic()); what is left goes to the spool."""
        self.begin_close()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            self.transport.close()          # breaks a send blocked on the network
            self._thread.join(5.0)
        if self._thread.is_alive():         # stuck in a library call: spool the queue ourselves
            self._spool(self._take_all())
        self.transport.close()
        self.spool.close()

    # -- sender thread ---------------------------------------------------
    def _take(self, wait):
        """The next batch: full by count or bytes, or what is there once the
        oldest record waited `linger` (or `wait` seconds passed, when not None).
        [] on timeout, None once closing and empty."""
        with self._cond:
            end = time.monotonic() + (self.linger if wait is None else wait)
            while not self._stop.is_set():
                if self._q and (self._closing or len(self._q) >= self.batch_records
                                or self._qbytes >= self.batch_bytes):
                    break
                if not self._q and self._closing:
                    return None
                left = end - time.monotonic()
                if left <= 0:
                    if self._q or wait is not None:
                        break
                    end = time.monotonic() + self.linger      # empty: wait for the first record
                    left = self.linger
                self._cond.wait(left)
            return self._pop_batch()

    def _pop_batch(self):
        batch, size = [], 0
        q = self._q
        while q and len(batch) < self.batch_records and (size < self.batch_bytes or not batch):
            rec = q.popleft()
            batch.append(rec)
            size += len(rec)
        self._qbytes -= size
        self._cond.notify_all()
        return batch

    def _take_all(self):
        with self._cond:
            batch = list(self._q)
            self._q.clear()
            self._qbytes = 0
            self._cond.notify_all()
            return batch

    def _run(self):
        up = self._open()
        delay = self.backoff
        next_try = time.monotonic() + self._jitter(delay)
        inflight = None
        try:
            while not self._stop.is_set():
                if up and self.spool.pending:
                    up = self._drain_spool()
                    continue
                batch = self._take(None if up else max(0.0, min(self.linger, next_try - time.monotonic())))
                if batch is None and (up or not self.spool.pending):
                    break                           # closing, and everything went out
                if batch:
                    inflight = batch
                    if up:
                        up = self._deliver(batch)
                    else:
                        self._spool(batch)
                    inflight = None
                if not up and time.monotonic() >= next_try and not self._stop.is_set():
                    up = self._open()
                    delay = self.backoff if up else min(delay * 2, self.max_backoff)
                    next_try = time.monotonic() + self._jitter(delay)
                elif not up and batch is None:      # closing, collector away: wait for the next try
                    self._stop.wait(max(0.0, next_try - time.monotonic()))
        except Exception as e:      # a bug must not leave the producer blocked on a dead thread
            self.last_error = "sender stopped: %r" % e
            self._spool(inflight)
        self._stop.set()            # from now on put() drops (counted) instead of waiting
        self._spool(self._take_all())
        self.transport.close()

    def _jitter(self, delay):
        return delay * random.uniform(0.5, 1.5)

    def _open(self):
        try:
            self.transport.open()
            return True
        except TransportError as e:
            self.last_error = str(e)
            self.transport.close()
            return False

    def _send(self, batch):
        """One attempt; True once delivered."""
        try:
            self.transport.send(batch)
        except TransportError as e:
            self.last_error = str(e)
            self.transport.close()
            return False
        self.counters["sent"] += len(batch)
        if self.transport.acks:
            self.counters["acked"] += len(batch)
        return True

    def _deliver(self, batch):
        """Sends a batch, retrying with backoff; spools it when the collector
        stays away. Returns whether the collector is up."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stop.wait(self._jitter(delay)) or not self._open():
                    break
                self.counters["retried"] += len(batch)
                delay = min(delay * 2, self.max_backoff)
            if self._send(batch):
                return True
        self._spool(batch)
        return False

    def _drain_spool(self):
        """Sends the spooled batches, oldest first, before any new record.
        New records that would fill the queue meanwhile join the spool's end."""
        while self.spool.pending and not self._stop.is_set():
            batch = self.spool.peek()
            if batch is None:
                break
            if not self._send(batch):
                return False
            self.spool.pop()
            if len(self._q) * 2 >= self.max_records or self._qbytes * 2 >= self.max_bytes:
                self._spool(self._take_all())
        return True

    def _spool(self, batch):
        if not batch:
            return
        if self.spool.append(batch):
            self.counters["spooled"] += len(batch)
        else:
            self.counters["dropped"] += len(batch)

    def summary(self):
        c = self.counters
        line = "  output %s: %s" % (self.name, ", ".join("%d %s" % (c[k], k) for k in COUNTERS))
        if self.spool.records:
            line += "; %d records left in the spool %s" % (self.spool.records, self.spool.dir)
        if self.spool.corrupt:
            line += "; %d damaged spool entries skipped" % self.spool.corrupt
        if self.spool.error:
            line += "; %s" % self.spool.error
        if self.last_error and (c["dropped"] or self.spool.records or c["retried"]):
            line += "; last error: %s" % self.last_error
        return line


def split_records(data, n):
    """The n msgpack objects of `data`, each as its own bytes."""
    u = msgpack.Unpacker(max_buffer_size=max(len(data), 1 << 20))
    u.feed(data)
    out, pos = [], 0
    for _ in range(n):
        u.skip()
        end = u.tell()
        out.append(data[pos:end])
        pos = end
    return out
