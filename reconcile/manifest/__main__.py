"""`python -m reconcile.manifest` rewrites schemas/manifest.schema.json from the models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reconcile.manifest.schema import manifest_json_schema
from reconcile.providers.registry import builtin_option_models

SCHEMA_PATH = Path("schemas/manifest.schema.json")


def schema_text() -> str:
    """The schema of the built-in providers' manifests (installed plug-ins add their own)."""
    schema = manifest_json_schema(tuple(builtin_option_models()))
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")
