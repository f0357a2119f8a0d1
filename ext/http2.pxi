# http2: HTTP/2 framing per direction, streams -> transactions, gRPC.
#
# Frames are walked in place; only header blocks (HEADERS/PUSH_PROMISE +
# CONTINUATION) and small control frames are copied, into a bounded buffer.
# DATA is counted, never kept (gRPC length prefixes are read on the fly).
# Streams live in a small C array per connection; a Txn is born when a
# stream's first header block is decoded. After a mid-stream attach or a TCP
# gap the parser finds frame boundaries again at segment starts and HPACK
# marks what it cannot know (hpack_unknown) instead of guessing.

# Limits against hostile peers are Engine options (h2_max_streams, ...); each
# hit is counted in h2_anom.
from cpython.unicode cimport PyUnicode_READ_CHAR, PyUnicode_AsUTF8AndSize

cdef enum:
    H2_PREFACE_LEN = 24
    H2_MAX_CONTROL = 65536          # payload kept of other non-DATA frames
    H2_TABLE_MIDSTREAM = 65536      # assumed HPACK table bound when SETTINGS were not seen

cdef enum:
    FT_DATA = 0
    FT_HEADERS = 1
    FT_PRIORITY = 2
    FT_RST_STREAM = 3
    FT_SETTINGS = 4
    FT_PUSH_PROMISE = 5
    FT_PING = 6
    FT_GOAWAY = 7
    FT_WINDOW_UPDATE = 8
    FT_CONTINUATION = 9

cdef enum:
    FL_END_STREAM = 1
    FL_END_HEADERS = 4
    FL_PADDED = 8
    FL_PRIORITY = 0x20

cdef enum H2Anomaly:
    H2A_BAD_FRAME = 0
    H2A_BLOCK_TOO_LARGE
    H2A_TOO_MANY_STREAMS
    H2A_HPACK_ERROR
    H2A_LOST_SYNC
    H2A_BROKEN_BLOCK
    H2A_TOO_MANY_FRAMES
    H2A_HEADER_LIST_TOO_LARGE
    H2A_COUNT

H2_ANOMALY_NAMES = ("h2_bad_frame", "h2_header_block_too_large", "h2_too_many_streams",
                    "h2_hpack_error", "h2_lost_frame_sync", "h2_interrupted_header_block",
                    "h2_too_many_frames", "h2_header_list_too_large")

cdef const char* H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

cdef struct H2Stream:
    uint32_t id
    uint8_t req_seen            # request head decoded (or known to exist)
    uint8_t req_end             # client END_STREAM
    uint8_t resp_end            # server END_STREAM
    uint8_t final               # final (non-1xx) response head seen
    uint8_t grpc
    uint8_t gap[2]
    int64_t body[2]
    int64_t wire[2]
    uint32_t msg_left[2]        # gRPC: bytes left of the current message
    uint8_t pfx_have[2]         # gRPC: bytes of the 5-byte prefix read
    uint32_t pfx_len[2]         # gRPC: message length being read from the prefix
    uint8_t compressed
    int64_t msgs[2]
    int64_t last_ts[2]          # packet time of the latest bytes of each direction
    PyObject* txn

cdef struct H2Dir:
    uint8_t preface             # client preface bytes still to skip
    uint8_t synced              # frame boundaries known
    uint8_t hdr[9]
    uint8_t hdr_len
    uint8_t type
    uint8_t flags
    uint8_t padded_pending      # PADDED DATA whose pad-length byte is still to come
    uint32_t len
    uint32_t left
    uint32_t sid
    uint32_t body_left          # DATA bytes of the current frame before its padding
    uint8_t* buf                # header block / control frame payload
    uint32_t blen
    uint32_t bcap
    uint32_t frag_start         # where the current frame's payload starts in buf
    uint8_t in_block
    uint8_t block_drop
    uint8_t block_type
    uint8_t block_end_stream
    uint32_t block_sid
    uint32_t promised
    int64_t block_ts
    PyObject* hpack

cdef struct H2Conn:
    H2Dir dir[2]
    uint64_t frames
    uint8_t off                 # given up (frame flood): bytes are ignored
    H2Stream* streams
    uint32_t nstreams
    uint32_t cap


