"""Formats and sensitive-data classes of single values; no value is kept.

`value_format` names the format of a string (integer, uuid, date-time, ...);
`value_classes` names the sensitive classes of a value, validated rather
than pattern-matched (Luhn and issued IIN ranges for cards, mod 97 and the
country length for IBANs, area/group/serial rules for SSNs, ...), together
with the classes the key it sits under implies (`name_classes`).

A value is judged whole: an email inside free text is not looked for.
Both functions run on every value enrichment sees, so each test is guarded
by the value's length and first character before any regex runs, and the
analysis of a key name is cached.

Decisions worth knowing:
- 13-digit Visa and Maestro numbers shorter than 16 digits are not cards:
  those lengths are retired and collide with EAN-13 barcodes.
- Phones: E.164 (+, 8-15 digits; +1 numbers must be valid NANP), NANP
  (415) 555-0132 / 415-555-0132 / 415.555.0132, and trunk-prefixed national
  numbers written with one kind of separator (020 7946 0958). Bare digits
  count only under a phone-like name.
- A name gives "password", "secret" or "api_key" for any value that is not
  empty, a boolean, a null word or a mask ("****"), unless the name is about
  the credential rather than the credential itself (password_length,
  token_type, is_password_set, session_timeout ...). CSRF tokens, session
  ids, OAuth tokens and auth codes are secrets; client/consumer/app secrets
  are both "api_key" and "secret". A name's "secret" is left out when the
  value is a credential class of its own (private key, AWS secret key,
  bearer token) and would only repeat it.
"""
import ipaddress
import re
from functools import lru_cache

from .auth import is_key_header, jwt_info

SENSITIVE_CLASSES = ("payment_card", "iban", "us_ssn", "email", "phone", "jwt", "aws_access_key",
                     "aws_secret_key", "private_key", "bearer_token", "api_key", "password", "secret",
                     "ip_address", "date_of_birth")

_MAX_FORMAT_LEN = 1 << 16
_DIGITS = frozenset("0123456789")
_NUMBER_START = frozenset("0123456789-.")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# -- formats

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"-?\d+")
_ISO_DATE_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)?)?")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2}")
_HAS_DIGIT = re.compile(r"\d")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")
# look like top-level domains but are file names ("logo@2x.png")
_FILE_EXTENSIONS = frozenset(("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "css", "htm",
                              "html", "json", "xml", "txt", "pdf", "zip", "gz", "mp3", "mp4", "webm", "woff"))
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid_date(year, month, day):
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month]:
        return False
    return month != 2 or day < 29 or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def _iso_date_kind(value):
    """"date" or "date-time" of an ISO 8601 / RFC 3339 value, else None."""
    m = _ISO_DATE_TIME.fullmatch(value)
    if m is None or not _valid_date(int(m[1]), int(m[2]), int(m[3])):
        return None
    if m[4] is None:
        return "date"
    if int(m[4]) > 23 or int(m[5]) > 59 or (m[6] is not None and int(m[6]) > 60):
        return None
    return "date-time"


def _is_ipv4(value):
    return 7 <= len(value) <= 15 and value.count(".") == 3 and _IPV4.fullmatch(value) is not None


def _is_ipv6(value):
    if len(value) > 45 or value.count(":") < 2 or ("::" not in value and value.count(":") != 7):
        return False
    if _IPV6_CHARS.fullmatch(value) is None:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _is_email(value):
    if len(value) > 254 or " " in value:
        return False
    m = _EMAIL.fullmatch(value)
    return m is not None and len(m[1]) <= 64 and m[2].lower() not in _FILE_EXTENSIONS


def _is_jwt(value):
    return value.startswith("ey") and value.count(".") == 2 and jwt_info(value) is not None


def _is_base64(value):
    """Decodable base64 (standard or url-safe, padded or not) that does not
    read as a word: upper and lower case letters and a digit or padding."""
    if _BASE64.fullmatch(value) is None:
        return False
    n = len(value)
    padding = n - len(value.rstrip("="))
    if (n % 4 != 0 if padding else n % 4 == 1) or value == value.lower() or value == value.upper():
        return False
    return padding > 0 or _HAS_DIGIT.search(value) is not None


