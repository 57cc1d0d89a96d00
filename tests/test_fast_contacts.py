"""The fast ways through a big `contacts:` list must change nothing: the list read line by
line (fast_yaml `_contacts_by_lines`) gives the values rapidyaml's tree and ruamel give,
and an entry checked by hand (loader `plain_contact`) gives the contact, the memberships
and the errors (file, line, field, message) that the schema and the general path give.

Entries are drawn mostly plain (the shape the fast ways take) with odd ones among them:
quoted numbers, nulls, unknown keys, duplicate emails and keys, tags, anchors and
aliases, flow and block style, non-ASCII text, bad values."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.errors import ManifestError
from reconcile.manifest import csv_source, fast_yaml, loader
from reconcile.manifest.entries import plain_contact
from reconcile.manifest.fast_yaml import parse_fast
from reconcile.manifest.loader import load_manifest
from reconcile.manifest.schema import ContactSpec
from reconcile.model import PropertyType, ValueTypeError, strict_value
from tests.test_fast_yaml import TRICKY, assert_same_as_ruamel, typed

HEAD = """\
provider: {type: mailjet, requests_per_minute: 200}
properties:
  department: {type: str}
  seats: {type: int}
  score: {type: float}
  vip: {type: bool}
  renewal: {type: datetime}
lists:
  product: {}
  events: {}