cdef inline uint32_t be24(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]

# Is a frame header plausible here? Used to find frame boundaries again.
cdef bint h2_header_ok(const uint8_t* p) noexcept nogil:
    cdef uint32_t ln = be24(p), sid = rd32(p + 5) & 0x7FFFFFFF
    cdef uint8_t t = p[3]
    if ln > (1 << 20) or t > 9 or p[5] & 0x80:
        return False
    if t == FT_SETTINGS:
        return sid == 0 and ln % 6 == 0 and (p[4] & ~1) == 0
    if t == FT_PING:
        return sid == 0 and ln == 8
    if t == FT_GOAWAY:
        return sid == 0 and ln >= 8
    if t == FT_WINDOW_UPDATE:
        return ln == 4
    if sid == 0:
        return False
    if t == FT_RST_STREAM:
        return ln == 4
    if t == FT_PRIORITY:
        return ln == 5
    return True

# Does p[:n] start with a chain of frames? (at a segment start)
cdef bint h2_chain(const uint8_t* p, uint32_t n) noexcept nogil:
    cdef uint32_t off = 0, frames = 0, ln
    while off + 9 <= n:
        if not h2_header_ok(p + off):
            return False
        frames += 1
        off += 9 + be24(p + off)
        if off == n:
            return True
    return frames >= 2 or frames == 1 and off > n and be24(p) <= 16384

# Client preface (or as much of it as arrived)?
cdef inline bint h2_is_preface(const uint8_t* p, uint32_t n) noexcept nogil:
    return memcmp(p, H2_PREFACE, n if n < H2_PREFACE_LEN else H2_PREFACE_LEN) == 0

# A server's first frame is SETTINGS (RFC 9113 3.4)
cdef inline bint h2_is_server_settings(const uint8_t* p, uint32_t n) noexcept nogil:
    return n >= 9 and p[3] == FT_SETTINGS and p[4] == 0 and rd32(p + 5) == 0 and be24(p) % 6 == 0 \
        and be24(p) <= 60


# ---------------------------------------------------------------- connection

cdef H2Conn* h2_start(Engine eng, Flow* f, bint midstream) except NULL:
    cdef H2Conn* c = <H2Conn*>calloc(1, sizeof(H2Conn))
    cdef int d
    if c == NULL:
        raise MemoryError()
    for d in range(2):
        dec = HpackDecoder(H2_TABLE_MIDSTREAM if midstream else 4096, eng.h2_max_header_list, midstream)
        Py_INCREF(dec)
        c.dir[d].hpack = <PyObject*>dec
    f.h2 = c
    f.app = APP_H2
    eng.mem += sizeof(H2Conn)
    return c

# An h2c upgrade: the 101 answered stream 1; HTTP/2 starts at the next byte.
cdef void h2_upgrade(Engine eng, Flow* f):
    cdef H2Conn* c = h2_start(eng, f, False)
    cdef H2Stream* st
    c.dir[f.client].preface = H2_PREFACE_LEN
    c.dir[f.client].synced = 1
    c.dir[1 - f.client].synced = 1
    st = h2_stream_new(eng, f, c, 1)
    if st != NULL:
        t = txn_new(eng, f)
        t.flags |= TF_H2C_UPGRADE | TF_NO_REQUEST
        t.version = "2"
        t.stream_id = 1
        Py_INCREF(t)
        st.txn = <PyObject*>t
        st.req_seen = st.req_end = 1

cdef void h2_free(Engine eng, Flow* f):
    cdef H2Conn* c = f.h2
    cdef int d
    cdef uint32_t i
    if c == NULL:
        return
    for d in range(2):
        Py_XDECREF(c.dir[d].hpack)
        if c.dir[d].buf != NULL:
            eng.mem -= c.dir[d].bcap
            free(c.dir[d].buf)
    for i in range(c.nstreams):
        Py_XDECREF(c.streams[i].txn)
    if c.streams != NULL:
        eng.mem -= c.cap * sizeof(H2Stream)
        free(c.streams)
    eng.mem -= sizeof(H2Conn)
    free(c)
    f.h2 = NULL


