"""Terraform-like text: `+`/`~`/`-` per change, field-level detail, a closing summary."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from reconcile.diff import Action, Flag
from reconcile.plan import Plan
from reconcile.render.fields import field_lines

SYMBOLS = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.DELETE: ("-", "red"),
}
FLAG_NOTES = {
    Flag.RESUBSCRIBE: "re-subscribes someone who unsubscribed (consent given in the manifest)",
    Flag.REPLACE: "deletes and recreates the definition: every value of it is lost",
}


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete."
    )


def render_text(plan: Plan, console: Console) -> None:
    if plan.is_empty:
        console.print(
            Text(f"No changes. The {plan.provider} account matches the manifest.", "bold")
        )
    else:
        console.print(Text(f"reconcile will make these changes on {plan.provider}:", "bold"))
        console.print()
    for change in plan.changes:
        symbol, colour = SYMBOLS[change.action]
        line = Text(f"  {symbol} ", colour)
        line.append(change.address, "bold")
        console.print(line)
        for flag in sorted(change.flags):
            console.print(Text(f"      ! {FLAG_NOTES[flag]}", "magenta"))
        for name, value in field_lines(change):
            console.print(Text(f"      {name}: ", colour) + Text(value))
    if plan.warnings:
        console.print()
        console.print(Text("Warnings:", "bold yellow"))
        for warning in plan.warnings:
            console.print(Text(f"  ! {warning}", "yellow"))
    if not plan.is_empty:
        console.print()
        console.print(Text(summary_line(plan), "bold"))
        if plan.estimate is not None:
            console.print(Text(plan.estimate.describe()))
