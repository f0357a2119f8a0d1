# Payload shape collector: the per-node walk of sensor/enrich/shape.py.
#
# A JSON body of a list page is hundreds of nodes; in Python each node cost a
# microsecond of objects and dict juggling, the largest cost of enrichment.
# The walk reads JSON where it lies in the body's bytes and keeps its key-path
# tree in C: a node per distinct (parent, key), types as bits. Key paths and
# short leaves are remembered across bodies by their bytes, so the Python strs
# of a known one are not made again. What a value *is* (format, sensitive classes)
# is told by classify.pxi; whether a key is a name or data by enrich/shape.py,
# wired by shape_setup().
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_GetItemWithError
from cpython.list cimport PyList_GET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport qsort
from libc.string cimport memchr, memcmp

cdef enum:
    _CUT = -1       # the data ended inside the value
    _BAD = -2       # not JSON from here on

cdef enum:          # Node.size of the nodes that are not a key
    _ELEMENT = -1   # "[]": the elements of an array
    _MAPPED = -2    # "{key}": the members of a map, whose keys are data
    _ROOT = -3


cdef extern from *:
    """
    static inline uint64_t load_le64(const unsigned char *p) {
        uint64_t w;
        memcpy(&w, p, 8);
    #if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
    #endif
        return w;
    }
    """
    uint64_t load_le64(const unsigned char* p) noexcept nogil      # 8 bytes, the first lowest
    int __builtin_ctzll(unsigned long long) noexcept nogil


cdef inline uint64_t quote_or_backslash(uint64_t w) noexcept:
    """High bits at the bytes of w that are a quote or a backslash; the
    lowest is exact (the borrows may mark bytes above it)."""
    cdef uint64_t q = w ^ 0x2222222222222222ULL, b = w ^ 0x5c5c5c5c5c5c5c5cULL
    return ((q - 0x0101010101010101ULL) & ~q | (b - 0x0101010101010101ULL) & ~b) & 0x8080808080808080ULL


cdef inline bint scalar_byte(unsigned char c):
    """A byte of a number or literal token, for skipping one unread."""
    return c in b"0123456789+-.eEaflnrstuINiy"


cdef object _is_value_key = None, _redact = None, _scanstring = None
cdef Py_ssize_t _MAX_NAME = 64              # key names are cut here (shape_setup sets it)


def shape_setup(is_value_key, Py_ssize_t max_name, redact, scanstring):
    """Wires the collector to enrich's key test and redaction, and json's
    string unescaping (once, at import)."""
    global _is_value_key, _MAX_NAME, _redact, _scanstring
    _is_value_key, _redact, _MAX_NAME, _scanstring = is_value_key, redact, max_name, scanstring


# Types are bits of a node: the JSON types, then "string:<format>" as formats are met
cdef dict _TYPE_BITS = {}
cdef list _TYPE_NAMES = []

cdef int type_index(str name) except -1:
    index = _TYPE_BITS.get(name)
    if index is None:
        if len(_TYPE_NAMES) >= 64:
            raise OverflowError("more than 64 value types")
        index = _TYPE_BITS[name] = len(_TYPE_NAMES)
        _TYPE_NAMES.append(name)
    return index

cdef int _OBJECT = type_index("object"), _ARRAY = type_index("array"), _BOOLEAN = type_index("boolean")
cdef int _INTEGER = type_index("integer"), _NUMBER = type_index("number"), _NULL = type_index("null")


# (type index, sensitive classes) of a string leaf, by the key `name` it sits
# under, then by its text. Short leaves (enums, statuses, flags, ids) come back
# body after body: memoised, bounded; the values stay inside the sensor.
cdef dict _FORMAT_INDEX = {}      # value_format's answer -> type index of "string:<format>"
cdef dict _leaf_cache = {}
cdef Py_ssize_t _leaf_count = 0
cdef Py_ssize_t _LEAF_CACHE_MAX = 16384
cdef Py_ssize_t _CACHED_LEAF_MAX = 64       # longer values are not kept


cdef void leaf_entry() except *:
    """Counts one more entry (a value, or a name's table), emptying the cache
    when full."""
    global _leaf_count
    if _leaf_count >= _LEAF_CACHE_MAX:
        _leaf_cache.clear()
        _leaf_count = 0
    _leaf_count += 1