cdef H2Stream* h2_stream_find(H2Conn* c, uint32_t sid) noexcept nogil:
    cdef uint32_t i
    for i in range(c.nstreams):
        if c.streams[i].id == sid:
            return &c.streams[i]
    return NULL

cdef H2Stream* h2_stream_new(Engine eng, Flow* f, H2Conn* c, uint32_t sid) noexcept:
    cdef uint32_t ncap
    cdef H2Stream* ns
    if c.nstreams == c.cap:
        if c.cap >= eng.h2_max_streams:
            eng.h2_anom[<int>H2A_TOO_MANY_STREAMS] += 1
            return NULL
        ncap = c.cap * 2 if c.cap else 8
        if ncap > eng.h2_max_streams:
            ncap = eng.h2_max_streams
        ns = <H2Stream*>realloc(c.streams, ncap * sizeof(H2Stream))
        if ns == NULL:
            return NULL
        eng.mem += (ncap - c.cap) * sizeof(H2Stream)
        c.streams = ns
        c.cap = ncap
    ns = &c.streams[c.nstreams]
    c.nstreams += 1
    memset(ns, 0, sizeof(H2Stream))
    ns.id = sid
    return ns

# The stream is over (or the connection is): its Txn gets the counters and goes out.
cdef void h2_stream_done(Engine eng, Flow* f, H2Stream* st, uint32_t flags):
    cdef H2Conn* c = f.h2
    cdef Txn t
    cdef int cd = f.client if f.client >= 0 else 0
    if st.txn != NULL:
        t = <Txn>st.txn
        t.req_body, t.req_wire = st.body[cd], st.wire[cd]
        t.resp_body, t.resp_wire = st.body[1 - cd], st.wire[1 - cd]
        t.req_messages, t.resp_messages = st.msgs[cd], st.msgs[1 - cd]
        t.grpc_compressed = st.compressed
        if st.gap[cd]:
            t.flags |= TF_REQUEST_GAP
        if st.gap[1 - cd]:
            t.flags |= TF_RESPONSE_GAP
        t.flags |= flags
        # a message that never ended still ended at its last byte seen
        if t.req_end == 0 and st.req_seen:
            t.req_end = st.last_ts[cd] or t.req_start
        if t.resp_end == 0 and t.response_seen:
            t.resp_end = st.last_ts[1 - cd] or t.resp_start
        if not st.req_seen:
            t.flags |= TF_NO_REQUEST
        elif not st.req_end and not flags & TF_RESET:
            t.flags |= TF_REQUEST_TRUNCATED
        if not st.final:
            t.flags |= TF_NO_RESPONSE if not t.response_seen else TF_RESPONSE_TRUNCATED
        elif not st.resp_end and not flags & TF_RESET:
            t.flags |= TF_RESPONSE_TRUNCATED
        t.req_done = t.resp_done = True
        if t.method is not None or t.response_seen:
            txn_maybe_emit(eng, t)
        Py_DECREF(t)
        st.txn = NULL
    # swap-remove from the array
    c.nstreams -= 1
    if st != &c.streams[c.nstreams]:
        st[0] = c.streams[c.nstreams]

cdef inline void h2_maybe_done(Engine eng, Flow* f, H2Stream* st):
    if st.req_end and st.resp_end:
        h2_stream_done(eng, f, st, 0)

cdef void h2_finish(Engine eng, Flow* f):
    if f.h2 == NULL:
        return
    while f.h2.nstreams:
        h2_stream_done(eng, f, &f.h2.streams[f.h2.nstreams - 1], 0)
    h2_free(eng, f)


# ---------------------------------------------------------------- header blocks

