"""Content-Encoding removal for captured bodies, with bomb limits.

Bodies reach enrichment as captured prefixes (at most the engine's body cap),
so every decoder must accept a truncated stream and return what it could
decode. A body may carry several codings ("gzip, br" = gzip applied first),
removed last first. Output is capped at `max_size` bytes and at `max_ratio`
times the input: beyond that the body is a bomb (or simply too large to
shape) and only its first bytes are kept.
"""
import zlib

import brotli
import zstandard

OK, LIMIT, UNDECODABLE = 0, 1, 2

_ZSTD = zstandard.ZstdDecompressor()


def _inflate(data, wbits, limit):
    return zlib.decompressobj(wbits).decompress(data, limit + 1)


def _deflate(data, limit):
    # RFC 9110 says zlib-wrapped; many servers send raw deflate: try both
    try:
        return _inflate(data, 15, limit)
    except zlib.error:
        return _inflate(data, -15, limit)


def _brotli(data, limit):
    return brotli.Decompressor().process(data, output_buffer_limit=limit + 1)[:limit + 1]


def _zstd(data, limit):
    out = bytearray()
    d = _ZSTD.decompressobj()
    # decompressobj has no output cap: feed small pieces and stop once over it
    for i in range(0, len(data), 4096):
        out += d.decompress(data[i:i + 4096])
        if len(out) > limit:
            break
    return bytes(out)


_DECODERS = {
    "gzip": lambda data, limit: _inflate(data, 31, limit),
    "x-gzip": lambda data, limit: _inflate(data, 31, limit),
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_body(data, encoding, max_size=1 << 20, max_ratio=200):
    """(decoded bytes or None, status) for a body with Content-Encoding
    `encoding` (None: as is). status: OK, LIMIT (output cut at the limit:
    what is returned is a prefix) or UNDECODABLE (unknown coding or corrupt
    data; None returned)."""
    if not encoding:
        return data, OK
    codings = [c.strip().lower() for c in encoding.split(",")]
    status = OK
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        fn = _DECODERS.get(coding)
        if fn is None:
            return None, UNDECODABLE
        limit = min(max_size, max(len(data), 1) * max_ratio)
        try:
            out = fn(data, limit)
        except (zlib.error, brotli.error, zstandard.ZstdError):
            return None, UNDECODABLE
        if len(out) > limit:
            out = out[:limit]
            status = LIMIT
        data = out
    return data, status
