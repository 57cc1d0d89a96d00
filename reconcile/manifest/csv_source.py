"""Contacts from a CSV file (`contacts_from: people.csv`), each row checked like a YAML entry.

Columns: email (required), name, excluded_from_campaigns (true/false), lists
(`;`-separated names, each optionally `name:unsubscribed`), properties (a JSON object,
so values keep their types). An empty cell leaves that field unmanaged.

Read as spreadsheets write them: column names in any case and with spaces around them
(` Email `), separated by commas, semicolons or tabs (told from the header). A datetime
value without an offset is a local time: refused, unless the source names its zone
(`contacts_from: {path: people.csv, timezone: Europe/Paris}`).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from reconcile import fastjson
from reconcile.errors import ManifestError, ManifestIssue, SourceLocation
from reconcile.manifest.entries import ContactEntry, plain_contact
from reconcile.manifest.paths import validation_messages
from reconcile.manifest.schema import ContactSpec
from reconcile.manifest.suggest import did_you_mean
from reconcile.model import ValueTypeError

COLUMNS = ("email", "name", "excluded_from_campaigns", "lists", "properties")
MAX_CELL = 1_000_000
MAX_FILE_CHARS = 256 * 1024 * 1024
STATUSES = ("subscribed", "unsubscribed")
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True, slots=True)
class CsvRow:
    """Where a CSV contact came from: every problem in it points at its line."""

    path: Path
    line: int
    zone: ZoneInfo | None = None  # the source's `timezone:`, for times without an offset

    label: str = ""

    def location(self, _loc: Sequence[str | int] = ()) -> SourceLocation:
        return SourceLocation(str(self.path), self.line)

    def zoned(self, value: object) -> object:
        """A datetime property's value as written in this row, with its offset: a time
        written without one is in the source's zone, or an error when it names none (a
        spreadsheet's local time is never taken for UTC). A bare date is a date (midnight
        UTC, as in YAML)."""
        if not isinstance(value, str) or value in _AS_WRITTEN:
            return value
        text = value.strip()
        try:
            date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return value
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return value  # not a datetime: the type check says so
        if moment.tzinfo is not None:
            _written_as_is(value)
            return value
        if self.zone is None:
            raise ValueTypeError(
                f"{text[:60]!r} has no time zone: write its offset (e.g. "
                f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}Z or +01:00), or give the CSV "
                f"its zone: contacts_from: {{path: {self.path.name}, timezone: Europe/Paris}}"
            )
        return _local(moment, self.zone)


# Datetimes that carry their offset, as written: the same few values repeat over a big file,
# and telling each again (a failed date parse first) is most of its rows' time.
_AS_WRITTEN: set[str] = set()
_AS_WRITTEN_KEPT = 10_000


def _written_as_is(value: str) -> None:
    if len(_AS_WRITTEN) >= _AS_WRITTEN_KEPT:
        _AS_WRITTEN.clear()
    _AS_WRITTEN.add(value)


def _local(moment: datetime, zone: ZoneInfo) -> str:
    """A wall-clock time in `zone`, which must name one moment (not in a DST gap or fold)."""
    first = moment.replace(tzinfo=zone, fold=0)
    second = moment.replace(tzinfo=zone, fold=1)
    shown = moment.isoformat(sep=" ")
    try:
        back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        raise ValueTypeError("the datetime is out of range once converted to UTC") from None
    if back != moment:
        raise ValueTypeError(f"{shown} does not exist in {zone.key} (clocks go forward then)")
    if first.utcoffset() != second.utcoffset():
        raise ValueTypeError(
            f"{shown} happens twice in {zone.key} (clocks go back then): write its offset"
        )
    return first.isoformat()


def read_contacts_csv(
    path: Path, issues: list[ManifestIssue], zone: ZoneInfo | None = None
) -> Iterator[tuple[CsvRow, ContactEntry]]:
    """Every valid row as a contact entry, one at a time (a big file is never held as specs);
    the problems of bad rows (and of the file, which then gives no row) are appended to
    `issues`."""
    try:
        text = _text(path)
        if "\x00" in text:
            line = text[: text.index("\x00")].count("\n") + 1
            raise _error(path, line, "", "contains a NUL byte (a control character)")
        csv.field_size_limit(MAX_FILE_CHARS)  # cells are limited below, with their column named
        delimiter = sniff_delimiter(path, text)
        reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)
        header = _header(path, reader)
    except ManifestError as error:
        issues.extend(error.issues)
        return
    line = reader.line_num
    while True:
        row = CsvRow(path, line + 1, zone)
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # strict: an unterminated quote ends the file instead of swallowing it
            issues.append(ManifestIssue(row.location(), "", f"CSV syntax: {error} (a quote?)"))
            return
        line = reader.line_num
        if not cells:
            continue  # a blank line
        data: dict[str, Any] = {}
        try:
            data = _row_data(header, cells)
            spec = plain_contact(data) or ContactSpec.model_validate(data)
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


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` as a file opened with newline="" gives them to the csv module. A
    StringIO would do, but holds 4 bytes a character: 600 MB for a million-contact file."""
    if "\r" in text:  # a lone CR ends a line too: StringIO knows the rules
        yield from io.StringIO(text, newline="")
        return
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            if start < len(text):
                yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def sniff_delimiter(path: Path, text: str) -> str:
    """The delimiter of a CSV file, told from its header: the one that makes an email
    column of it. A header of one column (no delimiter in it) is read with commas."""
    first = text.lstrip("\ufeff")
    found: dict[str, list[str]] = {}
    for delimiter in DELIMITERS:
        try:
            found[delimiter] = next(csv.reader(io.StringIO(first, newline=""), delimiter=delimiter))
        except (csv.Error, StopIteration):
            found[delimiter] = []
    with_email = [d for d, names in found.items() if "email" in map(column_name, names)]
    split = [d for d, names in found.items() if len(names) > 1]
    if len(with_email) == 1 or (with_email and not split):
        return with_email[0]
    if len(with_email) > 1 or len(split) > 1:
        named = " or ".join(f"{DELIMITERS[d]}s" for d in (with_email if with_email else split))
        message = (
            f"cannot tell whether columns are separated by {named}: "
            "make the header use one of them (comma, semicolon or tab) and hold an email column"
        )
        raise _error(path, 1, "", message)
    return split[0] if split else ","


