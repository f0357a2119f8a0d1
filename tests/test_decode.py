"""Decode stage: every supported link layer and encapsulation carries the same
HTTP exchange to the same record; malformed headers are counted, not fatal."""
import json
import struct
import subprocess

import pytest
from scapy.all import (GRE, IP, TCP, UDP, VXLAN, Dot1AD, Dot1Q, Ether, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, PPP, PPPoE, Raw, fragment)
from scapy.layers.l2 import CookedLinux
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS

REQ = b"GET /api/items?id=7 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: t/1\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


def E(**kw):
    # explicit MACs: otherwise scapy ARPs for the destination while building
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def exchange(ip_layer):
    """Handshake, request, response, FIN both ways, as IP packets built by ip_layer(src_is_client)."""
    c, s = 1000, 5000
    segs = [(True, "S", c, 0, b""), (False, "SA", s, c + 1, b""), (True, "A", c + 1, s + 1, b""),
            (True, "PA", c + 1, s + 1, REQ), (False, "PA", s + 1, c + 1 + len(REQ), RESP),
            (True, "FA", c + 1 + len(REQ), s + 1 + len(RESP), b""),
            (False, "FA", s + 1 + len(RESP), c + 2 + len(REQ), b"")]
    out = []
    for from_client, flags, seq, ack, data in segs:
        sp, dp = (40000, 8080) if from_client else (8080, 40000)
        p = ip_layer(from_client) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        out.append(p / Raw(data) if data else p)
    return out


def v4(from_client):
    return IP(src="10.1.1.1", dst="10.2.2.2") if from_client else IP(src="10.2.2.2", dst="10.1.1.1")


def v6(from_client):
    return IPv6(src="2001:db8::1", dst="2001:db8::2") if from_client else IPv6(src="2001:db8::2", dst="2001:db8::1")


def write_pcap(path, frames, linktype):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, fr in enumerate(frames):
            b = bytes(fr)
            f.write(struct.pack("<IIII", 1700000000, i, len(b), len(b)) + b)


def replay(tmp_path, pkts, linktype=1, *args):
    path = tmp_path / "t.pcap"
    write_pcap(path, pkts, linktype)
    r = subprocess.run(["sensor", "replay", str(path), "--format", "jsonl", *args], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()], r.stderr.decode()


def check_one(recs, client="10.1.1.1", server="10.2.2.2"):
    assert len(recs) == 1
    r = recs[0]
    assert (r["method"], r["path"], r["status"], r["host"]) == ("GET", "/api/items", 200, "shop.example")
    assert (r["client.address"], r["client.port"], r["server.address"], r["server.port"]) == (client, 40000, server, 8080)
    assert r["http.response.body.size"] == 11 and r["sensor.completeness"] == []


WRAPS = {
    "ethernet": lambda ip: E() / ip,
    "vlan": lambda ip: E() / Dot1Q(vlan=10) / ip,
    "qinq-88a8": lambda ip: E() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / ip,
    "qinq-9100": lambda ip: E(type=0x9100) / Dot1Q(vlan=100) / Dot1Q(vlan=10) / ip,
    "mpls": lambda ip: E() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / ip,
    "pppoe": lambda ip: E() / PPPoE(sessionid=7) / PPP(proto=0x0021) / ip,
    "vxlan": lambda ip: E() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5555, dport=4789) /
    VXLAN(vni=42) / E() / ip,
    "geneve": lambda ip: E() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5555, dport=6081) /
    GENEVE(vni=7, proto=0x6558) / E() / ip,
    "gre-ip": lambda ip: E() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE() / ip,
    "gre-teb": lambda ip: E() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x6558) / E() / ip,
    "ip-in-ip": lambda ip: E() / IP(src="192.0.2.1", dst="192.0.2.2") / ip,
}


@pytest.mark.parametrize("name", sorted(WRAPS))
def test_encapsulations(tmp_path, name):
    recs, _ = replay(tmp_path, [WRAPS[name](p) for p in exchange(v4)])
    check_one(recs)


@pytest.mark.parametrize("linktype,wrap", [
    (113, lambda ip: CookedLinux(proto=0x0800) / ip),                     # Linux SLL
    (276, lambda ip: b"\x08\x00\x00\x00\x00\x00\x00\x01\x00\x01\x06" + b"\x00" * 9 + bytes(ip)),  # SLL2
    (0, lambda ip: b"\x02\x00\x00\x00" + bytes(ip)),                      # NULL, little-endian host
    (108, lambda ip: b"\x00\x00\x00\x02" + bytes(ip)),                    # LOOP, network order
    (101, lambda ip: bytes(ip)),                                          # raw IP
    (228, lambda ip: bytes(ip)),                                          # IPv4
])
def test_link_types(tmp_path, linktype, wrap):
    recs, _ = replay(tmp_path, [wrap(p) for p in exchange(v4)], linktype=linktype)
    check_one(recs)


