"""Formats and sensitive-data classes of single values; no value is kept.

`value_format` names the format of a string (integer, uuid, date-time, ...);
`value_classes` names the sensitive classes of a value, validated rather
than pattern-matched (Luhn and issued IIN ranges for cards, mod 97 and the
country length for IBANs, area/group/serial rules for SSNs, ...), together
with the classes the key it sits under implies (`name_classes`).

A value is judged whole: an email inside free text is not looked for.
Both functions run on every value enrichment sees, so they are Cython
(ext/classify.pxi): one pass over the string tells its length, first
character and kinds of characters, each test is guarded by those before any
regex runs, and the analysis of a key name is cached.

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

from .._core import H_AWS_SECRET, H_DOB, H_GENERIC_KEY, H_PHONE, H_SSN, H_VERSION, classify_setup, name_info, valid_date
from .._core import value_classes, value_format  # noqa: F401  (the module's API, Cython)
from .auth import is_key_header, jwt_info

SENSITIVE_CLASSES = ("payment_card", "iban", "us_ssn", "email", "phone", "jwt", "aws_access_key",
                     "aws_secret_key", "private_key", "bearer_token", "api_key", "password", "secret",
                     "ip_address", "date_of_birth")

# The dispatch and the validators of fixed layouts (numbers, ISO dates, IPv4,
# uuid, ulid, hex, base64, cards, SSNs, phones, AWS keys) are Cython; the
# validators below are called from there (classify_setup at the bottom).

# -- validators

_EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")
# look like top-level domains but are file names ("logo@2x.png")
_FILE_EXTENSIONS = frozenset(("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "css", "htm",
                              "html", "json", "xml", "txt", "pdf", "zip", "gz", "mp3", "mp4", "webm", "woff"))


def _is_email(value):
    if len(value) > 254 or " " in value:
        return False
    m = _EMAIL.fullmatch(value)
    return m is not None and len(m[1]) <= 64 and m[2].lower() not in _FILE_EXTENSIONS


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
        return len(value) == 8 and 1900 <= int(value[:4]) <= 2100 and valid_date(int(value[:4]), int(value[4:6]),
                                                                                  int(value[6:]))
    m = _NUMERIC_DATE.fullmatch(value)
    if m:
        a, b, c = m[1], int(m[3]), m[4]
        if len(a) == 4:
            return len(c) <= 2 and 1900 <= int(a) <= 2100 and valid_date(int(a), b, int(c))
        if len(c) != 4 or not 1900 <= int(c) <= 2100:
            return False
        year, a = int(c), int(a)
        return valid_date(year, b, a) or valid_date(year, a, b)
    m = _NAMED_DATE.fullmatch(value)
    if m is None:
        return False
    month = _MONTHS.get((m[2] or m[3])[:3].lower())
    return month is not None and 1900 <= int(m[5]) <= 2100 and valid_date(int(m[5]), month, int(m[1] or m[4]))


_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


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
    "attempts", "retries", "path", "domain", "secure", "start", "end", "started", "ended", "ms", "seconds",
    "ts", "timestamp"))


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


def _name_info(name):
    """(classes any credential-like value takes, hint bits) of a key name;
    the last component of a key path counts. Memoised by _core.name_info."""
    last = next((part for part in reversed(_NAME_PATH.split(name.strip())) if part), "")
    words = tuple(w.lower() for w in _NAME_PART.findall(last))
    if not words:
        return (), 0
    joined = "".join(words)
    hints = 0
    if not _PHONE_WORDS.isdisjoint(words) or "phone" in joined:
        hints |= H_PHONE
    if "ssn" in words or "socialsecurity" in joined:
        hints |= H_SSN
    if not _DOB_WORDS.isdisjoint(words) or "dateofbirth" in joined or "birthdate" in joined:
        hints |= H_DOB
    if not _VERSION_WORDS.isdisjoint(words):
        hints |= H_VERSION
    if "secret" in joined and ("aws" in words or "secretaccesskey" in joined):
        hints |= H_AWS_SECRET
    if words == ("key",):
        hints |= H_GENERIC_KEY
    if words[0] in _META_FIRST or words[-1] in _META_LAST:
        return (), hints & ~(H_PHONE | H_SSN)     # phone_count, ssn_verified: not the value itself
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


_HINTED = ((H_PHONE, "phone"), (H_SSN, "us_ssn"), (H_DOB, "date_of_birth"), (H_AWS_SECRET, "aws_secret_key"))


def name_classes(name):
    """The sensitive classes a key name points at: "password", "secret",
    "api_key" (given to any credential-like value under it) and "phone",
    "us_ssn", "date_of_birth", "aws_secret_key" (given only when the
    value validates)."""
    classes, hints = name_info(name)
    return classes + tuple(c for bit, c in _HINTED if hints & bit)


classify_setup(_is_email, _is_birth_date, _is_iban, _bearer_classes, jwt_info, _PRIVATE_KEY.search,
               ipaddress.IPv6Address, _name_info)
