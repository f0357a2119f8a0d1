"""Sinks: where encoded records go. RecordWriter: a msgpack stream or JSON Lines, to a file or stdout."""
import json
import sys

import msgpack

from ..records import scorer_view


class RecordWriter:
    """Writes the records of transactions to PATH ('-' = stdout), as a msgpack
    stream (default) or JSON Lines."""

    def __init__(self, path="-", fmt="msgpack"):
        self.fmt = fmt
        self.count = 0              # records written
        self._path = path
        if path == "-":
            self._fh = sys.stdout.buffer
            self._close = False
        else:
            self._fh = open(path, "wb", buffering=1 << 20)
            self._close = True

    def write_record(self, rec):
        """Writes one record given as a dict (stats records)."""
        self.write_encoded(msgpack.packb(rec, use_bin_type=True), 1)

    def reopen(self):
        """SIGHUP: reopen the output file (after log rotation moved it)."""
        if self._close:
            self._fh.close()
            self._fh = open(self._path, "ab", buffering=1 << 20)

    def write_encoded(self, data, n):
        """Writes n records already encoded as msgpack (e.g. by a capture worker)."""
        if not n:
            return
        self.count += n
        if self.fmt == "msgpack":
            self._fh.write(data)
            return
        lines = []
        for rec in _records(data):
            if rec.get("type") == "http":
                line = scorer_view(rec)
                line.update(rec)
                rec = line
            lines.append(json.dumps(rec, separators=(",", ":")))
        self._fh.write(("\n".join(lines) + "\n").encode())

    def flush(self):
        self._fh.flush()

    def close(self):
        self._fh.flush()
        if self._close:
            self._fh.close()


def _records(data):
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    return u