def test_ipv6_with_extension_headers(tmp_path):
    def ip(from_client):
        return v6(from_client) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    recs, _ = replay(tmp_path, [E() / p for p in exchange(ip)])
    check_one(recs, client="2001:db8::1", server="2001:db8::2")


def test_ipv4_fragments_out_of_order(tmp_path):
    pkts = []
    for p in exchange(v4):
        if p.haslayer(Raw):
            frags = fragment(p, fragsize=24)
            pkts += [E() / f for f in reversed(frags)]
        else:
            pkts.append(E() / p)
    recs, _ = replay(tmp_path, pkts)
    check_one(recs)


def test_ipv6_fragments(tmp_path):
    pkts = []
    for p in exchange(v6):
        if p.haslayer(Raw):
            raw = bytes(p[TCP])
            half = (len(raw) // 2) & ~7
            base = p.copy()
            base.remove_payload()
            pkts.append(E() / base / IPv6ExtHdrFragment(id=9, offset=0, m=1, nh=6) / Raw(raw[:half]))
            pkts.append(E() / base / IPv6ExtHdrFragment(id=9, offset=half // 8, m=0, nh=6) / Raw(raw[half:]))
        else:
            pkts.append(E() / p)
    recs, _ = replay(tmp_path, pkts)
    check_one(recs, client="2001:db8::1", server="2001:db8::2")


def test_malformed_headers_are_counted(tmp_path):
    good = [E() / p for p in exchange(v4)]
    bad = [E() / b"\x45\x00", E(type=0x86DD) / (b"\x60" + b"\x00" * 10),
           E() / IP(ihl=15) / b"xx", E() / IP() / TCP(dataofs=2),
           E(type=0x8100) / b"\x00", E(type=0x1234) / (b"x" * 40)]
    recs, err = replay(tmp_path, bad[:3] + good + bad[3:])
    check_one(recs)
    assert "packets not decoded" in err
    assert " 0 packets not decoded" not in err


def test_tunnel_ids_keep_equal_addresses_apart(tmp_path):
    """Two mirror sessions (VNI 1 and 2) carry the same inner 4-tuple and
    sequence numbers: by default they are two connections, each with its
    own record and tunnel id, not one connection with conflicting data."""
    def session(vni, path):
        req = REQ.replace(b"/api/items", path)
        pkts = []
        for p in exchange(v4):
            if p.haslayer(Raw) and p[Raw].load == REQ:
                p[Raw].load = req
                p[IP].len = None
            pkts.append(E() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5555, dport=4789) /
                        VXLAN(vni=vni) / E() / p)
        return pkts
    a, b = session(1, b"/one"), session(2, b"/two")
    mixed = [x for pair in zip(a, b) for x in pair]
    recs, _ = replay(tmp_path, mixed)
    got = sorted((r["path"], r["sensor.encap"][0]["vxlan"]) for r in recs)
    assert got == [("/one", 1), ("/two", 2)]
    # keyed on the inner addresses alone, the second session is one retransmitted connection
    recs, err = replay(tmp_path, mixed, 1, "--no-tunnel-key")
    assert [r["path"] for r in recs] == ["/one"] and " 1 flows" in err


@pytest.mark.parametrize("linktype,wrap", [
    (105, lambda ip: bytes.fromhex("0801") + b"\x00" * 22 + bytes.fromhex("aaaa030000000800") + bytes(ip)),  # 802.11 data
    (192, lambda ip: struct.pack("<BBHI", 0, 0, 8, 1) + bytes(E() / ip)),                 # PPI around Ethernet
    (117, lambda ip: bytes([61, 2]) + b"\x00" * 62 + bytes(ip)),                       # pflog, 64-byte header
    (205, lambda ip: b"\x00\x0f\x00\x08\x00" + bytes(ip)),                             # Cisco HDLC with direction
    (100, lambda ip: bytes.fromhex("aaaa030000000800") + bytes(ip)),                   # ATM RFC 1483 LLC/SNAP
])
def test_more_link_types(tmp_path, linktype, wrap):
    recs, _ = replay(tmp_path, [wrap(p) for p in exchange(v4)], linktype=linktype)
    check_one(recs)
