"""Build TCP captures as scripts of a conversation, for replay tests.

    c = Conv(client=("10.0.0.1", 40000), server=("10.0.0.2", 80))
    c.handshake()
    c.send_client(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n", seg=[5], order=[1, 0])
    c.send_server(b"HTTP/1.1 204 No Content\\r\\n\\r\\n")
    c.fin()
    c.write(tmp_path / "t.pcap")

Sequence numbers are tracked per side; `rel` offsets count payload bytes
from the first data byte (ISN + 1), like Wireshark's relative numbers.
Every emitted packet takes the conversation clock (ns) and advances it by
`step`, so capture order is time order. Dropping a segment (leaving its
index out of `order`) models a capture loss: the peer's ACKs still cover it.
"""
import base64
import hashlib
import socket
import struct
from http import HTTPStatus
from typing import NamedTuple

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

T0 = 1_700_000_000_000_000_000  # ns; whole second, so usec pcaps keep it exact
STEP = 1_000_000  # 1 ms between packets
MSS = 1460
LOSS = {"request_gap", "response_gap", "request_truncated", "response_truncated"}  # bytes missing


class Seg(NamedTuple):
    ts: int  # ns
    side: str  # "client" or "server": who sent it
    pkt: object  # scapy packet


def split(data, seg):
    """Cut data into pieces: seg is a max size (int; None means MSS) or a
    list of sizes (the remainder becomes the last piece)."""
    if seg is None:
        seg = MSS
    if isinstance(seg, int):
        return [data[i:i + seg] for i in range(0, len(data), seg)]
    out, i = [], 0
    for n in seg:
        out.append(data[i:i + n])
        i += n
    if i < len(data):
        out.append(data[i:])
    return out


class Conv:
    def __init__(self, client=("10.0.0.1", 40000), server=("10.0.0.2", 80),
                 isn_c=1_000_000, isn_s=5_000_000, t0=T0, step=STEP):
        self.ep = {"client": client, "server": server}
        self.isn = {"client": isn_c, "server": isn_s}
        self.sent = {"client": 0, "server": 0}  # payload bytes sent so far
        self.fin_sent = {"client": False, "server": False}
        self.t, self.step = t0, step
        self.segs = []

    @staticmethod
    def peer(side):
        return "server" if side == "client" else "client"

    def seq(self, side, rel):
        return (self.isn[side] + 1 + rel) & 0xFFFFFFFF

    def next_rel(self, side):
        return self.sent[side] + self.fin_sent[side]

    def packet(self, side, payload=b"", flags="PA", rel=None, seq=None, window=65535):
        """Emit one raw packet from `side` without touching stream state.
        Position it by `rel` (default: next unsent byte) or absolute `seq`."""
        (src, sport), (dst, dport) = self.ep[side], self.ep[self.peer(side)]
        if seq is None:
            seq = self.seq(side, self.next_rel(side) if rel is None else rel)
        p = self.peer(side)
        ack = self.seq(p, self.next_rel(p)) if "A" in flags else 0
        l3 = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window)
        pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / tcp
        if payload:
            pkt = pkt / payload
        s = Seg(self.t, side, pkt)
        self.segs.append(s)
        self.t += self.step
        return s

    def handshake(self):
        self.packet("client", flags="S", seq=self.isn["client"])
        self.packet("server", flags="SA", seq=self.isn["server"])
        self.packet("client", flags="A")

    def send(self, side, data, seg=None, order=None, at=None):
        """Send data from side at time `at` (default: the clock), cut by `seg`
        (see split). `order` lists the piece indices in capture order: repeat
        an index to retransmit it, leave one out to lose it from the capture.
        Then the peer ACKs all of it. Returns the data packets' timestamps."""
        if at is not None:
            self.t = at
        pieces = split(data, seg)
        offs = [self.sent[side] + sum(map(len, pieces[:i])) for i in range(len(pieces))]
        self.sent[side] += len(data)  # the peer got everything: ACKs cover drops
        ts = [self.packet(side, pieces[i], rel=offs[i]).ts
              for i in (range(len(pieces)) if order is None else order)]
        self.packet(self.peer(side), flags="A")
        return ts

    def send_client(self, data, **kw):
        return self.send("client", data, **kw)

    def send_server(self, data, **kw):
        return self.send("server", data, **kw)

    def close(self, side):
        """A FIN from side (half-close)."""
        self.packet(side, flags="FA")
        self.fin_sent[side] = True

    def fin(self, first="client"):
        """Orderly close: FIN, FIN+ACK from the peer, last ACK."""
        self.close(first)
        self.close(self.peer(first))
        self.packet(first, flags="A")

    def rst(self, side="server"):
        self.packet(side, flags="RA")

    def write(self, path, **kw):
        write(path, self.segs, **kw)


def write(path, segs, nano=False):
    """Write segments (any mix of conversations) in timestamp order."""
    w = PcapWriter(str(path), nano=nano, snaplen=65535, linktype=1)
    w.write_header(None)
    for s in sorted(segs, key=lambda s: s.ts):
        sec, frac = divmod(s.ts, 10**9)
        w.write_packet(s.pkt, sec=sec, usec=frac if nano else frac // 1000)
    w.close()


def request(target="/", method="GET", body=b"", headers=(), version="1.1", host="example.com"):
    """An HTTP/1 request; Content-Length is added for a body unless framing is given."""
    h = ([("Host", host)] if host else []) + list(headers)
    if body and not _framed(h):
        h.append(("Content-Length", len(body)))
    return _message(f"{method} {target} HTTP/{version}", h, body)


def response(status=200, body=b"", headers=(), version="1.1", length=True):
    """An HTTP/1 response; Content-Length is added unless framing is given or length=False."""
    h = list(headers)
    if length and not _framed(h):
        h.append(("Content-Length", len(body)))
    return _message(f"HTTP/{version} {status} {HTTPStatus(status).phrase}", h, body)


def _framed(headers):
    return any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)


def _message(start, headers, body):
    return "".join([start + "\r\n"] + [f"{k}: {v}\r\n" for k, v in headers] + ["\r\n"]).encode() + body


def subset(rec, expected):
    """The record restricted to the expected keys (missing keys as None), for ==."""
    return {k: rec.get(k) for k in expected}


BODY_CAP = {"request_body_truncated", "response_body_truncated"}  # enrichment read a prefix (test_enrich_*)


def flags(rec):
    """What the capture missed: a record's completeness flags (the key may be
    absent when complete) but those of the enrichment body cap."""
    return set(rec.get("sensor.completeness") or ()) - BODY_CAP


def community_id(src, sport, dst, dport, proto=6, seed=0):
    """Community ID v1 of a flow (direction-independent)."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    a, b = (socket.inet_pton(fam, src), sport), (socket.inet_pton(fam, dst), dport)
    if b < a:
        a, b = b, a
    data = struct.pack("!H", seed) + a[0] + b[0] + struct.pack("!BBHH", proto, 0, a[1], b[1])
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()
