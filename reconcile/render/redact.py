"""`--redact`: the same plan with emails, names and property values masked, for PR comments
on public repositories. Only what is printed is redacted; a saved plan keeps everything."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconcile.diff import Change, ResourceType, split_membership_key
from reconcile.model import EXCLUDED
from reconcile.plan import Plan

MASK = "***"
_EMAIL = re.compile(r"[^\s/:@,;'\"()<>\[\]]+@[A-Za-z0-9.-]+")
_KEPT_FIELDS = frozenset({EXCLUDED, "status", "type", "namespace", "members"})


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a***@example.com`: enough to tell rows apart, not to identify."""
    local, at, domain = email.partition("@")
    return f"{local[:1]}{MASK}{at}{domain}" if at else MASK


def redact(plan: Plan) -> Plan:
    return replace(
        plan,
        changes=tuple(_redact_change(change) for change in plan.changes),
        warnings=tuple(_EMAIL.sub(lambda m: mask_email(m.group()), w) for w in plan.warnings),
    )


def _redact_change(change: Change) -> Change:
    key = change.key
    if change.type is ResourceType.CONTACT:
        key = mask_email(key)
    elif change.type is ResourceType.MEMBERSHIP:
        list_name, email = split_membership_key(key)
        key = f"{list_name}/{mask_email(email)}"
    return replace(change, key=key, before=_masked(change.before), after=_masked(change.after))


def _masked(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    masked: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            masked[name] = {k: MASK if v is not None else None for k, v in value.items()}
        elif name == "email" and isinstance(value, str):
            masked[name] = mask_email(value)
        elif name in _KEPT_FIELDS or value is None:
            masked[name] = value
        else:
            masked[name] = MASK
    return masked
