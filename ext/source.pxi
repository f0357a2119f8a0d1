# Capture-file source: pcap / pcapng (optionally gzip-compressed) -> RawPacket.
#
# next() walks C pointers over a window of the input and only leaves C to
# move the window on, so per-packet cost is a few loads and memory stays
# bounded whatever the file size. A plain file's window is a mapping of it,
# moved by remapping: no copy into the process (sigbus.h covers a file that
# shrinks meanwhile). Compressed input and what cannot be mapped (pipes) go
# through a malloc'd window that readinto refills.

import os

from cpython.buffer cimport PyBUF_WRITE
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memmove
from posix.mman cimport mmap, munmap, madvise, PROT_READ, MAP_PRIVATE, MAP_POPULATE, MAP_FAILED, MADV_SEQUENTIAL
from posix.stat cimport S_ISREG
from posix.unistd cimport sysconf, _SC_PAGESIZE

cdef extern from *:
    void __builtin_prefetch(const void* p) nogil

cdef extern from "sigbus.h" nogil:
    int sb_watch(const void* lo, size_t n)
    void sb_unwatch(int slot)
    int sb_lost(int slot, const uint8_t* last)

cdef uint64_t PAGE = sysconf(_SC_PAGESIZE)    # a mapping starts at a multiple of it

cdef struct RawPacket:
    const uint8_t* data     # captured bytes; valid until the next call to next()
    uint32_t caplen         # captured length
    uint32_t wirelen        # original length on the wire
    int64_t ts_ns           # timestamp, nanoseconds since the epoch
    int linktype            # LINKTYPE_* of this packet's interface

cdef enum:
    WINDOW = 4 << 20        # read window; grown only for a record larger than this
    MAP_WINDOW = 16 << 20   # mapped window: the file pages it can hold bound RSS
    PREFETCH_AHEAD = 8192   # read-ahead into the cache: the CPU's own prefetch stops at each page
    MAX_RECORD = 256 << 20  # a longer record can only be corruption
    MAX_IFACES = 65536      # per pcapng section; bounds the interface table
    BT_SHB = 0x0A0D0D0A     # pcapng block types
    BT_IDB = 1
    BT_OPB = 2
    BT_SPB = 3
    BT_EPB = 6
    TS_MUL = 0              # pcapng timestamp unit -> ns conversions
    TS_DIV = 1
    TS_BIN = 2

cdef struct Iface:
    int linktype
    uint32_t snaplen
    int ts_mode             # TS_MUL: ts*factor, TS_DIV: ts/factor, TS_BIN: ts*1e9 >> shift
    uint64_t factor
    unsigned shift
    int64_t offset_ns       # if_tsoffset

class CaptureError(Exception):
    """Capture file cannot be read; str() is a one-line message for the user."""


# Byte loads written as shifts: portable, and gcc/clang fold them into one
# (byte-swapping) load.
cdef inline uint32_t _rd32(const uint8_t* p, bint be) noexcept nogil:
    if be:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]

cdef inline uint16_t _rd16(const uint8_t* p, bint be) noexcept nogil:
    if be:
        return <uint16_t>((p[0] << 8) | p[1])
    return <uint16_t>((p[1] << 8) | p[0])

cdef inline uint64_t _rd64(const uint8_t* p, bint be) noexcept nogil:
    if be:
        return (<uint64_t>_rd32(p, 1) << 32) | _rd32(p + 4, 1)
    return (<uint64_t>_rd32(p + 4, 0) << 32) | _rd32(p, 0)

cdef inline uint64_t _frac_ns(uint64_t x, unsigned n) noexcept nogil:
    # floor(x * 1e9 / 2**n) for 1 <= n <= 127, exactly: form the 96-bit
    # product x*1e9 as hi:lo from two 32-bit halves, then shift.
    cdef uint64_t a = (x >> 32) * 1000000000ULL      # < 2**62
    cdef uint64_t b = (x & 0xFFFFFFFFULL) * 1000000000ULL
    cdef uint64_t lo = (a << 32) + b
    cdef uint64_t hi = (a >> 32) + (lo < b)          # carry
    if n < 64:
        return (hi << (64 - n)) | (lo >> n)
    return hi >> (n - 64)

