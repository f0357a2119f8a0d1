# bpf: classic BPF (tcpdump filters, SO_ATTACH_FILTER) for `--bpf`.
#
# Programs come from libpcap's compiler (sensor/bpf.py). bpf_load checks them
# like the kernel's sk_chk_filter, so whatever replay runs the kernel would
# also take for live capture; bpf_run gives exactly libpcap's bpf_filter()
# result, so replay keeps the packets `tcpdump -r FILE EXPR` would.


cdef struct BpfInsn:        # layout of struct sock_filter / struct bpf_insn
    uint16_t code
    uint8_t jt
    uint8_t jf
    uint32_t k

cdef struct BpfProg:
    BpfInsn* insns
    uint32_t n

# Whole opcodes (class | size | mode, or class | op | source). Named BPF_OP_*
# because <linux/filter.h>, which ring.pxi includes, defines the BPF_* parts.
cdef enum:
    BPF_OP_LD_W_ABS = 0x20
    BPF_OP_LD_H_ABS = 0x28
    BPF_OP_LD_B_ABS = 0x30
    BPF_OP_LD_W_IND = 0x40
    BPF_OP_LD_H_IND = 0x48
    BPF_OP_LD_B_IND = 0x50
    BPF_OP_LD_W_LEN = 0x80
    BPF_OP_LD_IMM = 0x00
    BPF_OP_LD_MEM = 0x60
    BPF_OP_LDX_IMM = 0x01
    BPF_OP_LDX_MEM = 0x61
    BPF_OP_LDX_LEN = 0x81
    BPF_OP_LDX_MSH = 0xb1   # X = 4 * (pkt[k] & 0xf): the IPv4 header length
    BPF_OP_ST = 0x02
    BPF_OP_STX = 0x03
    BPF_OP_ADD_K = 0x04
    BPF_OP_SUB_K = 0x14
    BPF_OP_MUL_K = 0x24
    BPF_OP_DIV_K = 0x34
    BPF_OP_OR_K = 0x44
    BPF_OP_AND_K = 0x54
    BPF_OP_LSH_K = 0x64
    BPF_OP_RSH_K = 0x74
    BPF_OP_MOD_K = 0x94
    BPF_OP_XOR_K = 0xa4
    BPF_OP_ADD_X = 0x0c
    BPF_OP_SUB_X = 0x1c
    BPF_OP_MUL_X = 0x2c
    BPF_OP_DIV_X = 0x3c
    BPF_OP_OR_X = 0x4c
    BPF_OP_AND_X = 0x5c
    BPF_OP_LSH_X = 0x6c
    BPF_OP_RSH_X = 0x7c
    BPF_OP_MOD_X = 0x9c
    BPF_OP_XOR_X = 0xac
    BPF_OP_NEG = 0x84
    BPF_OP_JA = 0x05
    BPF_OP_JEQ_K = 0x15
    BPF_OP_JGT_K = 0x25
    BPF_OP_JGE_K = 0x35
    BPF_OP_JSET_K = 0x45
    BPF_OP_JEQ_X = 0x1d
    BPF_OP_JGT_X = 0x2d
    BPF_OP_JGE_X = 0x3d
    BPF_OP_JSET_X = 0x4d
    BPF_OP_RET_K = 0x06
    BPF_OP_RET_A = 0x16
    BPF_OP_TAX = 0x07
    BPF_OP_TXA = 0x87

cdef enum:
    BPF_CLASS_JMP = 0x05
    BPF_CLASS_RET = 0x06
    BPF_MAX_PROG = 4096     # the kernel's BPF_MAXINSNS
    BPF_MEM_WORDS = 16      # scratch memory M[0..15]

