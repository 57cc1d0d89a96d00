"""A "did you mean ...?" for a misspelled key or name: the closest of the names that would
have been accepted, compared case-insensitively (`news` finds `News`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6
MAX_CANDIDATES = 5_000  # a suggestion is a courtesy: never a quadratic cost on big inputs


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate `name` most likely meant, or None when none is close."""
    by_folded: dict[str, str] = {}
    for count, candidate in enumerate(candidates):
        if count >= MAX_CANDIDATES:
            break
        if candidate != name:
            by_folded.setdefault(candidate.casefold(), candidate)
    folded = name.casefold()
    if folded in by_folded:
        return by_folded[folded]
    found = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=CUTOFF)
    return by_folded[found[0]] if found else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` to append to a message, or ""."""
    found = closest(name, candidates)
    return f" (did you mean {found!r}?)" if found is not None else ""
