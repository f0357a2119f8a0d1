"""Capture-file source (ext/source.pxi): pcap / pcapng / gzip -> packets.

Captures are built byte by byte with struct so every field is known; the
expected tuples are (ts_ns, linktype, caplen, wirelen, data) as iter_packets
yields them.
"""
import gzip
import logging
import random
import struct
from pathlib import Path

import pytest

from sensor._core import CaptureError, CaptureReader, iter_packets

SHARED_PCAPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance" / "pcaps"
T0 = 1_700_000_000 * 10**9  # a 2023 timestamp in ns


def payload(i, n):
    """n bytes that differ per packet, so a misplaced byte shows up."""
    return (i.to_bytes(4, "little") * (n // 4 + 1))[:n]


# --- pcap ---------------------------------------------------------------------

def pcap(packets, *, nano=False, be=False, linktype=1, snaplen=65535):
    """packets: (ts_ns, data, wirelen)."""
    e = ">" if be else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, wirelen in packets:
        sec, frac = divmod(ts, 10**9)
        out.append(struct.pack(e + "IIII", sec, frac if nano else frac // 1000, len(data), wirelen) + data)
    return b"".join(out)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("be", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
def test_pcap_resolution_and_byte_order(tmp_path, nano, be):
    frac = 123_456_789 if nano else 123_456_000     # µs files cannot carry the last 3 digits
    pkts = [(T0 + frac, payload(1, 60), 60), (T0 + 10**9 + 5_000, payload(2, 1514), 1514),
            (0, b"", 0)]
    got = list(iter_packets(write(tmp_path, "a.pcap", pcap(pkts, nano=nano, be=be, linktype=113))))
    assert got == [(ts, 113, len(d), wl, d) for ts, d, wl in pkts]


def test_pcap_snaplen_and_fcs_linktype_bits(tmp_path):
    # FCS length (bits 28-31) and the F flag (bit 26) ride above the link type
    linktype = (2 << 28) | (1 << 26) | 1
    pkts = [(T0, payload(1, 96), 1500), (T0 + 1000, payload(2, 40), 40)]
    got = list(iter_packets(write(tmp_path, "s.pcap", pcap(pkts, linktype=linktype, snaplen=96))))
    assert got == [(T0, 1, 96, 1500, payload(1, 96)), (T0 + 1000, 1, 40, 40, payload(2, 40))]


def test_reader_counters(tmp_path):
    data = pcap([(T0 + i * 1000, payload(i, 100), 100) for i in range(50)])
    r = CaptureReader(write(tmp_path, "c.pcap", data))
    assert (r.file_size, r.packets, r.truncated, r.warning) == (len(data), 0, False, None)
    assert len(list(iter_packets(r))) == 50
    assert (r.packets, r.file_pos, r.truncated, r.warning) == (50, len(data), False, None)


# --- pcapng -------------------------------------------------------------------

def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def block(e, btype, body):
    body = pad4(body)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def opt(e, code, value):
    return struct.pack(e + "HH", code, len(value)) + pad4(value)


def shb(e):
    return block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(e, linktype, snaplen=0, tsresol=None, tsoffset=None):
    opts = b""
    if tsresol is not None:
        opts += opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += opt(e, 0, b"")
    return block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts)


def epb(e, ifid, ts, data, wirelen=None):
    return block(e, 6, struct.pack(e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                   len(data) if wirelen is None else wirelen) + data)


def opb(e, ifid, ts, data, wirelen):
    return block(e, 2, struct.pack(e + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen) + data)


def spb(e, data, wirelen):
    return block(e, 3, struct.pack(e + "I", wirelen) + data)


def two_sections():
    """LE section (µs / 10^-9 + offset interfaces) then BE section (2^-20), with
    every packet block type, an unknown block and packets of unknown interfaces."""
    L, B = "<", ">"
    ts2 = ((T0 // 10**9 + 2) << 20) | 777_777          # 2^-20 s units
    d = [payload(i, n) for i, n in enumerate([60, 99, 77, 60, 50, 64, 40, 62])]
    blob = b"".join([
        shb(L), idb(L, 1), idb(L, 101, tsresol=9, tsoffset=100),
        block(L, 0xB0B, b"unknown block, skipped by length"),
        epb(L, 0, T0 // 1000 + 123_456, d[0]),
        epb(L, 1, T0 + 987_654_321, d[1], wirelen=1500),
        opb(L, 1, T0 + 5, d[2], 77),
        spb(L, d[3], 1500),                             # caplen: what the block holds
        epb(L, 7, 1, d[4]),                             # no interface 7: skipped
        shb(B), idb(B, 113, snaplen=62, tsresol=0x80 | 20),
        epb(B, 0, ts2, d[5]),
        epb(B, 1, 1, d[6]),                             # interface 1 was section 1's: skipped
        spb(B, d[7], 200),                              # snaplen 62: 2 bytes of padding are not data
    ])
    expect = [
        (T0 + 123_456_000, 1, 60, 60, d[0]),
        (T0 + 987_654_321 + 100 * 10**9, 101, 99, 1500, d[1]),
        (T0 + 5 + 100 * 10**9, 101, 77, 77, d[2]),
        (T0 + 5 + 100 * 10**9, 1, 60, 1500, d[3]),      # SPB: no timestamp, previous one kept
        (ts2 * 10**9 >> 20, 113, 64, 64, d[5]),
        (ts2 * 10**9 >> 20, 113, 62, 200, d[7]),
    ]
    return blob, expect


def test_pcapng_sections_interfaces_blocks(tmp_path):
    blob, expect = two_sections()
    r = CaptureReader(write(tmp_path, "x.pcapng", blob))
    assert list(iter_packets(r)) == expect
    assert (r.packets, r.skipped, r.truncated, r.file_pos) == (6, 2, False, len(blob))


@pytest.mark.parametrize("tsresol", [0, 3, 6, 9, 12, 19, 25, 40, 0x80, 0x80 | 10, 0x80 | 30,
                                     0x80 | 63, 0x80 | 64, 0x80 | 100])
def test_pcapng_tsresol_exact(tmp_path, tsresol):
    units = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol
    stamps = [0, 1, 999_999_999, 0x0123_4567_89AB_CDEF, 2**64 - 1,
              min(T0 * units // 10**9 + 12345, 2**64 - 1)]    # a 2023 date, when it fits
    rnd = random.Random(tsresol)
    stamps += [rnd.getrandbits(rnd.choice([24, 40, 56, 64])) for _ in range(40)]
    blob = shb("<") + idb("<", 1, tsresol=tsresol) + b"".join(epb("<", 0, ts, b"x") for ts in stamps)
    got = [g[0] for g in iter_packets(write(tmp_path, "r.pcapng", blob))]
    want = [ts * 10**9 // units for ts in stamps]           # floor, as exact integers
    fits = [i for i, w in enumerate(want) if w < 2**63]     # others overflow int64 ns
    assert len(fits) >= 3
    assert [got[i] for i in fits] == [want[i] for i in fits]


def test_pcapng_negative_tsoffset(tmp_path):
    blob = shb("<") + idb("<", 1, tsresol=9, tsoffset=-3600) + epb("<", 0, T0, b"abc")
    assert list(iter_packets(write(tmp_path, "o.pcapng", blob))) == [(T0 - 3600 * 10**9, 1, 3, 3, b"abc")]


def test_scapy_written_files(tmp_path):
    scapy_utils = pytest.importorskip("scapy.utils")
    from scapy.layers.l2 import Ether
    pkts = []
    for i in range(5):
        p = Ether(dst="00:11:22:33:44:55") / payload(i, 100 + i)
        p.time = T0 // 10**9 + i + 0.25
        pkts.append(p)
    for cls, name in [(scapy_utils.PcapWriter, "w.pcap"), (scapy_utils.PcapNgWriter, "w.pcapng")]:
        w = cls(str(tmp_path / name))
        w.write(pkts)
        w.close()
        got = list(iter_packets(tmp_path / name))
        assert [g[4] for g in got] == [bytes(p) for p in pkts]
        assert [g[0] for g in got] == [T0 + i * 10**9 + 250_000_000 for i in range(5)]
        assert {g[1] for g in got} == {1}


# --- gzip ---------------------------------------------------------------------

def test_gzip_pcap_and_pcapng(tmp_path):
    pkts = [(T0 + i * 1000, payload(i, 300 + i), 300 + i) for i in range(200)]
    big = random.Random(0).randbytes(300_000)           # incompressible: many gzip reads for one record
    plain = pcap(pkts[:100] + [(T0, big, len(big))] + pkts[100:], nano=True)
    ng, ng_expect = two_sections()
    got = list(iter_packets(write(tmp_path, "p.pcap.gz", gzip.compress(plain))))
    assert got == list(iter_packets(write(tmp_path, "p.pcap", plain)))
    assert len(got) == 201 and got[100][4] == big
    r = CaptureReader(write(tmp_path, "n.gz", gzip.compress(ng)))
    assert list(iter_packets(r)) == ng_expect
    assert not r.truncated and 0 < r.file_pos <= r.file_size
    # several gzip members concatenated (as `cat a.gz b.gz` makes) read as one stream
    multi = gzip.compress(plain[:5000]) + gzip.compress(plain[5000:])
    assert len(list(iter_packets(write(tmp_path, "m.gz", multi)))) == 201


def test_gzip_truncated_stream(tmp_path):
    pkts = [(T0 + i, payload(i, 500), 500) for i in range(4000)]
    z = gzip.compress(pcap(pkts, nano=True), compresslevel=1)
    r = CaptureReader(write(tmp_path, "t.pcap.gz", z[: len(z) // 2]))
    got = list(iter_packets(r))
    assert 0 < len(got) < len(pkts)
    assert got == [(ts, 1, 500, 500, d) for ts, d, _ in pkts[: len(got)]]
    assert r.truncated and "compressed data ends early" in r.warning
    assert r.warning.endswith(f"; {len(got)} packets read")
    warning = r.warning
    assert list(iter_packets(r)) == [] and r.warning == warning     # reported once, not re-derived


# --- truncation and corruption ------------------------------------------------

def test_pcap_truncated_mid_record(tmp_path):
    pkts = [(T0 + i * 1000, payload(i, 200), 200) for i in range(10)]
    data = pcap(pkts)
    last = len(data) - 216                              # offset of the last record
    for cut in (last + 5, last + 16 + 100):             # inside its header, inside its data
        r = CaptureReader(write(tmp_path, "t.pcap", data[:cut]))
        assert [g[0] for g in iter_packets(r)] == [ts for ts, _, _ in pkts[:9]]
        assert r.truncated
        assert r.warning == f"{tmp_path / 't.pcap'}: file ends inside a record at offset {last}; 9 packets read"


def test_pcapng_truncated_mid_block(tmp_path):
    blob, expect = two_sections()
    r = CaptureReader(write(tmp_path, "t.pcapng", blob[:-10]))
    assert list(iter_packets(r)) == expect[:-1]
    assert r.truncated and "file ends inside a record" in r.warning


def test_pcap_absurd_caplen_stops(tmp_path):
    data = pcap([(T0, b"ok", 2)]) + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 60) + b"\0" * 60
    r = CaptureReader(write(tmp_path, "c.pcap", data))
    assert [g[4] for g in iter_packets(r)] == [b"ok"]
    assert r.truncated and "corrupt record (caplen 2147483647) at offset 42" in r.warning


@pytest.mark.parametrize("bad, why", [
    (struct.pack("<II", 0xB0B, 30) + b"\0" * 22, "corrupt block (length 30)"),          # not a multiple of 4
    (struct.pack("<II", 0xB0B, 8), "corrupt block (length 8)"),                          # < 12
    (struct.pack("<III", 0xB0B, 12, 16), "trailing length mismatch"),
    (struct.pack("<II", 6, 16) + b"\0" * 4 + struct.pack("<I", 16), "corrupt packet block"),
])
def test_pcapng_corrupt_block_stops(tmp_path, bad, why):
    good = shb("<") + idb("<", 1) + epb("<", 0, 5, b"first")
    r = CaptureReader(write(tmp_path, "c.pcapng", good + bad + epb("<", 0, 6, b"never")))
    assert [g[4] for g in iter_packets(r)] == [b"first"]
    assert r.truncated and why in r.warning and f"at offset {len(good)}; 1 packets read" in r.warning


# --- open errors --------------------------------------------------------------

def open_error(path):
    with pytest.raises(CaptureError) as ei:
        CaptureReader(path)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_open_errors(tmp_path):
    assert open_error(tmp_path / "nope.pcap") == f"cannot open {tmp_path / 'nope.pcap'}: No such file or directory"
    assert open_error(tmp_path) == f"cannot open {tmp_path}: Is a directory"
    assert open_error(write(tmp_path, "e.pcap", b"")) == f"{tmp_path / 'e.pcap'}: empty file"
    for name, data in [("g.pcap", b"GET / HTTP/1.1\r\n\r\n"), ("x", b"\xd4"),
                       ("g.pcap.gz", gzip.compress(b"plain text, compressed")),
                       ("bom.pcapng", struct.pack("<III", 0x0A0D0D0A, 28, 0x11223344))]:
        assert open_error(write(tmp_path, name, data)) == f"{tmp_path / name}: not a pcap or pcapng capture"
    assert "file ends inside the pcap header" in open_error(write(tmp_path, "h.pcap", pcap([])[:10]))
    assert open_error(write(tmp_path, "z.gz", b"\x1f\x8b" + b"\xff" * 40)).startswith(
        f"{tmp_path / 'z.gz'}: corrupt gzip data")
    with pytest.raises(CaptureError):                   # iter_packets raises the same way
        next(iter_packets(tmp_path / "nope.pcap"))


def test_close_stops_reading(tmp_path):
    r = CaptureReader(write(tmp_path, "c.pcap", pcap([(T0, b"a", 1), (T0, b"b", 1)])))
    r.close()
    assert list(iter_packets(r)) == [] and not r.truncated


# --- large files: mapped (plain) and through the window (gzip) ------------------

@pytest.mark.parametrize("compressed", [False, True], ids=["mapped", "window"])
def test_large_file(tmp_path, compressed):
    # ~20 MB of mixed odd sizes, so records straddle the 4 MiB window's edge
    # and the mapping's 16 MiB hand-back steps, plus one 6 MiB record bigger
    # than the window itself.
    sizes = [60, 1514, 9001, 333, 4097, 65535]
    pkts = [(T0 + i * 1000, payload(i, sizes[i % len(sizes)]), 70000) for i in range(1400)]
    pkts.insert(700, (T0, payload(9999, 6 << 20), 6 << 20))
    data = pcap(pkts, nano=True, snaplen=1 << 24)
    assert len(data) > 20_000_000
    data += b"\0" * 10                                  # ends inside a header
    if compressed:
        path = write(tmp_path, "big.pcap.gz", gzip.compress(data, compresslevel=1))
    else:
        path = write(tmp_path, "big.pcap", data)
    r = CaptureReader(path)
    got = list(iter_packets(r))
    assert len(got) == len(pkts)
    for (ts, d, wl), g in zip(pkts, got):
        assert g == (ts, 1, len(d), wl, d)
    assert r.file_pos == path.stat().st_size
    where = "uncompressed offset" if compressed else "offset"
    assert r.truncated and f"at {where} {len(data) - 10}; {len(pkts)} packets read" in r.warning


def test_file_shrinking_while_mapped(tmp_path):
    # Another program truncating the capture under the reader: the pages past
    # the new end are gone (SIGBUS on a mapping); the reader stops with a
    # warning after the packets still there, the process lives on.
    pkts = [(T0 + i, payload(i, 1400), 1400) for i in range(3000)]  # ~4.2 MB
    path = write(tmp_path, "shrinks.pcap", pcap(pkts))
    r = CaptureReader(path)
    it = iter_packets(r)
    first = [next(it) for _ in range(10)]
    keep = 24 + 1000 * (16 + 1400)                      # the first 1000 records stay
    with open(path, "r+b") as f:
        f.truncate(keep)
    rest = list(it)
    assert [g[4] for g in first + rest] == [d for _, d, _ in pkts[:len(first) + len(rest)]]
    assert 10 <= len(first) + len(rest) <= 1000
    assert r.truncated and "file shrank while being read" in r.warning
    # a new reader of the shrunk file reads what is left, cleanly
    assert len(list(iter_packets(path))) == 1000


def test_more_readers_than_watched_mappings(tmp_path):
    # sigbus.h watches 64 mappings; readers beyond them read the file instead
    pkts = [(T0 + i * 1000, payload(i, 900), 900) for i in range(300)]
    path = write(tmp_path, "many.pcap", pcap(pkts))
    readers = [CaptureReader(path) for _ in range(70)]
    want = [(ts, 1, len(d), wl, d) for ts, d, wl in pkts]
    for r in readers:
        assert list(iter_packets(r)) == want and not r.truncated


# --- real captures ------------------------------------------------------------

def test_conformance_captures_match_scapy():
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/conformance not present")
    scapy_utils = pytest.importorskip("scapy.utils")
    logging.getLogger("scapy").setLevel(logging.ERROR)
    files = sorted(SHARED_PCAPS.glob("*.pcap*"))
    assert files
    for f in files:
        r = CaptureReader(f)
        got = list(iter_packets(r))
        ref = scapy_utils.RawPcapReader(str(f))
        want = list(ref)
        ref.close()
        assert not r.truncated, r.warning
        assert len(got) == len(want), f.name
        for (ts, lt, caplen, wl, data), (rdata, md) in zip(got, want):
            if hasattr(md, "tsresol"):                  # pcapng metadata: raw ticks
                if md.tshigh is not None:               # (SPBs have no timestamp)
                    assert ts == ((md.tshigh << 32) | md.tslow) * 10**9 // md.tsresol, f.name
                assert lt == md.linktype, f.name
            else:
                assert ts == md.sec * 10**9 + md.usec * (1 if ref.nano else 1000), f.name
                assert (lt, caplen) == (ref.linktype & 0xFFFF, md.caplen), f.name
            assert wl == md.wirelen, f.name
            assert data[: len(rdata)] == rdata and caplen >= len(rdata), f.name  # scapy stops at its MTU
