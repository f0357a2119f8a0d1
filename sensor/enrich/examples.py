"""Redacted examples, only with the --keep-examples opt-in.

An example shows what a field looks like without being the value someone
sent: every letter becomes `x`/`X`, every digit `9`, punctuation and length
stay, so `ORD-2024-00017` reads `XXX-9999-99999` and `jane@example.org`
reads `xxxx@xxxxxxx.xxx`. A payment card keeps what PCI DSS lets a receipt
show, its first six and last four digits. Examples are cut at 64
characters. Without the opt-in no example is made at all.
"""
_MAX = 64
_MASK = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                      "x" * 26 + "X" * 26 + "9" * 10)


def _mask(c):
    return "9" if c.isdigit() else ("X" if c.isupper() else "x") if c.isalpha() else c


def redact(value, classes=()):
    """The redacted example of `value` (str), whose sensitive classes are `classes`."""
    text = value[:_MAX]
    if "payment_card" in classes:
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        keep = set(digits[:6] + digits[-4:])
        return "".join(c if i in keep else _mask(c) for i, c in enumerate(text))
    if text.isascii():
        return text.translate(_MASK)
    return "".join(map(_mask, text))        # letters and digits of any script
