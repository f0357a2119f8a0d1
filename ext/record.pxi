# record: schema v1, written as msgpack straight from a Txn.
#
# This is the one definition of what a record holds (docs/records.md;
# sensor/records.py is its Python face). Writing the map in C instead of
# building a dict and packing it costs well under a microsecond per record,
# which keeps the Python side of the pipeline at one call per batch.
#
# Privacy lives here too: the request-target is split into path and query
# parameter *names*; its raw form is written only when raw_targets is set.

from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DATA, PyUnicode_GET_LENGTH
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef struct WBuf:
    char* p
    size_t n
    size_t cap


cdef inline int wb_reserve(WBuf* b, size_t k) except -1:
    cdef size_t ncap
    cdef char* np
    if b.n + k <= b.cap:
        return 0
    ncap = b.cap * 2 if b.cap else 65536
    while ncap < b.n + k:
        ncap *= 2
    np = <char*>realloc(b.p, ncap)
    if np == NULL:
        raise MemoryError()
    b.p = np
    b.cap = ncap
    return 0

cdef inline void wb_byte(WBuf* b, uint8_t c) noexcept:
    b.p[b.n] = <char>c
    b.n += 1

cdef inline void wb_be(WBuf* b, uint64_t v, int width) noexcept:
    # width is 2, 4 or 8: one unrolled store sequence each
    cdef char* q = b.p + b.n
    if width == 2:
        q[0] = <char>(v >> 8)
        q[1] = <char>v
    elif width == 4:
        q[0] = <char>(v >> 24)
        q[1] = <char>(v >> 16)
        q[2] = <char>(v >> 8)
        q[3] = <char>v
    else:
        q[0] = <char>(v >> 56)
        q[1] = <char>(v >> 48)
        q[2] = <char>(v >> 40)
        q[3] = <char>(v >> 32)
        q[4] = <char>(v >> 24)
        q[5] = <char>(v >> 16)
        q[6] = <char>(v >> 8)
        q[7] = <char>v
    b.n += width

cdef int wb_str(WBuf* b, const char* s, size_t n) except -1:
    wb_reserve(b, n + 5)
    if n < 32:
        wb_byte(b, 0xA0 | n)
    elif n < 256:
        wb_byte(b, 0xD9)
        wb_byte(b, n)
    elif n < 65536:
        wb_byte(b, 0xDA)
        wb_be(b, n, 2)
    else:
        wb_byte(b, 0xDB)
        wb_be(b, n, 4)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0

cdef inline int wb_key(WBuf* b, const char* s, size_t n) except -1:
    # keys are literals shorter than 256 bytes, their length known at the call
    wb_reserve(b, n + 2)
    if n < 32:
        b.p[b.n] = <char>(0xA0 | n)
        b.n += 1
    else:
        b.p[b.n] = <char>0xD9
        b.p[b.n + 1] = <char>n
        b.n += 2
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)

