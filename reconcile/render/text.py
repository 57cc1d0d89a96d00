"""Terraform-like text: `+`/`~`/`-` per change, field-level detail, a closing summary."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from reconcile.diff import DESTRUCTIVE, Action, Flag
from reconcile.plan import Plan
from reconcile.render.fields import field_lines
from reconcile.render.summary import (
    DETAIL_LIMIT,
    destructive_banner,
    detailed,
    effect_counts,
    grouped_counts,
    shown_of,
)

SYMBOLS = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.DELETE: ("-", "red"),
}
FLAG_NOTES = {
    Flag.RESUBSCRIBE: "undoes an opt-out: consent recorded in the manifest (opted_in_at) after it",
    Flag.REPLACE: "deletes and recreates the definition: every value of it is lost",
    Flag.PRUNE: "asked by a prune policy (prune: in the manifest), not by a declaration",
    Flag.ARCHIVE: "archived by the provider: no campaigns, the record and its history kept",
    Flag.RENAME: "renamed in place (renamed_from:): every member, unsubscribe and value kept",
}


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete."
    )


def _print_groups(plan: Plan, console: Console) -> None:
    console.print(Text(f"  {'':<32} {'create':>9} {'update':>9} {'delete':>9}", "bold"))
    for group, create, update, delete in grouped_counts(plan):
        console.print(Text(f"  {group:<32} {create:>9,} {update:>9,} {delete:>9,}"))
    console.print()
    console.print(Text(f"First {DETAIL_LIMIT} changes (consent effects first):", "bold"))


def render_text(plan: Plan, console: Console) -> None:
    if plan.is_empty:
        console.print(Text(plan.nothing_to_do, "bold"))
    else:
        console.print(
            Text(f"reconcile will make these changes on {plan.provider}{plan.target_note}:", "bold")
        )
        console.print()
    if plan.partial_note:
        console.print(Text(plan.partial_note, "bold yellow"))
        console.print()
    if len(plan.changes) > DETAIL_LIMIT:
        _print_groups(plan, console)
    for change in detailed(plan):
        symbol, colour = SYMBOLS[change.action]
        line = Text(f"  {symbol} ", colour)
        line.append(change.address, "bold")
        if change.renamed_from is not None:
            line.append(f" (renamed from {change.renamed_from})")
        if change.effect is not None:
            style = "bold red" if change.effect in DESTRUCTIVE else "magenta"
            line.append(f"  ({change.effect})", style)
        console.print(line)
        for flag in sorted(change.flags):
            console.print(Text(f"      ! {FLAG_NOTES[flag]}", "magenta"))
        for name, value in field_lines(change):
            console.print(Text(f"      {name}: ", colour) + Text(value))
    if len(plan.changes) > DETAIL_LIMIT:
        console.print(Text(f"  ... {shown_of(DETAIL_LIMIT, len(plan.changes))}"))
    if plan.warnings:
        console.print()
        console.print(Text("Warnings:", "bold yellow"))
        for warning in plan.warnings[:DETAIL_LIMIT]:
            console.print(Text(f"  ! {warning}", "yellow"))
        if len(plan.warnings) > DETAIL_LIMIT:
            more = shown_of(DETAIL_LIMIT, len(plan.warnings), "warnings")
            console.print(Text(f"  ... {more}", "yellow"))
    if not plan.is_empty:
        console.print()
        console.print(Text(summary_line(plan), "bold"))
        effects = ", ".join(f"{count:,} {effect}" for effect, count in effect_counts(plan))
        if effects:
            console.print(Text(f"Consent: {effects}.", "magenta"))
        banner = destructive_banner(plan)
        if banner:
            console.print(Text(f"! {banner}", "bold red"))
        if plan.estimate is not None:
            console.print(Text(plan.estimate.describe()))