# Decodes a complete header block of direction d and applies it to its stream.
cdef void h2_block(Engine eng, Flow* f, int d, int64_t ts):
    cdef H2Conn* c = f.h2
    cdef H2Dir* x = &c.dir[d]
    cdef uint32_t hf = 0
    cdef list fields = (<HpackDecoder>x.hpack).decode(x.buf, x.blen, &hf)
    cdef H2Stream* st
    cdef Txn t
    cdef uint32_t sid = x.promised if x.block_type == FT_PUSH_PROMISE else x.block_sid
    cdef bint is_request
    if hf & HP_ERROR:
        eng.h2_anom[<int>H2A_HPACK_ERROR] += 1
    if hf & HP_TOO_LARGE:
        eng.h2_anom[<int>H2A_HEADER_LIST_TOO_LARGE] += 1
    # who is the client? (a mid-stream attach may not know yet)
    if f.client < 0:
        for name, value in fields:
            if name == ":status":
                f.client = 1 - d
            elif name == ":method":
                f.client = d
        if f.client < 0:
            return
    is_request = d == f.client or x.block_type == FT_PUSH_PROMISE
    st = h2_stream_find(c, sid)
    if st == NULL:
        st = h2_stream_new(eng, f, c, sid)
        if st == NULL:
            return
        t = txn_new(eng, f)
        t.version = "2"
        t.stream_id = sid
        if x.block_type == FT_PUSH_PROMISE:
            t.flags |= TF_PUSHED
        Py_INCREF(t)
        st.txn = <PyObject*>t
    t = <Txn>st.txn
    st.last_ts[d] = ts
    if hf & HP_UNKNOWN:
        t.flags |= TF_HPACK_UNKNOWN
    if hf & HP_TOO_LARGE:
        t.flags |= TF_HEADERS_TRUNCATED
    if is_request:
        if not st.req_seen:
            st.gap[d] = 0               # nothing of a request precedes its first HEADERS
            h2_request_fields(eng, t, fields)
            t.req_start = x.block_ts
            st.req_seen = 1
            if t.req_content_type is not None and t.req_content_type.startswith("application/grpc"):
                st.grpc = 1
        if x.block_type == FT_PUSH_PROMISE or x.block_end_stream:
            st.req_end = 1
            t.req_end = ts
    else:
        if not t.response_seen and t.interim is None:
            st.gap[d] = 0               # nor of a response its first HEADERS
        h2_response_fields(eng, t, st, fields, x.block_ts)
        if x.block_end_stream:
            st.resp_end = 1
            t.resp_end = ts
            if not st.req_seen and not t.flags & TF_NO_REQUEST:
                t.flags |= TF_NO_REQUEST
            if not st.req_seen:
                st.req_end = 1
    h2_maybe_done(eng, f, st)

cdef inline bint is_number(value):
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    return value is not None and 0 < len(value) <= 9 and value.isascii() and value.isdigit()

cdef inline bint is_pseudo(str name):
    return len(name) > 0 and PyUnicode_READ_CHAR(name, 0) == 58     # ':'

# Enrichment's inputs from a decoded field list: kept (name, value) pairs, and
# whether the body is captured.
cdef list h2_kept_fields(Engine eng, Txn t, int side, list fields, object ctype):
    cdef list kept = []
    cdef Py_ssize_t n
    cdef const char* p
    for name, value in fields:
        if name is not None and value is not None and not is_pseudo(name):
            p = PyUnicode_AsUTF8AndSize(name, &n)
            if field_kept(<const uint8_t*>p, <uint32_t>n):
                kept.append((name, value))
    if ctype is not None:
        p = PyUnicode_AsUTF8AndSize(ctype, &n)
        txn_body_start(eng, t, side, <const uint8_t*>p, <uint32_t>n)
    return kept

cdef void h2_request_fields(Engine eng, Txn t, list fields):
    cdef list names = []
    cdef bint cookie = False
    for name, value in fields:
        if name is None:
            continue
        if name == "cookie":
            # crumbs of one Cookie field (RFC 9113 8.2.3): named once, as HTTP/1.1 sends it
            if cookie:
                continue
            cookie = True
        if is_pseudo(name):
            if name == ":path":
                t.target = value
            elif name == ":method":
                t.method = value
            elif name == ":authority":
                t.host = value
            elif name == ":protocol":
                t.protocol_switch = value     # extended CONNECT (RFC 8441)
            continue
        names.append(name)
        if name == "content-type":
            t.req_content_type = value
        elif name == "content-encoding":
            t.req_content_encoding = value
        elif name == "user-agent":
            t.user_agent = value
        elif name == "host" and t.host is None:
            t.host = value
    t.req_headers = names
    if eng.keep_fields:
        t.req_fields = h2_kept_fields(eng, t, 0, fields, t.req_content_type)
    if t.method == "CONNECT" and t.target is None:
        t.target = t.host

