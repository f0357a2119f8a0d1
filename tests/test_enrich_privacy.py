"""Values that hide where names are expected (query names, bare query
tokens, path segments) are classed, never published."""
import json
from urllib.parse import quote

from pcapgen import Conv

EMAIL, TOKEN, IBAN = "john.doe@example.com", "a9F3kQ7zX2mP8wL4", "GB82WEST12345698765432"


def test_values_in_name_places_never_leave(replay):
    c = Conv()
    c.handshake()
    target = "/accounts/%s/owners/%s?%s&%s=1&page=2&debug" % (IBAN, EMAIL.replace("@", "%40"), TOKEN,
                                                            EMAIL.replace("@", "%40"))
    c.send_client(b"GET %s HTTP/1.1\r\nHost: bank.test\r\n\r\n" % target.encode())
    c.send_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    c.fin()
    (r,) = replay(c).records
    text = json.dumps(r)
    for secret in (EMAIL, TOKEN, IBAN, "john.doe", "%40"):
        assert secret not in text, secret
    assert r["url.query.keys"] == ["{value}", "{key}", "page", "debug"]
    assert r["sensor.query"] == {"{value}": "base64", "{key}": "integer", "page": "integer", "debug": "empty"}
    found = {(f["class"], f["in"], f["name"]) for f in r["sensor.sensitive"]}
    assert {("email", "query", "{key}"), ("iban", "path", "1"), ("email", "path", "3")} <= found, found
    assert r["url.path"].count("{") == 2 and r["http.route"] == r["url.path"]


def test_graphql_get_reads_like_its_post(replay):
    query = quote("query GetUser($id: ID!) { user(id: $id) { name email } }")
    variables = quote(json.dumps({"id": "u-1", "contact": EMAIL}))
    c = Conv()
    c.handshake()
    c.send_client(b"GET /graphql?query=%s&operationName=GetUser&variables=%s HTTP/1.1\r\nHost: api.test\r\n\r\n"
                  % (query.encode(), variables.encode()))
    c.send_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    c.fin()
    (r,) = replay(c).records
    assert r["sensor.operation"] == {"kind": "graphql", "type": "query", "name": "GetUser"}
    assert r["sensor.shape.request"]["fields"] == {"user": "query", "$.id": "string", "$.contact": "string:email"}
    assert {"class": "email", "in": "query", "name": "$.contact", "count": 1} in r["sensor.sensitive"]
    assert EMAIL not in json.dumps(r) and "u-1" not in json.dumps(r)
