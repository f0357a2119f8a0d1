# cython: language_level=3
"""sensor._core: the per-packet hot path, one translation unit.

Stages live in their own .pxi files and are included here so gcc can inline
across them: source (capture files) -> decode (link, IP, TCP) -> flow (table,
lifetimes) -> stream (TCP reassembly) -> http1 / http2 + hpack / tls (parsers) ->
txn (the first Python object, one per exchange) -> record (msgpack), driven
by engine; for enrichment, classify tells the format and sensitive classes of a
value and shape walks decoded bodies.
"""
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memcmp, memset, memmove, strstr, strcmp
from time import time_ns
cimport cython


cpdef object remember(dict cache, key, value, Py_ssize_t limit):
    """cache[key] = value, the cache emptied first when it holds `limit`
    entries: memory stays bounded, and what comes again is remembered again
    (cheaper than evicting one by one: deleted slots slow a dict down).
    Returns value."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


include "source.pxi"
include "decode.pxi"
include "bpf.pxi"
include "txn.pxi"
include "hpack.pxi"
include "http1.pxi"
include "http2.pxi"
include "tls.pxi"
include "stream.pxi"
include "flow.pxi"
include "engine.pxi"
include "record.pxi"
include "ring.pxi"
include "classify.pxi"
include "shape.pxi"
include "routes.pxi"
