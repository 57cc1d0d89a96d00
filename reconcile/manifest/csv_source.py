"""Contacts from a CSV file (`contacts_from: people.csv`), each row checked like a YAML entry.

Columns: email (required), name, excluded_from_campaigns (true/false), lists
(`;`-separated names, each optionally `name:unsubscribed`), properties (a JSON object,
so values keep their types). An empty cell leaves that field unmanaged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconcile.errors import ManifestError, ManifestIssue, SourceLocation
from reconcile.manifest.schema import ContactSpec

COLUMNS = ("email", "name", "excluded_from_campaigns", "lists", "properties")
MAX_CELL = 1_000_000


@dataclass(frozen=True, slots=True)
class CsvRow:
    """Where a CSV contact came from: every problem in it points at its line."""

    path: Path
    line: int

    label: str = ""

    def location(self, _loc: Sequence[str | int] = ()) -> SourceLocation:
        return SourceLocation(str(self.path), self.line)


def read_contacts_csv(
    path: Path, issues: list[ManifestIssue]
) -> Iterator[tuple[CsvRow, ContactSpec]]:
    """Every valid row as a ContactSpec, one at a time (a big file is never held as specs);
    the problems of bad rows are appended to `issues`."""
    text = _text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in COLUMNS]
    if "email" not in header or unknown:
        what = f"unknown column(s) {unknown}" if unknown else "no email column"
        raise _error(path, 1, "", f"{what}; columns are {', '.join(COLUMNS)}")
    line = 1
    for record in reader:
        row = CsvRow(path, line + 1)
        line = reader.line_num
        try:
            spec = ContactSpec.model_validate(_row_data(record))
        except ValueError as error:
            issues.extend(_row_issues(row, error))
            continue
        yield row, spec


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _error(path, 1, "", f"cannot read: {error.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _error(path, raw[: error.start].count(b"\n") + 1, "", "not valid UTF-8") from None


def _row_data(record: dict[str | Any, Any]) -> dict[str, Any]:
    if None in record:
        raise _CellError("", "more cells than columns")
    data: dict[str, Any] = {"email": (record.get("email") or "")}
    for column in COLUMNS[1:]:
        cell = record.get(column) or ""
        if len(cell) > MAX_CELL:
            raise _CellError(column, f"longer than {MAX_CELL} characters")
        if cell.strip():
            data[column] = _cell(column, cell.strip())
    return data


def _cell(column: str, cell: str) -> Any:
    if column == "excluded_from_campaigns":
        if cell.lower() not in ("true", "false"):
            raise _CellError(column, f"expected true or false, got {cell!r}")
        return cell.lower() == "true"
    if column == "lists":
        memberships: dict[str, str] = {}
        for item in cell.split(";"):
            name, _, status = item.strip().partition(":")
            memberships[name.strip()] = status.strip() or "subscribed"
        return memberships
    if column == "properties":
        try:
            values = json.loads(cell)
        except ValueError:
            raise _CellError(column, 'not a JSON object like {"seats": 3}') from None
        if not isinstance(values, dict):
            raise _CellError(column, 'not a JSON object like {"seats": 3}')
        return values
    return cell


class _CellError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        self.column = column
        super().__init__(message)


def _row_issues(row: CsvRow, error: ValueError) -> list[ManifestIssue]:
    if isinstance(error, ValidationError):
        return [
            ManifestIssue(
                row.location(),
                ".".join(str(p) for p in item["loc"] if not str(p).startswith(("list[", "dict["))),
                item["msg"],
            )
            for item in error.errors(include_url=False)[:3]
        ]
    column = error.column if isinstance(error, _CellError) else ""
    return [ManifestIssue(row.location(), column, str(error))]


def _error(path: Path, line: int, field: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field, message)])
