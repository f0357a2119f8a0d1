# ring: live capture from an AF_PACKET TPACKET_V3 memory-mapped ring.
#
# The kernel fills blocks of packets; we poll (without the GIL), walk each
# ready block in C and hand it back. VLAN tags a NIC stripped are put back
# from tp_vlan_tci so decode sees the frame as it was on the wire. Kernel
# drop counters come from PACKET_STATISTICS.

cdef extern from "<sys/socket.h>" nogil:
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void* val, unsigned int len)
    int getsockopt(int fd, int level, int name, void* val, unsigned int* len)
    struct sockaddr:
        pass
    int bind(int fd, const sockaddr* addr, unsigned int len)
    int AF_PACKET
    int SOCK_RAW
    int SOL_SOCKET
    int SO_ATTACH_FILTER
    int SO_ERROR

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<errno.h>" nogil:
    int errno

cdef extern from "<string.h>" nogil:
    char* strerror(int errnum)

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int PROT_READ
    int PROT_WRITE
    int MAP_SHARED
    void* MAP_FAILED

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long n, int timeout)
    short POLLIN
    short POLLERR
    short POLLHUP
    short POLLNVAL

cdef extern from "<net/if.h>" nogil:
    unsigned int if_nametoindex(const char* name)

cdef extern from "<linux/filter.h>" nogil:
    struct sock_filter:
        pass
    struct sock_fprog:
        unsigned short len
        sock_filter* filter

cdef extern from "<linux/if_packet.h>" nogil:
    struct tpacket_req3:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
        unsigned int tp_retire_blk_tov
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word
    struct tpacket_hdr_variant1:
        uint32_t tp_rxhash
        uint32_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
        tpacket_hdr_variant1 hv1
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
    struct packet_mreq:
        int mr_ifindex
        unsigned short mr_type
        unsigned short mr_alen
    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt
    int SOL_PACKET
    int PACKET_VERSION
    int PACKET_RX_RING
    int PACKET_ADD_MEMBERSHIP
    int PACKET_MR_PROMISC
    int PACKET_STATISTICS
    int PACKET_FANOUT
    int PACKET_FANOUT_HASH
    int PACKET_FANOUT_FLAG_DEFRAG
    int TPACKET_V3
    int TP_STATUS_KERNEL
    int TP_STATUS_USER
    int TP_STATUS_VLAN_VALID
    int TP_STATUS_VLAN_TPID_VALID

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)

cdef enum:
    RING_ETH_P_ALL = 0x0003
    RING_MAX_FRAME = 262144 + 4     # snaplen cap plus a restored VLAN tag

# block descriptor (struct tpacket_block_desc with tpacket_hdr_v1), by offset
cdef inline uint32_t* blk_status(uint8_t* b) noexcept nogil:
    return <uint32_t*>(b + 8)

cdef inline uint32_t blk_num_pkts(uint8_t* b) noexcept nogil:
    return (<uint32_t*>(b + 12))[0]

cdef inline uint32_t blk_first(uint8_t* b) noexcept nogil:
    return (<uint32_t*>(b + 16))[0]


class CaptureSetupError(Exception):
    """A one-line reason the interface cannot be captured on."""


# ARPHRD_* of an interface -> link type of what the ring delivers
def _iface_linktype(name):
    try:
        with open("/sys/class/net/%s/type" % name) as f:
            hw = int(f.read())
    except OSError:
        raise CaptureSetupError("no such interface: %s" % name)
    return 1 if hw in (1, 772) else 101      # Ethernet (and loopback) / bare IP


