# Value classifier: the dispatch of enrich/classify.py's value_format and
# value_classes.
#
# Both run on every JSON leaf, header and query value (a million calls each
# on the benchmark capture), and most values are settled by their length,
# first character and the kinds of characters they hold. One pass over the
# string gathers those; the decisions and the validators of fixed layouts
# (numbers, ISO dates, IPv4, uuid, ulid, hex, base64, cards, SSNs, phones, AWS
# keys) are C. The rarely reached ones (email, birth date, IBAN, JWT, bearer,
# private key, the IPv6 parse) and the analysis of key names stay in
# classify.py, set once by classify_setup().
#
# Digits are ASCII digits: value_format reads only ASCII text, and a value
# with other characters takes no class written in digits (value_only_classes).
from cpython.dict cimport PyDict_GetItemWithError
from libc.string cimport memchr
from cpython.ref cimport PyObject
from cpython.unicode cimport (PyUnicode_Check, PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_DATA,
                              PyUnicode_READ, PyUnicode_1BYTE_KIND, Py_UNICODE_ISSPACE)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)


# name hints (bits, set by classify._name_info): classes a value validates
# into only under such a name
cpdef enum:
    H_PHONE = 1
    H_SSN = 2
    H_DOB = 4
    H_AWS_SECRET = 8
    H_VERSION = 16
    H_GENERIC_KEY = 32      # a bare "key" is a generic word in JSON: only a token-like value makes it an API key

# character classes: each character is exactly one of K_DIGIT .. K_WIDE
cdef enum:
    K_DIGIT = 1 << 0        # 0-9
    K_HEXL = 1 << 1         # a-f
    K_LOWER = 1 << 2        # g-z
    K_HEXU = 1 << 3         # A-F
    K_UPPER = 1 << 4        # G-Z
    K_PLUS = 1 << 5
    K_SLASH = 1 << 6
    K_UNDER = 1 << 7
    K_DASH = 1 << 8
    K_EQ = 1 << 9
    K_SPACE = 1 << 10
    K_AT = 1 << 11
    K_COLON = 1 << 12
    K_COMMA = 1 << 13
    K_DOT = 1 << 14
    K_OTHER = 1 << 15       # any other ASCII character
    K_WIDE = 1 << 16        # not ASCII
    K_ALNUM = K_DIGIT | K_HEXL | K_LOWER | K_HEXU | K_UPPER

cdef uint32_t _CHAR_CLASS[256]      # of Latin-1 characters; wider ones by char_class()


cdef void init_char_classes():
    cdef int ch
    cdef uint32_t k
    for ch in range(256):
        if ch >= 128:
            k = K_WIDE
        elif 48 <= ch <= 57:
            k = K_DIGIT
        elif 97 <= ch <= 102:
            k = K_HEXL
        elif 103 <= ch <= 122:
            k = K_LOWER
        elif 65 <= ch <= 70:
            k = K_HEXU
        elif 71 <= ch <= 90:
            k = K_UPPER
        else:
            k = K_OTHER
        _CHAR_CLASS[ch] = k
    for ch, k in ((43, K_PLUS), (47, K_SLASH), (95, K_UNDER), (45, K_DASH), (61, K_EQ), (32, K_SPACE), (64, K_AT),
                  (58, K_COLON), (44, K_COMMA), (46, K_DOT)):
        _CHAR_CLASS[ch] = k


init_char_classes()


cdef inline uint32_t char_class(uint32_t ch) noexcept:
    if ch < 256:
        return _CHAR_CLASS[ch]
    return K_WIDE


cdef struct ValueScan:
    Py_ssize_t n
    int kind
    void* data
    uint32_t c0         # first character (n > 0)
    uint32_t seen       # classes (K_DIGIT .. K_WIDE) of some character
    uint32_t every      # classes every character has: K_DIGIT, all digits


cdef void scan_value(str value, ValueScan* s) noexcept:
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(value)
    cdef int kind = PyUnicode_KIND(value)
    cdef void* data = PyUnicode_DATA(value)
    cdef const uint8_t* p = <const uint8_t*>data
    cdef uint32_t k, seen = 0, every = 0xFFFFFFFF
    for i in range(n):
        k = _CHAR_CLASS[p[i]] if kind == PyUnicode_1BYTE_KIND else char_class(PyUnicode_READ(kind, data, i))
        seen |= k
        every &= k
    s.n, s.kind, s.data = n, kind, data
    s.c0 = PyUnicode_READ(kind, data, 0) if n else 0
    s.seen, s.every = seen, every


