# decode: link layer -> (VLAN, MPLS, PPPoE) -> IPv4/IPv6 (+ fragments) -> TCP.
#
# Pure C over the captured bytes: fills a Segment and says whether the packet
# carries TCP. Every packet that is not decoded is counted by reason, never
# silently ignored. Tunnels will re-enter the loop at ETHER or IP and fold
# their ids into Segment.ctx, which joins the flow key.

# link types (LINKTYPE_* values as written in pcap/pcapng files)
cdef enum:
    LT_NULL = 0
    LT_ETHER = 1
    LT_PPP = 9
    LT_RAW_OLD1 = 12
    LT_RAW_OLD2 = 14
    LT_PPP_HDLC = 50
    LT_PPP_ETHER = 51
    LT_RAW = 101
    LT_CHDLC = 104
    LT_LOOP = 108
    LT_SLL = 113
    LT_RADIOTAP = 127
    LT_IPV4 = 228
    LT_IPV6 = 229
    LT_NFLOG = 239
    LT_SLL2 = 276
    LT_ATM_RFC1483 = 100
    LT_IEEE802_11 = 105
    LT_PFLOG = 117
    LT_PRISM = 119
    LT_AVS = 163
    LT_PPI = 192
    LT_PPP_WITH_DIR = 204
    LT_CHDLC_WITH_DIR = 205

# what the decode loop looks at next
cdef enum:
    N_ETHER = 0
    N_ETHERTYPE = 1     # an ethertype value has been read into `etype`
    N_IP = 2            # version taken from the first nibble
    N_IPV4 = 3
    N_IPV6 = 4
    N_PPP = 5           # 2-byte PPP protocol field
    N_MPLS = 6
    N_80211 = 7
    N_UDP = 8           # tunnels over UDP: VXLAN, Geneve, GRE-in-UDP
    N_GRE = 9           # GRE: plain, TEB, ERSPAN I/II/III

cdef enum:
    MAX_LAYERS = 16     # bound on nested headers so crafted packets cannot loop

# reasons a packet is not decoded into a TCP segment
cdef enum Skip:
    SK_LINKTYPE = 0     # unsupported link type
    SK_TRUNC_LINK       # link/VLAN/MPLS/PPPoE header cut short
    SK_NOT_IP           # ethertype/protocol other than IP
    SK_BAD_IP           # malformed IPv4/IPv6 header
    SK_TRUNC_IP         # IP header cut short by snaplen
    SK_FRAG_HELD        # fragment kept for reassembly (not an error)
    SK_FRAG_DROPPED     # fragment dropped: table full, timeout, bad offsets
    SK_NOT_TCP          # other transport (UDP, ICMP, ...)
    SK_BAD_TCP          # malformed TCP header
    SK_TOO_DEEP         # more nested headers than MAX_LAYERS
    SK_80211_OTHER      # 802.11 management/control/protected frame
    SK_COUNT

SKIP_NAMES = ("unsupported_linktype", "truncated_link", "not_ip", "bad_ip_header",
              "truncated_ip", "ip_fragment_held", "ip_fragment_dropped", "not_tcp",
              "bad_tcp_header", "too_many_layers", "wifi_non_data")

# TCP flags
cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_ACK = 0x10

# encapsulations recorded with a flow (sensor.encap); tunnel ids may join the
# flow key (DecodeCtx.tunnel_in_key / vlan_in_key) so equal private addresses
# seen through two mirror sessions stay apart
cdef enum:
    MAX_ENCAP = 6
    EN_VLAN = 1
    EN_MPLS = 2
    EN_PPPOE = 3
    EN_VXLAN = 4
    EN_GENEVE = 5
    EN_GRE_KEY = 6
    EN_ERSPAN = 7

ENCAP_NAMES = (None, "vlan", "mpls", "pppoe", "vxlan", "geneve", "gre_key", "erspan")

