"""The enrichment corpus's API: a small shop with realistic routes, synthetic
PII and decoys, served over HTTP/1.1 by aiohttp and over h2c by hypercorn,
and a gRPC Customers service (grpcio, protobuf written by hand).

One pure handler per route builds the reply from the data set and says which
sensitive classes its body carries (the app author's labels); both servers
call the same `Api.dispatch`, and the test calls it too to know what each
response held. Values come from `Fake`, seeded, each one unique and recorded
as planted so the leak test can look for it.

Run as a server: `python enrich_app.py DATA.json H1_PORT H2_PORT` (DATA.json:
`make_data` as JSON); serves until its stdin closes.
"""
import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import random
import re
import string
import sys
import uuid
import zlib
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote

import brotli
import zstandard

EPOCH_MS = 1733300000000        # decoy timestamps sit after this


def luhn_digit(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_complete(body):
    return body + luhn_digit(body)


def luhn_valid(number):
    return luhn_digit(number[:-1]) == number[-1]


def iban_check(country, bban):
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return "%02d" % (98 - int(digits) % 97)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Fake:
    """Synthetic values from a fixed seed; every sensitive one is unique and
    lands in `planted` (with its kind, for the leak test's variants)."""

    FIRST = ["Jane", "Omar", "Li", "Ana", "Kofi", "Marta", "Ravi", "Yuki", "Sven", "Ines", "Tariq", "Zoe"]
    LAST = ["Doe", "Haddad", "Wei", "Silva", "Mensah", "Kowalska", "Iyer", "Sato", "Berg", "Costa"]
    DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]
    ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.planted = {}           # value -> kind
        self.n = 0

    def plant(self, value, kind="text"):
        assert value not in self.planted, "planted values must be unique: %r" % value
        self.planted[value] = kind
        return value

    def fresh(self, make, kind="text"):
        """Plants the first value `make()` gives that was not planted before."""
        while True:
            value = make()
            if value not in self.planted:
                return self.plant(value, kind)

    def digits(self, n):
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def token(self, n, alphabet=string.ascii_letters + string.digits):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def name(self):
        return "%s %s" % (self.rng.choice(self.FIRST), self.rng.choice(self.LAST))

    def email(self):
        self.n += 1
        first, last = self.name().lower().split()
        return self.plant("%s.%s%d@%s" % (first, last, self.n, self.rng.choice(self.DOMAINS)))

    def card(self, brand=None):
        """A Luhn-valid number in an issued range (Visa, Mastercard, Amex)."""
        brand = brand or self.rng.choice(["visa", "mastercard", "amex"])
        prefix, length = {"visa": ("4" + self.digits(5), 16),
                          "mastercard": (str(self.rng.randint(51, 55)) + self.digits(4), 16),
                          "amex": (self.rng.choice(["34", "37"]) + self.digits(4), 15)}[brand]
        return self.fresh(lambda: luhn_complete(prefix + self.digits(length - 1 - len(prefix))), "card")

    def grouped(self, value, sep, size=4):
        """`value` as people type it: in groups of `size`, joined by `sep`."""
        return sep.join(value[i:i + size] for i in range(0, len(value), size))

    def card_like_decoy(self):
        """16 digits in the Visa range that fail Luhn: a tracking number, not a card."""
        body = "4" + self.digits(14)
        return body + str((int(luhn_digit(body)) + 1 + self.rng.randint(0, 8)) % 10)

    def luhn_non_card(self):
        """16 digits that pass Luhn but start with 9: no card network issues those."""
        return luhn_complete("9" + self.digits(14))

    def iban_bad_check(self):
        """An IBAN layout whose check digits are wrong (a payment reference)."""
        bban = self.digits(18)
        good = int(iban_check("DE", bban))
        return "DE%02d%s" % ((good + 1 + self.rng.randint(0, 90)) % 97 + 2, bban)

    def ean13(self):
        """A valid EAN-13 barcode that is not also Luhn-valid."""
        while True:
            body = "40" + self.digits(10)
            check = str(-sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10)
            if not luhn_valid(body + check):
                return body + check

    def iban(self, grouped=False):
        """An IBAN (mod 97 check digits), electronic form or print form in groups of four."""
        def make():
            country = self.rng.choice(["DE", "GB", "NL"])
            bban = {"DE": lambda: self.digits(18),
                    "GB": lambda: "NWBK" + self.digits(14),
                    "NL": lambda: "ABNA" + self.digits(10)}[country]()
            iban = country + iban_check(country, bban) + bban
            return self.grouped(iban, " ") if grouped else iban
        return self.fresh(make, "iban")

    def ssn(self, sep="-"):
        return self.fresh(lambda: sep.join(("%03d" % self.rng.choice([a for a in range(1, 900) if a != 666]),
                                            "%02d" % self.rng.randint(1, 99), "%04d" % self.rng.randint(1, 9999))))

    def phone_e164(self):
        # NANP 555 numbers and London's drama range (+44 20 7946 0xxx)
        return self.fresh(lambda: self.rng.choice(["+1415555" + self.digits(4), "+1212555" + self.digits(4),
                                                   "+442079460" + self.digits(3)]), "phone")

    def phone_national(self):
        return self.fresh(lambda: "(%s) 555-%s" % (self.rng.choice(["415", "312", "617"]), self.digits(4)), "phone")

    def ipv4(self):
        return self.fresh(lambda: "%s.%d" % (self.rng.choice(["203.0.113", "198.51.100"]), self.rng.randint(2, 254)))

    def ipv6(self):
        return self.fresh(lambda: "2001:db8:%x::%x" % (self.rng.randint(1, 0xffff), self.rng.randint(1, 0xffff)))

    def phone_written(self):
        """A phone as people write it: spaced international, dotted or dashed NANP."""
        return self.fresh(lambda: self.rng.choice(["+44 20 7946 0%s" % self.digits(3), "415.555.%s" % self.digits(4),
                                                   "+1-212-555-%s" % self.digits(4)]), "phone")

    def birthday_written(self):
        return self.fresh(lambda: "%s %d, %d" % (self.rng.choice(["April", "June", "October"]),
                                                 self.rng.randint(1, 28), self.rng.randint(1950, 2001)))

    def dob(self):
        return self.fresh(lambda: "%d-%02d-%02d" % (self.rng.randint(1950, 2001), self.rng.randint(1, 12),
                                                    self.rng.randint(1, 28)))

    def password(self):
        return self.fresh(lambda: self.token(6) + self.rng.choice("!#%&*") + self.token(8))

    def opaque(self, prefix=""):
        return self.fresh(lambda: prefix + self.token(32))

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def aws_keys(self):
        key_id = self.plant("AKIA" + self.token(16, string.ascii_uppercase + "234567"))
        secret = self.plant(self.token(40, string.ascii_letters + string.digits + "/+"))
        return key_id, secret

    def private_key_pem(self):
        b64 = base64.b64encode(self.ED25519_PKCS8 + bytes(self.rng.getrandbits(8) for _ in range(32))).decode()
        self.plant(b64)
        return "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % b64

    def jwt(self, claims, alg="HS256"):
        """A signed JWT; its payload and signature segments are planted too."""
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
        head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        body = b64url(json.dumps(claims).encode())
        sig = b64url(hmac.new(self.token(32).encode(), ("%s.%s" % (head, body)).encode(), digest).digest())
        self.plant(body)
        self.plant(sig)
        return self.plant("%s.%s.%s" % (head, body, sig))

    def basic(self, user):
        cred = self.plant(base64.b64encode(("%s:%s" % (user, self.password())).encode()).decode())
        return "Basic " + cred

    def millis(self):
        return EPOCH_MS + self.rng.randint(0, 10 ** 9)


