"""HPACK decoder (ext/hpack.pxi): RFC 7541 examples, malformed and hostile
blocks, and mid-stream attach / lost blocks, checked against python-hyper's
hpack as an independent encoder and decoder where it is installed."""
import random

import pytest

from sensor._core import HpackDecoder

UNKNOWN, ERROR, TOO_LARGE = 1, 2, 4


def hyper():
    return pytest.importorskip("hpack")


def enc_int(v, bits, first=0):
    """RFC 7541 5.1 prefix integer, `first` holding the representation bits."""
    mask = (1 << bits) - 1
    if v < mask:
        return bytes([first | v])
    out, v = [first | mask], v - mask
    while v >= 128:
        out.append(v & 127 | 128)
        v >>= 7
    return bytes(out + [v])


def lit(name, value, first=0x00, bits=4):
    """Literal field with a literal (non-Huffman) name and value, without indexing by default."""
    return (enc_int(0, bits, first) + enc_int(len(name), 7) + name
            + enc_int(len(value), 7) + value)


def lit_idx(name, value):
    return lit(name, value, 0x40, 6)


# --- RFC 7541 Appendix C ------------------------------------------------------

REQ1 = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")]
REQ2 = REQ1[:3] + [(":authority", "www.example.com"), ("cache-control", "no-cache")]
REQ3 = [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
        (":authority", "www.example.com"), ("custom-key", "custom-value")]
REQ_TABLES = [([REQ1[3]], 57), ([REQ2[4], REQ1[3]], 110), ([REQ3[4], REQ2[4], REQ1[3]], 164)]
DATE1, DATE2 = ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT")
LOC, CC = ("location", "https://www.example.com"), ("cache-control", "private")
COOKIE = ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
RESP1 = [(":status", "302"), CC, DATE1, LOC]
RESP2 = [(":status", "307"), CC, DATE1, LOC]
RESP3 = [(":status", "200"), CC, DATE2, LOC, ("content-encoding", "gzip"), COOKIE]
RESP_TABLES = [([LOC, DATE1, CC, (":status", "302")], 222),
               ([(":status", "307"), LOC, DATE1, CC], 222),
               ([COOKIE, ("content-encoding", "gzip"), DATE2], 215)]

SEQUENCES = {
    "C.3": (4096, ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
                   "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"],
            [REQ1, REQ2, REQ3], REQ_TABLES),
    "C.4": (4096, ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
                   "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
            [REQ1, REQ2, REQ3], REQ_TABLES),
    "C.5": (256, ["4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
                  "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
                  "4803333037c1c0bf",
                  "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970"
                  "7738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d61"
                  "67653d333630303b2076657273696f6e3d31"],
            [RESP1, RESP2, RESP3], RESP_TABLES),
    "C.6": (256, ["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29"
                  "ad171863c78f0b97c8e9ae82ae43d3",
                  "4883640effc1c0bf",
                  "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2"
                  "e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
            [RESP1, RESP2, RESP3], RESP_TABLES),
}


@pytest.mark.parametrize("block, field, table", [
    ("400a637573746f6d2d6b65790d637573746f6d2d686561646572", ("custom-key", "custom-header"), 55),
    ("040c2f73616d706c652f70617468", (":path", "/sample/path"), 0),
    ("100870617373776f726406736563726574", ("password", "secret"), 0),
    ("82", (":method", "GET"), 0),
], ids=["C.2.1", "C.2.2", "C.2.3", "C.2.4"])
def test_rfc_single_fields(block, field, table):
    d = HpackDecoder()
    assert d.decode_block(bytes.fromhex(block)) == ([field], 0)
    assert d.size == table and d.entries() == ([field] if table else [])


@pytest.mark.parametrize("name", SEQUENCES)
def test_rfc_sequences(name):
    size, blocks, fields, tables = SEQUENCES[name]
    d = HpackDecoder(size)
    for block, want, (entries, table_size) in zip(blocks, fields, tables):
        assert d.decode_block(bytes.fromhex(block)) == (want, 0)
        assert d.entries() == entries and d.size == table_size


