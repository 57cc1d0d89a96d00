"""schemas/plan.schema.json is generated from the plan file models, must be kept in sync,
and must describe the plans reconcile writes (checked on real sandbox plans)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconcile.diff import Effect
from reconcile.plan import FORMAT_VERSION
from reconcile.plan_schema import schema_text
from tests.ci_support import sandbox_plans

SCHEMA_FILE = Path(__file__).parent.parent / "schemas" / "plan.schema.json"
SCHEMA: dict[str, Any] = json.loads(schema_text())
TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def errors(instance: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema the generated schema uses: $ref, type, enum, const,
    anyOf, properties, required, additionalProperties, items, minItems, maxItems, minimum.
    Each keyword the schema holds outside that subset fails the test, so that the subset
    can't silently drift from the schema."""
    known = {"title", "description", "default", "$defs", "$schema"}
    checked = {"$ref", "type", "enum", "const", "anyOf", "properties", "required"}
    checked |= {"additionalProperties", "items", "minItems", "maxItems", "minimum"}
    assert set(schema) <= known | checked, set(schema) - known - checked
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return errors(instance, SCHEMA["$defs"][name], where)
    found: list[str] = []
    if "type" in schema:
        expected = TYPES[schema["type"]]
        is_bool = isinstance(instance, bool)
        if not isinstance(instance, expected) or (is_bool and schema["type"] != "boolean"):
            return [f"{where}: {instance!r} is not {schema['type']}"]
    if "enum" in schema and instance not in schema["enum"]:
        found.append(f"{where}: {instance!r} not in {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        found.append(f"{where}: {instance!r} is not {schema['const']!r}")
    if "anyOf" in schema and all(errors(instance, s, where) for s in schema["anyOf"]):
        found.append(f"{where}: {instance!r} matches none of {schema['anyOf']}")
    if "minimum" in schema and instance < schema["minimum"]:
        found.append(f"{where}: {instance!r} < {schema['minimum']}")
    if isinstance(instance, dict):
        found += [
            f"{where}: no {key!r}" for key in schema.get("required", ()) if key not in instance
        ]
        for key, value in instance.items():
            if key in schema.get("properties", {}):
                found += errors(value, schema["properties"][key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += errors(value, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if len(instance) > schema.get("maxItems", len(instance)):
            found.append(f"{where}: more than {schema['maxItems']} items")
        for index, item in enumerate(instance):
            found += errors(item, schema.get("items", {}), f"{where}[{index}]")
    return found


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    made = sandbox_plans(tmp_path_factory.mktemp("plans"))
    return {name: json.loads(path.read_text("utf-8")) for name, path in made.items()}


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/plan.schema.json is out of date: run `python -m reconcile.plan_schema`"
    )


def test_schema_is_for_this_format_and_stays_open_to_new_keys() -> None:
    assert SCHEMA["properties"]["format_version"]["const"] == FORMAT_VERSION
    assert "additionalProperties" not in SCHEMA
    assert "additionalProperties" not in SCHEMA["$defs"]["ChangeFile"]
    assert "target" not in SCHEMA["required"]  # optional: written only when there is one
    effects = SCHEMA["$defs"]["ChangeFile"]["properties"]["effect"]["enum"]
    assert effects == [effect.value for effect in Effect]


def test_every_key_written_is_described(plans: dict[str, dict[str, Any]]) -> None:
    changes = SCHEMA["$defs"]["ChangeFile"]["properties"]
    for plan in plans.values():
        assert set(plan) <= set(SCHEMA["properties"])
        assert set(SCHEMA["required"]) <= set(plan)
        for change in plan["changes"]:
            assert set(change) <= set(changes), change
    written = {key for plan in plans.values() for change in plan["changes"] for key in change}
    assert {"effect", "irreversible", "flags", "fingerprint"} <= written


@pytest.mark.parametrize("name", ["create", "erase", "unsubscribe"])
def test_real_plans_are_valid(plans: dict[str, dict[str, Any]], name: str) -> None:
    assert errors(plans[name], SCHEMA) == []


def test_the_validator_catches_what_the_schema_forbids(plans: dict[str, dict[str, Any]]) -> None:
    plan = json.loads(json.dumps(plans["erase"]))
    plan["format_version"] = 2
    plan["changes"][0]["effect"] = "vanish"
    plan["changes"][0]["key"] = []
    del plan["summary"]["delete"]
    del plan["notice"]
    found = "\n".join(errors(plan, SCHEMA))
    assert "$.format_version: 2 is not 1" in found
    assert "$.changes[0].effect: 'vanish'" in found
    assert "$.changes[0].key: fewer than 1 items" in found
    assert "$.summary: no 'delete'" in found
    assert "$: no 'notice'" in found
