"""Sinks: where encoded records go, chosen by the -o/--output values.

    -  | PATH | file:PATH        msgpack stream to stdout or a file (sinks/file.py)
    jsonl:PATH | jsonl:-         JSON Lines, for humans
    tcp://HOST:PORT              plain msgpack stream (sinks/stream.py)
    unix:///PATH                 the same over a Unix socket
    fluent://HOST:PORT?tag=..    Fluent Forward v1 (sinks/fluent.py)
    nats://HOST:PORT/SUBJECT     NATS JetStream (sinks/nats.py)
    kafka://BROKER/TOPIC         Kafka (sinks/kafka.py)

open_outputs() returns one writer for all of them (write_encoded,
write_record, reopen, flush, close, count): files are written in the
caller's thread; each network output gets a delivery queue (sinks/queue.py)
with its own disk spool. Modules are imported only for the schemes in use.
"""
import os
import re
import time

# scheme -> (module, class) of its Transport
TRANSPORTS = {
    "tcp": ("stream", "StreamTransport"),
    "unix": ("stream", "StreamTransport"),
    "fluent": ("fluent", "FluentTransport"),
    "nats": ("nats", "NatsTransport"),
    "kafka": ("kafka", "KafkaTransport"),
}
FILE_PREFIXES = {"file:": None, "jsonl:": "jsonl"}       # prefix -> format (None: --format)

DEFAULTS = {
    "policy": "block",          # or "drop"
    "queue_size": 100_000,      # records per output queue
    "spool_dir": None,          # default: <tmp>/sensor-spool-<uid>
    "spool_max": 1 << 30,       # bytes per output
    "drain_timeout": 10.0,      # seconds close() waits for the queues to drain
    "rotate_bytes": 0,
    "rotate_seconds": 0,
}


class OutputError(ValueError):
    """An -o/--output value that names no usable output (one-line message)."""


def parse_output(value, fmt="msgpack"):
    """('file', path, fmt) or ('net', urllib SplitResult) for one -o value."""
    for prefix, pfmt in FILE_PREFIXES.items():
        if value.startswith(prefix) and "://" not in value:
            path = value[len(prefix):]
            if not path:
                raise OutputError("%s: no path after %r" % (value, prefix))
            return "file", path, pfmt or fmt
    if "://" not in value:
        return "file", value, fmt
    from urllib.parse import urlsplit       # network outputs only: spared at every start
    url = urlsplit(value)
    if url.scheme not in TRANSPORTS:
        raise OutputError("unknown output scheme %r in %s (known: file:, jsonl:, %s)" % (
            url.scheme, value, ", ".join(s + "://" for s in TRANSPORTS)))
    if url.scheme == "unix":
        if not url.path:
            raise OutputError("%s: no socket path (unix:///path/to/socket)" % value)
    elif "," in url.netloc and url.scheme in ("kafka", "nats"):
        pass                    # a server list (kafka://b1:9092,b2:9092/topic): the transport reads it
    else:
        try:
            host, port = url.hostname, url.port
        except ValueError as e:
            raise OutputError("%s: %s" % (value, e))
        if not host or (port is None and url.scheme in ("tcp", "fluent")):
            raise OutputError("%s: host and port needed (%s://host:port)" % (value, url.scheme))
    return "net", url


def transport_class(scheme):
    import importlib
    module, cls = TRANSPORTS[scheme]
    try:
        return getattr(importlib.import_module("." + module, __name__), cls)
    except (ImportError, AttributeError) as e:
        raise OutputError("%s:// output unavailable: %s" % (scheme, e))


def spool_path(spool_dir, url):
    """Each output spools in its own directory, named after its URL, so the
    next start with the same -o finds what is left."""
    import tempfile                         # network outputs only, as urlsplit
    base = spool_dir or os.path.join(tempfile.gettempdir(), "sensor-spool-%d" % os.getuid())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "%s_%s%s" % (url.scheme, url.netloc, url.path)).strip("_")
    return os.path.join(base, name)


def open_outputs(values, fmt="msgpack", **options):
    """One writer for every -o value (see the module docstring); options as
    in DEFAULTS. Raises OutputError (and nothing else) on a bad value."""
    opts = dict(DEFAULTS, **{k: v for k, v in options.items() if v is not None})
    parsed = [parse_output(v, fmt) for v in values]
    sinks = []
    try:
        for value, p in zip(values, parsed):
            if p[0] == "file":
                from .file import FileWriter
                try:
                    sinks.append(FileWriter(p[1], p[2], opts["rotate_bytes"], opts["rotate_seconds"]))
                except OSError as e:
                    raise OutputError("cannot write %s: %s" % (p[1], e.strerror))
            else:
                sinks.append(_delivery_queue(value, p[1], opts))
    except OutputError:
        for s in sinks:
            s.close(time.monotonic())
        raise
    return Outputs(sinks, opts["drain_timeout"])


def _delivery_queue(value, url, opts):
    from .queue import DeliveryQueue
    from .spool import Spool, SpoolError
    transport = transport_class(url.scheme)(url, opts)
    try:
        spool = Spool(spool_path(opts["spool_dir"], url), opts["spool_max"])
    except SpoolError as e:
        raise OutputError(str(e))
    return DeliveryQueue(value, transport, spool, policy=opts["policy"], max_records=opts["queue_size"])


class Outputs:
    """Fans records out to every sink. count: records written."""

    def __init__(self, sinks, drain_timeout=10.0):
        self.sinks = sinks
        self.drain_timeout = drain_timeout
        self.count = 0

    def write_encoded(self, data, n):
        """n records already encoded as msgpack, end to end."""
        if not n:
            return
        self.count += n
        records = None
        for s in self.sinks:
            if s.takes_records:
                if records is None:         # split once for all the queues
                    from .queue import split_records
                    records = split_records(data, n)
                s.put(records)
            else:
                s.write_encoded(data, n)

    def write_record(self, rec):
        """One record given as a dict (stats records)."""
        import msgpack
        self.write_encoded(msgpack.packb(rec, use_bin_type=True), 1)

    def reopen(self):
        for s in self.sinks:
            s.reopen()

    def flush(self):
        for s in self.sinks:
            s.flush()

    def close(self):
        """Drains the queues together within the drain timeout; the rest stays in their spools."""
        deadline = time.monotonic() + self.drain_timeout
        for s in self.sinks:
            if s.takes_records:
                s.begin_close()
        for s in self.sinks:
            s.close(deadline)

    def summaries(self):
        """One line per network output: its counters."""
        return [s.summary() for s in self.sinks if s.takes_records]

