"""What apply did: each outcome with its change's action and consent effect, as text
(capped like a plan's detail, problems first) or as a JSON report for machines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from reconcile.diff import Change
from reconcile.plan import Plan
from reconcile.render.summary import DETAIL_LIMIT

REPORT_FORMAT_VERSION = 1
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
_ORDER = {FAILED: 0, SKIPPED: 1, DONE: 2}


@dataclass(frozen=True)
class Outcome:
    address: str
    status: str  # done | failed | skipped
    message: str


@dataclass(frozen=True)
class Applied:
    """One apply: the plan it carried out, what happened to each change, what it cost."""

    plan: Plan
    outcomes: list[Outcome]
    interrupted: bool
    api_calls: int
    seconds: float
    notes: tuple[str, ...] = ()  # what apply found out about the API on the way
    check_calls: int = 0  # reads of a saved plan's account before it (not in the estimate)

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)


@dataclass(frozen=True)
class Line:
    outcome: Outcome
    change: Change | None

    @property
    def effect(self) -> str | None:
        effect = self.change.effect if self.change is not None else None
        return None if effect is None else effect.value


def report_lines(applied: Applied) -> list[Line]:
    """Every outcome with the change it is about: failed, then skipped, then done, each in
    plan order (a long report shows its problems first)."""
    position = {change.address: n for n, change in enumerate(applied.plan.changes)}
    changes = applied.plan.changes
    lines = [
        Line(o, changes[position[o.address]] if o.address in position else None)
        for o in applied.outcomes
    ]
    return sorted(
        lines,
        key=lambda line: (
            _ORDER.get(line.outcome.status, 0),
            position.get(line.outcome.address, len(changes)),
        ),
    )


def totals(applied: Applied) -> dict[str, int]:
    return {status: applied.count(status) for status in (DONE, FAILED, SKIPPED)}


def effect_totals(lines: list[Line]) -> Counter[str]:
    """Consent effects that were carried out (done), by effect."""
    return Counter(
        line.effect for line in lines if line.effect is not None and line.outcome.status == DONE
    )


def text_lines(applied: Applied, shown: Callable[[str], str]) -> Iterator[tuple[bool, str]]:
    """(is a problem, line) for the text report; `shown` redacts what needs it."""
    lines = report_lines(applied)
    for line in lines[:DETAIL_LIMIT]:
        outcome = line.outcome
        effect = f" ({line.effect})" if line.effect else ""
        message = f": {outcome.message}" if outcome.message else ""
        problem = outcome.status != DONE
        yield problem, shown(f"  {outcome.status}: {outcome.address}{effect}{message}")
    if len(lines) > DETAIL_LIMIT:
        more = len(lines) - DETAIL_LIMIT
        yield False, f"  ... and {more:,} more outcomes (all of them: apply --format json)"


def summary(applied: Applied) -> list[str]:
    title = "Apply interrupted" if applied.interrupted else "Apply complete"
    counts = totals(applied)
    lines = [
        f"{title}: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped.",
        f"{applied.api_calls:,} API calls in {applied.seconds:.1f} s"
        + (
            f", after {applied.check_calls:,} {'read' if applied.check_calls == 1 else 'reads'} "
            "checking the account had not moved."
            if applied.check_calls
            else "."
        ),
    ]
    effects = effect_totals(report_lines(applied))
    if effects:
        done = ", ".join(f"{count:,} {effect}" for effect, count in sorted(effects.items()))
        lines.append(f"Consent: {done}.")
    return lines + [f"Note: {note}" for note in applied.notes]


def render_report_json(applied: Applied, shown: Callable[[str], str]) -> str:
    data: dict[str, Any] = {
        "format_version": REPORT_FORMAT_VERSION,
        "provider": applied.plan.provider,
        "outcomes": [
            {
                "address": shown(line.outcome.address),
                "action": line.change.action.value if line.change else None,
                "effect": line.effect,
                "outcome": line.outcome.status,
                "message": shown(line.outcome.message),
            }
            for line in report_lines(applied)
        ],
        "totals": totals(applied),
        "interrupted": applied.interrupted,
        "api_calls": applied.api_calls,
        "check_calls": applied.check_calls,
        "seconds": round(applied.seconds, 3),
    }
    if applied.plan.target:
        data["target"] = applied.plan.target
    if applied.notes:
        data["notes"] = [shown(note) for note in applied.notes]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
