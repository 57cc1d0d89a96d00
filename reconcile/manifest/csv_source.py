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
from reconcile.manifest.paths import validation_messages
from reconcile.manifest.schema import ContactSpec

COLUMNS = ("email", "name", "excluded_from_campaigns", "lists", "properties")
MAX_CELL = 1_000_000
MAX_FILE_CHARS = 256 * 1024 * 1024
STATUSES = ("subscribed", "unsubscribed")


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
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _error(path, line, "", "contains a NUL byte (a control character)")
    csv.field_size_limit(MAX_FILE_CHARS)  # cells are limited below, with their column named
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as error:
        raise _error(path, 1, "", f"not a CSV header: {error}") from None
    unknown = [name for name in header if name not in COLUMNS]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if "email" not in header or unknown or repeated:
        what = (
            f"column(s) {repeated} appear more than once"
            if repeated
            else f"unknown column(s) {unknown}"
            if unknown
            else "no email column"
        )
        raise _error(path, 1, "", f"{what}; columns are {', '.join(COLUMNS)}")
    line = 1
    records = iter(reader)
    while True:
        row = CsvRow(path, line + 1)
        try:
            record = next(records)
        except StopIteration:
            return
        except csv.Error as error:
            # strict: an unterminated quote ends the file instead of swallowing it
            issues.append(ManifestIssue(row.location(), "", f"CSV syntax: {error} (a quote?)"))
            return
        line = reader.line_num
        try:
            data = _row_data(record)
            spec = ContactSpec.model_validate(data)
        except ValidationError as error:
            issues.extend(
                ManifestIssue(row.location(), field, message)
                for field, message in validation_messages(data, error)[:3]
            )
            continue
        except _CellError as error:
            issues.append(ManifestIssue(row.location(), error.column, str(error)))
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
            status = status.strip() or "subscribed"
            if status not in STATUSES:
                message = f"expected 'subscribed' or 'unsubscribed', got {status[:40]!r}"
                raise _CellError(f"lists.{name.strip()}", message)
            memberships[name.strip()] = status
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


def _error(path: Path, line: int, field: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field, message)])
