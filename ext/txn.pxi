# transaction: the first Python object of the pipeline, one per HTTP exchange.
#
# The HTTP/1 parser fills a Txn as the request and response heads complete and
# hands it to the engine's output list once both halves are done (or can never
# be: flow end, eviction). sensor/records.py turns it into a record.

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

# completeness flags (bit values; names in FLAG_NAMES order)
cdef enum TxnFlag:
    TF_NO_REQUEST = 1
    TF_NO_RESPONSE = 2
    TF_REQUEST_GAP = 4
    TF_RESPONSE_GAP = 8
    TF_REQUEST_TRUNCATED = 16
    TF_RESPONSE_TRUNCATED = 32
    TF_MIDSTREAM = 64
    TF_EVICTED = 128
    TF_HPACK_UNKNOWN = 256      # HTTP/2 header fields whose HPACK entry was never seen
    TF_RESET = 512              # HTTP/2 stream reset (RST_STREAM) or refused by GOAWAY
    TF_H2C_UPGRADE = 1024       # stream 1 of an h2c upgrade: its request is the HTTP/1.1 record before
    TF_PUSHED = 2048            # request promised by the server (PUSH_PROMISE)
    TF_HEADERS_TRUNCATED = 4096 # header list over the limit: the names listed are the first ones

FLAG_NAMES = ("no_request", "no_response", "request_gap", "response_gap",
              "request_truncated", "response_truncated", "midstream", "evicted",
              "hpack_unknown", "reset", "h2c_upgrade", "pushed", "headers_truncated")


cdef list flag_names(uint32_t flags):
    if not flags:
        return []
    return [n for i, n in enumerate(FLAG_NAMES) if flags & (1 << i)]




@cython.no_gc       # holds only strings, ints and lists of strings: no cycles to collect
cdef class Txn:
    # request side
    cdef public object method, target, version, host, user_agent
    cdef public object req_content_type, req_content_encoding, req_headers
    # response side
    cdef public object status, resp_version, resp_content_type, resp_content_encoding
    cdef public object resp_headers, interim
    cdef public object protocol_switch
    # HTTP/2 and gRPC
    cdef public uint32_t stream_id
    cdef public object error_code           # RST_STREAM / GOAWAY error code
    cdef public object grpc_status
    cdef public int64_t req_messages, resp_messages   # gRPC length-prefixed messages
    cdef public bint grpc_compressed
    # connection
    cdef public object client_addr, server_addr, community_id, encap
    cdef public int client_port, server_port
    cdef public uint64_t flow_id
    # timing (packet time, ns) and sizes
    cdef public int64_t req_start, req_end, resp_start, resp_end
    cdef public int64_t req_body, req_wire, resp_body, resp_wire
    cdef public uint32_t flags
    # parser bookkeeping
    cdef bint req_done, resp_done, emitted
    cdef public bint response_seen      # a response (even a head-less HTTP/0.9 one) began
    cdef bint wants_upgrade, is_connect, is_head

    @property
    def completeness(self):
        return flag_names(self.flags)
