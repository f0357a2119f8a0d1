"""Auth scheme of a request, told from where its credential sits and what
shape it has; no credential value is kept. Of a JWT only the header's `alg`
and the claim names are read."""
import base64
import binascii
import json
from functools import lru_cache

# header names that carry API keys (lowercase); also any name ending in these
_KEY_HEADER_ENDS = ("api-key", "apikey", "api_key", "auth-token", "access-token", "x-token", "x-key")
_KEY_QUERY = frozenset(("api_key", "apikey", "api-key", "key", "access_token", "token", "auth_token",
                        "accesstoken", "apitoken", "api_token", "auth"))
_SESSION_COOKIES = frozenset(("sid", "connect.sid", "jsessionid", "phpsessid", "asp.net_sessionid",
                              "auth", "token", "access_token", "jwt", "id_token", "remember_token"))
_JWT_CACHED_MAX = 2048      # longer tokens are read anew each time


def _b64url_json(part):
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def jwt_info(token):
    """(alg, sorted claim names) of a JWT, or None when `token` is not one.
    Remembered when short enough (a client sends its token again and again,
    and each is read twice: scheme and classes), so the claim list may be
    shared: read it, never change it."""
    return _jwt_info(token) if len(token) <= _JWT_CACHED_MAX else _jwt_info.__wrapped__(token)


@lru_cache(maxsize=1024)
def _jwt_info(token):
    parts = token.split(".")
    if len(parts) != 3 or len(parts[0]) < 10:
        return None
    header = _b64url_json(parts[0])
    if header is None or not isinstance(header.get("alg"), str):
        return None
    claims = _b64url_json(parts[1])
    return header["alg"][:16], sorted(str(k)[:64] for k in claims) if claims else []


def is_key_header(name):
    return name.endswith(_KEY_HEADER_ENDS)


def is_key_query(name):
    return name.lower() in _KEY_QUERY


def is_session_cookie(name):
    low = name.lower()
    return "sess" in low or low in _SESSION_COOKIES or low.endswith(("_token", "-token", "_auth"))


def _credential(value):
    """(scheme lowercased, credential) of an Authorization value."""
    scheme, _, cred = value.strip().partition(" ")
    return scheme.lower(), cred.strip()


def credential_classes(value):
    """Sensitive classes of an Authorization value: a JWT, an opaque bearer
    token, Basic's password, or some other scheme's secret."""
    scheme, cred = _credential(value)
    if scheme == "bearer":
        return ("jwt",) if jwt_info(cred) else ("bearer_token",)
    return ("password",) if scheme == "basic" else ("secret",)


def _with_jwt(auth, value):
    info = jwt_info(value)
    if info is not None:
        auth["alg"], auth["claims"] = info
    return auth


def auth_scheme(fields, query, cookies):
    """The sensor.auth map of a request. fields: kept (name, value) header
    pairs; query and cookies: (name, value) pairs. The strongest evidence
    wins: Authorization, then an API-key header, an API-key query parameter,
    a session cookie."""
    for name, value in fields:
        if name == "authorization" or name == "proxy-authorization":
            scheme, cred = _credential(value)
            if scheme == "bearer":
                info = jwt_info(cred)
                if info is None:
                    return {"scheme": "bearer-opaque", "name": name}
                return {"scheme": "bearer-jwt", "name": name, "alg": info[0], "claims": info[1]}
            if scheme == "basic":
                return {"scheme": "basic", "name": name}
            # Digest, AWS4-HMAC-SHA256, Negotiate, ...: the scheme token says it all
            return {"scheme": scheme[:32] or "unknown", "name": name}
    for name, value in fields:
        if is_key_header(name):
            return _with_jwt({"scheme": "api-key-header", "name": name}, value.strip())
    for name, value in query:
        if is_key_query(name) and value:
            return _with_jwt({"scheme": "api-key-query", "name": name[:64]}, value)
    for name, value in cookies:
        if is_session_cookie(name):
            return _with_jwt({"scheme": "cookie-session", "name": name[:64]}, value)
    return {"scheme": "none"}
