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


class H2Stream:
    """One HTTP/2 stream. Every pair is indexed 0 for the request, 1 for the response."""
    __slots__ = ("headers", "body", "wire", "ts", "ended")

    def __init__(self):
        self.headers = [None, None]   # decoded fields of the request and of the final response
        self.body = [0, 0]            # DATA bytes without padding
        self.wire = [0, 0]            # HEADERS / CONTINUATION / DATA frames, 9-byte frame headers included
        self.ts = [0.0, 0.0]          # capture time of the message's last frame
        self.ended = [False, False]


class Http2:
    """HTTP/2 on one connection, read passively: hyperframe for framing, one hpack.Decoder per direction.

    Not h2.H2Connection: it is an endpoint, and an observer is neither. Fed the client's bytes as a
    server, it enforces its own receive window (the real server's WINDOW_UPDATEs are not its own) and
    raises FlowControlError on the first upload over 64 KB; fed the server's bytes as a client, it
    raises ProtocolError on every response, which comes on a stream it never opened. Frames and HPACK
    are all an observer needs, and they read both directions alike.
    """
    __slots__ = ("conn", "client", "decoders", "block", "streams")

    def __init__(self, conn, client):
        self.conn = conn
        self.client = client
        del conn.halves[client].buf[:len(H2_PREFACE)]
        self.decoders = (hpack.Decoder(), hpack.Decoder())   # by sending side: each direction has its own table
        self.block = [None, None]   # per side, a header block awaiting CONTINUATION: (first frame, bytes so far)
        self.streams = {}

    def feed(self, out, ts):
        try:
            for side in (self.client, 1 - self.client):
                buf = self.conn.halves[side].buf
                pos = 0
                with memoryview(buf) as mv:
                    while len(buf) - pos >= 9:
                        f, length = Frame.parse_frame_header(mv[pos:pos + 9])
                        if len(buf) - pos - 9 < length:
                            break
                        f.parse_body(mv[pos + 9:pos + 9 + length])
                        pos += 9 + length
                        self.frame(out, side, f, 9 + length, ts)
                del buf[:pos]
        except (HyperframeError, hpack.HPACKError):
            out.errors += 1   # the HPACK tables are out of step from here on: give up on the connection
            self.conn.app = False

    def frame(self, out, side, f, size, ts):
        if isinstance(f, SettingsFrame):
            if SettingsFrame.HEADER_TABLE_SIZE in f.settings:   # bounds the table the *other* side encodes with
                self.decoders[1 - side].max_allowed_table_size = f.settings[SettingsFrame.HEADER_TABLE_SIZE]
            return
        if isinstance(f, RstStreamFrame):
            s = self.streams.pop(f.stream_id, None)
            if s:
                self.close(out, s)
            return
        if isinstance(f, (HeadersFrame, PushPromiseFrame)):
            self.block[side] = (f, f.data)
            if isinstance(f, HeadersFrame) and f.stream_id not in self.streams:
                self.streams[f.stream_id] = H2Stream()
        elif isinstance(f, ContinuationFrame):
            first, data = self.block[side]
            self.block[side] = (first, data + f.data)
        elif not isinstance(f, DataFrame):
            return   # PING, WINDOW_UPDATE, PRIORITY, GOAWAY, extensions: nothing for the records
        role = 0 if side == self.client else 1
        s = self.streams.get(f.stream_id)   # None: DATA after the stream was closed by RST_STREAM
        if s:
            s.wire[role] += size
            s.ts[role] = ts
        if isinstance(f, DataFrame):
            end = "END_STREAM" in f.flags
            if s:
                s.body[role] += len(f.data)
        else:
            if "END_HEADERS" not in f.flags:
                return
            first, data = self.block[side]
            self.block[side] = None
            fields = dict(self.decoders[side].decode(data))
            if isinstance(first, PushPromiseFrame) or not s:
                return   # decoded anyway: every header block updates the HPACK table
            end = "END_STREAM" in first.flags
            if s.headers[role] is None:
                if role and fields.get(":status", "")[:1] == "1" and not end:
                    out.interim += 1   # 1xx: the final response follows
                else:
                    s.headers[role] = fields
            # else trailers: only their size and END_STREAM matter here
        if end and s:
            s.ended[role] = True
            if s.ended[1 - role]:
                self.close(out, self.streams.pop(f.stream_id))

    def close(self, out, s):
        """A stream ended (END_STREAM both ways, or RST_STREAM): a transaction if both messages were seen."""
        req, resp = s.headers
        if req is None or resp is None:
            out.unanswered += req is not None
            out.unpaired += resp is not None
            return
        out.write(self.conn, self.client, {
            "version": "2",
            "method": req.get(":method"),
            "path": req.get(":path"),
            "host": req.get(":authority", req.get("host")),
            "status": int(resp[":status"]),
            "request_content_type": req.get("content-type"),
            "response_content_type": resp.get("content-type"),
            "request_body_size": s.body[0],
            "response_body_size": s.body[1],
            "request_wire_size": s.wire[0],
            "response_wire_size": s.wire[1],
            "request_ts": s.ts[0],
            "response_ts": s.ts[1],
        })

    def leftovers(self):
        left = [s.headers for s in self.streams.values()]
        return sum(q is not None for q, _ in left), sum(q is None and r is not None for q, r in left)


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
            if buf and H2_PREFACE.startswith(buf[:len(H2_PREFACE)]):
                # HTTP/2 prior knowledge; a preface cut short is awaited ("PRI *" is also a request line)
                return Http2(self, side) if len(buf) >= len(H2_PREFACE) else None
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
        self.http1 = self.http2 = self.interim = self.unpaired = self.unanswered = self.errors = 0
        self.other_connections = 0

    def drop(self, conn):
        """Count what a connection leaves unpaired when it ends."""
        if conn.app:
            unanswered, unpaired = conn.app.leftovers()
            self.unanswered += unanswered
            self.unpaired += unpaired

    def write(self, conn, client, rec):
        if rec["version"] == "2":
            self.http2 += 1
        else:
            self.http1 += 1
        rec["client"] = address(conn.ends[client])
        rec["server"] = address(conn.ends[1 - client])
        self.f.write(self.pack(rec))

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
    return {"packets": packets, "bytes": nbytes, "transactions": out.http1 + out.http2,
            "http1_transactions": out.http1, "http2_transactions": out.http2,
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
