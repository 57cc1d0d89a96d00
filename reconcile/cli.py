"""Command line: parses arguments, calls the engine, chooses a renderer. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from reconcile import engine
from reconcile.errors import ReconcileError
from reconcile.manifest.export import export_audience
from reconcile.manifest.loader import Manifest
from reconcile.model import State
from reconcile.plan import Plan
from reconcile.providers.base import STOP, ApplyReport, OutcomeStatus
from reconcile.render.json import render_json
from reconcile.render.markdown import render_markdown
from reconcile.render.progress import ProgressMode, choose_mode, watching
from reconcile.render.redact import redact
from reconcile.render.text import render_text
from reconcile.sandbox.runtime import PROVIDERS, SANDBOX_DIR, serve, state_file

app = typer.Typer(
    help="Keep an email audience equal to YAML manifests: plan, review, apply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# No emoji or highlighting: manifest text like ':x:' is printed as written.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
T = TypeVar("T")


@app.callback()
def main(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="log every HTTP request and answer to stderr (credentials redacted, no bodies)",
        ),
    ] = False,
) -> None:
    """Keep an email audience equal to YAML manifests: plan, review, apply."""
    trace = logging.getLogger("reconcile.http")
    trace.handlers = [RichHandler(console=err, show_path=False, markup=False)] if debug else []
    trace.setLevel(logging.DEBUG if debug else logging.WARNING)
    trace.propagate = False


EXIT_ERROR, EXIT_CHANGES, EXIT_INTERRUPTED = 1, 2, 130
REPORT_LIMIT = 50  # outcomes listed one by one; the counts cover all


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


PathsArg = Annotated[list[Path], typer.Argument(help="manifest files or directories")]
SandboxOpt = Annotated[
    bool, typer.Option("--sandbox", help=f"use the built-in emulator (state in {SANDBOX_DIR}/)")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="no progress bars or progress log lines")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="allow a plan over the safety thresholds (safety: in the manifest)"
    ),
]


def _run(work: Callable[[], T]) -> T:
    """Run a command body; a ReconcileError becomes one clear message and exit code 1."""
    try:
        return work()
    except ReconcileError as error:
        err.print(f"[bold red]Error:[/] {_escape(str(error))}")
        raise typer.Exit(EXIT_ERROR) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("Interrupted before any write; nothing was changed.")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _validated(paths: list[Path]) -> Manifest:
    """engine.validate, with its notes (subdirectories left unread, ...) on stderr."""
    manifest = engine.validate(paths)
    for note in manifest.notes:
        err.print(f"note: {_escape(note)}")
    return manifest


def _await(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(_interruptible(coroutine))


async def _interruptible(coroutine: Coroutine[Any, Any, T]) -> T:
    """Ctrl-C while reading stops at once; while writing, the first one lets the requests
    in flight finish and starts nothing new (the report says what was done), a second one
    aborts."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    STOP.clear()

    def on_interrupt() -> None:
        if STOP.writing and not STOP.requested:
            STOP.request()
            err.print(
                "Stopping: finishing the requests in flight, starting nothing new "
                "(Ctrl-C again to abort now)."
            )
        elif task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError):  # platforms without signal handlers
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await coroutine
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)


@app.command()
def validate(paths: PathsArg) -> None:
    """Check manifests offline: schema, references, value types. No network, no credentials."""
    manifest = _run(lambda: _validated(paths))
    state = manifest.desired
    out.print(
        f"Valid: {len(manifest.files)} file(s), {len(state.properties)} properties, "
        f"{len(state.lists)} lists, {len(state.contacts)} contacts, "
        f"{len(state.memberships)} memberships ({manifest.provider.type})."
    )


