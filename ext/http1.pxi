# http1: incremental HTTP/1.x parser, one per direction, fed reassembled bytes.
#
# Sans-IO in the h11 sense: it eats bytes, gap notices and end-of-stream, and
# moves through a few explicit states. Heads are parsed in place when a segment
# holds them whole (the common case) and copied into a bounded buffer only
# when they straddle segments. Python objects appear only when a head is
# complete (one Txn per exchange, its strings).

from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.string cimport memchr

cdef enum H1State:
    H1_IDLE = 0         # at a message boundary
    H1_HEAD             # collecting start line + header fields
    H1_BODY_LEN         # Content-Length body
    H1_CHUNK_SIZE       # chunk-size line
    H1_CHUNK_DATA
    H1_CHUNK_END        # CRLF after chunk data
    H1_TRAILERS
    H1_BODY_EOF         # body delimited by connection close
    H1_RESYNC           # framing lost: look for the next start line
    H1_OFF              # not (or no longer) HTTP/1 on this direction

cdef enum:
    H1_MAX_HEAD = 65536         # header block (or chunk line / trailer block) cap
    H1_MAX_NAME = 128

# start-line kinds
cdef enum:
    SL_NONE = 0
    SL_REQUEST = 1
    SL_STATUS = 2
    SL_REQUEST09 = 3
    SL_MAYBE = 4                # too short to tell; plausible so far
    SL_H2_PREFACE = 5           # "PRI * HTTP/2.0": the connection is HTTP/2

cdef enum H1Anomaly:
    HA_BAD_START_LINE = 0
    HA_HEAD_TOO_LARGE
    HA_BAD_HEADER_LINE
    HA_BAD_CONTENT_LENGTH
    HA_TE_NOT_CHUNKED
    HA_BAD_CHUNK
    HA_RESYNC
    HA_GAP_IN_HEAD
    HA_TRUNCATED_MESSAGE
    HA_INTERIM_WITHOUT_REQUEST
    HA_NOT_HTTP
    HA_COUNT

H1_ANOMALY_NAMES = ("bad_start_line", "header_block_too_large", "bad_header_line",
                    "bad_content_length", "te_not_chunked", "bad_chunk", "resync",
                    "gap_in_head", "truncated_message", "interim_without_request",
                    "not_http_connection")

cdef struct H1:
    uint8_t state
    uint8_t kind                # start-line kind of the head being collected
    uint8_t from_resync         # the head being collected was found by resync
    uint8_t line_start          # next byte starts a line (resync candidates)
    uint8_t gap                 # bytes of the current message were lost
    uint8_t switch_pending      # an Upgrade/CONNECT request awaits its answer
    uint32_t msgs               # messages finished in this direction
    uint64_t remaining          # body / chunk bytes still expected
    int64_t body                # body bytes after de-chunking
    int64_t wire                # body bytes on the wire
    int64_t start_ts            # packet time of the message's first byte
    int64_t last_ts
    uint8_t* buf                # partial head / chunk line, bounded by H1_MAX_HEAD
    uint32_t len
    uint32_t cap
    uint32_t scan               # start of the first incomplete line in buf
    PyObject* cur               # Txn the current message belongs to (owned)


cdef inline bint is_tchar(uint8_t c) noexcept nogil:
    # RFC 9110 token characters
    if c >= b'a' and c <= b'z' or c >= b'A' and c <= b'Z' or c >= b'0' and c <= b'9':
        return True
    return c != 0 and memchr(b"!#$%&'*+-.^_`|~", c, 15) != NULL

cdef inline bint is_digit(uint8_t c) noexcept nogil:
    return c >= b'0' and c <= b'9'

cdef inline uint8_t lower(uint8_t c) noexcept nogil:
    return c + 32 if c >= b'A' and c <= b'Z' else c

cdef inline bint is_version(const uint8_t* p, uint32_t n) noexcept nogil:
    return (n == 8 and memcmp(p, b"HTTP/", 5) == 0 and is_digit(p[5]) and p[6] == b'.'
            and is_digit(p[7]))

