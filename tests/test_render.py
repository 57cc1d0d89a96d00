"""Renderers at scale: grouped summary first, detail capped with a count, markdown bounded."""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import replace

import pytest
from rich.console import Console

from reconcile.diff import Action, Change, ResourceType
from reconcile.model import (
    NAME,
    ContactValues,
    MembershipValues,
    Namespace,
    PropertyType,
    PropertyValues,
    ReadScope,
    SubscriptionStatus,
)
from reconcile.plan import Estimate, Plan
from reconcile.providers.base import ProviderStats
from reconcile.render import progress
from reconcile.render.fields import field_lines
from reconcile.render.markdown import MAX_CHARS, render_markdown
from reconcile.render.text import render_text


def big_plan(contacts: int) -> Plan:
    changes = []
    for n in range(contacts):
        email = f"person{n}@example.com"
        after = ContactValues({NAME: "x" * 40}, {"note": "y" * 60}, email)
        changes.append(Change(ResourceType.CONTACT, Action.CREATE, (email,), None, after))
        for list_name in ("news", "product"):
            changes.append(
                Change(
                    ResourceType.MEMBERSHIP,
                    Action.CREATE,
                    (list_name, email),
                    None,
                    MembershipValues(SubscriptionStatus.SUBSCRIBED),
                )
            )
    warnings = [f"membership:news/w{n}@example.com: unsubscribed" for n in range(5000)]
    return Plan.build(
        "mailjet", changes, ReadScope(), warnings, estimate=Estimate(len(changes) // 900, 200)
    )


def test_text_at_scale_groups_first_and_caps_detail() -> None:
    buffer = io.StringIO()
    render_text(big_plan(20_000), Console(file=buffer, width=120, color_system=None))
    text = buffer.getvalue()

    assert text.index("membership of news") < text.index("+ contact:person0@example.com")
    assert "membership of product" in text
    assert "... 200 of 60,000 changes shown; all of them: reconcile show PLAN --format json" in text
    assert "... 200 of 5,000 warnings shown" in text
    assert "Plan: 60000 to create, 0 to update, 0 to delete." in text
    assert "Apply will make about 66 API calls" in text
    assert len(text.splitlines()) < 1100  # bounded whatever the plan size


def test_markdown_stays_under_the_comment_limit_and_says_what_it_left_out() -> None:
    markdown = render_markdown(big_plan(20_000))

    assert len(markdown) <= MAX_CHARS
    assert markdown.index("| contact | 20,000 | 0 | 0 |") < markdown.index("<details>")
    shown = re.search(
        r"\.\.\. ([\d,]+) of 60,000 changes shown; all of them: reconcile show", markdown
    )
    assert shown is not None
    assert int(shown.group(1).replace(",", "")) == 200  # as many as text shows, when they fit
    assert "of 5,000 warnings shown" in markdown


def test_small_plans_show_every_change() -> None:
    buffer = io.StringIO()
    render_text(big_plan(3), Console(file=buffer, width=120, color_system=None))
    text = buffer.getvalue()
    assert "more changes" not in text
    assert text.count("+ membership:") == 6


def test_progress_logs_lines_in_ci_and_nothing_when_quiet() -> None:
    async def work(mode: progress.ProgressMode, console: Console) -> None:
        now = ProviderStats()
        async with progress.watching(console, mode, "Applying", lambda: now, 10):
            for _ in range(5):
                now = replace(now, requests=now.requests + 2, jobs_pending=1)
                await asyncio.sleep(0.05)
            now = replace(now, waited_seconds=3.0, jobs_pending=0)

    for mode, expected in (
        (progress.ProgressMode.LOG, "Applying: done, 10 requests, 3 s waiting on rate limits"),
        (progress.ProgressMode.QUIET, ""),
    ):
        sink = io.StringIO()
        asyncio.run(work(mode, Console(file=sink, width=200)))
        assert sink.getvalue().strip() == expected
    sink = io.StringIO()
    asyncio.run(work(progress.ProgressMode.BAR, Console(file=sink, width=200, force_terminal=True)))
    assert "Applying" in sink.getvalue()
    assert "bulk jobs pending" in sink.getvalue()


def test_progress_says_done_only_when_the_work_succeeded() -> None:
    async def failing(console: Console) -> None:
        async with progress.watching(console, progress.ProgressMode.LOG, "Reading", ProviderStats):
            raise RuntimeError("unreachable")

    sink = io.StringIO()
    with pytest.raises(RuntimeError):
        asyncio.run(failing(Console(file=sink, width=200)))
    assert sink.getvalue() == ""


def test_markdown_shows_warnings_when_there_are_no_changes() -> None:
    quiet = Plan.build("mailjet", [], ReadScope(), ["list:newsleter: is under protect:lists"])

    text = render_markdown(quiet)

    assert "No changes: the account matches the manifest." in text
    assert "**Warnings**" in text
    assert "- list:newsleter: is under protect:lists" in text


def test_an_update_shows_only_what_it_changes() -> None:
    """A property rename restates the definition: only its name is shown changing."""
    renamed = Change(
        ResourceType.PROPERTY,
        Action.UPDATE,
        ("department",),
        PropertyValues(PropertyType.STR, Namespace.STATIC, "dept"),
        PropertyValues(PropertyType.STR, Namespace.STATIC, "department"),
    )
    assert list(field_lines(renamed)) == [("name", '"dept" -> "department"')]
    retyped = replace(renamed, after=PropertyValues(PropertyType.INT, Namespace.STATIC, "dept"))
    assert list(field_lines(retyped)) == [("type", '"str" -> "int"')]
