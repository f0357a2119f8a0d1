"""`sensor collect`: a reference receiver for users without a collector (and
the peer the tests use). It listens for

    fluent://HOST:PORT[?shared_key=K]   Fluent Forward v1: Message, Forward,
                                        PackedForward, CompressedPackedForward;
                                        acks every message that has a chunk id
    tcp://HOST:PORT, unix:///PATH       a plain msgpack stream of records

and writes the records it gets to a file or stdout (sinks/file.py), flushed
before any ack goes back. It prints a per-endpoint summary (method and route
or path -> records) on stderr, live when stderr is a terminal, and at exit.

SIGTERM/SIGINT stop it cleanly: it stops accepting, half-closes every
connection and reads until the sender closes (or goes quiet), so a plain
stream sender loses nothing in flight (except on a connection that reaches
the listening socket in the very instant it closes: plain streams have no
acks); a Forward sender whose last chunk went unacknowledged resends it to
the next collector.
"""
import asyncio
import gzip
import os
import signal
import socket
import sys
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import msgpack

from .sinks.file import FileWriter
from .sinks.fluent import digest

SCHEMES = ("fluent", "tcp", "unix")
QUIET_AFTER_STOP = 1.0          # s without data after the half-close that end a connection
STOP_LIMIT = 10.0               # s a stop waits for connections at most


class CollectError(ValueError):
    """A --listen value that cannot be used (one-line message)."""


def _event_time(code, data):
    """EventTime (ext type 0) as float seconds; other ext types kept as they are."""
    if code == 0 and len(data) == 8:
        sec, nsec = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big")
        return sec + nsec / 1e9
    return msgpack.ExtType(code, data)


class Listener:
    def __init__(self, value):
        url = urlsplit(value)
        if url.scheme not in SCHEMES or "://" not in value:
            raise CollectError("cannot listen on %s (fluent://host:port, tcp://host:port or unix:///path)" % value)
        if url.scheme == "unix" and not url.path:
            raise CollectError("%s: no socket path" % value)
        try:
            if url.scheme != "unix" and (not url.hostname or url.port is None):
                raise CollectError("%s: host and port needed" % value)
        except ValueError as e:
            raise CollectError("%s: %s" % (value, e))
        self.url = url
        self.shared_key = parse_qs(url.query).get("shared_key", [None])[-1]
        self.name = value
        self.records = 0
        self.connections = 0
        self.acks = 0
        self.errors = 0
        self.endpoints = Counter()

    def address(self, server):
        if self.url.scheme == "unix":
            return "unix://" + self.url.path
        host, port = server.sockets[0].getsockname()[:2]
        return "%s://%s:%d" % (self.url.scheme, host, port)