BPF_OPCODES = frozenset((
    BPF_OP_LD_W_ABS, BPF_OP_LD_H_ABS, BPF_OP_LD_B_ABS, BPF_OP_LD_W_IND, BPF_OP_LD_H_IND,
    BPF_OP_LD_B_IND, BPF_OP_LD_W_LEN, BPF_OP_LD_IMM, BPF_OP_LD_MEM, BPF_OP_LDX_IMM,
    BPF_OP_LDX_MEM, BPF_OP_LDX_LEN, BPF_OP_LDX_MSH, BPF_OP_ST, BPF_OP_STX,
    BPF_OP_ADD_K, BPF_OP_SUB_K, BPF_OP_MUL_K, BPF_OP_DIV_K, BPF_OP_OR_K, BPF_OP_AND_K,
    BPF_OP_LSH_K, BPF_OP_RSH_K, BPF_OP_MOD_K, BPF_OP_XOR_K,
    BPF_OP_ADD_X, BPF_OP_SUB_X, BPF_OP_MUL_X, BPF_OP_DIV_X, BPF_OP_OR_X, BPF_OP_AND_X,
    BPF_OP_LSH_X, BPF_OP_RSH_X, BPF_OP_MOD_X, BPF_OP_XOR_X, BPF_OP_NEG,
    BPF_OP_JA, BPF_OP_JEQ_K, BPF_OP_JGT_K, BPF_OP_JGE_K, BPF_OP_JSET_K,
    BPF_OP_JEQ_X, BPF_OP_JGT_X, BPF_OP_JGE_X, BPF_OP_JSET_X,
    BPF_OP_RET_K, BPF_OP_RET_A, BPF_OP_TAX, BPF_OP_TXA))


cdef str bpf_bad_insn(const BpfInsn* ins, uint32_t left):
    """Why this instruction is refused (None if it is not): the kernel's
    reasons, plus loads of socket metadata, which the kernel supplies but a
    capture file lacks. `left` counts the instructions after this one."""
    cdef uint16_t c = ins.code
    if c not in BPF_OPCODES:
        return "unknown opcode 0x%02x" % c
    if (c == BPF_OP_LD_MEM or c == BPF_OP_LDX_MEM or c == BPF_OP_ST or c == BPF_OP_STX) \
            and ins.k >= BPF_MEM_WORDS:
        return "memory index %d out of 0..15" % ins.k
    if (c == BPF_OP_DIV_K or c == BPF_OP_MOD_K) and ins.k == 0:
        return "division by constant 0"
    if (c == BPF_OP_LSH_K or c == BPF_OP_RSH_K) and ins.k >= 32:
        return "shift by %d" % ins.k
    if (c == BPF_OP_LD_W_ABS or c == BPF_OP_LD_H_ABS or c == BPF_OP_LD_B_ABS) \
            and ins.k >= 0xfffff000:    # SKF_AD_OFF
        return "load of Linux socket metadata, which a capture file does not have"
    if c == BPF_OP_JA and ins.k >= left:    # k is unsigned: a backward jump is huge
        return "jump backward or past the end"
    if (c & 7) == BPF_CLASS_JMP and c != BPF_OP_JA and (ins.jt >= left or ins.jf >= left):
        return "jump past the end"
    return None


cdef str bpf_bad_mem(const BpfInsn* code, uint32_t n):
    """The kernel's check_load_and_stores, to the letter: each load from M[k]
    must follow a store to M[k] on every path to it (paths meet at a jump
    target by AND-ing the slots each has stored). So runs never read unset
    memory, which libpcap would leave as stack garbage."""
    masks = [0xffff] * n
    cdef uint32_t pc, k, valid = 0
    cdef uint16_t c
    for pc in range(n):
        valid &= masks[pc]
        c, k = code[pc].code, code[pc].k
        if c == BPF_OP_ST or c == BPF_OP_STX:
            valid |= <uint32_t>1 << k
        elif c == BPF_OP_LD_MEM or c == BPF_OP_LDX_MEM:
            if not valid & (<uint32_t>1 << k):
                return "BPF instruction %d: M[%d] is loaded before it is stored" % (pc, k)
        elif c == BPF_OP_JA:
            masks[pc + 1 + k] &= valid
            valid = 0xffff
        elif (c & 7) == BPF_CLASS_JMP:
            masks[pc + 1 + code[pc].jt] &= valid
            masks[pc + 1 + code[pc].jf] &= valid
            valid = 0xffff
    return None


