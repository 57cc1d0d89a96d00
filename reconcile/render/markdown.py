"""The plan as Markdown for a pull-request comment."""

from __future__ import annotations

from reconcile.plan import Plan
from reconcile.render.fields import field_lines
from reconcile.render.text import FLAG_NOTES, SYMBOLS, summary_line


def render_markdown(plan: Plan) -> str:
    lines = [f"### reconcile plan ({plan.provider})", ""]
    if plan.is_empty:
        lines.append("No changes: the account matches the manifest.")
        return "\n".join(lines) + "\n"
    lines += ["| type | create | update | delete |", "|---|---:|---:|---:|"]
    counts = plan.counts_by_type()
    for kind in ("property", "list", "contact", "membership"):
        row = [counts.get((kind, action), 0) for action in ("create", "update", "delete")]
        if any(row):
            lines.append(f"| {kind} | " + " | ".join(str(n) for n in row) + " |")
    lines += ["", f"**{summary_line(plan)}**", ""]
    if plan.estimate is not None:
        lines += [plan.estimate.describe(), ""]
    lines += ["<details><summary>Changes</summary>", ""]
    lines.append("```diff")
    for change in plan.changes:
        symbol = SYMBOLS[change.action][0]
        lines.append(f"{symbol} {change.address}")
        lines.extend(f"{symbol}     ! {FLAG_NOTES[flag]}" for flag in sorted(change.flags))
        lines.extend(f"{symbol}     {name}: {value}" for name, value in field_lines(change))
    lines += ["```", "", "</details>"]
    if plan.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in plan.warnings]
    return "\n".join(lines) + "\n"
