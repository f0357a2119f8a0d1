# engine: the capture loop. Packet -> decode -> flow -> stream -> HTTP/1 ->
# Txn, with flow lifetimes (handshake, FIN/RST, port reuse, idle timeout by
# packet time) and a global memory budget whose evictions are counted.

from binascii import b2a_base64
try:
    from _sha1 import sha1          # the builtin: importing hashlib (OpenSSL) costs start-up time
except ImportError:
    from hashlib import sha1
from libc.stdio cimport snprintf

cdef extern from "arpa/inet.h" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef enum:
    AF_INET_ = 2
    AF_INET6_ = 10

cdef int64_t SEC = 1000000000

cdef enum:
    DEDUP_SLOTS = 8192              # recent frames remembered for duplicate suppression: small
                                    # enough to stay in cache (a copy arrives within microseconds)

cdef struct DedupSlot:
    uint64_t fingerprint
    int64_t ts


cdef str addr_str(const uint8_t* a, int ipver):
    cdef char buf[64]
    inet_ntop(AF_INET_ if ipver == 4 else AF_INET6_, a, buf, 64)
    return buf.decode("ascii")

cdef str community_id(FlowKey* k):
    # Community ID v1 (seed 0): the key's endpoint order is already the spec's
    cdef int alen = 4 if k.ipver == 4 else 16
    cdef bytes raw = (b"\x00\x00" + (<char*>k.a)[:alen] + (<char*>k.b)[:alen]
                      + b"\x06\x00" + k.pa.to_bytes(2, "big") + k.pb.to_bytes(2, "big"))
    return "1:" + b2a_base64(sha1(raw).digest(), newline=False).decode("ascii")


cdef list flow_pending(Flow* f):
    if f.pending == NULL:
        lst = []
        Py_INCREF(lst)
        f.pending = <PyObject*>lst
    return <list>f.pending

# (client address, client port, server address, server port, community id,
# encapsulation), made once per connection when its first record is
cdef tuple flow_info(Flow* f):
    cdef tuple info
    cdef int i
    if f.info == NULL:
        a = addr_str(f.key.a, f.key.ipver)
        b = addr_str(f.key.b, f.key.ipver)
        info = (a, f.key.pa, b, f.key.pb) if f.client <= 0 else (b, f.key.pb, a, f.key.pa)
        encap = [{ENCAP_NAMES[f.encap_kind[i]]: f.encap_id[i]} for i in range(f.nencap)] or None
        info += (community_id(&f.key), encap)
        Py_INCREF(info)
        f.info = <PyObject*>info
    return <tuple>f.info

cdef Txn txn_new(Engine eng, Flow* f):
    cdef Txn t = Txn.__new__(Txn)
    cdef tuple info = flow_info(f)
    t.client_addr, t.client_port, t.server_addr, t.server_port, t.community_id, t.encap = info
    t.flow_id = f.id
    if not f.syn_seen:
        t.flags |= TF_MIDSTREAM
    return t

cdef void txn_maybe_emit(Engine eng, Txn t):
    if not t.emitted and t.resp_done and (t.req_done or t.flags & TF_NO_REQUEST):
        t.emitted = True
        t.flags |= eng.emit_flags
        eng.mem -= t.body_cap[0] + t.body_cap[1]      # the bodies leave with the record
        eng.out.append(t)
        eng.transactions += 1

# Emits whatever a finished flow still holds, saying what is missing.
cdef void txn_flush(Engine eng, Flow* f):
    cdef list left = []
    cdef Txn t
    cdef int d
    for d in range(2):
        if f.half[d].h1.cur != NULL:
            left.append(<Txn>f.half[d].h1.cur)
            h1_set_cur(&f.half[d].h1, None)
    if f.pending != NULL:
        left.extend(<list>f.pending)
        del (<list>f.pending)[:]
    for t in left:
        if t.emitted:
            continue
        if not t.req_done and not t.flags & TF_NO_REQUEST:
            t.flags |= TF_REQUEST_TRUNCATED
            t.req_done = True
        if not t.resp_done:
            t.flags |= TF_RESPONSE_TRUNCATED if t.response_seen else TF_NO_RESPONSE
            t.resp_done = True
        txn_maybe_emit(eng, t)