cdef inline uint32_t char_at(ValueScan* s, Py_ssize_t i) noexcept:
    return PyUnicode_READ(s.kind, s.data, i)


cdef Py_ssize_t count_of(ValueScan* s, uint32_t ch) noexcept:
    """How many times ch occurs (counted when a test needs it: most values never get there)."""
    cdef Py_ssize_t i, count = 0
    for i in range(s.n):
        count += char_at(s, i) == ch
    return count


cdef inline bint is_ascii_digit(uint32_t ch) noexcept:
    return 48 <= ch <= 57


cdef inline bint is_ascii_letter(uint32_t ch) noexcept:
    return 65 <= (ch & ~32) <= 90


cdef Py_ssize_t decimal_run(ValueScan* s, Py_ssize_t i) noexcept:
    """How many digits start at i."""
    cdef Py_ssize_t j = i
    while j < s.n and is_ascii_digit(char_at(s, j)):
        j += 1
    return j - i


cdef int ascii_number(ValueScan* s, Py_ssize_t i, Py_ssize_t width) noexcept:
    """The ASCII digits s[i:i+width] as a number, -1 when they are not all digits."""
    cdef int v = 0
    cdef Py_ssize_t j
    cdef uint32_t ch
    if i + width > s.n:
        return -1
    for j in range(i, i + width):
        ch = char_at(s, j)
        if not is_ascii_digit(ch):
            return -1
        v = v * 10 + <int>(ch - 48)
    return v


# -- formats

cdef Py_ssize_t _MAX_FORMAT_LEN = 1 << 16
cdef unsigned char _DAYS_IN_MONTH[13]
_DAYS_IN_MONTH[:] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cpdef bint valid_date(long year, long month, long day) noexcept:
    """A day of the Gregorian calendar (year >= 0)."""
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month]:
        return False
    return month != 2 or day < 29 or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


cdef enum:
    DATE = 1
    DATE_TIME = 2


cdef int iso_date_kind(ValueScan* s) noexcept:
    """DATE or DATE_TIME of an ISO 8601 / RFC 3339 value (ASCII, 10+
    characters), else 0: yyyy-mm-dd, then [Tt ]hh:mm[:ss[.fraction]] and a
    zone Z, +hh, +hhmm or +hh:mm."""
    cdef Py_ssize_t i, n = s.n, f
    cdef int year = ascii_number(s, 0, 4), month = ascii_number(s, 5, 2), day = ascii_number(s, 8, 2)
    cdef int hour, minute, second = 0
    cdef uint32_t c
    if year < 0 or char_at(s, 4) != 45 or char_at(s, 7) != 45 or not valid_date(year, month, day):
        return 0            # month and day not digits (-1) are no valid date
    if n == 10:
        return DATE
    c = char_at(s, 10)
    if not (c == 84 or c == 116 or c == 32) or n < 16 or char_at(s, 13) != 58:      # T t ' ', hh:mm
        return 0
    hour, minute = ascii_number(s, 11, 2), ascii_number(s, 14, 2)
    if hour < 0 or minute < 0:
        return 0
    i = 16
    if i < n and char_at(s, i) == 58:                   # :ss
        second = ascii_number(s, i + 1, 2)
        if second < 0:
            return 0
        i += 3
        if i < n and (char_at(s, i) == 46 or char_at(s, i) == 44):     # .fraction ,fraction
            f = decimal_run(s, i + 1)
            if not 1 <= f <= 9:
                return 0
            i += 1 + f
    if i < n:
        c = char_at(s, i)
        if c == 90 or c == 122:                         # Z z
            i += 1
        elif c == 43 or c == 45:                        # +hh[[:]mm]
            if ascii_number(s, i + 1, 2) < 0:
                return 0
            i += 3
            if i < n:
                if char_at(s, i) == 58:
                    i += 1
                if ascii_number(s, i, 2) < 0:
                    return 0
                i += 2
        else:
            return 0
    if i != n or hour > 23 or minute > 59 or second > 60:
        return 0
    return DATE_TIME