def make_data(fake):
    """The shop's data set (JSON-able): what the servers answer from."""
    users = {}
    for uid in (1001, 1002, 1003):
        users[str(uid)] = {
            "id": uid, "name": fake.name(), "email": fake.email(), "phone": fake.phone_e164(),
            "nationalPhone": fake.phone_national(), "dateOfBirth": fake.dob(), "ssn": fake.ssn(),
            "lastLoginIp": fake.ipv4(), "loyaltyCard": fake.ean13(), "iban": fake.iban(),
            "createdAt": fake.millis(), "city": fake.rng.choice(["Berlin", "Leeds", "Utrecht"]),
            "session": fake.opaque(), "orders": [fake.uuid() for _ in range(2)],
            "contacts": [{"name": fake.name(), "email": fake.email(), "phone": fake.phone_e164(),
                          "relation": fake.rng.choice(["spouse", "parent", "friend"])} for _ in range(3)],
            "devices": {fake.uuid(): {"ip": ip, "model": fake.rng.choice(["Pixel 8", "iPhone 15"]),
                                      "lastSeen": "2024-11-%02dT08:15:00Z" % fake.rng.randint(1, 28)}
                        for ip in (fake.ipv4(), fake.ipv6())},
        }
    colours = ["red", "blue", "green", "black", "olive"]
    things = ["shoes", "hat", "scarf", "jacket", "socks"]
    # slugs are values too: none may leave before the route learner folds
    # them, which five products answering with one shape must make it do
    products = {fake.plant("%s-%s" % (c, t)): {
        "name": "%s %s" % (c.title(), t), "gtin": fake.ean13(), "price": round(fake.rng.uniform(5, 200), 2),
        "stock": fake.rng.randint(0, 90), "updatedAt": fake.millis()} for c, t in zip(colours, things)}
    accounts = {fake.iban(): round(fake.rng.uniform(0, 9000), 2) for _ in range(2)}
    # more than the sensor's default 64 KiB body cap, in clear: read as a prefix
    notes = "Prefers delivery after 6pm; leave parcels with the concierge. " * 25
    customers = [{"id": 5000 + i, "email": fake.email(), "iban": fake.iban(), "segment": "retail", "notes": notes}
                 for i in range(48)]
    orders = [{"orderNumber": fake.rng.choice(["415", "212"]) + fake.digits(7), "zip": fake.digits(5),
               "loyaltyId": fake.luhn_non_card(), "paymentReference": fake.iban_bad_check(),
               "sku": fake.ean13(), "total": round(fake.rng.uniform(5, 300), 2),
               "placedAt": "2024-10-%02dT12:00:00Z" % fake.rng.randint(1, 28)} for _ in range(4)]
    access = fake.jwt({"sub": fake.opaque("client|"), "scope": "orders:read", "iat": 1733300000, "exp": 1733303600})
    return {"users": users, "products": products, "accounts": accounts, "customers": customers, "orders": orders,
            "request_id": fake.plant(fake.uuid()),
            "oauth": {"access_token": access, "refresh_token": fake.opaque("rt_")},
            "decoys": {"tracking": [fake.card_like_decoy() for _ in range(6)]}}