# Classifies a complete start line (no CR/LF). strict = found by resync, where
# a false positive inside a body costs more: uppercase methods and HTTP/1.x only.
cdef int classify_line(const uint8_t* p, uint32_t n, bint strict) noexcept nogil:
    cdef uint32_t i = 0, t0, t1
    if n >= 12 and is_version(p, 8) and p[8] == b' ' and (not strict or p[5] == b'1'):
        if is_digit(p[9]) and is_digit(p[10]) and is_digit(p[11]) and (n == 12 or p[12] == b' '):
            return SL_STATUS
        return SL_NONE
    while i < n and i < 32 and is_tchar(p[i]) and (not strict or p[i] >= b'A' and p[i] <= b'Z'):
        i += 1
    if i == 0 or i >= n or p[i] != b' ' or strict and i < 3:
        return SL_NONE
    t0 = i + 1
    t1 = t0
    while t1 < n and p[t1] != b' ' and p[t1] > 0x20 and p[t1] != 0x7f:
        t1 += 1
    if t1 == t0:
        return SL_NONE
    if t1 == n:
        # "GET /path" with no version: HTTP/0.9, only a GET
        if not strict and i == 3 and memcmp(p, b"GET", 3) == 0:
            return SL_REQUEST09
        return SL_NONE
    while t1 < n and p[t1] == b' ':
        t1 += 1
    if is_version(p + t1, n - t1) and (p[t1 + 5] == b'1' or not strict and p[t1 + 5] == b'0'):
        return SL_REQUEST
    if not strict and n == 14 and memcmp(p, H2_PREFACE, 14) == 0:
        return SL_H2_PREFACE
    return SL_NONE

# Is p[:n] (possibly an incomplete line) plausibly the start of a message?
cdef int sniff_start(const uint8_t* p, uint32_t n) noexcept nogil:
    cdef uint32_t i = 0
    cdef uint32_t k = n if n < 5 else 5
    if memcmp(p, b"HTTP/", k) == 0:
        return SL_STATUS if n >= 5 else SL_MAYBE
    while i < n and i < 32 and is_tchar(p[i]):
        i += 1
    if i == n and i < 32:
        return SL_MAYBE
    if i > 0 and i < n and p[i] == b' ':
        return SL_REQUEST
    return SL_NONE

# Offset of the next plausible start line in p[:n] (n when none). A line start
# is the first byte when h.line_start is set, else any byte after a LF.
cdef uint32_t resync_scan(H1* h, const uint8_t* p, uint32_t n, int want) noexcept nogil:
    cdef uint32_t i = 0, j
    cdef const uint8_t* q
    cdef const uint8_t* nl
    cdef int k
    if not h.line_start:
        q = <const uint8_t*>memchr(p, b'\n', n)
        if q == NULL:
            return n
        i = <uint32_t>(q - p) + 1
    while i < n:
        nl = <const uint8_t*>memchr(p + i, b'\n', n - i)
        j = <uint32_t>(nl - p) if nl != NULL else n
        if nl != NULL:
            k = classify_line(p + i, j - i - (1 if j > i and p[j - 1] == b'\r' else 0), True)
        else:
            k = sniff_start(p + i, j - i)     # line continues in the next segment
            if k == SL_MAYBE:
                k = want if want else SL_REQUEST
        if k != SL_NONE and k != SL_REQUEST09 and (want == 0 or k == want):
            return i
        i = j + 1
    return n


cdef inline bint h1_buf_append(H1* h, const uint8_t* p, uint32_t n, Engine eng) noexcept:
    cdef uint32_t need = h.len + n
    cdef uint32_t ncap
    cdef uint8_t* nb
    if need > H1_MAX_HEAD:
        return False
    if need > h.cap:
        ncap = h.cap * 2 if h.cap else 1024
        while ncap < need:
            ncap *= 2
        nb = <uint8_t*>realloc(h.buf, ncap)
        if nb == NULL:
            return False
        eng.mem += ncap - h.cap
        h.buf = nb
        h.cap = ncap
    memcpy(h.buf + h.len, p, n)
    h.len = need
    return True

cdef inline void h1_buf_free(H1* h, Engine eng) noexcept:
    if h.buf != NULL:
        eng.mem -= h.cap
        free(h.buf)
        h.buf = NULL
    h.len = h.cap = h.scan = 0


# Where does the head starting at b[0] end? Scans lines from `from_`. Returns
# the index past the terminating empty line, 0 while incomplete (h.scan = start
# of the incomplete line) or -1 on a start line that is not HTTP. Sets h.kind.
cdef long head_end(H1* h, const uint8_t* b, uint32_t from_, uint32_t n) noexcept nogil:
    cdef uint32_t s = from_, e, ll
    cdef const uint8_t* q
    while s < n:
        q = <const uint8_t*>memchr(b + s, b'\n', n - s)
        if q == NULL:
            break
        e = <uint32_t>(q - b)
        ll = e - s - (1 if e > s and b[e - 1] == b'\r' else 0)
        if s == 0:
            h.kind = classify_line(b, ll, h.from_resync)
            if h.kind == SL_NONE:
                return -1
            if h.kind == SL_REQUEST09:
                return e + 1
            if h.kind == SL_H2_PREFACE:
                return -2
        elif ll == 0:
            return e + 1
        s = e + 1
    h.scan = s
    return 0


cdef inline object dec(const uint8_t* p, uint32_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "replace")