cdef dict leaf_table(name):
    cdef PyObject* table = PyDict_GetItem(_leaf_cache, name)
    if table != NULL:
        return <dict>table
    fresh = {}
    if name is None or len(name) <= _CACHED_NAME_MAX:     # (classify.pxi) names are data too
        leaf_entry()
        _leaf_cache[name] = fresh
    return fresh


cdef list _PLAIN_INFOS = []       # (type index, no classes), per type index: most leaves' answer, shared


cdef tuple leaf_made(str text, name):
    """leaf_info's answer, not memoised."""
    fmt = value_format(text)
    index = _FORMAT_INDEX.get(fmt)
    if index is None:
        index = _FORMAT_INDEX[fmt] = type_index("string:" + fmt if fmt else "string")
    classes = value_classes(text, name)
    if classes:
        return (index, classes)
    while len(_PLAIN_INFOS) <= index:
        _PLAIN_INFOS.append((len(_PLAIN_INFOS), ()))
    return <tuple>_PLAIN_INFOS[index]


cdef tuple leaf_info(dict table, str text, name):
    cdef bint kept = len(text) <= _CACHED_LEAF_MAX
    cdef PyObject* hit = PyDict_GetItem(table, text) if kept else NULL
    if hit != NULL:
        return <tuple>hit
    cdef tuple info = leaf_made(text, name)
    if kept:
        leaf_entry()
        table[text] = info
    return info


cdef object token_text(const unsigned char* s, Py_ssize_t n, bint escaped):
    """The str of a string token's text; None when an escape is malformed."""
    if not escaped:
        return PyUnicode_DecodeUTF8(<const char*>s, n, "replace")
    try:        # json's own unescaping, quotes included: \uD83D\uDE00 pairs, lone surrogates
        return _scanstring(PyUnicode_DecodeUTF8(<const char*>s - 1, n + 2, "replace"), 1, False)[0]
    except ValueError:
        return None


cpdef str join_path(str path, str label):
    """A key path one level down: path.label (label alone at the root)."""
    return path + "." + label if path else label


cdef struct Node:               # a key path: of the document being read, or interned
    int32_t parent
    int32_t link                # the next node in its hash bucket; -1: none
    int32_t interned            # (a document's node) its interned node: path, name
    uint64_t hash
    const unsigned char* key    # its key's bytes; size: their length, or _ELEMENT...
    Py_ssize_t size
    uint64_t types              # bits: _TYPE_NAMES
    bint value_key              # the key is data: its value is read under the parent's "{key}"
    bint typed                  # a container here has a type (the root container has none)
    bint plain                  # the name its values are classed by hints at nothing (classify.name_info)


cdef struct Nodes:              # nodes by (parent, key bytes), a chained hash table
    Node* nodes
    int32_t* buckets            # 2 * room of them, heads of chains of nodes
    Py_ssize_t n, room
    uint64_t mask               # buckets - 1


cdef inline uint64_t node_hash(int32_t parent, const unsigned char* key, Py_ssize_t size) noexcept:
    cdef uint64_t h = <uint64_t>(parent + 1) * 0x9e3779b97f4a7c15ULL ^ <uint64_t>size, word
    cdef Py_ssize_t k = 0
    while k + 8 <= size:                    # a word at a time: leaves are hashed too
        memcpy(&word, key + k, 8)
        h = (h ^ word) * 0x9e3779b97f4a7c15ULL
        h ^= h >> 29
        k += 8
    while k < size:
        h = (h ^ key[k]) * 0x100000001b3ULL
        k += 1
    return h ^ (h >> 32)


cdef int nodes_init(Nodes* t, Py_ssize_t room) except -1:
    t.nodes = <Node*>malloc(room * sizeof(Node))
    t.buckets = <int32_t*>malloc(2 * room * sizeof(int32_t))
    if t.nodes == NULL or t.buckets == NULL:
        raise MemoryError()
    t.room, t.mask = room, 2 * room - 1
    nodes_clear(t)
    return 0


cdef void nodes_clear(Nodes* t) noexcept:
    t.n = 0
    memset(t.buckets, 0xff, (t.mask + 1) * sizeof(int32_t))


cdef int32_t nodes_find(Nodes* t, int32_t parent, const unsigned char* key, Py_ssize_t size,
                        uint64_t h) noexcept:
    """The node of `key` under `parent`; -1: none."""
    cdef int32_t n = t.buckets[h & t.mask]
    cdef Node* nd
    while n >= 0:
        nd = &t.nodes[n]
        if nd.hash == h and nd.parent == parent and nd.size == size and (
                size < 0 or memcmp(nd.key, key, size) == 0):
            return n
        n = nd.link
    return -1


