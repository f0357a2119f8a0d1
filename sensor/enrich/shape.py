"""Payload shape of a captured body: key paths and their types, never a value.

`body_shape(data, ctype, truncated=False)` reads a body (a bounded prefix,
content coding already removed) by its Content-Type and returns a Shape, or
None when the media type is not one read here or the body is empty. It never
raises: garbage gives a Shape of that kind with no fields.

`Shape.to_record()`, the value of `sensor.shape.request` / `.response`:

| key | type | meaning |
|---|---|---|
| `kind` | str | `json`, `form`, `multipart`, `xml`, `graphql`, `protobuf`, `text` |
| `fields` | map | key path -> type, sorted by path; several types seen at one path are joined sorted with `\\|` |
| `fingerprint` | str | 16 hex chars, blake2b-64 of the kind and the sorted (path, type) pairs: the same for the same shape whatever the key order, values and array lengths |
| `truncated` | bool | only when true: the body was a prefix, the shape is that of what parsed |
| `limits` | list[str] | only when a limit was hit: `depth` (nesting past max_depth not read), `paths` (distinct key paths past max_paths dropped), `items` (array elements past max_items not read), `dtd` (an XML body declared a DTD: not read, no XXE, no entity expansion) |
| `compressed` | bool | only when true: a gRPC message had its compressed flag set (not read) |
| `examples` | map | only with the `--keep-examples` opt-in: key path -> redacted example of a string field (examples.py) |

Key paths:
- JSON: `user.address.city`; array elements `items[]`, `items[].id` (an
  array's shape is the union of its elements'); a top-level array `[]`,
  `[].id`. NDJSON lines are the elements of a top-level array. A key
  repeated in one object counts with each of its values. A body cut short
  (or broken off) has the shape of what was read: a string cut short is a
  `string`, a number or literal cut short is dropped.
- Objects whose keys are values (ids, uuids, emails, dates, numbers: a key
  with a value format, a long digit run, or not shaped like a name) are maps:
  such keys become `{key}` (all of an object's keys when half of them are).
- Form and multipart: field names, `user[name]` read as `user.name`, `tags[]`
  and `items[0]` as arrays.
- XML: element paths from the root `Envelope.Body.GetUser.id`, attributes
  `order.@currency`.
- GraphQL: the top-level fields of the operation (type: the operation type,
  no arguments), and the request's variables under `$`: `$.input.email`.
- Protobuf (schemaless wire format): field numbers, `1`, `2.1`, and `3[]`
  for a number repeated in one message; every message of a gRPC stream
  adds to one shape (`application/grpc+json` messages are read as JSON).
- text/plain: the body itself at the path `""`.
Key names are cut at 64 characters.

Types: `object`, `array`, `string`, `integer`, `number`, `boolean`, `null`;
strings refined by their format (`string:email`, `string:uuid`,
`string:date-time`, ... from classify.value_format); XML elements with
children `object`, empty ones `empty`; multipart files `file:<media type>`;
protobuf `varint`, `fixed64`, `fixed32`, `string`, `bytes`, `message` (a
length-delimited field that parses whole as a message and is not text).

`Shape.findings`: (class, key path, count) of the sensitive classes of leaf
values (classify.value_classes), map keys included; a GraphQL string
argument is found at `field.subfield(argument)`. `Shape.operation`: the
identity of an RPC tunnelled in a request body, names only:
`{"kind": "graphql", "type": "query"|"mutation"|"subscription"|None, "name": str|None}`
(type None: an Apollo persisted query sent without its document; a batch,
a JSON array of requests: `"type"` and `"name"` are lists),
`{"kind": "jsonrpc", "method": str}` (a batch: `"method": [str, ...]`),
`{"kind": "soap", "operation": <first element inside Body>}`.
"""
import json
from json.decoder import scanstring
import re
from _blake2 import blake2b      # hashlib pulls in OpenSSL at start-up
from urllib.parse import parse_qsl
from xml.parsers import expat

from .._core import ShapeCollector, join_path, remember, shape_setup
from .classify import value_classes, value_format
from .examples import redact

MAX_DEPTH = 16
MAX_PATHS = 512
MAX_ITEMS = 256
_MAX_NAME = 64          # key names are cut here
_MAX_OPERATION = 128    # and GraphQL operation names here
_MAX_METHODS = 64       # methods listed for a JSON-RPC batch
_MAX_TEXT = 4096        # a longer text/plain body is not classified

