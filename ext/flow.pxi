# flow: open-addressing table of TCP connections keyed by (context, 5-tuple).
#
# Both directions map to one entry: the key holds the two endpoints in a
# canonical order (the order Community ID uses), and the half index says which
# endpoint sent a packet. Flows sit on one of two LRU lists (active, closed)
# ordered by packet time, so idle timeouts and memory eviction pop from the
# head without scanning the table.

cdef struct FlowKey:
    uint8_t a[16]               # lower endpoint address (IPv4 in the first 4 bytes)
    uint8_t b[16]
    uint16_t pa
    uint16_t pb
    uint32_t ctx
    uint32_t ipver

cdef struct Flow:
    FlowKey key
    uint32_t hash
    int8_t client               # half index of the client, -1 until known
    uint8_t syn_seen
    uint8_t closed              # finished; kept a while to absorb stray packets
    uint8_t on_closed_list
    uint8_t app                 # APP_*: which parser the bytes go to
    H2Conn* h2                  # HTTP/2 state once the connection speaks it
    PyObject* tls               # TlsInfo of an encrypted connection
    uint8_t nencap              # encapsulation of its first packet (sensor.encap)
    uint8_t encap_kind[MAX_ENCAP]
    uint32_t encap_id[MAX_ENCAP]
    uint64_t id
    int64_t first_ts
    int64_t last_ts
    Flow* prev
    Flow* next
    Half half[2]                # half[0]: sent by endpoint a, half[1]: by b
    PyObject* pending           # list of Txn awaiting their response
    PyObject* info              # (client addr, client port, server addr, server port, community id)

cdef enum:
    APP_UNKNOWN = 0             # no payload yet
    APP_H1 = 1
    APP_H2 = 2
    APP_TLS = 3

cdef struct FlowList:
    Flow* head
    Flow* tail


cdef inline void list_remove(FlowList* l, Flow* f) noexcept nogil:
    if f.prev != NULL:
        f.prev.next = f.next
    else:
        l.head = f.next
    if f.next != NULL:
        f.next.prev = f.prev
    else:
        l.tail = f.prev
    f.prev = f.next = NULL

cdef inline void list_append(FlowList* l, Flow* f) noexcept nogil:
    f.prev = l.tail
    f.next = NULL
    if l.tail != NULL:
        l.tail.next = f
    else:
        l.head = f
    l.tail = f


cdef inline uint32_t key_hash(FlowKey* k) noexcept nogil:
    cdef const uint32_t* w = <const uint32_t*>k
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL
    cdef int i
    for i in range(sizeof(FlowKey) // 4):
        h = (h ^ w[i]) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 32
    return <uint32_t>h

# Builds the canonical key of a segment; returns the half index of its sender.
cdef inline int make_key(Segment* s, FlowKey* k) noexcept nogil:
    cdef int c
    memset(k, 0, sizeof(FlowKey))
    cdef int alen = 4 if s.ipver == 4 else 16
    c = memcmp(s.src, s.dst, alen)
    if c == 0:
        c = <int>s.sport - <int>s.dport
    k.ctx = s.ctx
    k.ipver = s.ipver
    if c <= 0:
        memcpy(k.a, s.src, alen)
        memcpy(k.b, s.dst, alen)
        k.pa, k.pb = s.sport, s.dport
        return 0
    memcpy(k.a, s.dst, alen)
    memcpy(k.b, s.src, alen)
    k.pa, k.pb = s.dport, s.sport
    return 1


cdef class FlowTable:
    cdef Flow** slots
    cdef uint32_t cap               # power of two
    cdef uint32_t count
    cdef FlowList active
    cdef FlowList closed

    def __cinit__(self):
        self.cap = 1 << 14
        self.slots = <Flow**>calloc(self.cap, sizeof(Flow*))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.slots)

    cdef Flow* find(self, FlowKey* k, uint32_t h) noexcept nogil:
        cdef uint32_t i = h & (self.cap - 1)
        cdef Flow* f
        while True:
            f = self.slots[i]
            if f == NULL:
                return NULL
            if f.hash == h and memcmp(&f.key, k, sizeof(FlowKey)) == 0:
                return f
            i = (i + 1) & (self.cap - 1)

    cdef int insert(self, Flow* f) noexcept nogil:
        cdef uint32_t i
        if (self.count + 1) * 2 > self.cap and self.grow() < 0:
            return -1
        i = f.hash & (self.cap - 1)
        while self.slots[i] != NULL:
            i = (i + 1) & (self.cap - 1)
        self.slots[i] = f
        self.count += 1
        return 0

    cdef int grow(self) noexcept nogil:
        cdef uint32_t ncap = self.cap * 2, i, j
        cdef Flow** ns = <Flow**>calloc(ncap, sizeof(Flow*))
        if ns == NULL:
            return -1
        for i in range(self.cap):
            if self.slots[i] != NULL:
                j = self.slots[i].hash & (ncap - 1)
                while ns[j] != NULL:
                    j = (j + 1) & (ncap - 1)
                ns[j] = self.slots[i]
        free(self.slots)
        self.slots = ns
        self.cap = ncap
        return 0

    # backward-shift deletion keeps probe chains intact without tombstones
    cdef void remove(self, Flow* f) noexcept nogil:
        cdef uint32_t mask = self.cap - 1
        cdef uint32_t i = f.hash & mask, j, home
        while self.slots[i] != f:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self.slots[j] == NULL:
                break
            home = self.slots[j].hash & mask
            # move slots[j] into the hole at i if its home is not in (i, j]
            if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
                self.slots[i] = self.slots[j]
                i = j
        self.slots[i] = NULL
        self.count -= 1
