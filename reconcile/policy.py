"""What a manifest allows beyond its declarations: prune policies, protections, thresholds.

Everything here defaults to doing nothing: a manifest that says nothing about pruning
never deletes, unsubscribes or excludes anyone it does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ContactPrune(StrEnum):
    """What happens to a live contact in scope that no manifest declares."""

    IGNORE = "ignore"
    EXCLUDE = "exclude"  # excluded from campaigns; stays on its lists
    UNSUBSCRIBE = "unsubscribe"  # unsubscribed from every managed list
    DELETE = "delete"  # erased (GDPR); irreversible
    ARCHIVE = "archive"  # set aside by the provider: no campaigns, record kept, reversible


class MemberPrune(StrEnum):
    """What happens to an undeclared member of a `members: exact` list."""

    REMOVE = "remove"
    UNSUBSCRIBE = "unsubscribe"


class DefinitionPrune(StrEnum):
    """What happens to a live list or property definition no manifest declares."""

    IGNORE = "ignore"
    DELETE = "delete"


@dataclass(frozen=True)
class ContactScope:
    """Which live contacts a contact prune may touch; every condition given must hold.

    `lists`: subscribed to at least one of these lists; None means any list the manifest
    declares (someone who unsubscribed from all of them is left alone).
    `marker`: carries this property with this value.
    """

    lists: frozenset[str] | None = None
    marker: tuple[str, Any] | None = None


@dataclass(frozen=True)
class Thresholds:
    """octoDNS-style safety: refuse plans that change too much of what exists."""

    max_delete_share: float = 0.10  # deletes, removals and unsubscribes, per resource type
    max_update_share: float = 0.30
    min_records: int = 20  # below this many live records of a type, no limit applies

    def to_json(self) -> dict[str, Any]:
        return {
            "max_delete_share": self.max_delete_share,
            "max_update_share": self.max_update_share,
            "min_records": self.min_records,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Thresholds:
        default = cls()
        return cls(
            float(data.get("max_delete_share", default.max_delete_share)),
            float(data.get("max_update_share", default.max_update_share)),
            int(data.get("min_records", default.min_records)),
        )


@dataclass(frozen=True)
class Policy:
    contacts: ContactPrune = ContactPrune.IGNORE
    contact_scope: ContactScope = field(default_factory=ContactScope)
    exact_members: MemberPrune = MemberPrune.REMOVE
    lists: DefinitionPrune = DefinitionPrune.IGNORE
    properties: DefinitionPrune = DefinitionPrune.IGNORE
    protected_contacts: frozenset[str] = frozenset()  # email keys
    protected_lists: frozenset[str] = frozenset()
    thresholds: Thresholds = field(default_factory=Thresholds)

    def scope_lists(self, managed: frozenset[str]) -> frozenset[str]:
        """The lists whose members decide who a contact prune may touch."""
        if self.contacts is ContactPrune.IGNORE:
            return frozenset()
        return managed if self.contact_scope.lists is None else self.contact_scope.lists

    @property
    def needs_contact_data(self) -> bool:
        return self.contacts is not ContactPrune.IGNORE and self.contact_scope.marker is not None
