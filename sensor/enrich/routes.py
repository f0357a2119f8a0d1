"""Endpoint templates learned from the request paths the sensor sees.

`RouteLearner.observe(host, path)` feeds one request path (percent-encoded,
no query); `resolve(host, path)` answers a `Resolution`; `learn(host, path)`
does both for a request, observing a path only as often as can matter:

- `route`: the template, e.g. "/users/{userId}/orders/{orderId}";
- `masked`: the path to publish: the route's parameters as `{name}`, plus
  any segment that by itself looks like a value (number, uuid, email, ...)
  masked even where the route keeps it (a literal hint) or has not decided;
- `confidence`: 0..1, how sure the template is;
- `settled`: False while more observations could still change the route
  (a literal slot whose position may yet turn out to hold values).

Paths are split on "/"; empty segments are dropped, so "//a/b/" is "/a/b"
in both route and masked path ("/" stays "/"). Segments are case-sensitive,
hosts are not (hints name a host with or without its port).

A segment is, on its own (see `segment_type`):
- a value (integer, number, uuid, ulid, hex id, token, email, anything with
  "@" or a percent escape, date, JWT, IBAN, long digit run, more than 100
  characters): always a parameter, whatever was seen before;
- a kept literal (API version such as v1 or v2beta, a date right after the
  root or a namespace such as "api", a known word such as me, self, search,
  health, openapi.json): never folded into a parameter;
- else a plain literal, which stays literal until its position proves to
  hold values: more than `min_distinct` distinct plain literals under one
  parent, most of them seen fewer than `settle_count` times (resource names
  are called again and again, ids and slugs mostly a few times each), and
  half the siblings sharing a continuation (ending there, a parameter, the
  same next literal, or next literals of their own); or sooner, once
  `shape_siblings` literals (and two thirds of those with one) answered
  GETs with successful responses of one shape (`learn(..., shape)`: key
  paths, three quarters shared): /products/red-shoes, /products/blue-hat
  and /products/olive-scarf are one endpoint; two are when their responses
  have the very same `shape_pair_paths` or more key paths. Positions right under
  the root, a namespace or a version hold resource names (/api/users,
  /api/orders, ...) and fold only past `max_distinct`, which bounds every
  position anyway. Right after a
  parameter, a literal seen under two values of it is a sub-resource
  (/users/{userId}/orders) and kept; the position folds only once its
  literals came under two values (one client walking all the sub-resources
  of one repository is not a set of values).

Hints (`parse_hints`) come first: a hinted parameter position takes every
segment but the literals pinned there, a hinted literal is never folded.

Memory is bounded: `max_distinct` plain literals a position, `max_nodes`
nodes a host, `max_total_nodes` overall, `max_hosts` hosts (later hosts
share one tree), `max_depth` segments a path. Once a tree is full, a new
plain literal is taken for a parameter (confidence 0.5) and nothing is added.
"""
import re
from collections import namedtuple
from functools import lru_cache

from .._core import (ROUTE_DECISIONS, ROUTE_SEGMENT_KINDS, RouteNode, RouteTree, RouteWalker, route_setup,
                     segment_class)
from .classify import value_classes, value_format

Resolution = namedtuple("Resolution", "route masked confidence settled")

# Segment kinds. DATED: a date or dotted number, which is an API version
# right after the root or a namespace and a value elsewhere.
PLAIN, KEEP, VALUE, DATED = ROUTE_SEGMENT_KINDS
# How a node's child position was decided.
UNDECIDED, LEARNED, FORCED = ROUTE_DECISIONS

NAMESPACES = frozenset(("api", "apis", "rest", "public", "internal", "private", "admin", "services"))
KNOWN_LITERALS = NAMESPACES | frozenset((
    "me", "self", "current", "mine", "search", "login", "logout", "signin", "signout", "signup",
    "register", "auth", "oauth", "oauth2", "token", "refresh", "callback", "health", "healthz",
    "livez", "readyz", "ping", "status", "metrics", "version", "info", "config", "settings",
    "profile", "graphql", "batch", "bulk", "export", "import", "upload", "download", "new",
    "edit", "count", "latest", "all", "default", ".well-known", "openapi.json", "openapi.yaml",
    "swagger.json", "swagger.yaml", "favicon.ico", "robots.txt", "sitemap.xml", "index.html",
))
# collections of people: what follows is a handle or a name (/users/alice),
# a value from the first request on, before any learner could tell
PEOPLE = frozenset((
    "user", "users", "u", "account", "accounts", "customer", "customers", "member", "members", "people",
    "person", "persons", "profiles", "employee", "employees", "patient", "patients", "student", "students",
    "author", "authors", "owner", "owners", "contact", "contacts", "client", "clients", "player", "players",
    "subscriber", "subscribers", "username", "usernames", "handle", "handles",
))

