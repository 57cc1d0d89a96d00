"""Command line: parses arguments, calls the engine, chooses a renderer. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import io
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Coroutine, Iterator, Sequence
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script
from typer._completion_shared import install as install_completion
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from reconcile import engine
from reconcile.errors import ConfigError, ReconcileError
from reconcile.manifest.export import MAIN_FILE, declared_in, export_audience
from reconcile.manifest.loader import Manifest
from reconcile.model import State
from reconcile.plan import Plan
from reconcile.providers import registry
from reconcile.providers.base import Cancellation, Provider
from reconcile.render.json import render_json
from reconcile.render.markdown import render_markdown
from reconcile.render.progress import ProgressMode, choose_mode, watching
from reconcile.render.redact import RedactingStream, redact, redact_message, redact_text
from reconcile.render.report import (
    FAILED,
    SKIPPED,
    Applied,
    Outcome,
    render_report_json,
    summary,
    text_lines,
)
from reconcile.render.text import render_text
from reconcile.sandbox.runtime import SANDBOX_DIR, serve, state_file
from reconcile.targeting import Targeting

EXIT_ERROR, EXIT_CHANGES, EXIT_INTERRUPTED = 1, 2, 130
_REDACTING: ContextVar[bool] = ContextVar("redacting", default=False)


class ReconcileGroup(TyperGroup):
    """The command group. Every error is one line and exit 1, usage errors included (click
    would exit 2, which --detailed-exitcode means "the plan has changes"); Ctrl-C before any
    write is 130, after one a warning and exit 1; anything unexpected is one line too (the
    traceback with --debug). With --redact anywhere on the command line, everything printed
    is redacted, errors about the command line included."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        given = _global_flags_first(list(sys.argv[1:] if args is None else args))
        for stream in (sys.stdout, sys.stderr):
            printable_anything(stream)
        with _redacting("--redact" in given):
            code = self._exit_code(given, prog_name, complete_var, windows_expand_args, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _exit_code(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: Any,
    ) -> int:
        cancel = Cancellation()  # this run's Ctrl-C; commands reach it as the context's obj
        try:
            result = super().main(
                args, prog_name, complete_var, False, windows_expand_args, obj=cancel, **extra
            )
        except TyperException as error:  # usage errors; an empty one has printed the help
            ctx = getattr(error, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            message = error.format_message().replace("Value error, ", "")
            if message:
                _print_error(f"{message}{hint}", about_people=False)
            return EXIT_ERROR
        except typer.Abort:  # Ctrl-C (see invoke), or at the confirmation prompt
            return _interrupted(cancel)
        except typer.Exit as stop:
            return stop.exit_code
        except BrokenPipeError:  # `reconcile plan ... | head`: the reader has gone
            _quiet_broken_pipe()
            return EXIT_ERROR
        return result if isinstance(result, int) else 0

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise typer.Abort from None  # typer would exit 130 whatever was written
        except BrokenPipeError:
            raise
        except ReconcileError as error:
            _print_error(str(error))
        except Exception as error:
            _print_error(_unexpected(error, debug=bool(ctx.params.get("debug"))))
        raise typer.Exit(EXIT_ERROR)


GLOBAL_FLAGS = ("--debug",)  # options of `reconcile` itself, accepted after the command too


def printable_anything(stream: object) -> None:
    """Text no encoding holds (a lone surrogate an account's JSON may carry, escaped as
    `\\ud800`) is printed escaped rather than ending the run in an internal error."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")


def _global_flags_first(args: list[str]) -> list[str]:
    """`reconcile plan --debug x` as `reconcile --debug plan x` (not after `--`)."""
    end = args.index("--") if "--" in args else len(args)
    found = [arg for arg in args[:end] if arg in GLOBAL_FLAGS]
    rest = [arg for arg in args[:end] if arg not in GLOBAL_FLAGS]
    return [*dict.fromkeys(found), *rest, *args[end:]]


def _quiet_broken_pipe() -> None:
    """Nothing more can be printed; stop Python from complaining at exit as well."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _interrupted(cancel: Cancellation) -> int:
    """Ctrl-C's exit code, after a message that is true of what the run did."""
    if cancel.wrote:
        err.print(
            "Aborted during apply: writes were under way and some may have landed. "
            "Run plan to see what is left, then apply again."
        )
        return EXIT_ERROR
    err.print("Interrupted before any write; nothing was changed.")
    return EXIT_INTERRUPTED


def _cancellation(ctx: typer.Context) -> Cancellation:
    """This run's Ctrl-C token (ReconcileGroup makes one per run)."""
    return ctx.ensure_object(Cancellation)


def _unexpected(error: Exception, *, debug: bool) -> str:
    """A file the system refused, by name; anything else as an internal error."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if debug:
        traceback.print_exception(error)
        return f"internal error ({type(error).__name__}: {error})"
    return f"internal error ({type(error).__name__}: {error}); run with --debug for the traceback"


def _print_error(message: str, *, about_people: bool = True) -> None:
    """`Error: ...` on stderr; under --redact the message is redacted (its quoted values too,
    when it may be about people rather than about the command line)."""
    if _REDACTING.get():
        message = redact_message(message) if about_people else redact_text(message)
    err.print(f"[bold red]Error:[/] {_escape(message)}")


@contextlib.contextmanager
def _redacting(active: bool) -> Iterator[None]:
    """Under --redact, stdout and stderr mask every email written to them, whoever writes."""
    if not active:
        yield
        return
    token = _REDACTING.set(True)
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        _REDACTING.reset(token)


def _flags_take_no_value() -> None:
    """Typer's help shows a flag's Python type (`--sandbox <bool>`, `--help <bool>`); a
    flag takes no value, so nothing is shown after it."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()
app = typer.Typer(
    cls=ReconcileGroup,
    help="Keep an email audience equal to YAML manifests: plan, review, apply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,  # typer's --show-completion ignores the shell asked: `completion`
)
completion_init()  # the shells' completion classes, for `_RECONCILE_COMPLETE=complete_bash`
# No emoji or highlighting: manifest text like ':x:' is printed as written.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
T = TypeVar("T")


def _version(shown: bool) -> None:
    if shown:
        out.print(f"reconcile {version()}")
        raise typer.Exit(0)


def version() -> str:
    """The installed distribution's version, whatever it is named on the package index."""
    names = importlib.metadata.packages_distributions().get("reconcile", [])
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return "unknown (not installed)"


@app.callback()
def main(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="log every HTTP request and answer to stderr (credentials redacted, no "
            "bodies); also accepted after the command",
        ),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Keep an email audience equal to YAML manifests: plan, review, apply."""
    trace = logging.getLogger("reconcile.http")
    trace.handlers = [_debug_handler()] if debug else []
    trace.setLevel(logging.DEBUG if debug else logging.WARNING)
    trace.propagate = False


def _debug_handler() -> logging.Handler:
    """On a terminal, rich lines; elsewhere (a CI log, a file) one plain line a record,
    never wrapped, so each can be searched and parsed."""
    if err.is_terminal:
        return RichHandler(console=err, show_path=False, markup=False)
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return plain


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class ReportFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _readable_paths(paths: list[Path] | None) -> list[Path] | None:
    """A pipe or device given as a manifest would block or read as empty: refused by name."""
    for path in paths or []:
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise typer.BadParameter(f"{path} is not a regular file or a directory")
    return paths


def _readable_file(path: Path | None) -> Path | None:
    _readable_paths([path] if path is not None else None)
    return path


PathsArg = Annotated[
    list[Path], typer.Argument(help="manifest files or directories", callback=_readable_paths)
]
RedactOpt = Annotated[
    bool,
    typer.Option(
        "--redact",
        help="mask emails, names and property values in everything printed, errors "
        "included (a saved --out plan keeps them: apply needs them)",
    ),
]
SandboxOpt = Annotated[
    bool, typer.Option("--sandbox", help=f"use the built-in emulator (state in {SANDBOX_DIR}/)")
]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="every warning is an error (nothing is saved or applied)"),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="no progress bars or progress log lines")
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="plan only changes whose address matches this glob (list:news, "
        "contact:*@acme.com, membership:news/*), and what they need; repeatable",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="leave out changes whose address matches this glob; repeatable"),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="allow a plan over the safety thresholds (safety: in the manifest)"
    ),
]


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _validated(paths: list[Path]) -> Manifest:
    """engine.validate, with its notes (subdirectories left unread, ...) on stderr."""
    manifest = engine.validate(paths)
    for note in manifest.notes:
        err.print(f"note: {_escape(note)}")
    return manifest


def _await(coroutine: Coroutine[Any, Any, T], cancel: Cancellation) -> T:
    return asyncio.run(_interruptible(coroutine, cancel))


async def _interruptible(coroutine: Coroutine[Any, Any, T], cancel: Cancellation) -> T:
    """Ctrl-C while reading stops at once; once apply has begun, the first one lets the
    requests in flight finish and starts nothing new (the report says what was done), a
    second one aborts."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_interrupt() -> None:
        if cancel.applying and not cancel.requested:
            cancel.request()
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
def validate(paths: PathsArg, *, redact_output: RedactOpt = False) -> None:
    """Check manifests offline: schema, references, value types. No network, no credentials."""
    manifest = _validated(paths)
    state = manifest.desired
    out.print(
        f"Valid: {len(manifest.files)} file(s), {len(state.properties)} properties, "
        f"{len(state.lists)} lists, {len(state.contacts)} contacts, "
        f"{len(state.memberships)} memberships ({manifest.provider.type})."
    )


@app.command()
def plan(
    ctx: typer.Context,
    paths: PathsArg,
    *,
    out_file: Annotated[Path | None, typer.Option("--out", help="save the plan here")] = None,
    output_format: Annotated[Format, typer.Option("--format")] = Format.TEXT,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="exit 2 when there are changes")
    ] = False,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    sandbox: SandboxOpt = False,
    force: ForceOpt = False,
    strict: StrictOpt = False,
    redact_output: RedactOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Read the live account, compare it with the manifests, print the changes."""
    targeting = Targeting(tuple(target or ()), tuple(exclude or ()))
    mode = choose_mode(err, quiet)
    cancel = _cancellation(ctx)
    if out_file is not None:
        _check_writable(out_file)

    async def work() -> Plan:
        manifest = _validated(paths)
        where = engine.ConnectTo(sandbox)
        async with engine.open_provider(manifest.provider, where, cancel) as provider:
            async with watching(err, mode, "Reading the account", provider.stats):
                made, _live = await engine.make_plan(manifest, provider, targeting)
            return made

    made = _await(work(), cancel)
    _show(_displayed(made), output_format)
    made.raise_if_unsafe(force)
    made.raise_if_warned(strict)
    if out_file is not None:
        _write(out_file, made.dumps())
        err.print(f"Saved the plan to {out_file}; apply it with: reconcile apply --plan {out_file}")
    if detailed_exitcode and not made.is_empty:
        raise typer.Exit(EXIT_CHANGES)


@app.command()
def apply(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="manifest files or directories", callback=_readable_paths),
    ] = None,
    *,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="apply this saved plan exactly", callback=_readable_file),
    ] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="do not ask")] = False,
    output_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="text: each outcome (problems first) and the totals; json: the apply report "
            "on stdout (the plan, if any, on stderr)",
        ),
    ] = ReportFormat.TEXT,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    sandbox: SandboxOpt = False,
    force: ForceOpt = False,
    strict: StrictOpt = False,
    redact_output: RedactOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Plan and apply (after confirmation), or apply a saved plan if it is still current."""
    targeting = Targeting(tuple(target or ()), tuple(exclude or ()))
    mode = choose_mode(err, quiet)
    cancel = _cancellation(ctx)
    if bool(paths) == bool(plan_file):
        err.print("[bold red]Error:[/] give manifest PATHs or --plan FILE (one of the two)")
        raise typer.Exit(EXIT_ERROR)
    if plan_file is not None and targeting.partial:
        err.print(
            "[bold red]Error:[/] --target/--exclude choose what a plan holds: give them to "
            "plan (a saved partial plan records them), not to apply --plan"
        )
        raise typer.Exit(EXIT_ERROR)
    applied: Applied | None
    if plan_file is not None:
        saved = _apply_saved(plan_file, sandbox, force, strict, mode, cancel=cancel)
        applied = _await(saved, cancel)
    else:
        work = _plan_and_apply(
            paths or [],
            auto_approve=auto_approve,
            sandbox=sandbox,
            force=force,
            mode=mode,
            shown_on=err if output_format is ReportFormat.JSON else out,
            cancel=cancel,
            strict=strict,
            targeting=targeting,
        )
        applied = _await(work, cancel)
    if applied is None:
        return
    try:
        _show_report(applied, output_format)
    except KeyboardInterrupt:  # the apply has ended: say how, not that writes were under way
        err.print("Interrupted while printing the report; the apply had ended:")
        for line in summary(applied):
            err.print(_escape(line))
        raise typer.Exit(EXIT_ERROR) from None
    if applied.interrupted and not cancel.wrote:  # Ctrl-C before any write went out
        raise typer.Exit(EXIT_INTERRUPTED)
    if cancel.requested:  # Ctrl-C after writes began: even if all landed, exit 1 as promised
        err.print("Interrupted: the requests in flight finished; run plan to see what is left.")
        raise typer.Exit(EXIT_ERROR)
    if applied.count(FAILED) or applied.count(SKIPPED):
        raise typer.Exit(EXIT_ERROR)


def _saved_plan(plan_file: Path) -> Plan:
    try:
        text = plan_file.read_text(encoding="utf-8")
    except OSError as error:
        raise ReconcileError(f"{plan_file}: cannot read the plan ({error.strerror})") from None
    return Plan.loads(text, str(plan_file))


async def _applied(
    plan: Plan, provider: Provider, live: State | None, force: bool, cancel: Cancellation
) -> Applied:
    """Apply `plan`, timed and counted, as the report shows it. A saved plan's account is
    read again first (to refuse a moved one); those reads are counted apart, since the
    plan's estimate is for the apply alone."""
    started, checked = time.monotonic(), provider.stats().requests
    if live is None:
        live = await engine.checked_live(plan, provider, force=force)
    before = provider.stats().requests
    report = await engine.apply_plan(plan, provider, live, force=force)
    outcomes = [Outcome(o.address, o.status.value, o.message) for o in report.outcomes]
    calls = provider.stats().requests - before
    interrupted = report.interrupted or cancel.requested
    took = time.monotonic() - started
    notes = tuple(report.notes)
    return Applied(plan, outcomes, interrupted, calls, took, notes, before - checked)


async def _apply_saved(
    plan_file: Path,
    sandbox: bool,
    force: bool,
    strict: bool,
    mode: ProgressMode,
    *,
    cancel: Cancellation,
) -> Applied:
    saved = _saved_plan(plan_file)
    saved.raise_if_warned(strict)
    try:
        config = engine.provider_config(saved.provider, saved.provider_options)
    except ConfigError as error:
        raise ConfigError(f"{plan_file}: {error}") from None
    async with (
        engine.open_provider(config, engine.ConnectTo(sandbox), cancel) as provider,
        watching(err, mode, "Checking and applying", provider.stats),
    ):
        return await _applied(saved, provider, None, force, cancel)


async def _plan_and_apply(
    paths: list[Path],
    *,
    auto_approve: bool,
    sandbox: bool,
    force: bool,
    mode: ProgressMode,
    shown_on: Console,
    cancel: Cancellation,
    strict: bool,
    targeting: Targeting,
) -> Applied | None:
    manifest = _validated(paths)
    where = engine.ConnectTo(sandbox)
    async with engine.open_provider(manifest.provider, where, cancel) as provider:
        async with watching(err, mode, "Reading the account", provider.stats):
            made, live = await engine.make_plan(manifest, provider, targeting)
        render_text(_displayed(made), shown_on)
        made.raise_if_warned(strict)
        if made.is_empty:
            return None
        made.raise_if_unsafe(force)
        if not auto_approve and not _confirmed():
            return None
        total = made.estimate.api_calls if made.estimate else None
        async with watching(err, mode, "Applying", provider.stats, total):
            return await _applied(made, provider, live, force, cancel)


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
def show(
    plan_file: Annotated[Path, typer.Argument(help="a plan saved by plan --out")],
    *,
    output_format: Annotated[Format, typer.Option("--format")] = Format.TEXT,
    redact_output: RedactOpt = False,
) -> None:
    """Print a saved plan exactly as plan printed it (for the apply job's log and reviewers).
    Offline: nothing is read from the account."""
    _show(_displayed(_saved_plan(plan_file)), output_format)


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"
    POWERSHELL = "powershell"


COMPLETE_VAR = "_RECONCILE_COMPLETE"


@app.command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh, fish or powershell")],
    *,
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="install the script for your user (bash: ~/.bash_completions/ and a line in "
            "~/.bashrc; zsh: ~/.zfunc/ and ~/.zshrc; fish: ~/.config/fish/completions/) "
            "instead of printing it",
        ),
    ] = False,
) -> None:
    """Shell completion for reconcile: print the script for SHELL, or install it."""
    if not install:
        script = get_completion_script(
            prog_name="reconcile", complete_var=COMPLETE_VAR, shell=shell.value
        )
        sys.stdout.write(script + "\n")
        return
    _, path = install_completion(shell.value, "reconcile", COMPLETE_VAR)
    err.print(f"Installed {shell.value} completion in {path}; open a new shell to use it.")