# Header names, methods, media types and user agents repeat across messages:
# a small direct-mapped cache hands out the same str object instead of
# decoding and allocating one per field.
cdef enum:
    SC_SLOTS = 2048
    SC_MAX = 56

cdef struct StrCacheSlot:
    uint32_t hash
    uint32_t len
    char data[SC_MAX]
    PyObject* obj

cdef StrCacheSlot str_cache[SC_SLOTS]

cdef object cached_str(const uint8_t* p, uint32_t n, bint to_lower):
    cdef char tmp[SC_MAX]
    cdef uint32_t h = 2166136261u, i
    cdef StrCacheSlot* sl
    if n > SC_MAX:
        if to_lower:
            n = H1_MAX_NAME if n > H1_MAX_NAME else n
            return dec(p, n).lower()
        return dec(p, n)
    for i in range(n):
        tmp[i] = lower(p[i]) if to_lower else p[i]
        h = (h ^ <uint8_t>tmp[i]) * 16777619u
    sl = &str_cache[h & (SC_SLOTS - 1)]
    if sl.obj != NULL and sl.hash == h and sl.len == n and memcmp(sl.data, tmp, n) == 0:
        return <object>sl.obj
    o = PyUnicode_DecodeUTF8(tmp, n, "replace")
    Py_XDECREF(sl.obj)
    Py_INCREF(o)
    sl.obj = <PyObject*>o
    sl.hash = h
    sl.len = n
    memcpy(sl.data, tmp, n)
    return o

cdef inline object ascii_lower(const uint8_t* p, uint32_t n):
    return cached_str(p, n, True)

cdef inline bint name_is(const uint8_t* p, uint32_t n, const char* lit, uint32_t ln) noexcept nogil:
    cdef uint32_t i
    if n != ln:
        return False
    for i in range(n):
        if lower(p[i]) != <uint8_t>lit[i]:
            return False
    return True

# does the comma list p[:n] contain `tok` (case-insensitive)?
cdef bint has_token(const uint8_t* p, uint32_t n, const char* tok, uint32_t tl) noexcept nogil:
    cdef uint32_t i = 0, s, e
    while i < n:
        while i < n and (p[i] == b' ' or p[i] == b'\t' or p[i] == b','):
            i += 1
        s = i
        while i < n and p[i] != b',' and p[i] != b';':
            i += 1
        e = i
        while e > s and (p[e - 1] == b' ' or p[e - 1] == b'\t'):
            e -= 1
        if name_is(p + s, e - s, tok, tl):
            return True
        while i < n and p[i] != b',':
            i += 1
    return False

# is the last transfer coding of p[:n] "chunked"?
cdef bint last_is_chunked(const uint8_t* p, uint32_t n) noexcept nogil:
    cdef uint32_t e = n, s
    while e > 0 and (p[e - 1] == b' ' or p[e - 1] == b'\t' or p[e - 1] == b','):
        e -= 1
    s = e
    while s > 0 and p[s - 1] != b',':
        s -= 1
    while s < e and (p[s] == b' ' or p[s] == b'\t'):
        s += 1
    return name_is(p + s, e - s, b"chunked", 7)


cdef struct HeadInfo:
    int kind
    const uint8_t* method
    uint32_t method_len
    const uint8_t* target
    uint32_t target_len
    const uint8_t* version
    int status
    int64_t content_length      # -1 = absent
    bint cl_bad
    bint te_present
    bint te_chunked
    bint conn_upgrade
    const uint8_t* upgrade
    uint32_t upgrade_len
    const uint8_t* host
    uint32_t host_len
    const uint8_t* ctype
    uint32_t ctype_len
    const uint8_t* cenc
    uint32_t cenc_len
    const uint8_t* ua
    uint32_t ua_len


cdef inline void trim(const uint8_t** p, uint32_t* n) noexcept nogil:
    while n[0] and (p[0][0] == b' ' or p[0][0] == b'\t'):
        p[0] += 1
        n[0] -= 1
    while n[0] and (p[0][n[0] - 1] == b' ' or p[0][n[0] - 1] == b'\t'):
        n[0] -= 1

# Parses a complete head b[:n] into hi and the list of lowercased field names.
cdef list parse_head(const uint8_t* b, uint32_t n, int kind, HeadInfo* hi, Engine eng, list kept):
    cdef list names = []
    cdef const uint8_t* q
    cdef uint32_t s, e, ll, c, vl, i
    cdef const uint8_t* v
    cdef int64_t x
    memset(hi, 0, sizeof(HeadInfo))
    hi.kind = kind
    hi.content_length = -1
    q = <const uint8_t*>memchr(b, b'\n', n)
    e = <uint32_t>(q - b)
    ll = e - (1 if e > 0 and b[e - 1] == b'\r' else 0)
    if kind == SL_STATUS:
        hi.version = b
        hi.status = (b[9] - 48) * 100 + (b[10] - 48) * 10 + (b[11] - 48)
    else:
        i = 0
        while b[i] != b' ':
            i += 1
        hi.method = b
        hi.method_len = i
        while b[i] == b' ':
            i += 1
        hi.target = b + i
        while i < ll and b[i] != b' ':
            i += 1
        hi.target_len = <uint32_t>(b + i - hi.target)
        if kind == SL_REQUEST:
            hi.version = b + ll - 8
        return names if kind == SL_REQUEST09 else _parse_fields(b, n, e + 1, hi, names, eng, kept)
    return _parse_fields(b, n, e + 1, hi, names, eng, kept)

