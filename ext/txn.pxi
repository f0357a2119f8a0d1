# transaction: the first Python object of the pipeline, one per HTTP exchange.
#
# The HTTP/1 parser fills a Txn as the request and response heads complete and
# hands it to the engine's output list once both halves are done (or can never
# be: flow end, eviction). sensor/records.py turns it into a record.

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

# completeness flags (bit values; names in FLAG_NAMES order)
cdef enum TxnFlag:
    TF_NO_REQUEST = 1
    TF_NO_RESPONSE = 2
    TF_REQUEST_GAP = 4
    TF_RESPONSE_GAP = 8
    TF_REQUEST_TRUNCATED = 16
    TF_RESPONSE_TRUNCATED = 32
    TF_MIDSTREAM = 64
    TF_EVICTED = 128
    TF_HPACK_UNKNOWN = 256      # HTTP/2 header fields whose HPACK entry was never seen
    TF_RESET = 512              # HTTP/2 stream reset (RST_STREAM) or refused by GOAWAY
    TF_H2C_UPGRADE = 1024       # stream 1 of an h2c upgrade: its request is the HTTP/1.1 record before
    TF_PUSHED = 2048            # request promised by the server (PUSH_PROMISE)
    TF_HEADERS_TRUNCATED = 4096 # header list over the limit: the names listed are the first ones
    TF_REQUEST_BODY_TRUNCATED = 8192     # body longer than the capture cap: enrichment saw a prefix
    TF_RESPONSE_BODY_TRUNCATED = 16384
    TF_DECOMPRESSION_LIMIT = 32768       # set by enrichment: decoded size or ratio over the bomb limit
    TF_BODY_UNDECODABLE = 65536          # set by enrichment: bad content coding or unparsable body
    TF_BODY_NOT_SHAPED = 131072          # set by enrichment: shed while live capture fell behind

FLAG_NAMES = ("no_request", "no_response", "request_gap", "response_gap",
              "request_truncated", "response_truncated", "midstream", "evicted",
              "hpack_unknown", "reset", "h2c_upgrade", "pushed", "headers_truncated",
              "request_body_truncated", "response_body_truncated", "decompression_limit",
              "body_undecodable", "body_not_shaped")


# Status codes as the int objects a Txn holds: made once, not one per response
# (CPython keeps only -5..256 ready-made).
cdef tuple STATUS_CODES = tuple(range(1000))

cdef list flag_names(uint32_t flags):
    if not flags:
        return []
    return [n for i, n in enumerate(FLAG_NAMES) if flags & (1 << i)]




@cython.no_gc       # holds only strings, ints and lists of strings: no cycles to collect
cdef class Txn:
    # request side
    cdef public object method, target, version, host, user_agent
    cdef public object req_content_type, req_content_encoding, req_headers
    # response side
    cdef public object status, resp_version, resp_content_type, resp_content_encoding
    cdef public object resp_headers, interim
    cdef public object protocol_switch
    # HTTP/2 and gRPC
    cdef public uint32_t stream_id
    cdef public object error_code           # RST_STREAM / GOAWAY error code
    cdef public object grpc_status
    cdef public int64_t req_messages, resp_messages   # gRPC length-prefixed messages
    cdef public bint grpc_compressed
    # connection
    cdef public object client_addr, server_addr, community_id, encap
    cdef public int client_port, server_port
    cdef public uint64_t flow_id
    # timing (packet time, ns) and sizes
    cdef public int64_t req_start, req_end, resp_start, resp_end
    cdef public int64_t req_body, req_wire, resp_body, resp_wire
    cdef public uint32_t flags
    # parser bookkeeping
    cdef bint req_done, resp_done, emitted
    cdef public bint response_seen      # a response (even a head-less HTTP/0.9 one) began
    cdef bint wants_upgrade, is_connect, is_head
    # enrichment inputs, kept only when the engine enriches: header
    # fields whose values enrichment inspects (auth, cookies, custom) as
    # (name, value) pairs, and a prefix of each body enrichment can read
    # ([0] request, [1] response)
    cdef public list req_fields, resp_fields
    cdef char* body[2]
    cdef uint32_t body_len[2]
    cdef uint32_t body_cap[2]
    cdef bint body_want[2]
    # record fields enrichment adds: a list of (key, value), written after the core ones
    cdef public list extra

    def __dealloc__(self):
        free(self.body[0])
        free(self.body[1])

    @property
    def completeness(self):
        return flag_names(self.flags)

    @property
    def has_bodies(self):
        """True while a body prefix is held for enrichment."""
        return self.body[0] != NULL or self.body[1] != NULL

    def release_bodies(self):
        """Frees the captured bodies once enrichment has read them."""
        free(self.body[0])
        free(self.body[1])
        self.body[0] = self.body[1] = NULL
        self.body_len[0] = self.body_len[1] = self.body_cap[0] = self.body_cap[1] = 0
        self.body_want[0] = self.body_want[1] = False

    @property
    def req_body_data(self):
        """Captured request body prefix (bytes), or None when not captured."""
        return self.body[0][:self.body_len[0]] if self.body[0] != NULL else None

    @property
    def resp_body_data(self):
        return self.body[1][:self.body_len[1]] if self.body[1] != NULL else None