cdef Node* nodes_add(Nodes* t, int32_t parent, const unsigned char* key, Py_ssize_t size,
                     uint64_t h) except NULL:
    """A new node (its types none), the room doubled and rehashed when full."""
    cdef Py_ssize_t k, room
    cdef Node* nd
    cdef int32_t* buckets
    if t.n >= t.room:
        room = 2 * t.room
        nd = <Node*>realloc(t.nodes, room * sizeof(Node))
        if nd == NULL:
            raise MemoryError()
        t.nodes = nd
        buckets = <int32_t*>realloc(t.buckets, 2 * room * sizeof(int32_t))
        if buckets == NULL:
            raise MemoryError()
        t.buckets, t.room, t.mask = buckets, room, 2 * room - 1
        memset(t.buckets, 0xff, 2 * room * sizeof(int32_t))
        for k in range(t.n):
            t.nodes[k].link = t.buckets[t.nodes[k].hash & t.mask]
            t.buckets[t.nodes[k].hash & t.mask] = <int32_t>k
    nd = &t.nodes[t.n]
    nd.parent, nd.key, nd.size, nd.hash, nd.types = parent, key, size, h, 0
    nd.link = t.buckets[h & t.mask]
    t.buckets[h & t.mask] = <int32_t>t.n
    t.n += 1
    return nd


# Key paths interned across bodies: the same ones come back body after body,
# and a known one costs a hash and a memcmp, not its key's str, its path's
# join and the tests of its name. A node per (interned parent, key bytes),
# roots by (path, name); bounded, emptied when full before a walk starts
# (never during one: the document's nodes point into it).
cdef Nodes _interned
nodes_init(&_interned, 1024)
cdef list _interned_paths = [], _interned_names = [], _interned_keys = []   # per node; keys: their bytes
cdef dict _interned_roots = {}
cdef Py_ssize_t _interned_size = 0                   # bytes of keys and characters of paths kept
cdef uint64_t _interned_generation = 0               # one more each time it is emptied
# (a body's nodes, 2056 at most by default, still fit in the room of 32768)
cdef Py_ssize_t _INTERNED_MAX = 30000, _INTERNED_SIZE_MAX = 1 << 21


# Leaves (strings, numbers) met before by (interned node, bytes), and what
# they were: one met again makes no str (but for its example, when kept).
# Bounded; emptied with the interned nodes, whose numbers it holds.
cdef Nodes _known_leaves
nodes_init(&_known_leaves, 1024)
cdef list _known_infos = []                         # per leaf: leaf_info's answer
cdef unsigned char* _known_bytes = <unsigned char*>malloc(_LEAF_CACHE_MAX * _CACHED_LEAF_MAX)   # a slot each
if _known_bytes == NULL:
    raise MemoryError()


cdef int interned_bound() except -1:
    global _interned_size, _interned_generation
    if _interned.n >= _INTERNED_MAX or _interned_size >= _INTERNED_SIZE_MAX:
        _interned_generation += 1
        nodes_clear(&_interned)
        del _interned_paths[:], _interned_names[:], _interned_keys[:]
        _interned_roots.clear()
        _interned_size = 0
        forget_leaves()
    return 0


cdef int forget_leaves() except -1:
    nodes_clear(&_known_leaves)
    del _known_infos[:]
    return 0


