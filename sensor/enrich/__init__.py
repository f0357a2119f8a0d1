"""Enrichment: what a transaction says about the API, with no value kept.

Per transaction (Python is touched once per transaction): the route template
and the masked path (routes.py), query parameter formats, the payload shape
of captured bodies after removing their content coding (decode.py,
shape.py), sensitive-data classes with where they were seen (classify.py),
the operation of tunnelled RPC and the auth scheme (auth.py). The results go
into the record as extra keys (Txn.extra); the core record stage writes the
rest and, once enrichment ran, no raw path.

The route learner needs evidence before it collapses a slug position
(/users/alice, /users/bob, ...): a transaction whose route is still open is
held back, at most `hold` transactions or `hold_seconds` of packet time,
then written with the best template known by then.
"""
from collections import deque
import json
import re
import time
from urllib.parse import unquote, unquote_plus

from .._core import FLAG_NAMES, Txn, split_target
from .auth import auth_scheme, credential_classes, is_session_cookie
from .classify import value_classes, value_format
from .decode import LIMIT, UNDECODABLE, decode_body
from .examples import redact
from .routes import RouteLearner, load_hints
from .shape import body_shape

_FLAG = {name: 1 << i for i, name in enumerate(FLAG_NAMES)}
_SEGMENT_CACHE_MAX = 65536
_PATH_CACHE_MAX = 65536
_OBSERVE_ENOUGH = 32         # > the route learner's settle count (10)
_SHAPE_CACHE_MAX = 4096      # bodies whose shape is remembered by content
_SHAPE_CACHE_BYTES = 16 << 20    # and the bytes of them kept to tell them


_FLAG_NAME = re.compile(r"[A-Za-z][A-Za-z_.-]{0,31}\Z")


