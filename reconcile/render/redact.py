"""`--redact`: the same plan with emails, names and property values masked, for PR comments
on public repositories; `redact_message` for errors, warnings and apply reports;
`redact_text` and `RedactingStream` for anything else printed. Only what is printed is
redacted; a saved plan keeps everything."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, TextIO

from reconcile.diff import Change, ResourceType, Values
from reconcile.model import EXCLUDED, ContactValues, MembershipValues
from reconcile.plan import Plan

MASK = "***"
_KEPT_OTHER_FIELDS = frozenset({"status"})  # a provider's delivery status: not personal

# Anything shaped like an address, wider than what the manifest accepts: a quoted local
# part ("john..doe"@, also JSON-escaped), or a run of anything but spaces and separators
# (`+`, inner apostrophes, non-ASCII letters, backslash escapes); a domain of Unicode word
# characters (IDN), also as JSON \uXXXX escapes, or an address literal. `/` and `:`
# separate, so that `membership:newsletter/` stays readable; a leading quote is not part
# of the address, so that `'a***@example.com'` keeps its quotes.
_SEPARATORS = r"""\s@<>()\[\]{},;:"/"""
_LOCAL = rf"""(?:\\?"[^"\n]*\\?"|[^{_SEPARATORS}'][^{_SEPARATORS}]*)"""
_LABEL = r"(?:[\w-]|\\u[0-9a-fA-F]{4})+"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[^\]\s]*\])"
_EMAIL = re.compile(rf"{_LOCAL}@{_DOMAIN}")
# A quoted literal in a message, and a bare number after "got": values, unless the word
# before the literal says it names a list, property, option... (not personal data).
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"')
_GOT_NUMBER = re.compile(r"\bgot -?\d[\w.+-]*")
_WORD_BEFORE = re.compile(r"(\w+)\W*$")
_NAMING_WORDS = frozenset(
    {"list", "lists", "property", "properties", "provider", "tag", "option", "field"}
    | {"column", "for", "expected", "or", "of", "to"}
)


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a***@example.com`: enough to tell rows apart, not to identify.
    Only a letter or digit is kept, so that a quote or escape is never left half-open."""
    local, at, domain = email.rpartition("@")
    if not at:
        return MASK
    kept = local[:1] if local[:1].isalnum() else ""
    return f"{kept}{MASK}@{domain}"


def redact_text(text: str) -> str:
    """Every email-like substring masked (`a***@example.com`); nothing else changed."""
    return _EMAIL.sub(lambda match: mask_email(match.group()), text)


def redact_message(text: str) -> str:
    """An error, warning or report line: emails masked, and the values it quotes (`got
    'Alice Smith'`, `Name='Bob'`) replaced by '***'; names of lists, properties and options
    (`list 'newsletter'`, `'--format'`) are kept."""
    text = _QUOTED.sub(_masked_literal, text)
    text = _GOT_NUMBER.sub(f"got {MASK}", text)
    return redact_text(text)


def _masked_literal(match: re.Match[str]) -> str:
    literal = match.group()
    before = _WORD_BEFORE.search(match.string[max(0, match.start() - 40) : match.start()])
    if literal[1:2] == "-" or (before is not None and before.group(1) in _NAMING_WORDS):
        return literal
    return f"{literal[0]}{MASK}{literal[0]}"


class RedactingStream:
    """A text stream that masks emails in everything written through it (the last line of
    defence under --redact: logs, progress, anything printed directly)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def redact(plan: Plan) -> Plan:
    return replace(
        plan,
        changes=tuple(_redact_change(change) for change in plan.changes),
        warnings=tuple(redact_message(warning) for warning in plan.warnings),
    )


def _redact_change(change: Change) -> Change:
    """People's records are masked; list and property definitions are not about people."""
    if change.type not in (ResourceType.CONTACT, ResourceType.MEMBERSHIP):
        return change
    key = (*change.key[:-1], mask_email(change.key[-1]))
    return replace(change, key=key, before=_masked(change.before), after=_masked(change.after))


def _masked(values: Values | None) -> Values | None:
    """Names, values and times masked; exclusion and subscription status kept."""
    if isinstance(values, MembershipValues):
        return replace(values, opted_out_at=_mask(values.opted_out_at))
    if not isinstance(values, ContactValues):
        return values
    return ContactValues(
        {
            name: value if name is EXCLUDED else _mask(value)
            for name, value in values.fields.items()
        },
        None if values.properties is None else {k: _mask(v) for k, v in values.properties.items()},
        None if values.email is None else mask_email(values.email),
        _mask(values.opted_out_at),
        {
            name: value if name in _KEPT_OTHER_FIELDS else _mask(value)
            for name, value in values.other_fields.items()
        },
    )


def _mask(value: object) -> str | None:
    return None if value is None else MASK