contacts:
"""
EMAILS = [
    "a@example.com", "A@Example.com", "b@example.com", "person0000001@example.com",
    "zoë@exämple.com", "not-an-email", "c@example", "d@example.com", "e.f+g@example.co.uk",
]  # fmt: skip
TEXTS = [
    "Sales", "Person 1", "Zoë Ångström", "O'Brien", "Ann-Marie", "x:y", "2027-02-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2099-01-01T00:00:00Z", "1", "-3", "0.25", "1e3", "true", "no",
    "null", "~", "", "[x]", "{}", "日本", "a b c", "-x", "@x", "a,b", "a #b", "a: b", "- x", "-",
    "-1.5", "a:", ":a", "a  b", "x ", "a\tb", "0x1F", "1_000", ".inf", "Yes", "?x", "a]",
]  # fmt: skip
PROPERTY_KEYS = ["department", "seats", "score", "vip", "renewal", "nope", "1", "true"]
LIST_NAMES = ["product", "events", "nope", "Product", "1"]
ENTRY_KEYS = [
    "name", "properties", "lists", "excluded_from_campaigns", "opted_in_at", "nmae",
    "renamed_from", "email",
]  # fmt: skip
texts = st.one_of(
    st.sampled_from(TEXTS), st.sampled_from(TEXTS), st.sampled_from(TRICKY), st.text(max_size=6)
)


@st.composite
def scalars(draw: st.DrawFn, odd: bool) -> str:
    """A scalar as written: usually plain, in odd entries quoted, tagged, anchored, or an
    alias (of an anchor that may or may not exist)."""
    text = draw(texts)
    if not odd:
        return text
    style = draw(st.sampled_from(["plain", "plain", "single", "double", "tag", "anchor", "alias"]))
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    if style == "double":
        return json.dumps(text, ensure_ascii=draw(st.booleans()))
    if style == "tag":
        return f"!!str {text}" if text.strip() else "!!null ''"
    if style == "anchor":
        return f"&v{draw(st.integers(0, 2))} {text}"
    return f"*v{draw(st.integers(0, 2))}"


@st.composite
def values(draw: st.DrawFn, key: str, column: int, odd: bool) -> str:
    """What follows `key: ` on an entry's line (and, in block style, the lines below)."""
    pad = " " * (column + 2)
    if key in ("properties", "lists", "renamed_from") and draw(st.integers(0, 5)) > 0:
        if key == "properties" or (key == "lists" and draw(st.booleans()) and odd):
            names = PROPERTY_KEYS if key == "properties" else LIST_NAMES
            inner = draw(st.lists(st.sampled_from(names), max_size=4))
            if key == "lists":
                pairs = [
                    (n, draw(st.sampled_from(["subscribed", "unsubscribed", "x"]))) for n in inner
                ]
            else:
                pairs = [(n, draw(scalars(odd))) for n in inner]
            if odd and pairs and draw(st.booleans()):  # block style
                return "\n" + "\n".join(f"{pad}{n}: {v}" for n, v in pairs)
            return "{" + ", ".join(f"{n}: {v}" for n, v in pairs) + "}"
        names = draw(st.lists(st.sampled_from(LIST_NAMES), max_size=3))
        if odd and names and draw(st.booleans()):
            return "\n" + "\n".join(f"{pad}- {n}" for n in names)
        return "[" + ", ".join(names) + "]"
    if key == "email":
        email = draw(st.sampled_from(EMAILS))
        return json.dumps(email, ensure_ascii=False) if odd and draw(st.booleans()) else email
    if key == "excluded_from_campaigns":
        return draw(st.sampled_from(["true", "false", "null", "'true'", "1"]))
    if key == "opted_in_at" and draw(st.booleans()):
        return draw(st.sampled_from(["2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "soon"]))
    return draw(scalars(odd))


@st.composite
def entries(draw: st.DrawFn, indent: str) -> list[str]:
    odd = draw(st.integers(0, 4)) == 0
    keys = ["email", *draw(st.lists(st.sampled_from(ENTRY_KEYS[:4]), max_size=3, unique=True))]
    if odd:  # unknown, repeated or unusual keys; the email missing
        keys += draw(st.lists(st.sampled_from(ENTRY_KEYS), max_size=2))
        keys = keys[draw(st.integers(0, 1)) :] or ["name"]
    keys = draw(st.permutations(keys))
    column = len(indent) + 2
    lines = [f"{' ' * column}{key}: {draw(values(key, column, odd))}" for key in keys]
    if odd and draw(st.integers(0, 3)) == 0:  # a flow mapping for the whole entry
        flat = [line.strip() for line in lines if "\n" not in line]
        return [f"{indent}- {{{', '.join(flat)}}}"]
    lines[0] = f"{indent}- {lines[0][column:]}"
    return lines


@st.composite
def manifests(draw: st.DrawFn) -> str:
    indent = draw(st.sampled_from(["", "  "]))
    lines = [line for _ in range(draw(st.integers(1, 5))) for line in draw(entries(indent))]
    if draw(st.integers(0, 5)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), f"{indent}# a comment")
    if draw(st.integers(0, 5)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), "")
    return HEAD + "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


@contextmanager
def general_path() -> Iterator[None]:
    """What the loader did before the fast ways: ruamel reads, the schema validates."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(loader, "plain_contact", return_value=None))
        stack.enter_context(
            mock.patch("reconcile.manifest.yaml_source.parse_fast", return_value=None)
        )
        yield


@contextmanager
def tree_path() -> Iterator[None]:
    """rapidyaml's tree for the list (no line-by-line reading), the schema for each entry."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(loader, "plain_contact", return_value=None))
        stack.enter_context(mock.patch.object(fast_yaml, "_contacts_by_lines", return_value=None))
        yield


def outcome(path: Path) -> Any:
    """The loaded state, or every issue as the user reads it (the file by name: each way
    writes it to a directory of its own)."""
    try:
        manifest = load_manifest([path])
    except ManifestError as error:
        return [(str(i).replace(str(path.parent), "")) for i in error.issues]
    state = manifest.desired
    return (
        {key: repr(contact) for key, contact in state.contacts.items()},
        {key: repr(member) for key, member in state.memberships.items()},
        manifest.address_changes,
    )


def loaded(text: str, way: Callable[[], Any] | None = None) -> Any:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "audience.yaml"
        path.write_text(text, encoding="utf-8")
        if way is None:
            return outcome(path)
        with way():
            return outcome(path)


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(manifests())
def test_the_list_read_line_by_line_reads_as_rapidyaml_and_ruamel_read_it(text: str) -> None:
    assert_same_as_ruamel(text)
    raw = text.encode("utf-8")
    fast = parse_fast(raw, text)
    with mock.patch.object(fast_yaml, "_contacts_by_lines", return_value=None):
        tree = parse_fast(raw, text)
    # chunks of a line or two: entries cut between chunks, and whole entries matched at once
    # (the first entry's shape) from the second chunk on
    with mock.patch.multiple(fast_yaml, _FIRST_CHUNK=1, _LINES_CHUNK=40):
        small = parse_fast(raw, text)
    assert (fast is None) == (tree is None) == (small is None), text
    if fast is not None and tree is not None and small is not None:
        assert typed(fast[0]) == typed(tree[0]) == typed(small[0]), text
        assert fast[1].shallow == tree[1].shallow == small[1].shallow, text


@SETTINGS
@given(manifests())
def test_fast_ways_load_the_same_state_and_errors_as_the_general_path(text: str) -> None:
    fast = loaded(text)
    assert fast == loaded(text, tree_path), text
    assert fast == loaded(text, general_path), text


PLAIN = [
    "  - email: person0000001@example.com\n    name: Person 1\n    properties: {department: "
    "Sales, seats: 1, score: 0.25, vip: false, renewal: 2027-02-01T00:00:00Z}\n"
    "    lists: [product, events]\n",
    "- email: zoë@exämple.com\n  name: Zoë Ångström\n  lists: []\n  properties: {}\n",
    "  - name: O'Brien\n    email: a@example.com\n    properties: {seats: -3, score: 1e3}\n\n"
    "  # the next one\n  - email: b@example.com\n    excluded_from_campaigns: true\n",
]


def test_plain_entries_take_both_fast_ways() -> None:
    for body in PLAIN:
        text = HEAD + body
        raw = text.encode("utf-8")
        start = raw.index(b"contacts:\n") + len(b"contacts:\n")
        indent = b"  " if body.startswith(" ") else b""
        items = fast_yaml._contacts_by_lines(raw, start, len(raw), indent)
        assert items is not None, body
        with mock.patch.multiple(fast_yaml, _FIRST_CHUNK=1, _LINES_CHUNK=1):
            assert fast_yaml._contacts_by_lines(raw, start, len(raw), indent) == items
        assert all(plain_contact(item) is not None for item in items), body
        assert loaded(text) == loaded(text, general_path)


def test_anything_else_leaves_the_list_to_rapidyaml() -> None:
    for odd in ["name: 'quoted'", "name: &a x", "name: !!str 1", "name: x # note", "name: a  b",
                "name:", "name: x ", "properties:\n      seats: 1", "lists: [a,b]"]:  # fmt: skip
        raw = f"  - email: a@example.com\n    {odd}\n".encode()
        assert fast_yaml._contacts_by_lines(raw, 0, len(raw), b"  ") is None, odd


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    """A CSV source: the columns in any order and case; half the files valid throughout
    (so the states are compared), the others with odd cells too (bad booleans, statuses,
    JSON, names and emails, too few or too many cells)."""
    columns = ["email", *draw(st.permutations(["name", "excluded_from_campaigns", "lists"]))]
    columns = draw(st.permutations([*columns[: draw(st.integers(1, 4))], "properties"]))
    odd = draw(st.booleans())
    emails = EMAILS if odd else [f"p{n}@example.com" for n in range(9)]
    statuses = ["", ":subscribed", " : unsubscribed", ":unsubscribed", ": x"][: 5 if odd else 4]
    valid_values = {
        "department": texts.filter(lambda t: t.isprintable()),
        "seats": st.integers(-5, 5),
        "vip": st.booleans(),
        "renewal": st.sampled_from(["2026-01-01T00:00:00Z", "2027-02-01"]),
    }
    rows = []
    for email in draw(st.lists(st.sampled_from(emails), min_size=1, max_size=6, unique=not odd)):
        if odd:
            keys = draw(st.lists(st.sampled_from(PROPERTY_KEYS), max_size=3))
            properties: Any = {
                k: draw(st.one_of(texts, st.integers(-5, 5), st.booleans(), st.none()))
                for k in keys
            }
        else:
            keys = draw(st.lists(st.sampled_from(sorted(valid_values)), max_size=3))
            properties = {k: draw(valid_values[k]) for k in keys}
        cells = {
            "email": email,
            "name": draw(texts if odd else texts.filter(lambda t: t.isprintable())),
            "excluded_from_campaigns": draw(
                st.sampled_from(["true", "FALSE", "", " no", "1"][: 5 if odd else 3])
            ),
            "lists": ";".join(
                f"{name}{draw(st.sampled_from(statuses))}"
                for name in draw(st.lists(st.sampled_from(LIST_NAMES[: 5 if odd else 2])))
            ),
            "properties": json.dumps(properties)
            if not odd or draw(st.integers(0, 6))
            else draw(st.sampled_from(["[1]", "{", "  "])),
        }
        row = [cells[column] for column in columns]
        if odd:
            row = row[: len(row) - draw(st.sampled_from([0, 0, 0, 1]))]
            row += draw(st.sampled_from([[], [], [], ["extra"]]))
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.upper() if draw(st.booleans()) else c for c in columns])
    writer.writerows(rows)
    return out.getvalue()