# a key shaped like a name: letters first (JSON-LD "@id" and "$set" too)
_NAME = re.compile(r"(?:[^\W\d]|[$@])[\w.\-:@$]*\Z")
_DIGIT_RUN = re.compile(r"\d{5}")
_RPC_NAME = re.compile(r"[A-Za-z_$@][\w.\-:/@$]{0,127}\Z")     # a method or operation name
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*\Z")
_MEDIA = re.compile(r"[a-z0-9][\w!#$&^.+-]{0,63}/[a-z0-9][\w!#$&^.+-]{0,63}\Z")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# the caches hold names, and keys that are data: bounded in entries and in
# the size of what they keep
_VALUE_KEY_CACHE_MAX = 16384
# a shape with fewer fields says too little to tell endpoints apart (Shape.paths);
# its first paths (sorted) are enough to, and bound what the route tree keeps
_SIBLING_FIELDS = 3
_SIBLING_PATHS = 32
_CACHED_KEY_MAX = 256
_value_key_cache = {}


def _is_value_key(key):
    """True when an object key is data (an id, an email, a date...) rather
    than a name; cached since the same keys come back in every body."""
    verdict = _value_key_cache.get(key)
    if verdict is None:
        if not _NAME.match(key) or _DIGIT_RUN.search(key):
            verdict = True
        else:
            fmt = value_format(key)
            # camelCase names of 16+ letters can pass for base64: only with a digit is it data
            verdict = fmt is not None and (fmt != "base64" or any(c.isdigit() for c in key))
        if len(key) <= _CACHED_KEY_MAX:
            remember(_value_key_cache, key, verdict, _VALUE_KEY_CACHE_MAX)
    return verdict


def _label(key):
    """A key as a path component: cut to length, "{key}" when it is data."""
    return "{key}" if _is_value_key(key) else key[:_MAX_NAME]


# the walk itself is Cython (ext/shape.pxi); what a value or a key is, is told here
shape_setup(_is_value_key, _MAX_NAME, redact, scanstring)


def _fingerprint(kind, fields):
    return blake2b(kind.encode() + "".join(["\0%s\1%s" % field for field in fields]).encode(),
                   digest_size=8).hexdigest()


# The bodies of an endpoint mostly have one shape: its fields, fingerprint and
# paths are made once, by the kind and the collector's signature (an exact key
# of its types); bounded in about the bytes kept: a field's entries, its path.
_MADE_MAX = 1 << 22
_made = {}
_made_size = 0


def _make(kind, collector):
    """(fields, fingerprint, paths) of the types `collector` found."""
    global _made_size
    key = collector.signature
    if key is not None:
        made = _made.get((kind, key))
        if made is not None:
            return made
    pairs = sorted([(path, "|".join(sorted(types)) if len(types) > 1 else next(iter(types)))
                    for path, types in collector.types.items()])
    fields = dict(pairs)
    made = (fields, _fingerprint(kind, pairs),
            frozenset(list(fields)[:_SIBLING_PATHS]) if len(fields) >= _SIBLING_FIELDS else None)
    if key is not None:
        if _made_size >= _MADE_MAX:
            _made.clear()
            _made_size = 0
        _made[(kind, key)] = made
        _made_size += 256 * (1 + len(fields)) + sum(map(len, fields))
    return made


class Shape:
    """The shape of one body: kind, fields, fingerprint, findings,
    operation (see the module docstring)."""
    __slots__ = ("kind", "fields", "findings", "operation", "truncated", "limits", "compressed",
                 "fingerprint", "examples", "record", "paths")

    def __init__(self, kind, collector, truncated=False, operation=None, compressed=False):
        self.kind = kind
        self.examples = collector.examples
        self.fields, self.fingerprint, self.paths = _make(kind, collector)
        self.findings = [(cls, path, count) for (cls, path), count in sorted(collector.found.items())]
        self.limits = sorted(collector.limits)
        self.truncated = truncated
        self.operation = operation
        self.compressed = compressed
        self.record = None

    def to_record(self):
        """The record's value (made once: a body seen again shares it)."""
        if self.record is None:
            self.record = self.make_record()
        return self.record

    def make_record(self):
        record = {"kind": self.kind, "fields": self.fields, "fingerprint": self.fingerprint}
        if self.truncated:
            record["truncated"] = True
        if self.limits:
            record["limits"] = self.limits
        if self.compressed:
            record["compressed"] = True
        if self.examples:
            record["examples"] = dict(sorted(self.examples.items()))
        return record


