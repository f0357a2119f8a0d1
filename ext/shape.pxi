# Payload shape collector: the per-node walk of sensor/enrich/shape.py.
#
# A JSON body of a list page is hundreds of nodes; in Python each node cost a
# microsecond of calls and dict juggling, the largest cost of enrichment. The
# walk and its bookkeeping live here; what a value or key *is* (format,
# sensitive classes, name or data) is still decided in Python
# (enrich/classify.py, enrich/shape.py), memoised, and set once by
# shape_setup().
from cpython.dict cimport PyDict_GetItem
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp

cdef enum:
    _CUT = -1       # the data ended inside the value
    _BAD = -2       # not JSON from here on


cdef inline bint scalar_byte(unsigned char c):
    """A byte of a number or literal token, for skipping one unread."""
    return c in b"0123456789+-.eEaflnrstuINiy"


cdef object _value_format = None, _value_classes = None, _is_value_key = None, _remember_named = None
cdef object _redact = None, _scanstring = None
cdef set _named_keys = set()
cdef dict _leaf_cache = {}
cdef Py_ssize_t _LEAF_CACHE_MAX = 65536
cdef Py_ssize_t _CACHED_LEAF_MAX = 64       # longer values are not kept
cdef Py_ssize_t _MAX_NAME = 64              # key names are cut here (shape_setup sets it)


