#!/usr/bin/env python3
"""dpkt+h2 baseline for the sensor benchmark: the same job as `sensor replay`, in plain Python.

pcap -> link/IP/TCP decode (dpkt) -> per-flow, per-direction TCP reassembly ->
HTTP/1.x parsing (dpkt.http) with request/response pairing in order, or HTTP/2
(h2c prior knowledge: the `h2` project's hyperframe + hpack) with one transaction
per stream -> one msgpack record per transaction written to OUT. Prints a
one-line JSON summary on stdout.

usage: dpkt_pipeline.py CAPTURE [-o OUT.msgpack]
"""
import argparse
import json
import re
import socket
import sys
import time
from collections import deque

import dpkt
import hpack
import msgpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, HeadersFrame, PushPromiseFrame,
                              RstStreamFrame, SettingsFrame)

# dpkt 1.9.8's method table has no PATCH: every PATCH request would be an UnpackError.
dpkt.http.Request._Request__methods["PATCH"] = None

M32 = 0xFFFFFFFF
SYN, FIN, RST, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST_LINE = re.compile(rb"[A-Z][A-Z_-]* \S")
IP_TYPES = (dpkt.ip.IP, dpkt.ip6.IP6)


def raw_ip(buf):
    return dpkt.ip6.IP6(buf) if buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


# link type -> function returning the network layer
DECODERS = {
    dpkt.pcap.DLT_EN10MB: lambda b: dpkt.ethernet.Ethernet(b).data,  # VLAN tags are peeled by dpkt
    dpkt.pcap.DLT_LINUX_SLL: lambda b: dpkt.sll.SLL(b).data,
    dpkt.pcap.DLT_NULL: lambda b: dpkt.loopback.Loopback(b).data,
    dpkt.pcap.DLT_LOOP: lambda b: dpkt.loopback.Loopback(b).data,
    dpkt.pcap.DLT_RAW: raw_ip, 12: raw_ip, 14: raw_ip,
}


def seq_dist(a, b):
    """Signed distance a - b in 32-bit sequence space."""
    return ((a - b + 0x80000000) & M32) - 0x80000000


class Half:
    """One direction of a TCP connection: in-order bytes not yet parsed, plus segments ahead of them."""
    __slots__ = ("next_seq", "buf", "ooo", "fin", "need")

    def __init__(self):
        self.next_seq = None
        self.buf = bytearray()
        self.ooo = {}   # seq -> payload, for segments that arrived ahead of a hole
        self.fin = False
        self.need = 0   # don't retry the parser before the buffer holds this many bytes

    def add(self, seq, data):
        """Take one segment; return True when in-order bytes were appended."""
        if self.next_seq is None:   # joined mid-stream (no SYN seen)
            self.next_seq = seq
        off = seq_dist(seq, self.next_seq)
        if off > 0:
            if len(data) > len(self.ooo.get(seq, b"")):
                self.ooo[seq] = data
            return False
        if -off >= len(data):   # retransmission of bytes already taken
            return False
        self.buf += data[-off:]
        self.next_seq = (seq + len(data)) & M32
        while self.ooo:   # the hole may now be filled
            s = next((s for s in self.ooo if seq_dist(s, self.next_seq) <= 0), None)
            if s is None:
                break
            data = self.ooo.pop(s)
            off = seq_dist(s, self.next_seq)
            if len(data) > -off:
                self.buf += data[-off:]
                self.next_seq = (s + len(data)) & M32
        return True