def query_params(query):
    """(name, value) pairs of a query string, percent-decoded; value None for
    a bare token without "=" (`?debug`, or a value sent alone: `?a1b2c3`)."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, eq, value = part.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value) if eq else None))
    return pairs


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


def _cookies(value):
    for part in value.split(";"):
        name, eq, v = part.strip().partition("=")
        if eq and name:
            yield name, v.strip().strip('"')


class Enricher:
    def __init__(self, hints=None, max_decoded=1 << 20, max_ratio=200, hold=4096, hold_seconds=30.0,
                 keep_examples=False):
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
        self.paths_seen = {}        # (host, path) -> times told to the route learner
        self.shapes = {}            # body bytes, media type, coding, truncated -> (shape, flags)
        self.shape_bytes = 0        # the bytes of the bodies in self.shapes
        self.counters = {"bodies_shaped": 0, "bodies_undecodable": 0, "decompression_limits": 0,
                         "shape_cache_hits": 0,
                         "records_held": 0}

    # -- stage interface (records.RecordStage)

    def process(self, txns):
        out = []
        for t in txns:
            if type(t) is not Txn:
                out.append(t)
                continue
            host, path = self.enrich(t)
            if path is not None and not self.routes.resolve(host, path).settled:
                self.held.append((t, host, path, time.monotonic()))
                self.counters["records_held"] += 1
            else:
                self.finish(t, host, path)
                out.append(t)
        if self.held:
            self.release(out, txns)
        return out

    def flush(self):
        out = []
        while self.held:
            t, host, path, _ = self.held.popleft()
            self.finish(t, host, path)
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
            if (over > 0 or now - t.req_start > self.hold_ns or since < wall
                    or self.routes.resolve(host, path).settled):
                over -= 1
                self.finish(t, host, path)
                out.append(t)
            else:
                keep.append(item)
        self.held = keep

    # -- per transaction

    def finish(self, t, host, path):
        if path is not None:
            r = self.routes.resolve(host, path)
            t.extra += [("url.path", r.masked), ("http.route", r.route),
                        ("sensor.route.confidence", round(r.confidence, 2))]
            if self.keep_examples:
                segments = [s for s in path.split("/") if s]
                masked = [s for s in r.masked.split("/") if s]
                if len(segments) == len(masked):
                    params = {m: redact(unquote(s), value_classes(unquote(s)))
                              for s, m in zip(segments, masked) if m.startswith("{") and m != s}
                    if params:
                        t.extra.append(("sensor.examples.path", params))

    def enrich(self, t):
        """Fills t.extra with everything but the route; returns (host, path)
        for the route learner (path None when there is no request path)."""
        extra = t.extra = []
        found = {}          # (class, where, name) -> count

        def add(classes, where, name):
            for c in classes:
                key = (c, where, name)
                found[key] = found.get(key, 0) + 1

        host = path = None
        query_pairs, cookies, fields = [], [], t.req_fields or []
        if t.method is not None:
            path, query = split_target(t.target)
            if path is not None:
                host = (t.host or t.server_addr or "").lower()
                self.path_seen(host, path)
                self.path_classes(path, add)
            if query:
                query_pairs = query_params(query)
                formats, examples = {}, {}
                for name, value in query_pairs:
                    label = query_label(name, value)
                    if value is None:           # a bare token: a flag, or a value sent alone
                        value = "" if label == name else name
                    elif label != name:         # a name that is data: classed, not shown
                        add(value_classes(name), "query", label)
                    formats[label] = value_format(value) or "string" if value else "empty"
                    classes = value_classes(value, name)
                    add(classes, "query", label)
                    if self.keep_examples:
                        examples[label] = redact(value, classes)
                extra.append(("url.query.keys", list(formats)))
                extra.append(("sensor.query", formats))
                if examples:
                    extra.append(("sensor.examples.query", examples))
            for name, value in fields:
                if name == "cookie":
                    for cname, cvalue in _cookies(value):
                        cookies.append((cname, cvalue))
                        add(value_classes(cvalue, cname), "cookie", cname)
                elif name in ("authorization", "proxy-authorization"):
                    add(credential_classes(value), "request.header", name)
                else:
                    add(value_classes(value, name), "request.header", name)
            extra.append(("sensor.auth", auth_scheme(fields, query_pairs, cookies)))
        for name, value in t.resp_fields or ():
            if name == "set-cookie":
                for cname, cvalue in list(_cookies(value))[:1]:    # the rest are attributes
                    add(value_classes(cvalue, cname) or (("secret",) if is_session_cookie(cname) else ()),
                        "cookie", cname)
            else:
                add(value_classes(value, name), "response.header", name)
        operation = None
        graphql = query_graphql(query_pairs) if t.method == "GET" else None
        if graphql is not None:     # a GraphQL GET: its query parameters read as the request body would
            shape = body_shape(graphql, "application/json", keep_examples=self.keep_examples)
            if shape is not None and shape.operation:
                operation = shape.operation
                extra.append(("sensor.shape.request", shape.to_record()))
                for cls, key, count in shape.findings:
                    k = (cls, "query", key)
                    found[k] = found.get(k, 0) + count
        for side, data, ctype, coding in ((0, t.req_body_data, t.req_content_type, t.req_content_encoding),
                                          (1, t.resp_body_data, t.resp_content_type, t.resp_content_encoding)):
            if not data or ctype is None:
                continue
            shape = self.body(t, side, data, ctype, coding)
            if shape is None:
                continue
            where = "request.body" if side == 0 else "response.body"
            extra.append(("sensor.shape.request" if side == 0 else "sensor.shape.response", shape.to_record()))
            for cls, key, count in shape.findings:
                k = (cls, where, key)
                found[k] = found.get(k, 0) + count
            if side == 0 and shape.operation:
                operation = shape.operation
        t.release_bodies()
        for name, value in fields:
            if name == "soapaction" and value.strip('" '):
                operation = {"kind": "soap", "action": value.strip('" ')[:256]}
        if operation:
            extra.append(("sensor.operation", operation))
        if found:
            extra.append(("sensor.sensitive", [{"class": c, "in": w, "name": n, "count": k}
                                               for (c, w, n), k in sorted(found.items())]))
        return host, path

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
                self.shape_bytes -= len(next(iter(self.shapes))[0])
                del self.shapes[next(iter(self.shapes))]
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

    def path_seen(self, host, path):
        """Tells the route learner of a request path, but no more than it
        needs: past _OBSERVE_ENOUGH times the same path changes nothing it
        decides by (its counts only matter up to the settle count)."""
        key = (host, path)
        n = self.paths_seen.get(key, 0)
        if n < _OBSERVE_ENOUGH:
            self.routes.observe(host, path)
            if len(self.paths_seen) >= _PATH_CACHE_MAX:
                self.paths_seen.clear()
            self.paths_seen[key] = n + 1

    def path_classes(self, path, add):
        found = self.path_found.get(path)
        if found is None:
            cache = self.segment_classes
            found = []
            for i, seg in enumerate(path.split("/")[1:]):
                if not seg:
                    continue
                classes = cache.get(seg)
                if classes is None:
                    if len(cache) >= _SEGMENT_CACHE_MAX:
                        cache.clear()
                    classes = cache[seg] = value_classes(unquote(seg))
                if classes:
                    found.append((classes, str(i)))
            if len(self.path_found) >= _PATH_CACHE_MAX:
                self.path_found.clear()
            self.path_found[path] = found
        for classes, index in found:
            add(classes, "path", index)