cdef int number_kind(ValueScan* s) noexcept:
    """1 for an integer, 2 for another number, 0 when the value is not
    -?(\\d+(\\.\\d+)?|\\.\\d+)([eE][+-]?\\d+)? (ASCII)."""
    cdef Py_ssize_t i = 0, d, n = s.n
    cdef bint integer = True
    if char_at(s, 0) == 45:
        i = 1
    d = decimal_run(s, i)
    i += d
    if i < n and char_at(s, i) == 46:
        d = decimal_run(s, i + 1)
        if not d:
            return 0
        i += 1 + d
        integer = False
    elif not d:
        return 0
    if i < n and (char_at(s, i) == 101 or char_at(s, i) == 69):
        i += 1
        if i < n and (char_at(s, i) == 43 or char_at(s, i) == 45):
            i += 1
        d = decimal_run(s, i)
        if not d:
            return 0
        i += d
        integer = False
    if i != n:
        return 0
    return 1 if integer else 2


cdef bint octet_ok(ValueScan* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """s[i:i+n] is 25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d."""
    cdef uint32_t a, b, c
    if not 1 <= n <= 3:
        return False
    a = char_at(s, i)
    if n == 1:
        return is_ascii_digit(a)
    if n == 2:
        return 49 <= a <= 57 and is_ascii_digit(char_at(s, i + 1))
    b, c = char_at(s, i + 1), char_at(s, i + 2)
    if a == 50:
        return (b == 53 and 48 <= c <= 53) or (48 <= b <= 52 and is_ascii_digit(c))
    return a == 49 and is_ascii_digit(b) and is_ascii_digit(c)


cdef bint is_ipv4(ValueScan* s) noexcept:
    """A dotted quad, no leading zeros."""
    cdef Py_ssize_t i = 0, j, part
    if not 7 <= s.n <= 15 or count_of(s, 46) != 3:
        return False
    for part in range(4):
        j = i
        while j < s.n and char_at(s, j) != 46:
            j += 1
        if not octet_ok(s, i, j - i):
            return False
        i = j + 1
    return True


cdef object _ipv6_address = None


cdef bint is_ipv6(str value, ValueScan* s) except -1:
    cdef Py_ssize_t colons
    if s.n > 45:
        return False
    colons = count_of(s, 58)
    if colons < 2 or (colons != 7 and "::" not in value):
        return False
    if s.seen & ~(K_DIGIT | K_HEXL | K_HEXU | K_COLON | K_DOT):
        return False
    try:
        _ipv6_address(value)
    except ValueError:
        return False
    return True


cdef bint is_uri(ValueScan* s) noexcept:
    """scheme://rest, nothing blank in rest."""
    cdef Py_ssize_t i = 1, j
    cdef uint32_t ch
    if not is_ascii_letter(s.c0):
        return False
    while i < s.n:
        ch = char_at(s, i)
        if ch >= 128 or not _CHAR_CLASS[ch] & (K_ALNUM | K_PLUS | K_DOT | K_DASH):
            break
        i += 1
    if i + 3 >= s.n or char_at(s, i) != 58 or char_at(s, i + 1) != 47 or char_at(s, i + 2) != 47:
        return False
    for j in range(i + 3, s.n):
        if Py_UNICODE_ISSPACE(char_at(s, j)):
            return False
    return True


cdef bint is_uuid(ValueScan* s) noexcept:
    cdef Py_ssize_t i
    cdef uint32_t ch
    for i in range(36):
        ch = char_at(s, i)
        if i == 8 or i == 13 or i == 18 or i == 23:
            if ch != 45:
                return False
        elif ch >= 128 or not _CHAR_CLASS[ch] & (K_DIGIT | K_HEXL | K_HEXU):
            return False
    return True


cdef bint is_ulid(ValueScan* s) noexcept:
    """[0-7] and 25 of Crockford's base32 (upper case)."""
    cdef Py_ssize_t i
    cdef uint32_t ch = s.c0
    if not 48 <= ch <= 55:
        return False
    for i in range(1, 26):
        ch = char_at(s, i)
        if not (is_ascii_digit(ch) or (65 <= ch <= 90 and ch != 73 and ch != 76 and ch != 79 and ch != 85)):
            return False
    return True


cdef inline bint is_hex(ValueScan* s) noexcept:
    """One case of hex digits."""
    return not s.seen & ~(K_DIGIT | K_HEXL) or not s.seen & ~(K_DIGIT | K_HEXU)


cdef bint is_base64(ValueScan* s) noexcept:
    """Decodable base64 (standard or url-safe, padded or not) that does not
    read as a word: upper and lower case letters and a digit or padding."""
    cdef Py_ssize_t i, pad = 0, n = s.n
    if s.seen & ~(K_ALNUM | K_PLUS | K_SLASH | K_EQ) and s.seen & ~(K_ALNUM | K_UNDER | K_DASH | K_EQ):
        return False
    if s.seen & K_EQ:
        while pad < n and char_at(s, n - 1 - pad) == 61:
            pad += 1
        if pad > 2 or pad == n:
            return False
        for i in range(n - pad):
            if char_at(s, i) == 61:
                return False
    if (n % 4 != 0 if pad else n % 4 == 1) or not s.seen & (K_HEXU | K_UPPER) or not s.seen & (K_HEXL | K_LOWER):
        return False
    return pad > 0 or (s.seen & K_DIGIT) != 0


cdef object _jwt_info = None


cdef bint is_jwt(str value, ValueScan* s) except -1:
    """Starts "ey" (the caller saw the "e"), three parts, a JWT header."""
    return s.n >= 2 and char_at(s, 1) == 121 and count_of(s, 46) == 2 and _jwt_info(value) is not None


cdef inline bint is_boolean(ValueScan* s) noexcept:
    """true or false in any case (ASCII)."""
    cdef Py_ssize_t i
    cdef const char* word
    if s.n == 4:
        word = "true"
    elif s.n == 5:
        word = "false"
    else:
        return False
    for i in range(s.n):
        if char_at(s, i) | 32 != <uint32_t>word[i]:
            return False
    return True


cpdef str value_format(value):
    """The format of a string value, or None for plain text. The first
    test that holds wins, most specific first: integer, date/date-time,
    float, ipv4, boolean, uri, email, ipv6, uuid, ulid, jwt, hex, base64."""
    cdef ValueScan s
    cdef str text
    cdef Py_ssize_t n
    cdef uint32_t c
    cdef bint number
    cdef int kind
    if not PyUnicode_Check(value):
        raise TypeError("value_format() takes a str, not %s" % type(value).__name__)
    text = <str>value                   # a subclass of str too
    n = PyUnicode_GET_LENGTH(text)
    if not n or n > _MAX_FORMAT_LEN or not PyUnicode_IS_ASCII(text):
        return None
    c = PyUnicode_READ(PyUnicode_1BYTE_KIND, PyUnicode_DATA(text), 0)
    number = is_ascii_digit(c) or c == 45 or c == 46
    if not number and memchr(PyUnicode_DATA(text), 32, n) != NULL:
        return None         # text: only a number or a date-time may hold a space, settled before reading it all
    scan_value(text, &s)
    if s.every & K_DIGIT:
        return "integer"
    if number:
        if n >= 10 and char_at(&s, 4) == 45:
            kind = iso_date_kind(&s)
            if kind:
                return "date" if kind == DATE else "date-time"
        kind = number_kind(&s)
        if kind:
            return "integer" if kind == 1 else "float"
        if is_ipv4(&s):
            return "ipv4"
    elif n <= 5 and is_boolean(&s):
        return "boolean"
    if s.seen & K_SPACE:
        return None
    if s.seen & K_COLON and "://" in text:
        return "uri" if is_uri(&s) else None
    if s.seen & K_AT:
        return "email" if _is_email(text) else None
    if s.seen & K_COLON:
        return "ipv6" if is_ipv6(text, &s) else None
    if n == 36:
        if is_uuid(&s):
            return "uuid"
    elif n == 26 and is_ulid(&s):
        return "ulid"
    if c == 101 and is_jwt(text, &s):
        return "jwt"
    if n >= 8 and not n & 1 and is_hex(&s):
        return "hex"
    if n >= 16 and is_base64(&s):
        return "base64"
    return None


# -- value classes

cdef object _is_email = None, _is_birth_date = None, _is_iban = None
cdef object _bearer_classes = None, _private_key_search = None, _name_info = None
cdef dict _name_infos = {}
cdef Py_ssize_t _NAME_INFOS_MAX = 8192
cdef Py_ssize_t _CACHED_NAME_MAX = 256          # longer names are analysed each time, not kept


def classify_setup(is_email, is_birth_date, is_iban, bearer_classes, jwt_info, private_key_search, ipv6_address,
                   name_info):
    """Wires the dispatch to classify.py's validators (once, at import)."""
    global _is_email, _is_birth_date, _is_iban, _bearer_classes, _jwt_info, _private_key_search, _ipv6_address
    global _name_info
    _is_email, _is_birth_date, _is_iban = is_email, is_birth_date, is_iban
    _bearer_classes, _jwt_info, _private_key_search = bearer_classes, jwt_info, private_key_search
    _ipv6_address, _name_info = ipv6_address, name_info
    _name_infos.clear()


cpdef tuple name_info(name):
    """(classes any credential-like value takes, hint bits) of a key name,
    memoised: the same names come back in every body."""
    cdef PyObject* hit = PyDict_GetItemWithError(_name_infos, name)     # an unhashable name raises
    if hit != NULL:
        return <tuple>hit
    cdef tuple info = _name_info(name)
    if len(name) <= _CACHED_NAME_MAX:
        remember(_name_infos, name, info, _NAME_INFOS_MAX)
    return info


cdef bint card_length_ok(int p4, Py_ssize_t n) noexcept:
    """Whether a number starting p4 sits in an issued IIN range with a length the brand issues."""
    cdef int p2 = p4 // 100, p3 = p4 // 10
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
                              or 2200 <= p4 <= 2204 or p4 == 5018 or p4 == 5020 or p4 == 5038 or p4 == 5893
                              or p4 == 6304 or p4 == 6759 or p4 == 6761 or p4 == 6762 or p4 == 6763)