@app.command()
def plan(
    paths: PathsArg,
    *,
    out_file: Annotated[Path | None, typer.Option("--out", help="save the plan here")] = None,
    output_format: Annotated[Format, typer.Option("--format")] = Format.TEXT,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="exit 2 when there are changes")
    ] = False,
    sandbox: SandboxOpt = False,
    force: ForceOpt = False,
    redact_output: Annotated[
        bool,
        typer.Option(
            "--redact",
            help="mask emails, names and property values in what is printed "
            "(the --out file keeps them: apply needs them)",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Read the live account, compare it with the manifests, print the changes."""
    mode = choose_mode(err, quiet)

    async def work() -> Plan:
        manifest = _validated(paths)
        async with engine.open_provider(manifest.provider, engine.Target(sandbox)) as provider:
            async with watching(err, mode, "Reading the account", provider.stats):
                made, _live = await engine.make_plan(manifest, provider)
            return made

    made = _run(lambda: _await(work()))
    _show(redact(made) if redact_output else made, output_format)
    _run(lambda: made.raise_if_unsafe(force))
    if out_file is not None:
        out_file.write_text(made.dumps(), encoding="utf-8")
        err.print(f"Saved the plan to {out_file}; apply it with: reconcile apply --plan {out_file}")
    if detailed_exitcode and not made.is_empty:
        raise typer.Exit(EXIT_CHANGES)


@app.command()
def apply(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="manifest files or directories")
    ] = None,
    *,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="apply this saved plan exactly")
    ] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="do not ask")] = False,
    sandbox: SandboxOpt = False,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Plan and apply (after confirmation), or apply a saved plan if it is still current."""
    mode = choose_mode(err, quiet)
    if bool(paths) == bool(plan_file):
        err.print("[bold red]Error:[/] give manifest PATHs or --plan FILE (one of the two)")
        raise typer.Exit(EXIT_ERROR)
    report: ApplyReport | None
    if plan_file is not None:
        report = _run(lambda: _await(_apply_saved(plan_file, sandbox, force, mode)))
    else:
        work = _plan_and_apply(paths or [], auto_approve, sandbox, force, mode)
        report = _run(lambda: _await(work))
    if report is None:
        return
    _show_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


async def _apply_saved(
    plan_file: Path, sandbox: bool, force: bool, mode: ProgressMode
) -> ApplyReport:
    try:
        text = plan_file.read_text(encoding="utf-8")
    except OSError as error:
        raise ReconcileError(f"{plan_file}: cannot read the plan ({error.strerror})") from None
    saved = Plan.loads(text, str(plan_file))
    config = engine.provider_config(saved.provider, saved.provider_options)
    async with (
        engine.open_provider(config, engine.Target(sandbox)) as provider,
        watching(err, mode, "Checking and applying", provider.stats),
    ):
        return await engine.apply_plan(saved, provider, force=force)


async def _plan_and_apply(
    paths: list[Path], auto_approve: bool, sandbox: bool, force: bool, mode: ProgressMode
) -> ApplyReport | None:
    manifest = _validated(paths)
    async with engine.open_provider(manifest.provider, engine.Target(sandbox)) as provider:
        async with watching(err, mode, "Reading the account", provider.stats):
            made, live = await engine.make_plan(manifest, provider)
        render_text(made, out)
        if made.is_empty:
            return None
        made.raise_if_unsafe(force)
        if not auto_approve and not _confirmed():
            return None
        total = made.estimate.api_calls if made.estimate else None
        async with watching(err, mode, "Applying", provider.stats, total):
            return await engine.apply_plan(made, provider, live, force=force)


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        raise ReconcileError(
            "no terminal to confirm on: pass --auto-approve, or save a reviewed plan with "
            "plan --out and apply it with apply --plan"
        )
    answer = typer.prompt(
        "Apply these changes? Only 'yes' is accepted", default="", show_default=False
    )
    if answer.strip() != "yes":
        err.print("Apply cancelled; nothing was changed.")
        return False
    return True


@app.command()
def export(
    provider: Annotated[str, typer.Option("--provider", help="mailjet or mailjawn")] = "mailjet",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="write here; an existing manifest file is updated in place (comments and "
            "order kept); with --contacts-per-file, a directory",
        ),
    ] = None,
    contacts_per_file: Annotated[
        int | None,
        typer.Option("--contacts-per-file", min=1, help="split contacts into several files"),
    ] = None,
    sandbox: SandboxOpt = False,
) -> None:
    """Write the live account as manifest YAML."""
    if contacts_per_file is not None and output is None:
        err.print("[bold red]Error:[/] --contacts-per-file needs -o DIRECTORY")
        raise typer.Exit(EXIT_ERROR)

    async def work() -> State:
        config = engine.provider_config(provider, {})
        async with engine.open_provider(config, engine.Target(sandbox)) as opened:
            return await engine.read_everything(opened)

    live = _run(lambda: _await(work()))
    result = _run(lambda: export_audience(live, provider, output, contacts_per_file))
    for warning in result.warnings:
        err.print(f"[yellow]Warning:[/] {_escape(warning)}")
    _run(result.carry_out)
    sys.stdout.write(result.stdout)
    if result.summary:
        err.print(_escape(result.summary))


@app.command()
def sandbox(
    provider: Annotated[str, typer.Option("--provider", help="mailjet or mailjawn")] = "mailjet",
    port: Annotated[int, typer.Option("--port")] = 8025,
    state: Annotated[Path | None, typer.Option("--state", help="state file")] = None,
) -> None:
    """Serve a local emulator of the provider's API (no account needed)."""
    if provider not in PROVIDERS:
        err.print(f"[bold red]Error:[/] --provider must be one of {', '.join(PROVIDERS)}")
        raise typer.Exit(EXIT_ERROR)
    serve(provider, port, state or state_file(provider), announce=err.print)


def _show(made: Plan, output_format: Format) -> None:
    if output_format is Format.JSON:
        sys.stdout.write(render_json(made))
    elif output_format is Format.MARKDOWN:
        sys.stdout.write(render_markdown(made))
    else:
        render_text(made, out)


def _show_report(report: ApplyReport) -> None:
    problems = [o for o in report.outcomes if o.status is not OutcomeStatus.DONE]
    for outcome in problems[:REPORT_LIMIT]:
        err.print(f"  {outcome.status.value}: {outcome.address}: {_escape(outcome.message)}")
    if len(problems) > REPORT_LIMIT:
        err.print(f"  ... and {len(problems) - REPORT_LIMIT:,} more not done")
    done = report.count(OutcomeStatus.DONE)
    failed = report.count(OutcomeStatus.FAILED)
    skipped = report.count(OutcomeStatus.SKIPPED)
    title = "Apply interrupted" if report.interrupted else "Apply complete"
    out.print(f"{title}: {done} done, {failed} failed, {skipped} skipped.")
    if not report.ok:
        err.print("Some changes did not apply; fix the cause and run apply again to finish.")
