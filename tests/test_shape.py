"""Payload shape of bodies (sensor.enrich.shape): key paths and types, the
operation of tunnelled RPC, findings, fingerprints, limits, and that no
value ever reaches the record."""
import json
import os
import random
import subprocess
import sys
import time

import msgpack
import pytest
import urllib3

from sensor.enrich.shape import body_shape


def shape(body, ctype="application/json", truncated=False, **limits):
    if not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
    return body_shape(body, ctype, truncated, **limits)


def fields(body, ctype="application/json", truncated=False, **limits):
    return shape(body, ctype, truncated, **limits).fields


# -- JSON

JSON_CASES = [
    ("nested", {"user": {"name": "Ann", "email": "ann@example.com", "address": {"city": "Paris", "zip": 75001}},
                "active": True, "score": 1.5, "note": None},
     {"user": "object", "user.name": "string", "user.email": "string:email", "user.address": "object",
      "user.address.city": "string", "user.address.zip": "integer", "active": "boolean", "score": "number",
      "note": "null"}),
    ("array elements unite", {"items": [{"id": 1, "sku": "a"}, {"id": "x7", "qty": 2}, {"id": None}]},
     {"items": "array", "items[]": "object", "items[].id": "integer|null|string", "items[].sku": "string",
      "items[].qty": "integer"}),
    ("scalar arrays and empty ones", {"tags": ["a", "b"], "ids": [1, 2.5], "none": [], "nested": [[1], ["x"]]},
     {"tags": "array", "tags[]": "string", "ids": "array", "ids[]": "integer|number", "none": "array",
      "nested": "array", "nested[]": "array", "nested[][]": "integer|string"}),
    ("top-level array", [{"id": "550e8400-e29b-41d4-a716-446655440000"}, {"at": "2024-05-01T10:00:00Z"}],
     {"[]": "object", "[].id": "string:uuid", "[].at": "string:date-time"}),
    ("top-level scalar", "hello", {"": "string"}),
    ("map keyed by ids", {"users": {"550e8400-e29b-41d4-a716-446655440000": {"n": 1},
                                    "6ba7b810-9dad-11d1-80b4-00c04fd430c8": {"n": 2, "m": "x"}}},
     {"users": "object", "users.{key}": "object", "users.{key}.n": "integer", "users.{key}.m": "string"}),
    ("map keyed by numbers and emails", {"byId": {"1001": "a", "1002": "b"}, "byMail": {"a@x.io": 1, "b@y.io": 2}},
     {"byId": "object", "byId.{key}": "string", "byMail": "object", "byMail.{key}": "integer"}),
    ("one value key among names", {"name": "n", "kind": "k", "2024-01-31": 3},
     {"name": "string", "kind": "string", "{key}": "integer"}),
    ("JSON-LD and operator names kept", {"@id": "x", "$set": {"a": 1}},
     {"@id": "string", "$set": "object", "$set.a": "integer"}),
]