# -- JSON

def _utf8(data):
    """A JSON body as UTF-8: RFC 8259 asks for it, older peers send UTF-16
    or UTF-32 (told by their zero bytes) and byte order marks."""
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:]
    if b"\0" in data[:4]:
        return data.decode(json.detect_encoding(data), "replace").encode()
    return data


# -- GraphQL (a body of its own, or the "query" of a JSON request)

def _graphql_tokens(text):
    """The significant tokens of a GraphQL document, None when `text` is not
    GraphQL source."""
    tokens = []
    pos, end = 0, len(text)
    while pos < end:
        m = _GRAPHQL_TOKEN.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        token = m.group()
        if not (token[0].isspace() or token[0] in _GRAPHQL_IGNORED):
            tokens.append(token)
    return tokens


_GRAPHQL_TOKEN = re.compile(r'[\s,\ufeff]+|#[^\n\r]*|"""(?:\\"""|[^"]|"(?!""))*"""|"(?:[^"\\\n\r]|\\.)*"'
                            r'|\.\.\.|[!$&():=@\[\]{|}]|-?\d[\w.+-]*|[_A-Za-z][_0-9A-Za-z]*')
_GRAPHQL_IGNORED = frozenset(",#\ufeff")
_GRAPHQL_OPERATIONS = ("query", "mutation", "subscription")
_GRAPHQL_OPEN = {"(": ")", "[": "]", "{": "}"}
_GRAPHQL_NESTING = 64   # selection sets in selection sets: past this, the document is not read


def _skip_group(tokens, i):
    """Index after the bracketed group opening at tokens[i]."""
    depth = 0
    while True:
        token = tokens[i]
        if token in _GRAPHQL_OPEN:
            depth += 1
        elif token in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def _skip_directives(tokens, i):
    while tokens[i] == "@":
        i += 2
        if tokens[i] == "(":
            i = _skip_group(tokens, i)
    return i


def _string_arguments(tokens, start, end, field, literals):
    """String literals among the arguments tokens[start:end] of `field`
    (objects included) as (field(argument), argument, token)."""
    for i in range(start + 2, end):
        if tokens[i][0] == '"' and tokens[i - 1] == ":" and _GRAPHQL_NAME.match(tokens[i - 2]):
            literals.append(("%s(%s)" % (field, tokens[i - 2][:_MAX_NAME]), tokens[i - 2], tokens[i]))


def _graphql_string(token):
    if token.startswith('"""'):
        return token[3:-3]
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1]


def _selections(tokens, i, literals, path="", nesting=0):
    """(top-level items, index after) of the selection set at tokens[i]:
    field names and ("...", fragment name) spreads; inline fragments
    contribute their fields. The string arguments of every field below go
    to `literals`."""
    if tokens[i] != "{" or nesting > _GRAPHQL_NESTING:
        raise ValueError
    i += 1
    items = []
    while tokens[i] != "}":
        token = tokens[i]
        if token == "...":
            if tokens[i + 1] == "on":
                i += 3
            elif tokens[i + 1] in ("{", "@"):
                i += 1
            else:
                items.append(("...", tokens[i + 1]))
                i = _skip_directives(tokens, i + 2)
                continue
            i = _skip_directives(tokens, i)
            inline, i = _selections(tokens, i, literals, path, nesting + 1)
            items += inline
            continue
        if not _GRAPHQL_NAME.match(token):
            raise ValueError
        if tokens[i + 1] == ":":            # alias: the field is the name after it
            i += 2
            token = tokens[i]
            if not _GRAPHQL_NAME.match(token):
                raise ValueError
        items.append(token)
        field = join_path(path, token[:_MAX_NAME])
        i += 1
        if tokens[i] == "(":
            end = _skip_group(tokens, i)
            _string_arguments(tokens, i, end, field, literals)
            i = end
        i = _skip_directives(tokens, i)
        if tokens[i] == "{":
            i = _selections(tokens, i, literals, field, nesting + 1)[1]
    return items, i + 1


