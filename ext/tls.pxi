# tls: what a sensor can learn of an encrypted connection from its handshake.
#
# The ClientHello gives the server name (SNI), the ALPN protocols offered and
# the versions offered; the ServerHello the version and cipher chosen and,
# up to TLS 1.2, the ALPN protocol chosen (TLS 1.3 moves it into encrypted
# extensions). Up to TLS 1.2 the rest of the handshake is in the clear too:
# whether the server asked for a client certificate (CertificateRequest) and
# whether the client sent one, mutual TLS, its auth scheme. One `tls` record
# per connection, so an inventory knows which hosts speak h2 over TLS and how
# clients authenticate. Handshake bytes are collected in the direction's
# bounded HTTP/1 buffer (unused on a TLS connection) until the direction's
# cleartext handshake ends, and parsed as messages become whole.

try:
    from _md5 import md5 as _md5    # the builtin, as engine.pxi's sha1: hashlib costs start-up time
except ImportError:
    from hashlib import md5 as _md5

cdef enum:
    TLS_MAX_HELLO = 32768           # bytes collected before giving up on a handshake
    TLS_MAX_RECORDS = 32            # handshake records read per direction (each read parses them all)



@cython.no_gc
cdef class TlsInfo:
    cdef public object client_addr, server_addr, community_id, encap
    cdef public int client_port, server_port
    cdef public int64_t start_ns, end_ns
    cdef public object server_name, alpn_offered, versions_offered
    cdef public object version, cipher, alpn
    cdef public object client_auth      # "certificate", "requested", "none", "unknown" (see tls_emit)
    cdef public object ja3, ja3s        # JA3 fingerprints of the hellos (MD5 hex)
    cdef public uint32_t flags
    cdef bint emitted
    cdef bint client_cert               # the client sent a certificate
    cdef bint client_unread             # the client's handshake was given up on before its end

    @property
    def completeness(self):
        return flag_names(self.flags)


cdef inline bint tls_hello_start(const uint8_t* p, uint32_t n) noexcept nogil:
    # what there is of the six bytes that tell a hello is one's: handshake record,
    # TLS 1.x record version, then ClientHello/ServerHello (no HTTP starts with 0x16)
    return (n > 0 and p[0] == 0x16 and (n < 2 or p[1] == 3) and (n < 3 or p[2] <= 4)
            and (n < 6 or p[5] == 1 or p[5] == 2))

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

cdef int tls_records_whole(const uint8_t* b, uint32_t n) noexcept nogil:
    """The handshake records in the bytes collected when they end where a
    record ends, or where a record other than a handshake begins; else -1.
    Only then is parsing them worth it (a peer dribbling a handshake a byte a
    segment costs a header walk each)."""
    cdef uint32_t off = 0
    cdef int records = 0
    while off + 5 <= n:
        if b[off] != 0x16:
            return records
        off += 5 + ((b[off + 3] << 8) | b[off + 4])
        records += 1
    return records if off == n else -1


cdef tuple tls_messages(bytes raw):
    """(the whole handshake messages at the start of `raw`, gathered across
    records; True when a record other than a handshake follows them: the
    direction's handshake in the clear is over)."""
    cdef bytearray hs = bytearray()
    cdef list msgs = []
    cdef Py_ssize_t off = 0, ln
    cdef bint ended = False
    while off + 5 <= len(raw):
        if raw[off] != 0x16:
            ended = True
            break
        ln = (raw[off + 3] << 8) | raw[off + 4]
        hs += raw[off + 5:off + 5 + ln]
        off += 5 + ln
    off = 0
    while off + 4 <= len(hs):
        ln = (hs[off + 1] << 16) | (hs[off + 2] << 8) | hs[off + 3]
        if off + 4 + ln > len(hs):
            break
        msgs.append(bytes(hs[off:off + 4 + ln]))
        off += 4 + ln
    return msgs, ended

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

cdef list u16_list(bytes data, Py_ssize_t off, Py_ssize_t end):
    """The 16-bit values from off to end, GREASE left out (as JA3 does)."""
    cdef list out = []
    cdef int v
    for i in range(off, min(end, len(data)) - 1, 2):
        v = (data[i] << 8) | data[i + 1]
        if not grease(v):
            out.append(v)
    return out


cdef str ja3_hash(list fields):
    """JA3's MD5 of its comma-separated fields, each a dash-joined list of decimals."""
    text = ",".join(["-".join([str(v) for v in f]) if type(f) is list else str(f) for f in fields])
    return _md5(text.encode(), usedforsecurity=False).hexdigest()


cdef void tls_client_hello(TlsInfo t, bytes hs):
    cdef Py_ssize_t off = 4 + 2 + 32, n
    cdef list ext_types = [], groups = [], formats = []
    off += 1 + hs[off]                                      # session id
    n = (hs[off] << 8) | hs[off + 1]
    ciphers = u16_list(hs, off + 2, off + 2 + n)
    off += 2 + n                                            # cipher suites
    off += 1 + hs[off]                                      # compression methods
    t.versions_offered = [tls_version_name((hs[4] << 8) | hs[5])]
    for typ, data in tls_extensions(hs, off):
        if not grease(typ):
            ext_types.append(typ)
        if typ == 10 and len(data) >= 2:                    # supported_groups
            groups = u16_list(data, 2, 2 + ((data[0] << 8) | data[1]))
        elif typ == 11 and len(data) >= 1:                  # ec_point_formats
            formats = list(data[1:1 + data[0]])
        if typ == 0 and len(data) > 5 and data[2] == 0:     # server_name: host_name
            t.server_name = data[5:5 + ((data[3] << 8) | data[4])].decode("ascii", "replace")
        elif typ == 16:
            t.alpn_offered = alpn_list(data)
        elif typ == 43 and len(data) > 1:                   # supported_versions
            t.versions_offered = [tls_version_name(v) for v in u16_list(data, 1, 1 + data[0])]
    t.ja3 = ja3_hash([(hs[4] << 8) | hs[5], ciphers, ext_types, groups, formats])

