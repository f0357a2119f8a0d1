"""Enrichment: what a transaction says about the API, with no value kept.

Per transaction (Python is touched once per transaction): the route template
and the masked path (routes.py), query parameter formats, the payload shape
of captured bodies after removing their content coding (decode.py,
shape.py), sensitive-data classes with where they were seen (classify.py),
the operation of tunnelled RPC and the auth scheme (auth.py). The results go
into the record as extra keys (Txn.extra); the core record stage writes the
rest and, once enrichment ran, no raw path.

Live capture may fall behind the packets (more bodies than one core can
shape): past `shed_lag` seconds behind, a body of an endpoint already shaped
since is not shaped (flagged body_not_shaped, counted), until the lag is
halved. Routes, queries, headers and auth are still read for every record.

The route learner needs evidence before it collapses a slug position
(/users/alice, /users/bob, ...): a transaction whose route is still open is
held back, at most `hold` transactions or `hold_seconds` of packet time,
then written with the best template known by then.
"""
from collections import OrderedDict, deque
import json
import re
import time
from urllib.parse import unquote, unquote_plus

from .._core import FLAG_NAMES, Txn, remember, split_target
from .auth import auth_scheme, credential_classes, is_session_cookie
from .classify import value_classes, value_format
from .decode import LIMIT, UNDECODABLE, decode_body
from .examples import redact
from .routes import RouteLearner, load_hints
from .shape import body_shape

_FLAG = {name: 1 << i for i, name in enumerate(FLAG_NAMES)}
_SEGMENT_CACHE_MAX = 65536
_PATH_CACHE_MAX = 65536
_SHAPE_CACHE_MAX = 4096      # bodies whose shape is remembered by content
_SHAPE_CACHE_BYTES = 16 << 20    # and the bytes of them kept to tell them
_ROUTE_CACHE_MAX = 4096      # resolutions whose record entries are remembered
_QUERY_CACHE_MAX = 1024      # query strings, and parameters, whose findings are remembered ...
_QUERY_CACHED_MAX = 256      # ... when no longer than this
_FIELD_CACHE_MAX = 4096      # header field and cookie values whose classes are remembered ...
_FIELD_CACHED_MAX = 256      # ... when no longer than this
_SHED_ENDPOINTS_MAX = 65536  # endpoints whose body was shaped while shedding
_SHAPE_KEYS_MAX = 4096       # distinct response key-path sets the route learner is given


_NO_AUTH = ("sensor.auth", {"scheme": "none"})     # no credential field, no query: shared, never changed
_FLAG_NAME = re.compile(r"[A-Za-z][A-Za-z_.-]{0,31}\Z")


def query_pair(part):
    """(name, value) of one parameter of a query string, percent-decoded;
    value None for a bare token without "=" (`?debug`, or a value sent
    alone: `?a1b2c3`)."""
    name, eq, value = part.partition("=")
    return unquote_plus(name), unquote_plus(value) if eq else None


def query_label(name, value):
    """How a query parameter is named in records: its name, unless the name
    is itself data (an email, a number, a token: "{key}") or a bare token that
    does not read as a flag ("{value}")."""
    if value is None:
        return name if _FLAG_NAME.match(name) and not value_classes(name) else "{value}"
    return "{key}" if value_format(name) is not None or value_classes(name) else name[:64]


def query_graphql(pairs):
    """The JSON request body equal to a GraphQL GET's query parameters
    (query, operationName, variables), or None when there is no query
    parameter that may be a GraphQL document."""
    params = {name: value for name, value in pairs if value}
    doc = params.get("query")
    if doc is None or not doc.lstrip().startswith(("{", "query", "mutation", "subscription", "fragment")):
        return None
    body = {"query": doc}
    if "operationName" in params:
        body["operationName"] = params["operationName"]
    if "variables" in params:
        try:
            body["variables"] = json.loads(params["variables"])
        except ValueError:
            pass
    return json.dumps(body).encode()


def _add(found, classes, where, name):
    """Counts each of `classes` as found in `where` under `name`."""
    for c in classes:
        key = (c, where, name)
        found[key] = found.get(key, 0) + 1


def _add_shape(found, shape, where):
    """Counts the findings of a shape as found in `where`."""
    for cls, name, count in shape.findings:
        key = (cls, where, name)
        found[key] = found.get(key, 0) + count


def _cookies(value):
    for part in value.split(";"):
        name, eq, v = part.strip().partition("=")
        if eq and name:
            yield name, v.strip().strip('"')