def graphql_document(text):
    """(operations, fragments, literals) of an executable GraphQL document
    (a request body, or the query parameter of a GraphQL GET):
    operations [(type, name or None, top-level items)], fragments
    {name: top-level items}, literals [(field(argument), argument, string
    token)]; None when `text` is not one."""
    tokens = _graphql_tokens(text)
    if not tokens:
        return None
    operations, fragments, literals = [], {}, []
    i = 0
    try:
        while i < len(tokens):
            token = tokens[i]
            if token == "{":
                items, i = _selections(tokens, i, literals)
                operations.append(("query", None, items))
            elif token in _GRAPHQL_OPERATIONS:
                i += 1
                name = None
                if _GRAPHQL_NAME.match(tokens[i]):
                    name, i = tokens[i], i + 1
                if tokens[i] == "(":
                    i = _skip_group(tokens, i)
                items, i = _selections(tokens, _skip_directives(tokens, i), literals)
                operations.append((token, name, items))
            elif token == "fragment" and tokens[i + 2] == "on":
                name = tokens[i + 1]
                items, i = _selections(tokens, _skip_directives(tokens, i + 4), literals)
                fragments[name] = items
            else:
                return None
    except (IndexError, ValueError):
        return None
    return (operations, fragments, literals) if operations else None


def _top_fields(items, fragments):
    """Field names of a selection set with its fragment spreads expanded,
    each fragment once (spreads of spreads could otherwise multiply)."""
    names, expanded = [], set()
    pending = list(items)
    while pending:
        item = pending.pop()
        if type(item) is str:
            names.append(item)
        elif item[1] in fragments and item[1] not in expanded:
            expanded.add(item[1])
            pending += fragments[item[1]]
    return names


def _graphql(document, operation_name, col):
    """The operation dict of a parsed document; its top-level fields and the
    classes of its string arguments go to `col`."""
    operations, fragments, literals = document
    chosen = operations[0]
    if operation_name is not None:
        chosen = next((op for op in operations if op[1] == operation_name), chosen)
    kind, name, items = chosen
    for field in _top_fields(items, fragments):
        col.add(field[:_MAX_NAME], kind)
    for path, argument, token in col.items(literals):
        col.classify(path, _graphql_string(token), argument)
    return {"kind": "graphql", "type": kind, "name": name and name[:_MAX_OPERATION]}


def _graphql_parse(doc):
    """(parsed document or None for a persisted query, operationName) of a
    GraphQL-over-JSON request ({"query", "variables", "operationName"});
    None when `doc` is not one."""
    if type(doc) is not dict:
        return None
    name = doc.get("operationName")
    if type(name) is not str or not _GRAPHQL_NAME.match(name):
        name = None
    query = doc.get("query")
    if type(query) is str:
        document = graphql_document(query)
        return None if document is None else (document, name)
    if name and type(doc.get("extensions")) is dict and "persistedQuery" in doc["extensions"]:
        return None, name
    return None


def _graphql_request(doc, parsed, col):
    """The operation of a parsed GraphQL request; its variables are shaped under "$"."""
    document, name = parsed
    if document is None:
        operation = {"kind": "graphql", "type": None, "name": name[:_MAX_OPERATION]}
    else:
        operation = _graphql(document, name, col)
    variables = doc.get("variables")
    if type(variables) is dict and variables:
        col.json_bytes(json.dumps(variables).encode(), "$", None, 1, members=True)
    return operation


def _graphql_requests(doc, col):
    """The operation of a GraphQL request, or of a batch of them (a JSON
    array: "type" and "name" are then lists); None when `doc` is neither."""
    batch = type(doc) is list
    requests = doc[:_MAX_METHODS] if batch else [doc]
    parsed = [_graphql_parse(request) for request in requests]
    if not parsed or None in parsed:
        return None
    operations = [_graphql_request(request, p, col) for request, p in zip(requests, parsed)]
    if not batch:
        return operations[0]
    return {"kind": "graphql", "type": [op["type"] for op in operations], "name": [op["name"] for op in operations]}


# -- JSON-RPC, and the JSON readers

