"""Disk spool: the batches a collector could not take, kept in order on disk
until it is back (and across restarts: the next start sends them first).

A spool is a directory of segment files `NNNNNNNNNNNN.seg`, appended to and
never rewritten. Each entry is one batch:

    magic "SPL1" | records u32 | body length u32 | crc32 of body u32 | body
    body = records x u32 record lengths, then the records (msgpack) end to end

Entries are written whole with one write() and flushed to the kernel, so a
killed sensor leaves at most a torn last entry; the length and checksum show
it and the reader skips the rest of that segment (counted in `corrupt`).
A new process always starts a new segment, never appends after a torn tail.
The read position is kept in `cursor` (replaced atomically after each batch
is delivered): a crash between delivery and cursor update resends one batch.
Total size is capped: a batch that would pass the cap is refused (the queue
counts it dropped), as is one the disk has no room for.
"""
import fcntl
import os
import struct
import threading
import zlib

_HEAD = struct.Struct("<4sIII")
_MAGIC = b"SPL1"
SEGMENT_BYTES = 8 << 20         # a segment is closed and a new one started past this size


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, another sensor holds it)."""


class Spool:
    def __init__(self, directory, max_bytes):
        try:
            os.makedirs(directory, exist_ok=True)
            self._lockfile = open(os.path.join(directory, "lock"), "ab")
        except OSError as e:
            raise SpoolError("spool %s: %s" % (directory, e.strerror or e))
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolError("spool %s is in use by another sensor" % directory)
        self.dir = directory
        self.max_bytes = max_bytes
        self.corrupt = 0            # torn or damaged entries skipped
        self.error = None           # the last write error (full disk), for the summary
        self._mutex = threading.Lock()
        self._segments = sorted(int(f[:-4]) for f in os.listdir(directory)
                                if f.endswith(".seg") and f[:-4].isdigit())
        self.bytes = sum(os.path.getsize(self._seg_path(s)) for s in self._segments)
        self._cursor = self._load_cursor()
        self.records = self._count_pending()
        self._tail = None           # (segment number, open file) this process appends to
        self._peeked = None         # (segment, end offset, record count) of the entry peek() returned
        if not self.records:
            self._reset()           # nothing left to send: no stale segments or torn tails

    def _seg_path(self, seg):
        return os.path.join(self.dir, "%012d.seg" % seg)

    def _load_cursor(self):
        try:
            with open(os.path.join(self.dir, "cursor"), "rb") as f:
                seg, off = struct.unpack("<QQ", f.read(16))
        except (OSError, struct.error):
            seg, off = 0, 0
        if not self._segments:
            return (0, 0)
        if seg not in self._segments:
            return (self._segments[0], 0)
        return (seg, off)

    def _save_cursor(self):
        tmp = os.path.join(self.dir, "cursor.tmp")
        with open(tmp, "wb") as f:
            f.write(struct.pack("<QQ", *self._cursor))
        os.replace(tmp, os.path.join(self.dir, "cursor"))

    def _count_pending(self):
        """Records in the entries not yet delivered (headers only are read)."""
        n = 0
        for seg in self._segments:
            off = self._cursor[1] if seg == self._cursor[0] else 0
            with open(self._seg_path(seg), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                while True:
                    f.seek(off)
                    head = _read_head(f, off, size)
                    if head is None:
                        break
                    n += head[0]
                    off += _HEAD.size + head[1]
        return n

    @property
    def pending(self):
        return self.records > 0

    def append(self, records):
        """Stores one batch; False when the cap or the disk refuses it (see .error)."""
        lengths = struct.pack("<%dI" % len(records), *map(len, records))
        body = lengths + b"".join(records)
        entry = _HEAD.pack(_MAGIC, len(records), len(body), zlib.crc32(body)) + body
        with self._mutex:
            if self.bytes + len(entry) > self.max_bytes:
                self.error = "spool full (%d MiB cap)" % (self.max_bytes >> 20)
                return False
            try:
                if self._tail is None or self._tail[1].tell() >= SEGMENT_BYTES:
                    self._roll()
                f = self._tail[1]
                start = f.tell()
                try:
                    view = memoryview(entry)
                    while view:             # unbuffered: a short write leaves the rest to retry
                        view = view[f.write(view):]
                except OSError:
                    f.seek(start)       # leave no torn entry behind a failed write
                    f.truncate()
                    raise
            except OSError as e:
                self.error = "spool write failed: %s" % (e.strerror or e)
                return False
            self.bytes += len(entry)
            self.records += len(records)
            return True

    def _roll(self):
        """Closes the segment being appended to and starts the next one."""
        if self._tail is not None:
            os.fsync(self._tail[1].fileno())
            self._tail[1].close()
        seg = (self._segments[-1] + 1) if self._segments else 1
        self._tail = (seg, open(self._seg_path(seg), "ab", buffering=0))
        self._segments.append(seg)
        if len(self._segments) == 1:
            self._cursor = (seg, 0)

    def peek(self):
        """The oldest batch not yet delivered (a list of records), or None."""
        with self._mutex:
            while self.records:
                seg, off = self._cursor
                path = self._seg_path(seg)
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(off)
                    head = _read_head(f, off, size)
                    body = f.read(head[1]) if head else None
                if head is not None and zlib.crc32(body) == head[2]:
                    n = head[0]
                    lengths = struct.unpack_from("<%dI" % n, body)
                    out, pos = [], 4 * n
                    for ln in lengths:
                        out.append(body[pos:pos + ln])
                        pos += ln
                    self._peeked = (seg, off + _HEAD.size + head[1], n)
                    return out
                if off < size:
                    self.corrupt += 1
                if not self._next_segment():
                    self.records = 0        # what remains was unreadable
            return None

    def pop(self):
        """The batch peek() returned was delivered: moves past it."""
        with self._mutex:
            seg, end, n = self._peeked
            self._peeked = None
            self._cursor = (seg, end)
            self.records -= n
            if self.records <= 0:
                self.records = 0
                self._reset()
            else:
                self._save_cursor()

    def _next_segment(self):
        """Deletes the segment under the cursor (read to its end) and moves to the next one."""
        seg = self._cursor[0]
        i = self._segments.index(seg)
        if i + 1 >= len(self._segments):
            return False
        self._drop_segment(seg)
        self._cursor = (self._segments[i], 0)
        self._save_cursor()
        return True

    def _drop_segment(self, seg):
        if self._tail is not None and self._tail[0] == seg:
            self._tail[1].close()
            self._tail = None
        path = self._seg_path(seg)
        self.bytes -= os.path.getsize(path)
        os.unlink(path)
        self._segments.remove(seg)

    def _reset(self):
        """Everything was delivered: the segments go, the next batch starts afresh."""
        for seg in list(self._segments):
            self._drop_segment(seg)
        self.bytes = 0
        self._cursor = (0, 0)
        self._save_cursor()

    def close(self):
        with self._mutex:
            if self._tail is not None:
                os.fsync(self._tail[1].fileno())
                self._tail[1].close()
                self._tail = None
            self._lockfile.close()


def _read_head(f, off, size):
    """(records, body length, crc) of the entry at `off`, or None at the end or a torn entry."""
    if off + _HEAD.size > size:
        return None
    magic, n, length, crc = _HEAD.unpack(f.read(_HEAD.size))
    if magic != _MAGIC or off + _HEAD.size + length > size or length < 4 * n:
        return None
    return n, length, crc
