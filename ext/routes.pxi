# Route learner, the per-request half of sensor/enrich/routes.py (which
# describes what is learned).
#
# Every request walks its path down its host's tree twice: once to count it
# (observe), once to name its route (resolve). In Python the calls and
# attribute look-ups of those walks cost two to three microseconds a
# request. The tree, the two walks and the cache of segment classes live
# here; what a segment is, what a parameter is called and when a position
# holds values (new nodes, folding, hints: the learning) stay in routes.py,
# whose RouteLearner subclasses RouteWalker. route_setup() wires in that
# Python half once, at import.

# Segment kinds and how a child position was decided (routes.py: PLAIN, ...)
cdef enum:
    ROUTE_PLAIN, ROUTE_KEEP, ROUTE_VALUE, ROUTE_DATED
cdef enum:
    ROUTE_UNDECIDED, ROUTE_LEARNED, ROUTE_FORCED

ROUTE_SEGMENT_KINDS = (ROUTE_PLAIN, ROUTE_KEEP, ROUTE_VALUE, ROUTE_DATED)
ROUTE_DECISIONS = (ROUTE_UNDECIDED, ROUTE_LEARNED, ROUTE_FORCED)

cdef object _route_classify = None, _route_param_name = None, _route_resolution = None
cdef frozenset _route_namespaces = frozenset(), _route_people = frozenset()
cdef dict _segment_classes = {}         # segment -> (kind, value type); bounded, shared by all learners
cdef Py_ssize_t _SEGMENT_CLASSES_MAX = 65536
cdef Py_ssize_t _SEGMENT_MAX = 100      # a longer segment is a value (and not cached)
cdef Py_ssize_t _CACHED_PATH_MAX = 512  # a longer path is resolved anew each time
cdef Py_ssize_t _OBSERVED_ENOUGH = 32   # > settle_count: see RouteWalker.learn
cdef Py_ssize_t _OBSERVED_MAX = 65536   # (host, path) pairs whose observations are counted


def route_setup(classify, param_name, frozenset namespaces, frozenset people, resolution):
    """Wires the walks to routes.py: the classification of a segment, the
    naming of a parameter, the words that make a namespace or a collection
    of people, and the Resolution type (once, at import)."""
    global _route_classify, _route_param_name, _route_namespaces, _route_people, _route_resolution
    _route_classify, _route_param_name, _route_resolution = classify, param_name, resolution
    _route_namespaces, _route_people = namespaces, people


cpdef tuple segment_class(str seg):
    """(kind, value type or None) of a path segment on its own, remembered."""
    if len(seg) > _SEGMENT_MAX:
        return ROUTE_VALUE, "long"
    got = _segment_classes.get(seg)
    if got is None:
        got = remember(_segment_classes, seg, _route_classify(seg), _SEGMENT_CLASSES_MAX)
    return <tuple>got


cdef int segment_kind(str seg, Py_ssize_t i, str prev) except -1:
    """The segment's kind at position i, after segment `prev`."""
    cdef int kind = segment_class(seg)[0]
    if kind == ROUTE_DATED:
        return ROUTE_KEEP if i == 0 or prev.lower() in _route_namespaces else ROUTE_VALUE
    if kind == ROUTE_PLAIN and prev.lower() in _route_people:
        return ROUTE_VALUE
    return kind


cdef class RouteNode:
    cdef public dict children       # literal segment -> RouteNode
    cdef public RouteNode param     # the node of the values at this child position
    cdef public Py_ssize_t count    # observations that reached this node
    cdef public Py_ssize_t ends     # ... and ended here
    cdef public bint pinned         # kept, hinted or a sub-resource: never folded
    cdef public bint namespace      # root, namespace or version: children are resource names
    cdef public int variable        # how the child position was decided
    cdef public object name         # parameter name forced by a hint
    cdef public bint is_param
    cdef public Py_ssize_t distinct # parameter node: distinct values seen, up to `conclusive`
    cdef public set seen            # ... their hashes until then
    cdef public set parents         # literal under a parameter: hashes of the values it came under
    cdef public frozenset shape     # key paths of the first response shape of a GET ending here

    def __init__(self, bint pinned=False, bint namespace=False, bint is_param=False):
        self.children = {}
        self.pinned = pinned
        self.namespace = namespace
        self.is_param = is_param
        self.seen = set() if is_param else None


cdef class RouteTree:
    cdef public RouteNode root
    cdef public Py_ssize_t nodes
    cdef public Py_ssize_t generation   # bumped whenever a resolution could change: cached ones expire

    def __init__(self):
        self.root = RouteNode(pinned=True, namespace=True)
        self.nodes = 1