cdef class Engine:
    cdef DecodeCtx dc
    cdef FlowTable table
    cdef public list out            # finished Txn objects, drained by the caller
    cdef uint64_t mem, budget, ooo_cap
    cdef int64_t idle_timeout, closed_timeout, now, last_sweep
    cdef uint32_t emit_flags
    cdef DedupSlot* dedup           # NULL when suppression is off
    cdef int64_t dedup_window
    cdef uint64_t duplicates
    cdef uint32_t h2_max_streams, h2_max_block, h2_max_header_list
    cdef uint64_t h2_max_frames
    cdef bint keep_fields           # keep the values of the header fields enrichment inspects
    cdef uint32_t body_cap          # bytes of each body kept for enrichment; 0 = none
    cdef uint64_t next_id
    cdef uint64_t h1_anom[<int>HA_COUNT]
    cdef uint64_t h2_anom[<int>H2A_COUNT]
    cdef uint64_t packets, bytes, tcp_segments, flows, flows_timed_out, flows_evicted
    cdef uint64_t transactions, gaps, gap_bytes, retransmissions, overlaps, overlaps_diff
    cdef uint64_t ooo_segments, ooo_overflows, flows_reused, tls_records, tls_malformed
    cdef object bpf_expr            # capture filter for files (libpcap syntax), or None
    cdef BpfFilter bpf              # compiled for bpf_linktype
    cdef int bpf_linktype
    cdef uint64_t filtered

    def __cinit__(self, memory_budget=256 << 20, ooo_cap=4 << 20, idle_timeout=300.0,
                  closed_timeout=10.0, h2_max_streams=1024, h2_max_header_block=256 << 10,
                  h2_max_header_list=64 << 10, h2_max_frames=10_000_000, dedup_window=0.01,
                  tunnel_in_key=True, vlan_in_key=False, enrich=False, body_cap=0):
        """Limits: memory_budget (bytes of flow state, evictions counted),
        ooo_cap (out-of-order bytes held per direction), HTTP/2 streams open
        per connection, header block bytes (HEADERS+CONTINUATION), decoded
        header list bytes, frames per connection; every hit is counted.
        dedup_window: seconds within which an identical frame (SPAN ingress +
        egress, two mirrored interfaces) is a copy, dropped and counted; 0 = off.
        Retransmissions differ (IP id, TCP timestamps) or come later.
        tunnel_in_key / vlan_in_key: tunnel ids (VNI, GRE key, ERSPAN session)
        / VLAN ids join the connection key, so the same addresses seen in two
        mirror sessions stay two connections.
        enrich: keep, for enrichment, the values of the header fields it
        inspects (credentials, cookies, custom fields) and body_cap bytes of
        each request and response body of a media type it reads (longer
        bodies flagged; 0 = no bodies)."""
        memset(&self.dc, 0, sizeof(DecodeCtx))
        self.dc.tunnel_in_key = tunnel_in_key
        self.dc.vlan_in_key = vlan_in_key
        self.table = FlowTable()
        self.out = []
        self.budget = memory_budget
        self.ooo_cap = ooo_cap
        self.idle_timeout = <int64_t>(idle_timeout * SEC)
        self.closed_timeout = <int64_t>(closed_timeout * SEC)
        self.h2_max_streams = max(1, h2_max_streams)
        self.h2_max_block = h2_max_header_block
        self.h2_max_header_list = h2_max_header_list
        self.h2_max_frames = h2_max_frames
        self.keep_fields = enrich
        self.body_cap = body_cap if enrich else 0
        self.dedup_window = <int64_t>(dedup_window * SEC)
        if self.dedup_window > 0:
            self.dedup = <DedupSlot*>calloc(DEDUP_SLOTS, sizeof(DedupSlot))
            if self.dedup == NULL:
                raise MemoryError()

    def __dealloc__(self):
        if self.table is not None:
            self._free_list(&self.table.active)
            self._free_list(&self.table.closed)
        frag_clear(&self.dc.frags)
        free(self.dedup)

    cdef void _free_list(self, FlowList* l):
        cdef Flow* f = l.head
        cdef Flow* nx
        while f != NULL:
            nx = f.next
            flow_release(self, f)
            f = nx
        l.head = l.tail = NULL

    # ------------------------------------------------------------ per packet
    cdef void packet(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                     int linktype, int64_t ts):
        cdef Segment s
        cdef FlowKey k
        cdef Flow* f
        cdef int d
        cdef uint32_t h
        cdef DedupSlot* ds
        self.packets += 1
        self.bytes += wirelen
        if not decode_packet(&self.dc, data, caplen, wirelen, linktype, ts, &s):
            return
        if self.dedup != NULL:
            ds = &self.dedup[s.fingerprint & (DEDUP_SLOTS - 1)]
            if ds.fingerprint == s.fingerprint and 0 <= ts - ds.ts <= self.dedup_window:
                self.duplicates += 1
                return
            ds.fingerprint = s.fingerprint
            ds.ts = ts
        self.tcp_segments += 1
        if ts > self.now:
            self.now = ts
        if self.now - self.last_sweep > SEC:
            self.sweep()
        d = make_key(&s, &k)
        h = key_hash(&k)
        f = self.table.find(&k, h)
        if f != NULL and s.flags & (TH_SYN | TH_ACK) == TH_SYN:
            # a new SYN on a known 4-tuple: a retransmitted SYN, or port reuse
            if f.closed or f.half[d].seq_known and s.seq != f.half[d].isn:
                self.flows_reused += 1
                self.drop_flow(f)
                f = NULL
        if f == NULL:
            if s.flags & TH_RST:
                return
            f = self.new_flow(&k, h, &s)
            if f == NULL:
                return
        elif f.closed:
            return
        f.last_ts = ts
        list_remove(&self.table.active, f)
        list_append(&self.table.active, f)
        if s.flags & TH_SYN:
            if not f.syn_seen:
                f.syn_seen = 1
            if f.client < 0:
                f.client = d if not s.flags & TH_ACK else 1 - d
        stream_segment(self, f, d, &s)
        if s.flags & TH_RST:
            self.finish_flow(f, 0)
        elif f.half[0].eof and f.half[1].eof:
            self.finish_flow(f, 0)
        if self.mem > self.budget:
            self.evict()

    cdef Flow* new_flow(self, FlowKey* k, uint32_t h, Segment* s):
        cdef Flow* f = <Flow*>calloc(1, sizeof(Flow))
        cdef int64_t ts = s.ts
        if f == NULL:
            return NULL
        f.nencap = s.nencap
        memcpy(f.encap_kind, s.encap_kind, sizeof(f.encap_kind))
        memcpy(f.encap_id, s.encap_id, sizeof(f.encap_id))
        f.key = k[0]
        f.hash = h
        f.client = -1
        f.first_ts = f.last_ts = ts
        self.next_id += 1
        f.id = self.next_id
        f.half[0].h1.line_start = 1
        f.half[1].h1.line_start = 1
        if self.table.insert(f) < 0:
            free(f)
            return NULL
        list_append(&self.table.active, f)
        self.mem += sizeof(Flow) + 2 * sizeof(Flow*)
        self.flows += 1
        return f

    # Ends a flow: delivers what is queued, emits what it holds, and parks it
    # on the closed list so late packets of it are recognised.
    cdef void finish_flow(self, Flow* f, uint32_t flags):
        if f.closed:
            return
        self.emit_flags = flags
        stream_finish(self, f)
        txn_flush(self, f)
        self.emit_flags = 0
        f.closed = 1
        list_remove(&self.table.active, f)
        list_append(&self.table.closed, f)
        f.on_closed_list = 1

    cdef void drop_flow(self, Flow* f):
        self.finish_flow(f, 0)
        list_remove(&self.table.closed, f)
        self.table.remove(f)
        flow_release(self, f)

    cdef void sweep(self):
        cdef Flow* f
        self.last_sweep = self.now
        while self.table.closed.head != NULL and self.now - self.table.closed.head.last_ts > self.closed_timeout:
            self.drop_flow(self.table.closed.head)
        while self.table.active.head != NULL and self.now - self.table.active.head.last_ts > self.idle_timeout:
            f = self.table.active.head
            self.flows_timed_out += 1
            self.drop_flow(f)

    cdef void evict(self):
        cdef Flow* f
        # closed flows hold no data; then the least recently active ones go
        while self.mem > self.budget and self.table.closed.head != NULL:
            self.drop_flow(self.table.closed.head)
        while self.mem > self.budget and self.table.active.head != NULL:
            self.flows_evicted += 1
            f = self.table.active.head
            self.finish_flow(f, TF_EVICTED)
            self.drop_flow(f)

    # ------------------------------------------------------------ Python API
    def set_filter(self, expr):
        """A BPF expression (libpcap syntax) packets of files must match;
        compiled for each link type as it appears (sensor.bpf.BpfError if bad)."""
        self.bpf_expr = expr
        self.bpf = None
        self.bpf_linktype = -1

    def run(self, CaptureReader reader, on_batch, on_progress=None, int batch_packets=8192):
        """Feeds every packet of `reader`; calls on_batch(list of Txn) as
        transactions finish and on_progress(reader) every batch_packets."""
        cdef RawPacket rp
        cdef int k = 0
        while reader.next(&rp):
            if self.bpf_expr is not None:
                if rp.linktype != self.bpf_linktype:
                    from .bpf import compile_bpf      # once per link type seen
                    self.bpf = BpfFilter(compile_bpf(self.bpf_expr, rp.linktype))
                    self.bpf_linktype = rp.linktype
                if not self.bpf.accept(rp.data, rp.caplen, rp.wirelen):
                    self.filtered += 1
                    continue
            self.packet(rp.data, rp.caplen, rp.wirelen, rp.linktype, rp.ts_ns)
            k += 1
            if k == batch_packets or len(self.out) >= 1024:     # bounded, even when few packets carry many streams
                k = 0
                if self.out:
                    on_batch(self.out)
                    self.out = []
                if on_progress is not None:
                    on_progress(reader)
        if self.out:
            on_batch(self.out)
            self.out = []

    def feed(self, bytes data, int linktype, int64_t ts_ns):
        """Feeds one packet (tests, live capture wrappers)."""
        self.packet(<const uint8_t*>data, len(data), len(data), linktype, ts_ns)

    def tick(self, int64_t now_ns):
        """Live capture with no packets: wall time moves the flow timeouts on."""
        if now_ns > self.now:
            self.now = now_ns
        self.sweep()

    def finish(self):
        """Ends every open flow (end of input); returns the last Txn objects."""
        while self.table.active.head != NULL:
            self.finish_flow(self.table.active.head, 0)
        out, self.out = self.out, []
        return out

    def stats(self):
        skipped = {SKIP_NAMES[i]: self.dc.skipped[i] for i in range(<int>SK_COUNT) if self.dc.skipped[i]}
        anomalies = {H1_ANOMALY_NAMES[i]: self.h1_anom[i] for i in range(<int>HA_COUNT) if self.h1_anom[i]}
        anomalies.update({H2_ANOMALY_NAMES[i]: self.h2_anom[i] for i in range(<int>H2A_COUNT) if self.h2_anom[i]})
        if self.tls_malformed:
            anomalies["tls_malformed_hello"] = self.tls_malformed
        return {
            "packets": self.packets, "bytes": self.bytes, "tcp_segments": self.tcp_segments,
            "flows": self.flows, "flows_reused": self.flows_reused,
            "flows_timed_out": self.flows_timed_out, "flows_evicted": self.flows_evicted,
            "transactions": self.transactions, "tls_records": self.tls_records, "gaps": self.gaps, "gap_bytes": self.gap_bytes,
            "duplicates_dropped": self.duplicates, "filtered_out": self.filtered, "retransmissions": self.retransmissions, "overlaps": self.overlaps,
            "overlaps_with_different_data": self.overlaps_diff,
            "out_of_order_segments": self.ooo_segments, "reassembly_overflows": self.ooo_overflows,
            "memory_in_use": self.mem, "packets_not_decoded": skipped, "http_anomalies": anomalies,
        }


cdef void flow_release(Engine eng, Flow* f):
    cdef int d
    for d in range(2):
        seg_free_all(eng, &f.half[d])
        h1_set_cur(&f.half[d].h1, None)
        h1_buf_free(&f.half[d].h1, eng)
    h2_free(eng, f)
    Py_XDECREF(f.pending)
    Py_XDECREF(f.info)
    Py_XDECREF(f.tls)
    eng.mem -= sizeof(Flow) + 2 * sizeof(Flow*)
    free(f)