def shape_setup(value_format, value_classes, is_value_key, set named_keys, remember_named, Py_ssize_t max_name,
                redact, scanstring):
    """Wires the collector to enrich's classifiers and json's string
    unescaping (once, at import)."""
    global _value_format, _value_classes, _is_value_key, _named_keys, _remember_named, _MAX_NAME, _redact
    global _scanstring
    _value_format, _value_classes, _is_value_key, _redact = value_format, value_classes, is_value_key, redact
    _scanstring = scanstring
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
    cdef const unsigned char* buf   # the JSON document json_bytes reads (held by its caller)
    cdef Py_ssize_t size, root      # its length; where its root value starts
    cdef bint broken                # the document was cut short or broke off

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

    # -- JSON, read straight from the body's bytes
    #
    # json.loads built an object per node for the walk to throw away, and a
    # cut body needed a second, Python-level parse. Here each node is read
    # where it lies: a container's members are first listed (keys and where
    # their values start) because whether its keys are names or data depends
    # on all of them; a cut or a syntax error ends the walk and the shape is
    # that of what was read (a string cut short counts as a string, a number
    # or literal cut short is dropped).

    cpdef bint json_bytes(self, bytes data, str path, name, int depth, bint members=False):
        """Walks the JSON document in UTF-8 `data` at key path `path`;
        members: only the members of a root object are read (its own type is
        not recorded). False when the document was cut short or broke off."""
        self.buf = data
        self.size = len(data)
        self.broken = False
        cdef Py_ssize_t i = self.space(0)
        self.root = i
        if members and i < self.size and self.buf[i] == b"{":
            self.walk_object(i + 1, path, name, depth)
        else:
            self.walk(i, path, name, depth)
        return not self.broken

    cdef inline Py_ssize_t space(self, Py_ssize_t i):
        cdef unsigned char c
        while i < self.size:
            c = self.buf[i]
            if c != 32 and c != 10 and c != 13 and c != 9:
                break
            i += 1
        return i

    cdef inline Py_ssize_t fail(self, Py_ssize_t why):
        self.broken = True
        return why

    cdef Py_ssize_t string_end(self, Py_ssize_t i, bint* escaped):
        """Index of the quote closing the string whose text starts at i; _CUT."""
        cdef const unsigned char* q
        cdef Py_ssize_t j, k, start = i
        while True:
            q = <const unsigned char*>memchr(self.buf + i, b'"', self.size - i)
            if q == NULL:
                return _CUT
            j = q - self.buf
            k = j
            while k > start and self.buf[k - 1] == b"\\":
                k -= 1
            if not (j - k) & 1:                     # not itself escaped
                escaped[0] = memchr(self.buf + start, b"\\", j - start) != NULL
                return j
            i = j + 1

    cdef object text(self, Py_ssize_t i, Py_ssize_t j, bint escaped):
        """The str of a string token's text buf[i:j]; None when an escape is malformed."""
        if not escaped:
            return PyUnicode_DecodeUTF8(<const char*>self.buf + i, j - i, "replace")
        try:        # json's own unescaping, quotes included: \uD83D\uDE00 pairs, lone surrogates
            return _scanstring(PyUnicode_DecodeUTF8(<const char*>self.buf + i - 1, j - i + 2, "replace"), 1,
                               False)[0]
        except ValueError:
            return None

    cdef Py_ssize_t skip(self, Py_ssize_t i):
        """End of the value at i, not read: _CUT or _BAD when there is none."""
        cdef Py_ssize_t nesting = 0
        cdef unsigned char c
        cdef bint escaped
        while True:
            i = self.space(i)
            if i >= self.size:
                return _CUT
            c = self.buf[i]
            if c == b'"':
                i = self.string_end(i + 1, &escaped)
                if i < 0:
                    return _CUT
                i += 1
            elif c == b"{" or c == b"[":
                nesting += 1
                i += 1
                continue
            elif c == b"}" or c == b"]":
                if nesting == 0:
                    return _BAD
                nesting -= 1
                i += 1
            elif c == b"," or c == b":":
                if nesting == 0:
                    return _BAD
                i += 1
                continue
            else:
                while i < self.size and scalar_byte(self.buf[i]):
                    i += 1
                if i >= self.size:
                    return _CUT
                if not scalar_byte(c):
                    return _BAD
            if nesting == 0:
                return i

    cdef Py_ssize_t literal(self, Py_ssize_t i, const char* word, Py_ssize_t n):
        """End of `word` at i; _CUT when the data ends inside it."""
        cdef Py_ssize_t have = min(n, self.size - i)
        if memcmp(self.buf + i, word, have) != 0:
            return self.fail(_BAD)
        return i + n if have == n else self.fail(_CUT)

    cdef Py_ssize_t number(self, Py_ssize_t i, str path, name):
        cdef Py_ssize_t j = i
        cdef bint real = False
        if self.buf[j] == b"-":
            j += 1
            if j < self.size and self.buf[j] == b"I":
                j = self.literal(j, b"Infinity", 8)
                if j >= 0:
                    self.add(path, "number")
                    self.classify(path, "-inf", name)
                return j
        j = self.digits(j)
        if j >= 0 and j < self.size and self.buf[j] == b".":
            real = True
            j = self.digits(j + 1)
        if j >= 0 and j < self.size and (self.buf[j] == b"e" or self.buf[j] == b"E"):
            real = True
            j += 1
            if j < self.size and (self.buf[j] == b"+" or self.buf[j] == b"-"):
                j += 1
            j = self.digits(j)
        if j == _BAD:
            return self.fail(_BAD)
        if j == _CUT or (j == self.size and i != self.root):
            return self.fail(_CUT)      # a number at the cut may be cut short
        self.add(path, "number" if real else "integer")
        self.classify(path, PyUnicode_DecodeLatin1(<const char*>self.buf + i, j - i, NULL), name)
        return j

    cdef inline Py_ssize_t digits(self, Py_ssize_t j):
        """End of the run of one or more digits at j: _CUT, _BAD."""
        if j >= self.size:
            return _CUT
        if not (b"0" <= self.buf[j] <= b"9"):
            return _BAD
        while j < self.size and b"0" <= self.buf[j] <= b"9":
            j += 1
        return j

    cdef Py_ssize_t walk(self, Py_ssize_t i, str path, name, int depth) except? -3:
        """Reads the value at i; its end, or _CUT / _BAD."""
        cdef unsigned char c, close
        cdef Py_ssize_t j
        cdef bint escaped
        i = self.space(i)
        if i >= self.size:
            return self.fail(_CUT)
        c = self.buf[i]
        if c == b'"':
            j = self.string_end(i + 1, &escaped)
            if j < 0:
                self.string(path, "", name)         # cut short: a string of unknown format
                return self.fail(_CUT)
            text = self.text(i + 1, j, escaped)
            if text is None:
                return self.fail(_BAD)
            self.string(path, <str>text, name)
            return j + 1
        if c == b"{" or c == b"[":
            if path:                                # the root container has no path
                self.add(path, "object" if c == b"{" else "array")
            close = b"}" if c == b"{" else b"]"
            j = self.space(i + 1)
            if j >= self.size:
                return self.fail(_CUT)
            if self.buf[j] == close:
                return j + 1
            if not self.deeper(depth):
                j = self.skip(i)
                return j if j >= 0 else self.fail(j)
            if c == b"{":
                return self.walk_object(j, path, name, depth + 1)
            return self.walk_array(j, path + "[]", name, depth + 1)
        if c == b"t" or c == b"f":
            j = self.literal(i, b"true", 4) if c == b"t" else self.literal(i, b"false", 5)
            if j >= 0:
                self.add(path, "boolean")
            return j
        if c == b"n":
            j = self.literal(i, b"null", 4)
            if j >= 0:
                self.add(path, "null")
            return j
        if c == b"N" or c == b"I":
            j = self.literal(i, b"NaN", 3) if c == b"N" else self.literal(i, b"Infinity", 8)
            if j >= 0:
                self.add(path, "number")
                self.classify(path, "nan" if c == b"N" else "inf", name)
            return j
        if c == b"-" or b"0" <= c <= b"9":
            return self.number(i, path, name)
        return self.fail(_BAD)

    cdef Py_ssize_t walk_array(self, Py_ssize_t i, str element, name, int depth) except? -3:
        cdef Py_ssize_t count = 0
        while True:
            if count < self.max_items:
                i = self.walk(i, element, name, depth)
            else:
                self.limits.add("items")
                i = self.skip(i)
            if i < 0:
                return self.fail(i)
            count += 1
            i = self.space(i)
            if i >= self.size:
                return self.fail(_CUT)
            if self.buf[i] == b"]":
                return i + 1
            if self.buf[i] != b",":
                return self.fail(_BAD)
            i += 1

    cdef Py_ssize_t walk_object(self, Py_ssize_t i, str path, name, int depth) except? -3:
        """Reads the members of the object whose first member is at i."""
        cdef list keys = [], starts = []
        cdef Py_ssize_t j, end = _CUT
        cdef bint escaped
        # list the members: key, where its value starts
        while True:
            i = self.space(i)
            if i >= self.size:
                break
            if self.buf[i] == b"}":
                end = i + 1
                break
            if self.buf[i] != b'"':
                end = _BAD
                break
            j = self.string_end(i + 1, &escaped)
            if j < 0:
                break                               # a key cut short
            key = self.text(i + 1, j, escaped)
            i = self.space(j + 1)
            if key is None or (i < self.size and self.buf[i] != b":"):
                end = _BAD
                break
            i = self.space(i + 1)
            if i >= self.size:
                break                               # a key without its value
            if len(keys) <= self.max_paths:         # one more than is read flags the limit
                keys.append(key)
                starts.append(i)
            i = self.skip(i)
            if i < 0:
                end = i
                break
            i = self.space(i)
            if i >= self.size:
                break
            if self.buf[i] == b",":
                i += 1
            elif self.buf[i] == b"}":
                end = i + 1
                break
            else:
                end = _BAD
                break
        if end < 0:
            self.broken = True
        cdef tuple names = tuple(keys)
        cdef dict at
        cdef bint named = names in _named_keys     # seen before, all keys names (and none twice)
        if not named:
            at = dict(zip(keys, starts))            # a repeated key: its last value, as json.loads
            if len(at) != len(keys):
                names = tuple(at)
                starts = list(at.values())
        self.members(names, starts, path, name, depth, named)
        return end

    cdef members(self, tuple keys, list starts, str path, name, int depth, bint named):
        """Walks an object's values, each under its key's label: the key, or
        "{key}" for keys that are data (ids, emails, dates: a map)."""
        cdef list value_keys = None
        cdef str prefix, mapped
        cdef Py_ssize_t k
        if len(keys) > self.max_paths:          # more keys than paths kept: the rest is not read
            keys = keys[:self.max_paths]
            self.limits.add("paths")
            named = keys in _named_keys
        if not named:
            value_keys = [k for k in range(len(keys)) if _is_value_key(keys[k])]
        if not value_keys:
            if value_keys is not None:
                _remember_named(keys)
            prefix = path + "." if path else ""
            for k in range(len(keys)):
                self.walk(starts[k], prefix + (<str>keys[k])[:_MAX_NAME], keys[k], depth)
            return
        mapped = join_path(path, "{key}")
        if 2 * len(value_keys) >= len(keys):
            value_keys = list(range(len(keys)))      # a map: none of its keys is a name
        else:
            for k in range(len(keys)):
                if not _is_value_key(keys[k]):
                    self.walk(starts[k], join_path(path, (<str>keys[k])[:_MAX_NAME]), keys[k], depth)
        for k in self.items(value_keys):
            self.classify(mapped, keys[k], name)
            self.walk(starts[k], mapped, name, depth)