@pytest.mark.parametrize("body,expected", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_json_shape(body, expected):
    s = shape(body)
    assert s.kind == "json"
    assert s.fields == expected
    assert list(s.fields) == sorted(expected)
    assert not s.truncated and not s.limits and s.operation is None


def test_json_media_types_and_charset():
    body = {"a": 1}
    for ctype in ("application/json", "application/problem+json", "application/vnd.api+json; charset=UTF-8",
                  "text/json", "Application/JSON ; charset=utf-8"):
        assert fields(body, ctype) == {"a": "integer"}, ctype
    assert fields(json.dumps(body).encode("utf-16"), "application/json") == {"a": "integer"}
    for ctype in ("text/html", "application/octet-stream", "image/png", ""):
        assert shape(body, ctype) is None, ctype
    assert body_shape(b"", "application/json") is None


def test_ndjson_lines_are_array_elements():
    body = b'{"a": 1}\n{"b": "x@y.org"}\n\n{"a": 2, "c": [tru'
    s = shape(body, "application/x-ndjson", truncated=True)
    assert s.fields == {"[]": "object", "[].a": "integer", "[].b": "string:email", "[].c": "array"}
    assert s.truncated and s.findings == [("email", "[].b", 1)]


def test_value_classes_become_findings_with_paths_and_counts():
    body = {"customers": [{"email": "a@example.com", "card": "4111 1111 1111 1111", "password": "hunter2"},
                          {"email": "b@example.com", "card": "5555555555554444"}],
            "contacts": {"c@example.com": {"since": 2001}}}
    s = shape(body)
    assert ("email", "customers[].email", 2) in s.findings
    assert ("payment_card", "customers[].card", 2) in s.findings
    assert ("password", "customers[].password", 1) in s.findings
    assert ("email", "contacts.{key}", 1) in s.findings       # a map key is data too
    assert s.fields["customers[].card"] == "string|string:integer"


def test_json_read_from_bytes_as_json_reads_it():
    # escapes in keys and strings, surrogate pairs, non-ASCII, NaN and infinities, exponents
    body = (b'{"na\\u006de": "Ann \\"A\\"", "mail": "ann\\u0040example.com", "emoji": "\\ud83d\\ude00",'
            b' "caf\xc3\xa9": "cr\xc3\xa8me", "n": NaN, "i": -Infinity, "e": 1e5, "z": -0, "l": [true, false, null]}')
    assert json.loads(body)     # the same document json reads
    assert fields(body) == {"name": "string", "mail": "string:email", "emoji": "string", "caf\u00e9": "string",
                            "n": "number", "i": "number", "e": "number", "z": "integer", "l": "array",
                            "l[]": "boolean|null"}
    assert shape(body).findings == [("email", "mail", 1)]


def test_json_repeated_keys_and_bad_bytes():
    # a repeated key: both its values are seen (json.loads would keep the last)
    assert fields(b'{"a": 1, "b": 2, "a": "x"}') == {"a": "integer|string", "b": "integer"}
    # invalid UTF-8 is read as with errors="replace"; a broken escape ends the walk there
    assert fields(b'{"ab": "x\xfey", "cd": 1, "\xff": 1}') == {"ab": "string", "cd": "integer", "{key}": "integer"}
    s = shape(b'{"a": 1, "b": "\\u12", "c": 3}')
    assert s.fields == {"a": "integer", "c": "integer"} and s.truncated
    # a map's keys are classified under the map's own key, its values too
    s = shape({"contacts": {"a@example.com": "x", "b@example.com": "y"}})
    assert s.fields == {"contacts": "object", "contacts.{key}": "string"}
    assert s.findings == [("email", "contacts.{key}", 2)]


def test_json_garbage_between_members_keeps_what_was_read():
    s = shape(b'{"b": {"c": "d"}, "a": [1, 2 x], "e": 3}')
    assert s.truncated and s.fields == {"b": "object", "b.c": "string", "a": "array", "a[]": "integer"}
    assert shape(b'{"a": tru}').fields == {} and shape(b'{"a": 12').fields == {}
    assert shape(b'12').fields == {"": "integer"} and shape(b'[12').fields == {}


# -- truncated prefixes

FULL_DOCUMENT = {
    "data": {"orders": [{"id": 12345, "total": 99.5, "lines": [{"sku": "A-1", "qty": 2}], "paid": True},
                        {"id": 12346, "total": 10, "coupon": None, "lines": []}],
             "owner": {"email": "owner@example.com", "since": "2020-02-02"}},
    "meta": {"page": 1, "next": "https://api.example.com/orders?page=2"},
}


def test_every_prefix_gives_part_of_the_full_shape():
    body = json.dumps(FULL_DOCUMENT, indent=1).encode()
    full = fields(body)
    largest = 0
    for size in range(1, len(body)):
        s = shape(body[:size], truncated=True)
        assert s.truncated
        for path, types in s.fields.items():
            assert path in full, (size, path)
            # a string cut short is a string of unknown format
            assert set(types.split("|")) - {"string"} <= set(full[path].split("|")), (size, path)
            assert "string" not in types or "string" in full[path], (size, path)
        largest = max(largest, len(s.fields))
    assert largest >= len(full) - 2
    # a prefix cut inside the second order still shows the first one whole
    cut = shape(body[:body.index(b"12346")], truncated=True).fields
    assert {"data.orders[].lines[].sku", "data.orders[].paid", "data.orders[].total"} <= set(cut)


def test_escaped_quotes_and_backslashes_anywhere_in_a_string():
    # strings are scanned 8 bytes at a time: an escape at any offset, and a document ending at any point
    for n in range(80):
        for at in range(0, n + 1, 3):
            for special in ('"', "\\", '\\"'):
                text = "a" * at + special + "b" * (n - at)
                body = json.dumps({"k": text, "n": 1}).encode()
                assert fields(body) == {"k": "string", "n": "integer"}, body
                for cut in (7 + at, 8 + at):                # before the escape, inside it
                    assert fields(body[:cut], truncated=True) == {"k": "string"}, body


def test_string_cut_short_keeps_its_key():
    s = shape(b'{"id": 7, "avatar": "iVBORw0KGgoAAAANSUhEUgAA', truncated=True)
    assert s.fields == {"id": "integer", "avatar": "string"}


def test_prefix_detected_without_the_flag():
    s = shape(b'{"a": {"b": "x", "c": [1, 2', truncated=False)
    assert s.truncated and s.fields == {"a": "object", "a.b": "string", "a.c": "array", "a.c[]": "integer"}


def test_trailing_data_after_a_document():
    s = shape(b'{"a": 1} {"b": 2}')
    assert s.fields == {"a": "integer"} and not s.truncated


# -- forms and multipart

def test_form_fields_with_formats_and_brackets():
    body = (b"email=ann%40example.com&age=42&when=2024-01-02&empty=&user%5Bname%5D=Ann"
            b"&user[address][city]=Rome&tags[]=a&tags[]=b&items[0][id]=7&f=1")
    s = shape(body, "application/x-www-form-urlencoded; charset=utf-8")
    assert s.kind == "form"
    assert s.fields == {"email": "string:email", "age": "string:integer", "when": "string:date", "empty": "string",
                        "user.name": "string", "user.address.city": "string", "tags[]": "string",
                        "items[].id": "string:integer", "f": "string:integer"}
    assert s.findings == [("email", "email", 1)]


def test_form_names_that_are_data_and_deep_brackets():
    s = shape(b"ann%40example.com=1&ids[550e8400-e29b-41d4-a716-446655440000]=x&a" + b"[b]" * 40 + b"=1",
              "application/x-www-form-urlencoded")
    assert set(s.fields) == {"{key}", "ids.{key}", "a" + ".b" * 15} and s.limits == ["depth"]
    assert b"ann" not in msgpack.packb(s.to_record())


def test_truncated_form_drops_the_pair_cut_short():
    s = shape(b"a=1&token_hash=abc", "application/x-www-form-urlencoded", truncated=True)
    assert s.fields == {"a": "string:integer"} and s.truncated


def test_multipart_with_file_text_and_json_parts():
    body, ctype = urllib3.encode_multipart_formdata([
        ("title", "Holiday"),
        ("contact", "ann@example.com"),
        ("meta", ("meta.json", b"", "application/json")),
        ("avatar", ("me.png", b"\x89PNG\r\n\x1a\n\x00\x00secret-pixels", "image/png")),
        ("doc", ("cv.pdf", b"%PDF-1.4 plans", "application/pdf")),
    ])
    s = body_shape(body, ctype)
    assert s.kind == "multipart"
    assert s.fields == {"title": "string", "contact": "string:email", "meta": "file:application/json",
                        "avatar": "file:image/png", "doc": "file:application/pdf"}
    assert s.findings == [("email", "contact", 1)]
    record = msgpack.packb(s.to_record())
    for planted in (b"me.png", b"cv.pdf", b"secret-pixels", b"Holiday", b"ann@example.com"):
        assert planted not in record


def test_multipart_json_part_is_shaped_and_no_boundary_reads_nothing():
    boundary = "XyZ"
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n"
            b"{\"size\": 3, \"owner\": \"o@example.com\"}\r\n--XyZ--\r\n")
    s = body_shape(body, 'multipart/form-data; boundary="%s"' % boundary)
    assert s.fields == {"meta": "object", "meta.size": "integer", "meta.owner": "string:email"}
    assert body_shape(body, "multipart/form-data").fields == {}