cdef inline int64_t _ng_ts(const Iface* i, uint64_t ts) noexcept nogil:
    cdef uint64_t ns
    if i.ts_mode == TS_MUL:
        ns = ts * i.factor
    elif i.ts_mode == TS_DIV:
        ns = ts / i.factor
    elif i.shift < 64:
        ns = (ts >> i.shift) * 1000000000ULL + _frac_ns(ts & ((1ULL << i.shift) - 1), i.shift)
    else:
        ns = _frac_ns(ts, i.shift)
    return <int64_t>ns + i.offset_ns


@cython.final    # next() is called directly (and can be inlined), not through the vtable
cdef class CaptureReader:
    """Sequential reader of one pcap / pcapng file (gzip transparently)."""
    cdef readonly str path
    cdef readonly bint truncated        # input ended inside a record, or reading stopped at corruption
    cdef readonly str warning           # why, when truncated (else None)
    cdef readonly uint64_t file_size    # on-disk size
    cdef readonly uint64_t file_pos     # on-disk bytes read so far (compressed position for gzip)
    cdef readonly uint64_t packets      # packets returned so far
    cdef readonly uint64_t skipped      # pcapng packets dropped: interface not described

    cdef uint8_t* buf
    cdef size_t cap, pos, end           # window [pos, end) holds unread bytes
    cdef int mapped                     # buf is: the mapping in this sigbus.h slot, or -1 a malloc'd
                                        # window, or -2 nothing yet (a plain file mapped at _fill)
    cdef uint64_t base                  # stream offset of buf[0] (uncompressed for gzip)
    cdef bint eof, gz, ng, be
    cdef object _raw, _readinto         # on-disk file; bound readinto of the byte stream
    cdef str _read_err                  # read failure to report once the window drains
    # pcap
    cdef int linktype
    cdef int64_t frac_ns                # ns per unit of the fraction field (1000 or 1)
    # pcapng: interfaces of the current section
    cdef Iface* ifaces
    cdef uint32_t n_ifaces, cap_ifaces
    cdef int64_t last_ts                # SPBs carry no timestamp: reuse the previous one

    def __cinit__(self, path):
        self.path = os.fsdecode(path)
        self.mapped = -1
        try:
            raw = open(path, 'rb', buffering=0)
        except OSError as e:
            raise CaptureError(f"cannot open {self.path}: {e.strerror}") from None
        self._raw = raw
        try:
            self.file_size = os.fstat(raw.fileno()).st_size
            head = raw.read(4)
            if not head:
                raise CaptureError(f"{self.path}: empty file")
            raw.seek(0)
            if head[:2] == b'\x1f\x8b':
                # readinto1: one decompression step per call, so a truncated
                # stream loses nothing already decompressed.
                import gzip                 # here: spared at every start
                self.gz = True
                self._readinto = gzip.GzipFile(fileobj=raw, mode='rb').readinto1
            elif S_ISREG(os.fstat(raw.fileno()).st_mode):
                self.mapped = -2            # mapped from the first _fill on
            else:
                self._readinto = raw.readinto
            self._fill(24)
            if self.end == 0:
                raise CaptureError(f"{self.path}: {self._read_err or 'empty file'}")
            self._parse_header()
        except OSError as e:                # EIO and the like while peeking
            self.close()
            raise CaptureError(f"cannot read {self.path}: {e.strerror or e}") from None
        except BaseException:
            self.close()
            raise

    def __dealloc__(self):
        self._release()
        free(self.ifaces)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release the file and the window; later next() calls return 0."""
        self._release()
        self.mapped = -1
        if self._raw is not None:
            self._raw.close()
            self._raw = self._readinto = None
        self.cap = self.pos = self.end = 0
        self.eof = True

    cdef int _remap(self, size_t n) except -1:
        """The mapped window moved to start at the page of buf+pos, n bytes at least."""
        cdef uint64_t off = self.base + self.pos, at = off - off % PAGE
        cdef size_t length = max(<size_t>MAP_WINDOW, off - at + n)
        cdef void* m
        if length > self.file_size - at:
            length = self.file_size - at
        if at == self.base and length <= self.cap:
            return 0                        # nothing more to map: the file ends there
        self._release()
        # populated at once: one call instead of a page fault every 64 KiB
        m = mmap(NULL, length, PROT_READ, MAP_PRIVATE | MAP_POPULATE, self._raw.fileno(), at)
        self.mapped = sb_watch(m, length) if m != MAP_FAILED else -1
        if self.mapped < 0:                 # read it instead, from where we are
            if m != MAP_FAILED:
                munmap(m, length)
            self._raw.seek(off)
            self._readinto = self._raw.readinto
            self.base, self.pos, self.cap, self.end = off, 0, 0, 0
            return 0
        madvise(m, length, MADV_SEQUENTIAL)
        self.buf, self.base, self.pos = <uint8_t*>m, at, off - at
        self.cap = self.end = length
        self.file_pos = at + length
        return 0

    cdef void _release(self):
        if self.mapped >= 0:
            sb_unwatch(self.mapped)
            munmap(self.buf, self.cap)
            self.mapped = -2
        elif self.mapped == -1:
            free(self.buf)
        self.buf = NULL

    cdef bint _shrunk(self) except -1:
        """The mapped file lost a part since it was mapped."""
        return self.mapped >= 0 and (sb_lost(self.mapped, self.buf)
                                     or os.fstat(self._raw.fileno()).st_size < self.file_size)

    cdef _parse_header(self):
        cdef const uint8_t* p = self.buf
        cdef uint32_t magic = _rd32(p, 0) if self.end >= 4 else 0
        if magic == 0xA1B2C3D4 or magic == 0xD4C3B2A1 or magic == 0xA1B23C4D or magic == 0x4D3CB2A1:
            if self.end < 24:
                raise CaptureError(f"{self.path}: file ends inside the pcap header")
            self.be = magic == 0xD4C3B2A1 or magic == 0x4D3CB2A1
            self.frac_ns = 1000 if magic == 0xA1B2C3D4 or magic == 0xD4C3B2A1 else 1
            self.linktype = _rd32(p + 20, self.be) & 0xFFFF   # upper bits: FCS length flags
            self.pos = 24
        elif magic == BT_SHB and self.end >= 12 and _rd32(p + 8, 0) in (0x1A2B3C4D, 0x4D3C2B1A):
            self.ng = True                  # the SHB itself is parsed by _next_ng
        else:
            raise CaptureError(f"{self.path}: not a pcap or pcapng capture")

    cdef int _fill(self, size_t n) except -1:
        """Make n bytes available at buf+pos; 0 when the input ends first."""
        cdef size_t keep = self.end - self.pos
        cdef size_t want
        cdef uint8_t* nb
        if self.mapped != -1:
            self._remap(n)
            if self.mapped != -1:
                return self.end - self.pos >= n
        if self.eof:
            return 0
        if self.pos:                        # slide the unread tail to the front
            memmove(self.buf, self.buf + self.pos, keep)
            self.base += self.pos
            self.pos, self.end = 0, keep
        if n > self.cap or self.buf == NULL:
            want = max(<size_t>WINDOW, (n + WINDOW - 1) // WINDOW * WINDOW)
            nb = <uint8_t*>realloc(self.buf, want)
            if nb == NULL:
                raise MemoryError()
            self.buf, self.cap = nb, want
        while self.end < self.cap:          # fill the whole window: few Python calls per MB
            try:
                got = self._readinto(PyMemoryView_FromMemory(<char*>self.buf + self.end,
                                                             self.cap - self.end, PyBUF_WRITE))
            except EOFError:
                self._read_err = "compressed data ends early"
                got = 0
            except Exception as e:          # zlib.error, BadGzipFile, EIO: report, keep what we have
                self._read_err = f"{'corrupt gzip data' if self.gz else 'read error'} ({e})".replace("\n", " ")
                got = 0
            if not got:
                self.eof = True
                break
            self.end += got
        self.file_pos = self._raw.tell() if self.gz else self.file_pos + (self.end - keep)
        return self.end >= n

    cdef int _stop(self, str reason) except -1:
        """Stop reading for good: the rest of the input is unusable."""
        if self._shrunk():
            reason = "file shrank while being read"
        where = "uncompressed offset" if self.gz else "offset"
        self.truncated = True
        self.warning = f"{self.path}: {reason} at {where} {self.base + self.pos}; {self.packets} packets read"
        self._read_err = None               # reported: later next() calls just return 0
        self.close()
        return 0

    cdef int _at_end(self) except -1:
        """Input exhausted before the next record: clean end or truncation."""
        if self._read_err is not None:
            return self._stop(self._read_err)
        if self.pos < self.end:
            return self._stop("file ends inside a record")
        self.close()
        return 0

    cdef int next(self, RawPacket* pkt) except -1:
        """Fill pkt with the next packet: 1, or 0 at end of input (see .truncated)."""
        cdef int got = self._next_ng(pkt) if self.ng else self._next_pcap(pkt)
        if got and self.mapped >= 0:
            # past the new end a page is gone (sigbus.h); the rest of the last page reads
            # zeros. Checked from the record's first byte: loading its last one first
            # cost a cache miss a packet, and a file cut inside a packet then shows
            # at the next one, that packet's tail read as zeros.
            if sb_lost(self.mapped, pkt.data) or pkt.caplen == 0 and self._shrunk():
                return self._stop("file shrank while being read")
        if self.pos + PREFETCH_AHEAD < self.end:
            __builtin_prefetch(self.buf + self.pos + PREFETCH_AHEAD)
        return got

    cdef inline int _next_pcap(self, RawPacket* pkt) except -1:
        cdef const uint8_t* p
        cdef uint32_t caplen
        if self.end - self.pos < 16 and not self._fill(16):
            return self._at_end()
        p = self.buf + self.pos
        caplen = _rd32(p + 8, self.be)
        if caplen > MAX_RECORD:
            return self._stop(f"corrupt record (caplen {caplen})")
        if self.end - self.pos < 16 + caplen:
            if not self._fill(16 + caplen):
                return self._at_end()
            p = self.buf + self.pos
        pkt.data = p + 16
        pkt.caplen = caplen
        pkt.wirelen = _rd32(p + 12, self.be)
        pkt.ts_ns = <int64_t>_rd32(p, self.be) * 1000000000 + <int64_t>_rd32(p + 4, self.be) * self.frac_ns
        pkt.linktype = self.linktype
        self.pos += 16 + caplen
        self.packets += 1
        return 1

    cdef int _next_ng(self, RawPacket* pkt) except -1:
        cdef const uint8_t* p
        cdef uint32_t btype, blen, bom, ifid, caplen
        cdef const Iface* ifc
        while True:
            if self.end - self.pos < 12 and not self._fill(12):
                return self._at_end()
            p = self.buf + self.pos
            btype = _rd32(p, self.be)       # SHB type is a palindrome: readable in any order
            if btype == BT_SHB:             # each section declares its own byte order
                bom = _rd32(p + 8, 1)
                if bom != 0x1A2B3C4D and bom != 0x4D3C2B1A:
                    return self._stop("corrupt section header (byte-order magic)")
                self.be = bom == 0x1A2B3C4D
            blen = _rd32(p + 4, self.be)
            if blen < 12 or blen & 3 or blen > MAX_RECORD:
                return self._stop(f"corrupt block (length {blen})")
            if self.end - self.pos < blen:
                if not self._fill(blen):
                    return self._at_end()
                p = self.buf + self.pos
            if _rd32(p + blen - 4, self.be) != blen:
                return self._stop("corrupt block (trailing length mismatch)")

            if btype == BT_EPB or btype == BT_OPB:   # same layout; OPB has a 16-bit interface id
                caplen = _rd32(p + 20, self.be)
                if blen < 32 or caplen > blen - 32:
                    return self._stop("corrupt packet block")
                ifid = _rd32(p + 8, self.be) if btype == BT_EPB else _rd16(p + 8, self.be)
                self.pos += blen
                if ifid >= self.n_ifaces:
                    self.skipped += 1
                    continue
                ifc = &self.ifaces[ifid]
                self.last_ts = _ng_ts(ifc, (<uint64_t>_rd32(p + 12, self.be) << 32) | _rd32(p + 16, self.be))
                pkt.data = p + 28
                pkt.caplen = caplen
                pkt.wirelen = _rd32(p + 24, self.be)
            elif btype == BT_SPB:
                if blen < 16:
                    return self._stop("corrupt packet block")
                self.pos += blen
                if self.n_ifaces == 0:
                    self.skipped += 1
                    continue
                ifc = &self.ifaces[0]
                pkt.wirelen = _rd32(p + 8, self.be)
                caplen = min(pkt.wirelen, blen - 16)
                if ifc.snaplen and caplen > ifc.snaplen:
                    caplen = ifc.snaplen
                pkt.data = p + 12
                pkt.caplen = caplen
            else:
                if btype == BT_SHB:
                    if blen < 28:
                        return self._stop("corrupt section header")
                    self.n_ifaces = 0       # interface ids restart in every section
                elif btype == BT_IDB:
                    if blen < 20:
                        return self._stop("corrupt interface block")
                    if not self._add_iface(p, blen):
                        return 0
                self.pos += blen            # other blocks (NRB, ISB, DSB, custom...) skipped
                continue
            pkt.ts_ns = self.last_ts
            pkt.linktype = ifc.linktype
            self.packets += 1
            return 1

    cdef int _add_iface(self, const uint8_t* p, uint32_t blen) except -1:
        """Append an interface from an IDB; 0 when reading had to stop."""
        cdef Iface* ifc
        cdef uint32_t off = 16, lim = blen - 4
        cdef uint16_t code, olen
        cdef uint8_t r
        cdef int i
        if self.n_ifaces == self.cap_ifaces:
            if self.n_ifaces == MAX_IFACES:
                return self._stop("too many interfaces in one section")
            self.cap_ifaces = self.cap_ifaces * 2 if self.cap_ifaces else 4
            ifc = <Iface*>realloc(self.ifaces, self.cap_ifaces * sizeof(Iface))
            if ifc == NULL:
                raise MemoryError()
            self.ifaces = ifc
        ifc = &self.ifaces[self.n_ifaces]
        self.n_ifaces += 1
        ifc.linktype = _rd16(p + 8, self.be)
        ifc.snaplen = _rd32(p + 12, self.be)
        ifc.ts_mode, ifc.factor, ifc.offset_ns = TS_MUL, 1000, 0    # default: microseconds
        while off + 4 <= lim:
            code = _rd16(p + off, self.be)
            olen = _rd16(p + off + 2, self.be)
            if code == 0 or off + 4 + olen > lim:   # end of options, or a malformed one
                break
            if code == 9 and olen >= 1:             # if_tsresol
                r = p[off + 4]
                if r & 0x80:                        # 2**-n
                    ifc.ts_mode, ifc.shift = TS_BIN, r & 0x7F
                    if ifc.shift == 0:              # whole seconds
                        ifc.ts_mode, ifc.factor = TS_MUL, 1000000000
                elif r <= 9:                        # 10**-r, coarser than ns
                    ifc.ts_mode, ifc.factor = TS_MUL, 1
                    for i in range(9 - r):
                        ifc.factor *= 10
                elif r - 9 <= 19:                   # finer than ns: divide
                    ifc.ts_mode, ifc.factor = TS_DIV, 1
                    for i in range(r - 9):
                        ifc.factor *= 10
                else:                               # 10**(r-9) > 2**64: every ts is < 1 ns
                    ifc.ts_mode, ifc.factor = TS_MUL, 0
            elif code == 14 and olen >= 8:          # if_tsoffset, seconds
                ifc.offset_ns = <int64_t>_rd64(p + off + 4, self.be) * 1000000000
            off += 4 + ((olen + 3) & ~3)
        return 1


def iter_packets(source):
    """Yield (ts_ns, linktype, caplen, wirelen, bytes) for each packet.

    source is a path, or an open CaptureReader whose .truncated / .warning the
    caller inspects afterwards. For tests and debugging; the engine calls next().
    """
    cdef CaptureReader r = source if isinstance(source, CaptureReader) else CaptureReader(source)
    cdef RawPacket p
    try:
        while r.next(&p):
            yield p.ts_ns, p.linktype, p.caplen, p.wirelen, p.data[:p.caplen]
    finally:
        r.close()
