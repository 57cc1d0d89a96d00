"""`--target` and `--exclude`: a partial plan of the changes whose addresses match, with
everything they need (a membership brings its list's and its contact's creation, a
contact the properties it writes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from reconcile.diff import Change, Finding, Ref
from reconcile.providers.base import dependencies


@dataclass(frozen=True)
class Targeting:
    """Glob patterns on plan addresses (`list:news`, `contact:*@acme.com`,
    `membership:news/*`), matched without case. No target means every change."""

    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.targets or self.excludes)

    def to_json(self) -> dict[str, list[str]]:
        return {"target": list(self.targets), "exclude": list(self.excludes)}

    def describe(self) -> str:
        given = [f"--target {p}" for p in self.targets] + [f"--exclude {p}" for p in self.excludes]
        return ", ".join(given)

    def matches(self, change: Change, patterns: Sequence[str]) -> bool:
        return any(matches(change.address, pattern) for pattern in patterns)


def targeted(changes: Sequence[Change], targeting: Targeting) -> tuple[list[Change], list[Finding]]:
    """The changes `targeting` picks, and what they depend on among `changes`; with a
    warning for each change left out because something it needs is excluded."""
    if not targeting.partial:
        return list(changes), []
    by_ref = {change.ref: change for change in changes}
    excluded = {c.ref for c in changes if targeting.matches(c, targeting.excludes)}
    wanted = [
        c
        for c in changes
        if (not targeting.targets or targeting.matches(c, targeting.targets))
        and c.ref not in excluded
    ]
    kept: dict[Ref, Change] = {}
    warnings: list[Finding] = []
    for change in wanted:
        needed = _needs(change, by_ref)
        blocked = [ref for ref in needed if ref in excluded]
        if blocked:
            warnings.append(
                Finding(
                    change.ref,
                    f"left out of this partial plan: it needs {blocked[0].address}, which "
                    "--exclude leaves out",
                )
            )
            continue
        for ref in [*needed, change.ref]:
            kept.setdefault(ref, by_ref[ref])
    order = {change.ref: n for n, change in enumerate(changes)}
    return sorted(kept.values(), key=lambda c: order[c.ref]), warnings


def matches(address: str, pattern: str) -> bool:
    """`*` and `?` are the only wildcards: a list may be named `Sales [EU]`, and the
    pattern `list:Sales [EU]` must name it, not `list:Sales E`. Without case."""
    literal_brackets = pattern.lower().replace("[", "[[]")
    return fnmatchcase(address.lower(), literal_brackets)


def unmatched(changes: Sequence[Change], targeting: Targeting) -> list[str]:
    """Patterns that match no change of the whole plan: most likely typos."""
    return [
        pattern
        for pattern in (*targeting.targets, *targeting.excludes)
        if not any(matches(c.address, pattern) for c in changes)
    ]


def _needs(change: Change, by_ref: dict[Ref, Change]) -> list[Ref]:
    """The planned changes `change` needs, transitively (only creations can be needed)."""
    found: list[Ref] = []
    todo = [change]
    while todo:
        for ref in dependencies(todo.pop()):
            if ref in by_ref and ref not in found:
                found.append(ref)
                todo.append(by_ref[ref])
    return found