cdef void tls_server_hello(TlsInfo t, bytes hs):
    cdef Py_ssize_t off = 4 + 2 + 32
    cdef int version = (hs[4] << 8) | hs[5], cipher
    cdef list ext_types = []
    off += 1 + hs[off]
    cipher = (hs[off] << 8) | hs[off + 1]
    t.cipher = "0x%04x" % cipher
    off += 3
    for typ, data in tls_extensions(hs, off):
        ext_types.append(typ)
        if typ == 43 and len(data) == 2:
            version = (data[0] << 8) | data[1]
        elif typ == 16:
            names = alpn_list(data)
            if names:
                t.alpn = names[0]
    t.ja3s = ja3_hash([(hs[4] << 8) | hs[5], cipher, ext_types])
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

# Handshake bytes of direction d, parsed again as they grow (at most
# TLS_MAX_HELLO): the hello once, then up to TLS 1.2 the server's flight to
# ServerHelloDone (did it ask for a certificate?) and the client's to its
# ChangeCipherSpec (did it send one?).
cdef void tls_data(Engine eng, Flow* f, int d, const uint8_t* p, uint32_t n, int64_t ts):
    cdef H1* h = &f.half[d].h1
    cdef TlsInfo t
    cdef bint done = False
    cdef int records
    if h.state == H1_OFF:
        return
    if h.len + n > TLS_MAX_HELLO or not h1_buf_append(h, p, n, eng) or h.buf[0] != 0x16:
        tls_give_up(eng, f, d)
        return
    if h.len < 6:                       # too few bytes yet to tell a hello (app_detect)
        return
    if f.client < 0:                    # no TCP handshake said which side is the client: the hello does
        if not tls_hello_start(h.buf, h.len):
            tls_give_up(eng, f, d)
            return
        f.client = d if h.buf[5] == 1 else 1 - d
    records = tls_records_whole(h.buf, h.len)
    if records < 0:
        return
    if records > TLS_MAX_RECORDS:     # real flights take a few: a peer cutting them small is not read on
        tls_give_up(eng, f, d)
        return
    try:
        msgs, done = tls_messages((<char*>h.buf)[:h.len])
        if not msgs:
            if done:
                tls_done(eng, f, d)
            return
        t = tls_info(eng, f)
        if d == f.client:
            if t.ja3 is None and msgs[0][0] == 1:       # the ClientHello, read once
                t.start_ns = ts
                tls_client_hello(t, msgs[0])
            for m in msgs[1:]:
                if m[0] == 11 and len(m) >= 7 and (m[4] or m[5] or m[6]):     # Certificate, a chain in it
                    t.client_cert = True
            done = done or msgs[0][0] != 1 or t.version == "1.3"
        else:
            if t.version is None and msgs[0][0] == 2:
                t.end_ns = ts
                tls_server_hello(t, msgs[0])
            for m in msgs[1:]:
                if m[0] == 13:                      # CertificateRequest
                    t.client_auth = "requested"
                elif m[0] == 14:                    # ServerHelloDone: the flight is whole
                    t.client_auth = t.client_auth or "none"
                    done = True
            done = done or msgs[0][0] != 2 or t.version == "1.3"
    except IndexError:
        eng.tls_malformed += 1      # a hello cut short inside its own length fields
        tls_give_up(eng, f, d)
        return
    if done:
        tls_done(eng, f, d)

cdef void tls_give_up(Engine eng, Flow* f, int d):
    """Stops reading direction d before its handshake in the clear ended:
    on the client's side, whether it sent a certificate stays unknown."""
    if f.tls != NULL and d == f.client:
        (<TlsInfo>f.tls).client_unread = True
    tls_done(eng, f, d)

cdef void tls_done(Engine eng, Flow* f, int d):
    """Stops reading direction d; the record goes out once both stopped."""
    cdef H1* h = &f.half[d].h1
    h.state = H1_OFF
    h1_buf_free(h, eng)
    if f.half[0].h1.state == H1_OFF and f.half[1].h1.state == H1_OFF:
        tls_emit(eng, f)

cdef void tls_emit(Engine eng, Flow* f):
    cdef TlsInfo t
    if f.tls == NULL:
        return
    t = <TlsInfo>f.tls
    if not t.emitted and (t.ja3 is not None or t.version is not None):     # a hello was read
        t.emitted = True
        if t.version is None:
            t.flags |= TF_NO_RESPONSE
        # a certificate is mutual TLS whatever else was seen; TLS 1.3 and
        # resumed sessions hide the question, as does a handshake cut short
        if t.client_cert:
            t.client_auth = "certificate"
        elif t.client_auth is None or t.version == "1.3" or t.client_unread:
            t.client_auth = "unknown"
        eng.out.append(t)
        eng.tls_records += 1