class Collector:
    def __init__(self, listeners, writer, log=sys.stderr, live_interval=None):
        self.listeners = listeners
        self.writer = writer
        self.log = log
        self.live_interval = live_interval
        self.hostname = "sensor-collect@" + socket.gethostname()
        self._conns = {}            # handler task -> (StreamWriter, time of its last data)
        self._stopping = False

    async def run(self):
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        servers = []
        try:
            for lst in self.listeners:
                servers.append(await self._listen(lst))
        except OSError as e:
            for s in servers:
                s.close()
            raise CollectError("cannot listen on %s: %s" % (lst.name, e.strerror or e))
        for lst, server in zip(self.listeners, servers):
            lst.name = lst.address(server)          # port 0: the port it got
            self._say("sensor collect: listening on %s" % lst.name)
        ticker = asyncio.ensure_future(self._live()) if self.live_interval else None
        await stop.wait()
        if ticker:
            ticker.cancel()
        await asyncio.sleep(0.1)        # take in the connections already in the accept backlog
        for s in servers:
            s.close()
        await self._stop_connections()
        for lst in self.listeners:
            if lst.url.scheme == "unix":
                try:
                    os.unlink(lst.url.path)
                except OSError:
                    pass

    async def _listen(self, lst):
        def handler(r, w):
            return self._serve(r, w, lst)
        if lst.url.scheme == "unix":
            if os.path.exists(lst.url.path):
                os.unlink(lst.url.path)         # a socket left by a collector that died
            return await asyncio.start_unix_server(handler, lst.url.path)
        return await asyncio.start_server(handler, lst.url.hostname, lst.url.port)

    async def _stop_connections(self):
        """Half-closes every connection, then waits for each sender to close
        (or go quiet) so that nothing already sent is lost."""
        self._stopping = True
        for w, _ in self._conns.values():
            if w.can_write_eof():
                try:
                    w.write_eof()
                except OSError:
                    pass
        limit = time.monotonic() + STOP_LIMIT
        while self._conns and time.monotonic() < limit:
            now = time.monotonic()
            for task, (_, last) in list(self._conns.items()):
                if now - last > QUIET_AFTER_STOP:
                    task.cancel()
            await asyncio.sleep(0.05)

    async def _serve(self, reader, writer, lst):
        task = asyncio.current_task()
        self._conns[task] = (writer, time.monotonic())
        lst.connections += 1
        unpacker = msgpack.Unpacker(raw=False, ext_hook=_event_time, strict_map_key=False)
        try:
            if lst.shared_key and not await self._handshake(reader, writer, unpacker, lst):
                return
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                self._conns[task] = (writer, time.monotonic())
                unpacker.feed(data)
                records, chunks = [], []
                for obj in unpacker:
                    self._take(obj, records, chunks, lst)
                if records:
                    self._write(records, lst)
                if chunks and not self._stopping:
                    writer.write(b"".join(msgpack.packb({"ack": c}) for c in chunks))
                    lst.acks += len(chunks)
                    await writer.drain()
        except Exception as e:      # garbage, bad gzip, a peer gone: that connection ends, the collector stays
            lst.errors += 1
            self._say("sensor collect: %s: connection dropped: %s" % (lst.name, str(e) or type(e).__name__))
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()

    async def _read_obj(self, reader, unpacker):
        while True:
            for obj in unpacker:
                return obj
            data = await reader.read(1 << 16)
            if not data:
                raise ConnectionError("closed during the handshake")
            unpacker.feed(data)

    async def _handshake(self, reader, writer, unpacker, lst):
        """Fluent Forward shared-key handshake: HELO, PING, PONG."""
        nonce = os.urandom(16)
        writer.write(msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}]))
        ping = await self._read_obj(reader, unpacker)
        ok = (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"
              and ping[3] == digest(ping[2], ping[1], nonce, lst.shared_key))
        if ok:
            pong = ["PONG", True, "", self.hostname, digest(ping[2], self.hostname, nonce, lst.shared_key)]
        else:
            pong = ["PONG", False, "shared key mismatch", self.hostname, ""]
            lst.errors += 1
        writer.write(msgpack.packb(pong))
        await writer.drain()
        return ok

    def _take(self, obj, records, chunks, lst):
        """Adds the records of one received object; notes its chunk id to ack."""
        if isinstance(obj, dict):                   # plain stream: a record
            records.append(obj)
            return
        if not (isinstance(obj, list) and len(obj) >= 2 and isinstance(obj[0], str)):
            lst.errors += 1
            return
        body, option = obj[1], None
        if isinstance(body, list):                  # Forward: [tag, [[time, record], ...], option]
            entries = body
            option = obj[2] if len(obj) > 2 else None
        elif isinstance(body, bytes):               # (Compressed)PackedForward: [tag, entries, option]
            option = obj[2] if len(obj) > 2 else None
            if isinstance(option, dict) and option.get("compressed") == "gzip":
                body = gzip.decompress(body)
            entries = msgpack.Unpacker(raw=False, ext_hook=_event_time, strict_map_key=False)
            entries.feed(body)
        elif len(obj) >= 3:                         # Message: [tag, time, record, option]
            entries = [obj[1:3]]
            option = obj[3] if len(obj) > 3 else None
        else:
            lst.errors += 1
            return
        for entry in entries:
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], dict):
                records.append(entry[1])
            else:
                lst.errors += 1
        if isinstance(option, dict) and option.get("chunk"):
            chunks.append(option["chunk"])

    def _write(self, records, lst):
        self.writer.write_encoded(b"".join(msgpack.packb(r, use_bin_type=True) for r in records), len(records))
        self.writer.flush()
        lst.records += len(records)
        for r in records:
            lst.endpoints[endpoint(r)] += 1

    async def _live(self):
        while True:
            await asyncio.sleep(self.live_interval)
            self._say(self.summary() + "\n")

    def summary(self, top=20):
        lines = []
        for lst in self.listeners:
            lines.append("%s: %d records, %d connections, %d acks, %d errors" % (
                lst.name, lst.records, lst.connections, lst.acks, lst.errors))
            for key, n in lst.endpoints.most_common(top):
                lines.append("  %8d  %s" % (n, key))
            if len(lst.endpoints) > top:
                lines.append("  (%d more endpoints)" % (len(lst.endpoints) - top))
        return "\n".join(lines)

    def _say(self, text):
        self.log.write(text + "\n")
        self.log.flush()


def endpoint(rec):
    """What the summary counts a record under: method and route (or path) for
    http records, the type otherwise."""
    if rec.get("type") == "http" or "http.request.method" in rec:
        path = rec.get("http.route") or rec.get("url.path") or "?"
        return "%s %s" % (rec.get("http.request.method") or "-", path)
    return str(rec.get("type") or "record")


def collect(listens, output="-", fmt="msgpack", live_interval=None, quiet=False):
    """Runs the collector until SIGTERM/SIGINT; raises CollectError on a bad
    --listen value or an address in use. Returns the Collector (counters)."""
    listeners = [Listener(v) for v in listens]
    writer = FileWriter(output, fmt)
    col = Collector(listeners, writer, live_interval=live_interval)
    try:
        asyncio.run(col.run())
    finally:
        writer.close()
    if not quiet:
        sys.stderr.write(col.summary() + "\n")
    return col