ProviderOpt = Annotated[
    str | None,
    typer.Option("--provider", help="a provider name ('reconcile providers' lists them)"),
]


@app.command()
def providers() -> None:
    """List the installed providers: what each can do and the variables it reads."""
    try:
        chosen = registry.default_name()
    except ReconcileError:
        chosen = None  # no single default: export and sandbox ask for --provider
    for name, plugin in registry.installed().items():
        default = " (default)" if name == chosen else ""
        out.print(f"[bold]{name}[/]{default}")
        can = ", ".join(sorted(plugin.capabilities)) or "none beyond the basics"
        out.print(f"  can: {_escape(can)}")
        out.print(f"  environment: {', '.join(plugin.variables())}")
    for name, problem in registry.broken().items():
        out.print(f"[bold]{name}[/] (broken: not usable)")
        out.print(f"  {_escape(problem)}")


@app.command()
def export(
    ctx: typer.Context,
    *,
    provider: ProviderOpt = None,
    output_text: Annotated[
        str | None,  # as typed: a Path would lose the trailing slash of `-o dir/`
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
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="a provider option KEY=VALUE (repeatable), as in the manifest's provider: "
            "mapping; an updated manifest's own options are used too",
        ),
    ] = None,
) -> None:
    """Write the live account as manifest YAML."""
    if contacts_per_file is not None and output_text is None:
        err.print("[bold red]Error:[/] --contacts-per-file needs -o DIRECTORY")
        raise typer.Exit(EXIT_ERROR)
    output = None if output_text is None else Path(output_text)
    if output_text and contacts_per_file is None and output_text.endswith(("/", os.sep)):
        err.print(
            f"[bold red]Error:[/] {_escape(output_text)} names a directory: give a file "
            f"(-o {_escape(str(Path(output_text) / MAIN_FILE))}), or --contacts-per-file N "
            "to split the export into it"
        )
        raise typer.Exit(EXIT_ERROR)

    name = registry.default_name() if provider is None else provider
    declared = declared_in(output, name, contacts_per_file is not None)
    options = {**declared.options, **_option_values(option or [])}
    try:
        config = engine.provider_config(name, options)
    except ConfigError as error:
        hint = "give export the provider's options with --option KEY=VALUE"
        raise ConfigError(f"{error}; {hint}") from None

    async def work() -> State:
        async with engine.open_provider(config, engine.ConnectTo(sandbox), cancel) as opened:
            return await engine.read_everything(opened, declared.lists)

    cancel = _cancellation(ctx)
    live = _await(work(), cancel)
    refused = registry.plugin(name).provider_class.check_desired
    result = export_audience(
        live, name, output, contacts_per_file, options=options, refused=refused
    )
    for warning in result.warnings:
        err.print(f"[yellow]Warning:[/] {_escape(warning)}")
    result.carry_out()
    sys.stdout.write(result.stdout)
    if result.summary:
        err.print(_escape(result.summary))


