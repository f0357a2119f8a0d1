"""What the engine hands enrichment: capped body prefixes of the media types
it reads (truncation flagged), the values of the header fields it inspects,
and nothing at all when enrichment is off."""
import gzip
import io
import json

import msgpack

from pcapgen import Conv
from sensor._core import Engine

from test_http2 import H2, data as h2_data


def txns(conv, **opts):
    eng = Engine(**opts)
    out = []
    for s in conv.segs:
        eng.feed(bytes(s.pkt), 1, s.ts)
    out += eng.finish()
    return [t for t in out if hasattr(t, "req_body_data")]


def h1(req, resp, **send):
    c = Conv()
    c.handshake()
    c.send_client(req, **send)
    c.send_server(resp, **send)
    c.fin()
    return c


BODY = json.dumps({"user": {"email": "someone@example.org", "tags": ["a", "b"]}}).encode()
POST = (b"POST /api/users HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer abc.def\r\nCookie: sid=1234\r\nX-Trace: t1\r\nAccept: */*\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


def ok(body, ctype=b"application/json", extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
            % (ctype, len(body), extra, body))


def test_off_by_default_keeps_nothing():
    (t,) = txns(h1(POST, ok(BODY)))
    assert t.req_body_data is None and t.resp_body_data is None
    assert t.req_fields is None and t.resp_fields is None


def test_bodies_and_inspected_fields_kept_when_enriching():
    (t,) = txns(h1(POST, ok(BODY, extra=b"Set-Cookie: sid=99; HttpOnly\r\nServer: x\r\n"), seg=7),
                enrich=True, body_cap=1 << 16)
    assert t.req_body_data == BODY and t.resp_body_data == BODY
    # credentials, cookies and custom fields; never Accept, Server, Content-Length
    assert t.req_fields == [("authorization", "Bearer abc.def"), ("cookie", "sid=1234"), ("x-trace", "t1")]
    assert t.resp_fields == [("set-cookie", "sid=99; HttpOnly")]
    assert t.completeness == []


def test_body_over_the_cap_is_a_flagged_prefix():
    big = json.dumps({"items": [{"id": i} for i in range(2000)]}).encode()
    (t,) = txns(h1(POST, ok(big)), enrich=True, body_cap=1000)
    assert t.resp_body_data == big[:1000]
    assert t.completeness == ["response_body_truncated"]
    assert t.resp_body == len(big)          # sizes still count every byte


def test_unread_media_types_not_captured():
    (t,) = txns(h1(POST, ok(b"\x89PNG" + b"\0" * 500, ctype=b"image/png")), enrich=True, body_cap=1 << 16)
    assert t.req_body_data == BODY and t.resp_body_data is None


def test_chunked_body_captured_without_chunk_framing():
    gz = gzip.compress(BODY)
    chunked = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nTrailer: x\r\n\r\n" % (10, gz[:10], len(gz) - 10, gz[10:])
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    (t,) = txns(h1(POST, resp, seg=5), enrich=True, body_cap=1 << 16)
    assert t.resp_body_data == gz and t.resp_content_encoding == "gzip"


def test_lost_body_bytes_leave_a_prefix():
    c = Conv()
    c.handshake()
    c.send_client(POST)
    resp = ok(b'{"a": "' + b"x" * 3000 + b'"}')
    c.send_server(resp, seg=1000, order=[0, 2, 3])           # the second segment is lost
    c.fin()
    (t,) = txns(c, enrich=True, body_cap=1 << 16)
    head = resp.index(b"\r\n\r\n") + 4
    assert t.resp_body_data == resp[head:1000]
    assert "response_gap" in t.completeness


def test_http2_data_frames_captured():
    c = H2()
    c.send_client(c.req(1, "/v1/items", method="POST", end=False,
                        extra=[("content-type", "application/json"), ("authorization", "Basic dTpw")])
                  + h2_data(1, BODY[:20]) + h2_data(1, BODY[20:], end=True))
    c.send_server(c.resp(1, body=BODY, extra=[("content-type", "application/json")]))
    c.fin()
    (t,) = txns(c, enrich=True, body_cap=1 << 16)
    assert t.req_body_data == BODY and t.resp_body_data == BODY
    assert t.req_fields == [("authorization", "Basic dTpw")]


def test_live_shedding_passes_over_bodies_of_endpoints_already_shaped():
    """Behind the packets (capture timestamps are long past: every record is
    late), an endpoint's body is shaped once, then passed over, flagged and
    counted; without shed_lag (replay) every body is shaped."""
    from sensor.enrich import Enricher
    from sensor.records import RecordStage

    c = Conv()
    c.handshake()
    for i in range(1, 6):
        c.send_client(b"GET /api/items/%d HTTP/1.1\r\nHost: api.test\r\n\r\n" % i)
        c.send_server(ok(json.dumps({"id": i, "owner": "user%d@example.org" % i}).encode()))
    c.fin()
    for shed_lag, shaped in ((1.0, 1), (None, 5)):
        stage = RecordStage(enricher=Enricher(shed_lag=shed_lag))
        data, _ = stage.finish(txns(c, enrich=True, body_cap=1 << 16))
        recs = list(msgpack.Unpacker(io.BytesIO(data)))
        assert [r["url.path"] for r in recs] == ["/api/items/{itemId}"] * 5
        assert sum("sensor.shape.response" in r for r in recs) == shaped
        assert sum("body_not_shaped" in r["sensor.completeness"] for r in recs) == 5 - shaped
        assert sum("sensor.sensitive" in r for r in recs) == shaped
        assert stage.enricher.counters["bodies_shed"] == 5 - shaped


def test_route_learner_keeps_a_bounded_set_of_response_shapes():
    """Response key-path sets reach the route tree interned, one object per
    distinct set, and past the bound no new one is kept (hostile or merely
    countless shapes cannot grow the tree's memory)."""
    from sensor.enrich import _SHAPE_KEYS_MAX, Enricher

    en = Enricher()
    first = frozenset(("a", "b", "c"))
    assert en.shape_key(first) is first and en.shape_key(frozenset(("c", "b", "a"))) is first
    for i in range(_SHAPE_KEYS_MAX):
        en.shape_key(frozenset(("k%d" % i, "x", "y")))
    assert len(en.shape_keys) == _SHAPE_KEYS_MAX
    assert en.shape_key(frozenset(("new", "x", "y"))) is None and en.shape_key(first) is first
