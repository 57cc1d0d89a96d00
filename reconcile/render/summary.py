"""Counts of a plan grouped for reading at scale: per type and action, memberships per list."""

from __future__ import annotations

from collections import Counter

from reconcile.diff import DESTRUCTIVE, Change, Effect, ResourceType
from reconcile.plan import Plan

DETAIL_LIMIT = 200  # changes shown field by field in text and markdown; JSON has all
SEE_ALL = "all of them: reconcile show PLAN --format json, for a plan saved with --out PLAN"


def detailed(plan: Plan) -> list[Change]:
    """The changes shown field by field: all of them up to DETAIL_LIMIT; past it, every
    change with a consent effect first (a reviewer must see each unsubscribe, erasure and
    deletion), then the others, each group in plan order."""
    if len(plan.changes) <= DETAIL_LIMIT:
        return list(plan.changes)
    first = [c for c in plan.changes if c.effect is not None]
    rest = [c for c in plan.changes if c.effect is None]
    return (first + rest)[:DETAIL_LIMIT]


def shown_of(shown: int, total: int, what: str = "changes") -> str:
    """The line a capped plan ends its detail with: exactly how many, and where the rest is."""
    return f"{shown:,} of {total:,} {what} shown; {SEE_ALL}"


def grouped_counts(plan: Plan) -> list[tuple[str, int, int, int]]:
    """Rows (group, create, update, delete): each type, and each list's memberships."""
    counts: Counter[tuple[str, str]] = Counter()
    for change in plan.changes:
        group = change.type.value
        if change.type is ResourceType.MEMBERSHIP:
            group = f"membership of {change.list_name}"
        counts[(group, change.action.value)] += 1
    groups = sorted({group for group, _ in counts}, key=_group_order)
    return [
        (group, counts[(group, "create")], counts[(group, "update")], counts[(group, "delete")])
        for group in groups
    ]


def _group_order(group: str) -> tuple[int, str]:
    kinds = [kind.value for kind in ResourceType]
    return (kinds.index(group.split(" ", maxsplit=1)[0]), group)


def effect_counts(plan: Plan) -> list[tuple[Effect, int]]:
    """How many changes have each consent effect, in a fixed order."""
    counts = Counter(change.effect for change in plan.changes if change.effect is not None)
    return [(effect, counts[effect]) for effect in Effect if counts[effect]]


def destructive_banner(plan: Plan) -> str | None:
    """One sentence naming everything destructive the plan does, or None."""
    parts = [
        f"{count:,} {effect}" for effect, count in effect_counts(plan) if effect in DESTRUCTIVE
    ]
    if not parts:
        return None
    return "This plan is destructive: " + ", ".join(parts) + "."