# Fills names (lowercased field names) and hi; with `kept` (enrichment on) also
# the (name, value) pairs of the fields enrichment inspects.
cdef list _parse_fields(const uint8_t* b, uint32_t n, uint32_t s, HeadInfo* hi, list names, Engine eng,
                        list kept):
    cdef const uint8_t* q
    cdef const uint8_t* v
    cdef uint32_t e, ll, c, vl, i
    cdef int64_t x
    while s < n:
        q = <const uint8_t*>memchr(b + s, b'\n', n - s)
        if q == NULL:
            break
        e = <uint32_t>(q - b)
        ll = e - s - (1 if e > s and b[e - 1] == b'\r' else 0)
        if ll == 0:
            break
        if b[s] == b' ' or b[s] == b'\t':
            s = e + 1               # obs-fold continuation: the value is not kept
            continue
        q = <const uint8_t*>memchr(b + s, b':', ll)
        if q == NULL:
            eng.h1_anom[<int>HA_BAD_HEADER_LINE] += 1
            s = e + 1
            continue
        c = <uint32_t>(q - (b + s))
        while c > 0 and (b[s + c - 1] == b' ' or b[s + c - 1] == b'\t'):
            c -= 1
        v = q + 1
        vl = ll - <uint32_t>(v - (b + s))
        trim(&v, &vl)
        name = ascii_lower(b + s, c)
        names.append(name)
        if kept is not None and field_kept(b + s, c):
            kept.append((name, dec(v, vl)))
        if name_is(b + s, c, b"content-length", 14):
            x = 0
            i = 0
            while i < vl and is_digit(v[i]) and x < (1LL << 50):
                x = x * 10 + (v[i] - 48)
                i += 1
            if i == 0 or i < vl and v[i] != b',' or hi.content_length >= 0 and hi.content_length != x:
                hi.cl_bad = True
            hi.content_length = x
        elif name_is(b + s, c, b"transfer-encoding", 17):
            hi.te_present = True
            hi.te_chunked = last_is_chunked(v, vl)
        elif name_is(b + s, c, b"host", 4):
            if hi.host == NULL:
                hi.host, hi.host_len = v, vl
        elif name_is(b + s, c, b"content-type", 12):
            if hi.ctype == NULL:
                hi.ctype, hi.ctype_len = v, vl
        elif name_is(b + s, c, b"content-encoding", 16):
            if hi.cenc == NULL:
                hi.cenc, hi.cenc_len = v, vl
        elif name_is(b + s, c, b"user-agent", 10):
            if hi.ua == NULL:
                hi.ua, hi.ua_len = v, vl
        elif name_is(b + s, c, b"connection", 10):
            if has_token(v, vl, b"upgrade", 7):
                hi.conn_upgrade = True
        elif name_is(b + s, c, b"upgrade", 7):
            hi.upgrade, hi.upgrade_len = v, vl
        s = e + 1
    return names

cdef inline object opt_str(const uint8_t* p, uint32_t n):
    return cached_str(p, n, False) if p != NULL else None


# ---------------------------------------------------------------- message events

cdef inline Txn h1_cur(H1* h):
    return <Txn>h.cur if h.cur != NULL else None

cdef inline void h1_set_cur(H1* h, Txn t):
    Py_XDECREF(h.cur)
    h.cur = NULL
    if t is not None:
        Py_INCREF(t)
        h.cur = <PyObject*>t

cdef void h1_reset_msg(H1* h, int state) noexcept:
    h.state = state
    h.body = h.wire = 0
    h.remaining = 0
    h.gap = 0
    h.kind = SL_NONE
    h.from_resync = 0
    h.len = h.scan = 0