cdef class RouteWalker:
    cdef public dict trees              # lowercased host -> RouteTree
    cdef public RouteTree overflow      # the tree shared by hosts beyond max_hosts
    cdef public dict cache              # (host, path) -> (tree, its generation, Resolution)
    cdef public dict observed           # (host, path) -> times learn() observed it
    cdef public Py_ssize_t settle_count, conclusive, max_nodes, max_total_nodes, max_hosts, max_depth
    cdef public Py_ssize_t cache_size, total_nodes

    def learn(self, str host, str path, frozenset shape=None):
        """Observes a request path and resolves it, but observes no more
        than can matter: past _OBSERVED_ENOUGH times the same path changes
        nothing the learner decides by (its counts matter up to settle_count).
        shape: the key paths of a GET's successful response, when it had some."""
        cdef tuple key = (host, path)
        n = self.observed.get(key, 0)
        if n < _OBSERVED_ENOUGH:
            self._observe(host, path, shape)
            remember(self.observed, key, n + 1, _OBSERVED_MAX)
        return self._resolution(key)

    def observe(self, str host, str path, frozenset shape=None):
        """Counts a request path (percent-encoded, no query) of a host, and
        the key paths of the response shape it got (see learn)."""
        self._observe(host, path, shape)

    def resolve(self, str host, str path):
        """The Resolution of a request path of a host."""
        return self._resolution((host, path))

    cdef int _observe(self, str host, str path, frozenset shape) except -1:
        cdef RouteTree tree = self._tree(host)
        cdef RouteNode node = tree.root, child, parent = None
        cdef str prev = "", seg
        cdef Py_ssize_t depth = 0
        cdef int kind
        for seg in path.split("/"):
            if not seg:
                continue
            if depth == self.max_depth:
                break
            child = node.children.get(seg)
            if child is None:
                kind = segment_kind(seg, depth, prev)
                if kind == ROUTE_VALUE or (kind == ROUTE_KEEP and node.variable == ROUTE_FORCED):  # the hint wins
                    child = node.param if node.param is not None else self._new_param(tree, node)
                else:
                    child = self._new_literal(tree, node, seg, kind == ROUTE_KEEP)
                if child is None:       # the tree is full
                    return 0
            elif not child.pinned and child.count < self.settle_count:
                tree.generation += 1    # its confidence and settledness follow its count
            if child.is_param:
                self._note_value(tree, child, hash(seg))
            elif node.is_param and not child.pinned:
                self._note_parent(tree, child, {hash(prev)})
            child.count += 1
            parent = node
            node = child
            prev = seg
            depth += 1
        node.ends += 1
        if shape is not None and node.shape is None and parent is not None and not node.pinned \
                and not node.is_param:
            node.shape = shape
            self._fold(tree, parent)
        return 0

    cdef _resolution(self, tuple key):
        """resolve(*key), cached until the host's tree changes."""
        cdef str path = key[1]
        cdef RouteTree tree
        cached = self.cache.get(key)
        if cached is not None and (<tuple>cached)[1] == (<RouteTree>(<tuple>cached)[0]).generation:
            return (<tuple>cached)[2]
        tree = self._tree(key[0])
        got = self._resolve(tree, path)
        if len(path) <= _CACHED_PATH_MAX:
            remember(self.cache, key, (tree, tree.generation, got), self.cache_size)
        return got

    cpdef RouteTree _tree(self, str host):
        tree = self.trees.get(host)
        if tree is None:
            key = host.lower()
            tree = self.trees.get(key)
            if tree is None:
                if len(self.trees) < self.max_hosts:
                    tree = self.trees[key] = self._planted(key)
                else:
                    if self.overflow is None:
                        self.overflow = self._planted(None)
                    tree = self.overflow
        return tree

    cpdef bint _full(self, RouteTree tree):
        return tree.nodes >= self.max_nodes or self.total_nodes >= self.max_total_nodes

    cpdef _note_value(self, RouteTree tree, RouteNode param, h):
        """Counts the distinct values (by hash) of a parameter node up to `conclusive`."""
        seen = param.seen
        if seen is not None and h not in seen:
            seen.add(h)
            param.distinct += 1
            if param.distinct >= self.conclusive:
                param.seen = None
            tree.generation += 1

    cdef _resolve(self, RouteTree tree, str path):
        cdef RouteNode node = tree.root, child
        cdef list route = [], masked = []
        cdef set used = set()
        cdef dict last = {}                 # base name -> its last number
        cdef double confidence = 1.0
        cdef bint settled = True, full = self._full(tree), forced
        cdef str seg, param
        cdef object prev = None, prev_kind = None   # prev_kind: None after a parameter
        cdef Py_ssize_t depth = 0
        cdef int kind
        for seg in path.split("/"):
            if not seg:
                continue
            kind = segment_kind(seg, depth, prev or "")
            child = node.children.get(seg) if node is not None else None
            forced = node is not None and node.variable == ROUTE_FORCED
            if child is not None or (kind == ROUTE_KEEP and not forced):
                # a literal: learned, hinted or kept
                if child is not None and not child.pinned and not node.namespace \
                        and child.count < self.settle_count:    # (resource names fold only at max_distinct)
                    confidence = min(confidence, <double>child.count / self.settle_count)
                    settled = False
                route.append(seg)
                masked.append(_param_label(_route_param_name(prev, prev_kind), last, used)
                              if kind == ROUTE_VALUE else seg)
                node = child
                prev_kind = kind
            elif kind == ROUTE_VALUE or (node is not None and node.variable) or full or depth >= self.max_depth:
                if kind != ROUTE_VALUE and node is not None and node.variable == ROUTE_LEARNED:
                    confidence = min(confidence, <double>node.param.distinct / self.conclusive
                                     if node.param is not None else 0.0)
                elif kind != ROUTE_VALUE and (node is None or not node.variable):
                    confidence = min(confidence, 0.5)       # the tree is full or the path too deep
                param = _param_label(node.name if forced else _route_param_name(prev, prev_kind), last, used)
                route.append(param)
                masked.append(param)
                node = node.param if node is not None else None
                prev_kind = None    # a parameter names none after it
            else:
                # a plain literal never observed here
                settled = False
                confidence = 0.0
                route.append(seg)
                masked.append(seg)
                node = None
                prev_kind = kind
            prev = seg
            depth += 1
        # tuple.__new__: the namedtuple's own __new__ is Python code
        return tuple.__new__(_route_resolution, ("/" + "/".join(route), "/" + "/".join(masked), confidence, settled))


cdef str _param_label(str base, dict last, set used):
    """"{base}", or "{base2}", "{base3}"... when the path has one already."""
    cdef Py_ssize_t n = last.get(base, 0) + 1
    name = base if n == 1 else f"{base}{n}"
    while name in used:
        n += 1
        name = f"{base}{n}"
    last[base] = n
    used.add(name)
    return "{" + name + "}"
