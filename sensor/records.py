"""Record schema v1: the one place that says what leaves the sensor.

A record is a flat map per HTTP transaction, keyed with OpenTelemetry
semantic-convention names where one exists (docs/records.md). Values of query
parameters, header fields (beyond Host, Content-Type, Content-Encoding and
User-Agent) and bodies never appear: only names, types and sizes.
"""

SCHEMA_VERSION = 1


def split_target(target):
    """Request-target -> (url.path, url.query.keys, url.scheme).

    Origin-form '/a?b=1', absolute-form 'http://h/a?b=1', authority-form
    'h:443' (CONNECT, no path) and asterisk-form '*'.
    """
    if target[:1] == "/" and "?" not in target and "#" not in target:
        return target, None, None          # the common case, origin-form without query
    scheme = None
    path = target.split("#", 1)[0]
    low = path[:8].lower()
    if low.startswith(("http://", "https://")):
        scheme, _, rest = path.partition("://")
        scheme = scheme.lower()
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        path = rest[cut:]
        if not path.startswith("/"):
            path = "/" + path
    elif not path.startswith("/") and path != "*":
        return None, None, None            # authority-form: no path
    path, sep, query = path.partition("?")
    return path, (query_keys(query) if sep else None), scheme


def query_keys(query):
    """Names of the query parameters; a bare token counts only when it looks
    like a flag name, since it could as well be a value."""
    keys = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        if not name or (not eq and not _is_flag_name(name)):
            continue
        if name not in keys:
            keys.append(name)
    return keys


def _is_flag_name(s):
    return len(s) <= 64 and s[0].isalpha() and all(c.isalnum() or c in "_-." for c in s)


def http_record(t, raw_targets=False):
    """Builds the record of one transaction (a sensor._core.Txn)."""
    has_req = t.method is not None
    has_resp = t.status is not None
    rec = {
        "type": "http",
        "v": SCHEMA_VERSION,
        "start_ns": t.req_start if has_req else t.resp_start,
        "end_ns": t.resp_end if has_resp else t.req_end,
        "network.community_id": t.community_id,
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "network.protocol.version": t.version if has_req else t.resp_version,
        "client.address": t.client_addr,
        "client.port": t.client_port,
        "server.address": t.server_addr,
        "server.port": t.server_port,
    }
    if has_req and has_resp:
        rec["timing"] = {"request_end_ns": t.req_end, "response_start_ns": t.resp_start}
    if has_req:
        path, keys, scheme = split_target(t.target)
        rec["http.request.method"] = t.method
        _put(rec, "url.path", path)
        _put(rec, "url.query.keys", keys)
        _put(rec, "url.scheme", scheme)
        if raw_targets:
            rec["url.target"] = t.target
        _put(rec, "http.request.header.host", t.host)
        _put(rec, "user_agent.original", t.user_agent)
        rec["http.request.header_names"] = t.req_headers or []
        _put(rec, "http.request.content_type", t.req_content_type)
        _put(rec, "http.request.content_encoding", t.req_content_encoding)
        rec["http.request.body.size"] = t.req_body
        rec["http.request.body.wire_size"] = t.req_wire
    if has_resp:
        rec["http.response.status_code"] = t.status
        _put(rec, "http.response.interim", t.interim)
        rec["http.response.header_names"] = t.resp_headers or []
        _put(rec, "http.response.content_type", t.resp_content_type)
        _put(rec, "http.response.content_encoding", t.resp_content_encoding)
        rec["http.response.body.size"] = t.resp_body
        rec["http.response.body.wire_size"] = t.resp_wire
    elif t.interim:
        rec["http.response.interim"] = t.interim
    _put(rec, "sensor.protocol_switch", t.protocol_switch)
    rec["sensor.completeness"] = t.completeness
    return rec


def _put(rec, key, value):
    if value is not None:
        rec[key] = value


def scorer_view(rec):
    """Plain keys that JSON Lines carry for humans, jq and scorers."""
    path = rec.get("url.target")
    if path is None:
        path = rec.get("url.path")
    return {
        "method": rec.get("http.request.method"),
        "path": path,
        "status": rec.get("http.response.status_code"),
        "host": rec.get("http.request.header.host"),
    }
