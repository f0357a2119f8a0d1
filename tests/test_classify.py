"""Value formats and sensitive classes (sensor.enrich.classify): labelled
positives and decoys per class, scored for precision and recall, plus
generated cards, IBANs and SSNs around the validation rules."""
import random
from collections import Counter

import pytest

from enrich_app import iban_check, luhn_digit
from sensor.enrich.classify import SENSITIVE_CLASSES, name_classes, value_classes, value_format

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM_BODY = "\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END %s-----\n"


def pem(kind):
    return ("-----BEGIN %s-----" % kind) + PEM_BODY % kind


# (value, name, expected classes)
POSITIVES = [
    # payment cards: published test numbers, separators, brands and lengths
    ("4111111111111111", None, {"payment_card"}),
    ("5555555555554444", None, {"payment_card"}),
    ("378282246310005", None, {"payment_card"}),
    ("6011111111111117", None, {"payment_card"}),
    ("3530111333300000", None, {"payment_card"}),
    ("30569309025904", None, {"payment_card"}),             # Diners, 14 digits
    ("2223003122003222", None, {"payment_card"}),           # Mastercard 2-series
    ("6200000000000005", None, {"payment_card"}),           # UnionPay
    ("4000056655665556", "card.number", {"payment_card"}),
    ("4111 1111 1111 1111", None, {"payment_card"}),
    ("5555-5555-5555-4444", "pan", {"payment_card"}),
    ("3782 822463 10005", None, {"payment_card"}),
    # IBANs
    ("GB82WEST12345698765432", None, {"iban"}),
    ("DE89370400440532013000", "iban", {"iban"}),
    ("FR1420041010050500013M02606", None, {"iban"}),
    ("GB82 WEST 1234 5698 7654 32", None, {"iban"}),
    ("NL91ABNA0417164300", None, {"iban"}),
    ("BE68539007547034", None, {"iban"}),
    ("CH9300762011623852957", None, {"iban"}),
    ("NO9386011117947", None, {"iban"}),
    ("gb82west12345698765432", None, {"iban"}),
    # US SSNs
    ("536-22-1234", None, {"us_ssn"}),
    ("001-01-0001", "customer.ssn", {"us_ssn"}),
    ("536221234", "ssn", {"us_ssn"}),
    ("536221234", "socialSecurityNumber", {"us_ssn"}),
    ("536 22 1234", "ssn", {"us_ssn"}),
    # emails
    ("jane.doe@example.com", None, {"email"}),
    ("o'reilly+news@mail.example.org", "to", {"email"}),
    ("first.last@sub.example.co.uk", "username", {"email"}),
    ("42@example.io", None, {"email"}),
    # phones
    ("+14155550132", None, {"phone"}),
    ("+44 20 7946 0958", None, {"phone"}),
    ("+1 (415) 555-0132", None, {"phone"}),
    ("+4915112345678", "contact", {"phone"}),
    ("(415) 555-0132", None, {"phone"}),
    ("415-555-0132", None, {"phone"}),
    ("415.555.0132", None, {"phone"}),
    ("1-800-555-0199", None, {"phone"}),
    ("020 7946 0958", None, {"phone"}),
    ("06 12 34 56 78", None, {"phone"}),
    ("4155550132", "phone", {"phone"}),
    ("07700900123", "mobileNumber", {"phone"}),
    ("14155550132", "msisdn", {"phone"}),
    ("415 555 0132", "fax", {"phone"}),
    ("+44 (0)20 7946 0958", None, {"phone"}),        # the trunk 0 in brackets, as UK and EU write it
    ("+49 (0)30 12345678", None, {"phone"}),
    ("+1 (415)555-0132", None, {"phone"}),
    # JWTs, alone and under a secret's name
    (JWT, None, {"jwt"}),
    (JWT, "access_token", {"jwt", "secret"}),
    (JWT, "id_token", {"jwt", "secret"}),
    # AWS
    ("AKIAIOSFODNN7EXAMPLE", None, {"aws_access_key"}),
    ("ASIAY34FZKBOKMUTVV7A", "accessKeyId", {"aws_access_key"}),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key", {"aws_secret_key"}),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SecretAccessKey", {"aws_secret_key"}),
    ("3gDQ1/AlRZwE/j1YBGaKeHkxG53NmMg9wGAqfZbM", "secretAccessKey", {"aws_secret_key"}),
    ("/1bLuLgo33BJT+KGwPsTmYTyY5t9FeFkje89Pv+Y", "secretAccessKey", {"aws_secret_key"}),
    ("+1bLuLgo33BJT+KGwPsTmYTyY5t9FeFkje89Pv+Y", "secretAccessKey", {"aws_secret_key"}),
    # private keys
    (pem("RSA PRIVATE KEY"), None, {"private_key"}),
    (pem("EC PRIVATE KEY"), "key", {"private_key"}),
    (pem("OPENSSH PRIVATE KEY"), "sshPrivateKey", {"private_key"}),
    (pem("PRIVATE KEY"), "private_key", {"private_key"}),
    (pem("ENCRYPTED PRIVATE KEY"), "tls.key", {"private_key"}),
    # bearer tokens (a JWT one is a jwt)
    ("Bearer mF_9.B5f-4.1JqM", None, {"bearer_token"}),
    ("Bearer 3f9a1c2b7d8e4f60a1b2c3d4e5f60718", "header", {"bearer_token"}),
    ("Bearer " + JWT, None, {"jwt"}),
    ("Bearer mF_9.B5f-4.1JqM", "authorization", {"bearer_token"}),
    # API keys
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "x-api-key", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "apiKey", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "api_token", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "X-Goog-Api-Key", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "x-auth-token", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "key", {"api_key"}),
    ("abc123", "x-api-key", {"api_key"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "client_secret", {"api_key", "secret"}),
    ("k8Jd93hsQ0pLx7Vb2Nc4Zr6Tw1Ye5Ua3", "Ocp-Apim-Subscription-Key", {"api_key"}),
    # vendors' keys say what they are, under any name
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "value", {"api_key"}),
    ("glpat-xK9mQ2vR7tY4wZ8pL3nB", None, {"api_key"}),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "webhook", {"api_key"}),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "config", {"api_key"}),
    ("AIzaSyA-1234567890abcdefghijklmnopqrstu", None, {"api_key"}),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "token", {"api_key", "secret"}),
    # passwords, any spelling of the name
    ("hunter2", "password", {"password"}),
    ("hunter2", "passwd", {"password"}),
    ("hunter2", "pwd", {"password"}),
    ("hunter2", "pass", {"password"}),
    ("correct horse battery staple", "passphrase", {"password"}),
    ("Tr0ub4dor&3", "new_password", {"password"}),
    ("Tr0ub4dor&3", "currentPassword", {"password"}),
    ("Tr0ub4dor&3", "confirm-password", {"password"}),
    ("Tr0ub4dor&3", "PASSWORD", {"password"}),
    ("Tr0ub4dor&3", "variables.input.password", {"password"}),
    # secrets
    ("s3cr3t-value", "secret", {"secret"}),
    ("s3cr3t-value", "webhookSecret", {"secret"}),
    ("opaque-token-123", "token", {"secret"}),
    ("opaque-token-123", "refresh_token", {"secret"}),
    ("opaque-token-123", "X-CSRF-Token", {"secret"}),
    ("opaque-token-123", "csrfmiddlewaretoken", {"secret"}),
    ("opaque-token-123", "_csrf", {"secret"}),
    ("abc123", "session", {"secret"}),
    ("abc123", "sessionid", {"secret"}),
    ("abc123", "session_id", {"secret"}),
    ("abc123", "PHPSESSID", {"secret"}),
    ("abc123", "connect.sid", {"secret"}),
    ("abc123", "sid", {"secret"}),
    ("abc123", "auth", {"secret"}),
    ("SplxlOBeZQQYbYS6WxSbIA", "authorization_code", {"secret"}),
    ("Basic dXNlcjpwYXNz", "authorization", {"secret"}),
    ("abc123", "x-amz-security-token", {"secret"}),
    ("abc123", "credentials", {"secret"}),
    (pem("PRIVATE KEY")[:20] + "...", "signing_key", {"secret"}),
    # IP addresses
    ("203.0.113.7", None, {"ip_address"}),
    ("198.51.100.23", "x-forwarded-for", {"ip_address"}),
    ("2001:db8::1", None, {"ip_address"}),
    ("fe80::1ff:fe23:4567:890a", "lastLoginIp", {"ip_address"}),
    ("::ffff:192.0.2.128", None, {"ip_address"}),
    ("203.0.113.7, 198.51.100.23", "x-forwarded-for", {"ip_address"}),
    ("fe80::1,10.0.0.1", None, {"ip_address"}),
    # dates of birth, by name
    ("1990-01-15", "dob", {"date_of_birth"}),
    ("1990-01-15", "dateOfBirth", {"date_of_birth"}),
    ("1990-01-15", "birth_date", {"date_of_birth"}),
    ("1990-01-15T00:00:00Z", "birthdate", {"date_of_birth"}),
    ("15/01/1990", "dob", {"date_of_birth"}),
    ("01-15-1990", "date_of_birth", {"date_of_birth"}),
    ("15.01.1990", "birthday", {"date_of_birth"}),
    ("19900115", "DOB", {"date_of_birth"}),
    ("Jan 15, 1990", "birthday", {"date_of_birth"}),
    ("15 January 1990", "user.birthDate", {"date_of_birth"}),
]