cdef bint card_ok(const unsigned char* d, Py_ssize_t n) noexcept:
    """13-19 digits (values 0-9) of an issued range and length, Luhn-valid."""
    cdef Py_ssize_t i
    cdef int total = 0, x
    if not 13 <= n <= 19 or not card_length_ok(d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3], n):
        return False
    for i in range(n):
        x = d[n - 1 - i]
        if i & 1:
            x = x * 2 - 9 if x >= 5 else x * 2
        total += x
    return total % 10 == 0


cdef bint is_card(ValueScan* s) noexcept:
    """13-19 ASCII digits, bare or in 3+ groups of 2-6 split by one kind of
    separator (a space when there is one, else '-')."""
    cdef unsigned char d[19]
    cdef Py_ssize_t i, nd = 0, group = 0, groups = 1
    cdef uint32_t ch, sep = 32 if s.seen & K_SPACE else 45
    if s.every & K_DIGIT:
        if s.n > 19:
            return False
        for i in range(s.n):
            d[i] = <unsigned char>(char_at(s, i) - 48)
        return card_ok(d, s.n)
    for i in range(s.n):
        ch = char_at(s, i)
        if ch == sep:
            if not 2 <= group <= 6:
                return False
            groups += 1
            group = 0
        elif is_ascii_digit(ch) and nd < 19:
            d[nd] = <unsigned char>(ch - 48)
            nd += 1
            group += 1
        else:
            return False
    return groups >= 3 and 2 <= group <= 6 and card_ok(d, nd)