# The current message of direction d is over (complete, or cut short when
# `cut` is set: the flow ended or framing was lost).
cdef void h1_msg_end(Engine eng, Flow* f, int d, int64_t ts, bint cut, int next_state):
    cdef H1* h = &f.half[d].h1
    cdef Txn t = h1_cur(h)
    if t is not None:
        if d == f.client:
            t.req_end = ts
            t.req_body, t.req_wire = h.body, h.wire
            if h.gap:
                t.flags |= TF_REQUEST_GAP
            if cut:
                t.flags |= TF_REQUEST_TRUNCATED
            t.req_done = True
        else:
            t.resp_end = ts
            t.resp_body, t.resp_wire = h.body, h.wire
            if h.gap:
                t.flags |= TF_RESPONSE_GAP
            if cut:
                t.flags |= TF_RESPONSE_TRUNCATED
            t.resp_done = True
        h1_set_cur(h, None)
        txn_maybe_emit(eng, t)
    h.msgs += 1
    h1_reset_msg(h, next_state)

cdef void h1_to_resync(Engine eng, H1* h) noexcept:
    eng.h1_anom[<int>HA_RESYNC] += 1
    h1_reset_msg(h, H1_RESYNC)

cdef void h1_off(Flow* f) noexcept:
    f.half[0].h1.state = H1_OFF
    f.half[1].h1.state = H1_OFF

# A head b[:n] of `kind` is complete on direction d.
cdef void h1_head_done(Engine eng, Flow* f, int d, const uint8_t* b, uint32_t n, int kind, int64_t ts):
    cdef H1* h = &f.half[d].h1
    cdef HeadInfo hi
    cdef Txn t
    cdef list pending
    cdef bint is_req = kind == SL_REQUEST or kind == SL_REQUEST09
    cdef int k
    if f.client < 0:
        f.client = d if is_req else 1 - d
    elif is_req != (d == f.client):
        # a request where responses flow (or vice versa): not a boundary we trust
        eng.h1_anom[<int>HA_BAD_START_LINE] += 1
        h1_to_resync(eng, h)
        return
    kept = [] if eng.keep_fields else None
    names = parse_head(b, n, kind, &hi, eng, kept)
    pending = flow_pending(f)
    if is_req:
        t = txn_new(eng, f)
        t.method = cached_str(hi.method, hi.method_len, False)
        t.target = dec(hi.target, hi.target_len)
        t.version = cached_str(hi.version + 5, 3, False) if hi.version != NULL else "0.9"
        t.host = opt_str(hi.host, hi.host_len)
        t.user_agent = opt_str(hi.ua, hi.ua_len)
        t.req_content_type = opt_str(hi.ctype, hi.ctype_len)
        t.req_content_encoding = opt_str(hi.cenc, hi.cenc_len)
        t.req_headers = names
        t.req_fields = kept
        txn_body_start(eng, t, 0, hi.ctype, hi.ctype_len)
        t.req_start = h.start_ts
        t.is_head = hi.method_len == 4 and memcmp(hi.method, b"HEAD", 4) == 0
        t.is_connect = hi.method_len == 7 and memcmp(hi.method, b"CONNECT", 7) == 0
        t.wants_upgrade = hi.upgrade != NULL and hi.conn_upgrade
        if t.wants_upgrade:
            t.protocol_switch = ascii_lower(hi.upgrade, hi.upgrade_len).split(",")[0].split("/")[0].strip()
        elif t.is_connect:
            t.protocol_switch = "connect"
        h.switch_pending = t.wants_upgrade or t.is_connect
        pending.append(t)
        h1_set_cur(h, t)
        if hi.te_present:
            if hi.te_chunked:
                h.state = H1_CHUNK_SIZE
                return
            eng.h1_anom[<int>HA_TE_NOT_CHUNKED] += 1   # RFC 9112 6.3: no reliable framing
        elif hi.cl_bad:
            eng.h1_anom[<int>HA_BAD_CONTENT_LENGTH] += 1
        elif hi.content_length > 0:
            h.state = H1_BODY_LEN
            h.remaining = hi.content_length
            return
        h1_msg_end(eng, f, d, ts, False, H1_IDLE)
        return
    # response
    if hi.status < 200 and hi.status != 101:
        if pending:
            t = <Txn>pending[0]
            if t.interim is None:
                t.interim = []
            t.interim.append(hi.status)
        else:
            eng.h1_anom[<int>HA_INTERIM_WITHOUT_REQUEST] += 1
        h.msgs += 1
        h1_reset_msg(h, H1_IDLE)
        return
    if pending:
        t = <Txn>pending.pop(0)
    else:
        t = txn_new(eng, f)
        t.flags |= TF_NO_REQUEST
    t.status = STATUS_CODES[hi.status]
    t.resp_version = cached_str(hi.version + 5, 3, False)
    t.resp_content_type = opt_str(hi.ctype, hi.ctype_len)
    t.resp_content_encoding = opt_str(hi.cenc, hi.cenc_len)
    t.resp_headers = names
    t.resp_fields = kept
    txn_body_start(eng, t, 1, hi.ctype, hi.ctype_len)
    t.resp_start = h.start_ts
    t.response_seen = True
    h1_set_cur(h, t)
    if hi.status == 101 or t.is_connect and hi.status < 300:
        # the connection now carries another protocol from the next byte on
        if hi.status == 101 and t.protocol_switch is None:
            t.protocol_switch = ascii_lower(hi.upgrade, hi.upgrade_len) if hi.upgrade != NULL else "unknown"
        h1_msg_end(eng, f, d, ts, False, H1_OFF)
        h1_off(f)
        if hi.status == 101 and t.protocol_switch == "h2c":
            h2_upgrade(eng, f)
        elif t.is_connect:
            # a tunnel: what it carries is found by content again (TLS, h2c, HTTP/1)
            f.app = APP_UNKNOWN
            for k in range(2):
                h1_reset_msg(&f.half[k].h1, H1_IDLE)
                f.half[k].h1.msgs = 0
                f.half[k].h1.switch_pending = 0
        return
    if t.protocol_switch is not None:
        t.protocol_switch = None         # the upgrade or CONNECT was refused
    f.half[f.client].h1.switch_pending = 0
    if t.is_head or hi.status == 204 or hi.status == 304:
        h1_msg_end(eng, f, d, ts, False, H1_IDLE)
    elif hi.te_present:
        h.state = H1_CHUNK_SIZE if hi.te_chunked else H1_BODY_EOF
    elif hi.cl_bad:
        eng.h1_anom[<int>HA_BAD_CONTENT_LENGTH] += 1
        h.state = H1_BODY_EOF
    elif hi.content_length > 0:
        h.state = H1_BODY_LEN
        h.remaining = hi.content_length
    elif hi.content_length == 0:
        h1_msg_end(eng, f, d, ts, False, H1_IDLE)
    else:
        h.state = H1_BODY_EOF