cdef struct Segment:
    uint32_t ctx            # tunnel/VLAN context folded into the flow key (0 = none)
    uint8_t ipver
    uint8_t src[16]
    uint8_t dst[16]
    uint16_t sport
    uint16_t dport
    uint32_t seq
    uint32_t ack
    uint8_t flags
    const uint8_t* payload
    uint32_t caplen         # payload bytes captured
    uint32_t wirelen        # payload bytes per the IP header (more when snaplen cut them)
    int64_t ts
    uint32_t ip_id          # IPv4 identification (0 for IPv6)
    uint8_t nencap          # encapsulation layers seen, outermost first
    uint8_t encap_kind[MAX_ENCAP]
    uint32_t encap_id[MAX_ENCAP]
    uint64_t fingerprint    # same frame seen twice (SPAN) <=> same fingerprint


cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint16_t rd16le(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[1] << 8) | p[0]


# ---------------------------------------------------------------- IPv4/IPv6 fragments
# A small fixed table of datagrams under reassembly. Bounded in count, size and
# time: a flood of fragments evicts the oldest entry (counted), never grows.
cdef enum:
    FRAG_SLOTS = 256
    FRAG_MAX_PIECES = 64
cdef int64_t FRAG_TIMEOUT_NS = 30000000000LL   # a datagram must complete within 30 s of packet time

cdef struct FragEntry:
    bint used
    uint8_t ipver
    uint8_t proto
    uint8_t src[16]
    uint8_t dst[16]
    uint32_t ident
    int64_t first_ts
    uint8_t* buf            # transport payload being rebuilt
    uint32_t cap
    uint32_t total          # known once the last fragment arrived (0 = unknown)
    uint16_t npieces
    uint32_t piece_off[FRAG_MAX_PIECES]
    uint32_t piece_end[FRAG_MAX_PIECES]

cdef struct FragTable:
    FragEntry slots[FRAG_SLOTS]
    uint8_t* done           # last reassembled payload; freed on the next completion
    uint64_t mem

cdef void frag_free_entry(FragTable* t, FragEntry* e) noexcept nogil:
    if e.buf != NULL:
        t.mem -= e.cap
        free(e.buf)
    memset(e, 0, sizeof(FragEntry))

cdef void frag_clear(FragTable* t) noexcept nogil:
    cdef int i
    for i in range(FRAG_SLOTS):
        if t.slots[i].used:
            frag_free_entry(t, &t.slots[i])
    if t.done != NULL:
        free(t.done)
        t.done = NULL

cdef bint frag_covered(FragEntry* e) noexcept nogil:
    # pieces are few (<= 64): repeatedly extend the covered prefix
    cdef uint32_t upto = 0
    cdef int i
    cdef bint grew = True
    while grew and upto < e.total:
        grew = False
        for i in range(e.npieces):
            if e.piece_off[i] <= upto < e.piece_end[i]:
                upto = e.piece_end[i]
                grew = True
    return upto >= e.total