# (value, name): nothing sensitive
DECOYS = [
    ("4111111111111112", None),             # Luhn-invalid
    ("4111111111111111111", "id"),          # Luhn-invalid 19 digits
    ("1234567812345670", None),             # Luhn-valid, no issued IIN
    ("9111111111111110", None),
    ("411111111111116", None),              # Luhn-valid Visa range, 15 digits
    ("3782822463100052", None),             # Luhn-valid Amex range, 16 digits
    ("4006381333932", None),                # Luhn-valid Visa range, 13 digits (retired, EAN-13 length)
    ("5555555555555556", "orderRef"),
    ("4006381333931", "gtin"),              # EAN-13
    ("4006381333931", None),
    ("036000291452", None),                 # UPC-A
    ("4242", "last4"),
    ("1700000000000", "createdAt"),         # epoch milliseconds
    ("1733300123456", None),
    ("123456789", "orderId"),
    ("987654321", None),
    ("123e4567-e89b-12d3-a456-426614174000", "id"),
    ("507f1f77bcf86cd799439011", None),
    ("1.2.3.4", "version"),
    ("10.0.0.1", "appVersion"),
    ("0.0.0.0", None),
    ("203.0.113.7, unknown", "x-forwarded-for"),
    ("1.2.3.4, 1.2.3.5", "versions"),
    ("::", None),
    ("2024-01-15", "created_at"),
    ("2024-01-15", None),
    ("1990-01-15", "birthplace"),
    ("GB82WEST12345698765433", None),       # mod 97 fails
    ("GB82WEST1234569876543", None),        # too short for GB
    ("DE89370400440532013001", "iban"),
    ("XX82WEST12345698765432", None),       # no such country
    ("hello", None),
    ("Alice", "name"),
    ("running shoes", "q"),
    ("000-12-3456", None),
    ("666-12-3456", None),
    ("900-12-3456", None),
    ("123-00-4567", None),
    ("123-45-0000", None),
    ("078-05-1120", None),
    ("219-09-9999", "ssn"),
    ("536221234", None),                    # bare 9 digits, no ssn name
    ("19.99", "price"),
    ("1,299.00", "price"),
    ("2024", "year"),
    ("94105", "zip"),
    ("94105-1234", "zip"),
    ("02134", None),
    ("978-3-16-148410-0", "isbn"),
    ("555-0132", None),
    ("+5", "delta"),
    ("12:30:45", None),
    ("1.2.3", None),
    ("logo@2x.png", None),
    ("user@localhost", None),
    ("@jane", "handle"),
    ("Bearer", None),
    ("Bearer realm=\"api\"", "www-authenticate"),
    ("eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.c2ln", None),      # header without alg
    ("AKIAiosfodnn7example", None),
    ("ghp_ is the prefix of a GitHub token", None),               # words: not a token
    ("sk_live_short", None),
    ("AIzaSyA-1234567890abcdefghijklmnopqrst", None),             # one character short
    ("AKIAIOSFODNN7EXAMPL", None),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),         # 40 chars, no aws secret name
    ("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----", "key"),
    ("-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END CERTIFICATE-----", None),
    # names about a credential, not the credential
    ("bearer", "token_type"),
    ("3600", "expires_in"),
    ("12", "password_length"),
    ("2024-01-15T10:00:00Z", "passwordChangedAt"),
    ("yes", "is_password_set"),
    ("30", "session_timeout"),
    ("CAUQAA", "nextPageToken"),
    ("Jane Doe", "author"),
    ("done", "assessment"),
    ("Jane Doe", "passenger"),
    ("color", "key"),
    ("true", "phone_verified"),
    ("12345678", "phone_count"),
    ("123 45 6789", None),                             # spaced digits: an SSN only under its name
    ("1733300000000", "phone_ts"),                    # epoch milliseconds under a name about the phone
    ("+1 (415)155-0132", None),                        # NANP exchange cannot start with 1
    ("123456789", "ssn_length"),
    ("true", "mobile"),
    ("Paris", "place_of_birth"),
    ("unknown", "dob"),
    ("", "password"),
    ("true", "password"),
    ("********", "password"),
    ("null", "token"),
    ("true", "access-control-allow-credentials"),
    ("Authorization, X-Api-Key", "access-control-allow-headers"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "user-agent"),
    ("application/json", "content-type"),
    ("query GetUser($id: ID!) { user(id: $id) { id name email phone } }", "query"),
]