def _option_values(given: list[str]) -> dict[str, str]:
    """`--option KEY=VALUE` values; the provider's options model checks and converts them."""
    values: dict[str, str] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or key.strip() == "type":
            raise ConfigError(
                f"--option {item!r}: expected KEY=VALUE naming a provider option "
                "(as in the manifest's provider: mapping; the provider is --provider)"
            )
        values[key.strip()] = value
    return values


@app.command()
def sandbox(
    provider: ProviderOpt = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8025,
    state: Annotated[Path | None, typer.Option("--state", help="state file")] = None,
) -> None:
    """Serve a local emulator of the provider's API (no account needed)."""
    plugin = registry.plugin(registry.default_name() if provider is None else provider)
    path = state or state_file(plugin.name)
    serve(plugin.name, plugin.emulator_factory(), port, path, announce=err.print)


def _displayed(made: Plan) -> Plan:
    """The plan as printed: redacted under --redact."""
    return redact(made) if _REDACTING.get() else made


def _reported(text: str) -> str:
    """An apply report's address or message as printed: redacted under --redact."""
    return redact_message(text) if _REDACTING.get() else text


def _check_writable(path: Path) -> None:
    """Refuse an output file that can't be written before any work is done."""
    if path.is_dir():
        raise ReconcileError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ReconcileError(f"{path}: directory {path.parent} does not exist; create it first")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ReconcileError(f"{path}: cannot write ({error.strerror})") from None


def _show(made: Plan, output_format: Format) -> None:
    if output_format is Format.JSON:
        sys.stdout.write(render_json(made))
    elif output_format is Format.MARKDOWN:
        sys.stdout.write(render_markdown(made))
    else:
        render_text(made, out)


def _show_report(applied: Applied, output_format: ReportFormat) -> None:
    """Each outcome, problems first (on stderr) and then what was done (on stdout), capped
    like a plan's detail, and the totals; or the JSON report."""
    if output_format is ReportFormat.JSON:
        sys.stdout.write(render_report_json(applied, _reported))
        return
    for problem, line in text_lines(applied, _reported):
        (err if problem else out).print(_escape(line))
    for line in summary(applied):
        out.print(_escape(line))
    if applied.count(FAILED) or applied.count(SKIPPED):
        err.print("Some changes did not apply; fix the cause and run apply again to finish.")
