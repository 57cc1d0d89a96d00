"""The plan as JSON: the same document `plan --out` saves."""

from __future__ import annotations

from reconcile.plan import Plan


def render_json(plan: Plan) -> str:
    return plan.dumps()
