"""schemas/manifest.schema.json is generated from the models and must be kept in sync."""

from __future__ import annotations

import json
from pathlib import Path

from reconcile.manifest.__main__ import schema_text

SCHEMA = Path(__file__).parent.parent / "schemas" / "manifest.schema.json"


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "schemas/manifest.schema.json is out of date: run `python -m reconcile.manifest`"
    )


def test_schema_describes_the_manifest_sections() -> None:
    schema = json.loads(schema_text())
    assert set(schema["properties"]) == {
        "version",
        "provider",
        "properties",
        "lists",
        "contacts",
        "contacts_from",
        "prune",
        "protect",
        "safety",
    }
    assert schema["additionalProperties"] is False