def parse_one(cls, buf, head=False):
    """Parse one HTTP/1 message off the front of buf.

    Returns (msg, bytes consumed), or (None, bytes needed before it is worth retrying, 0 if unknown).
    Raises dpkt.UnpackError / ValueError for data that is not a valid message.
    """
    end = buf.find(b"\r\n\r\n") + 4
    if end < 4:   # dpkt would accept a truncated header block as complete
        return None, 0
    msg = cls()
    try:
        # a response to HEAD has no body whatever its headers say, and dpkt cannot know the method
        msg.unpack(bytes(buf[:end]) if head else bytes(buf))
        return msg, (end if head else len(buf)) - len(msg.data)
    except dpkt.UnpackError:
        if not msg.headers:
            raise
        if head:
            return msg, end
        if "chunked" in msg.headers.get("transfer-encoding", "").lower():
            # includes dpkt's 'missing chunk size' when the data ends on a chunk boundary
            return None, 0
        cl = msg.headers.get("content-length")
        if cl and cl.isdigit():   # NeedData: short body; wait for all of it
            return None, end + int(cl)
        raise


def address(ends):
    ip, port = ends
    return [socket.inet_ntop(socket.AF_INET if len(ip) == 4 else socket.AF_INET6, ip), port]


class Http1:
    """HTTP/1.x on one connection: parse both directions, pair responses with requests in order."""
    __slots__ = ("conn", "client", "requests", "responses")

    def __init__(self, conn, client):
        self.conn = conn
        self.client = client      # index of the client's half in conn.halves
        self.requests = deque()   # (message, wire size, ts) not paired yet
        self.responses = deque()  # a server may answer before the request body is complete (nginx `return`)

    def feed(self, out, ts):
        halves = self.conn.halves
        self.parse(out, halves[self.client], self.requests, ts)
        self.parse(out, halves[1 - self.client], self.responses, ts)
        while self.requests and self.responses:
            (req, req_size, req_ts), (resp, resp_size, resp_ts) = self.requests.popleft(), self.responses.popleft()
            rh, sh = req.headers, resp.headers
            out.write(self.conn, self.client, {
                "version": req.version,
                "method": req.method,
                "path": req.uri,
                "host": rh.get("host"),
                "status": int(resp.status),
                "request_content_type": rh.get("content-type"),
                "response_content_type": sh.get("content-type"),
                "request_body_size": len(req.body),
                "response_body_size": len(resp.body),
                "request_wire_size": req_size,
                "response_wire_size": resp_size,
                "request_ts": req_ts,
                "response_ts": resp_ts,
            })

    def leftovers(self):
        """(requests without a response, responses without a request) when the connection ends."""
        return len(self.requests), len(self.responses)

    def parse(self, out, half, queue, ts):
        buf = half.buf
        while buf and len(buf) >= half.need:
            if buf[0] in b"\r\n":
                # stray CRLF between messages (RFC 9112 2.2): dpkt leaves one after a chunked
                # body whose final CRLF came in a later segment
                del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]
                continue
            try:
                if queue is self.requests:
                    msg, n = parse_one(dpkt.http.Request, buf)
                else:
                    i = len(self.responses)   # the request this response answers, if parsed yet
                    head = i < len(self.requests) and self.requests[i][0].method == "HEAD"
                    msg, n = parse_one(dpkt.http.Response, buf, head)
            except (dpkt.UnpackError, ValueError):
                out.errors += 1   # resynchronise at the next segment that starts a message
                del buf[:]
                half.need = 0
                return
            if msg is None:
                half.need = n
                return
            del buf[:n]
            half.need = 0
            if queue is self.responses and 100 <= int(msg.status) < 200 and msg.status != "101":
                out.interim += 1   # 100 Continue & co: the final response follows
            else:
                queue.append((msg, n, ts))