_VERSION = re.compile(r"v\d{1,3}(?:\.\d{1,3}){0,2}(?:[-_]?[a-z]+\d*)?\Z", re.I)
_DOTTED = re.compile(r"\d{1,3}(?:\.\d{1,3}){1,2}\Z")
_NUMBERISH = re.compile(r"[-+(]?\d[\d\-._()+,]*\Z")     # amounts, phones, grouped cards, SSNs, IPs
_DIGIT_RUN = re.compile(r"\d{5}")
_HEX_ID = re.compile(r"(?=[a-f]*\d)[0-9a-f]{8,}\Z", re.I)
_WORD = re.compile(r"(?:[a-z]+\d{0,2}|\d{1,4})?\Z", re.I)   # "orders", "oauth2", "2024", ""
_SEPARATORS = re.compile(r"[-_.~+=,:]")
_TURNS = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")     # between a letter and a digit


def segment_type(seg):
    """What makes a path segment a value on its own: its format or
    sensitive class ("integer", "uuid", "email", "payment_card", "token",
    ...), or None for a literal."""
    return segment_class(seg)[1]


def _classify(seg):
    """(kind, value type) of a segment on its own (segment_class remembers it)."""
    if seg.isdigit():
        return VALUE, "integer"
    if seg.lower() in KNOWN_LITERALS or _VERSION.match(seg):
        return KEEP, None
    if "%" in seg:
        return VALUE, "encoded"
    fmt = value_format(seg)
    if fmt == "date" or _DOTTED.match(seg):
        return DATED, fmt or "float"
    if fmt and fmt != "boolean":
        return VALUE, fmt
    classes = value_classes(seg)
    if classes:
        return VALUE, classes[0]
    if "@" in seg:
        return VALUE, "at"
    if _NUMBERISH.match(seg):
        return VALUE, "number"
    if _DIGIT_RUN.search(seg):
        return VALUE, "digits"
    random = _random_type(seg)
    return (VALUE, random) if random else (PLAIN, None)


def _random_type(seg):
    """"hex" or "token" when a segment, or a part of it between separators,
    looks machine-made rather than made of words (app.3f9a8b7c.js), or its
    letters and digits take turns three times or more (x9f3k, s3cr3tT0ken;
    words with digits take two at most: k8s, i18n, oauth2callback)."""
    parts = _SEPARATORS.split(seg)
    for part in parts:
        if _HEX_ID.match(part):
            return "hex"
    if len(seg) >= 16 and any(c.isdigit() for c in seg) and not all(_WORD.match(p) for p in parts):
        return "token"
    if len(_TURNS.findall(seg)) >= 3:
        return "token"
    return None


def _is_version(seg):
    return _VERSION.match(seg) is not None or segment_class(seg)[0] == DATED


@lru_cache(maxsize=4096)
def _param_name(parent, parent_kind):
    """userId after "users", categoryId after "categories", else id."""
    if parent is None or parent_kind != PLAIN:
        return "id"
    words = [w for w in re.split(r"[^A-Za-z0-9]+", parent) if w]
    if not words or not words[0][0].isalpha():
        return "id"
    last = words[-1].lower()
    if last.endswith("ies") and len(last) > 3:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes", "uses")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 1:
        last = last[:-1]
    words[-1] = last
    return words[0].lower() + "".join(w.capitalize() for w in words[1:]) + "Id"


Hint = namedtuple("Hint", "host segments")    # host None: every host; segments: literals and "{name}"

_HINT_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")


