"""What the corpus client sends, and what the sensor should say about it.

Each `Call` is one request with the labels its author gave it: the
sensitive findings of the request side as (class, in, name), the auth
scheme, the tunnelled operation. Response-side labels come from the app's
handler (`Reply.findings`). Nothing here is read from sensor output.
"""
import gzip
import json
from typing import NamedTuple
from urllib.parse import quote, urlencode

from enrich_app import GRPC_SERVICE, Api, found_in, pb_message


class Call(NamedTuple):
    method: str
    target: str                 # path and query, as sent
    headers: tuple = ()         # (name, value)
    body: bytes = b""
    labels: frozenset = frozenset()
    auth: dict = None           # expected sensor.auth (keys compared)
    operation: dict = None      # expected sensor.operation (keys compared)


# (class, in, name) a careful sensor may report or not: neither required nor counted wrong
TOLERATED = frozenset({("secret", "request.body", "secretAccessKey"), ("secret", "cookie", "access_token"),
                       ("secret", "response.body", "access_token"), ("api_key", "request.body", "client_secret")})

# the credentials' labels: where each kind of request carries one
JWT_HEADER = found_in("request.header", ("jwt", "authorization"))
BASIC_HEADER = found_in("request.header", ("password", "authorization"))
BEARER_HEADER = found_in("request.header", ("bearer_token", "authorization"))
KEY_HEADER = found_in("request.header", ("api_key", "x-api-key"))

NONE = {"scheme": "none"}
API_KEY_HEADER = {"scheme": "api-key-header", "name": "x-api-key"}
CLAIMS = {"sub": None, "email": None, "name": None, "iat": 1733300000, "exp": 1733303600,
          "scope": "orders:read profile"}

# Expected shapes per route: key path -> type. "integer"/"float" accept the
# sensor's number spellings; "string:F" asks for format F; "a|b": both seen.
SHAPES = {
    ("GET", "/api/v1/users/{userId}"): {"response": ("json", {
        "id": "integer", "name": "string", "email": "string:email", "phone": "string", "createdAt": "integer",
        "address.city": "string", "address.country": "string"})},
    ("GET", "/api/v1/users/{userId}/orders/{orderId}"): {"response": ("json", {
        "orderId": "string:uuid", "items[].sku": "string", "items[].qty": "integer", "items[].unitPrice": "float",
        "payment.last4": "string", "placedAt": "integer", "trackingNumber": "string"})},
    ("GET", "/api/v1/products/{slug}"): {"response": ("json", {
        "slug": "string", "gtin": "string", "price": "float", "stock": "integer", "updatedAt": "integer"})},
    ("GET", "/api/v1/profile"): {"response": ("json", {
        "email": "string:email", "dateOfBirth": "string:date", "lastLoginIp": "string:ipv4", "ssn": "string"})},
    ("POST", "/login"): {"request": ("form", {"username": "string:email", "password": "string"}),
                         "response": ("json", {"ok": "boolean", "userId": "integer", "expiresAt": "integer"})},
    ("POST", "/api/v1/payments"): {"request": ("json", {
        "amount": "float", "currency": "string", "card.number": "string", "card.brand": "string",
        "billing.iban": "string", "billing.email": "string:email", "orderRef": "string"})},
    ("POST", "/api/v1/uploads"): {"request": ("multipart", {"title": "string", "owner": "string:email",
                                                            "file": "file:image/png"})},
    ("POST", "/soap"): {"response": ("xml", {"Envelope.Body.GetCustomerResponse.Customer.email": None})},
    ("POST", "/rpc"): {"request": ("json", {"jsonrpc": "string", "method": "string"})},
    ("GET", "/api/v1/users/{userId}/contacts"): {"response": ("json", {
        "contacts": "array", "contacts[].email": "string:email", "contacts[].phone": "string",
        "updatedAt": "string:date-time"})},
    ("GET", "/api/v1/users/{userId}/devices"): {"response": ("json", {
        "devices.{key}.ip": "string:ipv4|string:ipv6", "devices.{key}.lastSeen": "string:date-time"})},
    ("GET", "/api/v1/customers/export"): {"response": ("json", {
        "customers[].email": "string:email", "customers[].notes": "string"})},
    ("POST", "/api/v1/invitations"): {"request": ("json", {"[]": "object", "[].email": "string:email"})},
    ("POST", "/checkout"): {"request": ("form", {"card_number": "string", "email": "string:email"})},
    ("GET", "/api/v1/orders"): {"response": ("json", {
        "orders[].orderNumber": "string", "orders[].loyaltyId": "string", "orders[].placedAt": "string:date-time"})},
    ("POST", "/graphql"): {"request": ("graphql", {})},
    ("POST", "/%s/GetCustomer" % GRPC_SERVICE): {
        "request": ("protobuf", {"1": "varint"}),
        "response": ("protobuf", {"1": "varint", "2": "string", "3": "string:email", "5": "message", "5.1": "string"})},
    ("POST", "/%s/UpdateContact" % GRPC_SERVICE): {
        "request": ("protobuf", {"1": "varint", "2": "string:email", "3": "string"})},
}