cdef bint ssn_ok(const uint32_t* d) noexcept:
    """Area, group and serial rules of 9 digits; not the two published fakes."""
    cdef int i
    cdef bint zero_serial = True
    for i in range(5, 9):
        zero_serial = zero_serial and d[i] == 48
    if zero_serial or d[0] == 57 or (d[3] == 48 and d[4] == 48):
        return False
    if (d[0] == 48 and d[1] == 48 and d[2] == 48) or (d[0] == 54 and d[1] == 54 and d[2] == 54):
        return False
    return not (matches_ascii(d, "078051120") or matches_ascii(d, "219099999"))    # printed in ads, never issued


cdef inline bint matches_ascii(const uint32_t* d, const char* word) noexcept:
    cdef int i = 0
    while word[i]:
        if d[i] != <uint32_t>word[i]:
            return False
        i += 1
    return True


cdef bint is_ssn(ValueScan* s) noexcept:
    """ddddddddd (the caller saw 9 digits) or ddd-dd-dddd (or spaced)."""
    cdef uint32_t d[9]
    cdef Py_ssize_t i, j = 0
    for i in range(s.n):
        if s.n == 11 and (i == 3 or i == 6):
            continue
        d[j] = char_at(s, i)
        if not is_ascii_digit(d[j]):
            return False
        j += 1
    return ssn_ok(d)


