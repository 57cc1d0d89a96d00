"""Pydantic errors -> manifest field names (`contacts[3].properties.seats`) and messages
a person can act on: union tags and validator internals never reach the user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from reconcile.model import describe, quote_hint

Path = list[str | int]
_PREFIXES = ("Value error, ", "Assertion failed, ")


def data_path(data: Any, loc: Sequence[str | int], missing: bool) -> Path:
    """Keep the parts of a pydantic error location that exist in the data (drops union tags)."""
    path: Path = []
    node = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(node, dict) and part in node:  # noqa: SIM114 (mypy narrows each branch)
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path.append(part)
        elif missing and last and isinstance(node, dict):
            path.append(part)  # a missing key: name it
    return path


def field_name(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def path_of(data: Any, name: str) -> Path:
    """The data path a field name came from (inverse of field_name for existing paths)."""
    path: Path = []
    node = data
    for token in _tokens(name):
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            path.append(int(token))
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            path.append(token)
            node = node[token]
        else:
            break
    return path


def _tokens(name: str) -> list[str]:
    return [t for t in name.replace("[", ".").replace("]", "").split(".") if t]


def validation_messages(data: Any, error: ValidationError) -> list[tuple[str, str]]:
    """(field, message) per field, the most specific one when a union reports several."""
    by_field: dict[str, str] = {}
    for item in error.errors(include_url=False):
        name = field_name(data_path(data, item["loc"], item["type"] == "missing"))
        if name in by_field:
            continue
        by_field[name] = _message(item)
    return [
        (name, message)
        for name, message in by_field.items()
        if not any(other.startswith((f"{name}.", f"{name}[")) for other in by_field)
    ]


# Wrong-type errors: pydantic's words for the expected kind, the user's for what was given.
_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",  # pydantic names the model class here
    "list_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "a whole number",
    "float_type": "a number",
}


def _message(item: ErrorDetails) -> str:
    """One pydantic error in the words of a manifest author: no class or parser names."""
    kind = item["type"]
    given = item.get("input")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(given)}{_hint(kind, given)}"
    message = item["msg"]
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    if kind in {"literal_error", "enum"}:
        message = f"{message}, got {_short(given)}"
    return message


def _hint(kind: str, given: object) -> str:
    return quote_hint(given) if kind == "string_type" else ""


def _short(value: Any) -> str:
    """A given value as written when that is short and plain (`'all'`, `2`), else what it is."""
    plain = isinstance(value, str) or type(value) in {int, float, bool} or value is None
    return repr(value)[:60] if plain else describe(value)