def labelled():
    yield from POSITIVES
    for value, name in DECOYS:
        yield value, name, set()


def test_classes_precision_and_recall_on_the_tables():
    confusion = Counter()           # (expected class or "-", got class or "-")
    wrong = []
    tp, fp, fn = Counter(), Counter(), Counter()
    for value, name, expected in labelled():
        got = set(value_classes(value, name))
        for c in got & expected:
            tp[c] += 1
            confusion[c, c] += 1
        for c in got - expected:
            fp[c] += 1
            confusion["-" if not expected - got else sorted(expected - got)[0], c] += 1
        for c in expected - got:
            fn[c] += 1
            confusion[c, "-" if not got - expected else sorted(got - expected)[0]] += 1
        if got != expected:
            wrong.append("%r under %r: expected %s, got %s" % (value[:60], name, sorted(expected), sorted(got)))
    scores = {c: (tp[c] / ((tp[c] + fp[c]) or 1), tp[c] / ((tp[c] + fn[c]) or 1)) for c in SENSITIVE_CLASSES}
    table = "\n".join("%-16s -> %-16s %d" % (e, g, k) for (e, g), k in sorted(confusion.items()) if e != g)
    report = "precision/recall:\n%s\nconfusion (expected -> got):\n%s\nrows:\n%s" % (
        "\n".join("%-16s %.2f %.2f" % (c, p, r) for c, (p, r) in scores.items()), table, "\n".join(wrong))
    assert all(tp[c] for c in SENSITIVE_CLASSES), "every class has positives\n" + report
    assert all(p >= 0.95 and r >= 0.95 for p, r in scores.values()), report
    assert not wrong, report