# Adds one fragment. Returns the reassembled transport payload (length in *outlen)
# when the datagram is complete, else NULL with *why set.
cdef const uint8_t* frag_add(FragTable* t, uint8_t ipver, const uint8_t* src, const uint8_t* dst,
                             uint32_t ident, uint8_t proto, uint32_t off, bint more,
                             const uint8_t* data, uint32_t n, int64_t ts,
                             uint32_t* outlen, int* why) noexcept nogil:
    cdef int alen = 4 if ipver == 4 else 16
    cdef int i, free_i = -1, old_i = 0
    cdef FragEntry* e = NULL
    cdef uint32_t end = off + n
    cdef uint32_t newcap
    cdef uint8_t* nb
    why[0] = SK_FRAG_HELD
    if end > 65535 + 65535 or n == 0 and more:
        why[0] = SK_FRAG_DROPPED
        return NULL
    for i in range(FRAG_SLOTS):
        if t.slots[i].used:
            if ts - t.slots[i].first_ts > FRAG_TIMEOUT_NS:
                frag_free_entry(t, &t.slots[i])
                if free_i < 0:
                    free_i = i
                continue
            if (t.slots[i].ident == ident and t.slots[i].proto == proto and t.slots[i].ipver == ipver
                    and memcmp(t.slots[i].src, src, alen) == 0 and memcmp(t.slots[i].dst, dst, alen) == 0):
                e = &t.slots[i]
                break
            if t.slots[i].first_ts < t.slots[old_i].first_ts or not t.slots[old_i].used:
                old_i = i
        elif free_i < 0:
            free_i = i
    if e == NULL:
        if free_i < 0:                      # table full: the oldest datagram gives way
            frag_free_entry(t, &t.slots[old_i])
            free_i = old_i
        e = &t.slots[free_i]
        e.used = True
        e.ipver = ipver
        e.proto = proto
        memcpy(e.src, src, alen)
        memcpy(e.dst, dst, alen)
        e.ident = ident
        e.first_ts = ts
    if e.npieces >= FRAG_MAX_PIECES:
        frag_free_entry(t, e)
        why[0] = SK_FRAG_DROPPED
        return NULL
    if end > e.cap:
        newcap = end if end > 2048 else 2048
        nb = <uint8_t*>realloc(e.buf, newcap)
        if nb == NULL:
            frag_free_entry(t, e)
            why[0] = SK_FRAG_DROPPED
            return NULL
        t.mem += newcap - e.cap
        e.buf = nb
        e.cap = newcap
    memcpy(e.buf + off, data, n)
    e.piece_off[e.npieces] = off
    e.piece_end[e.npieces] = end
    e.npieces += 1
    if not more:
        e.total = end
    if e.total == 0 or not frag_covered(e):
        return NULL
    # complete: hand the buffer over; it stays valid until the next completion
    if t.done != NULL:
        free(t.done)
    t.done = e.buf
    t.mem -= e.cap
    outlen[0] = e.total
    e.buf = NULL
    frag_free_entry(t, e)
    return t.done


cdef inline uint64_t fp_mix(uint64_t h, const uint8_t* p, uint32_t n) noexcept nogil:
    # eight bytes at a time (unaligned loads through memcpy), then the tail
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL
        h ^= h >> 29
        p += 8
        n -= 8
    while n:
        h = (h ^ p[0]) * 0x100000001B3ULL
        p += 1
        n -= 1
    return h

cdef inline void encap_add(Segment* seg, uint8_t kind, uint32_t ident, bint in_key) noexcept nogil:
    if seg.nencap < MAX_ENCAP:
        seg.encap_kind[seg.nencap] = kind
        seg.encap_id[seg.nencap] = ident
        seg.nencap += 1
    if in_key:
        seg.ctx = seg.ctx * 31 + ident * 8 + kind

# ---------------------------------------------------------------- the decode loop
cdef inline int ip_next(uint8_t proto) noexcept nogil:
    if proto == 4:
        return N_IPV4
    if proto == 41:
        return N_IPV6
    if proto == 17:
        return N_UDP
    if proto == 47:
        return N_GRE
    return -1

cdef struct DecodeCtx:
    FragTable frags
    bint tunnel_in_key      # VXLAN/Geneve VNI, GRE key, ERSPAN session join the flow key
    bint vlan_in_key        # VLAN ids join the flow key
    uint64_t skipped[<int>SK_COUNT]


