"""fluent://host:port: Fluent Forward protocol v1, as Fluentd and Fluent Bit
speak it (github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1).

Records go as PackedForward messages, [tag, entries, {"size", "chunk"}],
where entries are [EventTime, record] pairs end to end; EventTime (ext type
0: seconds, nanoseconds, big-endian) is the record's start_ns. With
compress=gzip the entries are gzipped (CompressedPackedForward). Every
message carries a `chunk` id and the sender waits for {"ack": id}: no ack
within the timeout or a dropped connection makes the queue resend the batch
(at-least-once; a resent batch may arrive twice). A batch is cut into
messages under 6,144,000 bytes, Fluent Bit's default in_forward buffer.

URL query options: tag (default sensor.http), compress=gzip, ack=0 (no
chunk ids, fire and forget), ack_timeout (seconds, default 30),
shared_key (HELO/PING/PONG handshake) with hostname (ours, default the
host name), username/password (when the server asks for them), tls=1,
tls_verify=0, ca=FILE (CA bundle to verify the server with).
"""
import base64
import gzip
import hashlib
import os
import socket
import ssl
import struct
import time
from urllib.parse import parse_qs

import msgpack

from . import OutputError
from .base import Transport, TransportError
from .stream import connect, shut

MAX_MESSAGE = 6_144_000
_ENVELOPE = 1024                # tag, options and headers of one message, generously
_START_NS = b"\xa8start_ns\xcf"  # how the record stage writes start_ns: str8 key, uint64 value


def event_time(rec):
    """The ext-type-0 EventTime of a record: its start_ns, or now."""
    i = rec.find(_START_NS, 0, 64)
    ns = int.from_bytes(rec[i + 10:i + 18], "big") if i >= 0 else time.time_ns()
    return b"\xd7\x00" + struct.pack(">II", ns // 1_000_000_000, ns % 1_000_000_000)


def digest(*parts):
    """sha512 hex digest of the parts (str or bytes) end to end, as the handshake uses."""
    h = hashlib.sha512()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


def _bin_header(n):
    return (b"\xc4" + struct.pack(">B", n)) if n < 256 else \
        (b"\xc5" + struct.pack(">H", n)) if n < 65536 else (b"\xc6" + struct.pack(">I", n))


class FluentTransport(Transport):
    scheme = "fluent"

    def __init__(self, url, options):
        super().__init__(url, options)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.tag = q.get("tag", "sensor.http")
        self.compress = q.get("compress") == "gzip"
        self.acks = q.get("ack", "1") != "0"
        self.shared_key = q.get("shared_key")
        self.hostname = q.get("hostname") or socket.gethostname()
        self.username, self.password = q.get("username", ""), q.get("password", "")
        self.tls = None
        try:
            self.ack_timeout = float(q.get("ack_timeout", 30))
            if q.get("tls") == "1":
                self.tls = ssl.create_default_context(cafile=q.get("ca"))
                if q.get("tls_verify") == "0":
                    self.tls.check_hostname = False
                    self.tls.verify_mode = ssl.CERT_NONE
        except (ValueError, OSError, ssl.SSLError) as e:
            raise OutputError("%s: %s" % (url.geturl(), getattr(e, "strerror", None) or e))
        self._sock = None
        self._unpacker = None

    def open(self):
        self.close()
        self._sock = connect(self.url, self.tls)
        self._unpacker = msgpack.Unpacker(raw=False)
        if self.shared_key:
            try:
                self._handshake()
            except TransportError:
                self.close()
                raise

    def _read(self, what):
        """The collector's next msgpack object."""
        while True:
            for obj in self._unpacker:
                return obj
            try:
                data = self._sock.recv(1 << 16)
            except socket.timeout:
                raise TransportError("no %s from the collector within %.0f s" % (what, self._sock.gettimeout()))
            except (OSError, AttributeError) as e:      # AttributeError: closed by close() meanwhile
                raise TransportError("waiting for %s: %s" % (what, getattr(e, "strerror", None) or e))
            if not data:
                raise TransportError("the collector closed the connection before the %s" % what)
            self._unpacker.feed(data)

    def _handshake(self):
        helo = self._read("HELO")
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO" and isinstance(helo[1], dict)):
            raise TransportError("fluent handshake: expected HELO, got %r" % (helo,))
        nonce, auth = helo[1].get("nonce", b""), helo[1].get("auth", b"")
        salt = os.urandom(16)
        password = digest(auth, self.username, self.password) if auth else ""
        self._sock.sendall(msgpack.packb(["PING", self.hostname, salt,
                                          digest(salt, self.hostname, nonce, self.shared_key),
                                          self.username, password]))
        pong = self._read("PONG")
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise TransportError("fluent handshake: expected PONG, got %r" % (pong,))
        if not pong[1]:
            raise TransportError("fluent handshake refused: %s" % pong[2])
        if pong[4] != digest(salt, pong[3], nonce, self.shared_key):
            raise TransportError("fluent handshake: the server does not know the shared key")

    def messages(self, batch):
        """PackedForward messages for a batch, each under MAX_MESSAGE bytes,
        as (chunk id or None, encoded message)."""
        out, entries, size = [], [], _ENVELOPE
        for rec in batch:
            entry = b"\x92" + event_time(rec) + rec
            if entries and size + len(entry) > MAX_MESSAGE:
                out.append(self._message(entries))
                entries, size = [], _ENVELOPE
            entries.append(entry)
            size += len(entry)
        if entries:
            out.append(self._message(entries))
        return out

    def _message(self, entries):
        body = b"".join(entries)
        option = {"size": len(entries)}
        if self.compress:
            body = gzip.compress(body, compresslevel=1)
            option["compressed"] = "gzip"
        chunk = base64.b64encode(os.urandom(16)).decode() if self.acks else None
        if chunk:
            option["chunk"] = chunk
        return chunk, b"\x93" + msgpack.packb(self.tag) + _bin_header(len(body)) + body + msgpack.packb(option)

    def send(self, batch):
        sock = self._sock
        if sock is None:
            raise TransportError("not connected")
        messages = self.messages(batch)
        try:
            for _, msg in messages:
                sock.sendall(msg)
        except OSError as e:
            raise TransportError("send: %s" % (e.strerror or e))
        if not self.acks:
            return
        sock.settimeout(self.ack_timeout)
        waiting = {chunk for chunk, _ in messages}
        while waiting:
            reply = self._read("ack")
            if isinstance(reply, dict):
                waiting.discard(reply.get("ack"))

    def close(self):
        sock, self._sock = self._sock, None
        shut(sock)
