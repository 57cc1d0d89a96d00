"""What a planned change asks for, read from its typed values (`Change.contact_after`,
`property_after`, `membership_after`): the only module of this package that looks
inside a change's payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconcile.diff import Change, Flag
from reconcile.model import EXCLUDED, NAME, PropertyValue, SubscriptionStatus


@dataclass(frozen=True)
class ContactWrite:
    """The contact fields a change writes; None means "not written" (left as it is)."""

    email: str | None = None  # creations only
    name: str | None = None
    excluded: bool | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)  # None clears

    def body(self) -> dict[str, Any]:
        """The API's JSON for these fields (a POST's or a PATCH's)."""
        body: dict[str, Any] = {}
        if self.email is not None:
            body["email"] = self.email
        if self.name is not None:
            body["name"] = self.name
        if self.excluded is not None:
            body["excluded_from_campaigns"] = self.excluded
        if self.properties:
            body["properties"] = dict(self.properties)
        return body


def contact_write(change: Change) -> ContactWrite:
    after = change.contact_after
    name = after.fields.get(NAME)
    excluded = after.fields.get(EXCLUDED)
    return ContactWrite(
        email=after.email,
        name=name if isinstance(name, str) else None,
        excluded=excluded if isinstance(excluded, bool) else None,
        properties=dict(after.properties or {}),
    )


def property_type(change: Change) -> str:
    """The type a created (or replaced) property definition is given."""
    return change.property_after.type.value


def membership_status(change: Change) -> SubscriptionStatus:
    return change.membership_after.status


def carries_consent(change: Change) -> bool:
    """Whether the plan decided this change may undo an opt-out (an opt-in recorded after
    it): only then may a re-subscribe or a re-inclusion be written."""
    return Flag.RESUBSCRIBE in change.flags