# -- XML and SOAP

def test_xml_element_paths_attributes_and_leaves():
    body = (b'<?xml version="1.0" encoding="UTF-8"?><order id="550e8400-e29b-41d4-a716-446655440000" xmlns="urn:o">'
            b'<line><sku>A-1</sku><qty>2</qty></line><line><sku>B</sku><qty>1</qty><gift/></line>'
            b'<buyer><email>ann@example.com</email></buyer></order>')
    s = body_shape(body, "application/xml")
    assert s.kind == "xml"
    assert s.fields == {"order": "object", "order.@id": "string:uuid", "order.line": "object",
                        "order.line.sku": "string", "order.line.qty": "string:integer", "order.line.gift": "empty",
                        "order.buyer": "object", "order.buyer.email": "string:email"}
    assert s.findings == [("email", "order.buyer.email", 1)]
    assert body_shape(body, "application/atom+xml").fields == s.fields


@pytest.mark.parametrize("namespace", ["http://schemas.xmlsoap.org/soap/envelope/",
                                       "http://www.w3.org/2003/05/soap-envelope"])
def test_soap_operation_is_the_first_element_in_body(namespace):
    body = ('<s:Envelope xmlns:s="%s"><s:Header><auth>t0ken</auth></s:Header><s:Body>'
            '<m:GetAccount xmlns:m="urn:bank"><m:iban>DE89370400440532013000</m:iban></m:GetAccount>'
            '</s:Body></s:Envelope>' % namespace).encode()
    s = body_shape(body, "application/soap+xml; charset=utf-8")
    assert s.operation == {"kind": "soap", "operation": "GetAccount"}
    assert "Envelope.Body.GetAccount.iban" in s.fields
    assert ("iban", "Envelope.Body.GetAccount.iban", 1) in s.findings
    # the same document outside a SOAP namespace is plain XML
    assert body_shape(body.replace(namespace.encode(), b"urn:not-soap"), "text/xml").operation is None