cdef int32_t intern_node(int32_t parent, const unsigned char* key, Py_ssize_t size, str path, name) except -2:
    """The interned node of `key` under the interned `parent` (or of the root
    at `path` for `name`), made when new; -1 when the key's escapes are malformed."""
    global _interned_size
    cdef uint64_t h = node_hash(parent, key, size)
    cdef int32_t n
    cdef PyObject* root
    if size == _ROOT:
        root = PyDict_GetItemWithError(_interned_roots, (path, name))     # (an unhashable name raises here)
        if root != NULL:
            return <int32_t><Py_ssize_t><object>root
    else:
        n = nodes_find(&_interned, parent, key, size, h)
        if n >= 0:
            return n
    cdef bint value_key = False
    if size >= 0:
        name = token_text(key, size, memchr(key, b"\\", size) != NULL)
        if name is None:
            return -1
        value_key = _is_value_key(name)
        path = join_path(<str>PyList_GET_ITEM(_interned_paths, parent), (<str>name)[:_MAX_NAME])
        copy = PyBytes_FromStringAndSize(<const char*>key, size)      # the document goes, the copy stays
        _interned_keys.append(copy)
        key = <const unsigned char*>PyBytes_AS_STRING(copy)
        _interned_size += size
    elif size != _ROOT:
        name = <object>PyList_GET_ITEM(_interned_names, parent)
        path = <str>PyList_GET_ITEM(_interned_paths, parent)
        path = path + "[]" if size == _ELEMENT else join_path(path, "{key}")
    cdef Py_ssize_t length = len(path)          # (before the node is made: name_info may raise)
    cdef bint plain
    if size == _ELEMENT or size == _MAPPED:
        plain = _interned.nodes[parent].plain
    else:
        plain = not name or name_info(name) == ((), 0)
    n = <int32_t>_interned.n
    cdef Node* nd = nodes_add(&_interned, parent, key, size, h)
    nd.value_key, nd.typed, nd.plain = value_key, length > 0, plain
    _interned_size += length
    if size == _ROOT:
        _interned_roots[(path, name)] = n
    _interned_paths.append(path)
    _interned_names.append(name)
    return n


cdef struct TypedPath:          # (an interned node, its types): a collector's signature
    uint64_t node
    uint64_t types


cdef int by_node(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const TypedPath*>a).node, y = (<const TypedPath*>b).node
    return (x > y) - (x < y)


cdef struct Member:             # a member of an object being read
    const unsigned char* key
    Py_ssize_t size
    Py_ssize_t value            # where its value starts
    Py_ssize_t quote            # a string value's closing quote (found while listing), else -1
    bint escaped                # that string holds escapes
    int32_t node