cdef int wb_pystr(WBuf* b, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* u
    if s is None:                   # a field nothing on the wire filled (e.g. a lost message)
        wb_reserve(b, 1)
        wb_byte(b, 0xC0)
        return 0
    if PyUnicode_IS_COMPACT_ASCII(s):   # nearly all: its bytes are its UTF-8, read in place
        return wb_str(b, <const char*>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
    u = PyUnicode_AsUTF8AndSize(s, &n)
    return wb_str(b, u, n)

cdef int wb_int(WBuf* b, int64_t v) except -1:
    wb_reserve(b, 9)
    if 0 <= v < 128:
        wb_byte(b, v)
    elif v >= 0:
        if v < 65536:
            wb_byte(b, 0xCD)
            wb_be(b, v, 2)
        elif v < 4294967296:
            wb_byte(b, 0xCE)
            wb_be(b, v, 4)
        else:
            wb_byte(b, 0xCF)
            wb_be(b, v, 8)
    elif v >= -32:
        wb_byte(b, <uint8_t>(v & 0xFF))
    else:
        wb_byte(b, 0xD3)
        wb_be(b, <uint64_t>v, 8)
    return 0

cdef int wb_array(WBuf* b, size_t n) except -1:
    wb_reserve(b, 5)
    if n < 16:
        wb_byte(b, 0x90 | n)
    else:
        wb_byte(b, 0xDD)
        wb_be(b, n, 4)
    return 0

cdef int wb_map(WBuf* b, size_t n) except -1:
    wb_reserve(b, 5)
    if n < 16:
        wb_byte(b, 0x80 | n)
    else:
        wb_byte(b, 0xDF)
        wb_be(b, n, 4)
    return 0

cdef int wb_strlist(WBuf* b, list items) except -1:
    wb_array(b, len(items))
    for x in items:
        wb_pystr(b, x)
    return 0

# Enrichment's values: maps with str keys, lists, str, int, float, bool, None.
cdef int wb_obj(WBuf* b, object v, int depth=0) except -1:
    cdef double d
    cdef uint64_t bits
    if depth > 32:
        raise ValueError("enrichment value nested too deep")
    if v is None:
        wb_reserve(b, 1)
        wb_byte(b, 0xC0)
    elif v is True or v is False:
        wb_reserve(b, 1)
        wb_byte(b, 0xC3 if v else 0xC2)
    elif isinstance(v, str):
        wb_pystr(b, v)
    elif isinstance(v, int):
        wb_int(b, v)
    elif isinstance(v, float):
        d = v
        memcpy(&bits, &d, 8)
        wb_reserve(b, 9)
        wb_byte(b, 0xCB)
        wb_be(b, bits, 8)
    elif isinstance(v, dict):
        wb_map(b, len(v))
        for k, x in (<dict>v).items():
            wb_pystr(b, k)
            wb_obj(b, x, depth + 1)
    else:
        wb_array(b, len(v))
        for x in v:
            wb_obj(b, x, depth + 1)
    return 0


# Where the parts of a request-target tg[:tn] lie. Origin-form: the path is
# tg[path:path_end] (also "*"); absolute-form (http/https): scheme is 4 or 5,
# the path starts after the authority (empty: "/"); authority-form (CONNECT)
# has none. A query, when tg[path_end] is '?', runs to query_end ('#' or end).
cdef struct TargetParts:
    size_t path, path_end, query_end
    int scheme
    bint has_path

cdef TargetParts target_parts(const char* tg, size_t tn) noexcept nogil:
    cdef TargetParts tp
    cdef size_t i = 0
    memset(&tp, 0, sizeof(TargetParts))
    while i < tn and tg[i] != b'?' and tg[i] != b'#':
        i += 1
    tp.path_end = tp.query_end = i
    if i < tn and tg[i] == b'?':
        tp.query_end = i + 1
        while tp.query_end < tn and tg[tp.query_end] != b'#':
            tp.query_end += 1
    if tn >= 7 and (tg[0] | 32) == b'h' and (tg[1] | 32) == b't' and (tg[2] | 32) == b't' \
            and (tg[3] | 32) == b'p':
        i = 4 + ((tg[4] | 32) == b's')
        if i + 3 <= tp.path_end and tg[i] == b':' and tg[i + 1] == b'/' and tg[i + 2] == b'/':
            tp.scheme = <int>i
            tp.path = i + 3
            while tp.path < tp.path_end and tg[tp.path] != b'/':
                tp.path += 1
            tp.has_path = True
            return tp
    tp.has_path = tn > 0 and (tg[0] == b'/' or tg[0] == b'*')
    return tp


def split_target(str target):
    """(path, query) of a request-target as the record stage reads it (query
    None when there is none): origin-form as is, absolute-form without scheme
    and authority; (None, None) for authority-form, "*" and no target."""
    cdef Py_ssize_t tn
    cdef const char* tg
    cdef TargetParts tp
    if not target:
        return None, None
    tg = PyUnicode_AsUTF8AndSize(target, &tn)
    tp = target_parts(tg, tn)
    if not tp.has_path or tg[0] == b'*':
        return None, None
    path = tg[tp.path:tp.path_end].decode("utf-8", "replace") or "/"
    query = tg[tp.path_end + 1:tp.query_end].decode("utf-8", "replace") \
        if tp.path_end < <size_t>tn and tg[tp.path_end] == b'?' else None
    return path, query


# Query parameter names of q[:n]: `k=v` pairs by name; a bare token only when
# it looks like a flag name, since it could as well be a value.
cdef bint flag_name(const char* s, size_t n) noexcept:
    cdef size_t i
    cdef uint8_t c
    if n == 0 or n > 64 or not (s[0] >= b'a' and s[0] <= b'z' or s[0] >= b'A' and s[0] <= b'Z'):
        return False
    for i in range(n):
        c = s[i]
        if not (is_tchar(c) and c != b'!' and c != b'#' and c != b'$' and c != b'%' and c != b'&'
                and c != b"'" and c != b'*' and c != b'+' and c != b'^' and c != b'`'
                and c != b'|' and c != b'~'):
            return False
    return True

cdef list query_names(const char* q, size_t n):
    cdef list names = []
    cdef size_t i = 0, s, e, eq
    while i <= n:
        s = i
        while i < n and q[i] != b'&':
            i += 1
        e = i
        eq = s
        while eq < e and q[eq] != b'=':
            eq += 1
        if eq > s and (eq < e or flag_name(q + s, e - s)):
            name = PyUnicode_DecodeUTF8(q + s, eq - s, "replace")
            if name not in names:
                names.append(name)
        i += 1
    return names


# A record is a map32 whose key count is patched in once the keys are written.
cdef inline size_t wb_map_begin(WBuf* b) except? 0:
    cdef size_t at
    wb_reserve(b, 5)
    at = b.n
    b.n += 5
    return at

cdef inline void wb_map_end(WBuf* b, size_t at, size_t keys) noexcept:
    cdef size_t end = b.n
    b.p[at] = <char>0xDF
    b.n = at + 1
    wb_be(b, keys, 4)
    b.n = end

cdef int wb_completeness(WBuf* b, uint32_t flags) except -1:
    cdef list names = flag_names(flags)
    wb_key(b, b"sensor.completeness", 19)
    wb_strlist(b, names)
    return 0


# sensor.encap: [{"vlan": 10}, {"vxlan": 42}, ...], outermost first
cdef int wb_encap(WBuf* b, object encap) except -1:
    if encap is None:
        return 0
    wb_key(b, b"sensor.encap", 12)
    wb_array(b, len(encap))
    for layer in encap:
        for name, ident in layer.items():
            wb_reserve(b, 1)
            wb_byte(b, 0x81)
            wb_pystr(b, name)
            wb_int(b, ident)
    return 1


cdef class RecordEncoder:
    """Encodes transactions as a msgpack stream of schema-v1 records."""
    cdef WBuf b
    cdef bint raw_targets
    cdef readonly uint64_t count

    def __cinit__(self, bint raw_targets=False):
        self.raw_targets = raw_targets

    def __dealloc__(self):
        free(self.b.p)

    def encode(self, list txns):
        """msgpack bytes of one record per Txn in txns."""
        self.b.n = 0
        for t in txns:
            if type(t) is Txn:
                self.put(<Txn>t)
            else:
                self.put_tls(<TlsInfo>t)
        self.count += len(txns)
        return PyBytes_FromStringAndSize(self.b.p, self.b.n)

    cdef int put_tls(self, TlsInfo t) except -1:
        cdef WBuf* b = &self.b
        cdef size_t hdr = wb_map_begin(b), keys = 9
        wb_key(b, b"type", 4); wb_str(b, b"tls", 3)
        wb_key(b, b"v", 1); wb_int(b, 1)
        wb_key(b, b"start_ns", 8); wb_int(b, t.start_ns or t.end_ns)
        wb_key(b, b"network.community_id", 20); wb_pystr(b, t.community_id)
        wb_key(b, b"network.transport", 17); wb_str(b, b"tcp", 3)
        wb_key(b, b"client.address", 14); wb_pystr(b, t.client_addr)
        wb_key(b, b"client.port", 11); wb_int(b, t.client_port)
        wb_key(b, b"server.address", 14); wb_pystr(b, t.server_addr)
        wb_key(b, b"server.port", 11); wb_int(b, t.server_port)
        keys += wb_encap(b, t.encap)
        if t.server_name is not None:
            wb_key(b, b"tls.client.server_name", 22); wb_pystr(b, t.server_name)
            keys += 1
        if t.alpn_offered is not None:
            wb_key(b, b"sensor.tls.alpn_offered", 23); wb_strlist(b, t.alpn_offered)
            keys += 1
        if t.versions_offered is not None:
            wb_key(b, b"sensor.tls.versions_offered", 27); wb_strlist(b, t.versions_offered)
            keys += 1
        if t.version is not None:
            wb_key(b, b"tls.protocol.version", 20); wb_pystr(b, t.version)
            wb_key(b, b"sensor.tls.cipher_suite", 23); wb_pystr(b, t.cipher)
            keys += 2
        if t.alpn is not None:
            wb_key(b, b"tls.next_protocol", 17); wb_pystr(b, t.alpn)
            keys += 1
        if t.ja3 is not None:
            wb_key(b, b"tls.client.ja3", 14); wb_pystr(b, t.ja3)
            keys += 1
        if t.ja3s is not None:
            wb_key(b, b"tls.server.ja3s", 15); wb_pystr(b, t.ja3s)
            keys += 1
        # the HTTP inside is unread: its auth scheme is mutual TLS or unknown
        wb_key(b, b"sensor.tls.client_auth", 22); wb_pystr(b, t.client_auth)
        wb_key(b, b"sensor.auth", 11); wb_map(b, 1); wb_key(b, b"scheme", 6)
        if t.client_auth == "certificate":
            wb_str(b, b"mtls", 4)
        else:
            wb_str(b, b"unknown", 7)
        keys += 2
        wb_completeness(b, t.flags)
        wb_map_end(b, hdr, keys + 1)
        return 0

    cdef int put(self, Txn t) except -1:
        cdef WBuf* b = &self.b
        cdef size_t hdr, keys = 0
        cdef bint req = t.method is not None
        cdef bint resp = t.response_seen
        cdef Py_ssize_t tn
        cdef const char* tg
        cdef TargetParts tp
        cdef size_t i
        hdr = wb_map_begin(b)
        wb_key(b, b"type", 4); wb_str(b, b"http", 4)
        wb_key(b, b"v", 1); wb_int(b, 1)
        wb_key(b, b"start_ns", 8); wb_int(b, t.req_start if req else t.resp_start)
        wb_key(b, b"end_ns", 6); wb_int(b, t.resp_end if resp else t.req_end)
        wb_key(b, b"network.community_id", 20); wb_pystr(b, t.community_id)
        wb_key(b, b"network.transport", 17); wb_str(b, b"tcp", 3)
        wb_key(b, b"network.protocol.name", 21); wb_str(b, b"http", 4)
        wb_key(b, b"network.protocol.version", 24); wb_pystr(b, t.version if t.version is not None else t.resp_version)
        wb_key(b, b"client.address", 14); wb_pystr(b, t.client_addr)
        wb_key(b, b"client.port", 11); wb_int(b, t.client_port)
        wb_key(b, b"server.address", 14); wb_pystr(b, t.server_addr)
        wb_key(b, b"server.port", 11); wb_int(b, t.server_port)
        keys = 12 + wb_encap(b, t.encap)
        if req and resp:
            wb_key(b, b"timing", 6)
            wb_reserve(b, 1)
            wb_byte(b, 0x82)
            wb_key(b, b"request_end_ns", 14); wb_int(b, t.req_end)
            wb_key(b, b"response_start_ns", 17); wb_int(b, t.resp_start)
            keys += 1
        if t.stream_id:
            wb_key(b, b"http2.stream_id", 15); wb_int(b, t.stream_id)
            keys += 1
        if req:
            wb_key(b, b"http.request.method", 19); wb_pystr(b, t.method)
            keys += 1
            tg = PyUnicode_AsUTF8AndSize(t.target if t.target is not None else "", &tn)
            tp = target_parts(tg, tn)
            if tp.scheme:
                wb_key(b, b"url.scheme", 10)
                wb_str(b, b"https" if tp.scheme == 5 else b"http", tp.scheme)
                keys += 1
            if tp.has_path and t.extra is None:         # else enrichment writes them, masked
                wb_key(b, b"url.path", 8)
                if tp.path == tp.path_end:
                    wb_str(b, b"/", 1)
                else:
                    wb_str(b, tg + tp.path, tp.path_end - tp.path)
                keys += 1
                if tp.path_end < <size_t>tn and tg[tp.path_end] == b'?':
                    wb_key(b, b"url.query.keys", 14)
                    wb_strlist(b, query_names(tg + tp.path_end + 1, tp.query_end - tp.path_end - 1))
                    keys += 1
            if self.raw_targets and t.target is not None:
                wb_key(b, b"url.target", 10); wb_str(b, tg, tn)
                keys += 1
            if t.host is not None:
                wb_key(b, b"http.request.header.host", 24); wb_pystr(b, t.host)
                keys += 1
            if t.user_agent is not None:
                wb_key(b, b"user_agent.original", 19); wb_pystr(b, t.user_agent)
                keys += 1
            wb_key(b, b"http.request.header_names", 25); wb_strlist(b, t.req_headers or [])
            keys += 1
            if t.req_content_type is not None:
                wb_key(b, b"http.request.content_type", 25); wb_pystr(b, t.req_content_type)
                keys += 1
            if t.req_content_encoding is not None:
                wb_key(b, b"http.request.content_encoding", 29); wb_pystr(b, t.req_content_encoding)
                keys += 1
            wb_key(b, b"http.request.body.size", 22); wb_int(b, t.req_body)
            wb_key(b, b"http.request.body.wire_size", 27); wb_int(b, t.req_wire)
            keys += 2
        if t.status is not None:
            wb_key(b, b"http.response.status_code", 25); wb_int(b, t.status)
            keys += 1
        if t.interim:
            wb_key(b, b"http.response.interim", 21)
            wb_array(b, len(t.interim))
            for x in t.interim:
                wb_int(b, x)
            keys += 1
        if resp:
            wb_key(b, b"http.response.header_names", 26); wb_strlist(b, t.resp_headers or [])
            keys += 1
            if t.resp_content_type is not None:
                wb_key(b, b"http.response.content_type", 26); wb_pystr(b, t.resp_content_type)
                keys += 1
            if t.resp_content_encoding is not None:
                wb_key(b, b"http.response.content_encoding", 30); wb_pystr(b, t.resp_content_encoding)
                keys += 1
            wb_key(b, b"http.response.body.size", 23); wb_int(b, t.resp_body)
            wb_key(b, b"http.response.body.wire_size", 28); wb_int(b, t.resp_wire)
            keys += 2
        if req and t.req_content_type is not None and t.req_content_type.startswith("application/grpc"):
            # gRPC: /package.Service/Method
            wb_key(b, b"rpc.system", 10); wb_str(b, b"grpc", 4)
            keys += 1
            i = 1
            while i < tp.path_end and tg[i] != b'/':
                i += 1
            if tp.path_end and tg[0] == b'/' and i < tp.path_end:
                wb_key(b, b"rpc.service", 11); wb_str(b, tg + 1, i - 1)
                wb_key(b, b"rpc.method", 10); wb_str(b, tg + i + 1, tp.path_end - i - 1)
                keys += 2
            wb_key(b, b"sensor.grpc.request_messages", 28); wb_int(b, t.req_messages)
            wb_key(b, b"sensor.grpc.response_messages", 29); wb_int(b, t.resp_messages)
            wb_key(b, b"sensor.grpc.compressed", 22)
            wb_reserve(b, 1)
            wb_byte(b, 0xC3 if t.grpc_compressed else 0xC2)
            keys += 3
        if t.grpc_status is not None:
            wb_key(b, b"rpc.grpc.status_code", 20); wb_int(b, t.grpc_status)
            keys += 1
        if t.error_code is not None:
            wb_key(b, b"http2.error_code", 16); wb_int(b, t.error_code)
            keys += 1
        if t.protocol_switch is not None:
            wb_key(b, b"sensor.protocol_switch", 22); wb_pystr(b, t.protocol_switch)
            keys += 1
        if t.extra is not None:
            # enrichment (sensor/enrich): url.path masked, route, shapes, findings
            for k, x in <list>t.extra:
                wb_pystr(b, k)
                wb_obj(b, x)
                keys += 1
        wb_completeness(b, t.flags)
        wb_map_end(b, hdr, keys + 1)
        return 0
