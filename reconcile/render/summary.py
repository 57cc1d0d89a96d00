"""Counts of a plan grouped for reading at scale: per type and action, memberships per list."""

from __future__ import annotations

from collections import Counter

from reconcile.diff import ResourceType
from reconcile.plan import Plan, split_membership_key

DETAIL_LIMIT = 200  # changes shown field by field in text and markdown; JSON has all


def grouped_counts(plan: Plan) -> list[tuple[str, int, int, int]]:
    """Rows (group, create, update, delete): each type, and each list's memberships."""
    counts: Counter[tuple[str, str]] = Counter()
    for change in plan.changes:
        group = change.type.value
        if change.type is ResourceType.MEMBERSHIP:
            group = f"membership of {split_membership_key(change.key)[0]}"
        counts[(group, change.action.value)] += 1
    groups = sorted({group for group, _ in counts}, key=_group_order)
    return [
        (group, counts[(group, "create")], counts[(group, "update")], counts[(group, "delete")])
        for group in groups
    ]


def _group_order(group: str) -> tuple[int, str]:
    kinds = [kind.value for kind in ResourceType]
    return (kinds.index(group.split(" ", maxsplit=1)[0]), group)
