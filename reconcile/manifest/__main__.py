"""`python -m reconcile.manifest` rewrites schemas/manifest.schema.json from the models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reconcile.manifest.schema import manifest_json_schema

SCHEMA_PATH = Path("schemas/manifest.schema.json")


def schema_text() -> str:
    return json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")
