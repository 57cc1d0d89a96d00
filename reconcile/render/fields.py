"""Field-level description of a change: flat `name: before -> after` lines."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from reconcile.diff import Action, Change, Values


def flatten(record: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (record or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def field_lines(change: Change) -> Iterator[tuple[str, str]]:
    """(field, text) pairs: `value` for creates and deletes, `before -> after` for what an
    update changes."""
    before, after = _flat(change.before), _flat(change.after)
    if change.action is Action.CREATE:
        for name, value in after.items():
            yield name, show(value)
    elif change.action is Action.DELETE:
        for name, value in before.items():
            yield name, show(value)
    else:
        # What stays as it is is left out (a rename restates the definition's type), unless
        # nothing differs, so that no update is shown without its values.
        changed = [name for name in after if name not in before or before[name] != after[name]]
        for name in changed or list(after):
            yield name, f"{show(before.get(name))} -> {show(after[name])}"


def _flat(values: Values | None) -> dict[str, Any]:
    """Field names as the plan file writes them (`properties.seats`)."""
    return {} if values is None else flatten(values.to_json())