cdef void h2_response_fields(Engine eng, Txn t, H2Stream* st, list fields, int64_t ts):
    cdef list names = []
    status = None
    for name, value in fields:
        if name is None or not is_pseudo(name):
            break                       # pseudo-header fields come first (RFC 9113 8.3)
        if name == ":status":
            status = value
    if status is None:
        # trailers (gRPC status lives here), or a head we could not decode
        for name, value in fields:
            if name == "grpc-status" and is_number(value):
                t.grpc_status = int(value)
        return
    if not is_number(status) or len(status) != 3:
        return
    code = STATUS_CODES[(<int>PyUnicode_READ_CHAR(status, 0) - 48) * 100
                        + (<int>PyUnicode_READ_CHAR(status, 1) - 48) * 10 + <int>PyUnicode_READ_CHAR(status, 2) - 48]
    if code < 200:
        if t.interim is None:
            t.interim = []
        t.interim.append(code)
        return
    for name, value in fields:
        if name is None or is_pseudo(name):
            continue
        names.append(name)
        if name == "content-type":
            t.resp_content_type = value
        elif name == "content-encoding":
            t.resp_content_encoding = value
        elif name == "grpc-status" and is_number(value):
            t.grpc_status = int(value)      # Trailers-Only response
    t.status = code
    t.resp_version = "2"
    t.resp_headers = names
    if eng.keep_fields:
        t.resp_fields = h2_kept_fields(eng, t, 1, fields, t.resp_content_type)
    t.resp_start = ts
    t.response_seen = True
    st.final = 1


# ---------------------------------------------------------------- frames

cdef inline bint h2_buf_append(Engine eng, H2Dir* x, const uint8_t* p, uint32_t n) noexcept:
    cdef uint32_t need = x.blen + n, ncap
    cdef uint8_t* nb
    if need > x.bcap:
        ncap = x.bcap * 2 if x.bcap else 4096
        while ncap < need:
            ncap *= 2
        nb = <uint8_t*>realloc(x.buf, ncap)
        if nb == NULL:
            return False
        eng.mem += ncap - x.bcap
        x.buf = nb
        x.bcap = ncap
    memcpy(x.buf + x.blen, p, n)
    x.blen = need
    return True

# k payload bytes of the current DATA frame of direction d.
cdef void h2_data_bytes(Engine eng, Flow* f, int d, H2Dir* x, const uint8_t* p, uint32_t k, int64_t ts):
    cdef H2Stream* st = h2_stream_find(f.h2, x.sid)
    cdef uint32_t b, m
    if st != NULL:
        st.wire[d] += k
        st.last_ts[d] = ts
    if x.padded_pending:
        x.padded_pending = 0
        x.body_left = x.len - 1 - p[0] if p[0] < x.len else 0
        p += 1
        k -= 1
    b = k if k < x.body_left else x.body_left
    x.body_left -= b
    if st == NULL:
        return
    st.body[d] += b
    if b and st.txn != NULL:
        txn_body_add(eng, <Txn>st.txn, d != f.client, p, b)
    while st.grpc and b:
        # gRPC framing: 1-byte compressed flag, 4-byte length, message
        if st.msg_left[d]:
            m = b if b < st.msg_left[d] else st.msg_left[d]
            st.msg_left[d] -= m
            p += m
            b -= m
            continue
        if st.pfx_have[d] == 0:
            st.msgs[d] += 1
            st.pfx_len[d] = 0
            if p[0] & 1:
                st.compressed = 1
        else:
            st.pfx_len[d] = (st.pfx_len[d] << 8) | p[0]
        st.pfx_have[d] += 1
        p += 1
        b -= 1
        if st.pfx_have[d] == 5:
            st.pfx_have[d] = 0
            st.msg_left[d] = st.pfx_len[d]