# Returns 1 and fills `seg` when the packet carries a TCP segment, else 0 after
# counting why not.
cdef int decode_packet(DecodeCtx* dc, const uint8_t* p, uint32_t caplen, uint32_t wirelen,
                       int linktype, int64_t ts, Segment* seg) noexcept nogil:
    cdef const uint8_t* end = p + caplen
    cdef int nxt, layers = 0
    cdef uint32_t etype = 0, hl, tot, fam, x, ppp
    cdef uint32_t ip_end_wire = 0      # wire length of the IP payload
    cdef uint8_t proto = 0
    cdef uint16_t fc, fragoff
    cdef const uint8_t* l4
    cdef uint32_t l4cap, l4wire, flen
    cdef int why
    cdef bint more
    cdef uint32_t ident
    seg.ctx = 0
    seg.nencap = 0
    seg.ts = ts

    if linktype == LT_ETHER:
        nxt = N_ETHER
    elif linktype == LT_RAW or linktype == LT_RAW_OLD1 or linktype == LT_RAW_OLD2:
        nxt = N_IP
    elif linktype == LT_IPV4:
        nxt = N_IPV4
    elif linktype == LT_IPV6:
        nxt = N_IPV6
    elif linktype == LT_NULL or linktype == LT_LOOP:
        if caplen < 4:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        # NULL: host byte order of the capturing machine; LOOP: network order
        fam = p[0] | (p[1] << 8) | (p[2] << 16) | (<uint32_t>p[3] << 24)
        if fam > 0xffff:
            fam = rd32(p)
        p += 4
        if fam == 2:
            nxt = N_IPV4
        elif fam == 24 or fam == 28 or fam == 30:
            nxt = N_IPV6
        else:
            dc.skipped[<int>SK_NOT_IP] += 1
            return 0
    elif linktype == LT_SLL:
        if caplen < 16:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        etype = rd16(p + 14)
        p += 16
        nxt = N_ETHERTYPE
    elif linktype == LT_SLL2:
        if caplen < 20:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        etype = rd16(p)
        p += 20
        nxt = N_ETHERTYPE
    elif linktype == LT_PPP or linktype == LT_PPP_HDLC or linktype == LT_CHDLC:
        # (C)HDLC framing: address 0xff/0x0f/0x8f, control, then a 2-byte protocol
        if caplen >= 2 and (p[0] == 0xff or p[0] == 0x0f or p[0] == 0x8f):
            p += 2
        if linktype == LT_CHDLC:
            if p + 2 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            etype = rd16(p)
            p += 2
            nxt = N_ETHERTYPE
        else:
            nxt = N_PPP
    elif linktype == LT_PPP_ETHER:
        p += 6  # PPPoE session header; linktype 51 carries it bare
        nxt = N_PPP
    elif linktype == LT_NFLOG:
        # 4-byte header (family, version, resource id), then TLVs in host order
        if caplen < 4:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        fam = p[0]
        p += 4
        while True:
            if p + 4 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            x = rd16le(p)
            if x < 4:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            if rd16le(p + 2) == 9:      # NFULA_PAYLOAD
                end = p + x if p + x < end else end
                p += 4
                break
            p += (x + 3) & ~3u
        nxt = N_IPV4 if fam == 2 else N_IPV6
    elif linktype == LT_RADIOTAP:
        if caplen < 4:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        p += rd16le(p + 2)
        nxt = N_80211
    elif linktype == LT_IEEE802_11:
        nxt = N_80211
    elif linktype == LT_PRISM:
        p += 144                        # fixed-size Prism monitor header
        nxt = N_80211
    elif linktype == LT_AVS:
        if caplen < 8:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        p += rd32(p + 4)                # AVS header length
        nxt = N_80211
    elif linktype == LT_PPI:
        # PPI: LE header length, then the DLT of what follows (802.11 or Ethernet)
        if caplen < 8:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        x = rd16le(p + 4) | (<uint32_t>rd16le(p + 6) << 16)
        p += rd16le(p + 2)
        if x == LT_IEEE802_11:
            nxt = N_80211
        elif x == LT_ETHER:
            nxt = N_ETHER
        else:
            dc.skipped[<int>SK_LINKTYPE] += 1
            return 0
    elif linktype == LT_PFLOG:
        # OpenBSD/FreeBSD pf log: header length (padded to 4), then the address family
        if caplen < 2:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        fam = p[1]
        p += (p[0] + 3) & ~3u
        if fam == 2:
            nxt = N_IPV4
        elif fam == 24 or fam == 28 or fam == 30 or fam == 10:
            nxt = N_IPV6
        else:
            dc.skipped[<int>SK_NOT_IP] += 1
            return 0
    elif linktype == LT_PPP_WITH_DIR or linktype == LT_CHDLC_WITH_DIR:
        # a direction byte, then PPP / Cisco HDLC as usual
        if caplen < 5:
            dc.skipped[<int>SK_TRUNC_LINK] += 1
            return 0
        p += 1
        if linktype == LT_CHDLC_WITH_DIR:
            etype = rd16(p + 2)
            p += 4
            nxt = N_ETHERTYPE
        else:
            if p[0] == 0xff:
                p += 2
            nxt = N_PPP
    elif linktype == LT_ATM_RFC1483:
        # LLC/SNAP (AA AA 03 00 00 00, ethertype) or bare IP
        if caplen >= 8 and p[0] == 0xAA and p[1] == 0xAA:
            etype = rd16(p + 6)
            p += 8
            nxt = N_ETHERTYPE
        else:
            nxt = N_IP
    else:
        dc.skipped[<int>SK_LINKTYPE] += 1
        return 0

    while True:
        layers += 1
        if layers > MAX_LAYERS:
            dc.skipped[<int>SK_TOO_DEEP] += 1
            return 0
        if nxt == N_ETHER:
            if p + 14 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            etype = rd16(p + 12)
            p += 14
            nxt = N_ETHERTYPE
        elif nxt == N_ETHERTYPE:
            if etype == 0x0800:
                nxt = N_IPV4
            elif etype == 0x86DD:
                nxt = N_IPV6
            elif etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
                if p + 4 > end:
                    dc.skipped[<int>SK_TRUNC_LINK] += 1
                    return 0
                encap_add(seg, EN_VLAN, rd16(p) & 0xFFF, dc.vlan_in_key)
                etype = rd16(p + 2)
                p += 4
            elif etype == 0x8847 or etype == 0x8848:
                nxt = N_MPLS
            elif etype == 0x8864:       # PPPoE session stage
                if p + 6 > end:
                    dc.skipped[<int>SK_TRUNC_LINK] += 1
                    return 0
                encap_add(seg, EN_PPPOE, rd16(p + 2), False)
                p += 6
                nxt = N_PPP
            else:
                dc.skipped[<int>SK_NOT_IP] += 1
                return 0
        elif nxt == N_MPLS:
            # labels until bottom of stack; the payload type is not signalled,
            # so look at the IP version nibble (pseudowire control words are 0)
            while True:
                if p + 4 > end:
                    dc.skipped[<int>SK_TRUNC_LINK] += 1
                    return 0
                x = p[2] & 1
                encap_add(seg, EN_MPLS, rd32(p) >> 12, False)
                p += 4
                if x:
                    break
                layers += 1
                if layers > MAX_LAYERS:
                    dc.skipped[<int>SK_TOO_DEEP] += 1
                    return 0
            if p < end and (p[0] >> 4) == 0:
                p += 4                  # pseudowire control word, then Ethernet
                nxt = N_ETHER
            else:
                nxt = N_IP
        elif nxt == N_PPP:
            if p + 2 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            if p[0] & 1:                # protocol field compression: one byte
                ppp = p[0]
                p += 1
            else:
                ppp = rd16(p)
                p += 2
            if ppp == 0x0021:
                nxt = N_IPV4
            elif ppp == 0x0057:
                nxt = N_IPV6
            else:
                dc.skipped[<int>SK_NOT_IP] += 1
                return 0
        elif nxt == N_80211:
            if p + 24 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            fc = p[0] | (p[1] << 8)
            if ((fc >> 2) & 3) != 2 or (fc & 0x4000):   # not data, or protected
                dc.skipped[<int>SK_80211_OTHER] += 1
                return 0
            hl = 24
            if (fc & 0x0300) == 0x0300:
                hl += 6                 # four-address frame
            if (fc >> 4) & 0x8:
                hl += 2                 # QoS control
                if fc & 0x8000:
                    hl += 4             # HT control
            p += hl
            if p + 8 > end or p[0] != 0xAA or p[1] != 0xAA:
                dc.skipped[<int>SK_80211_OTHER] += 1
                return 0
            etype = rd16(p + 6)         # LLC/SNAP
            p += 8
            nxt = N_ETHERTYPE
        elif nxt == N_UDP:
            if p + 8 > end:
                dc.skipped[<int>SK_NOT_TCP] += 1
                return 0
            x = rd16(p + 2)
            p += 8
            if x == 4789 and p + 8 <= end:              # VXLAN
                encap_add(seg, EN_VXLAN, rd32(p + 4) >> 8, dc.tunnel_in_key)
                p += 8
                nxt = N_ETHER
            elif x == 6081 and p + 8 <= end:            # Geneve, options skipped
                etype = rd16(p + 2)
                encap_add(seg, EN_GENEVE, rd32(p + 4) >> 8, dc.tunnel_in_key)
                p += 8 + (p[0] & 0x3F) * 4
                nxt = N_ETHER if etype == 0x6558 else N_ETHERTYPE
            elif x == 4754:                             # GRE-in-UDP
                nxt = N_GRE
            else:
                dc.skipped[<int>SK_NOT_TCP] += 1
                return 0
        elif nxt == N_GRE:
            if p + 4 > end:
                dc.skipped[<int>SK_TRUNC_LINK] += 1
                return 0
            fc = rd16(p)
            etype = rd16(p + 2)
            hl = 4 + (4 if fc & 0x8000 else 0) + (4 if fc & 0x2000 else 0) + (4 if fc & 0x1000 else 0)
            if fc & 7:                                  # only GRE version 0
                dc.skipped[<int>SK_NOT_IP] += 1
                return 0
            if fc & 0x2000 and p + 8 + (4 if fc & 0x8000 else 0) <= end:
                encap_add(seg, EN_GRE_KEY, rd32(p + 4 + (4 if fc & 0x8000 else 0)), dc.tunnel_in_key)
            p += hl
            if etype == 0x88BE:
                if fc & 0x1000:                         # ERSPAN II (type I has no header)
                    if p + 8 > end:
                        dc.skipped[<int>SK_TRUNC_LINK] += 1
                        return 0
                    encap_add(seg, EN_ERSPAN, rd16(p + 2) & 0x3FF, dc.tunnel_in_key)
                    p += 8
                nxt = N_ETHER
            elif etype == 0x22EB:                       # ERSPAN III, optional platform sub-header
                if p + 12 > end:
                    dc.skipped[<int>SK_TRUNC_LINK] += 1
                    return 0
                encap_add(seg, EN_ERSPAN, rd16(p + 2) & 0x3FF, dc.tunnel_in_key)
                p += 20 if p[11] & 1 else 12
                nxt = N_ETHER
            elif etype == 0x6558:
                nxt = N_ETHER
            else:
                nxt = N_ETHERTYPE
        elif nxt == N_IP:
            if p >= end:
                dc.skipped[<int>SK_TRUNC_IP] += 1
                return 0
            x = p[0] >> 4
            if x == 4:
                nxt = N_IPV4
            elif x == 6:
                nxt = N_IPV6
            else:
                dc.skipped[<int>SK_NOT_IP] += 1
                return 0
        elif nxt == N_IPV4:
            if p + 20 > end:
                dc.skipped[<int>SK_TRUNC_IP] += 1
                return 0
            hl = (p[0] & 15) * 4
            tot = rd16(p + 2)
            if (p[0] >> 4) != 4 or hl < 20 or tot < hl:
                dc.skipped[<int>SK_BAD_IP] += 1
                return 0
            if p + hl > end:
                dc.skipped[<int>SK_TRUNC_IP] += 1
                return 0
            seg.ipver = 4
            seg.ip_id = rd16(p + 4)
            memcpy(seg.src, p + 12, 4)
            memcpy(seg.dst, p + 16, 4)
            proto = p[9]
            fragoff = rd16(p + 6)
            l4 = p + hl
            l4wire = tot - hl
            l4cap = <uint32_t>(end - l4) if end - l4 < <long>l4wire else l4wire
            if fragoff & 0x3FFF:        # MF set or offset != 0
                more = (fragoff & 0x2000) != 0
                if l4cap < l4wire:
                    dc.skipped[<int>SK_FRAG_DROPPED] += 1
                    return 0
                l4 = frag_add(&dc.frags, 4, p + 12, p + 16, rd16(p + 4), proto,
                              (fragoff & 0x1FFF) * 8, more, l4, l4cap, ts, &flen, &why)
                if l4 == NULL:
                    dc.skipped[why] += 1
                    return 0
                l4cap = l4wire = flen
            p = l4
            end = l4 + l4cap
            ip_end_wire = l4wire
            if proto == 6:
                break
            nxt = ip_next(proto)
            if nxt < 0:
                dc.skipped[<int>SK_NOT_TCP] += 1
                return 0
        elif nxt == N_IPV6:
            if p + 40 > end:
                dc.skipped[<int>SK_TRUNC_IP] += 1
                return 0
            if (p[0] >> 4) != 6:
                dc.skipped[<int>SK_BAD_IP] += 1
                return 0
            seg.ipver = 6
            seg.ip_id = 0
            memcpy(seg.src, p + 8, 16)
            memcpy(seg.dst, p + 24, 16)
            proto = p[6]
            l4wire = rd16(p + 4)
            more = False
            fragoff = 0
            ident = 0
            x = 0                       # 1 when a fragment header was seen
            l4 = p + 40
            l4cap = <uint32_t>(end - l4) if end - l4 < <long>l4wire else l4wire
            # walk extension headers (bounded by MAX_LAYERS)
            while proto == 0 or proto == 43 or proto == 60 or proto == 44 or proto == 51 or proto == 135:
                layers += 1
                if layers > MAX_LAYERS:
                    dc.skipped[<int>SK_TOO_DEEP] += 1
                    return 0
                if l4cap < 8:
                    dc.skipped[<int>SK_TRUNC_IP] += 1
                    return 0
                if proto == 44:
                    hl = 8
                    fragoff = rd16(l4 + 2) & 0xFFF8
                    more = (l4[3] & 1) != 0
                    ident = rd32(l4 + 4)
                    x = 1
                elif proto == 51:
                    hl = (l4[1] + 2) * 4
                else:
                    hl = (l4[1] + 1) * 8
                if hl > l4cap or hl > l4wire:
                    dc.skipped[<int>SK_BAD_IP] += 1
                    return 0
                proto = l4[0]
                l4 += hl
                l4cap -= hl
                l4wire -= hl
            if x and (fragoff or more):
                if l4cap < l4wire:
                    dc.skipped[<int>SK_FRAG_DROPPED] += 1
                    return 0
                l4 = frag_add(&dc.frags, 6, p + 8, p + 24, ident, proto, fragoff, more,
                              l4, l4cap, ts, &flen, &why)
                if l4 == NULL:
                    dc.skipped[why] += 1
                    return 0
                l4cap = l4wire = flen
            p = l4
            end = l4 + l4cap
            ip_end_wire = l4wire
            if proto == 6:
                break
            nxt = ip_next(proto)
            if nxt < 0:
                dc.skipped[<int>SK_NOT_TCP] += 1
                return 0

    # TCP
    if p + 20 > end:
        dc.skipped[<int>SK_BAD_TCP] += 1
        return 0
    hl = (p[12] >> 4) * 4
    if hl < 20 or hl > ip_end_wire:
        dc.skipped[<int>SK_BAD_TCP] += 1
        return 0
    # fingerprint: addresses, IP id, the whole TCP header (its checksum covers
    # the payload) and the length; TTL and outer headers are left out, so
    # copies mirrored at two points still match
    seg.fingerprint = fp_mix(0x9E3779B97F4A7C15ULL ^ seg.ip_id ^ (<uint64_t>ip_end_wire << 32), seg.src, 16)
    seg.fingerprint = fp_mix(seg.fingerprint, seg.dst, 16)
    seg.fingerprint = fp_mix(seg.fingerprint, p, hl if p + hl <= end else <uint32_t>(end - p))
    seg.sport = rd16(p)
    seg.dport = rd16(p + 2)
    seg.seq = rd32(p + 4)
    seg.ack = rd32(p + 8)
    seg.flags = p[13]
    seg.wirelen = ip_end_wire - hl
    if p + hl > end:
        # options cut by snaplen: no payload bytes captured
        seg.payload = end
        seg.caplen = 0
    else:
        seg.payload = p + hl
        seg.caplen = <uint32_t>(end - (p + hl))
        if seg.caplen > seg.wirelen:
            seg.caplen = seg.wirelen    # Ethernet padding / trailing FCS
    return 1