class Reply(NamedTuple):
    status: int
    body: object = None             # dict -> JSON, str -> as is, None -> no body
    encoding: str = None            # gzip, br, zstd, deflate, deflate-raw
    ctype: str = "application/json"
    headers: tuple = ()
    findings: frozenset = frozenset()   # (class, in, name) the reply carries, by the app's labels
    chunked: bool = False           # HTTP/1.1: Transfer-Encoding: chunked


def encode(raw, encoding):
    if encoding == "gzip":
        return gzip.compress(raw, mtime=0)
    if encoding == "br":
        return brotli.compress(raw)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    if encoding == "deflate":
        return zlib.compress(raw)
    if encoding == "deflate-raw":
        c = zlib.compressobj(wbits=-15)
        return c.compress(raw) + c.flush()
    return raw


def decode(raw, encoding):
    return {"gzip": gzip.decompress, "br": brotli.decompress}.get(encoding, lambda b: b)(raw)


def found_in(where, *pairs):
    """Labels: (class, in, name) of each (class, name) pair seen in `where` (request.body, query, ...)."""
    return frozenset((cls, where, name) for cls, name in pairs)


class Api:
    """Routes of the shop: (method, template, pattern, handler)."""

    def __init__(self, data):
        self.data = data
        self.routes = []
        for method, template, handler in [
            ("GET", "/health", self.health),
            ("GET", "/api/v1/users/{userId}", self.user),
            ("GET", "/api/v1/users/{userId}/orders/{orderId}", self.order),
            ("GET", "/api/v1/products/{slug}", self.product),
            ("GET", "/api/v1/search", self.search),
            ("POST", "/login", self.login),
            ("GET", "/api/v1/profile", self.profile),
            ("POST", "/api/v1/payments", self.payment),
            ("POST", "/graphql", self.graphql),
            ("GET", "/graphql", self.graphql_get),
            ("POST", "/rpc", self.rpc),
            ("POST", "/soap", self.soap),
            ("POST", "/api/v1/uploads", self.upload),
            ("GET", "/api/v1/accounts/{iban}/balance", self.balance),
            ("DELETE", "/api/v1/subscribers/{email}", self.unsubscribe),
            ("POST", "/api/v1/integrations", self.integration),
            ("GET", "/api/v1/users/{userId}/contacts", self.contacts),
            ("GET", "/api/v1/users/{userId}/devices", self.devices),
            ("GET", "/api/v1/customers/export", self.export),
            ("POST", "/checkout", self.checkout),
            ("GET", "/api/v1/verify", self.verify),
            ("POST", "/api/v1/phones/{phone}/verify", self.phone_verify),
            ("GET", "/api/v1/orders", self.orders),
            ("POST", "/oauth/token", self.token),
            ("POST", "/api/v1/signup", self.signup),
            ("POST", "/api/v1/invitations", self.invite),
            ("PUT", "/api/v1/customers/{customerId}", self.update_customer),
        ]:
            pattern = re.compile("^%s$" % re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))
            self.routes.append((method, template, pattern, handler))

    @property
    def templates(self):
        return {template for _, template, _, _ in self.routes}

    def dispatch(self, method, target, headers, body):
        """Reply to a request; headers: lowercase name -> value; body: bytes
        as sent (its Content-Encoding still on)."""
        path, _, query = target.partition("?")
        body = decode(body, headers.get("content-encoding"))
        for m, _, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and m == method:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                return handler(params=params, query=dict(parse_qsl(query)), headers=headers, body=body)
        return Reply(404, {"error": "not found"})

    # -- handlers (keyword arguments: params, query, headers, body)

    def health(self, **_):
        return Reply(200, {"status": "ok", "uptimeMs": 86400123, "version": "1.4.2"})

    def user(self, params, **_):
        u = self.data["users"][params["userId"]]
        return Reply(200, {"id": u["id"], "name": u["name"], "email": u["email"], "phone": u["phone"],
                           "createdAt": u["createdAt"], "address": {"city": u["city"], "country": "DE"}},
                     "gzip", findings=found_in("response.body", ("email", "email"), ("phone", "phone")),
                     chunked=True)

    def order(self, params, **_):
        u = self.data["users"][params["userId"]]
        track = self.data["decoys"]["tracking"]
        p = list(self.data["products"].values())
        return Reply(200, {"orderId": params["orderId"], "userId": u["id"], "status": "shipped",
                           "items": [{"sku": p[0]["gtin"], "qty": 2, "unitPrice": p[0]["price"]},
                                     {"sku": p[1]["gtin"], "qty": 1, "unitPrice": p[1]["price"]}],
                           "payment": {"brand": "visa", "last4": "4242"},
                           "placedAt": u["createdAt"] + 5000, "trackingNumber": track[u["id"] % len(track)]},
                     "br")

    def product(self, params, **_):
        p = self.data["products"][params["slug"]]
        return Reply(200, dict(p, slug=params["slug"]), "zstd")

    def search(self, query, **_):
        hits = [{"slug": s, "name": p["name"], "price": p["price"]} for s, p in list(self.data["products"].items())[:3]]
        return Reply(200, {"page": int(query.get("page", 1)), "total": 57, "results": hits}, "gzip")

    def login(self, body, **_):
        form = dict(parse_qsl(body.decode()))
        u = next(u for u in self.data["users"].values() if u["email"] == form["username"])
        return Reply(200, {"ok": True, "userId": u["id"], "expiresAt": u["createdAt"] + 3600000},
                     headers=(("Set-Cookie", "sid=%s; Path=/; HttpOnly; SameSite=Lax" % u["session"]),),
                     findings=frozenset({("secret", "cookie", "sid")}))

    def session_user(self, headers):
        sid = re.search(r"(?:^|; )sid=([^;]+)", headers.get("cookie", "")).group(1)
        return next(u for u in self.data["users"].values() if u["session"] == sid)

    def profile(self, headers, **_):
        u = self.session_user(headers)
        return Reply(200, {"userId": u["id"], "email": u["email"], "phone": u["nationalPhone"],
                           "dateOfBirth": u["dateOfBirth"], "ssn": u["ssn"], "lastLoginIp": u["lastLoginIp"],
                           "loyaltyCard": u["loyaltyCard"], "memberSince": u["createdAt"]},
                     "br", findings=found_in("response.body", ("email", "email"), ("phone", "phone"),
                                                ("date_of_birth", "dateOfBirth"), ("us_ssn", "ssn"),
                                                ("ip_address", "lastLoginIp")))

    def payment(self, body, **_):
        pay = json.loads(body)
        number = pay["card"]["number"]
        return Reply(201, {"id": "pay_" + hashlib.sha1(number.encode()).hexdigest()[:24], "status": "captured",
                           "amount": pay["amount"], "currency": pay["currency"],
                           "card": {"brand": pay["card"]["brand"], "last4": number[-4:]},
                           "created": EPOCH_MS + int(number[-6:])})

    def graphql(self, body, **_):
        op = json.loads(body)
        if op["operationName"] == "GetUser":
            u = self.data["users"][op["variables"]["id"]]
            return Reply(200, {"data": {"user": {"id": str(u["id"]), "name": u["name"], "email": u["email"],
                                                 "phone": u["phone"]}}}, "gzip",
                         findings=found_in("response.body", ("email", "data.user.email"),
                                              ("phone", "data.user.phone")))
        if op["operationName"] == "Subscribe":
            return Reply(200, {"data": {"newsletter": {"subscribe": {"ok": True}}}})
        return Reply(200, {"data": {"updateEmail": {"ok": True, "verificationSent": True}}})

    def graphql_get(self, query, **_):
        """A GraphQL query sent as GET (cacheable): document and variables in the query string."""
        email = json.loads(query["variables"])["email"]
        u = next(u for u in self.data["users"].values() if u["email"] == email)
        return Reply(200, {"data": {"customer": {"id": str(u["id"]), "orders": [{"id": o} for o in u["orders"]]}}})

    def rpc(self, body, **_):
        call = json.loads(body)
        if call["method"] == "account.getBalance":
            return Reply(200, {"jsonrpc": "2.0", "id": call["id"],
                               "result": {"balance": 1234.5, "currency": "EUR", "asOf": EPOCH_MS + 77}})
        u = next(u for u in self.data["users"].values() if u["email"] == call["params"][0])
        return Reply(200, {"jsonrpc": "2.0", "id": call["id"],
                           "result": {"customerId": u["id"], "email": u["email"], "iban": u["iban"]}},
                     findings=found_in("response.body", ("email", "result.email"), ("iban", "result.iban")))

    SOAP = ('<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            'envelope/"><soap:Body>%s</soap:Body></soap:Envelope>')

    def soap(self, body, **_):
        uid = re.search(rb"<customerId>(\d+)</customerId>", body).group(1).decode()
        u = self.data["users"][uid]
        xml = self.SOAP % ('<GetCustomerResponse xmlns="urn:example:crm"><Customer><id>%s</id><name>%s</name>'
                           '<email>%s</email><iban>%s</iban></Customer></GetCustomerResponse>'
                           % (uid, u["name"], u["email"], u["iban"]))
        base = "Envelope.Body.GetCustomerResponse.Customer."
        return Reply(200, xml, ctype="text/xml; charset=utf-8",
                     findings=found_in("response.body", ("email", base + "email"), ("iban", base + "iban")))

    def upload(self, body, **_):
        return Reply(201, {"id": str(uuid.UUID(bytes=hashlib.md5(body).digest(), version=4)), "size": len(body),
                           "sha256": hashlib.sha256(body).hexdigest()})

    def balance(self, params, **_):
        return Reply(200, {"balance": self.data["accounts"][params["iban"]], "currency": "EUR",
                           "asOf": EPOCH_MS + 1234}, "gzip")

    def contacts(self, params, **_):
        u = self.data["users"][params["userId"]]
        return Reply(200, {"contacts": u["contacts"], "updatedAt": "2024-11-02T10:00:00Z"}, "deflate",
                     findings=found_in("response.body", ("email", "contacts[].email"), ("phone", "contacts[].phone")),
                     chunked=True)

    def devices(self, params, **_):
        u = self.data["users"][params["userId"]]
        return Reply(200, {"userId": u["id"], "devices": u["devices"]}, "deflate-raw",
                     findings=found_in("response.body", ("ip_address", "devices.{key}.ip")))

    def export(self, **_):
        return Reply(200, {"customers": self.data["customers"], "count": len(self.data["customers"])},
                     findings=found_in("response.body", ("email", "customers[].email"), ("iban", "customers[].iban")),
                     chunked=True)

    def checkout(self, **_):
        return Reply(303, headers=(("Location", "/orders/confirmation"),))

    def verify(self, **_):
        return Reply(200, {"match": True, "checkedAt": EPOCH_MS + 5})

    def phone_verify(self, **_):
        return Reply(202, {"status": "sent", "expiresIn": 300})

    def orders(self, **_):
        return Reply(200, {"orders": self.data["orders"], "next": None}, "gzip",
                     headers=(("X-Request-Id", self.data["request_id"]),
                              ("ETag", '"5d41402abc4b2a76b9719d911017c592"')))

    def token(self, **_):
        t = self.data["oauth"]
        return Reply(200, {"access_token": t["access_token"], "token_type": "Bearer", "expires_in": 3600,
                           "refresh_token": t["refresh_token"], "scope": "orders:read"},
                     headers=(("Cache-Control", "no-store"),),
                     findings=found_in("response.body", ("jwt", "access_token"), ("secret", "refresh_token")))

    def signup(self, body, **_):
        return Reply(201, {"id": 1000 + len(body), "status": "pending_verification"})

    def invite(self, body, **_):
        return Reply(207, [{"index": i, "status": 202} for i, _ in enumerate(json.loads(body))])

    def update_customer(self, params, body, **_):
        return Reply(200, {"id": int(params["customerId"]), "updated": sorted(json.loads(body)), "version": 7})

    def unsubscribe(self, **_):
        return Reply(204)

    def integration(self, body, **_):
        req = json.loads(body)
        return Reply(201, {"id": "int_" + hashlib.sha1(body).hexdigest()[:16], "provider": req["provider"],
                           "status": "active", "createdAt": EPOCH_MS + 99})


def reply_bytes(reply):
    """(status, [(name, value)], body bytes) as the servers send a Reply."""
    headers = list(reply.headers)
    if reply.body is None:
        return reply.status, headers, b""
    raw = reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode()
    headers.append(("Content-Type", reply.ctype))
    if reply.encoding:
        # raw deflate goes out labelled plain "deflate", as some servers send it
        headers.append(("Content-Encoding", reply.encoding.replace("deflate-raw", "deflate")))
        headers.append(("Vary", "Accept-Encoding"))
    return reply.status, headers, encode(raw, reply.encoding)


def aiohttp_app(api):
    from aiohttp import web

    async def handle(request):
        body = await request.read()
        reply = api.dispatch(request.method, request.raw_path, {k.lower(): v for k, v in request.headers.items()},
                             body)
        status, headers, raw = reply_bytes(reply)
        if not reply.chunked:
            resp = web.Response(status=status, body=raw or None)
            for name, value in headers:
                resp.headers.add(name, value)
            return resp
        # streamed as a compressing server sends it: chunks of the coded body
        resp = web.StreamResponse(status=status, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(raw), 4000):
            await resp.write(raw[i:i + 4000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def asgi_app(api):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        target = scope["raw_path"].decode() + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status, out, raw = reply_bytes(api.dispatch(scope["method"], target, headers, body))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in out]})
        await send({"type": "http.response.body", "body": raw})
    return app


