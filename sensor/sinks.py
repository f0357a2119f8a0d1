"""Record writers: a msgpack stream or JSON Lines, to a file or stdout."""
import json
import sys

import msgpack

from .records import scorer_view


class RecordWriter:
    """Writes records to PATH ('-' = stdout) as msgpack (default) or jsonl."""

    def __init__(self, path="-", fmt="msgpack"):
        self.fmt = fmt
        self.count = 0
        if path == "-":
            self._fh = sys.stdout.buffer
            self._close = False
        else:
            self._fh = open(path, "wb", buffering=1 << 20)
            self._close = True
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def write(self, rec):
        if self.fmt == "jsonl":
            line = scorer_view(rec)
            line.update(rec)
            self._fh.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        else:
            self._fh.write(self._pack(rec))
        self.count += 1

    def close(self):
        self._fh.flush()
        if self._close:
            self._fh.close()