class Conn:
    __slots__ = ("ends", "halves", "app")

    def __init__(self, ends):
        self.ends = ends   # ((ip, port), (ip, port)): the senders of halves[0] and halves[1]
        self.halves = (Half(), Half())
        self.app = None    # None: protocol not known yet; False: not parsed

    def segment(self, out, side, seq, flags, data, ts):
        half = self.halves[side]
        if flags & SYN:
            half.next_seq = seq = (seq + 1) & M32
        if data and half.add(seq, data):
            if self.app is None:
                self.app = self.detect(out)
            if self.app:
                self.app.feed(out, ts)
            elif self.app is False:
                half.buf.clear()   # not parsed: reassembled, then dropped
        if flags & FIN:
            half.fin = True
        a, b = self.halves
        return flags & RST or (a.fin and b.fin and not a.ooo and not b.ooo)

    def detect(self, out):
        """Decide the protocol from the first bytes either side sent (never from ports)."""
        for side, half in enumerate(self.halves):
            buf = half.buf
            if buf.startswith(H2_PREFACE):
                out.h2_connections += 1   # HTTP/2 prior knowledge: not parsed yet (see module doc)
                return False
            if buf.startswith(b"HTTP/"):
                return Http1(self, 1 - side)
            if REQUEST_LINE.match(buf):
                return Http1(self, side)
        if all(h.buf for h in self.halves):
            out.other_connections += 1
            return False
        return None   # wait for the other side (an h2 server may send SETTINGS first)


class Output:
    """Record writer and counters."""

    def __init__(self, f):
        self.f = f
        self.pack = msgpack.Packer().pack
        self.transactions = self.interim = self.unpaired = self.unanswered = self.errors = 0
        self.h2_connections = self.other_connections = 0

    def drop(self, conn):
        """Count what a connection leaves unpaired when it ends."""
        if conn.app:
            self.unanswered += len(conn.app.requests)
            self.unpaired += len(conn.app.responses)

    def write(self, conn, client, req, req_size, req_ts, resp, resp_size, resp_ts):
        self.transactions += 1
        rh, sh = req.headers, resp.headers
        self.f.write(self.pack({
            "version": req.version,
            "method": req.method,
            "path": req.uri,
            "host": rh.get("host"),
            "status": int(resp.status),
            "request_content_type": rh.get("content-type"),
            "response_content_type": sh.get("content-type"),
            "request_body_size": len(req.body),
            "response_body_size": len(resp.body),
            "request_wire_size": req_size,
            "response_wire_size": resp_size,
            "client": address(conn.ends[client]),
            "server": address(conn.ends[1 - client]),
            "request_ts": req_ts,
            "response_ts": resp_ts,
        }))


def open_reader(f):
    magic = f.read(4)
    f.seek(0)
    return dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)


def run(capture, out_path):
    packets = nbytes = 0
    conns = {}
    with open(capture, "rb") as f, open(out_path, "wb", buffering=1 << 20) as of:
        out = Output(of)
        reader = open_reader(f)
        decode = DECODERS.get(reader.datalink())
        if decode is None:
            sys.exit(f"dpkt_pipeline: unsupported link type {reader.datalink()}")
        for ts, buf in reader:
            packets += 1
            nbytes += len(buf)
            try:
                ip = decode(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            if not isinstance(ip, IP_TYPES) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            key, side = ((src, dst), 0) if src < dst else ((dst, src), 1)
            flags = tcp.flags
            conn = conns.get(key)
            if flags & SYN and not flags & ACK:   # a new connection, also when a 4-tuple is reused
                if conn is not None:
                    out.drop(conn)
                conn = conns[key] = Conn(key)
            elif conn is None:
                if not tcp.data:
                    continue
                conn = conns[key] = Conn(key)
            if conn.segment(out, side, tcp.seq, flags, tcp.data, ts):
                out.drop(conn)
                del conns[key]
        for conn in conns.values():
            out.drop(conn)
    return {"packets": packets, "bytes": nbytes, "transactions": out.transactions,
            "http1_transactions": out.transactions, "h2_connections_not_parsed": out.h2_connections,
            "other_connections": out.other_connections, "interim_responses": out.interim,
            "unpaired_responses": out.unpaired, "unanswered_requests": out.unanswered,
            "parse_errors": out.errors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("-o", "--out", default="/dev/null", help="msgpack records (default: /dev/null)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    summary = run(args.capture, args.out)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