# -- gRPC: protobuf messages written by hand (no generated code), field numbers as in a .proto

def pb_varint(n):
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_message(fields):
    """Encode [(number, int | str | bytes | list of fields)]: int as varint, the rest length-delimited."""
    out = b""
    for number, value in fields:
        if isinstance(value, int):
            out += pb_varint(number << 3) + pb_varint(value)
            continue
        raw = value.encode() if isinstance(value, str) else pb_message(value) if isinstance(value, list) else value
        out += pb_varint(number << 3 | 2) + pb_varint(len(raw)) + raw
    return out


def _pb_read_varint(buf, i):
    value = shift = 0
    while True:
        value |= (buf[i] & 0x7F) << shift
        i += 1
        if buf[i - 1] < 0x80:
            return value, i
        shift += 7


GRPC_SERVICE = "shop.v1.Customers"


def grpc_reply(data, method, request):
    """GetCustomer: request {1: id}; reply {1: id, 2: name, 3: email, 4: phone,
    5: {1: city, 2: country}}. UpdateContact: request {1: id, 2: email,
    3: phone}; reply {1: ok}."""
    if method == "UpdateContact":
        return Reply(200, pb_message([(1, 1)]), ctype="application/grpc")
    assert request[0] == 1 << 3, "field 1 (varint) first"
    u = data["users"][str(_pb_read_varint(request, 1)[0])]
    return Reply(200, pb_message([(1, u["id"]), (2, u["name"]), (3, u["email"]), (4, u["phone"]),
                                  (5, [(1, u["city"]), (2, "DE")])]), ctype="application/grpc",
                 findings=found_in("response.body", ("email", "3"), ("phone", "4")))


def grpc_server(data):
    """(server, port) of the Customers service on loopback."""
    from concurrent import futures

    import grpc

    def method(name):
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: grpc_reply(data, name, req).body)
    handler = grpc.method_handlers_generic_handler(GRPC_SERVICE, {m: method(m) for m in ("GetCustomer",
                                                                                       "UpdateContact")})
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


async def serve(api, h1_port, h2_port):
    from aiohttp import web
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    # bodies reach dispatch as sent: it removes Content-Encoding itself, as the ASGI side needs
    runner = web.AppRunner(aiohttp_app(api), auto_decompress=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", h1_port).start()
    config = Config()
    config.bind = ["127.0.0.1:%d" % h2_port]
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    h2 = asyncio.ensure_future(hypercorn_serve(asgi_app(api), config, shutdown_trigger=stop.wait))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)     # the test closes stdin to stop us
    stop.set()
    await h2
    await runner.cleanup()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        shop = Api(json.load(f))
    asyncio.run(serve(shop, int(sys.argv[2]), int(sys.argv[3])))
