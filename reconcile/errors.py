"""Errors the tool reports to its user. Every one carries a message fit to print as is."""

from __future__ import annotations

from dataclasses import dataclass


class ReconcileError(Exception):
    """Base of every error that ends a command with exit code 1 and one clear message."""


WHOLE_FILE = 0


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int  # WHOLE_FILE: about the path itself (missing, empty directory), no line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line != WHOLE_FILE else self.file


@dataclass(frozen=True)
class ManifestIssue:
    location: SourceLocation
    field: str
    message: str

    def __str__(self) -> str:
        where = f" {self.field}:" if self.field else ""
        return f"{self.location}:{where} {self.message}"


class ManifestError(ReconcileError):
    """One or more problems in the manifest files; nothing was sent to any provider."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class PlanError(ReconcileError):
    """The manifest asks for something the plan must refuse (a type change, a capability...)."""


class UnsafePlanError(PlanError):
    """The plan changes more than the safety thresholds allow, and --force was not given."""


class StalePlanError(ReconcileError):
    """Live state moved since the saved plan was made."""


class ApiError(ReconcileError):
    """A provider answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        hint: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.hint = hint
        request = f"{method} {path}".strip()
        status_text = f" answered {status}" if status is not None else ""
        text = f"{request}{status_text}: {message}" if request else message
        super().__init__(f"{text} ({hint})" if hint else text)


class ConfigError(ReconcileError):
    """Missing or invalid credentials or settings."""
