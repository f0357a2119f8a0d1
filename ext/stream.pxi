# stream: per-direction TCP reassembly.
#
# In-order bytes go straight from the capture buffer to the parser (no copy).
# Only out-of-order data is copied, into a sorted list bounded per direction
# and by the global memory budget. Sequence numbers are compared modulo 2^32.
# Where bytes were never captured the parser gets an explicit gap event.

cdef struct Seg:                # out-of-order bytes waiting for the hole before them
    Seg* next
    uint32_t seq
    uint32_t len                # bytes held
    uint32_t wlen               # bytes on the wire (more than len when snaplen cut them)
    int64_t ts
    uint8_t data[1]

cdef struct Half:               # one direction of a connection
    uint32_t isn
    uint32_t next_seq           # next byte the parser expects
    uint32_t fin_seq
    uint8_t seq_known
    uint8_t fin
    uint8_t eof                 # end of stream delivered to the parser
    uint8_t hole_acked          # the peer acknowledged bytes beyond a hole
    Seg* ooo
    uint32_t ooo_bytes
    H1 h1

cdef inline int32_t sdiff(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b)


# Hands bytes / gaps to the application layer of this flow, chosen by
# content on its first bytes, never by port.
cdef inline void app_data(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    if n == 0:
        return
    if f.app == APP_UNKNOWN:
        app_detect(eng, f, d, p, n)
    elif f.app == APP_H1 and not f.syn_seen and f.half[0].h1.msgs == 0 and f.half[1].h1.msgs == 0 \
            and (f.half[d].h1.state == H1_RESYNC or f.half[d].h1.state == H1_IDLE) \
            and sniff_start(p, n) == SL_NONE and h2_chain(p, n):
        # joined inside a body: HTTP/1 found nothing yet, and this segment
        # starts a chain of HTTP/2 frames
        h2_start(eng, f, True)
    if f.app == APP_H2:
        h2_data(eng, f, d, p, n, ts)
    elif f.app == APP_TLS:
        tls_data(eng, f, d, p, n, ts)
    else:
        h1_data(eng, f, d, p, n, ts)

cdef void app_detect(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n):
    if n >= 4 and h2_is_preface(p, n):
        if f.client < 0:
            f.client = d
        h2_start(eng, f, False).dir[d].preface = H2_PREFACE_LEN
        f.h2.dir[0].synced = f.h2.dir[1].synced = 1
    elif h2_is_server_settings(p, n) and f.client != d:
        if f.client < 0:
            f.client = 1 - d
        h2_start(eng, f, not f.syn_seen)
        f.h2.dir[d].synced = 1
        f.h2.dir[1 - d].synced = f.syn_seen
        f.h2.dir[1 - d].preface = H2_PREFACE_LEN     # skipped if it comes (checked)
    elif tls_hello_start(p, n):
        f.app = APP_TLS                 # tls_data reads the hello, as soon as six bytes are in
    elif not f.syn_seen and sniff_start(p, n) == SL_NONE and h2_chain(p, n):
        h2_start(eng, f, True)          # joined an HTTP/2 connection mid-stream
    else:
        f.app = APP_H1

cdef inline void app_gap(Engine eng, Flow* f, int d, uint64_t n):
    eng.gaps += 1
    eng.gap_bytes += n
    if f.app == APP_H2:
        h2_gap(eng, f, d, n)
    else:
        h1_gap(eng, f, d, n)


cdef void seg_free_all(Engine eng, Half* h) noexcept:
    cdef Seg* s = h.ooo
    cdef Seg* nx
    while s != NULL:
        nx = s.next
        eng.mem -= sizeof(Seg) + s.len
        free(s)
        s = nx
    h.ooo = NULL
    h.ooo_bytes = 0

cdef Seg* seg_new(Engine eng, uint32_t seq, const uint8_t* p, uint32_t n, uint32_t wlen, int64_t ts) noexcept:
    cdef Seg* s = <Seg*>malloc(sizeof(Seg) + n)
    if s == NULL:
        return NULL
    s.next = NULL
    s.seq = seq
    s.len = n
    s.wlen = wlen
    s.ts = ts
    memcpy(s.data, p, n)
    eng.mem += sizeof(Seg) + n
    return s

# Queues [seq, seq+n) ahead of the hole. Data already queued wins (first copy
# wins, as in the receiver's socket buffer); differing overlaps are counted.
cdef void ooo_insert(Engine eng, Half* h, uint32_t seq, const uint8_t* p, uint32_t n,
                     uint32_t wlen, int64_t ts) noexcept:
    cdef Seg** link = &h.ooo
    cdef Seg* cur
    cdef Seg* s
    cdef uint32_t a = seq, b = seq + n, lo, hi
    eng.ooo_segments += 1
    if n < wlen and h.ooo == NULL:
        s = seg_new(eng, seq, p, n, wlen, ts)
        if s != NULL:
            h.ooo = s
            h.ooo_bytes += n
        return
    while sdiff(b, a) > 0:
        cur = link[0]
        if cur == NULL or sdiff(cur.seq, a) > 0:
            # free space before `cur` (or at the end): [a, min(b, cur.seq))
            hi = b if cur == NULL or sdiff(b, cur.seq) <= 0 else cur.seq
            s = seg_new(eng, a, p + (a - seq), hi - a, hi - a, ts)
            if s == NULL:
                return
            s.next = cur
            link[0] = s
            h.ooo_bytes += hi - a
            link = &s.next
            a = hi
            continue
        if sdiff(cur.seq + cur.len, a) > 0:
            # overlap with queued data: compare, keep the queued copy
            hi = b if sdiff(b, cur.seq + cur.len) <= 0 else cur.seq + cur.len
            eng.overlaps += 1
            if memcmp(cur.data + (a - cur.seq), p + (a - seq), hi - a) != 0:
                eng.overlaps_diff += 1
            a = hi
        link = &cur.next

# Delivers queued segments that the parser can now take.
cdef void ooo_drain(Engine eng, Flow* f, int d):
    cdef Half* h = &f.half[d]
    cdef Seg* s
    cdef uint32_t off
    while h.ooo != NULL and sdiff(h.ooo.seq, h.next_seq) <= 0:
        s = h.ooo
        h.ooo = s.next
        h.ooo_bytes -= s.len
        off = h.next_seq - s.seq
        if off < s.wlen:
            if off < s.len:
                app_data(eng, f, d, s.data + off, s.len - off, s.ts)
            if s.wlen > s.len:
                app_gap(eng, f, d, s.wlen - (off if off > s.len else s.len))
            h.next_seq = s.seq + s.wlen
        eng.mem -= sizeof(Seg) + s.len
        free(s)
    if h.fin and not h.eof and h.next_seq == h.fin_seq:
        h.eof = 1
        h1_eof(eng, f, d, True)

# Skips the hole in front of the first queued segment (declares it lost).
cdef void ooo_skip_hole(Engine eng, Flow* f, int d):
    cdef Half* h = &f.half[d]
    if h.ooo == NULL:
        return
    app_gap(eng, f, d, h.ooo.seq - h.next_seq)
    h.next_seq = h.ooo.seq
    ooo_drain(eng, f, d)

# The peer acknowledged `ack`: bytes below it that we never saw are lost to
# the capture (the sender will not repeat what the receiver confirmed). A
# mirror may still deliver them late, so the hole is only noted here and
# declared by the next packet (stream_hole), unless that packet fills it.
cdef inline void stream_ack(Half* h, uint32_t ack) noexcept:
    if h.seq_known and sdiff(ack, h.next_seq) > 0 and (
            h.ooo != NULL and sdiff(ack, h.ooo.seq) >= 0
            or h.fin and not h.eof and sdiff(ack, h.fin_seq) > 0):
        h.hole_acked = 1

# Declares the hole in front of the queued data (or of the FIN) lost.
cdef void stream_hole(Engine eng, Flow* f, int d):
    cdef Half* h = &f.half[d]
    h.hole_acked = 0
    if h.ooo != NULL:
        ooo_skip_hole(eng, f, d)
    elif h.fin and not h.eof and h.next_seq != h.fin_seq:
        app_gap(eng, f, d, h.fin_seq - h.next_seq)
        h.next_seq = h.fin_seq
        h.eof = 1
        h1_eof(eng, f, d, True)

# One TCP segment of direction d.
cdef void stream_segment(Engine eng, Flow* f, int d, Segment* s):
    cdef Half* h = &f.half[d]
    cdef uint32_t seq = s.seq
    cdef const uint8_t* p = s.payload
    cdef uint32_t n = s.caplen, w = s.wirelen, off
    cdef int32_t rel
    cdef uint32_t end = seq + (1 if s.flags & TH_SYN else 0) + w    # where a FIN would sit
    if f.half[1 - d].hole_acked:
        stream_hole(eng, f, 1 - d)      # acknowledged by an earlier packet: lost for good
    if s.flags & TH_ACK:
        stream_ack(&f.half[1 - d], s.ack)
    if s.flags & TH_SYN:
        if not h.seq_known:
            h.isn = seq
            h.next_seq = seq + 1
            h.seq_known = 1
        seq += 1
    if w:
        if not h.seq_known:
            h.next_seq = seq        # joined mid-stream
            h.seq_known = 1
        if (f.app == APP_H1 or f.app == APP_TLS) and h.h1.state == H1_OFF:
            h.next_seq = seq + w if sdiff(seq + w, h.next_seq) > 0 else h.next_seq
        else:
            rel = sdiff(seq, h.next_seq)
            if rel < 0:
                if rel + <int64_t>w <= 0:
                    eng.retransmissions += 1       # nothing new (incl. keep-alive probes)
                    w = 0
                else:
                    off = <uint32_t>(-rel)
                    eng.overlaps += 1
                    p += off if off < n else n
                    n = n - off if off < n else 0
                    w -= off
                    seq = h.next_seq
                    rel = 0
            if w and rel > 0:
                ooo_insert(eng, h, seq, p, n, w, s.ts)
                if h.ooo_bytes > eng.ooo_cap:
                    eng.ooo_overflows += 1
                    ooo_skip_hole(eng, f, d)
            elif w:
                if h.ooo != NULL and sdiff(seq + w, h.ooo.seq) > 0:
                    # runs into queued data, which was first and wins: queue the tail
                    off = h.ooo.seq - seq
                    ooo_insert(eng, h, h.ooo.seq, p + off, n - off if n > off else 0, w - off, s.ts)
                    n = n if n < off else off
                    w = off
                h.next_seq = seq + w
                app_data(eng, f, d, p, n, s.ts)
                if w > n:
                    app_gap(eng, f, d, w - n)       # snaplen cut the segment
                if h.ooo != NULL:
                    ooo_drain(eng, f, d)
    if s.flags & TH_FIN and not h.fin and h.seq_known:
        h.fin = 1
        h.fin_seq = end
    if h.fin and not h.eof and h.ooo == NULL and h.next_seq == h.fin_seq:
        h.eof = 1
        h1_eof(eng, f, d, True)
    if h.hole_acked:
        stream_hole(eng, f, d)

# Flow end: deliver whatever is queued (declaring the holes) and close both
# directions.
cdef void stream_finish(Engine eng, Flow* f):
    cdef int d
    for d in range(2):
        while f.half[d].ooo != NULL or f.half[d].fin and not f.half[d].eof:
            stream_hole(eng, f, d)
    for d in range(2):
        if not f.half[d].eof:
            f.half[d].eof = 1
            h1_eof(eng, f, d, False)
        seg_free_all(eng, &f.half[d])
    h2_finish(eng, f)
    tls_emit(eng, f)