cdef int bpf_load(BpfProg* p, bytes insns) except -1:
    """Check a struct sock_filter array (native byte order) as the kernel's
    sk_chk_filter does and copy it into p, which must be empty; ValueError
    says what is refused. Whatever loads here, SO_ATTACH_FILTER takes too."""
    cdef Py_ssize_t size = len(insns)
    cdef uint32_t i, n = <uint32_t>(size // 8)
    if size % 8 or not 0 < n <= BPF_MAX_PROG:
        raise ValueError("BPF program of %d bytes: not 1 to %d 8-byte instructions"
                         % (size, BPF_MAX_PROG))
    cdef BpfInsn* code = <BpfInsn*>malloc(size)
    if code == NULL:
        raise MemoryError()
    memcpy(code, <const char*>insns, size)
    why = None
    for i in range(n):
        why = bpf_bad_insn(&code[i], n - 1 - i)
        if why is not None:
            why = "BPF instruction %d: %s" % (i, why)
            break
    if why is None and (code[n - 1].code & 7) != BPF_CLASS_RET:
        why = "BPF program does not end with a return"
    if why is None:
        why = bpf_bad_mem(code, n)
    if why is not None:
        free(code)
        raise ValueError(why)
    p.insns, p.n = code, n
    return 0


cdef inline uint32_t bpf_be32(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]

cdef inline uint32_t bpf_be16(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[0] << 8) | b[1]


cdef uint32_t bpf_run(const BpfProg* p, const uint8_t* pkt, uint32_t caplen,
                      uint32_t wirelen) noexcept nogil:
    """Run a loaded program: the accept length, 0 to drop. Same result as
    libpcap's bpf_filter(): a load past caplen or a division by X == 0 drops,
    `len` is wirelen. bpf_load keeps every jump forward and in range."""
    cdef const BpfInsn* ins = p.insns
    cdef uint32_t A = 0, X = 0, k
    cdef uint16_t code
    cdef uint32_t mem[BPF_MEM_WORDS]  # no need to clear: bpf_bad_mem
    while True:
        k = ins.k
        # Cython turns this chain on one C integer into a switch
        code = ins.code
        if code == BPF_OP_LD_W_ABS:
            if k > caplen or caplen - k < 4:
                return 0
            A = bpf_be32(pkt + k)
        elif code == BPF_OP_LD_H_ABS:
            if k > caplen or caplen - k < 2:
                return 0
            A = bpf_be16(pkt + k)
        elif code == BPF_OP_LD_B_ABS:
            if k >= caplen:
                return 0
            A = pkt[k]
        # indexed loads: X + k must not wrap around
        elif code == BPF_OP_LD_W_IND:
            if k > caplen or X > caplen - k or caplen - k - X < 4:
                return 0
            A = bpf_be32(pkt + k + X)
        elif code == BPF_OP_LD_H_IND:
            if k > caplen or X > caplen - k or caplen - k - X < 2:
                return 0
            A = bpf_be16(pkt + k + X)
        elif code == BPF_OP_LD_B_IND:
            if k >= caplen or X >= caplen - k:
                return 0
            A = pkt[k + X]
        elif code == BPF_OP_LDX_MSH:
            if k >= caplen:
                return 0
            X = (pkt[k] & 0xf) << 2
        elif code == BPF_OP_LD_W_LEN:
            A = wirelen
        elif code == BPF_OP_LDX_LEN:
            X = wirelen
        elif code == BPF_OP_LD_IMM:
            A = k
        elif code == BPF_OP_LDX_IMM:
            X = k
        elif code == BPF_OP_LD_MEM:
            A = mem[k]
        elif code == BPF_OP_LDX_MEM:
            X = mem[k]
        elif code == BPF_OP_ST:
            mem[k] = A
        elif code == BPF_OP_STX:
            mem[k] = X
        elif code == BPF_OP_JA:
            ins += k
        elif code == BPF_OP_JEQ_K:
            ins += ins.jt if A == k else ins.jf
        elif code == BPF_OP_JGT_K:
            ins += ins.jt if A > k else ins.jf
        elif code == BPF_OP_JGE_K:
            ins += ins.jt if A >= k else ins.jf
        elif code == BPF_OP_JSET_K:
            ins += ins.jt if A & k else ins.jf
        elif code == BPF_OP_JEQ_X:
            ins += ins.jt if A == X else ins.jf
        elif code == BPF_OP_JGT_X:
            ins += ins.jt if A > X else ins.jf
        elif code == BPF_OP_JGE_X:
            ins += ins.jt if A >= X else ins.jf
        elif code == BPF_OP_JSET_X:
            ins += ins.jt if A & X else ins.jf
        elif code == BPF_OP_ADD_K:
            A += k
        elif code == BPF_OP_SUB_K:
            A -= k
        elif code == BPF_OP_MUL_K:
            A *= k
        elif code == BPF_OP_DIV_K:
            A //= k
        elif code == BPF_OP_MOD_K:
            A %= k
        elif code == BPF_OP_AND_K:
            A &= k
        elif code == BPF_OP_OR_K:
            A |= k
        elif code == BPF_OP_XOR_K:
            A ^= k
        elif code == BPF_OP_LSH_K:
            A <<= k
        elif code == BPF_OP_RSH_K:
            A >>= k
        elif code == BPF_OP_ADD_X:
            A += X
        elif code == BPF_OP_SUB_X:
            A -= X
        elif code == BPF_OP_MUL_X:
            A *= X
        elif code == BPF_OP_DIV_X:
            if X == 0:
                return 0
            A //= X
        elif code == BPF_OP_MOD_X:
            if X == 0:
                return 0
            A %= X
        elif code == BPF_OP_AND_X:
            A &= X
        elif code == BPF_OP_OR_X:
            A |= X
        elif code == BPF_OP_XOR_X:
            A ^= X
        elif code == BPF_OP_LSH_X:  # a C shift by >= 32 is undefined; libpcap gives 0
            A = A << X if X < 32 else 0
        elif code == BPF_OP_RSH_X:
            A = A >> X if X < 32 else 0
        elif code == BPF_OP_NEG:
            A = 0 - A
        elif code == BPF_OP_TAX:
            X = A
        elif code == BPF_OP_TXA:
            A = X
        elif code == BPF_OP_RET_K:
            return k
        elif code == BPF_OP_RET_A:
            return A
        else:   # not reached: bpf_load refuses unknown opcodes
            return 0
        ins += 1


@cython.final
cdef class BpfFilter:
    """A checked classic BPF program; accept() is the per-packet call."""
    cdef BpfProg prog

    def __cinit__(self, bytes insns not None):
        bpf_load(&self.prog, insns)

    def __dealloc__(self):
        free(self.prog.insns)

    cdef bint accept(self, const uint8_t* pkt, uint32_t caplen, uint32_t wirelen) noexcept nogil:
        return bpf_run(&self.prog, pkt, caplen, wirelen) != 0

    def matches(self, bytes pkt, wirelen=None):
        """Accept length for pkt as captured (0 = dropped), as pcap_offline_filter
        returns it; wirelen defaults to len(pkt)."""
        return bpf_run(&self.prog, pkt, len(pkt), len(pkt) if wirelen is None else wirelen)

    def count(self, list packets):
        """How many of packets (bytes, each whole: wirelen = len) are accepted,
        with no Python call per packet: for tests and benchmarks."""
        cdef Py_ssize_t n = 0
        cdef bytes b
        for b in packets:
            n += bpf_run(&self.prog, b, len(b), len(b)) != 0
        return n
