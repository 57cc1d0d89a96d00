"""Email syntax check: the WHATWG "valid email address" rule widened to internationalised
addresses (RFC 6531 UTF-8 local parts, IDN domains written in Unicode), plus length limits
and a dot in the domain. A regex rather than email-validator: it runs 100,000 times per
load and needs no DNS or IDNA tables; the Unicode checks run only on non-ASCII addresses."""

from __future__ import annotations

import re
import unicodedata

_WIDE = "\u0080-\U0010ffff"  # any non-ASCII character; judged one by one below
_LABEL = rf"[a-zA-Z0-9{_WIDE}](?:[a-zA-Z0-9{_WIDE}-]{{0,61}}[a-zA-Z0-9{_WIDE}])?"
_EMAIL = re.compile(rf"[a-zA-Z0-9.!#$%&'*+/=?^_`{{|}}~{_WIDE}-]+@{_LABEL}(?:\.{_LABEL})+")
MAX_LABEL = 63  # octets of a DNS label, its ACE (xn--) form for an internationalised one


def email_problem(email: str) -> str | None:
    """None when the address is acceptable, else what is wrong with it."""
    if email != email.strip():
        return "has leading or trailing spaces"
    if len(email) > 254:
        return "is longer than 254 characters"
    if not _EMAIL.fullmatch(email):
        return "is not a valid email address"
    local, domain = email.rsplit("@", 1)
    if len(local) > 64:
        return "has a local part longer than 64 characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "has a misplaced dot in the local part"
    if email.isascii():
        return None
    return _unicode_problem(local, domain)


def _unicode_problem(local: str, domain: str) -> str | None:
    """Non-ASCII characters: printable ones in the local part (no spaces, controls, format
    characters or surrogates), letters, marks and digits in the domain, each label short
    enough for DNS once encoded."""
    for char in local:
        if not char.isascii() and unicodedata.category(char)[0] in "CZ":
            return f"has a character that cannot be in an address ({char!r})"
    for label in domain.split("."):
        for char in label:
            if not char.isascii() and unicodedata.category(char)[0] not in "LMN":
                return f"has a character that cannot be in a domain name ({char!r})"
        if not label.isascii() and len(label.encode("punycode")) + len("xn--") > MAX_LABEL:
            return f"has a domain label longer than {MAX_LABEL} characters once encoded"
    return None