def _rpc_name(name):
    return name if _RPC_NAME.match(name) and value_format(name) is None else "{value}"


def _jsonrpc_method(doc):
    if type(doc) is dict and doc.get("jsonrpc") == "2.0" and type(doc.get("method")) is str:
        return _rpc_name(doc["method"])
    return None


def _jsonrpc(doc):
    """The operation of a JSON-RPC 2.0 request or batch, else None."""
    if type(doc) is list:
        methods = [_jsonrpc_method(call) for call in doc[:_MAX_METHODS]]
        if methods and None not in methods:
            return {"kind": "jsonrpc", "method": methods}
        return None
    method = _jsonrpc_method(doc)
    return {"kind": "jsonrpc", "method": method} if method else None


def _read_json(data, params, col, truncated):
    data = _utf8(data)
    complete = col.json_bytes(data, "", None, 0)
    operation = None
    if col.rpc:     # GraphQL or JSON-RPC, perhaps: they are told apart on the whole document
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = col.rpc_strings       # cut short: its query, operationName, jsonrpc, method as far as whole
        graphql = ShapeCollector(col.max_depth, col.max_paths, col.max_items)
        graphql.examples = {} if col.examples is not None else None
        operation = _graphql_requests(doc, graphql)
        if operation is not None:
            return Shape("graphql", graphql, truncated, operation)
        operation = _jsonrpc(doc)
    return Shape("json", col, truncated or not complete, operation)


def _read_ndjson(data, params, col, truncated):
    complete = True
    for line in col.items([line for line in _utf8(data).splitlines() if line.strip()]):
        complete = col.json_bytes(line, "[]", None, 1)
    return Shape("json", col, truncated or not complete)


def _read_graphql(data, params, col, truncated):
    document = graphql_document(_text(data, params))
    if document is None:
        return Shape("graphql", col, truncated)
    return Shape("graphql", col, truncated, _graphql(document, None, col))


# -- forms

def _text(data, params):
    charset = params.get("charset", "utf-8")
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


_FORM_SEGMENT = re.compile(r"\[([^\]]*)\]")


def _form_path(name, col):
    """Key path of a form field name: "user[address][city]" is
    user.address.city, "tags[]" and "items[0]" are arrays."""
    head, _, rest = name.partition("[")
    segments = _FORM_SEGMENT.findall("[" + rest) if rest else ()
    if len(segments) >= col.max_depth:
        col.limits.add("depth")
        segments = segments[:col.max_depth - 1]
    path = _label(head)
    for segment in segments:
        path = path + "[]" if not segment or segment.isdigit() else join_path(path, _label(segment))
    return path


def _read_form(data, params, col, truncated):
    text = _text(data, params)
    if truncated and "&" in text:
        text = text.rpartition("&")[0]      # the last pair may be cut short
    for name, value in col.items(parse_qsl(text, keep_blank_values=True)):
        col.string(_form_path(name, col), value, name)
    return Shape("form", col, truncated)


def _media_type(ctype):
    """(lowercase media type, {parameter: value}) of a Content-Type value."""
    mtype, *rest = ctype.split(";")
    params = {}
    for param in rest:
        key, _, value = param.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return mtype.strip().lower(), params


def _part_headers(head):
    headers = {}
    for line in head.split(b"\r\n"):
        name, _, value = line.decode("utf-8", "replace").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_multipart(data, params, col, truncated):
    boundary = params.get("boundary")
    if not boundary:
        return Shape("multipart", col, truncated)
    parts = data.split(b"--" + boundary.encode("latin-1", "replace"))
    for part in col.items(parts[1:]):
        if part.startswith(b"--"):
            break                                       # the closing delimiter
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            continue                                    # headers cut short
        headers = _part_headers(head.strip(b"\r\n"))
        _, disposition = _media_type(headers.get("content-disposition", ""))
        name = disposition.get("name")
        if name is None:
            continue
        path = _form_path(name, col)
        media, part_params = _media_type(headers.get("content-type", "text/plain"))
        if body.endswith(b"\r\n"):
            body = body[:-2]                            # the CRLF belongs to the next delimiter
        if "filename" in disposition or "filename*" in disposition or not (
                media.startswith("text/") or _reader(media) is _read_json):
            col.add(path, "file:" + media if _MEDIA.match(media) else "file")
        elif media.startswith("text/"):
            col.string(path, _text(body, part_params).strip(), name)
        else:
            col.json_bytes(_utf8(body), path, name, 1)
    return Shape("multipart", col, truncated)