# Vendors' API keys and tokens say what they are by a prefix (as secret
# scanners read them): (prefix, shortest whole length). Only token characters
# may follow; "-" is one, so "sk-" would also take words: left out.
cdef tuple _VENDOR_KEYS = (
    ("ghp_", 40), ("gho_", 40), ("ghu_", 40), ("ghs_", 40), ("ghr_", 40), ("github_pat_", 40),   # GitHub
    ("glpat-", 26), ("xoxb-", 24), ("xoxp-", 24), ("xoxa-", 24), ("xoxr-", 24), ("xoxe-", 24),   # GitLab, Slack
    ("sk_live_", 24), ("sk_test_", 24), ("rk_live_", 24), ("rk_test_", 24),                     # Stripe
    ("AIza", 39), ("npm_", 40), ("shpat_", 38), ("shpss_", 38), ("hf_", 34), ("SG.", 60),      # Google, npm, Shopify, HF, SendGrid
)


cdef bint is_vendor_key(str value, Py_ssize_t n) except -1:
    cdef str prefix
    cdef Py_ssize_t shortest, i
    cdef Py_UCS4 ch
    for prefix, shortest in _VENDOR_KEYS:
        if n >= shortest and value.startswith(prefix):
            for i in range(len(prefix), n):
                ch = value[i]
                if not (ch < 128 and (is_ascii_letter(ch) or is_ascii_digit(ch) or ch == 95 or ch == 45 or ch == 46)):
                    return False
            return True
    return False


cdef bint is_aws_access_key(ValueScan* s) noexcept:
    """An access key id: a known 4-letter prefix and 16 base32 characters (20 in all)."""
    cdef const char* prefixes = "AKIAASIAAGPAAIDAAROAANPAANVAAIPA"
    cdef Py_ssize_t i, p
    cdef uint32_t ch
    for p in range(0, 32, 4):
        if matches_prefix(s, prefixes + p, 4):
            break
    else:
        return False
    for i in range(4, 20):
        ch = char_at(s, i)
        if not (65 <= ch <= 90 or 50 <= ch <= 55):
            return False
    return True


cdef inline bint matches_prefix(ValueScan* s, const char* word, Py_ssize_t n) noexcept:
    """s starts with the n characters of word (ignoring case when they are lower case letters)."""
    cdef Py_ssize_t i
    cdef uint32_t ch
    if s.n < n:
        return False
    for i in range(n):
        ch = char_at(s, i)
        if ch != <uint32_t>word[i] and not (97 <= word[i] <= 122 and ch == <uint32_t>(word[i] - 32)):
            return False
    return True


cdef inline uint32_t char_or_0(ValueScan* s, Py_ssize_t i) noexcept:
    """The character at i, 0 (matches nothing) past the end."""
    return char_at(s, i) if i < s.n else 0


cdef inline bint is_2_to_9(uint32_t ch) noexcept:
    return 50 <= ch <= 57


cdef inline bint is_phone_separator(uint32_t ch) noexcept:
    """One of " ().-/"."""
    return ch == 32 or ch == 40 or ch == 41 or ch == 46 or ch == 45 or ch == 47


cdef bint is_e164(ValueScan* s) noexcept:
    """+[1-9]\\d*(([ .-]|[ .-]?\\()\\d+(\\)\\d*)?)* with 8-15 digits; +1 numbers
    must be valid NANP (11 digits, area and exchange not starting 0 or 1)."""
    cdef Py_ssize_t i, d, n = s.n
    cdef uint32_t ch
    cdef uint32_t digits[5]
    if not 49 <= char_or_0(s, 1) <= 57:
        return False
    i = 2 + decimal_run(s, 2)
    while i < n:
        ch = char_at(s, i)
        if ch == 32 or ch == 46 or ch == 45:
            i += 1
            if char_or_0(s, i) == 40:
                i += 1
        elif ch != 40:
            return False
        else:
            i += 1
        d = decimal_run(s, i)
        if not d:
            return False
        i += d
        if char_or_0(s, i) == 41:       # "(0)20 7946 0958", "(415)555-0132": digits may follow it
            i += 1
            i += decimal_run(s, i)
    d = 0                               # the digits: all but '+' and separators
    for i in range(1, n):
        ch = char_at(s, i)
        if not is_phone_separator(ch):
            if d < 5:
                digits[d] = ch
            d += 1
    if digits[0] == 49:
        return d == 11 and digits[1] != 48 and digits[1] != 49 and digits[4] != 48 and digits[4] != 49
    return 8 <= d <= 15