@contextmanager
def csv_general_path() -> Iterator[None]:
    """A CSV row as it was read before its fast way: lists as name: status, the schema."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(csv_source, "plain_contact", return_value=None))
        stack.enter_context(
            mock.patch.object(csv_source, "_plain_lists", side_effect=lambda found: found)
        )
        yield


def loaded_csv(table: str, way: Callable[[], Any] | None = None) -> Any:
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "people.csv").write_text(table, encoding="utf-8")
        path = Path(work) / "audience.yaml"
        path.write_text(HEAD.replace("contacts:\n", "contacts_from: people.csv\n"), "utf-8")
        with way() if way is not None else ExitStack():
            return outcome(path)


@SETTINGS
@given(csv_files())
def test_csv_rows_load_as_the_schema_loads_them(table: str) -> None:
    assert loaded_csv(table) == loaded_csv(table, csv_general_path), table


def test_a_plain_csv_row_takes_the_fast_way() -> None:
    table = 'email,name,lists,properties\na@example.com,A,product;events,"{""seats"": 2}"\n'
    with mock.patch.object(ContactSpec, "model_validate") as schema:
        fast = loaded_csv(table)
    schema.assert_not_called()
    assert fast == loaded_csv(table, csv_general_path)
    assert "'seats': 2" in fast[0]["a@example.com"]


RAW_VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "a\x07b", "x" * 65]),
)


def yaml_scalar(value: Any) -> str:
    """`value` as YAML writes it: text double-quoted, every unprintable character escaped
    (YAML refuses some written as they are), floats that JSON can't write in YAML's words."""
    if isinstance(value, str):
        escaped = (c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
        return '"' + "".join(escaped) + '"'
    written = json.dumps(value)
    return {"Infinity": ".inf", "-Infinity": "-.inf", "NaN": ".nan"}.get(written, written)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["str", "int", "float", "bool", "datetime"]), RAW_VALUES)
def test_a_property_value_loads_as_strict_value_takes_it(kind: str, raw: Any) -> None:
    """The loader's fast ways for values of exactly their declared type (short text,
    numbers, booleans) accept and keep what `strict_value` does, and refuse the rest."""
    written = yaml_scalar(raw)
    text = (
        f"provider: mailjet\nproperties: {{p: {{type: {kind}}}}}\n"
        f"contacts:\n  - {{email: a@example.com, properties: {{p: {written}}}}}\n"
    )
    try:
        expected: Any = strict_value(PropertyType(kind), raw)
    except ValueTypeError:
        expected = ValueTypeError
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "audience.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            got: Any = load_manifest([path]).desired.contacts["a@example.com"].properties["p"]
        except ManifestError:
            got = ValueTypeError
    assert got == expected or (got != got and expected != expected)
    assert type(got) is type(expected)