def test_classes_are_the_vocabulary():
    seen = set()
    for value, name, _ in labelled():
        got = value_classes(value, name)
        assert isinstance(got, tuple) and len(set(got)) == len(got)
        seen.update(got)
        for c in name_classes(name or ""):
            assert c in SENSITIVE_CLASSES
    assert seen == set(SENSITIVE_CLASSES)


@pytest.mark.parametrize("brand_prefixes,length", [
    (("4",), 16), (("4",), 19), (("51", "55", "2221", "2720"), 16), (("34", "37"), 15),
    (("6011", "644", "649", "65"), 16), (("3528", "3589"), 17), (("300", "305", "36", "38"), 14),
    (("62",), 19), (("2200",), 16), (("6759", "5018"), 18)])
def test_generated_cards_in_range_and_length(brand_prefixes, length):
    rng = random.Random(length)
    for prefix in brand_prefixes:
        for _ in range(20):
            body = prefix + "".join(rng.choice("0123456789") for _ in range(length - 1 - len(prefix)))
            card = body + luhn_digit(body)
            assert value_classes(card) == ("payment_card",), card
            wrong = str((int(card[-1]) + rng.randint(1, 9)) % 10)
            assert value_classes(card[:-1] + wrong) == (), "Luhn-invalid " + card