def parse_hints(text, source="<hints>"):
    """Hints, one a line, "#" starts a comment:
        /post/{postId}                 that position holds values named postId
        =/users/me                     a literal path: never folded
        api.example.com /v1/items/{itemId}   only for that host
    A line without "{...}" pins its literal path like "=". There are no
    wildcards: a {name} segment matches any value. ValueError names the
    line of a malformed or conflicting hint."""
    hints, names = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.partition("#")[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        words = line.split()
        if len(words) > 2:
            raise ValueError(f"{where}: expected '[host] /path', got {line!r}")
        host, pattern = (words[0].lower(), words[1]) if len(words) == 2 else (None, words[0])
        literal = pattern.startswith("=")
        if literal:
            pattern = pattern[1:]
        if not pattern.startswith("/"):
            raise ValueError(f"{where}: a path must start with '/': {pattern!r}")
        segments = tuple(s for s in pattern.split("/") if s)
        for depth, seg in enumerate(segments):
            if "{" in seg or "}" in seg or "*" in seg:
                match = _HINT_NAME.match(seg)
                if literal or not match:
                    raise ValueError(f"{where}: {seg!r}: a parameter is '{{name}}' (letters, digits, _), "
                                     "not allowed after '='; there are no wildcards")
                key = (host, tuple("{}" if s.startswith("{") else s for s in segments[:depth]))
                if names.setdefault(key, match.group(1)) != match.group(1):
                    raise ValueError(f"{where}: {seg!r} names a position already named "
                                     f"{{{names[key]}}}")
        hints.append(Hint(host, segments))
    return hints


def load_hints(path):
    with open(path, encoding="utf-8") as f:
        return parse_hints(f.read(), str(path))


def _similar(a, b):
    """Two responses' key paths are one shape: most of them shared (optional
    fields come and go)."""
    return 4 * len(a & b) >= 3 * len(a | b)


def _host_without_port(host):
    if host.startswith("["):
        return host[:host.find("]") + 1]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


class RouteLearner(RouteWalker):
    """The walks of each request (observe, resolve) are RouteWalker's, in
    ext/routes.pxi; the learning they call on is here."""

    def __init__(self, hints=None, min_distinct=10, max_distinct=64, settle_count=10, shape_siblings=3,
                 shape_pair_paths=5, max_nodes=10000, max_total_nodes=200000, max_hosts=1024, max_depth=64,
                 cache_size=65536):
        self.hints = list(hints or ())
        self.min_distinct = min_distinct
        self.shape_siblings = shape_siblings
        self.shape_pair_paths = shape_pair_paths
        self.max_distinct = max_distinct
        self.settle_count = settle_count
        self.max_nodes = max_nodes
        self.max_total_nodes = max_total_nodes
        self.max_hosts = max_hosts
        self.max_depth = max_depth
        self.cache_size = cache_size
        self.conclusive = 2 * min_distinct     # distinct values that make a learned parameter sure
        self.trees = {}             # lowercased host -> RouteTree
        self.overflow = None        # the tree shared by hosts beyond max_hosts
        self.cache = {}             # (host, path) -> (tree, its generation, Resolution)
        self.observed = {}          # (host, path) -> times learn() observed it
        self.total_nodes = 0

    def node_count(self, host=None):
        """Nodes of one host's tree, or of all trees."""
        return self.total_nodes if host is None else self._tree(host).nodes

    # -- learning

    def _planted(self, host):
        """A new tree with the hints that apply to a (lowercased) host, or
        only those for every host when host is None."""
        hosts = (_host_without_port(host), host) if host is not None else ()
        tree = RouteTree()
        self.total_nodes += 1
        for hint in self.hints:
            if hint.host is not None and hint.host not in hosts:
                continue
            node = tree.root
            for seg in hint.segments:
                if seg.startswith("{"):
                    node.variable, node.name = FORCED, seg[1:-1]
                    node = node.param or self._add(tree, node, None, False)
                else:
                    node = node.children.get(seg) or self._add(tree, node, seg, True)
                    node.pinned = True
        return tree

    def _add(self, tree, parent, seg, pinned):
        """A new child node: under `seg`, or the parameter node when seg is None."""
        if seg is None:
            node = parent.param = RouteNode(is_param=True)
        else:
            node = parent.children[seg] = RouteNode(pinned, pinned and (seg.lower() in NAMESPACES or _is_version(seg)))
        tree.nodes += 1
        self.total_nodes += 1
        tree.generation += 1
        return node

    def _new_param(self, tree, node):
        return None if self._full(tree) else self._add(tree, node, None, False)

    def _new_literal(self, tree, node, seg, keep):
        """The node a new literal segment goes to: a new child, or the
        parameter node when its position holds values (or now does)."""
        if keep:
            return None if self._full(tree) else self._add(tree, node, seg, True)
        if node.variable:
            return node.param or self._new_param(tree, node)
        if self._full(tree):
            return node.param
        child = self._add(tree, node, seg, False)
        if self._holds_values(node):
            self._collapse(tree, node)
            return node.param
        return child

    def _fold(self, tree, node):
        """Folds the plain literals of `node` when its position was decided
        to hold values or proves to (after a merge, or when a child got its
        response shape)."""
        if any(not c.pinned for c in node.children.values()) and (node.variable or self._holds_values(node)):
            self._collapse(tree, node)

    def _holds_values(self, node):
        plain = [c for c in node.children.values() if not c.pinned]
        if len(plain) > self.max_distinct:
            return True
        if not (node.namespace or node.is_param) and self._alike(plain):
            return True
        if node.namespace or len(plain) <= self.min_distinct or (node.is_param and node.distinct < 2):
            return False
        if sum(c.count < self.settle_count for c in plain) * 2 <= len(plain):
            return False
        shared = {}             # next literal -> how many siblings it follows
        for child in plain:
            for key in child.children:
                shared[key] = shared.get(key, 0) + 1
        votes, voters = {}, 0
        for child in plain:
            nexts = {key if shared[key] > 1 else "*" for key in child.children}    # "*": its own words
            if child.param:
                nexts.add("{}")
            if child.ends:
                nexts.add("")
            voters += bool(nexts)
            for key in nexts:
                votes[key] = votes.get(key, 0) + 1
        return max(votes.values(), default=0) * 2 >= voters

    def _alike(self, plain):
        """True when `shape_siblings` or more of these literals (and two
        thirds of those with a shape) answered GETs with responses of one
        shape: /products/red-shoes, /products/blue-hat... are one endpoint
        long before their count could tell. Two whose responses have the
        very same key paths, `shape_pair_paths` or more, are too."""
        shapes = [c.shape for c in plain if c.shape is not None]
        if len(shapes) == 2 and shapes[0] == shapes[1] and len(shapes[0]) >= self.shape_pair_paths:
            return True
        if len(shapes) < self.shape_siblings:
            return False
        best = max(sum(_similar(a, b) for b in shapes) for a in shapes)
        return best >= self.shape_siblings and 3 * best >= 2 * len(shapes)

    def _collapse(self, tree, node):
        """Folds the plain literal children of `node` into its parameter node."""
        folded = [seg for seg, c in node.children.items() if not c.pinned]
        target = node.param
        for seg in folded:
            child = node.children.pop(seg)
            for grandchild in child.children.values():
                if not grandchild.pinned:
                    self._note_parent(tree, grandchild, {hash(seg)})
            if target is None:      # reused: no new node
                target = node.param = child
                child.is_param, child.seen = True, set()
            else:
                self._merge(tree, target, child)
            self._note_value(tree, target, hash(seg))
        if node.variable == UNDECIDED:
            node.variable = LEARNED
        tree.generation += 1
        if target is not None:
            self._recheck(tree, target)

    def _merge(self, tree, into, node):
        into.count += node.count
        into.ends += node.ends
        into.pinned |= node.pinned
        if into.shape is None:
            into.shape = node.shape
        if node.variable > into.variable:
            into.variable, into.name = node.variable, node.name
        if node.is_param:
            if node.seen is None or into.seen is None:
                into.seen, into.distinct = None, max(into.distinct, node.distinct, self.conclusive)
            else:
                for h in node.seen:
                    self._note_value(tree, into, h)
        if node.parents:
            self._note_parent(tree, into, node.parents)
        for seg, child in node.children.items():
            same = into.children.get(seg)
            if same is None:
                into.children[seg] = child
            else:
                self._merge(tree, same, child)
        if node.param is not None:
            if into.param is None:
                into.param = node.param
            else:
                self._merge(tree, into.param, node.param)
        tree.nodes -= 1
        self.total_nodes -= 1

    def _recheck(self, tree, node):
        """After a merge: positions below may now hold values too."""
        for child in list(node.children.values()):
            self._recheck(tree, child)
        if node.param is not None:
            self._recheck(tree, node.param)
        self._fold(tree, node)

    def _note_parent(self, tree, literal, hashes):
        """A literal after a parameter came under these values of it: under
        two, it is a sub-resource, pinned."""
        parents = literal.parents = (literal.parents or set()) | hashes
        if len(parents) >= 2:
            literal.pinned, literal.parents = True, None
            tree.generation += 1


route_setup(_classify, _param_name, NAMESPACES, PEOPLE, Resolution)
