# TEMPORARY minimal pcap reader (replaced by the source helper's version)
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memcpy, memmove

cdef struct RawPacket:
    const uint8_t* data
    uint32_t caplen
    uint32_t wirelen
    int64_t ts_ns
    int linktype

class CaptureError(Exception):
    pass

cdef class CaptureReader:
    cdef readonly str path
    cdef readonly bint truncated
    cdef readonly str warning
    cdef readonly uint64_t file_size, file_pos, packets, skipped
    cdef object f
    cdef bytes data
    cdef uint64_t off
    cdef bint swap, nano
    cdef int linktype
    def __cinit__(self, path):
        import os
        self.path = str(path)
        try:
            with open(path, 'rb') as fh:
                self.data = fh.read()
        except OSError as e:
            raise CaptureError("cannot open %s: %s" % (path, e.strerror))
        self.file_size = len(self.data)
        if len(self.data) == 0:
            raise CaptureError("%s: empty file" % path)
        m = self.data[:4]
        if m == b'\xd4\xc3\xb2\xa1': self.swap, self.nano = False, False
        elif m == b'\x4d\x3c\xb2\xa1': self.swap, self.nano = False, True
        else: raise CaptureError("%s: not a pcap or pcapng capture" % path)
        self.linktype = int.from_bytes(self.data[20:24], 'little') & 0xffff
        self.off = 24
    cdef int next(self, RawPacket* pkt) except -1:
        cdef const uint8_t* p = self.data
        cdef uint64_t n = len(self.data)
        if self.off + 16 > n:
            return 0
        cdef const uint32_t* h = <const uint32_t*>(p + self.off)
        if self.off + 16 + h[2] > n:
            self.truncated = True
            return 0
        pkt.ts_ns = <int64_t>h[0] * 1000000000 + (<int64_t>h[1] if self.nano else <int64_t>h[1] * 1000)
        pkt.caplen = h[2]
        pkt.wirelen = h[3]
        pkt.data = p + self.off + 16
        pkt.linktype = self.linktype
        self.off += 16 + h[2]
        self.file_pos = self.off
        self.packets += 1
        return 1
    def close(self):
        pass
