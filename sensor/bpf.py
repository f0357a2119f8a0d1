"""`--bpf EXPR`: tcpdump filter expressions compiled by the system libpcap.

libpcap's own compiler (through ctypes, no build-time dependency) gives the
filter exactly the meaning it has for tcpdump. The result is the raw
struct sock_filter array that SO_ATTACH_FILTER takes and that
sensor._core.BpfFilter runs on replayed packets.
"""
import ctypes
import ctypes.util
import functools

NEEDS = "--bpf needs libpcap (Debian package libpcap0.8)"
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF  # "ip broadcast" then fails to compile, as in tcpdump -i any

# pcap_open_dead takes a DLT_* value; capture files carry LINKTYPE_* values, and
# these differ (Linux DLT numbers; libpcap's linktype_to_dlt does the same).
# 14 is raw IP as some old writers put it; the decoder reads it as raw too.
LINKTYPE_TO_DLT = {14: 12, 100: 11, 101: 12, 102: 15, 103: 16, 106: 19}


class BpfError(ValueError):
    """The filter cannot be compiled; str() is a one-line message for the user
    (a ValueError, as the engine's other option errors)."""


class _Program(ctypes.Structure):  # struct bpf_program
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


@functools.lru_cache(maxsize=None)
def _libpcap():
    try:  # the soname as a fallback: find_library needs ldconfig or a compiler
        lib = ctypes.CDLL(ctypes.util.find_library("pcap") or "libpcap.so.0.8")
    except OSError as e:
        raise BpfError(f"{NEEDS}: {e}") from None
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_bpf(expr: str, linktype: int, snaplen: int = 262144) -> bytes:
    """The optimized classic BPF program for expr on captures of `linktype`
    (LINKTYPE_* as in pcap files), as 8-byte struct sock_filter entries in
    native byte order. Accepted packets return snaplen. Raises BpfError."""
    lib = _libpcap()
    pcap = lib.pcap_open_dead(LINKTYPE_TO_DLT.get(linktype, linktype), snaplen)
    if not pcap:
        raise BpfError("--bpf: libpcap could not allocate a handle")
    try:
        prog = _Program()
        if lib.pcap_compile(pcap, ctypes.byref(prog), expr.encode(), 1, PCAP_NETMASK_UNKNOWN) < 0:
            msg = lib.pcap_geterr(pcap).decode(errors="replace")
            raise BpfError(f"--bpf {expr!r}: {msg}")
        try:
            return ctypes.string_at(prog.bf_insns, prog.bf_len * 8)
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(pcap)