def value_format(value):
    """The format of a string value, or None for plain text. The first
    test that holds wins, most specific first: integer, date/date-time,
    float, ipv4, boolean, uri, email, ipv6, uuid, ulid, jwt, hex, base64."""
    n = len(value)
    if not n or n > _MAX_FORMAT_LEN or not value.isascii():
        return None
    if value.isdigit():
        return "integer"
    c = value[0]
    if c in _NUMBER_START:
        if n >= 10 and value[4] == "-":
            kind = _iso_date_kind(value)
            if kind:
                return kind
        if _NUMBER.fullmatch(value):
            return "integer" if _INTEGER.fullmatch(value) else "float"
        if _is_ipv4(value):
            return "ipv4"
    elif n <= 5 and value.lower() in ("true", "false"):
        return "boolean"
    if " " in value:
        return None
    if "://" in value:
        return "uri" if _URI.fullmatch(value) else None
    if "@" in value:
        return "email" if _is_email(value) else None
    if ":" in value:
        return "ipv6" if _is_ipv6(value) else None
    if n == 36:
        if _UUID.fullmatch(value):
            return "uuid"
    elif n == 26 and _ULID.fullmatch(value):
        return "ulid"
    if c == "e" and _is_jwt(value):
        return "jwt"
    if n >= 8 and not n & 1 and _HEX.fullmatch(value):
        return "hex"
    if n >= 16 and _is_base64(value):
        return "base64"
    return None


# -- value classes

# name hints (bits): classes a value validates into only under such a name
_H_PHONE, _H_SSN, _H_DOB, _H_AWS_SECRET, _H_VERSION = 1, 2, 4, 8, 16
# a bare "key" is a generic word in JSON: only a token-like value makes it an API key
_H_GENERIC_KEY = 32

_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")    # digit sum of 2*d
_MAESTRO = frozenset((5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763))


def _card_length_ok(d):
    """Whether the digits sit in an issued IIN range with a length the brand issues."""
    n = len(d)
    p4 = int(d[:4])
    p2, p3 = p4 // 100, p4 // 10
    if p2 // 10 == 4:                                           # Visa
        return n == 16 or n == 19
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:                    # Mastercard
        return n == 16
    if p2 == 34 or p2 == 37:                                    # Amex
        return n == 15
    if 300 <= p3 <= 305 or p4 == 3095 or p2 == 36 or p2 == 38 or p2 == 39:    # Diners
        return 14 <= n <= 19
    # JCB, Discover, UnionPay, Mir, Maestro
    return 16 <= n <= 19 and (3528 <= p4 <= 3589 or p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or p2 == 62
                              or 2200 <= p4 <= 2204 or p4 in _MAESTRO)


def _luhn(d):
    return (sum(map(int, d[-1::-2])) + sum(map(int, d[-2::-2].translate(_LUHN_DOUBLE)))) % 10 == 0