# -- XML

# expat's "namespace-uri local-name" of the SOAP 1.1 and 1.2 root elements
_SOAP_ENVELOPES = ("http://schemas.xmlsoap.org/soap/envelope/ Envelope",
                   "http://www.w3.org/2003/05/soap-envelope Envelope")


class _Refused(Exception):
    pass


def _refuse(*args):
    raise _Refused


def _xml_label(tag):
    return _label(tag.rpartition(" ")[2])   # expat gives "namespace-uri local-name"


def _read_xml(data, params, col, truncated):
    open_elements = []      # [path or None past the depth limit, tag, has children, text parts]
    soap = []               # the operation: first element inside a SOAP Envelope's Body

    def start(tag, attrs):
        depth = len(open_elements)
        if depth:
            open_elements[-1][2] = True
        parent = open_elements[-1][0] if depth else ""
        if depth == 2 and not soap and open_elements[0][1] in _SOAP_ENVELOPES \
                and open_elements[1][1] == open_elements[0][1][:-8] + "Body":
            soap.append(_rpc_name(tag.rpartition(" ")[2]))
        path = None
        if parent is not None and col.deeper(depth):
            path = join_path(parent, _xml_label(tag))
            for attr, value in attrs.items():
                col.string(path + ".@" + _xml_label(attr), value, attr.rpartition(" ")[2])
        open_elements.append([path, tag, False, []])

    def end(tag):
        path, _, has_children, text = open_elements.pop()
        if path is None:
            return
        if has_children:
            col.add(path, "object")
            return
        value = "".join(text).strip()
        if value:
            col.string(path, value, tag.rpartition(" ")[2])
        else:
            col.add(path, "empty")

    def characters(text):
        if open_elements:
            open_elements[-1][3].append(text)

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    # no DTD is read: that rules out external entities (XXE) and entity expansion bombs
    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = _refuse
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except _Refused:
        col.limits.add("dtd")
    except expat.ExpatError:
        truncated = truncated or bool(open_elements)
    for path, _, has_children, _ in open_elements:
        if path is not None and has_children:
            col.add(path, "object")             # an element cut short: its children were read
    operation = {"kind": "soap", "operation": soap[0]} if soap else None
    return Shape("xml", col, truncated, operation)


# -- protobuf and gRPC

def _varint(buf, i, end):
    """(value, index after) of the varint at buf[i], (None, i) when malformed."""
    value = shift = 0
    while i < end and shift < 70:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    return None, i


def _proto_fields(buf, start, end, partial=False):
    """[(number, wire type, varint or (start, end) of the bytes)] of the
    message in buf[start:end]; None unless all of it parses (partial: what
    parsed before the first malformed field)."""
    fields = []
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        if key is None or not 0 < key >> 3 < 1 << 29:
            break
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
            if value is None:
                break
        elif wire == 1 or wire == 5:
            value, i = None, i + (8 if wire == 1 else 4)
        elif wire == 2:
            size, i = _varint(buf, i, end)
            if size is None:
                break
            value, i = (i, i + size), i + size
        else:
            break                                   # groups (3, 4) are long deprecated; 6, 7 do not exist
        if i > end:
            break
        fields.append((key >> 3, wire, value))
    else:
        return fields
    return fields if partial else None


_FIXED_TYPES = {0: "varint", 1: "fixed64", 5: "fixed32"}


def _proto_message(buf, fields, path, depth, col):
    repeated = set()
    seen = set()
    for number, _, _ in fields:
        (repeated if number in seen else seen).add(number)
    for number, wire, value in fields:
        field_path = join_path(path, "%d[]" % number if number in repeated else str(number))
        if wire != 2:
            col.add(field_path, _FIXED_TYPES[wire])
            continue
        start, end = value
        text = None
        if end > start and not _CONTROL_BYTES.search(buf, start, end):    # messages mostly have some
            try:
                text = buf[start:end].decode("utf-8")
            except UnicodeDecodeError:
                pass
        if text:
            col.string(field_path, text, None)
            continue
        inner = _proto_fields(buf, start, end) if end > start and col.deeper(depth) else None
        if inner:
            col.add(field_path, "message")
            _proto_message(buf, inner, field_path, depth + 1, col)
        else:
            col.add(field_path, "bytes")


