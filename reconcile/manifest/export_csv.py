"""Re-export into the CSV a manifest takes contacts from (`contacts_from: people.csv`): rows
are updated where they are, in the columns and format the loader reads (its delimiter, its
header as written), rows of contacts gone from the account are removed. A cell that still
means the live value is kept as written (a local time in the source's `timezone:` that is
the live moment included), so a re-export of an unchanged account leaves the file as it
was. Datetimes written are UTC (`...Z`), which read back with or without a timezone."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reconcile.errors import ManifestError, ReconcileError
from reconcile.manifest.csv_source import COLUMNS, MAX_CELL, CsvRow, column_name, sniff_delimiter
from reconcile.model import (
    EXCLUDED,
    NAME,
    PropertyType,
    SubscriptionStatus,
    ValueTypeError,
    email_key,
    strict_value,
)

SUBSCRIBED = SubscriptionStatus.SUBSCRIBED.value
Cells = dict[str, str]


class ExportError(ReconcileError):
    """Export would write something wrong or overwrite what it did not write."""


def update_csv(
    path: Path,
    remaining: dict[str, Any],
    zone: ZoneInfo | None = None,
    datetimes: Collection[str] = (),
) -> str:
    """The CSV at `path` with its rows brought to `remaining` (fresh entries by email key).
    The keys of the rows kept are taken out of `remaining`; a contact the CSV format cannot
    carry (a name with outer spaces, a list name with `;` or `:`) is left there for YAML.
    `zone` is the source's `timezone:`, `datetimes` the datetime properties: a cell that
    names the live moment in local time is kept."""
    text = _read(path)
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    try:
        delimiter = sniff_delimiter(path, body)
    except ManifestError:
        raise ExportError(f"{path}: cannot update it: fix it first (reconcile validate)") from None
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter, strict=True)
    try:
        written = next(reader, [])
        records = [cells for cells in reader if cells]
    except csv.Error as error:
        raise ExportError(f"{path}: cannot update it: CSV syntax: {error}") from None
    header = [column_name(name) for name in written]
    if "email" not in header or any(len(cells) > len(header) for cells in records):
        raise ExportError(f"{path}: cannot update it: fix it first (reconcile validate)")
    reading = _Reading(CsvRow(path, 0, zone), frozenset(datetimes))
    kept: list[Cells] = []
    for record in records:
        row = dict(zip(header, record, strict=False))
        key = email_key(row.get("email") or "")
        entry = remaining.get(key)
        cells = None if entry is None else _cells(row, entry, reading)
        if cells is not None:
            kept.append(cells)
            del remaining[key]
    added = [c for c in COLUMNS if c not in header and any(cells.get(c) for cells in kept)]
    titles = dict(zip(header, written, strict=True)) | {c: c for c in added}
    rows = [{titles[c]: value for c, value in cells.items() if c in titles} for cells in kept]
    newline = "\r\n" if "\r\n" in body else "\n"
    return bom + _csv_text([*written, *added], rows, newline, delimiter)


class _Reading:
    """How the loader reads the properties of this file's rows (its datetimes' zone)."""

    def __init__(self, row: CsvRow, datetimes: frozenset[str]) -> None:
        self.row = row
        self.datetimes = datetimes

    def values(self, cell: str) -> str:
        """A properties cell as the loader reads it, canonical; "" when it cannot."""
        if not cell.strip():
            return _canonical({})
        try:
            values = json.loads(cell)
        except ValueError:
            return ""
        if not isinstance(values, dict):
            return ""
        for name in self.datetimes & values.keys():
            try:
                values[name] = strict_value(PropertyType.DATETIME, self.row.zoned(values[name]))
            except ValueTypeError:
                return ""
        return _canonical(values)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")  # as written: CRLF stays CRLF
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: cannot read it to update it ({error})") from None


def _csv_text(header: list[str], rows: list[Cells], newline: str, delimiter: str = ",") -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(
        buffer,
        fieldnames=header,
        lineterminator=newline,
        restval="",
        extrasaction="ignore",
        delimiter=delimiter,
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cells(
    row: Mapping[str, str | None], entry: Mapping[str, Any], reading: _Reading
) -> Cells | None:
    """The row updated to `entry`, or None when a CSV row cannot say what it holds."""
    cells = {column: value or "" for column, value in row.items()}
    name = str(entry.get(NAME, ""))
    lists = _statuses(entry.get("lists"))
    values = dict(entry.get("properties") or {})
    if name != name.strip() or not all(_fits_list_cell(list_name) for list_name in lists):
        return None
    if cells.get(NAME, "").strip() != name:
        cells[NAME] = name
    cells[EXCLUDED] = _excluded_cell(cells.get(EXCLUDED, ""), entry.get(EXCLUDED))
    if _lists_in(cells.get("lists", "")) != lists:
        cells["lists"] = ";".join(
            n if status == SUBSCRIBED else f"{n}:{status}" for n, status in lists.items()
        )
    if reading.values(cells.get("properties", "")) != _canonical(values):
        cells["properties"] = json.dumps(values, ensure_ascii=False) if values else ""
    if any(len(cell) > MAX_CELL for cell in cells.values()):
        return None
    return cells


def _excluded_cell(cell: str, live: object) -> str:
    """Kept as written when it says the live value; else written only when it was written
    before or the live value is not the default (false)."""
    said = cell.strip().lower()
    if live is None or (said in ("true", "false") and (said == "true") == live):
        return cell if live is not None else ""
    return ("true" if live else "false") if said or live else ""


def _statuses(lists: Any) -> dict[str, str]:
    if isinstance(lists, Mapping):
        return {str(name): str(status) for name, status in lists.items()}
    return {str(name): SUBSCRIBED for name in lists or ()}


def _fits_list_cell(name: str) -> bool:
    return bool(name) and name == name.strip() and not {";", ":"} & set(name)


def _lists_in(cell: str) -> dict[str, str]:
    """A lists cell as the loader reads it (`a;b:unsubscribed`)."""
    if not cell.strip():
        return {}
    found: dict[str, str] = {}
    for item in cell.split(";"):
        name, _, status = item.strip().partition(":")
        found[name.strip()] = status.strip() or SUBSCRIBED
    return found


def _canonical(values: object) -> str:
    """Equal only when the loader reads the same values (1 and 1.0 and true differ)."""
    return json.dumps(values, sort_keys=True)