cdef class ShapeCollector:
    """What one body's walk found: the types seen at each path, sensitive
    findings and the limits hit."""
    cdef public dict types          # path -> set of types
    cdef public dict found          # (class, path) -> count
    cdef public set limits
    cdef public int max_depth, max_paths, max_items
    cdef public dict examples       # path -> redacted example; None unless examples are kept
    cdef public bint rpc            # a root member is named query, jsonrpc or extensions
    cdef public dict rpc_strings    # then: the root object's whole string members, for a body cut short
    # when one json_bytes made all of `types`: its exact key (the interned paths
    # and their types), by which Shape memoises what it makes of them; else None
    cdef public bytes signature
    # the JSON document json_bytes reads (held by its caller) and its key-path tree
    cdef const unsigned char* buf
    cdef Py_ssize_t size, root      # its length; where its root value starts
    cdef bint broken                # it was cut short or broke off
    cdef Nodes tree
    cdef Py_ssize_t max_nodes
    cdef Member* members            # the members of the objects being read, innermost last
    cdef Py_ssize_t n_members, max_members

    def __cinit__(self, int max_depth, int max_paths, int max_items):
        self.max_nodes = 4 * max_paths + 8
        nodes_init(&self.tree, 32)      # most bodies have a few dozen key paths: grown as needed
        self.max_members = 64
        self.members = <Member*>malloc(self.max_members * sizeof(Member))
        if self.members == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.tree.nodes)
        free(self.tree.buckets)
        free(self.members)

    def __init__(self, int max_depth, int max_paths, int max_items):
        self.types = {}
        self.found = {}
        self.limits = set()
        self.examples = None
        self.max_depth, self.max_paths, self.max_items = max_depth, max_paths, max_items

    cpdef add(self, str path, str typ):
        self.signature = None
        self.put(path, typ)

    cdef int put(self, str path, str typ) except -1:
        cdef PyObject* seen = PyDict_GetItem(self.types, path)
        if seen != NULL:
            (<set>seen).add(typ)
        elif len(self.types) < self.max_paths:
            self.types[path] = {typ}
        else:
            self.limits.add("paths")
        return 0

    cdef inline void count(self, tuple classes, str path) except *:
        cdef PyObject* n
        for cls in classes:
            key = (cls, path)
            n = PyDict_GetItem(self.found, key)
            self.found[key] = (<object>n) + 1 if n != NULL else 1

    cpdef classify(self, str path, str text, name):
        self.count(<tuple>leaf_info(leaf_table(name), text, name)[1], path)

    cpdef string(self, str path, str text, name):
        cdef tuple info = leaf_info(leaf_table(name), text, name)
        self.add(path, <str>_TYPE_NAMES[<int>info[0]])
        self.found_in(info, path, text, True)

    cdef inline void found_in(self, tuple info, str path, str text, bint example) except *:
        if info[1]:
            self.count(<tuple>info[1], path)
        if example and self.wants_example(path):
            self.examples[path] = _redact(text, info[1])

    cdef inline bint wants_example(self, str path) except -1:
        return self.examples is not None and path not in self.examples and len(self.examples) < self.max_paths

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
    # A container's members are first listed (keys and where their values
    # start) because whether its keys are names or data depends on all of
    # them. A cut or a syntax error ends the walk and the shape is that of what
    # was read: a string cut short counts as a string of unknown format, a
    # number or literal cut short is dropped.

    cpdef bint json_bytes(self, bytes data, str path, name, int depth, bint members=False):
        """Walks the JSON document in UTF-8 `data` at key path `path`;
        members: only the members of a root object are read (its own type is
        not recorded). False when the document was cut short or broke off."""
        cdef Py_ssize_t i, k, bit, typed = 0
        cdef uint64_t types
        cdef bint fresh = not self.types
        self.buf = data
        self.size = len(data)
        self.broken = False
        self.n_members = 0
        nodes_clear(&self.tree)
        interned_bound()
        self.node(-1, NULL, _ROOT, path, name)
        i = self.root = self.space(0)
        if members and i < self.size and self.buf[i] == b"{":
            self.walk_object(i + 1, 0, depth)
        else:
            self.walk(i, 0, depth)
        for k in range(self.tree.n):                # types, once a path
            types = self.tree.nodes[k].types
            typed += types != 0
            bit = 0
            while types:
                if types & 1:
                    self.put(self.path(k), <str>PyList_GET_ITEM(_TYPE_NAMES, bit))
                types >>= 1
                bit += 1
        # no path was dropped (they are at most as many as the nodes typed): the key tells `types`
        self.signature = self.typed_paths(typed) if fresh and typed <= self.max_paths else None
        self.buf = NULL
        return not self.broken

    cdef bytes typed_paths(self, Py_ssize_t typed):
        """The interning's generation, then the (interned node, types) of the
        nodes typed, sorted."""
        cdef bytes key = PyBytes_FromStringAndSize(NULL, (typed + 1) * sizeof(TypedPath))
        cdef TypedPath* pairs = <TypedPath*>PyBytes_AS_STRING(key)
        cdef Py_ssize_t k, n = 1
        pairs[0].node, pairs[0].types = _interned_generation, 0
        for k in range(self.tree.n):
            if self.tree.nodes[k].types:
                pairs[n].node, pairs[n].types = self.tree.nodes[k].interned, self.tree.nodes[k].types
                n += 1
        qsort(pairs + 1, typed, sizeof(TypedPath), by_node)
        return key

    cdef int32_t node(self, int32_t parent, const unsigned char* key, Py_ssize_t size, str path=None,
                      name=None) except -2:
        """The node of `key` under `parent`, made when new; -1 when there are
        too many (the limit is flagged) or its escapes are malformed."""
        cdef uint64_t h = node_hash(parent, key, size)
        cdef int32_t n = nodes_find(&self.tree, parent, key, size, h), interned
        if n >= 0:
            return n
        if self.tree.n >= self.tree.room and self.tree.n >= self.max_nodes:
            self.limits.add("paths")
            return -1
        interned = intern_node(self.tree.nodes[parent].interned if parent >= 0 else -1, key, size, path, name)
        if interned < 0:
            return -1
        n = <int32_t>self.tree.n
        cdef Node* nd = nodes_add(&self.tree, parent, key, size, h)
        cdef Node* known = &_interned.nodes[interned]
        nd.interned, nd.value_key, nd.typed, nd.plain = interned, known.value_key, known.typed, known.plain
        return n

    cdef inline str path(self, int32_t node):
        return <str>PyList_GET_ITEM(_interned_paths, self.tree.nodes[node].interned)

    cdef inline object name(self, int32_t node):
        return <object>PyList_GET_ITEM(_interned_names, self.tree.nodes[node].interned)

    cdef inline void type(self, int32_t node, int index) noexcept:
        self.tree.nodes[node].types |= (<uint64_t>1) << index

    cdef int leaf(self, int32_t node, str text, bint string) except -1:
        """Classes of a leaf value (or a map's key) at `node`; a string's type
        and, when kept, its example too."""
        name = self.name(node)
        return self.met(node, leaf_info(leaf_table(name), text, name), text, string)

    cdef int met(self, int32_t node, tuple info, str text, bint string) except -1:
        """What a leaf with `info` adds at `node`: a string's type, its classes, its example."""
        if string:
            self.type(node, <int>info[0])
        if info[1] or (string and self.examples is not None):
            self.found_in(info, self.path(node), text, string)
        return 0

    cdef int token_leaf(self, int32_t node, const unsigned char* s, Py_ssize_t n, bint string) except -1:
        """leaf() of the unescaped token s[:n], known by its bytes when met before."""
        if n > _CACHED_LEAF_MAX:
            return self.leaf(node, token_text(s, n, False), string)
        cdef int32_t interned = self.tree.nodes[node].interned
        cdef uint64_t h = node_hash(interned, s, n)
        cdef int32_t known = nodes_find(&_known_leaves, interned, s, n, h)
        if known >= 0:
            return self.met(node, <tuple>PyList_GET_ITEM(_known_infos, known),      # its str only for an example
                            token_text(s, n, False) if string and self.wants_example(self.path(node)) else None,
                            string)
        text = token_text(s, n, False)
        cdef tuple info = leaf_made(text, self.name(node))     # (remembered here, not in leaf_info's tables too)
        if _known_leaves.n >= _LEAF_CACHE_MAX:
            forget_leaves()
        cdef unsigned char* slot = _known_bytes + _known_leaves.n * _CACHED_LEAF_MAX
        memcpy(slot, s, n)
        nodes_add(&_known_leaves, interned, slot, n, h)
        _known_infos.append(info)
        return self.met(node, info, text, string)

    cdef inline Py_ssize_t space(self, Py_ssize_t i) noexcept:
        cdef unsigned char c
        while i < self.size:
            c = self.buf[i]
            if c != 32 and c != 10 and c != 13 and c != 9:
                break
            i += 1
        return i

    cdef inline Py_ssize_t fail(self, Py_ssize_t why) noexcept:
        self.broken = True
        return why

    cdef Py_ssize_t string_end(self, Py_ssize_t i, bint* escaped) noexcept:
        """Index of the quote closing the string whose text starts at i; _CUT."""
        cdef const unsigned char* q
        cdef Py_ssize_t j, k, start = i, short = min(i + 64, self.size - 8)
        cdef uint64_t special
        escaped[0] = False
        while i <= short:                           # most strings are short: 8 bytes at a time
            special = quote_or_backslash(load_le64(self.buf + i))
            if not special:
                i += 8
                continue
            i += __builtin_ctzll(special) >> 3
            if self.buf[i] == b'"':
                return i
            escaped[0] = True
            i += 2
        while True:                                 # longer ones: memchr
            if i >= self.size:
                return _CUT
            q = <const unsigned char*>memchr(self.buf + i, b'"', self.size - i)
            if q == NULL:
                return _CUT
            j = q - self.buf
            k = j
            while k > start and self.buf[k - 1] == b"\\":
                k -= 1
            if not (j - k) & 1:                     # not itself escaped
                escaped[0] = escaped[0] or memchr(self.buf + start, b"\\", j - start) != NULL
                return j
            i = j + 1

    cdef Py_ssize_t skip(self, Py_ssize_t i) noexcept:
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
                if not scalar_byte(c):
                    return _BAD
                while i < self.size and scalar_byte(self.buf[i]):
                    i += 1
                if i >= self.size:
                    return _CUT
            if nesting == 0:
                return i

    cdef Py_ssize_t literal(self, Py_ssize_t i, const char* word, Py_ssize_t n) noexcept:
        """End of `word` at i; _CUT when the data ends inside it."""
        cdef Py_ssize_t have = min(n, self.size - i)
        if memcmp(self.buf + i, word, have) != 0:
            return self.fail(_BAD)
        return i + n if have == n else self.fail(_CUT)

    cdef inline Py_ssize_t digits(self, Py_ssize_t j) noexcept:
        """End of the run of one or more digits at j: _CUT, _BAD."""
        if j >= self.size:
            return _CUT
        if not (b"0" <= self.buf[j] <= b"9"):
            return _BAD
        while j < self.size and b"0" <= self.buf[j] <= b"9":
            j += 1
        return j

    cdef Py_ssize_t number(self, Py_ssize_t i, int32_t node) except? -3:
        cdef Py_ssize_t j = i
        cdef bint real = False
        if self.buf[j] == b"-":
            j += 1
            if j < self.size and self.buf[j] == b"I":
                j = self.literal(j, b"Infinity", 8)
                if j >= 0:
                    self.type(node, _NUMBER)
                    self.leaf(node, "-inf", False)
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
        self.type(node, _NUMBER if real else _INTEGER)
        # under a plain name a number is a card (13-19 digits) or, with a
        # dot and 10+ characters, perhaps a phone: others need no classing
        if not (self.tree.nodes[node].plain and self.buf[i] != b"-" and j - i < (10 if real else 13)):
            self.token_leaf(node, self.buf + i, j - i, False)
        return j

    cdef Py_ssize_t json_string(self, Py_ssize_t i, Py_ssize_t quote, bint escaped, int32_t node) except? -3:
        """Reads the string whose opening quote is at i and closing one at
        `quote` (_CUT: none) into `node`; its end."""
        if quote < 0:
            self.leaf(node, "", True)           # cut short: a string of unknown format
            return self.fail(_CUT)
        if not escaped:
            self.token_leaf(node, self.buf + i + 1, quote - i - 1, True)
            return quote + 1
        text = token_text(self.buf + i + 1, quote - i - 1, True)
        if text is None:
            return self.fail(_BAD)
        self.leaf(node, <str>text, True)
        return quote + 1

    cdef Py_ssize_t walk(self, Py_ssize_t i, int32_t node, int depth) except? -3:
        """Reads the value at i into `node`; its end, or _CUT / _BAD."""
        cdef unsigned char c, close
        cdef Py_ssize_t j
        cdef bint escaped
        cdef int32_t element
        i = self.space(i)
        if i >= self.size:
            return self.fail(_CUT)
        c = self.buf[i]
        if c == b'"':
            j = self.string_end(i + 1, &escaped)
            return self.json_string(i, j, escaped, node)
        if c == b"{" or c == b"[":
            if self.tree.nodes[node].typed:
                self.type(node, _OBJECT if c == b"{" else _ARRAY)
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
                return self.walk_object(j, node, depth + 1)
            element = self.node(node, NULL, _ELEMENT)
            return self.walk_array(j, element, depth + 1) if element >= 0 else self.skip(i)
        if c == b"t" or c == b"f":
            j = self.literal(i, b"true", 4) if c == b"t" else self.literal(i, b"false", 5)
            if j >= 0:
                self.type(node, _BOOLEAN)
            return j
        if c == b"n":
            j = self.literal(i, b"null", 4)
            if j >= 0:
                self.type(node, _NULL)
            return j
        if c == b"N" or c == b"I":
            j = self.literal(i, b"NaN", 3) if c == b"N" else self.literal(i, b"Infinity", 8)
            if j >= 0:
                self.type(node, _NUMBER)
                self.leaf(node, "nan" if c == b"N" else "inf", False)
            return j
        if c == b"-" or b"0" <= c <= b"9":
            return self.number(i, node)
        return self.fail(_BAD)

    cdef Py_ssize_t walk_array(self, Py_ssize_t i, int32_t element, int depth) except? -3:
        cdef Py_ssize_t count = 0
        while True:
            if count < self.max_items:
                i = self.walk(i, element, depth)
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

    cdef Py_ssize_t list_members(self, Py_ssize_t i) except? -3:
        """Lists the members of the object whose first member is at i (at
        most one more than max_paths); the object's end, or _CUT / _BAD."""
        cdef Py_ssize_t j, start, listed = 0
        cdef bint escaped
        cdef Member* m
        while True:
            i = self.space(i)
            if i >= self.size:
                return _CUT
            if self.buf[i] == b"}":
                return i + 1
            if self.buf[i] != b'"':
                return _BAD
            start = i + 1
            j = self.string_end(start, &escaped)
            if j < 0:
                return _CUT                         # a key cut short
            i = self.space(j + 1)
            if i >= self.size:
                return _CUT
            if self.buf[i] != b":":
                return _BAD
            i = self.space(i + 1)
            if i >= self.size:
                return _CUT                         # a key without its value
            if listed <= self.max_paths:            # one more than is read flags the limit
                if self.n_members == self.max_members:
                    self.max_members *= 2
                    m = <Member*>realloc(self.members, self.max_members * sizeof(Member))
                    if m == NULL:
                        raise MemoryError()
                    self.members = m
                m = &self.members[self.n_members]
                m.key, m.size, m.value, m.quote = self.buf + start, j - start, i, -1
                self.n_members += 1
                listed += 1
                if self.buf[i] == b'"':             # strings are most values: found once
                    m.quote = self.string_end(i + 1, &m.escaped)
                    if m.quote < 0:
                        return _CUT
                    i = m.quote + 1
                else:
                    i = self.skip(i)
            else:
                i = self.skip(i)
            if i < 0:
                return i
            i = self.space(i)
            if i >= self.size:
                return _CUT
            if self.buf[i] == b",":
                i += 1
            elif self.buf[i] == b"}":
                return i + 1
            else:
                return _BAD

    cdef Py_ssize_t walk_object(self, Py_ssize_t i, int32_t parent, int depth) except? -3:
        """Reads the members of the object whose first member is at i, each
        under its key, or under "{key}" when keys are data (ids, emails,
        dates: a map, when half of them are); its end, or _CUT / _BAD."""
        cdef Py_ssize_t base = self.n_members, n, k, values = 0, read = 0
        cdef Py_ssize_t end = self.list_members(i)
        cdef int32_t nd, mapped
        cdef bint every
        if end < 0:
            self.broken = True
        n = self.n_members - base
        if n > self.max_paths:                      # more keys than paths kept: the rest is not read
            n = self.max_paths
            self.limits.add("paths")
        for k in range(base, base + n):
            nd = self.members[k].node = self.node(parent, self.members[k].key, self.members[k].size)
            if nd >= 0 and self.tree.nodes[nd].value_key:
                values += 1
        if parent == 0 or (self.tree.nodes[parent].size == _ELEMENT and self.tree.nodes[parent].parent == 0):
            self.rpc = self.rpc or self.rpc_members(base, n)
            if self.rpc and parent == 0:
                self.rpc_strings = self.strings(base, n)
        if values == 0:
            for k in range(base, base + n):
                if self.members[k].node >= 0:
                    self.member(k, self.members[k].node, depth)
        else:
            every = 2 * values >= n
            if not every:
                for k in range(base, base + n):
                    nd = self.members[k].node
                    if nd >= 0 and not self.tree.nodes[nd].value_key:
                        self.member(k, nd, depth)
            mapped = self.node(parent, NULL, _MAPPED)
            for k in range(base, base + n):
                nd = self.members[k].node
                if mapped < 0 or nd < 0 or not (every or self.tree.nodes[nd].value_key):
                    continue
                if read == self.max_items:
                    self.limits.add("items")
                    break
                read += 1
                self.leaf(mapped, <str>self.name(nd), False)     # a key that is data
                self.member(k, mapped, depth)
        self.n_members = base
        return end

    cdef inline Py_ssize_t member(self, Py_ssize_t k, int32_t node, int depth) except? -3:
        """Reads the value of the k-th listed member into `node`."""
        cdef Member* m = &self.members[k]
        if m.quote >= 0:
            return self.json_string(m.value, m.quote, m.escaped, node)
        return self.walk(m.value, node, depth)

    cdef dict strings(self, Py_ssize_t base, Py_ssize_t n):
        """{key: text} of the listed members whose value is a whole string."""
        cdef dict found = {}
        cdef Member* m
        for k in range(base, base + n):
            m = &self.members[k]
            if m.quote >= 0 and m.node >= 0:
                found[self.name(m.node)] = token_text(self.buf + m.value + 1, m.quote - m.value - 1, m.escaped)
        return found

    cdef bint rpc_members(self, Py_ssize_t base, Py_ssize_t n) noexcept:
        """A root member named as GraphQL and JSON-RPC requests name theirs."""
        cdef Member* m
        for k in range(base, base + n):
            m = &self.members[k]
            if ((m.size == 5 and memcmp(m.key, b"query", 5) == 0) or (m.size == 7 and memcmp(m.key, b"jsonrpc", 7) == 0)
                    or (m.size == 10 and memcmp(m.key, b"extensions", 10) == 0)):
                return True
        return False
