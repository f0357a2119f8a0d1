# Payload shape collector: the per-node walk of sensor/enrich/shape.py.
#
# A JSON body of a list page is hundreds of nodes; in Python each node cost a
# microsecond of calls and dict juggling, the largest cost of enrichment. The
# walk and its bookkeeping live here; what a value or key *is* (format,
# sensitive classes, name or data) is still decided in Python
# (enrich/classify.py, enrich/shape.py), memoised, and set once by
# shape_setup().
from cpython.dict cimport PyDict_GetItem


cdef object _value_format = None, _value_classes = None, _is_value_key = None, _remember_named = None
cdef object _redact = None
cdef set _named_keys = set()
cdef dict _leaf_cache = {}
cdef Py_ssize_t _LEAF_CACHE_MAX = 65536
cdef Py_ssize_t _CACHED_LEAF_MAX = 64       # longer values are not kept
cdef Py_ssize_t _MAX_NAME = 64              # key names are cut here (shape_setup sets it)


def shape_setup(value_format, value_classes, is_value_key, set named_keys, remember_named, Py_ssize_t max_name,
                redact):
    """Wires the collector to enrich's classifiers (once, at import)."""
    global _value_format, _value_classes, _is_value_key, _named_keys, _remember_named, _MAX_NAME, _redact
    _value_format, _value_classes, _is_value_key, _redact = value_format, value_classes, is_value_key, redact
    _named_keys, _remember_named, _MAX_NAME = named_keys, remember_named, max_name


# (type, sensitive classes) of a string leaf under key `name`. Short leaves
# (enums, statuses, flags, ids) come back body after body: memoised, bounded;
# the values stay inside the sensor.
cdef tuple leaf_info(str text, name):
    cdef tuple key = (text, name)
    cdef PyObject* hit = PyDict_GetItem(_leaf_cache, key)
    if hit != NULL:
        return <tuple>hit
    fmt = _value_format(text)
    cdef tuple info = ("string:" + fmt if fmt else "string", _value_classes(text, name))
    if len(text) <= _CACHED_LEAF_MAX:
        if len(_leaf_cache) >= _LEAF_CACHE_MAX:
            _leaf_cache.clear()
        _leaf_cache[key] = info
    return info


cdef inline str join_path(str path, str label):
    return path + "." + label if path else label


cdef class ShapeCollector:
    """What one body's walk found: the types seen at each path, sensitive
    findings and the limits hit."""
    cdef public dict types          # path -> set of types
    cdef public dict found          # (class, path) -> count
    cdef public set limits
    cdef public int max_depth, max_paths, max_items
    cdef public dict examples       # path -> redacted example; None unless examples are kept

    def __init__(self, int max_depth, int max_paths, int max_items):
        self.types = {}
        self.found = {}
        self.limits = set()
        self.examples = None
        self.max_depth, self.max_paths, self.max_items = max_depth, max_paths, max_items

    cpdef add(self, str path, str typ):
        cdef PyObject* seen = PyDict_GetItem(self.types, path)
        if seen != NULL:
            (<set>seen).add(typ)
        elif len(self.types) < self.max_paths:
            self.types[path] = {typ}
        else:
            self.limits.add("paths")

    cdef inline void count(self, tuple classes, str path) except *:
        cdef PyObject* n
        for cls in classes:
            key = (cls, path)
            n = PyDict_GetItem(self.found, key)
            self.found[key] = (<object>n) + 1 if n != NULL else 1

    cpdef classify(self, str path, str text, name):
        self.count(<tuple>leaf_info(text, name)[1], path)

    cpdef string(self, str path, str text, name):
        cdef tuple info = leaf_info(text, name)
        self.add(path, <str>info[0])
        self.count(<tuple>info[1], path)
        if self.examples is not None and path not in self.examples and len(self.examples) < self.max_paths:
            self.examples[path] = _redact(text, info[1])

    cpdef items(self, sequence):
        if len(sequence) > self.max_items:
            self.limits.add("items")
            return sequence[:self.max_items]
        return sequence

    cpdef bint deeper(self, int depth):
        """True when a container at `depth` may be read."""
        if depth < self.max_depth:
            return True
        self.limits.add("depth")
        return False

    # JSON values (json.loads output), one call a node
    cpdef json(self, node, str path, name, int depth):
        if type(node) is str:
            self.string(path, <str>node, name)
            return
        if type(node) is dict:
            if path:                        # the root container has no path
                self.add(path, "object")
            if node and self.deeper(depth):
                self.json_object(<dict>node, path, name, depth + 1)
        elif type(node) is list:
            if path:
                self.add(path, "array")
            if node and self.deeper(depth):
                element = path + "[]"
                for item in self.items(node):
                    self.json(item, element, name, depth + 1)
        elif type(node) is bool:
            self.add(path, "boolean")
        elif type(node) is int:
            self.add(path, "integer")
            self.classify(path, str(node), name)
        elif type(node) is float:
            self.add(path, "number")
            self.classify(path, str(node), name)
        else:
            self.add(path, "null")

    cpdef json_object(self, dict node, str path, name, int depth):
        cdef tuple keys = tuple(node)
        cdef list value_keys = None
        cdef str prefix, mapped
        if len(keys) > self.max_paths:         # more keys than paths kept: the rest is not read
            keys = keys[:self.max_paths]
            self.limits.add("paths")
        if keys not in _named_keys:
            value_keys = [key for key in keys if _is_value_key(key)]
        if not value_keys:
            if value_keys is not None:
                _remember_named(keys)
            prefix = path + "." if path else ""
            for key in keys:
                self.json(node[key], prefix + (<str>key)[:_MAX_NAME], key, depth)
            return
        mapped = join_path(path, "{key}")
        if 2 * len(value_keys) >= len(keys):
            value_keys = list(keys)             # a map: none of its keys is a name
        else:
            for key in keys:
                if not _is_value_key(key):
                    self.json(node[key], join_path(path, (<str>key)[:_MAX_NAME]), key, depth)
        for key in self.items(value_keys):
            self.classify(mapped, key, name)
            self.json(node[key], mapped, name, depth)
