"""Pydantic errors -> manifest field names (`contacts[3].properties.seats`) and messages
a person can act on: union tags and validator internals never reach the user."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconcile.manifest.suggest import did_you_mean
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


def validation_messages(
    data: Any, error: ValidationError, model: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """(field, message) per field, the most specific one when a union reports several;
    with the `model` validated, an unknown field names the closest known one."""
    by_field: dict[str, str] = {}
    for item in error.errors(include_url=False):
        path = data_path(data, item["loc"], item["type"] == "missing")
        name = field_name(path)
        if name in by_field:
            continue
        message = _message(item)
        if item["type"] == "extra_forbidden" and model is not None and path:
            key = path[-1]
            if isinstance(key, str):
                message += did_you_mean(key, sorted(allowed_keys(model, data, path[:-1])))
        by_field[name] = message
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
        expected = str((item.get("ctx") or {}).get("expected", ""))
        if isinstance(given, str):
            message += did_you_mean(given, re.findall(r"'([^']*)'", expected))
    return message


def _hint(kind: str, given: object) -> str:
    return quote_hint(given) if kind == "string_type" else ""


def _short(value: Any) -> str:
    """A given value as written when that is short and plain (`'all'`, `2`), else what it is."""
    plain = isinstance(value, str) or type(value) in {int, float, bool} or value is None
    return repr(value)[:60] if plain else describe(value)


# ---- the keys a mapping may hold, from the model's JSON schema -----------------------


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def allowed_keys(model: type[BaseModel], data: Any, path: Sequence[str | int]) -> set[str]:
    """The keys the mapping at `path` of `data` may hold under `model` (for a union of
    mappings told apart by `type`, those of the one its `type` names)."""
    schema = _schema(model)
    definitions: dict[str, Any] = schema.get("$defs", {})
    nodes = _objects(schema, definitions)
    node = data
    for part in path:
        nodes = [o for child in _children(nodes, part) for o in _objects(child, definitions)]
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    named = node.get("type") if isinstance(node, dict) else None
    if isinstance(named, str):
        typed = [o for o in nodes if named in _type_names(o)]
        nodes = typed or nodes
    return {str(key) for o in nodes for key in o.get("properties", {})}


def _objects(node: Any, definitions: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """A schema node with its references and unions expanded."""
    if not isinstance(node, dict) or depth > 20:
        return []
    reference = node.get("$ref")
    if isinstance(reference, str):
        return _objects(definitions.get(reference.rsplit("/", 1)[-1]), definitions, depth + 1)
    found = [node]
    for union in ("anyOf", "oneOf", "allOf"):
        for child in node.get(union, ()):
            found.extend(_objects(child, definitions, depth + 1))
    return found


def _children(nodes: list[dict[str, Any]], part: str | int) -> Iterator[Any]:
    for node in nodes:
        if isinstance(part, int):
            if "items" in node:
                yield node["items"]
            continue
        properties = node.get("properties", {})
        if part in properties:
            yield properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            yield node["additionalProperties"]


def _type_names(node: dict[str, Any]) -> set[str]:
    kind = node.get("properties", {}).get("type", {})
    names = {kind["const"]} if "const" in kind else set(kind.get("enum", ()))
    return {str(name) for name in names}