cdef bint is_trunk_phone(ValueScan* s) noexcept:
    """\\(?0[1-9]\\d{0,4}\\)?S\\d{2,8}(S\\d{2,8}){0,4}, one separator S of
    " ./-", with 9-12 digits."""
    cdef Py_ssize_t i = 1 if s.c0 == 40 else 0, d, groups = 0, digits
    cdef uint32_t sep
    if char_or_0(s, i) != 48 or not 49 <= char_or_0(s, i + 1) <= 57:
        return False
    d = decimal_run(s, i + 2)
    if d > 4:
        return False
    digits = 2 + d
    i += digits
    if char_or_0(s, i) == 41:
        i += 1
    sep = char_or_0(s, i)
    if not (sep == 32 or sep == 46 or sep == 47 or sep == 45):
        return False
    while i < s.n and char_at(s, i) == sep and groups < 5:
        d = decimal_run(s, i + 1)
        if not 2 <= d <= 8:
            return False
        i += 1 + d
        digits += d
        groups += 1
    return i == s.n and 9 <= digits <= 12


cdef bint is_nanp(ValueScan* s) noexcept:
    """(1[ .-]?)?(\\([2-9]\\d\\d\\) ?|[2-9]\\d\\d[ .-])[2-9]\\d\\d[ .-]\\d{4}"""
    cdef Py_ssize_t i = 0
    cdef uint32_t ch
    if s.c0 == 49:
        ch = char_or_0(s, 1)
        i = 2 if ch == 32 or ch == 46 or ch == 45 else 1
    if char_or_0(s, i) == 40:
        if not (is_2_to_9(char_or_0(s, i + 1)) and decimal_run(s, i + 2) >= 2 and char_or_0(s, i + 4) == 41):
            return False
        i += 6 if char_or_0(s, i + 5) == 32 else 5
    else:
        ch = char_or_0(s, i + 3)
        if not (is_2_to_9(char_or_0(s, i)) and decimal_run(s, i + 1) >= 2 and (ch == 32 or ch == 46 or ch == 45)):
            return False
        i += 4
    ch = char_or_0(s, i + 3)
    if not (is_2_to_9(char_or_0(s, i)) and decimal_run(s, i + 1) >= 2 and (ch == 32 or ch == 46 or ch == 45)):
        return False
    return decimal_run(s, i + 4) == 4 and i + 8 == s.n


cdef bint is_phone(ValueScan* s, bint named) noexcept:
    """E.164, NANP or trunk-prefixed national forms; with a phone-like
    name any 7-15 digits in phone punctuation."""
    cdef Py_ssize_t i, digits = 0
    cdef uint32_t ch
    if s.n > 24:
        return False
    if s.c0 == 43:
        return is_e164(s)
    if named:
        for i in range(s.n):
            ch = char_at(s, i)
            if is_ascii_digit(ch):
                digits += 1
            elif not (ch == 32 or ch == 40 or ch == 41 or ch == 46 or ch == 45):
                return False
        return 7 <= digits <= 15
    if s.n < 10:
        return False
    if s.c0 == 48 or (s.c0 == 40 and char_at(s, 1) == 48):
        return is_trunk_phone(s)
    return is_nanp(s)


cdef bint is_ip(str value, ValueScan* s, int hints) except -1:
    """A valid IPv4 (not 0.0.0.0, not a version under a version name) or IPv6 (not ::) literal."""
    if is_ipv4(s):
        return value != "0.0.0.0" and not hints & H_VERSION
    return value != "::" and is_ipv6(value, s)


cdef bint is_ip_list(str value, ValueScan* s, int hints) except -1:
    """One address, or a list of them as X-Forwarded-For carries."""
    cdef ValueScan p
    cdef str part
    if not s.seen & K_COMMA:
        return is_ip(value, s, hints)
    if s.n > 1024:
        return False
    for item in value.split(","):
        part = item.strip()
        scan_value(part, &p)
        if not is_ip(part, &p, hints):
            return False
    return True