@pytest.mark.parametrize("prefix,length", [
    ("4", 13), ("4", 15), ("4", 17), ("51", 15), ("51", 19), ("34", 16), ("37", 14), ("6011", 15),
    ("1", 16), ("7", 16), ("8", 16), ("9", 16), ("56", 16), ("6759", 13)])
def test_generated_luhn_valid_numbers_outside_brand_lengths_are_not_cards(prefix, length):
    rng = random.Random(prefix + str(length))
    for _ in range(20):
        body = prefix + "".join(rng.choice("0123456789") for _ in range(length - 1 - len(prefix)))
        assert value_classes(body + luhn_digit(body)) == (), body


IBAN_EXAMPLES = ["AT611904300234573201", "BE68539007547034", "CH9300762011623852957", "DK5000400440116243",
                 "ES9121000418450200051332", "FI2112345600000785", "IT60X0542811101000000123456",
                 "PL61109010140000071219812874", "SE4550000000058398257466", "PT50000201231234567890154",
                 "IE29AIBK93115212345678", "LU280019400644750000", "GB82WEST12345698765432"]


def test_ibans_and_every_single_character_change():
    for iban in IBAN_EXAMPLES:
        assert value_classes(iban) == ("iban",), iban
        spaced = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        assert value_classes(spaced) == ("iban",), spaced
        for i in range(2, len(iban)):
            if iban[i].isdigit():
                changed = iban[:i] + str((int(iban[i]) + 1) % 10) + iban[i + 1:]
                assert value_classes(changed) == (), changed
    assert value_classes("GB82 WEST12 345698765432") == ()     # not in groups of 4


def test_generated_ibans():
    rng = random.Random(97)
    for country, length in (("DE", 22), ("NL", 18), ("FR", 27), ("NO", 15), ("MT", 31), ("LC", 32)):
        for _ in range(10):
            bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
            iban = country + iban_check(country, bban) + bban
            assert value_classes(iban) == ("iban",), iban
            assert value_classes(iban + "0") == (), "one character too long: " + iban


def test_ssn_rules():
    def ssn(area, group, serial):
        return value_classes("%03d-%02d-%04d" % (area, group, serial))
    assert all(ssn(a, 12, 3456) == ("us_ssn",) for a in (1, 123, 665, 667, 899))
    assert all(ssn(a, 12, 3456) == () for a in (0, 666, 900, 987, 999))
    assert ssn(123, 0, 3456) == () and ssn(123, 45, 0) == ()
    assert ssn(123, 99, 9999) == ("us_ssn",) and ssn(123, 1, 1) == ("us_ssn",)
    assert value_classes("123-45-6789", "ssn") == ("us_ssn",)
    assert value_classes("123456789", "ssn") == ("us_ssn",)
    assert value_classes("123456789") == ()
    assert value_classes("666456789", "ssn") == ()


def test_epoch_milliseconds_and_barcodes_are_never_phones_or_cards():
    rng = random.Random(7)
    for _ in range(500):
        millis = str(rng.randint(1_500_000_000_000, 1_900_000_000_000))
        assert value_classes(millis) == () and value_classes(millis, "timestamp") == ()
        body = "40" + "".join(rng.choice("0123456789") for _ in range(10))
        ean = body + str(-sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10)
        assert value_classes(ean, "gtin") == ()