def _is_card(value):
    """13-19 digits, bare or in groups split by one kind of separator."""
    if not value.isdigit():
        sep = " " if " " in value else "-"
        groups = value.split(sep)
        if len(groups) < 3 or not all(2 <= len(g) <= 6 and g.isdigit() for g in groups):
            return False
        value = "".join(groups)
    return 13 <= len(value) <= 19 and value.isascii() and _card_length_ok(value) and _luhn(value)


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_LETTERS = {ord(ch): str(10 + i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def _is_iban(value):
    """Country code, check digits and BBAN (printed in groups of 4 or not)
    of the country's length, mod 97 == 1."""
    if " " in value:
        groups = value.split(" ")
        if any(len(g) != 4 for g in groups[:-1]) or not 1 <= len(groups[-1]) <= 4:
            return False
        value = "".join(groups)
    value = value.upper()
    if _IBAN_LENGTHS.get(value[:2]) != len(value) or not value[2:4].isdigit() or not value.isalnum():
        return False
    return int((value[4:] + value[:4]).translate(_IBAN_LETTERS)) % 97 == 1


_SSN_FAKES = frozenset(("078051120", "219099999"))    # printed in ads and on wallets, never issued


def _ssn_ok(d):
    area = d[:3]
    return (area != "000" and area != "666" and area[0] != "9" and d[3:5] != "00" and d[5:] != "0000"
            and d not in _SSN_FAKES)


_NANP = re.compile(r"(?:1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}")
_TRUNK = re.compile(r"\(?0[1-9]\d{0,4}\)?([ ./-])\d{2,8}(?:\1\d{2,8}){0,4}")
_E164 = re.compile(r"\+[1-9]\d*(?:(?:[ .-]|[ .-]?\()\d+\)?)*")
_PHONE_ANY = re.compile(r"\+?[\d ().-]+")
_PHONE_SEPARATORS = str.maketrans("", "", " ().-/")


def _is_phone(value, named):
    """E.164, NANP or trunk-prefixed national forms; with a phone-like
    name any 7-15 digits in phone punctuation."""
    n = len(value)
    if n > 24:
        return False
    c = value[0]
    if c == "+":
        if _E164.fullmatch(value) is None:
            return False
        d = value.translate(_PHONE_SEPARATORS)[1:]
        if d[0] == "1":
            return len(d) == 11 and d[1] not in "01" and d[4] not in "01"
        return 8 <= len(d) <= 15
    if named:
        return _PHONE_ANY.fullmatch(value) is not None and 7 <= len(value.translate(_PHONE_SEPARATORS)) <= 15
    if n < 10:
        return False
    if c == "0" or (c == "(" and value[1:2] == "0"):
        return _TRUNK.fullmatch(value) is not None and 9 <= len(value.translate(_PHONE_SEPARATORS)) <= 12
    return _NANP.fullmatch(value) is not None


_NUMERIC_DATE = re.compile(r"(\d{1,4})([-/.])(\d{1,2})\2(\d{1,4})(?:[T ].*)?")
_NAMED_DATE = re.compile(r"(?:(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]{3,9})\.?|([A-Za-z]{3,9})\.?\s+(\d{1,2})"
                         r"(?:st|nd|rd|th)?,?)\s+(\d{4})")
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec"))}


def _is_birth_date(value):
    """A plausible date in a common spelling: ISO, dd/mm/yyyy, mm-dd-yyyy,
    dd.mm.yyyy, yyyymmdd, "15 Jan 1990", "January 15, 1990"."""
    if len(value) > 40:
        return False
    if value.isdigit():
        return len(value) == 8 and 1900 <= int(value[:4]) <= 2100 and _valid_date(int(value[:4]), int(value[4:6]),
                                                                                   int(value[6:]))
    m = _NUMERIC_DATE.fullmatch(value)
    if m:
        a, b, c = m[1], int(m[3]), m[4]
        if len(a) == 4:
            return len(c) <= 2 and 1900 <= int(a) <= 2100 and _valid_date(int(a), b, int(c))
        if len(c) != 4 or not 1900 <= int(c) <= 2100:
            return False
        year, a = int(c), int(a)
        return _valid_date(year, b, a) or _valid_date(year, a, b)
    m = _NAMED_DATE.fullmatch(value)
    if m is None:
        return False
    month = _MONTHS.get((m[2] or m[3])[:3].lower())
    return month is not None and 1900 <= int(m[5]) <= 2100 and _valid_date(int(m[5]), month, int(m[1] or m[4]))


def _is_ip(value, hints):
    """A valid IPv4 (not 0.0.0.0, not a version under a version name) or IPv6 (not ::) literal."""
    if _is_ipv4(value):
        return value != "0.0.0.0" and not hints & _H_VERSION
    return value != "::" and _is_ipv6(value)


def _is_ip_list(value, hints):
    """One address, or a list of them as X-Forwarded-For carries."""
    if "," not in value:
        return _is_ip(value, hints)
    return len(value) <= 1024 and all(_is_ip(part.strip(), hints) for part in value.split(","))


_AWS_KEY_PREFIXES = frozenset(("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"))
_AWS_KEY_TAIL = re.compile(r"[A-Z2-7]{16}")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _is_private_key(value):
    return "PRIVATE KEY" in value and _PRIVATE_KEY.search(value) is not None


def _bearer_classes(value):
    token = value[7:].strip()
    if not token:
        return ()
    if jwt_info(token) is not None:
        return ("jwt",)
    return ("bearer_token",) if _BEARER_TOKEN.fullmatch(token) else ()


# -- names

_NAME_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_NAME_PATH = re.compile(r"[.\[\]/]+")
_PASSWORD_WORDS = frozenset(("password", "passwd", "pwd", "pass", "passphrase", "passcode"))
_PHONE_WORDS = frozenset(("phone", "telephone", "tel", "mobile", "msisdn", "fax", "cell", "cellphone"))
_DOB_WORDS = frozenset(("dob", "birthdate", "birthday", "bday", "birth", "dateofbirth"))
_VERSION_WORDS = frozenset(("version", "versions", "ver", "build", "builds", "release"))
_SESSION_ENDS = frozenset(("session", "id", "key", "token", "cookie", "secret", "sessionid", "sessid"))
# pagination tokens are not credentials
_PUBLIC_TOKEN_OWNERS = frozenset(("page", "next", "continuation", "sync", "pagination", "cursor"))
_KEY_OWNERS = frozenset(("client", "consumer", "app", "application", "subscription", "developer", "license"))
_SECRET_KEY_OWNERS = frozenset(("private", "signing", "encryption", "master", "secret", "hmac"))
# a first or last word that makes the name about the credential, not the credential
_META_FIRST = frozenset(("is", "has", "use", "uses", "enable", "enabled", "require", "requires", "show", "forgot",
                         "num", "max", "min", "no", "should", "can", "allow", "supports", "needs", "count", "total"))
_META_LAST = frozenset((
    "type", "hint", "policy", "length", "len", "min", "max", "count", "expires", "expiry", "expiration", "exp",
    "ttl", "timeout", "at", "time", "date", "enabled", "required", "set", "present", "changed", "updated",
    "created", "reset", "strength", "rule", "rules", "status", "state", "method", "mode", "url", "uri",
    "endpoint", "name", "scope", "scopes", "format", "version", "provider", "header", "headers", "field",
    "param", "valid", "used", "usage", "sent", "verified", "prefix", "algorithm", "alg", "level", "source",
    "kind", "label", "description", "error", "errors", "message", "lifetime", "age", "duration", "limit",
    "attempts", "retries", "path", "domain", "secure", "start", "end", "started", "ended", "ms", "seconds"))
_NOT_CREDENTIALS = frozenset(("true", "false", "null", "none", "nil", "undefined", "n/a"))


def _is_secret_name(words, joined, pairs, api_key):
    if ("secret" in joined or "csrf" in joined or "xsrf" in joined or "credential" in joined
            or any(a in _SECRET_KEY_OWNERS and b == "key" for a, b in pairs)):
        return True
    if api_key:     # an API key's token/auth words say the same thing
        return False
    last = words[-1]
    if joined.endswith("token"):
        return len(words) < 2 or words[-2] not in _PUBLIC_TOKEN_OWNERS
    return (last == "auth" or last == "authorization" or joined == "sid" or joined == "authcode"
            or (last in ("code", "key") and ("auth" in words or "authorization" in words))
            or joined.endswith(("sessid", "sessionid")) or ("session" in words and last in _SESSION_ENDS))


@lru_cache(maxsize=8192)
def _name_info(name):
    """(classes any credential-like value takes, hint bits) of a key name;
    the last component of a key path counts."""
    last = next((part for part in reversed(_NAME_PATH.split(name.strip())) if part), "")
    words = tuple(w.lower() for w in _NAME_PART.findall(last))
    if not words:
        return (), 0
    joined = "".join(words)
    hints = 0
    if not _PHONE_WORDS.isdisjoint(words) or "phone" in joined:
        hints |= _H_PHONE
    if "ssn" in words or "socialsecurity" in joined:
        hints |= _H_SSN
    if not _DOB_WORDS.isdisjoint(words) or "dateofbirth" in joined or "birthdate" in joined:
        hints |= _H_DOB
    if not _VERSION_WORDS.isdisjoint(words):
        hints |= _H_VERSION
    if "secret" in joined and ("aws" in words or "secretaccesskey" in joined):
        hints |= _H_AWS_SECRET
    if words == ("key",):
        hints |= _H_GENERIC_KEY
    if words[0] in _META_FIRST or words[-1] in _META_LAST:
        return (), hints & ~(_H_PHONE | _H_SSN)     # phone_count, ssn_verified: not the value itself
    classes = []
    if not _PASSWORD_WORDS.isdisjoint(words) or "password" in joined or "passwd" in joined:
        classes.append("password")
    pairs = tuple(zip(words, words[1:]))
    api_key = ("apikey" in joined or "apitoken" in joined or "apisecret" in joined or words == ("key",)
               or is_key_header(last.lower()) or any(a in _KEY_OWNERS and b in ("key", "secret") for a, b in pairs))
    if api_key:
        classes.append("api_key")
    if _is_secret_name(words, joined, pairs, api_key):
        classes.append("secret")
    return tuple(classes), hints


_HINTED = ((_H_PHONE, "phone"), (_H_SSN, "us_ssn"), (_H_DOB, "date_of_birth"), (_H_AWS_SECRET, "aws_secret_key"))


def name_classes(name):
    """The sensitive classes a key name points at: "password", "secret",
    "api_key" (given to any credential-like value under it) and "phone",
    "us_ssn", "date_of_birth", "aws_secret_key" (given only when the
    value validates)."""
    classes, hints = _name_info(name)
    return classes + tuple(c for bit, c in _HINTED if hints & bit)


def _credential_like(value, hints):
    v = value.strip()
    if not v or (len(v) <= 9 and v.lower() in _NOT_CREDENTIALS) or not v.strip("*•"):
        return False
    return not hints & _H_GENERIC_KEY or (len(v) >= 16 and " " not in v)


_OWN_CREDENTIALS = frozenset(("private_key", "aws_secret_key", "bearer_token"))


def _value_only_classes(value, hints):
    """Classes the value has by itself (and, for hinted classes, with the
    name's hint bits)."""
    n = len(value)
    if n == 40 and hints & _H_AWS_SECRET and _AWS_SECRET.fullmatch(value):
        return ("aws_secret_key",)
    c = value[0]
    if c in _DIGITS:
        if n > 45:
            return ("date_of_birth",) if hints & _H_DOB and _is_birth_date(value) else ()
        if value.isdigit():
            if 13 <= n <= 19 and _is_card(value):
                return ("payment_card",)
            if n == 9 and hints & _H_SSN and _ssn_ok(value):
                return ("us_ssn",)
            if hints & _H_PHONE and 7 <= n <= 15:
                return ("phone",)
            if hints & _H_DOB and n == 8 and _is_birth_date(value):
                return ("date_of_birth",)
            return ()
        found = ("date_of_birth",) if hints & _H_DOB and _is_birth_date(value) else ()
        if n == 11 and value[3] == "-" and value[6] == "-":
            d = value[:3] + value[4:6] + value[7:]
            return found + ("us_ssn",) if d.isdigit() and _ssn_ok(d) else found
        if "@" in value:
            return ("email",) if _is_email(value) else ()
        if "," in value or ":" in value or _is_ipv4(value):
            return ("ip_address",) if _is_ip_list(value, hints) else found
        if c != "0" and n <= 23 and ("-" in value or " " in value) and _is_card(value):
            return ("payment_card",)
        if not found and _is_phone(value, hints & _H_PHONE):
            return ("phone",)
        return found
    if c == "+" or c == "(":
        return ("phone",) if _is_phone(value, hints & _H_PHONE) else ()
    if n >= 40 and _is_private_key(value):
        return ("private_key",)
    if "@" in value:
        return ("email",) if _is_email(value) else ()
    if c in _LETTERS:
        if c == "e" and _is_jwt(value):
            return ("jwt",)
        if (c == "B" or c == "b") and value[:7].lower() == "bearer ":
            return _bearer_classes(value)
        if n == 20 and value[:4] in _AWS_KEY_PREFIXES and _AWS_KEY_TAIL.fullmatch(value, 4):
            return ("aws_access_key",)
        if 15 <= n <= 42 and value[1] in _LETTERS and value[2:4].isdigit() and _is_iban(value):
            return ("iban",)
        if hints & _H_DOB and _is_birth_date(value):
            return ("date_of_birth",)
    if ":" in value and _is_ip_list(value, hints):
        return ("ip_address",)
    return ()


def value_classes(value, name=None):
    """The sensitive classes of a value (an empty tuple when none), from
    the value itself and from the key / parameter / header / cookie name it
    sits under (None when there is none, e.g. a path segment)."""
    if not value:
        return ()
    if name:
        named, hints = _name_info(name)
    else:
        named, hints = (), 0
    found = _value_only_classes(value, hints)
    if not named or not _credential_like(value, hints):
        return found
    if not found:
        return named
    if "secret" in named and not _OWN_CREDENTIALS.isdisjoint(found):
        named = tuple(c for c in named if c != "secret")
    return found + tuple(c for c in named if c not in found)