# Media types enrichment reads (type/subtype before any parameter): JSON,
# GraphQL, forms, multipart, XML, gRPC and protobuf.
cdef bint media_capturable(const uint8_t* p, uint32_t n) noexcept nogil:
    cdef char low[96]
    cdef uint32_t i, k = 0
    for i in range(n):
        if p[i] == b';' or k >= 95:
            break
        low[k] = p[i] + 32 if p[i] >= b'A' and p[i] <= b'Z' else p[i]
        k += 1
    low[k] = 0
    return (strstr(low, b"json") != NULL or strstr(low, b"xml") != NULL or strstr(low, b"graphql") != NULL
            or strstr(low, b"x-www-form-urlencoded") != NULL or strstr(low, b"multipart/form-data") != NULL
            or strstr(low, b"grpc") != NULL or strstr(low, b"protobuf") != NULL)

# Header fields whose values enrichment inspects: credentials, cookies,
# SOAPAction, and custom (x-*) or key/token/session-named fields.
cdef bint field_kept(const uint8_t* p, uint32_t n) noexcept nogil:
    cdef char low[64]
    cdef uint32_t i
    if n == 0 or n >= 64:
        return False
    for i in range(n):
        low[i] = p[i] + 32 if p[i] >= b'A' and p[i] <= b'Z' else p[i]
    low[n] = 0
    if n >= 2 and low[0] == b'x' and low[1] == b'-':
        return True
    return (strcmp(low, b"authorization") == 0 or strcmp(low, b"proxy-authorization") == 0
            or strcmp(low, b"cookie") == 0 or strcmp(low, b"set-cookie") == 0
            or strcmp(low, b"soapaction") == 0 or strstr(low, b"token") != NULL
            or strstr(low, b"key") != NULL or strstr(low, b"auth") != NULL
            or strstr(low, b"secret") != NULL or strstr(low, b"session") != NULL)

# The head of side (0 request, 1 response) announced media type ctype: capture its body?
cdef inline void txn_body_start(Engine eng, Txn t, int side, const uint8_t* ctype, uint32_t n) noexcept:
    t.body_want[side] = eng.body_cap > 0 and ctype != NULL and media_capturable(ctype, n)

cdef void txn_body_add(Engine eng, Txn t, int side, const uint8_t* p, uint32_t n) noexcept:
    cdef uint32_t room, need, ncap
    cdef char* nb
    if not t.body_want[side] or n == 0:
        return
    room = eng.body_cap - t.body_len[side]
    if n > room:
        n = room
        t.flags |= TF_REQUEST_BODY_TRUNCATED if side == 0 else TF_RESPONSE_BODY_TRUNCATED
        t.body_want[side] = False
        if n == 0:
            return
    need = t.body_len[side] + n
    if need > t.body_cap[side]:
        ncap = t.body_cap[side] * 2 if t.body_cap[side] else 4096
        while ncap < need:
            ncap *= 2
        if ncap > eng.body_cap:
            ncap = eng.body_cap
        nb = <char*>realloc(t.body[side], ncap)
        if nb == NULL:
            t.body_want[side] = False
            return
        eng.mem += ncap - t.body_cap[side]
        t.body[side] = nb
        t.body_cap[side] = ncap
    memcpy(t.body[side] + t.body_len[side], p, n)
    t.body_len[side] = need

# Bytes of the body were never captured: what was kept is a prefix.
cdef inline void txn_body_hole(Txn t, int side) noexcept:
    t.body_want[side] = False