def jwt_auth(alg, claims):
    return {"scheme": "bearer-jwt", "name": "authorization", "alg": alg, "claims": sorted(claims)}


def corpus_calls(fake, data):
    """The client's requests over one connection, fresh credentials each time."""
    users = data["users"]
    calls = [Call("GET", "/health", auth=NONE)]

    def bearer_jwt(uid, alg="HS256"):
        claims = dict(CLAIMS, sub=fake.opaque("auth0|"), email=fake.email(), name=fake.name())
        token = fake.jwt(claims, alg)
        return (("Authorization", "Bearer " + token),), jwt_auth(alg, claims)

    for uid in users:
        headers, auth = bearer_jwt(uid)
        calls.append(Call("GET", "/api/v1/users/" + uid, headers, labels=JWT_HEADER, auth=auth))
    for uid in list(users)[:2]:
        headers, auth = bearer_jwt(uid)
        calls.append(Call("GET", "/api/v1/users/%s/orders/%s" % (uid, users[uid]["orders"][1]), headers,
                          labels=JWT_HEADER, auth=auth))
    for slug in data["products"]:
        calls.append(Call("GET", "/api/v1/products/" + slug, auth=NONE))
    api_key_q = {"scheme": "api-key-query", "name": "api_key"}
    query = fake.plant("trail runner " + fake.token(6).lower())     # not sensitive, still a value
    calls.append(Call("GET", "/api/v1/search?" + urlencode({"q": query, "page": 2, "api_key": fake.opaque()}),
                      labels=found_in("query", ("api_key", "api_key")), auth=api_key_q))
    calls.append(Call("GET", "/api/v1/search?" + urlencode({"q": fake.email(), "page": 1, "api_key": fake.opaque()}),
                      labels=found_in("query", ("api_key", "api_key"), ("email", "q")), auth=api_key_q))

    u = users["1002"]
    form = urlencode({"username": u["email"], "password": fake.password(), "remember": "on"}).encode()
    calls.append(Call("POST", "/login", (("Content-Type", "application/x-www-form-urlencoded"),), form,
                      found_in("request.body", ("email", "username"), ("password", "password")), NONE))
    calls.append(Call("GET", "/api/v1/profile", (("Cookie", "sid=%s; theme=dark; lang=en-GB" % u["session"]),
                                                 ("X-Forwarded-For", fake.ipv4())),
                      labels=found_in("cookie", ("secret", "sid"))
                      | found_in("request.header", ("ip_address", "x-forwarded-for")),
                      auth={"scheme": "cookie-session", "name": "sid"}))

    for brand, coding in (("visa", None), ("amex", "gzip"), ("mastercard", None)):
        pay = {"amount": 129.95, "currency": "EUR",
               "card": {"number": fake.card(brand), "brand": brand, "expMonth": 11, "expYear": 2029},
               "billing": {"name": fake.name(), "email": fake.email(), "iban": fake.iban()},
               "orderRef": fake.card_like_decoy()}
        body = json.dumps(pay).encode()
        headers = [("Content-Type", "application/json"), ("X-API-Key", fake.opaque())]
        if coding:
            body = gzip.compress(body, mtime=0)
            headers.append(("Content-Encoding", coding))
        calls.append(Call("POST", "/api/v1/payments", tuple(headers), body,
                          found_in("request.body", ("payment_card", "card.number"), ("iban", "billing.iban"),
                              ("email", "billing.email")) | KEY_HEADER,
                          API_KEY_HEADER))

    opaque = {"scheme": "bearer-opaque", "name": "authorization"}
    gql = {"query": "query GetUser($id: ID!) { user(id: $id) { id name email phone } }",
           "operationName": "GetUser", "variables": {"id": "1003"}}
    calls.append(Call("POST", "/graphql", (("Content-Type", "application/json"),
                                           ("Authorization", "Bearer " + fake.opaque())),
                      json.dumps(gql).encode(), BEARER_HEADER, opaque,
                      {"kind": "graphql", "type": "query", "name": "GetUser"}))
    gql = {"query": "mutation UpdateEmail($input: EmailInput!) { updateEmail(input: $input) { ok } }",
           "operationName": "UpdateEmail",
           "variables": {"input": {"email": fake.email(), "password": fake.password()}}}
    calls.append(Call("POST", "/graphql", (("Content-Type", "application/json"),
                                           ("Authorization", "Bearer " + fake.opaque())),
                      json.dumps(gql).encode(),
                      found_in("request.body", ("email", "$.input.email"), ("password", "$.input.password"))
                      | BEARER_HEADER, opaque,
                      {"kind": "graphql", "type": "mutation", "name": "UpdateEmail"}))
    gql = {"query": "query CustomerOrders($email: String!) { customer(email: $email) { id orders { id } } }",
           "operationName": "CustomerOrders", "variables": json.dumps({"email": users["1003"]["email"]})}
    calls.append(Call("GET", "/graphql?" + urlencode(gql), (("Authorization", "Bearer " + fake.opaque()),),
                      labels=found_in("query", ("email", "$.email")) | BEARER_HEADER, auth=opaque,
                      operation={"kind": "graphql", "type": "query", "name": "CustomerOrders"}))
    # an inline literal argument rather than a variable: as much a value
    gql = {"query": 'mutation Subscribe { newsletter { subscribe(email: "%s", source: "footer") { ok } } }'
                    % fake.email(), "operationName": "Subscribe"}
    calls.append(Call("POST", "/graphql", (("Content-Type", "application/json"),
                                           ("Authorization", "Bearer " + fake.opaque())),
                      json.dumps(gql).encode(),
                      found_in("request.body", ("email", "newsletter.subscribe(email)")) | BEARER_HEADER, opaque,
                      {"kind": "graphql", "type": "mutation", "name": "Subscribe"}))

    basic = {"scheme": "basic", "name": "authorization"}
    rpc = {"jsonrpc": "2.0", "method": "account.getBalance", "params": {"iban": fake.iban()}, "id": 7}
    calls.append(Call("POST", "/rpc", (("Content-Type", "application/json"),
                                       ("Authorization", fake.basic("svc-ledger"))), json.dumps(rpc).encode(),
                      found_in("request.body", ("iban", "params.iban"))
                      | BASIC_HEADER,
                      basic, {"kind": "jsonrpc", "method": "account.getBalance"}))
    rpc = {"jsonrpc": "2.0", "method": "customer.lookup", "params": [users["1001"]["email"]], "id": 8}
    calls.append(Call("POST", "/rpc", (("Content-Type", "application/json"), ("Authorization", fake.basic("svc-crm"))),
                      json.dumps(rpc).encode(),
                      found_in("request.body", ("email", "params[]")) | BASIC_HEADER,
                      basic, {"kind": "jsonrpc", "method": "customer.lookup"}))

    soap = Api.SOAP % '<GetCustomer xmlns="urn:example:crm"><customerId>1003</customerId></GetCustomer>'
    calls.append(Call("POST", "/soap", (("Content-Type", "text/xml; charset=utf-8"),
                                        ("SOAPAction", '"urn:example:crm/GetCustomer"'),
                                        ("Authorization", fake.basic("svc-soap"))),
                      soap.encode(), BASIC_HEADER, basic, {"kind": "soap"}))

    boundary = "----sensorcorpus%s" % fake.token(12)
    png = b"\x89PNG\r\n\x1a\n" + bytes(fake.rng.getrandbits(8) for _ in range(600))
    parts = [b'Content-Disposition: form-data; name="title"\r\n\r\nQ3 expense scan',
             b'Content-Disposition: form-data; name="owner"\r\n\r\n' + fake.email().encode(),
             b'Content-Disposition: form-data; name="file"; filename="receipt.png"\r\nContent-Type: image/png\r\n\r\n'
             + png]
    body = b"".join(b"--%s\r\n%s\r\n" % (boundary.encode(), p) for p in parts) + b"--%s--\r\n" % boundary.encode()
    headers, auth = bearer_jwt("1001", "HS512")
    calls.append(Call("POST", "/api/v1/uploads",
                      headers + (("Content-Type", "multipart/form-data; boundary=" + boundary),),
                      body, found_in("request.body", ("email", "owner")) | JWT_HEADER,
                      auth))

    for iban in data["accounts"]:
        calls.append(Call("GET", "/api/v1/accounts/%s/balance" % iban, (("X-API-Key", fake.opaque()),),
                          labels=found_in("path", ("iban", "3")) | KEY_HEADER,
                          auth=API_KEY_HEADER))
    for encode in (lambda e: e, lambda e: quote(e, safe="")):
        calls.append(Call("DELETE", "/api/v1/subscribers/" + encode(fake.email()), (("X-API-Key", fake.opaque()),),
                          labels=found_in("path", ("email", "3")) | KEY_HEADER,
                          auth=API_KEY_HEADER))

    key_id, secret = fake.aws_keys()
    integ = {"provider": "aws", "region": "eu-west-1", "accessKeyId": key_id, "secretAccessKey": secret,
             "sshPrivateKey": fake.private_key_pem(), "bucket": "acme-backups"}
    calls.append(Call("POST", "/api/v1/integrations", (("Content-Type", "application/json"),
                                                       ("Authorization", "Bearer " + fake.opaque())),
                      json.dumps(integ).encode(),
                      found_in("request.body", ("aws_access_key", "accessKeyId"), ("aws_secret_key", "secretAccessKey"),
                          ("private_key", "sshPrivateKey")) | BEARER_HEADER,
                      opaque))
    for uid in ("1001", "1003"):
        for what in ("contacts", "devices"):
            headers, auth = bearer_jwt(uid)
            calls.append(Call("GET", "/api/v1/users/%s/%s" % (uid, what), headers,
                              labels=JWT_HEADER, auth=auth))
    calls.append(Call("GET", "/api/v1/customers/export", (("Api-Key", fake.opaque()),),
                      labels=found_in("request.header", ("api_key", "api-key")),
                      auth={"scheme": "api-key-header", "name": "api-key"}))
    u = users["1003"]
    form = urlencode({"card_number": fake.card("mastercard"), "exp": "08/28", "name": u["name"],
                      "email": fake.email(), "postcode": "10115"}).encode()
    calls.append(Call("POST", "/checkout", (("Content-Type", "application/x-www-form-urlencoded"),
                                            ("Cookie", "lang=de; sid=%s" % u["session"])), form,
                      found_in("request.body", ("payment_card", "card_number"), ("email", "email"))
                      | found_in("cookie", ("secret", "sid")), {"scheme": "cookie-session", "name": "sid"}))
    calls.append(Call("GET", "/api/v1/verify?" + urlencode({"phone": fake.phone_e164(), "dob": fake.dob(),
                                                           "apikey": fake.opaque()}),
                      labels=found_in("query", ("phone", "phone"), ("date_of_birth", "dob"), ("api_key", "apikey")),
                      auth={"scheme": "api-key-query", "name": "apikey"}))
    for _ in range(2):
        calls.append(Call("POST", "/api/v1/phones/%s/verify" % quote(fake.phone_e164(), safe="+"),
                          (("Content-Type", "application/json"), ("Authorization", "Bearer " + fake.opaque())),
                          b'{"channel": "sms", "locale": "en-GB"}',
                          found_in("path", ("phone", "3")) | BEARER_HEADER,
                          opaque))
    claims = dict(CLAIMS, sub=fake.opaque("auth0|"), email=fake.email(), name=fake.name())
    since = urlencode({"since": 1733300000000, "limit": 50, "sku": data["orders"][0]["sku"]})
    calls.append(Call("GET", "/api/v1/orders?" + since, (("Cookie", "access_token=%s; theme=dark" % fake.jwt(claims)),),
                      labels=found_in("cookie", ("jwt", "access_token")),
                      auth={"scheme": "cookie-session", "name": "access_token", "alg": "HS256",
                            "claims": sorted(claims)}))
    form = urlencode({"grant_type": "client_credentials", "client_id": "shop-backoffice",
                      "client_secret": fake.opaque("cs_"), "scope": "orders:read"}).encode()
    calls.append(Call("POST", "/oauth/token", (("Content-Type", "application/x-www-form-urlencoded"),), form,
                      found_in("request.body", ("secret", "client_secret")), NONE))
    signup = {"firstName": "Ana", "lastName": "Costa", "email": fake.email(), "password": fake.password(),
              "birthDate": fake.fresh(lambda: "%02d/%02d/%d" % (fake.rng.randint(1, 12), fake.rng.randint(1, 28),
                                                                fake.rng.randint(1950, 2001))),
              "mobile": fake.phone_national(), "marketingOptIn": True, "referralCode": "FRIEND-2024"}
    calls.append(Call("POST", "/api/v1/signup", (("Content-Type", "application/json"),), json.dumps(signup).encode(),
                      found_in("request.body", ("email", "email"), ("password", "password"),
                               ("date_of_birth", "birthDate"), ("phone", "mobile")), NONE))
    invites = [{"email": fake.email(), "role": role} for role in ("admin", "viewer", "viewer")]
    calls.append(Call("POST", "/api/v1/invitations", (("Content-Type", "application/json"),
                                                      ("X-API-Key", fake.opaque())), json.dumps(invites).encode(),
                      found_in("request.body", ("email", "[].email")) | KEY_HEADER,
                      API_KEY_HEADER))
    # values as people type them into a form: grouped, dotted, spelled out, upper case
    update = {"email": fake.plant(fake.email().replace("@", "+shop@").upper()), "phone": fake.phone_written(),
              "altPhone": fake.phone_written(), "birthday": fake.birthday_written(), "ssn": fake.ssn(sep=""),
              "card": {"pan": fake.plant(fake.grouped(fake.card("visa"), " "), "card"), "holder": "ANA COSTA"},
              "bank": {"iban": fake.iban(grouped=True)}, "lastIp": fake.ipv6(),
              "credentials": {"currentPassword": fake.password(), "newPassword": fake.password()},
              "webhookSecret": fake.opaque("whsec_")}
    headers, auth = bearer_jwt("1002")
    calls.append(Call("PUT", "/api/v1/customers/5007", headers + (("Content-Type", "application/json"),),
                      json.dumps(update).encode(),
                      found_in("request.body", ("email", "email"), ("phone", "phone"), ("phone", "altPhone"),
                               ("date_of_birth", "birthday"), ("us_ssn", "ssn"), ("payment_card", "card.pan"),
                               ("iban", "bank.iban"), ("ip_address", "lastIp"),
                               ("password", "credentials.currentPassword"), ("password", "credentials.newPassword"),
                               ("secret", "webhookSecret")) | JWT_HEADER, auth))
    return calls


def grpc_calls(fake):
    """Unary calls to the Customers service, each with a bearer JWT in its metadata."""
    calls = []
    for method, request, labels in [
            ("GetCustomer", pb_message([(1, 1001)]), frozenset()),
            ("GetCustomer", pb_message([(1, 1003)]), frozenset()),
            ("UpdateContact", pb_message([(1, 1002), (2, fake.email()), (3, fake.phone_e164())]),
             found_in("request.body", ("email", "2"), ("phone", "3")))]:
        claims = dict(CLAIMS, sub=fake.opaque("auth0|"), email=fake.email(), name=fake.name())
        calls.append(Call("POST", "/%s/%s" % (GRPC_SERVICE, method), (("authorization", "Bearer " + fake.jwt(claims)),),
                          request, labels | JWT_HEADER, jwt_auth("HS256", claims)))
    return calls
