"""The plan as Markdown for a pull-request comment: summary table first, details folded,
never longer than MAX_CHARS (detail cut, with a count of what was left out)."""

from __future__ import annotations

from reconcile.diff import Change
from reconcile.plan import Plan
from reconcile.render.fields import field_lines
from reconcile.render.summary import (
    destructive_banner,
    detailed,
    effect_counts,
    grouped_counts,
    shown_of,
)
from reconcile.render.text import FLAG_NOTES, SYMBOLS, summary_line

MAX_CHARS = 60_000
_RESERVED = 2_000  # room for the closing lines, warnings header and the cut notice


def render_markdown(plan: Plan) -> str:
    on = f"{plan.provider}: {plan.target}" if plan.target else plan.provider
    head = [f"### reconcile plan ({on})", ""]
    if plan.partial_note:
        head += [f"> **{plan.partial_note}**", ""]
    if plan.is_empty:
        head += [
            plan.nothing_to_do if plan.partial else "No changes: the account matches the manifest.",
            "",
        ]
        if not plan.warnings:
            return "\n".join(head)
        warnings, warned = _bullets(plan.warnings, MAX_CHARS - _RESERVED - len("".join(head)))
        return "\n".join([*head, *_warnings_section(plan, warnings, warned)]) + "\n"
    banner = destructive_banner(plan)
    if banner:
        head += ["> [!WARNING]", f"> **{banner}** Review each of these before merging.", ""]
    head += ["| | create | update | delete |", "|---|---:|---:|---:|"]
    head += [f"| {g} | {c:,} | {u:,} | {d:,} |" for g, c, u, d in grouped_counts(plan)]
    head += ["", f"**{summary_line(plan)}**", ""]
    effects = ", ".join(f"{count:,} {effect}" for effect, count in effect_counts(plan))
    if effects:
        head += [f"Consent: {effects}.", ""]
    if plan.estimate is not None:
        head += [plan.estimate.describe(), ""]
    body = "\n".join(head)
    budget = MAX_CHARS - _RESERVED - len(body)
    # Warnings keep at most a quarter of the room; the changes get the rest.
    warnings_room = min(sum(len(w) + 3 for w in plan.warnings), budget // 4)
    details, shown = _details(tuple(detailed(plan)), budget - warnings_room)
    warnings, warned = _bullets(plan.warnings, budget - len(details))
    parts = [body, "<details><summary>Changes</summary>", "", "```diff", details, "```"]
    if shown < len(plan.changes):
        parts.append(f"... {shown_of(shown, len(plan.changes))}")
    parts += ["", "</details>"]
    if plan.warnings:
        parts += ["", *_warnings_section(plan, warnings, warned)]
    return "\n".join(parts) + "\n"


def _warnings_section(plan: Plan, bullets: str, shown: int) -> list[str]:
    section = ["**Warnings**", "", bullets]
    if shown < len(plan.warnings):
        section.append(f"- ... {shown_of(shown, len(plan.warnings), 'warnings')}")
    return section


def _details(changes: tuple[Change, ...], budget: int) -> tuple[str, int]:
    lines: list[str] = []
    used = 0
    for shown, change in enumerate(changes):
        symbol = SYMBOLS[change.action][0]
        effect = f"  ({change.effect})" if change.effect is not None else ""
        renamed = "" if change.renamed_from is None else f" (renamed from {change.renamed_from})"
        block = [f"{symbol} {change.address}{renamed}{effect}"]
        block += [f"{symbol}     ! {FLAG_NOTES[flag]}" for flag in sorted(change.flags)]
        block += [f"{symbol}     {name}: {value}" for name, value in field_lines(change)]
        size = sum(len(line) + 1 for line in block)
        if used + size > budget:
            return "\n".join(lines), shown
        lines += block
        used += size
    return "\n".join(lines), len(changes)


def _bullets(items: tuple[str, ...], budget: int) -> tuple[str, int]:
    lines: list[str] = []
    used = 0
    for shown, item in enumerate(items):
        line = f"- {item}"
        if used + len(line) + 1 > budget:
            return "\n".join(lines), shown
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines), len(items)