# Collects a head. Returns the bytes of p consumed.
cdef uint32_t h1_head(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    cdef H1* h = &f.half[d].h1
    cdef long e
    cdef uint32_t old = h.len, take
    if h.len == 0:
        e = head_end(h, p, 0, n)
        if e == -2:
            h1_to_h2(eng, f, d, NULL, 0)
            return 0
        if e > 0:
            h1_head_done(eng, f, d, p, <uint32_t>e, h.kind, ts)
            return <uint32_t>e
    else:
        take = n if n <= H1_MAX_HEAD - h.len else H1_MAX_HEAD - h.len
        if not h1_buf_append(h, p, take, eng):
            take = 0
        e = head_end(h, h.buf, h.scan, h.len)
        if e == -2:
            # the preface arrived in pieces: HTTP/2 gets what was collected
            h1_to_h2(eng, f, d, h.buf, old)
            return 0                    # this segment's bytes go to HTTP/2 next
        if e > 0:
            # parse in the buffer, then give back what belongs to the next message
            h1_head_done(eng, f, d, h.buf, <uint32_t>e, h.kind, ts)
            h.len = h.scan = 0
            return <uint32_t>(e - old)
        if e == 0 and take == n:
            return n
        if e == 0:
            eng.h1_anom[<int>HA_HEAD_TOO_LARGE] += 1
            h1_to_resync(eng, h)
            h.line_start = 0
            return take
    if e < 0:
        return h1_bad_start(eng, f, d, p, n, old)
    # incomplete: keep it for the next segment
    if not h1_buf_append(h, p, n, eng):
        eng.h1_anom[<int>HA_HEAD_TOO_LARGE] += 1
        h1_to_resync(eng, h)
        h.line_start = 0
    return n

# The client's first line is HTTP/2's connection preface (sent in small
# pieces, so content detection could not tell it from "POST"/"PUT").
cdef void h1_to_h2(Engine eng, Flow* f, int d, const uint8_t* held, uint32_t n):
    cdef bytes copy = (<const char*>held)[:n] if n else b""
    if f.client < 0:
        f.client = d
    h2_start(eng, f, False).dir[d].preface = H2_PREFACE_LEN
    f.h2.dir[0].synced = f.h2.dir[1].synced = 1
    h1_off(f)
    h1_reset_msg(&f.half[d].h1, H1_OFF)
    if n:
        h2_data(eng, f, d, <const uint8_t*>copy, n, f.half[d].h1.last_ts)

# The collected start line is not HTTP. At the very start of a connection that
# saw its handshake, the connection is not HTTP/1; elsewhere resynchronise past
# the line.
cdef uint32_t h1_bad_start(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, uint32_t old):
    cdef H1* h = &f.half[d].h1
    cdef const uint8_t* q
    cdef uint32_t skip
    if h.msgs == 0 and not h.from_resync and (f.syn_seen or h.switch_pending):
        if not h.switch_pending and d == f.client:
            eng.h1_anom[<int>HA_NOT_HTTP] += 1
            h1_off(f)
        else:
            h.state = H1_OFF
        h.len = 0
        return n
    if h.switch_pending:
        h.state = H1_OFF                # bytes of the protocol the client asked for
        return n
    eng.h1_anom[<int>HA_BAD_START_LINE] += 1
    h1_to_resync(eng, h)
    h.line_start = 0
    # the first line ends inside p; skip past it
    q = <const uint8_t*>memchr(p, b'\n', n)
    if q == NULL:
        return n
    skip = <uint32_t>(q - p) + 1
    h.line_start = 1
    return skip


# Reads one line (chunk size, trailer) that may straddle segments. Returns the
# bytes of p consumed; *line/*ll are set when a whole line is available.
cdef uint32_t h1_line(Engine eng, H1* h, const uint8_t* p, uint32_t n,
                      const uint8_t** line, uint32_t* ll) noexcept:
    cdef const uint8_t* q = <const uint8_t*>memchr(p, b'\n', n)
    cdef uint32_t k
    line[0] = NULL
    if q == NULL:
        if not h1_buf_append(h, p, n, eng):
            ll[0] = 0xFFFFFFFF
        return n
    k = <uint32_t>(q - p) + 1
    if h.len:
        if not h1_buf_append(h, p, k, eng):
            ll[0] = 0xFFFFFFFF
            return k
        line[0] = h.buf
        ll[0] = h.len - 1
    else:
        line[0] = p
        ll[0] = k - 1
    if ll[0] > 0 and line[0][ll[0] - 1] == b'\r':
        ll[0] -= 1
    return k


# ---------------------------------------------------------------- stream events

cdef void h1_data(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    cdef H1* h = &f.half[d].h1
    cdef uint32_t k, ll
    cdef uint64_t x
    cdef const uint8_t* line
    cdef int kind
    cdef Txn t
    cdef list pending
    h.last_ts = ts
    if h.state == H1_RESYNC:
        h.line_start = 1        # segments often start messages: a candidate too
    while n > 0:
        if h.state == H1_BODY_LEN:
            k = n if n < h.remaining else <uint32_t>h.remaining
            if h.cur != NULL:
                txn_body_add(eng, <Txn>h.cur, d != f.client, p, k)
            h.body += k
            h.wire += k
            h.remaining -= k
            p += k
            n -= k
            if h.remaining == 0:
                h1_msg_end(eng, f, d, ts, False, H1_IDLE)
        elif h.state == H1_IDLE:
            if p[0] == b'\r' or p[0] == b'\n':      # stray CRLF between messages
                p += 1
                n -= 1
                continue
            kind = sniff_start(p, n)
            if kind == SL_NONE:
                if d != f.client and f.client >= 0:
                    pending = flow_pending(f)
                    if pending and (<Txn>pending[0]).version == "0.9":
                        # HTTP/0.9 answer: no head, body until close
                        t = <Txn>pending.pop(0)
                        t.resp_start = ts
                        t.response_seen = True
                        h1_set_cur(h, t)
                        h.state = H1_BODY_EOF
                        continue
                h.start_ts = ts
                k = h1_bad_start(eng, f, d, p, n, 0)
                p += k
                n -= k
                continue
            h.state = H1_HEAD
            h.start_ts = ts
        elif h.state == H1_HEAD:
            k = h1_head(eng, f, d, p, n, ts)
            p += k
            n -= k
        elif h.state == H1_CHUNK_DATA:
            k = n if n < h.remaining else <uint32_t>h.remaining
            if h.cur != NULL:
                txn_body_add(eng, <Txn>h.cur, d != f.client, p, k)
            h.body += k
            h.wire += k
            h.remaining -= k
            p += k
            n -= k
            if h.remaining == 0:
                h.state = H1_CHUNK_END
        elif h.state == H1_CHUNK_END:
            # CRLF (or a bare LF) closing the chunk data
            if p[0] == b'\r' and h.remaining == 0:
                h.remaining = 1
            elif p[0] == b'\n':
                h.state = H1_CHUNK_SIZE
                h.remaining = 0
            else:
                eng.h1_anom[<int>HA_BAD_CHUNK] += 1
                h.state = H1_CHUNK_SIZE
                h.remaining = 0
                continue
            h.wire += 1
            p += 1
            n -= 1
        elif h.state == H1_CHUNK_SIZE or h.state == H1_TRAILERS:
            k = h1_line(eng, h, p, n, &line, &ll)
            h.wire += k
            p += k
            n -= k
            if line == NULL:
                if ll == 0xFFFFFFFF:
                    eng.h1_anom[<int>HA_BAD_CHUNK] += 1
                    h1_msg_end(eng, f, d, ts, True, H1_RESYNC)
                continue
            h.len = 0
            if h.state == H1_TRAILERS:
                if ll == 0:
                    h1_msg_end(eng, f, d, ts, False, H1_IDLE)
                continue
            x = 0
            k = 0
            while k < ll and k < 16:
                if is_digit(line[k]):
                    x = x * 16 + (line[k] - 48)
                elif lower(line[k]) >= b'a' and lower(line[k]) <= b'f':
                    x = x * 16 + (lower(line[k]) - 87)
                else:
                    break
                k += 1
            if k == 0 or k == 16 or k < ll and line[k] != b';' and line[k] != b' ' and line[k] != b'\t':
                if ll == 0 and h.wire <= 2:
                    continue            # tolerate an extra CRLF before the first size
                eng.h1_anom[<int>HA_BAD_CHUNK] += 1
                h1_msg_end(eng, f, d, ts, True, H1_RESYNC)
                h.line_start = 1
                continue
            if x == 0:
                h.state = H1_TRAILERS
            else:
                h.state = H1_CHUNK_DATA
                h.remaining = x
        elif h.state == H1_BODY_EOF:
            if h.cur != NULL:
                txn_body_add(eng, <Txn>h.cur, d != f.client, p, n)
            h.body += n
            h.wire += n
            return
        elif h.state == H1_RESYNC:
            k = resync_scan(h, p, n, 0 if f.client < 0 else (SL_REQUEST if d == f.client else SL_STATUS))
            if k == n:
                h.line_start = p[n - 1] == b'\n'
                return
            p += k
            n -= k
            h.state = H1_HEAD
            h.from_resync = 1
            h.start_ts = ts
        else:   # H1_OFF: after an upgrade or CONNECT the rest goes to what follows
            if f.app != APP_H1:
                app_data(eng, f, d, p, n, ts)
            return
        h.line_start = 0

# `n` bytes of direction d were never captured.
cdef void h1_gap(Engine eng, Flow* f, int d, uint64_t n):
    cdef H1* h = &f.half[d].h1
    if h.state == H1_OFF:
        return
    if h.cur != NULL:
        txn_body_hole(<Txn>h.cur, d != f.client)
    h.line_start = 1            # the next byte may start a message: check it
    if h.state == H1_BODY_LEN:
        h.gap = 1
        if n < h.remaining:
            h.remaining -= n
            h.body += n
            h.wire += n
            return
        h.body += h.remaining
        h.wire += h.remaining
        h1_msg_end(eng, f, d, h.last_ts, False, H1_RESYNC)
        eng.h1_anom[<int>HA_RESYNC] += 1
        return
    if h.state == H1_BODY_EOF:
        h.gap = 1
        h.body += n
        h.wire += n
        return
    if h.state == H1_HEAD:
        # a message was lost with its head: keep request/response pairing in step
        eng.h1_anom[<int>HA_GAP_IN_HEAD] += 1
        h1_lost_message(eng, f, d)
        h1_to_resync(eng, h)
        return
    if h.state == H1_IDLE or h.state == H1_RESYNC:
        h1_reset_msg(h, H1_RESYNC)
        return
    # inside chunked framing: the chunk boundaries are lost
    h.gap = 1
    h1_msg_end(eng, f, d, h.last_ts, True, H1_RESYNC)
    eng.h1_anom[<int>HA_RESYNC] += 1

# A message of direction d began but its head was lost. A lost response
# answers the oldest pending request; a lost request gets a placeholder its
# response can pair with.
cdef void h1_lost_message(Engine eng, Flow* f, int d):
    cdef list pending
    cdef Txn t
    if f.client < 0:
        return
    pending = flow_pending(f)
    if d == f.client:
        t = txn_new(eng, f)
        t.flags |= TF_REQUEST_GAP | TF_NO_REQUEST
        t.req_start = f.half[d].h1.start_ts
        pending.append(t)
    elif pending:
        t = <Txn>pending.pop(0)
        t.flags |= TF_RESPONSE_GAP
        t.resp_done = True
        txn_maybe_emit(eng, t)

# Direction d ended (FIN reached, RST, timeout, end of capture).
cdef void h1_eof(Engine eng, Flow* f, int d, bint clean):
    cdef H1* h = &f.half[d].h1
    if h.state == H1_BODY_EOF:
        h1_msg_end(eng, f, d, h.last_ts, not clean, H1_OFF)
    elif h.state == H1_BODY_LEN or h.state == H1_CHUNK_SIZE or h.state == H1_CHUNK_DATA \
            or h.state == H1_CHUNK_END or h.state == H1_TRAILERS:
        eng.h1_anom[<int>HA_TRUNCATED_MESSAGE] += 1
        h1_msg_end(eng, f, d, h.last_ts, True, H1_OFF)
    elif h.state == H1_HEAD and h.len:
        eng.h1_anom[<int>HA_TRUNCATED_MESSAGE] += 1
    h.state = H1_OFF
    h1_buf_free(h, eng)