# A frame header of direction d is complete.
cdef void h2_frame_begin(Engine eng, Flow* f, int d, H2Dir* x, int64_t ts):
    x.len = x.left = be24(x.hdr)
    x.type = x.hdr[3]
    x.flags = x.hdr[4]
    x.sid = rd32(x.hdr + 5) & 0x7FFFFFFF
    if x.in_block and (x.type != FT_CONTINUATION or x.sid != x.block_sid):
        # a header block must continue with its CONTINUATIONs: the block is lost
        eng.h2_anom[<int>H2A_BROKEN_BLOCK] += 1
        (<HpackDecoder>x.hpack).lost_sync()
        x.in_block = 0
        x.blen = 0
    if x.type == FT_DATA:
        x.padded_pending = x.flags & FL_PADDED
        x.body_left = x.len
    elif x.type == FT_HEADERS or x.type == FT_PUSH_PROMISE:
        x.in_block = 1
        x.block_drop = 0
        x.block_type = x.type
        x.block_sid = x.sid
        x.block_end_stream = x.flags & FL_END_STREAM
        x.block_ts = ts
        x.blen = 0
    x.frag_start = x.blen if x.type == FT_CONTINUATION or x.type == FT_HEADERS \
        or x.type == FT_PUSH_PROMISE else 0
    if x.type != FT_CONTINUATION and x.type != FT_HEADERS and x.type != FT_PUSH_PROMISE:
        x.blen = 0

# The current frame of direction d is complete (its payload, if kept, in buf).
cdef void h2_frame_end(Engine eng, Flow* f, int d, H2Dir* x, int64_t ts):
    cdef H2Conn* c = f.h2
    cdef H2Stream* st
    cdef uint32_t i, skip, pad
    cdef const uint8_t* q
    if x.type == FT_DATA:
        if x.flags & FL_END_STREAM:
            st = h2_stream_find(c, x.sid)
            if st != NULL and f.client >= 0:
                if d == f.client:
                    st.req_end = 1
                    (<Txn>st.txn).req_end = ts
                else:
                    st.resp_end = 1
                    (<Txn>st.txn).resp_end = ts
                    if not st.req_seen:
                        st.req_end = 1
                h2_maybe_done(eng, f, st)
        return
    if x.type == FT_HEADERS or x.type == FT_PUSH_PROMISE or x.type == FT_CONTINUATION:
        if not x.in_block or x.block_drop:
            if x.flags & FL_END_HEADERS:
                x.in_block = 0
            return
        # strip the padding and priority/promised-id fields of this fragment
        q = x.buf + x.frag_start
        skip = 0
        pad = 0
        if x.type != FT_CONTINUATION:
            if x.flags & FL_PADDED:
                pad = q[0] if x.len else 0
                skip = 1
            if x.type == FT_HEADERS and x.flags & FL_PRIORITY:
                skip += 5
            elif x.type == FT_PUSH_PROMISE:
                if x.len >= skip + 4:
                    x.promised = rd32(q + skip) & 0x7FFFFFFF
                skip += 4
        if skip + pad > x.len:
            eng.h2_anom[<int>H2A_BAD_FRAME] += 1
            x.in_block = 0
            (<HpackDecoder>x.hpack).lost_sync()
            return
        memmove(x.buf + x.frag_start, q + skip, x.len - skip - pad)
        x.blen = x.frag_start + x.len - skip - pad
        if x.flags & FL_END_HEADERS:
            x.in_block = 0
            h2_block(eng, f, d, ts)
            x.blen = 0
        return
    if x.type == FT_SETTINGS and not x.flags & 1:
        # the sender's HEADER_TABLE_SIZE bounds the table of what it receives
        i = 0
        while i + 6 <= x.blen:
            if x.buf[i] == 0 and x.buf[i + 1] == 1:
                (<HpackDecoder>c.dir[1 - d].hpack).settings_table_size = rd32(x.buf + i + 2)
            i += 6
    elif x.type == FT_RST_STREAM and x.blen == 4:
        st = h2_stream_find(c, x.sid)
        if st != NULL:
            if st.txn != NULL:
                (<Txn>st.txn).error_code = rd32(x.buf)
            h2_stream_done(eng, f, st, TF_RESET)
    elif x.type == FT_GOAWAY and x.blen >= 8:
        # streams above the last one the sender processed were refused
        i = 0
        while i < c.nstreams:
            st = &c.streams[i]
            if st.id > (rd32(x.buf) & 0x7FFFFFFF) and (st.id & 1) != (d == f.client):
                if st.txn != NULL:
                    (<Txn>st.txn).error_code = rd32(x.buf + 4)
                h2_stream_done(eng, f, st, TF_RESET)
            else:
                i += 1
    x.blen = 0


