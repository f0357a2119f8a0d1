# hpack: RFC 7541 header block decoder, one per direction of an HTTP/2 connection.
#
# A passive sensor may join a connection mid-stream or lose a header block to
# a TCP gap, and then no longer knows what the peer's dynamic table holds. The
# table is modelled as a known prefix (the entries inserted since we lost
# track, newest first) followed by a tail of entries we never saw, whose total
# RFC size is bounded by `tail`. References into the prefix decode exactly,
# references into the tail come back as None, and the tail shrinks as RFC
# eviction pushes it out; once it cannot hold an entry (< 32 bytes) the
# decoder is exactly in sync again. Without a loss `tail` stays 0.
#
# Entries are (name, value) tuples of str, so an indexed field costs one
# reference to an existing tuple; a name we never saw is None.

from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.unicode cimport PyUnicode_DecodeLatin1

cdef enum:
    HP_UNKNOWN = 1              # decode() flags
    HP_ERROR = 2
    HP_TOO_LARGE = 4
    HP_OVERHEAD = 32            # RFC 7541 4.1: per-entry size overhead
    HP_MAX_INT = 1 << 28        # larger integers are hostile, not HTTP
    HP_TABLE_CAP = 65536        # most table bytes we keep whatever the peer allows; older entries beyond become unknown
    HP_SCRATCH_KEEP = 16384     # Huffman scratch kept between blocks
    HP_HSTATES = 256            # internal nodes of the Huffman tree
    HP_HSINK = 256              # state after EOS: absorbs the rest, never accepts

# RFC 7541 Appendix A
cdef tuple hp_static = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
)
cdef tuple hp_unknown = (None, None)    # a reference into the unknown tail

# RFC 7541 Appendix B code lengths of symbols 0..256 (256 = EOS). The code is
# canonical (codes are consecutive in (length, symbol) order), so the lengths
# alone rebuild it.
HP_HUFF_BITS = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
)

# Huffman decoding eats 4 bits at a time: a state is an internal node of the
# code tree; with codes of 5+ bits a nibble completes at most one symbol.
ctypedef struct hp_hstep:
    uint16_t next
    uint8_t emit
    uint8_t sym

cdef hp_hstep hp_huff[HP_HSTATES + 1][16]
cdef uint8_t hp_huff_accept[HP_HSTATES + 1]    # ends a string: all-ones path of <= 7 bits (RFC 7541 5.2 padding)


cdef void hp_build_huffman():
    # kids[node] = [child0, child1]: a node id (> 0) or -1 - symbol for a leaf
    cdef list kids = [[None, None]]
    cdef int code = 0, prev = 5, bits, sym, k, node, state, x, emit, c
    for sym in sorted(range(257), key=lambda s: (HP_HUFF_BITS[s], s)):
        bits = HP_HUFF_BITS[sym]
        code <<= bits - prev
        prev = bits
        node = 0
        for k in range(bits - 1, 0, -1):
            if kids[node][(code >> k) & 1] is None:
                kids[node][(code >> k) & 1] = len(kids)
                kids.append([None, None])
            node = kids[node][(code >> k) & 1]
        kids[node][code & 1] = -1 - sym
        code += 1
    assert len(kids) == HP_HSTATES
    for state in range(HP_HSTATES + 1):
        for x in range(16):
            node, emit, sym = state, 0, 0
            for k in range(3, -1, -1):
                if node == HP_HSINK:
                    break
                c = kids[node][(x >> k) & 1]
                if c >= 0:
                    node = c
                elif c == -257:         # EOS inside a string is an error (RFC 7541 5.2)
                    node = HP_HSINK
                else:
                    emit, sym, node = 1, -1 - c, 0
            hp_huff[state][x].next = node
            hp_huff[state][x].emit = emit
            hp_huff[state][x].sym = sym
    node = 0
    for k in range(8):
        hp_huff_accept[node] = 1
        node = kids[node][1]

hp_build_huffman()


cdef int64_t hp_huffman(const uint8_t* src, uint32_t n, uint8_t* dst) noexcept nogil:
    # Decoded length, or -1 for EOS or bad padding. dst needs n * 8 / 5 + 1 bytes:
    # each nibble stores a byte, kept only when it completes a symbol.
    cdef uint32_t i, state = 0
    cdef uint8_t* d = dst
    cdef const hp_hstep* t
    for i in range(n):
        t = &hp_huff[state][src[i] >> 4]
        d[0] = t.sym
        d += t.emit
        t = &hp_huff[t.next][src[i] & 15]
        d[0] = t.sym
        d += t.emit
        state = t.next
    return d - dst if hp_huff_accept[state] else -1


