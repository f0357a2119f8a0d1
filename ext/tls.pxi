# tls: what a sensor can learn of an encrypted connection from its hellos.
#
# The ClientHello gives the server name (SNI), the ALPN protocols offered and
# the versions offered; the ServerHello the version and cipher chosen and,
# up to TLS 1.2, the ALPN protocol chosen (TLS 1.3 moves it into encrypted
# extensions). One `tls` record per connection, so an inventory knows which
# hosts speak h2 over TLS. Hello bytes are collected in the direction's
# bounded HTTP/1 buffer (unused on a TLS connection) and parsed once whole.

cdef enum:
    TLS_MAX_HELLO = 32768           # bytes collected before giving up on a hello



@cython.no_gc
cdef class TlsInfo:
    cdef public object client_addr, server_addr, community_id, encap
    cdef public int client_port, server_port
    cdef public int64_t start_ns, end_ns
    cdef public object server_name, alpn_offered, versions_offered
    cdef public object version, cipher, alpn
    cdef public uint32_t flags
    cdef bint emitted

    @property
    def completeness(self):
        return flag_names(self.flags)


cdef inline bint tls_looks_like_hello(const uint8_t* p, uint32_t n) noexcept nogil:
    # handshake record, TLS 1.x record version, then ClientHello/ServerHello
    return n >= 6 and p[0] == 0x16 and p[1] == 3 and p[2] <= 4 and (p[5] == 1 or p[5] == 2)

cdef str tls_version_name(int v):
    if v == 0x0304:
        return "1.3"
    if v == 0x0303:
        return "1.2"
    if v == 0x0302:
        return "1.1"
    if v == 0x0301:
        return "1.0"
    if v == 0x0300:
        return "ssl3"
    return "0x%04x" % v

cdef inline bint grease(int v) noexcept:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)

cdef bytes tls_handshake(bytes raw):
    """The first handshake message, gathered across records; None until whole."""
    cdef bytes hs = b""
    cdef Py_ssize_t off = 0, ln
    while off + 5 <= len(raw) and raw[off] == 0x16:
        ln = (raw[off + 3] << 8) | raw[off + 4]
        if off + 5 + ln > len(raw):
            hs += raw[off + 5:]
            break
        hs += raw[off + 5:off + 5 + ln]
        off += 5 + ln
        if len(hs) >= 4 and len(hs) >= 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3]):
            break
    if len(hs) < 4 or len(hs) < 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3]):
        return None
    return hs[:4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])]

cdef list tls_extensions(bytes body, Py_ssize_t off):
    cdef list out = []
    cdef Py_ssize_t end, t, ln
    if off + 2 > len(body):
        return out
    end = min(len(body), off + 2 + ((body[off] << 8) | body[off + 1]))
    off += 2
    while off + 4 <= end:
        t = (body[off] << 8) | body[off + 1]
        ln = (body[off + 2] << 8) | body[off + 3]
        out.append((t, body[off + 4:off + 4 + ln]))
        off += 4 + ln
    return out

cdef list alpn_list(bytes data):
    cdef list out = []
    cdef Py_ssize_t off = 2, ln
    while off < len(data):
        ln = data[off]
        out.append(data[off + 1:off + 1 + ln].decode("ascii", "replace"))
        off += 1 + ln
    return out

cdef void tls_client_hello(TlsInfo t, bytes hs):
    cdef Py_ssize_t off = 4 + 2 + 32
    off += 1 + hs[off]                                      # session id
    off += 2 + ((hs[off] << 8) | hs[off + 1])               # cipher suites
    off += 1 + hs[off]                                      # compression methods
    t.versions_offered = [tls_version_name((hs[4] << 8) | hs[5])]
    for typ, data in tls_extensions(hs, off):
        if typ == 0 and len(data) > 5 and data[2] == 0:     # server_name: host_name
            t.server_name = data[5:5 + ((data[3] << 8) | data[4])].decode("ascii", "replace")
        elif typ == 16:
            t.alpn_offered = alpn_list(data)
        elif typ == 43 and len(data) > 1:                   # supported_versions
            t.versions_offered = [tls_version_name((data[i] << 8) | data[i + 1])
                                  for i in range(1, min(len(data), 1 + data[0]) - 1, 2)
                                  if not grease((data[i] << 8) | data[i + 1])]

cdef void tls_server_hello(TlsInfo t, bytes hs):
    cdef Py_ssize_t off = 4 + 2 + 32
    cdef int version = (hs[4] << 8) | hs[5]
    off += 1 + hs[off]
    t.cipher = "0x%04x" % ((hs[off] << 8) | hs[off + 1])
    off += 3
    for typ, data in tls_extensions(hs, off):
        if typ == 43 and len(data) == 2:
            version = (data[0] << 8) | data[1]
        elif typ == 16:
            names = alpn_list(data)
            if names:
                t.alpn = names[0]
    t.version = tls_version_name(version)


cdef TlsInfo tls_info(Engine eng, Flow* f):
    if f.tls == NULL:
        t = TlsInfo.__new__(TlsInfo)
        info = flow_info(f)
        t.client_addr, t.client_port, t.server_addr, t.server_port, t.community_id, t.encap = info
        if not f.syn_seen:
            t.flags |= TF_MIDSTREAM
        Py_INCREF(t)
        f.tls = <PyObject*>t
    return <TlsInfo>f.tls

# Hello bytes of direction d. Parsing stops for good once both hellos are read.
cdef void tls_data(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    cdef H1* h = &f.half[d].h1
    cdef TlsInfo t
    if h.state == H1_OFF:
        return
    if h.len + n > TLS_MAX_HELLO or not h1_buf_append(h, p, n, eng):
        h.state = H1_OFF
        h1_buf_free(h, eng)
        return
    if h.buf[0] != 0x16:
        h.state = H1_OFF
        h1_buf_free(h, eng)
        return
    try:
        hs = tls_handshake((<char*>h.buf)[:h.len])
        if hs is None:
            return
        t = tls_info(eng, f)
        if hs[0] == 1 and d == f.client:
            t.start_ns = ts
            tls_client_hello(t, hs)
        elif hs[0] == 2 and d != f.client:
            t.end_ns = ts
            tls_server_hello(t, hs)
    except IndexError:
        eng.tls_malformed += 1      # a hello cut short inside its own length fields
    h.state = H1_OFF
    h1_buf_free(h, eng)
    if f.half[0].h1.state == H1_OFF and f.half[1].h1.state == H1_OFF:
        tls_emit(eng, f)

cdef void tls_emit(Engine eng, Flow* f):
    cdef TlsInfo t
    if f.tls == NULL:
        return
    t = <TlsInfo>f.tls
    if not t.emitted and (t.server_name is not None or t.version is not None):
        t.emitted = True
        if t.version is None:
            t.flags |= TF_NO_RESPONSE
        eng.out.append(t)
        eng.tls_records += 1