def test_truncated_xml_keeps_what_parsed():
    body = b"<a><b>1</b><c><d>x@y.org</d><e>trun"
    s = body_shape(body, "text/xml", truncated=True)
    assert s.fields == {"a": "object", "a.b": "string:integer", "a.c": "object", "a.c.d": "string:email"}
    assert s.truncated


XML_ATTACKS = [
    ("billion laughs", b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
     + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
     + b']><lolz>&lol9;</lolz>'),
    ("external entity", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>'),
    ("parameter entity", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><r/>'),
    ("external DTD", b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "file:///etc/passwd"><r>x</r>'),
]


@pytest.mark.parametrize("body", [c[1] for c in XML_ATTACKS], ids=[c[0] for c in XML_ATTACKS])
def test_xml_with_a_dtd_is_refused_quickly(body):
    began = time.perf_counter()
    s = body_shape(body, "application/xml")
    assert time.perf_counter() - began < 0.05
    assert s.kind == "xml" and s.fields == {} and s.limits == ["dtd"]
    assert b"root:" not in msgpack.packb(s.to_record())


def test_undefined_entity_stops_reading_there():
    s = body_shape(b"<r><a>1</a><b>&undefined;</b><c>2</c></r>", "text/xml")
    assert "r.a" in s.fields and "r.b" not in s.fields and "r.c" not in s.fields


# -- GraphQL

def graphql(query, variables=None, operation_name=None, ctype="application/json"):
    body = {"query": query}
    if variables is not None:
        body["variables"] = variables
    if operation_name is not None:
        body["operationName"] = operation_name
    return shape(body, ctype)


def test_graphql_query_top_level_fields_and_name():
    s = graphql('query Dashboard { me { id name } feed(first: 10, after: "c2VjcmV0LWN1cnNvcg==") { edges { node { id } } }'
                ' alias: notifications @include(if: true) { count } }')
    assert s.kind == "graphql"
    assert s.operation == {"kind": "graphql", "type": "query", "name": "Dashboard"}
    assert s.fields == {"me": "query", "feed": "query", "notifications": "query"}


def test_graphql_mutation_variables_are_shaped_not_kept():
    variables = {"input": {"email": "victim@example.com", "password": "Tr0ub4dor&3", "age": 33,
                           "tags": ["vip"]}}
    s = graphql('mutation SignUp($input: SignUpInput!) { signUp(input: $input) { user { id } token } }',
                variables, "SignUp")
    assert s.operation == {"kind": "graphql", "type": "mutation", "name": "SignUp"}
    assert s.fields == {"signUp": "mutation", "$.input": "object", "$.input.email": "string:email",
                        "$.input.password": "string", "$.input.age": "integer", "$.input.tags": "array",
                        "$.input.tags[]": "string"}
    assert ("email", "$.input.email", 1) in s.findings and ("password", "$.input.password", 1) in s.findings
    packed = msgpack.packb([s.to_record(), s.operation])
    for planted in (b"victim@example.com", b"Tr0ub4dor", b"vip"):
        assert planted not in packed


def test_graphql_string_arguments_are_classified_not_kept():
    s = graphql('mutation { login(email: "victim@example.com", password: """Tr0ub4dor&3""") { session { user('
                'filter: {contact: "+14155550132"}) { id } } } }')
    assert s.fields == {"login": "mutation"}
    assert ("email", "login(email)", 1) in s.findings and ("password", "login(password)", 1) in s.findings
    assert ("phone", "login.session.user(contact)", 1) in s.findings
    packed = msgpack.packb([s.to_record(), s.operation, s.findings])
    for planted in (b"victim@example.com", b"Tr0ub4dor", b"4155550132"):
        assert planted not in packed


def test_graphql_fragments_shorthand_and_operation_choice():
    document = ('query A { ...Top ... on Query { inline } } query B { other } '
                'fragment Top on Query { viewer { id } ...More } fragment More on Query { settings }')
    assert graphql(document, operation_name="A").fields == {"viewer": "query", "settings": "query", "inline": "query"}
    s = graphql(document, operation_name="B")
    assert s.fields == {"other": "query"} and s.operation["name"] == "B"
    shorthand = body_shape(b"# comment\n{ health }", "application/graphql")
    assert shorthand.operation == {"kind": "graphql", "type": "query", "name": None}
    assert shorthand.fields == {"health": "query"}
    sub = body_shape(b"subscription OnMsg { messageAdded(room: 1) { text } }", "application/graphql")
    assert sub.operation["type"] == "subscription" and sub.fields == {"messageAdded": "subscription"}


def test_graphql_batch():
    s = shape([{"query": "query A { a }", "variables": {"id": 1}},
               {"query": "mutation B($e: String) { b(email: $e) }", "variables": {"e": "x@example.com"}},
               {"operationName": "C", "extensions": {"persistedQuery": {"sha256Hash": "00" * 32}}}])
    assert s.kind == "graphql"
    assert s.operation == {"kind": "graphql", "type": ["query", "mutation", None], "name": ["A", "B", "C"]}
    assert s.fields == {"a": "query", "b": "mutation", "$.id": "integer", "$.e": "string:email"}
    mixed = shape([{"query": "query A { a }"}, {"query": "not graphql"}])
    assert mixed.kind == "json" and mixed.operation is None and mixed.fields["[].query"] == "string"


def test_graphql_persisted_query_and_lookalikes():
    apq = shape({"operationName": "GetUser", "variables": {"id": 5},
                 "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}})
    assert apq.kind == "graphql" and apq.operation == {"kind": "graphql", "type": None, "name": "GetUser"}
    assert apq.fields == {"$.id": "integer"}
    search = shape({"query": "red shoes", "page": 2})
    assert search.kind == "json" and search.operation is None and "query" in search.fields
    schema = body_shape(b"type Query { me: User }", "application/graphql")
    assert schema.kind == "graphql" and schema.operation is None and schema.fields == {}
    broken = graphql("query Q { a { b }")
    assert broken.kind == "json" and broken.operation is None


def test_graphql_fragment_bombs_and_deep_nesting_are_cheap():
    chain = "query Q { ...F0 } " + " ".join("fragment F%d on Q { a%d ...F%d ...F%d }" % (i, i, i + 1, i + 1)
                                             for i in range(2000))
    inline = "{ " + "... on Q { " * 5000 + "x" + " }" * 5001
    deep = "{ " + "a { " * 5000 + "x" + " }" * 5001
    for document in (chain, inline, deep):
        began = time.perf_counter()
        assert body_shape(document.encode(), "application/graphql").kind == "graphql"
        assert time.perf_counter() - began < 0.5
    assert body_shape(chain.encode(), "application/graphql").fields["a1999"] == "query"
    assert body_shape(inline.encode(), "application/graphql").operation is None
    assert body_shape(deep.encode(), "application/graphql").operation is None


# -- JSON-RPC

def test_graphql_and_jsonrpc_cut_at_the_body_cap_keep_their_operation():
    body = json.dumps({"operationName": "GetUser", "query": "query GetUser($id: ID!) { user(id: $id) { name } }",
                       "variables": {"id": "u1", "note": "x" * 200}}).encode()
    s = shape(body[:-40], truncated=True)
    assert s.kind == "graphql" and s.operation == {"kind": "graphql", "type": "query", "name": "GetUser"}
    assert s.truncated and s.fields == {"user": "query"}       # the variables were cut: not read
    s = shape(body[:60], truncated=True)                        # the query itself cut short: plain JSON
    assert s.kind == "json" and s.operation is None
    rpc = json.dumps({"jsonrpc": "2.0", "method": "eth_call", "params": [{"to": "0xab"}, "x" * 50]}).encode()
    assert shape(rpc[:50], truncated=True).operation == {"kind": "jsonrpc", "method": "eth_call"}


def test_jsonrpc_single_batch_and_response():
    single = shape({"jsonrpc": "2.0", "method": "eth_getBalance", "params": ["0xde0b", "latest"], "id": 1})
    assert single.operation == {"kind": "jsonrpc", "method": "eth_getBalance"}
    assert single.kind == "json" and single.fields["params[]"] == "string"
    batch = shape([{"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": "1"},
                   {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
                   {"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42}, "id": "2"}])
    assert batch.operation == {"kind": "jsonrpc", "method": ["sum", "notify_hello", "subtract"]}
    assert batch.fields["[].params"] == "array|object"
    assert shape({"jsonrpc": "2.0", "result": 19, "id": 1}).operation is None
    assert shape({"jsonrpc": "1.0", "method": "x"}).operation is None
    # a method name that is really a value does not leave
    assert shape({"jsonrpc": "2.0", "method": "ann@example.com"}).operation["method"] == "{value}"


# -- protobuf and gRPC

def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number, value):
    """One protobuf field: int -> varint, bytes -> length-delimited,
    ("i32"|"i64", bytes) -> fixed."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, tuple):
        return varint(number << 3 | (5 if value[0] == "i32" else 1)) + value[1]
    return varint(number << 3 | 2) + varint(len(value)) + value


def grpc_frame(message, compressed=False):
    return bytes([compressed]) + len(message).to_bytes(4, "big") + message


ADDRESS = pb_field(1, b"Rome") + pb_field(2, 1234)
USER = (pb_field(1, 150) + pb_field(2, b"ann@example.com") + pb_field(3, ADDRESS) + pb_field(3, ADDRESS)
        + pb_field(4, ("i64", b"\x00" * 8)) + pb_field(5, ("i32", b"\x01\x02\x03\x04"))
        + pb_field(6, b"\xff\xfe\x00\x01") + pb_field(7, pb_field(1, pb_field(1, 1))))
USER_FIELDS = {"1": "varint", "2": "string:email", "3[]": "message", "3[].1": "string", "3[].2": "varint",
               "4": "fixed64", "5": "fixed32", "6": "bytes", "7": "message", "7.1": "message", "7.1.1": "varint"}


def test_protobuf_wire_shape():
    s = body_shape(USER, "application/x-protobuf")
    assert s.kind == "protobuf" and s.fields == USER_FIELDS
    assert s.findings == [("email", "2", 1)]


def test_grpc_frames_compressed_and_cut():
    body = grpc_frame(USER) + grpc_frame(b"\x1f\x8b compressed", compressed=True) + grpc_frame(pb_field(8, 1))
    s = body_shape(body, "application/grpc+proto")
    assert s.fields == {**USER_FIELDS, "8": "varint"}
    assert s.to_record()["compressed"] is True and not s.truncated
    cut = body_shape(grpc_frame(USER)[:-6], "application/grpc", truncated=True)
    assert cut.truncated and {"1", "2", "3[]", "4", "5"} <= set(cut.fields) and "7" not in cut.fields
    assert body_shape(grpc_frame(USER)[:-6], "application/grpc").truncated        # seen from the framing
    web = body_shape(grpc_frame(pb_field(1, 5)) + b"\x80\x00\x00\x00\x0fgrpc-status:0\r\n", "application/grpc-web+proto")
    assert web.fields == {"1": "varint"}


def test_protobuf_depth_limit():
    message = pb_field(1, 1)
    for _ in range(30):
        message = pb_field(1, message)
    s = body_shape(message, "application/x-protobuf")
    assert s.limits == ["depth"] and max(len(p.split(".")) for p in s.fields) == 17


# -- fingerprints

def test_fingerprint_ignores_order_values_and_lengths():
    a = {"id": 1, "name": "x", "tags": ["a"], "items": [{"n": 1}]}
    b = {"items": [{"n": 9}, {"n": 10}, {"n": 11}], "tags": ["q", "r", "s"], "name": "yy", "id": 77}
    assert shape(a).fingerprint == shape(b).fingerprint
    assert len(shape(a).fingerprint) == 16 and int(shape(a).fingerprint, 16) >= 0


@pytest.mark.parametrize("changed", [
    {"id": "1", "name": "x"},                       # a type
    {"id": 1, "name": "x", "extra": True},          # a key more
    {"ident": 1, "name": "x"},                      # a key renamed
    {"id": 1, "name": "x@example.com"},             # a format
    {"id": 1, "name": {"first": "x"}},              # nesting
])
def test_fingerprint_changes_with_the_shape(changed):
    assert shape(changed).fingerprint != shape({"id": 1, "name": "x"}).fingerprint


def test_fingerprint_definition_is_pinned():
    """Fingerprints are kept by whoever reads the records: a change of
    definition must be deliberate. blake2b-64 of the kind, then per sorted
    path "\\0path\\1type"."""
    assert shape({"tags": ["a"], "id": 1}).fingerprint == "402ec7eb6b4261cd"


def test_fingerprint_depends_on_kind_and_is_stable_across_processes():
    assert shape(b"id=1", "application/x-www-form-urlencoded").fingerprint != shape({"id": "1"}).fingerprint
    body = json.dumps(FULL_DOCUMENT)
    here = shape(FULL_DOCUMENT).fingerprint
    code = ("import sys; from sensor.enrich.shape import body_shape;"
            "print(body_shape(sys.argv[1].encode(), 'application/json').fingerprint)")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, body], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        assert out == here


# -- limits

def test_depth_limit():
    doc = leaf = {}
    for _ in range(40):
        leaf["n"] = {}
        leaf = leaf["n"]
    leaf["v"] = 1
    s = shape(doc, max_depth=16)
    assert s.limits == ["depth"] and max(len(p.split(".")) for p in s.fields) == 16
    assert shape(b"[" * 100000, truncated=True).limits == ["depth"]


def test_paths_and_items_limits():
    wide = {"k%04d" % i: i for i in range(1000)}
    s = shape(wide)
    assert len(s.fields) == 512 and s.limits == ["paths"]
    long_array = [{"a": 1}] * 300 + [{"late": 1}]
    s = shape(long_array)
    assert s.fields == {"[]": "object", "[].a": "integer"} and s.limits == ["items"]
    assert shape(long_array, max_items=1000).fields["[].late"] == "integer"
    assert shape(wide, max_paths=2000).limits == []


LOWER = "abcdefghijklmnopqrstuvwxyz"


def _deep(rng):
    doc = 1
    for _ in range(15):
        doc = {"".join(rng.choices("\U0001F600\U0001F601\U0001F602\U0001F923", k=64)): doc}
    return doc


@pytest.mark.parametrize("seed, bodies, make", [
    # key names are data too: 400k distinct ones, each over values too long to
    # be remembered, must not leave a table apiece behind (they once took 66 MiB)
    (1, 20000, lambda rng: {"".join(rng.choices(LOWER, k=12)): "x" * 80 for _ in range(20)}),
    # key paths are remembered across bodies: 32 MiB of distinct long keys (and their strs) must not all stay
    (2, 1000, lambda rng: {"".join(rng.choices(LOWER, k=8192)): 1 for _ in range(4)}),
    # short values are remembered by their bytes too: 160k distinct ones must not all stay
    (3, 4000, lambda rng: {"k%d" % i: "".join(rng.choices(LOWER, k=60)) for i in range(40)}),
    # a path of 16 names of 64 emoji is 4 KiB: 40k new ones must not all stay
    (4, 2500, _deep),
], ids=["key-names", "long-keys", "short-values", "deep-paths"])
def test_memory_is_bounded_under_ever_new_keys_and_values(seed, bodies, make):
    import resource
    rng = random.Random(seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(bodies):
        body_shape(json.dumps(make(rng)).encode(), "application/json")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 24 * 1024     # KiB


def test_key_paths_remembered_across_bodies_keep_their_root_and_bytes():
    # the same keys under another root (NDJSON's "[]", a multipart part's name) or
    # spelled with escapes are other nodes; their paths and types as when first met
    doc = b'{"a": {"b": 1, "\\u0062": "x"}, "c": [2]}'
    expected = {"a": "object", "a.b": "integer|string", "c": "array", "c[]": "integer"}
    part = (b"--XyZ\r\nContent-Disposition: form-data; name=\"m\"\r\nContent-Type: application/json\r\n\r\n"
            + doc + b"\r\n--XyZ--\r\n")
    for _ in range(2):
        assert shape(doc).fields == expected
        assert shape(doc, "application/x-ndjson").fields == {"[]": "object", **{"[]." + p: t for p, t in expected.items()}}
        assert body_shape(part, "multipart/form-data; boundary=XyZ").fields == {
            "m": "object", **{"m." + p: t for p, t in expected.items()}}
        assert shape({"c": {"a": "x"}}).fields == {"c": "object", "c.a": "string"}


def test_a_walk_that_raises_leaves_the_remembered_key_paths_whole():
    from sensor._core import ShapeCollector
    for path, name in ((None, None), ("", []), ("p", ["n"])):
        with pytest.raises(TypeError):
            ShapeCollector(16, 512, 256).json_bytes(b'{"a": 1}', path, name, 0)
    assert fields({"a": {"b": [1]}}) == {"a": "object", "a.b": "array", "a.b[]": "integer"}


def test_shapes_made_once_by_their_types_are_made_anew_when_more_is_added():
    # a shape is remembered by the types one JSON walk alone found: later
    # lines, parts or types added besides are not in that key
    json_part = b'--XyZ\r\nContent-Disposition: form-data; name="m"\r\nContent-Type: application/json\r\n\r\n{"a": 1}\r\n'
    alone = json_part + b"--XyZ--\r\n"
    more = json_part + b'--XyZ\r\nContent-Disposition: form-data; name="t"\r\n\r\ntext\r\n--XyZ--\r\n'
    ctype = "multipart/form-data; boundary=XyZ"
    for _ in range(2):
        assert fields(b'{"a": 1}', "application/x-ndjson") == {"[]": "object", "[].a": "integer"}
        assert fields(b'{"a": 1}\n{"b": 2}', "application/x-ndjson") == {
            "[]": "object", "[].a": "integer", "[].b": "integer"}
        assert body_shape(alone, ctype).fields == {"m": "object", "m.a": "integer"}
        assert body_shape(more, ctype).fields == {"m": "object", "m.a": "integer", "t": "string"}
    assert shape({"a": 1, "b": 2}).fingerprint == shape({"b": 3, "a": 4}).fingerprint
    assert shape({"a": 1, "b": 2}, max_paths=1).fields == {"a": "integer"}


def test_long_key_names_are_cut():
    s = shape({"field_" * 20: 1})
    assert list(s.fields) == [("field_" * 20)[:64]]


# -- privacy and robustness

PLANTED = ["Zq7secretvalue", "victim@example.com", "4111111111111111", "hunter2pass", "550e8400-e29b-41d4-a716-446655440000"]


def leaky_bodies():
    uuid = PLANTED[4]
    yield "application/json", json.dumps({
        "note": PLANTED[0], "email": PLANTED[1], "card": PLANTED[2], "password": PLANTED[3],
        "byId": {uuid: {PLANTED[1]: PLANTED[0]}}, "list": [PLANTED[0], 4111111111111111]}).encode()
    yield "application/json", json.dumps({"query": 'query Q { user(email: "%s") { id } }' % PLANTED[1],
                                          "variables": {"pw": PLANTED[3], "ids": {uuid: PLANTED[0]}}}).encode()
    yield "application/x-www-form-urlencoded", ("note=%s&email=%s&card=%s&password=%s&%s=1" % tuple(PLANTED)).encode()
    yield "application/xml", ("<r note='%s'><email>%s</email><card>%s</card><password>%s</password></r>"
                              % tuple(PLANTED[:4])).encode()
    yield "application/grpc", grpc_frame(pb_field(1, PLANTED[0].encode()) + pb_field(2, PLANTED[1].encode())
                                         + pb_field(3, pb_field(1, PLANTED[3].encode())))
    yield "text/plain", PLANTED[1].encode()
    body, ctype = urllib3.encode_multipart_formdata([("note", PLANTED[0]), ("f", (PLANTED[3], PLANTED[1].encode()))])
    yield ctype, body


@pytest.mark.parametrize("ctype,body", list(leaky_bodies()), ids=lambda v: v.split(";")[0] if isinstance(v, str) else "")
def test_no_value_leaks(ctype, body):
    s = body_shape(body, ctype)
    assert s.fields
    packed = msgpack.packb([s.to_record(), s.operation, [list(f[:2]) for f in s.findings]])
    for planted in PLANTED:
        assert planted.encode() not in packed, planted
        assert planted[:10].encode() not in packed, planted


MEDIA = ["application/json", "application/x-ndjson", "application/x-www-form-urlencoded",
         "multipart/form-data; boundary=b", "application/xml", "application/graphql", "application/grpc",
         "application/x-protobuf", "application/grpc+json", "text/plain; charset=nonexistent"]


def test_garbage_never_raises():
    rng = random.Random(5)
    seeds = [json.dumps(FULL_DOCUMENT).encode(), grpc_frame(USER), b"<a x='1'><b>2</b></a>",
             b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--", b"query { a(x: [1, {y: 2}]) { b } }"]
    for media in MEDIA:
        for _ in range(150):
            body = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            if rng.random() < 0.5:
                body = body[:rng.randint(1, len(body))]
            s = body_shape(bytes(body), media, truncated=rng.random() < 0.5)
            assert s is not None
            msgpack.packb(s.to_record())
        s = body_shape(os.urandom(2000), media)
        assert s is not None
