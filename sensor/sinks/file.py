"""File and stdout output: a msgpack stream (default) or JSON Lines.

Written in the caller's thread, no queue: the local disk is its own
back-pressure. With rotation (by size and/or age), records go to PATH.part
and each finished part is renamed, atomically, to PATH's name with its start
time before the extension (records-20240101T120000.000000Z.msgpack), so a
reader that picks up finished files never sees one half written. Rotation
happens between batches of records: every record is in exactly one file.
"""
import os
import sys
import time

from ..records import scorer_view

# A batch of records (hundreds of KiB) is bigger than the buffer, so it goes to
# the file as it is instead of being copied into the buffer first; stats
# records and small live batches are still gathered.
_BUFFER = 1 << 16


class FileWriter:
    takes_records = False       # Outputs hands it the encoded bytes, to write_encoded()

    def __init__(self, path="-", fmt="msgpack", rotate_bytes=0, rotate_seconds=0):
        self.fmt = fmt
        self.count = 0              # records written
        self._path = path
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._rotating = path != "-" and bool(rotate_bytes or rotate_seconds)
        if path == "-":
            # our own buffered writer on a copy of fd 1: under PYTHONUNBUFFERED
            # sys.stdout.buffer is a raw FileIO, whose write() into a full pipe
            # returns short when a signal arrives, and the rest would be lost
            sys.stdout.flush()
            self._fh = open(os.dup(sys.stdout.fileno()), "wb", buffering=_BUFFER)
        elif self._rotating:
            self._open_part()
        else:
            self._fh = open(path, "wb", buffering=_BUFFER)

    def write_encoded(self, data, n):
        """Writes n records already encoded as msgpack (e.g. by a capture worker)."""
        if not n:
            return
        self.count += n
        if self.fmt != "msgpack":
            data = jsonl(data)
        self._fh.write(data)
        if self._rotating:
            self._part_bytes += len(data)
            if (self._rotate_bytes and self._part_bytes >= self._rotate_bytes) or \
                    (self._rotate_seconds and time.monotonic() >= self._part_until):
                self._finish_part()
                self._open_part()

    def _open_part(self):
        self._part_started = time.time()
        self._part_until = time.monotonic() + self._rotate_seconds
        self._part_bytes = 0
        self._fh = open(self._path + ".part", "wb", buffering=_BUFFER)

    def _finish_part(self):
        """Closes the part being written and gives it its final name (an empty part is removed)."""
        self._fh.close()
        part = self._path + ".part"
        if not self._part_bytes:
            os.unlink(part)
            return
        stem, ext = os.path.splitext(self._path)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._part_started)) + \
            ".%06dZ" % (self._part_started % 1 * 1e6)
        name, k = "%s-%s%s" % (stem, stamp, ext), 0
        while os.path.exists(name):     # two parts started within one microsecond
            k += 1
            name = "%s-%s-%d%s" % (stem, stamp, k, ext)
        os.rename(part, name)

    def reopen(self):
        """SIGHUP: reopen the output file (after log rotation moved it); with
        rotation on, start a new part."""
        if self._path == "-":
            return
        if self._rotating:
            self._finish_part()
            self._open_part()
        else:
            self._fh.close()
            self._fh = open(self._path, "ab", buffering=_BUFFER)

    def flush(self):
        self._fh.flush()

    def close(self, deadline=None):
        if self._rotating:
            self._finish_part()
        else:
            self._fh.close()


def jsonl(data):
    """msgpack records as JSON Lines; http records lead with the plain keys
    humans and scorers read (method, path, status, host)."""
    import json                             # JSON Lines only: spared at every start
    import msgpack
    lines = []
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    for rec in u:
        if isinstance(rec, dict) and rec.get("type") == "http":
            line = scorer_view(rec)
            line.update(rec)
            rec = line
        lines.append(json.dumps(rec, separators=(",", ":"), default=repr))
    return ("\n".join(lines) + "\n").encode()