def test_name_normalisation():
    spellings = ["currentPassword", "current_password", "current-password", "CURRENT_PASSWORD", "CurrentPassword",
                 "user.currentPassword", "items[].current_password"]
    assert {name_classes(s) for s in spellings} == {("password",)}
    assert "date_of_birth" in name_classes("dateOfBirth") and "date_of_birth" in name_classes("birth-date")
    assert "phone" in name_classes("mobilePhoneNumber") and "us_ssn" in name_classes("SSN")
    assert name_classes("APIKey") == ("api_key",) == name_classes("x-api-key")
    assert name_classes("first_name") == () and name_classes("") == ()


FORMATS = [
    ("123", "integer"), ("-42", "integer"), ("0", "integer"), ("4111111111111111", "integer"),
    ("1.5", "float"), ("-0.25", "float"), ("1e10", "float"), ("6.02E+23", "float"),
    ("true", "boolean"), ("false", "boolean"), ("True", "boolean"),
    ("123e4567-e89b-12d3-a456-426614174000", "uuid"), ("550E8400-E29B-41D4-A716-446655440000", "uuid"),
    ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
    ("2024-01-15", "date"), ("2024-02-29", "date"), ("2023-02-29", None), ("2024-13-01", None),
    ("2024-01-15T10:20:30Z", "date-time"), ("2024-01-15T10:20:30.123+02:00", "date-time"),
    ("2024-01-15 10:20:30", "date-time"), ("2024-01-15T10:20", "date-time"), ("2024-01-15T25:00:00Z", None),
    ("jane.doe@example.com", "email"), ("logo@2x.png", None),
    ("https://example.com/a?b=c#d", "uri"), ("s3://bucket/key", "uri"), ("ftp://host", "uri"),
    ("192.168.0.1", "ipv4"), ("256.1.1.1", None), ("01.2.3.4", None),
    ("2001:db8::1", "ipv6"), ("::1", "ipv6"), ("fe80::1ff:fe23:4567:890a", "ipv6"), ("12:30:45", None),
    ("deadbeef", "hex"), ("507f1f77bcf86cd799439011", "hex"), ("DEADBEEF00", "hex"), ("deadbee", None),
    ("DeadBeef", None),
    ("SGVsbG8sIFdvcmxkIQ==", "base64"), ("c2Vuc29yLXRlc3QtMTIzNDU2", "base64"), ("q1w2-E3r4_T5y6U7i8O9p0", "base64"),
    ("abcdefghijklmnop", None), ("HelloWorldFooBar", None), ("a+b/c-d_e1F2G3H4", None),
    (JWT, "jwt"),
    ("", None), ("hello world", None), ("Alice", None), ("1.2.3", None), ("running-shoes", None),
    ("+14155550132", None), ("naïve", None), ("12:30", None), ("1,299.00", None),
]


@pytest.mark.parametrize("value,expected", FORMATS)
def test_value_format(value, expected):
    assert value_format(value) == expected


def test_odd_inputs():
    assert value_format("1" * 65536) == "integer" and value_format("1" * 65537) is None     # longer: not read
    assert value_format("١٢٣") is None and value_format("１２３") is None and value_format("naïve") is None
    assert value_classes("") == () and value_classes(None) == () and value_classes("x", "") == ()

    class Text(str):
        pass
    assert value_format(Text("2024-01-15")) == "date" and value_classes(Text("536-22-1234")) == ("us_ssn",)
    with pytest.raises(TypeError):
        value_format(None)
    with pytest.raises(TypeError):
        value_classes(b"4111111111111111")


def test_non_ascii_digits_are_no_numbers_and_never_raise():
    # int() would choke on '²' and read '٣' as 3: cards, SSNs, phones, IBANs,
    # addresses and dates are written in ASCII digits
    for value, name in [("GB82WEST1234569876543é", None), ("1999²101", "dob"), ("1²3456789", "ssn"),
                        ("1²3-45-6789", None), ("1.2.3.٣", None), ("+1٤١٥٥٥٥٠١٣٢", None), ("1²34567", "phone")]:
        assert value_classes(value, name) == (), value


def test_long_values_starting_with_a_digit_are_still_read():
    assert value_classes("10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5") == ("ip_address",)
    assert value_classes("2024.jane.doe.with.a.long.local.part@mail.example.org") == ("email",)