def test_static_table_matches_hyper():
    table = hyper().table.HeaderTable.STATIC_TABLE
    d = HpackDecoder()
    for i, (name, value) in enumerate(table, 1):
        assert d.decode_block(bytes([0x80 | i])) == ([(name.decode(), value.decode())], 0)


# --- integers -----------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 126, 127, 128, 254, 255, 1337, 16383, 16384])
def test_string_length_prefix_boundaries(length):
    value = bytes(range(256)) * (length // 256 + 1)
    block = lit(b"x-len", value[:length])
    assert HpackDecoder().decode_block(block) == ([("x-len", value[:length].decode("latin-1"))], 0)


@pytest.mark.parametrize("size", [0, 30, 31, 32, 1337, 4096, 1 << 20, 1 << 28])
def test_size_update_prefix_boundaries(size):
    d = HpackDecoder()
    d.settings_table_size = 1 << 28
    assert d.decode_block(enc_int(size, 5, 0x20) + b"\x82") == ([(":method", "GET")], 0)
    assert d.max_size == size


@pytest.mark.parametrize("block", [
    enc_int((1 << 28) + 1, 5, 0x20),           # beyond 2^28
    b"\x3f\xff\xff\xff\xff\x0f",               # 5 continuation bytes, 35-bit value
    b"\x3f\x80\x80\x80\x80\x80\x00",           # 6 continuation bytes, small value
    b"\x3f\xff",                               # continuation cut short
], ids=["2^28+1", "35-bit", "6-bytes", "truncated"])
def test_integer_overflow(block):
    d = HpackDecoder()
    d.settings_table_size = 0xFFFFFFFF
    assert d.decode_block(block)[1] == ERROR


# --- Huffman and agreement with python-hyper ----------------------------------

def test_huffman_round_trips():
    hyper()
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    huff = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    rng = random.Random(7)
    samples = [bytes([b]) * k for b in range(256) for k in (1, 3)]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(500)]
    samples += [b"", b"www.example.com", b"application/json; charset=utf-8"]
    block = b"".join(b"\x00\x01v" + enc_int(len(h := huff.encode(s)), 7, 0x80) + h for s in samples)
    fields, flags = HpackDecoder(max_header_list=1 << 20).decode_block(block)
    assert flags == 0 and [v for _, v in fields] == [s.decode("latin-1") for s in samples]


def random_headers(rng, pool):
    hp = hyper()
    out = []
    for _ in range(rng.randrange(1, 15)):
        name, value = rng.choice(pool)
        if rng.random() < 0.3:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        out.append(hp.NeverIndexedHeaderTuple(name, value) if rng.random() < 0.05 else (name, value))
    return out


def header_pool(rng, count=60):
    custom = [(b"x-h%d" % rng.randrange(40), b"v%d" % rng.randrange(1000) * rng.randrange(1, 8))
              for _ in range(count)]
    return list(hyper().table.HeaderTable.STATIC_TABLE) + custom