cdef inline int hp_int(const uint8_t* p, uint32_t n, uint32_t* pos, uint32_t bits, uint32_t* out) noexcept nogil:
    # RFC 7541 5.1 prefix integer at p[*pos] (caller checked *pos < n); at most
    # 5 continuation bytes and 2^28, so a hostile length cannot overflow.
    cdef uint32_t mask = (1u << bits) - 1, i = pos[0] + 1, shift = 0
    cdef uint64_t v = p[i - 1] & mask
    cdef uint8_t b
    if v == mask:
        while True:
            if i >= n or shift > 28:
                return -1
            b = p[i]
            i += 1
            v += <uint64_t>(b & 0x7f) << shift
            shift += 7
            if not b & 0x80:
                break
        if v > HP_MAX_INT:
            return -1
    pos[0] = i
    out[0] = <uint32_t>v
    return 0


cdef inline uint64_t hp_field_size(tuple f) noexcept:
    # RFC 7541 4.1 size; unknown parts count as empty (a lower bound)
    return (0 if f[0] is None else len(<str>f[0])) + (0 if f[1] is None else len(<str>f[1])) + HP_OVERHEAD


@cython.final
cdef class HpackDecoder:
    cdef public uint32_t settings_table_size    # the peer decoder's SETTINGS_HEADER_TABLE_SIZE: bound on size updates
    cdef public uint64_t unknown_refs           # references to entries we could not know
    cdef readonly uint32_t max_size             # table size the encoder uses (an upper bound after a loss)
    cdef readonly uint64_t size                 # RFC size of the known entries
    cdef readonly uint64_t tail                 # bound on the RFC size of the unknown entries behind them
    cdef uint32_t max_header_list
    cdef PyObject** ring                        # known entries: dynamic index i is at (ins - i) & (cap - 1)
    cdef uint32_t cap, count, ins               # ring capacity (power of two), known entries, inserts so far
    cdef uint8_t* scratch                       # Huffman output of the current block
    cdef uint64_t scratch_cap
    cdef uint32_t scratch_used

    def __cinit__(self, uint32_t max_table_size=4096, uint32_t max_header_list=65536,
                  bint attached_midstream=False):
        self.settings_table_size = self.max_size = max_table_size
        self.max_header_list = max_header_list
        self.tail = max_table_size if attached_midstream else 0

    def __dealloc__(self):
        while self.count:
            self.evict()
        free(self.ring)
        free(self.scratch)

    cdef list decode(self, const uint8_t* p, uint32_t n, uint32_t* flags):
        # One complete header block -> [(name, value)]; *flags is set to HP_* bits.
        # On HP_ERROR the fields before the error are returned.
        cdef list out = []
        cdef uint64_t need = <uint64_t>n * 8 // 5 + 2
        flags[0] = 0
        if need > self.scratch_cap:
            free(self.scratch)
            self.scratch = <uint8_t*>malloc(need)
            self.scratch_cap = need if self.scratch != NULL else 0
            if self.scratch == NULL:
                raise MemoryError()
        if self.parse(p, n, out, flags) < 0:
            flags[0] |= HP_ERROR
            self.lost_sync()        # whatever the bad block did to the peer's table is unknown
        if self.scratch_cap > HP_SCRATCH_KEEP:
            free(self.scratch)
            self.scratch = NULL
            self.scratch_cap = 0
        return out

    cdef int parse(self, const uint8_t* p, uint32_t n, list out, uint32_t* flags) except -2:
        cdef uint32_t pos = 0, idx, nlen, vlen
        cdef uint64_t total = 0, s
        cdef uint8_t b
        cdef bint index, emit, started = False
        cdef const uint8_t* nptr = NULL
        cdef const uint8_t* vptr
        cdef tuple field
        cdef object name
        while pos < n:
            b = p[pos]
            if (b & 0xe0) == 0x20:      # dynamic table size update (6.3): only before the first field (4.2)
                if started or hp_int(p, n, &pos, 5, &idx) < 0 or idx > self.settings_table_size:
                    return -1
                self.max_size = idx
                self.make_room(0)
                continue
            started = True
            if b & 0x80:                # indexed field (6.1)
                if hp_int(p, n, &pos, 7, &idx) < 0:
                    return -1
                field = self.lookup(idx, flags)
                if field is None:
                    return -1
                s = hp_field_size(field)
                emit = not flags[0] & HP_TOO_LARGE and total + s <= self.max_header_list
            else:                       # literal (6.2): 01 incremental indexing, 0000 without, 0001 never indexed
                index = b & 0x40
                if hp_int(p, n, &pos, 6 if index else 4, &idx) < 0:
                    return -1
                self.scratch_used = 0
                if idx:
                    field = self.lookup(idx, flags)
                    if field is None:
                        return -1
                    name = field[0]
                    nlen = 0 if name is None else len(<str>name)
                elif self.string(p, n, &pos, &nptr, &nlen) < 0:
                    return -1
                if self.string(p, n, &pos, &vptr, &vlen) < 0:
                    return -1
                s = <uint64_t>nlen + vlen + HP_OVERHEAD
                emit = not flags[0] & HP_TOO_LARGE and total + s <= self.max_header_list
                # build str objects only for fields we return or keep
                if emit or index and s <= self.max_size and s <= HP_TABLE_CAP:
                    if not idx:
                        name = PyUnicode_DecodeLatin1(<const char*>nptr, nlen, NULL)
                    field = (name, PyUnicode_DecodeLatin1(<const char*>vptr, vlen, NULL))
                else:
                    field = None
                if index:
                    self.insert(field, s)
            if emit:
                out.append(field)
                total += s
            else:                       # RFC 7540 10.5.1: drop the rest, but keep decoding for the table
                flags[0] |= HP_TOO_LARGE
        return 0

    cdef int string(self, const uint8_t* p, uint32_t n, uint32_t* pos,
                    const uint8_t** out, uint32_t* outlen) noexcept:
        # String literal (5.2) -> bytes in the block, or Huffman-decoded into scratch
        cdef uint32_t length
        cdef int64_t k
        cdef bint huff
        if pos[0] >= n:
            return -1
        huff = p[pos[0]] & 0x80
        if hp_int(p, n, pos, 7, &length) < 0 or length > n - pos[0]:
            return -1
        out[0] = p + pos[0]
        pos[0] += length
        outlen[0] = length
        if huff:
            k = hp_huffman(out[0], length, self.scratch + self.scratch_used)
            if k < 0:
                return -1
            out[0] = self.scratch + self.scratch_used
            outlen[0] = <uint32_t>k
            self.scratch_used += <uint32_t>k
        return 0

    cdef tuple lookup(self, uint32_t idx, uint32_t* flags):
        # Entry at index idx (static, known, or hp_unknown), None if it cannot exist
        cdef tuple field
        cdef uint32_t d
        if idx <= 61:
            return hp_static[idx - 1] if idx else None
        d = idx - 61
        if d <= self.count:
            field = <tuple>self.ring[(self.ins - d) & (self.cap - 1)]
        elif d - self.count <= self.tail // HP_OVERHEAD:   # each unknown entry takes >= 32 bytes
            field = hp_unknown
        else:
            return None
        if field[0] is None:
            flags[0] |= HP_UNKNOWN
            self.unknown_refs += 1
        return field

    cdef void make_room(self, uint64_t s):
        # Evict for s new bytes as the peer does (4.3, 4.4): oldest first, i.e. the unknown tail
        # first, then our entries. Our sizes may be lower bounds: we then evict no more than the peer.
        if self.size + s > self.max_size:
            self.tail = 0
            while self.count and self.size + s > self.max_size:
                self.evict()
        else:
            self.tail = min(self.tail, self.max_size - self.size - s)
        while self.count and self.size + s > HP_TABLE_CAP:    # our own cap: dropped entries become unknown
            self.evict()
            self.tail = self.max_size - self.size - s

    cdef int insert(self, tuple field, uint64_t s) except -1:
        # Add an entry of size s at the front; field is None when it is too large to keep
        cdef uint32_t i, cap
        cdef PyObject** ring
        self.make_room(s)
        if s > self.max_size:           # 4.4: it emptied the table and is not added
            return 0
        if s > HP_TABLE_CAP:            # not kept: it is now the newest unknown entry
            self.tail = self.max_size
            return 0
        if self.count == self.cap:
            cap = self.cap * 2 if self.cap else 16
            ring = <PyObject**>malloc(cap * sizeof(PyObject*))
            if ring == NULL:
                raise MemoryError()
            for i in range(1, self.count + 1):
                ring[(self.ins - i) & (cap - 1)] = self.ring[(self.ins - i) & (self.cap - 1)]
            free(self.ring)
            self.ring = ring
            self.cap = cap
        Py_INCREF(field)
        self.ring[self.ins & (self.cap - 1)] = <PyObject*>field
        self.ins += 1
        self.count += 1
        self.size += s
        return 0

    cdef void evict(self):
        # drop the oldest known entry
        cdef PyObject* f = self.ring[(self.ins - self.count) & (self.cap - 1)]
        self.size -= hp_field_size(<tuple>f)
        self.count -= 1
        Py_DECREF(<object>f)

    cpdef void lost_sync(self):
        # A header block was lost: every entry we knew may now sit behind ones we never saw.
        while self.count:
            self.evict()
        if self.settings_table_size > self.max_size:   # the lost block may have raised the size
            self.max_size = self.settings_table_size
        self.tail = self.max_size

    def decode_block(self, bytes block):
        # Python entry point (tests): -> (fields, flags)
        cdef uint32_t flags
        fields = self.decode(<const uint8_t*><const char*>block, len(block), &flags)
        return fields, flags

    def entries(self):
        # known dynamic entries, newest (index 62) first
        return [<tuple>self.ring[(self.ins - i) & (self.cap - 1)] for i in range(1, self.count + 1)]