@cython.final
cdef class PacketRing:
    """One interface's TPACKET_V3 receive ring."""
    cdef int fd
    cdef uint8_t* map
    cdef size_t map_len
    cdef uint32_t block_size, block_nr, cur
    cdef readonly int linktype
    cdef readonly str iface
    cdef uint8_t* scratch           # frame with its VLAN tag put back
    cdef readonly uint64_t kernel_packets, kernel_drops

    def __cinit__(self, str iface, int ring_mb=64, int snaplen=262144, bint promisc=True,
                  int fanout_group=-1, bytes bpf=None, int block_kb=1024):
        cdef tpacket_req3 req
        cdef sockaddr_ll sll
        cdef packet_mreq mr
        cdef sock_fprog prog
        cdef int v = TPACKET_V3, fan
        self.fd = -1
        self.iface = iface
        self.linktype = _iface_linktype(iface)
        idx = if_nametoindex(iface.encode())
        if idx == 0:
            raise CaptureSetupError("no such interface: %s" % iface)
        self.fd = socket(AF_PACKET, SOCK_RAW, htons(RING_ETH_P_ALL))
        if self.fd < 0:
            self._fail("cannot open a packet socket (needs root or CAP_NET_RAW)")
        if bpf:
            # before the ring fills: packets the filter rejects never reach us
            prog.len = <unsigned short>(len(bpf) // 8)
            prog.filter = <sock_filter*><const char*>bpf
            if setsockopt(self.fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0:
                self._fail("cannot attach the BPF filter")
        if setsockopt(self.fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0:
            self._fail("TPACKET_V3 not supported")
        memset(&req, 0, sizeof(req))
        self.block_size = block_kb * 1024
        self.block_nr = max(2, (ring_mb * 1024 * 1024) // self.block_size)
        req.tp_block_size = self.block_size
        req.tp_block_nr = self.block_nr
        req.tp_frame_size = 2048
        req.tp_frame_nr = self.block_size // 2048 * self.block_nr
        req.tp_retire_blk_tov = 50      # ms: a partly filled block is handed over this soon
        if setsockopt(self.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0:
            self._fail("cannot set up a %d MiB receive ring" % ring_mb)
        self.map_len = <size_t>self.block_size * self.block_nr
        self.map = <uint8_t*>mmap(NULL, self.map_len, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, 0)
        if <void*>self.map == MAP_FAILED:
            self.map = NULL
            self._fail("cannot map the receive ring")
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = AF_PACKET
        sll.sll_protocol = htons(RING_ETH_P_ALL)
        sll.sll_ifindex = idx
        if bind(self.fd, <sockaddr*>&sll, sizeof(sll)) < 0:
            self._fail("cannot bind to %s" % iface)
        if promisc:
            memset(&mr, 0, sizeof(mr))
            mr.mr_ifindex = idx
            mr.mr_type = PACKET_MR_PROMISC
            if setsockopt(self.fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0:
                self._fail("cannot set %s promiscuous" % iface)
        if fanout_group >= 0:
            # both directions of a flow hash to the same member; fragments reassembled first
            fan = (fanout_group & 0xFFFF) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16)
            if setsockopt(self.fd, SOL_PACKET, PACKET_FANOUT, &fan, sizeof(fan)) < 0:
                self._fail("cannot join fanout group %d" % fanout_group)
        self.scratch = <uint8_t*>malloc(RING_MAX_FRAME)
        if self.scratch == NULL:
            raise MemoryError()

    def _fail(self, str what):
        err = strerror(errno).decode()
        self.close()
        raise CaptureSetupError("%s: %s: %s" % (self.iface, what, err))

    def __dealloc__(self):
        self.close()

    def close(self):
        if self.map != NULL:
            munmap(self.map, self.map_len)
            self.map = NULL
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        free(self.scratch)
        self.scratch = NULL

    def fileno(self):
        return self.fd

    def stats(self):
        """Adds the kernel's counters since the last call (PACKET_STATISTICS resets them)."""
        cdef tpacket_stats_v3 st
        cdef unsigned int ln = sizeof(st)
        if self.fd >= 0 and getsockopt(self.fd, SOL_PACKET, PACKET_STATISTICS, &st, &ln) == 0:
            self.kernel_packets += st.tp_packets
            self.kernel_drops += st.tp_drops
        return self.kernel_packets, self.kernel_drops

    # The next block the kernel handed over, or NULL.
    cdef inline uint8_t* ready_block(self) noexcept nogil:
        cdef uint8_t* b = self.map + <size_t>self.cur * self.block_size
        if blk_status(b)[0] & TP_STATUS_USER:
            return b
        return NULL

    cdef inline void release_block(self, uint8_t* b) noexcept nogil:
        blk_status(b)[0] = TP_STATUS_KERNEL
        self.cur = (self.cur + 1) % self.block_nr

    # Feeds every packet of block b to the engine.
    cdef void walk(self, Engine eng, uint8_t* b):
        cdef uint32_t i, n = blk_num_pkts(b), cap
        cdef tpacket3_hdr* h = <tpacket3_hdr*>(b + blk_first(b))
        cdef const uint8_t* data
        cdef uint16_t tpid
        for i in range(n):
            data = <const uint8_t*>h + h.tp_mac
            cap = h.tp_snaplen
            if h.tp_status & TP_STATUS_VLAN_VALID and self.linktype == 1 and 12 <= cap <= RING_MAX_FRAME - 4:
                # the NIC stripped the 802.1Q tag: put it back after the MAC addresses
                tpid = h.hv1.tp_vlan_tpid if h.tp_status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                memcpy(self.scratch, data, 12)
                self.scratch[12] = tpid >> 8
                self.scratch[13] = tpid & 0xFF
                self.scratch[14] = (h.hv1.tp_vlan_tci >> 8) & 0xFF
                self.scratch[15] = h.hv1.tp_vlan_tci & 0xFF
                memcpy(self.scratch + 16, data + 12, cap - 12)
                eng.packet(self.scratch, cap + 4, h.tp_len + 4, self.linktype,
                           <int64_t>h.tp_sec * SEC + h.tp_nsec)
            else:
                eng.packet(data, cap, h.tp_len, self.linktype, <int64_t>h.tp_sec * SEC + h.tp_nsec)
            h = <tpacket3_hdr*>(<uint8_t*>h + h.tp_next_offset)


def capture_loop(Engine eng, list rings, on_batch, should_stop, int poll_ms=200):
    """Reads the rings until should_stop() is true; on_batch(list of records'
    transactions) after each round of blocks, and on each idle poll. Between
    packets, wall time drives the flow timeouts. Returns None, or why it
    stopped early: an interface that went down or away (as tcpdump does;
    polling on would spin on the socket's error)."""
    cdef PacketRing r
    cdef uint8_t* b
    cdef int nr = len(rings), i, got
    cdef pollfd fds[64]
    cdef bint any_block
    if nr > 64:
        raise ValueError("at most 64 interfaces")
    for i in range(nr):
        fds[i].fd = (<PacketRing>rings[i]).fd
        fds[i].events = POLLIN | POLLERR
    while not should_stop():
        any_block = False
        for i in range(nr):
            r = <PacketRing>rings[i]
            b = r.ready_block()
            while b != NULL:
                r.walk(eng, b)
                r.release_block(b)
                any_block = True
                b = r.ready_block()
        if eng.out:
            on_batch(eng.out)
            eng.out = []
        if not any_block:
            with nogil:
                got = poll(fds, nr, poll_ms)
            if got == 0:
                eng.tick(time_ns())
                on_batch(eng.out)       # even empty: the record stage releases what it held
                eng.out = []
            for i in range(nr if got > 0 else 0):
                if fds[i].revents & (POLLERR | POLLHUP | POLLNVAL):
                    why = ring_error(<PacketRing>rings[i], fds[i].revents)
                    if why is not None:
                        return why
    return None


# The error a ring's socket reported (reading it clears it; ENETDOWN when the
# interface went down or away), as the one-line reason capture on it cannot
# go on; None for a wake-up without one.
cdef str ring_error(PacketRing r, short revents):
    cdef int err = 0
    cdef unsigned int n = sizeof(err)
    if revents & POLLERR:
        getsockopt(r.fd, SOL_SOCKET, SO_ERROR, &err, &n)
    if err == 0 and not revents & (POLLHUP | POLLNVAL):
        return None
    return "capture on %s stopped: %s" % (r.iface, strerror(err).decode() if err else "the socket was closed")