cdef tuple value_only_classes(str value, ValueScan* s, int hints):
    """Classes the value has by itself (and, for hinted classes, with the
    name's hint bits)."""
    cdef Py_ssize_t n = s.n
    cdef uint32_t c = s.c0
    cdef tuple found
    if n == 40 and hints & H_AWS_SECRET and not s.seen & ~(K_ALNUM | K_SLASH | K_PLUS):
        return ("aws_secret_key",)
    if s.seen & K_WIDE:
        # cards, phones, SSNs, IBANs, addresses and dates are written in ASCII
        # digits: '1²3456789' is no SSN (and int() would choke on it)
        return ("email",) if s.seen & K_AT and _is_email(value) else ()
    if is_ascii_digit(c):
        if n <= 45 and s.every & K_DIGIT:
            if 13 <= n <= 19 and is_card(s):
                return ("payment_card",)
            if n == 9 and hints & H_SSN and is_ssn(s):
                return ("us_ssn",)
            if hints & H_PHONE and 7 <= n <= 15:
                return ("phone",)
            if hints & H_DOB and n == 8 and _is_birth_date(value):
                return ("date_of_birth",)
            return ()
        found = ("date_of_birth",) if hints & H_DOB and _is_birth_date(value) else ()
        if n == 11 and char_at(s, 3) == char_at(s, 6) and (char_at(s, 3) == 45 or (
                char_at(s, 3) == 32 and hints & H_SSN)):   # ddd-dd-dddd; spaced only under an SSN name
            return found + ("us_ssn",) if is_ssn(s) else found
        if s.seen & K_AT:
            return ("email",) if _is_email(value) else ()
        if s.seen & (K_COMMA | K_COLON) or is_ipv4(s):
            return ("ip_address",) if is_ip_list(value, s, hints) else found
        if c != 48 and n <= 23 and s.seen & (K_DASH | K_SPACE) and is_card(s):
            return ("payment_card",)
        if not found and is_phone(s, hints & H_PHONE):
            return ("phone",)
        return found
    if c == 43 or c == 40:                                      # + (
        return ("phone",) if is_phone(s, hints & H_PHONE) else ()
    if n >= 40 and "PRIVATE KEY" in value and _private_key_search(value) is not None:
        return ("private_key",)
    if s.seen & K_AT:
        return ("email",) if _is_email(value) else ()
    if is_ascii_letter(c):
        if c == 101 and is_jwt(value, s):
            return ("jwt",)
        if (c == 66 or c == 98) and matches_prefix(s, "bearer ", 7):
            return _bearer_classes(value)
        if n == 20 and is_aws_access_key(s):
            return ("aws_access_key",)
        if n >= 24 and is_vendor_key(value, n):
            return ("api_key",)
        if (15 <= n <= 42 and is_ascii_letter(char_at(s, 1)) and is_ascii_digit(char_at(s, 2))
                and is_ascii_digit(char_at(s, 3)) and _is_iban(value)):
            return ("iban",)
        if hints & H_DOB and _is_birth_date(value):
            return ("date_of_birth",)
    if s.seen & K_COLON and is_ip_list(value, s, hints):
        return ("ip_address",)
    return ()


cdef frozenset _NOT_CREDENTIALS = frozenset(("true", "false", "null", "none", "nil", "undefined", "n/a"))
cdef frozenset _OWN_CREDENTIALS = frozenset(("private_key", "aws_secret_key", "bearer_token"))


cdef bint credential_like(str value, int hints) except -1:
    """Neither empty, a boolean, a null word nor a mask ("****"); under a
    bare "key", token-like."""
    cdef str v = value.strip()
    if not v or (len(v) <= 9 and v.lower() in _NOT_CREDENTIALS) or not v.strip("*•"):
        return False
    return not hints & H_GENERIC_KEY or (len(v) >= 16 and " " not in v)


cpdef tuple value_classes(value, name=None):
    """The sensitive classes of a value (an empty tuple when none), from
    the value itself and from the key / parameter / header / cookie name it
    sits under (None when there is none, e.g. a path segment)."""
    cdef ValueScan s
    cdef str text
    cdef tuple named = (), found, info
    cdef int hints = 0
    if not PyUnicode_Check(value):
        if not value:
            return ()
        raise TypeError("value_classes() takes a str, not %s" % type(value).__name__)
    text = <str>value                   # a subclass of str too
    if not PyUnicode_GET_LENGTH(text):
        return ()
    if name:
        info = name_info(name)
        named, hints = <tuple>info[0], info[1]
    scan_value(text, &s)
    found = value_only_classes(text, &s, hints)
    if not named or not credential_like(text, hints):
        return found
    if not found:
        return named
    if "secret" in named and not _OWN_CREDENTIALS.isdisjoint(found):
        named = tuple([c for c in named if c != "secret"])    # the value's own class says it
    return found + tuple([c for c in named if c not in found])