def encoded_stream(seed, count, sizes=(4096,)):
    """[(block, truth)] from hyper's encoder, with table size changes among `sizes`."""
    hp = hyper()
    rng = random.Random(seed)
    pool, enc, out = header_pool(rng), hp.Encoder(), []
    for _ in range(count):
        if rng.random() < 0.1:
            enc.header_table_size = rng.choice(sizes)
        headers = random_headers(rng, pool)
        out.append((enc.encode(headers, huffman=rng.random() < 0.7),
                    [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_hyper(seed):
    hp = hyper()
    ref, d = hp.Decoder(), HpackDecoder()
    for block, truth in encoded_stream(seed, 200, sizes=(0, 64, 256, 1000, 4096)):
        want = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ref.decode(block, raw=True)]
        assert want == truth
        assert d.decode_block(block) == (truth, 0)
        assert d.entries() == [(n.decode("latin-1"), v.decode("latin-1"))
                               for n, v in ref.header_table.dynamic_entries]


# --- malformed blocks ---------------------------------------------------------

MALFORMED = {
    "index 0": b"\x80",
    "index beyond table": b"\xbf",
    "name index beyond table": b"\x7f\x00\x01a",
    "truncated literal": bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d6865"),
    "truncated name length": b"\x40",
    "string length beyond block": b"\x00\x7f\xff\xff\x7fabc",
    "huffman EOS": b"\x00\x01a\x84\xff\xff\xff\xff",
    "huffman zero padding": b"\x00\x01a\x81\x00",       # '0' (00000) then 000 padding
    "huffman padding over 7 bits": b"\x00\x01a\x82\x1f\xff",  # 'a' (00011) + 11 one bits
    "huffman padding of a full byte": b"\x00\x01a\x81\xff",
    "size update above limit": enc_int(4097, 5, 0x20),
    "size update after a field": b"\x82\x20",
}


@pytest.mark.parametrize("block", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_blocks(block):
    d = HpackDecoder()
    d.decode_block(lit_idx(b"k", b"v"))
    fields, flags = d.decode_block(block)
    assert flags & ERROR
    # desynchronised: what we knew is now unknown, references to it are no longer errors
    assert d.entries() == [] and d.tail > 0
    assert d.decode_block(b"\xbe") == ([(None, None)], UNKNOWN)


def test_error_keeps_fields_before_it():
    assert HpackDecoder().decode_block(b"\x82\x84\x80") == ([(":method", "GET"), (":path", "/")], ERROR)


def test_random_and_mutated_blocks_never_crash():
    rng = random.Random(1)
    valid = [bytes.fromhex(b) for _, blocks, _, _ in SEQUENCES.values() for b in blocks]
    d = HpackDecoder()
    for i in range(3000):
        if i % 2:
            block = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            block = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                block[rng.randrange(len(block))] = rng.randrange(256)
            block = bytes(block[:rng.randrange(len(block) + 1)])
        fields, flags = d.decode_block(block)
        assert isinstance(fields, list) and flags < 8
        assert d.size <= d.max_size


# --- hostile blocks -----------------------------------------------------------

def test_many_tiny_indexed_literals_stay_bounded():
    d = HpackDecoder()
    fields, flags = d.decode_block(b"".join(lit_idx(b"a", b"%d" % (i % 10)) for i in range(100_000)))
    assert flags == TOO_LARGE
    assert len(fields) * 34 <= 65536 and fields[:2] == [("a", "0"), ("a", "1")]
    assert d.size <= 4096
    # the table followed every insert: the newest entry is the last field of the block
    assert d.decode_block(b"\xbe") == ([("a", "9")], 0)


def test_megabyte_literal():
    d = HpackDecoder()
    big = b"x" * (1 << 20)
    assert d.decode_block(lit(b"big", big) + b"\x82") == ([], TOO_LARGE)
    d.decode_block(lit_idx(b"k", b"v"))
    assert d.decode_block(lit_idx(b"big", big)) == ([], TOO_LARGE)
    assert d.entries() == [] and d.size == 0        # larger than the table: it emptied it (RFC 7541 4.4)
    assert d.decode_block(lit(b"big", big)[:100])[1] == ERROR


def test_too_large_still_updates_table():
    d = HpackDecoder(max_header_list=100)
    block = b"".join(lit_idx(b"name-%d" % i, b"value") for i in range(5))
    fields, flags = d.decode_block(block)
    assert flags == TOO_LARGE and fields == [("name-0", "value"), ("name-1", "value")]
    assert d.decode_block(b"\xbe\xc2") == ([("name-4", "value"), ("name-0", "value")], 0)


def test_table_beyond_cap_becomes_unknown():
    d = HpackDecoder()
    d.settings_table_size = 1 << 20
    d.decode_block(enc_int(1 << 20, 5, 0x20) + lit_idx(b"first", b"1"))
    for i in range(100):
        d.decode_block(lit_idx(b"filler", b"%03d" % i + b"x" * 1000))
    assert d.size <= 65536
    fields, flags = d.decode_block(enc_int(62 + 100, 7, 0x80) + b"\xbe")
    assert (fields, flags) == ([(None, None), ("filler", "099" + "x" * 1000)], UNKNOWN)
    # an entry above the cap is not kept, and neither is what is behind it
    d.decode_block(lit_idx(b"huge", b"h" * 70000))
    assert d.decode_block(b"\xbe\xbf") == ([(None, None), (None, None)], UNKNOWN)
    d = HpackDecoder()
    d.settings_table_size = 1 << 20
    d.decode_block(enc_int(1 << 20, 5, 0x20) + lit_idx(b"huge", b"h" * 70000))
    assert d.decode_block(b"\xbe") == ([(None, None)], UNKNOWN)


# --- mid-stream attach and lost blocks ----------------------------------------

def test_midstream_attach_scenario():
    hp = hyper()
    enc = hp.Encoder()
    enc.encode([("x-old", "1"), ("x-old2", "2")])                  # never seen
    b2 = enc.encode([("x-old", "1"), ("x-new", "a"), ("x-old2", "3")])
    b3 = enc.encode([("x-new", "a"), ("x-old", "1"), ("x-old2", "3")])
    d = HpackDecoder(attached_midstream=True)
    # x-old is an old entry; x-old2: 3 reuses the name of an old entry
    assert d.decode_block(b2) == ([(None, None), ("x-new", "a"), (None, "3")], UNKNOWN)
    assert d.decode_block(b3) == ([("x-new", "a"), (None, None), (None, "3")], UNKNOWN)
    assert d.unknown_refs == 4
    assert d.decode_block(b"\x82\xbf") == ([(":method", "GET"), ("x-new", "a")], 0)


def check_partial(fields, flags, truth):
    """Every part we decoded is exact; unknown parts are None and flagged."""
    assert len(fields) == len(truth)
    unknown = 0
    for (name, value), (tname, tvalue) in zip(fields, truth):
        assert name in (None, tname) and value in (None, tvalue)
        unknown += name is None
    assert bool(flags & UNKNOWN) == bool(unknown) and not flags & ~UNKNOWN
    return unknown


def test_midstream_random():
    total = 0
    for seed in range(4):
        stream = encoded_stream(100 + seed, 300, sizes=(256, 1000, 4096))
        d = HpackDecoder(attached_midstream=True)
        unknown = exact = 0
        for block, truth in stream[50:]:
            fields, flags = d.decode_block(block)
            unknown += check_partial(fields, flags, truth)
            exact += fields == truth
        assert d.unknown_refs == unknown
        assert d.tail < 32 and exact > 150     # the unknown entries were evicted in time
        total += unknown
    assert total > 0    # some fields did refer to entries from before the attach


def test_lost_block_random():
    total = 0
    for seed in range(4):
        stream = encoded_stream(200 + seed, 300, sizes=(256, 1000, 4096))
        d = HpackDecoder()
        unknown = 0
        for i, (block, truth) in enumerate(stream):
            if i % 60 == 30:
                d.lost_sync()
                continue
            fields, flags = d.decode_block(block)
            unknown += check_partial(fields, flags, truth)
            if i < 30:
                assert fields == truth
        assert d.unknown_refs == unknown
        total += unknown
    assert total > 0


def test_resyncs_once_old_entries_must_be_evicted():
    d = HpackDecoder(256, attached_midstream=True)
    assert d.decode_block(b"\xbe") == ([(None, None)], UNKNOWN)
    for i in range(4):          # 4 * 64 bytes fill a 256-byte table: nothing older can remain
        d.decode_block(lit_idx(b"k%d" % i, b"v" * 30))
    assert d.tail == 0
    assert d.decode_block(b"\xc1")[0] == [("k0", "v" * 30)]
    assert d.decode_block(b"\xc2")[1] == ERROR
    d = HpackDecoder(256, attached_midstream=True)
    d.decode_block(lit_idx(b"big", b"b" * 300))     # larger than the table: empties it, unknown entries too
    assert d.tail == 0 and d.decode_block(b"\xbe")[1] == ERROR


def test_lost_size_update_is_bounded_by_settings():
    d = HpackDecoder()
    d.settings_table_size = 8192
    d.lost_sync()               # the lost block may have raised the table to 8192
    assert d.max_size == 8192 and d.tail == 8192
    assert d.decode_block(enc_int(100, 5, 0x20) + b"\xbe\xc0")[1] == UNKNOWN
    assert d.decode_block(b"\xc1")[1] == ERROR      # 100 bytes cannot hold 4 entries