# Reassembled bytes of direction d of an HTTP/2 connection.
cdef void h2_data(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    cdef H2Dir* x = &f.h2.dir[d]
    cdef uint32_t k
    if f.h2.off:
        return
    if x.preface:
        k = n if n < x.preface else x.preface
        if memcmp(p, H2_PREFACE + (H2_PREFACE_LEN - x.preface), k) != 0:
            x.preface = 0               # no preface after all (it was lost): frames
        else:
            x.preface -= k
            p += k
            n -= k
    if not x.synced:
        # find frame boundaries again at a segment start
        if not h2_chain(p, n):
            return
        x.synced = 1
        x.hdr_len = 0
    while n:
        if x.hdr_len < 9:
            k = 9 - x.hdr_len
            k = n if n < k else k
            memcpy(x.hdr + x.hdr_len, p, k)
            x.hdr_len += k
            p += k
            n -= k
            if x.hdr_len < 9:
                return
            f.h2.frames += 1
            if f.h2.frames > eng.h2_max_frames:
                # a peer that floods frames gets no more parsing on this connection
                eng.h2_anom[<int>H2A_TOO_MANY_FRAMES] += 1
                f.h2.off = 1
                return
            h2_frame_begin(eng, f, d, x, ts)
        else:
            k = n if n < x.left else x.left
            if x.type == FT_DATA:
                h2_data_bytes(eng, f, d, x, p, k, ts)
            elif x.type == FT_HEADERS or x.type == FT_PUSH_PROMISE or x.type == FT_CONTINUATION:
                if x.in_block and not x.block_drop:
                    if x.blen + k > eng.h2_max_block or not h2_buf_append(eng, x, p, k):
                        eng.h2_anom[<int>H2A_BLOCK_TOO_LARGE] += 1
                        x.block_drop = 1
                        (<HpackDecoder>x.hpack).lost_sync()
            elif x.type == FT_SETTINGS or x.type == FT_RST_STREAM or x.type == FT_GOAWAY:
                if x.blen + k <= H2_MAX_CONTROL:
                    h2_buf_append(eng, x, p, k)
            x.left -= k
            p += k
            n -= k
        if x.hdr_len == 9 and x.left == 0:
            h2_frame_end(eng, f, d, x, ts)
            x.hdr_len = 0

# n bytes of direction d were never captured.
cdef void h2_gap(Engine eng, Flow* f, int d, uint64_t n):
    cdef H2Dir* x = &f.h2.dir[d]
    cdef H2Stream* st
    cdef uint32_t i
    if x.synced and x.hdr_len == 9 and x.type == FT_DATA and n < x.left and not x.padded_pending:
        # inside a DATA frame: skip, the framing holds
        st = h2_stream_find(f.h2, x.sid)
        if st != NULL:
            st.gap[d] = 1
            st.wire[d] += n
            st.body[d] += n if n < x.body_left else x.body_left
            st.msg_left[d] = 0
            st.grpc = 0                 # message boundaries are lost
            if st.txn != NULL:
                txn_body_hole(<Txn>st.txn, d != f.client)
        x.body_left = x.body_left - n if n < x.body_left else 0
        x.left -= n
        return
    eng.h2_anom[<int>H2A_LOST_SYNC] += 1
    x.synced = 0
    x.hdr_len = 0
    x.in_block = 0
    x.blen = 0
    x.preface = 0
    (<HpackDecoder>x.hpack).lost_sync()
    for i in range(f.h2.nstreams):
        f.h2.streams[i].gap[d] = 1
        if f.h2.streams[i].txn != NULL:
            txn_body_hole(<Txn>f.h2.streams[i].txn, d != f.client)