class Enricher:
    def __init__(self, hints=None, max_decoded=1 << 20, max_ratio=200, hold=4096, hold_seconds=30.0,
                 keep_examples=False, shed_lag=None):
        self.routes = RouteLearner(load_hints(hints) if hints else None)
        self.keep_examples = keep_examples      # opt-in: redacted examples (examples.py)
        self.max_decoded = max_decoded
        self.max_ratio = max_ratio
        self.hold = hold
        self.hold_ns = int(hold_seconds * 1e9)
        self.hold_seconds = hold_seconds
        self.held = deque()         # (txn, host, path, when held: monotonic s) whose route may still change
        self.segment_classes = {}   # path segment -> its sensitive classes
        self.path_found = {}        # path -> [(classes, segment index)] of its segments
        self.queries = {}           # query string -> (pairs, record entries, (classes, label) found)
        self.query_params = {}      # query parameter as sent -> what it adds (query_param)
        self.route_entries = {}     # route learner's Resolution -> its record entries
        self.field_cache = {}       # (field or cookie value, its name) -> sensitive classes
        self.shapes = OrderedDict() # body bytes, media type, coding, truncated -> (shape, flags)
        self.shape_bytes = 0        # the bytes of the bodies in self.shapes
        self.shed_ns = None if shed_lag is None else int(shed_lag * 1e9)    # live capture only
        self.shedding = False
        self.shaped_endpoints = {}      # (host, method, route, side, content type) shaped while shedding
        self.shape_keys = {}            # response key-path set -> itself (shape_key)
        self.counters = {"bodies_shaped": 0, "bodies_undecodable": 0, "decompression_limits": 0,
                         "shape_cache_hits": 0, "bodies_shed": 0,
                         "records_held": 0}

    # -- stage interface (records.RecordStage)

    def process(self, txns):
        out = []
        learn = self.routes.learn
        if self.shed_ns is not None:
            self.watch_lag(txns)
        for t in txns:
            if type(t) is Txn:
                host, path, shape = self.enrich(t)
                if path is not None:
                    r = learn(host, path, shape)
                    if not r.settled:
                        self.held.append((t, host, path, time.monotonic()))
                        self.counters["records_held"] += 1
                        continue
                    self.finish(t, path, r)
            out.append(t)
        if self.held:
            self.release(out, txns)
        return out

    def flush(self):
        out = []
        while self.held:
            t, host, path, _ = self.held.popleft()
            self.finish(t, path, self.routes.resolve(host, path))
            out.append(t)
        return out

    def release(self, out, txns):
        """Moves held transactions whose route settled (or that waited long
        enough, in packet time or, when traffic stops, in wall time) to `out`,
        in the order they came."""
        now = max((t.req_start for t in txns if type(t) is Txn), default=0)
        wall = time.monotonic() - self.hold_seconds
        keep = deque()
        over = len(self.held) - self.hold
        for item in self.held:
            t, host, path, since = item
            r = self.routes.resolve(host, path)
            if over > 0 or now - t.req_start > self.hold_ns or since < wall or r.settled:
                over -= 1
                self.finish(t, path, r)
                out.append(t)
            else:
                keep.append(item)
        self.held = keep

    def watch_lag(self, txns):
        """Live capture: sheds body shaping while the newest transaction ended
        more than shed_lag ago (packet time is wall time there), until the
        lag is halved."""
        newest = max((max(t.req_end, t.resp_end) for t in txns if type(t) is Txn), default=0)
        if newest:
            lag = time.time_ns() - newest
            self.shedding = lag > (self.shed_ns // 2 if self.shedding else self.shed_ns)

    def shed(self, t, host, path, side, ctype):
        """True when shedding and this endpoint's body of this side was shaped
        since shedding began: the body is passed over (flagged, counted)."""
        key = (host, t.method, self.routes.resolve(host, path).route if path is not None else None, side, ctype)
        if key in self.shaped_endpoints:
            t.flags |= _FLAG["body_not_shaped"]
            self.counters["bodies_shed"] += 1
            return True
        remember(self.shaped_endpoints, key, True, _SHED_ENDPOINTS_MAX)
        return False

    # -- per transaction

    def finish(self, t, path, r):
        """Adds the route entries: r, the route learner's resolution of path."""
        entries = self.route_entries.get(r)
        if entries is None:         # round() alone costs more than the look-up
            entries = remember(self.route_entries, r, (("url.path", r.masked), ("http.route", r.route),
                                                       ("sensor.route.confidence", round(r.confidence, 2))),
                               _ROUTE_CACHE_MAX)
        t.extra += entries
        if self.keep_examples:
            segments = [s for s in path.split("/") if s]
            masked = [s for s in r.masked.split("/") if s]
            if len(segments) == len(masked):
                params = {m: redact(unquote(s), value_classes(unquote(s)))
                          for s, m in zip(segments, masked) if m.startswith("{") and m != s}
                if params:
                    t.extra.append(("sensor.examples.path", params))

    def enrich(self, t):
        """Fills t.extra with everything but the route; returns (host, path,
        response key paths) for the route learner (path None when there is
        no request path; key paths only of a successful GET's response)."""
        extra = t.extra = []
        found = {}          # (class, where, name) -> count
        host = path = learned = None
        query_pairs = cookies = ()
        fields = t.req_fields or ()
        if t.method is not None:
            path, query = split_target(t.target)
            if path is not None:
                host = (t.host or t.server_addr or "").lower()
                findings = self.path_found.get(path)
                for classes, index in self.path_classes(path) if findings is None else findings:
                    _add(found, classes, "path", index)
            if query:
                query_pairs, entries, findings = self.query(query)
                extra += entries
                for classes, label in findings:
                    _add(found, classes, "query", label)
            if fields:
                cookies = self.request_fields(fields, found)
            extra.append(("sensor.auth", auth_scheme(fields, query_pairs, cookies))
                         if fields or query_pairs else _NO_AUTH)
        resp_fields = t.resp_fields
        if resp_fields:
            self.response_fields(resp_fields, found)
        operation = None
        graphql = query_graphql(query_pairs) if query_pairs and t.method == "GET" else None
        if graphql is not None:     # a GraphQL GET: its query parameters read as the request body would
            shape = body_shape(graphql, "application/json", keep_examples=self.keep_examples)
            if shape is not None and shape.operation:
                operation = shape.operation
                extra.append(("sensor.shape.request", shape.to_record()))
                _add_shape(found, shape, "query")
        if t.has_bodies:
            for side, data, ctype, coding in ((0, t.req_body_data, t.req_content_type, t.req_content_encoding),
                                              (1, t.resp_body_data, t.resp_content_type, t.resp_content_encoding)):
                if not data or ctype is None or self.shedding and self.shed(t, host, path, side, ctype):
                    continue
                shape = self.body(t, side, data, ctype, coding)
                if shape is None:
                    continue
                extra.append(("sensor.shape.request" if side == 0 else "sensor.shape.response", shape.to_record()))
                _add_shape(found, shape, "request.body" if side == 0 else "response.body")
                if side == 0 and shape.operation:
                    operation = shape.operation
                elif side == 1 and t.method == "GET" and type(t.status) is int and 200 <= t.status < 300:
                    learned = self.shape_key(shape.paths)
            t.release_bodies()
        for name, value in fields:
            if name == "soapaction" and value.strip('" '):
                operation = {"kind": "soap", "action": value.strip('" ')[:256]}
        if operation:
            extra.append(("sensor.operation", operation))
        if found:
            extra.append(("sensor.sensitive", [{"class": c, "in": w, "name": n, "count": k}
                                               for (c, w, n), k in sorted(found.items())]))
        return host, path, learned

    def shape_key(self, paths):
        """A response's key paths as the route learner keeps them: one object
        per distinct set, and no new one past _SHAPE_KEYS_MAX (the tree's
        memory stays bounded; folding by count goes on)."""
        if paths is None:
            return None
        kept = self.shape_keys.get(paths)
        if kept is None and len(self.shape_keys) < _SHAPE_KEYS_MAX:
            kept = self.shape_keys[paths] = paths
        return kept

    def body(self, t, side, data, ctype, coding):
        truncated = bool(t.flags & _FLAG["request_body_truncated" if side == 0 else "response_body_truncated"])
        # APIs send the same bytes again and again (static JSON, list pages,
        # polling): the same bytes have the same shape, decoded once. The
        # bytes themselves are the key (hashed by Python at GB/s, compared
        # when the hash matches), within a budget of bytes kept.
        key = (data, ctype, coding, truncated)
        hit = self.shapes.get(key)
        if hit is None:
            self.shape_bytes += len(data)
            while self.shapes and (self.shape_bytes > _SHAPE_CACHE_BYTES or len(self.shapes) >= _SHAPE_CACHE_MAX):
                self.shape_bytes -= len(self.shapes.popitem(last=False)[0][0])     # the oldest
            hit = self.shapes[key] = self.shape_of(data, ctype, coding, truncated)
        else:
            self.counters["shape_cache_hits"] += 1
        shape, flag = hit
        t.flags |= flag
        return shape

    def shape_of(self, data, ctype, coding, truncated):
        """(shape or None, completeness flag bits) of one body."""
        decoded, status = decode_body(data, coding, self.max_decoded, self.max_ratio)
        if status == UNDECODABLE:
            self.counters["bodies_undecodable"] += 1
            return None, _FLAG["body_undecodable"]
        flag = 0
        if status == LIMIT:
            flag = _FLAG["decompression_limit"]
            self.counters["decompression_limits"] += 1
        shape = body_shape(decoded, ctype, truncated=truncated or status == LIMIT,
                           keep_examples=self.keep_examples)
        if shape is not None:
            self.counters["bodies_shaped"] += 1
        return shape, flag

    def path_classes(self, path):
        """(classes, segment index) of the classed segments of a path, remembered."""
        cache = self.segment_classes
        findings = []
        for i, seg in enumerate(path.split("/")[1:]):
            if not seg:
                continue
            classes = cache.get(seg)
            if classes is None:
                classes = remember(cache, seg, value_classes(unquote(seg)), _SEGMENT_CACHE_MAX)
            if classes:
                findings.append((classes, str(i)))
        return remember(self.path_found, path, findings, _PATH_CACHE_MAX)

    def query(self, query):
        """(name, value) pairs of a query string, its record entries and
        (classes, label) of its parameters; remembered, as the same query
        strings come again (field lists, filters, pages)."""
        got = self.queries.get(query)
        if got is not None:
            return got
        pairs, formats, examples, findings = [], {}, {}, []
        for part in query.split("&"):
            if part:
                pair, label, value_type, found, example = self.query_param(part)
                pairs.append(pair)
                formats[label] = value_type
                findings += found
                if example is not None:
                    examples[label] = example
        entries = [("url.query.keys", list(formats)), ("sensor.query", formats)]
        if examples:
            entries.append(("sensor.examples.query", examples))
        got = pairs, entries, findings
        if len(query) <= _QUERY_CACHED_MAX:
            remember(self.queries, query, got, _QUERY_CACHE_MAX)
        return got

    def query_param(self, part):
        """What one query parameter (`name=value` as sent) adds: its (name,
        value) pair, label, format, (classes, label) findings and redacted
        example (None without examples); remembered, as the same parameters
        come in other query strings (pages, sort orders, field lists)."""
        got = self.query_params.get(part)
        if got is not None:
            return got
        name, value = pair = query_pair(part)
        label = query_label(name, value)
        findings = []
        if value is None:           # a bare token: a flag, or a value sent alone
            value = "" if label == name else name
        elif label != name:         # a name that is data: classed, not shown
            findings.append((value_classes(name), label))
        classes = value_classes(value, name)
        findings.append((classes, label))
        got = (pair, label, value_format(value) or "string" if value else "empty",
               [(found, label) for found, label in findings if found],
               redact(value, classes) if self.keep_examples else None)
        if len(part) <= _QUERY_CACHED_MAX:
            remember(self.query_params, part, got, _QUERY_CACHE_MAX)
        return got

    def request_fields(self, fields, found):
        """Classes the kept request header fields and cookies into `found`;
        returns the cookies, (name, value) pairs."""
        cookies = []
        for name, value in fields:
            if name == "cookie":
                for cname, cvalue in _cookies(value):
                    cookies.append((cname, cvalue))
                    _add(found, self.field_classes(cvalue, cname), "cookie", cname)
            elif name in ("authorization", "proxy-authorization"):
                _add(found, credential_classes(value), "request.header", name)
            else:
                _add(found, self.field_classes(value, name), "request.header", name)
        return cookies

    def response_fields(self, fields, found):
        """Classes the kept response header fields and the cookies they set into `found`."""
        for name, value in fields:
            if name == "set-cookie":
                for cname, cvalue in list(_cookies(value))[:1]:    # the rest are attributes
                    _add(found, self.field_classes(cvalue, cname) or (("secret",) if is_session_cookie(cname) else ()),
                         "cookie", cname)
            else:
                _add(found, self.field_classes(value, name), "response.header", name)

    def field_classes(self, value, name):
        """value_classes of a header field or cookie, remembered: their values
        come again (a client's session, x-frame-options, ...)."""
        key = value, name
        classes = self.field_cache.get(key)
        if classes is None:
            classes = value_classes(value, name)
            if len(value) <= _FIELD_CACHED_MAX:
                remember(self.field_cache, key, classes, _FIELD_CACHE_MAX)
        return classes
