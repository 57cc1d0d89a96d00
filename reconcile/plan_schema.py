"""`python -m reconcile.plan_schema` rewrites schemas/plan.schema.json: the JSON Schema of a
saved plan (`plan --out`, `--format json`), for policy checks that read plans in CI.

It is generated from the models that read a plan back (`PlanFile`, `ChangeFile`,
`EstimateFile` in reconcile/plan.py), with what only the writer adds (`notice`,
`summary`, a change's `effect` and `irreversible`) and what the writer always writes
marked required. Objects stay open (`additionalProperties` is not false): a reader of
format 1 must accept new optional keys.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from reconcile.diff import Action, Effect, ResourceType
from reconcile.plan import FORMAT_VERSION, PlanFile

SCHEMA_PATH = Path("schemas/plan.schema.json")

# Keys every plan of this format carries (the models give some of them defaults, so that
# a hand-made file reads; a policy may count on them in any file reconcile wrote).
_ALWAYS = (
    "format_version",
    "notice",
    "provider",
    "account",
    "summary",
    "changes",
    "warnings",
    "scope",
    "provider_options",
    "estimate",
    "safety",
    "fingerprint",
)
_CHANGE_ALWAYS = ("address", "type", "key", "action", "before", "after")


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def plan_json_schema() -> dict[str, Any]:
    schema = PlanFile.model_json_schema()
    props: dict[str, Any] = schema["properties"]
    props["format_version"] = {
        **props["format_version"],
        "const": FORMAT_VERSION,
    }
    props["notice"] = {
        "type": "string",
        "description": "Says the file holds personal data.",
    }
    props["summary"] = {
        "type": "object",
        "description": "How many changes of each action (every action is present).",
        "properties": {action.value: {"type": "integer", "minimum": 0} for action in Action},
        "required": [action.value for action in Action],
    }
    props["fingerprint"] = {"type": "string", "description": props["fingerprint"]["description"]}
    props["scope"] = {
        **props["scope"],
        "properties": {
            "lists": {"type": "array", "items": {"type": "string"}},
            "contact_data": {"type": "boolean"},
            "every_list": {"type": "boolean"},
        },
    }
    props["safety"] = {
        **props["safety"],
        "properties": {
            "max_delete_share": _number("Deletes, removals and unsubscribes allowed, a share."),
            "max_update_share": _number("Other updates allowed, a share of the live records."),
            "min_records": {"type": "integer", "description": "No limit below this many."},
            "live_counts": {
                "type": "object",
                "description": "Live records per type, as read.",
                "additionalProperties": {"type": "integer"},
            },
        },
    }
    schema["required"] = list(_ALWAYS)

    change: dict[str, Any] = schema["$defs"]["ChangeFile"]
    change["properties"]["key"] = {**change["properties"]["key"], "minItems": 1, "maxItems": 2}
    change["properties"]["effect"] = {
        "type": "string",
        "enum": [effect.value for effect in Effect],
        "description": "What the change means for people, when it touches consent or erases "
        "data: the words the text and markdown plans print after the address.",
    }
    change["properties"]["irreversible"] = {
        "const": True,
        "description": "Present (true) on erasures only.",
    }
    change["required"] = list(_CHANGE_ALWAYS)
    schema["$defs"]["ResourceType"]["enum"] = [kind.value for kind in ResourceType]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": f"reconcile plan file (format_version {FORMAT_VERSION})",
    }


def schema_text() -> str:
    return json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")