def _read_protobuf(data, params, col, truncated):
    fields = _proto_fields(data, 0, len(data), partial=truncated)
    if fields:
        _proto_message(data, fields, "", 0, col)
    return Shape("protobuf", col, truncated)


def _grpc_frames(data):
    """(messages as (start, end), any compressed, cut short) of a gRPC body:
    5-byte prefixes (flag, big-endian length); grpc-web trailer frames
    (flag 0x80) skipped."""
    messages, compressed = [], False
    i, size = 0, len(data)
    while i + 5 <= size:
        flag = data[i]
        if flag & 0x7E:
            return messages, compressed, False      # not a frame: stop reading
        end = i + 5 + int.from_bytes(data[i + 1:i + 5], "big")
        if flag == 1:
            compressed = True
        elif flag == 0:
            messages.append((i + 5, min(end, size)))
        i = end
    return messages, compressed, i != size


def _read_grpc(data, params, col, truncated):
    messages, compressed, cut = _grpc_frames(data)
    truncated = truncated or cut
    for number, (start, end) in enumerate(col.items(messages), 1):
        fields = _proto_fields(data, start, end, partial=truncated and number == len(messages))
        if fields:
            _proto_message(data, fields, "", 0, col)
    return Shape("protobuf", col, truncated, compressed=compressed)


def _read_grpc_json(data, params, col, truncated):
    messages, compressed, cut = _grpc_frames(data)
    for start, end in col.items(messages):
        col.json_bytes(_utf8(data[start:end]), "", None, 0)
    return Shape("json", col, truncated or cut, compressed=compressed)


def _read_text(data, params, col, truncated):
    text = _text(data, params).strip()
    if text and len(text) <= _MAX_TEXT and not truncated:
        col.string("", text, None)
    elif text:
        col.add("", "string")
    return Shape("text", col, truncated)


_KINDS = {
    "application/json": _read_json, "text/json": _read_json,
    "application/x-ndjson": _read_ndjson, "application/jsonl": _read_ndjson,
    "application/x-jsonlines": _read_ndjson, "application/jsonlines": _read_ndjson,
    "application/x-www-form-urlencoded": _read_form,
    "multipart/form-data": _read_multipart,
    "application/graphql": _read_graphql,
    "application/grpc": _read_grpc, "application/grpc+proto": _read_grpc,
    "application/grpc-web": _read_grpc, "application/grpc-web+proto": _read_grpc,
    "application/grpc+json": _read_grpc_json,
    "application/x-protobuf": _read_protobuf, "application/protobuf": _read_protobuf,
    "application/x-google-protobuf": _read_protobuf, "application/vnd.google.protobuf": _read_protobuf,
    "text/plain": _read_text,
}


# Content-Type value -> (reader, parameters): the same few values come with
# every body (the parameters are only read)
_READERS_MAX = 1024
_readers = {}


def _reader(mtype):
    reader = _KINDS.get(mtype)
    if reader is None:
        if mtype.endswith("+json"):
            return _read_json
        if mtype.endswith(("/xml", "+xml")):
            return _read_xml
    return reader


def body_shape(data, ctype, truncated=False, *, max_depth=MAX_DEPTH, max_paths=MAX_PATHS,
               max_items=MAX_ITEMS, keep_examples=False):
    """The Shape of a body `data` (bytes, content coding removed) sent with
    Content-Type `ctype`; None when the body is empty or its media type is
    not read here. truncated: `data` is a prefix of the body. keep_examples
    (opt-in): a redacted example per string field (examples.py)."""
    if not data or not ctype:
        return None
    media = _readers.get(ctype)
    if media is None:
        mtype, params = _media_type(ctype)
        media = _reader(mtype), params
        if len(ctype) <= _CACHED_KEY_MAX:
            remember(_readers, ctype, media, _READERS_MAX)
    reader, params = media
    if reader is None:
        return None
    collector = ShapeCollector(max_depth, max_paths, max_items)
    if keep_examples:
        collector.examples = {}
    return reader(bytes(data), params, collector, truncated)