def column_name(written: str) -> str:
    """A header cell as the column it names: `" Email "` is `email`."""
    return written.strip().lower()


def _header(path: Path, reader: Any) -> list[str]:
    try:
        written: list[str] = next(reader, [])
    except csv.Error as error:
        raise _error(path, 1, "", f"not a CSV header: {error}") from None
    header = [column_name(name) for name in written]
    unknown = [name.strip() for name in written if column_name(name) not in COLUMNS]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if "email" not in header or unknown or repeated:
        if repeated:
            what = f"column(s) {repeated} appear more than once (names ignore case)"
        elif unknown:
            hints = "".join(did_you_mean(name, COLUMNS) for name in unknown)
            what = f"unknown column(s) {unknown}{hints}"
        else:
            what = "no email column"
        raise _error(path, 1, "", f"{what}; columns are {', '.join(COLUMNS)}")
    return header


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _error(path, 1, "", f"cannot read: {error.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _error(path, raw[: error.start].count(b"\n") + 1, "", "not valid UTF-8") from None


def _row_data(header: list[str], cells: list[str]) -> dict[str, Any]:
    if len(cells) > len(header):
        raise _CellError("", "more cells than columns")
    email, columns = _columns(tuple(header))
    data: dict[str, Any] = {"email": cells[email] if email < len(cells) else ""}
    for column, at in columns:
        cell = cells[at] if at < len(cells) else ""
        if not cell:
            continue
        if len(cell) > MAX_CELL:
            raise _CellError(column, f"longer than {MAX_CELL} characters")
        cell = cell.strip()
        if cell:
            data[column] = _cell(column, cell)
    return data


@functools.cache
def _columns(header: tuple[str, ...]) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Where the email column is in `header` (it has one: checked), and the other columns
    it has, in COLUMNS' order, with their places."""
    others = tuple((column, header.index(column)) for column in COLUMNS[1:] if column in header)
    return header.index("email"), others


def _cell(column: str, cell: str) -> Any:
    if column == "excluded_from_campaigns":
        if cell.lower() not in ("true", "false"):
            raise _CellError(column, f"expected true or false, got {cell!r}")
        return cell.lower() == "true"
    if column == "lists":
        memberships: dict[str, str] = {}
        for item in cell.split(";"):
            name, _, status = item.partition(":")
            status = status.strip() or "subscribed"
            if status not in STATUSES:
                message = f"expected 'subscribed' or 'unsubscribed', got {status[:40]!r}"
                raise _CellError(f"lists.{name.strip()}", message)
            memberships[name.strip()] = status
        return _plain_lists(memberships)
    if column == "properties":
        try:
            values = fastjson.loads(cell)
        except ValueError:
            raise _CellError(column, 'not a JSON object like {"seats": 3}') from None
        if not isinstance(values, dict):
            raise _CellError(column, 'not a JSON object like {"seats": 3}')
        return values
    return cell


def _plain_lists(memberships: dict[str, str]) -> list[str] | dict[str, str]:
    """All subscribed: a list of the names, the plain shape `plain_contact` takes (a name
    written twice is there once either way)."""
    if "unsubscribed" not in memberships.values():
        return list(memberships)
    return memberships


class _CellError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        self.column = column
        super().__init__(message)


def _error(path: Path, line: int, field: str, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(SourceLocation(str(path), line), field, message)])
